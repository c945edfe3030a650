"""Shared bench helpers: run a command as a child process and measure wall time and peak RSS."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes
    stdout: str = ""


@dataclass
class Series:
    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_rss(self) -> int:
        return max(r.peak_rss for r in self.runs)


def run(
    argv: list[str],
    *,
    env: dict | None = None,
    stdin_path: str | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    keep: int | None = None,
) -> Run:
    """Run a child, returning its wall time and its own peak RSS (from wait4's rusage).

    With `timeout`, a child still running after that many seconds is killed and the call
    raises; a child is also killed if the wait is interrupted (Ctrl-C), so none outlives us.
    `keep`: only the last `keep` bytes of its output are read back (a chatty child's output
    held whole would count in the caller's memory, not the child's).
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
        timed_out = threading.Event()
        try:
            started = time.perf_counter()
            child = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, env=env, cwd=cwd)
            timer = None
            if timeout is not None:

                def expire() -> None:
                    timed_out.set()
                    child.kill()

                timer = threading.Timer(timeout, expire)
                timer.daemon = True
                timer.start()
            try:
                _, status, usage = os.wait4(child.pid, 0)
            except BaseException:
                child.kill()
                child.wait()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            elapsed = time.perf_counter() - started
            child.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if stdin_path:
                stdin.close()
        size = out.seek(0, os.SEEK_END)
        out.seek(0 if keep is None else max(0, size - keep))
        err.seek(0)
        if timed_out.is_set():
            raise RuntimeError(f"{argv[0]} timed out after {timeout:.0f} s (killed)")
        if child.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({child.returncode}): {err.read().decode()[-2000:]}"
            )
        return Run(elapsed, usage.ru_maxrss * 1024, out.read().decode(errors="replace"))


def drop_caches() -> None:
    """Cold-ish caches between runs when root; harmless otherwise."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def evict(*paths: Path) -> None:
    """Drop these files from the page cache (data cold, programs warm, as on a host that runs
    its backups every night), after writing back their dirty pages."""
    os.sync()
    for path in paths:
        if not Path(path).exists():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def evict_tree(*roots: Path) -> None:
    """`evict` every regular file under these directories (or these files): a home's pool,
    catalog and clones, a local vault, whatever a tool keeps there."""
    files: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            files.append(root)
            continue
        for folder, _dirs, names in os.walk(root):
            files.extend(Path(folder, name) for name in names)
    evict(*(f for f in files if f.is_file() and not f.is_symlink()))


def write_random(path: Path, size: int, *, block: int = 8 << 20) -> None:
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            n = min(block, remaining)
            handle.write(os.urandom(n))
            remaining -= n


def write_sparse(
    path: Path, size: int, data: int, *, islands: int = 16, block: int = 8 << 20
) -> None:
    """A sparse file of `size` bytes holding `data` bytes of urandom in `islands` islands,
    spread evenly, each starting at an odd, unaligned offset (no island begins on a block or
    chunk boundary); everything else is a hole."""
    step, each = size // islands, data // islands
    with open(path, "wb") as handle:
        handle.truncate(size)
        for i in range(islands):
            start = i * step + 12345 + 4099 * i
            if start + each > min((i + 1) * step, size):
                raise ValueError(f"{data} bytes in {islands} islands do not fit in {size}")
            handle.seek(start)
            remaining = each
            while remaining:
                n = min(block, remaining)
                handle.write(os.urandom(n))
                remaining -= n


def change_fraction(
    path: Path,
    fraction: float,
    *,
    chunk: int = 4 << 20,
    seed: int = 7,
    piece: int = 1 << 20,
    align: int = 1,
) -> int:
    """Overwrite `fraction` of the file in `piece`-sized writes, each in a distinct chunk.

    1 MiB pieces model a filesystem writing extents; 64 KiB pieces scattered over distinct
    4 MiB chunks (the worst case for any block-level tool) touch 16x more chunks. `align`
    rounds each write's offset down to a multiple of it (4096: whole filesystem blocks).
    """
    import random

    size = path.stat().st_size
    rng = random.Random(seed)
    pieces = max(1, int(size * fraction) // piece)
    chunks = size // chunk
    targets = rng.sample(range(chunks), min(pieces, chunks))
    with open(path, "r+b") as handle:
        for index in targets:
            handle.seek(index * chunk + rng.randrange(0, chunk - piece + 1) // align * align)
            handle.write(os.urandom(piece))
    return len(targets)


def mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"
