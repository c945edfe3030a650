"""Terabyte scale (issue 13, item 4) in one run: a 1 TiB sparse disk against a dense disk of
the same data, `vault gc` and `vault import` over a million chunks, and `backup list` and the
console on a catalog of 100,000 backups, on SQLite and on PostgreSQL.

    python bench/bench_scale.py [--quick] [--work DIR] [--only sparse,vault,catalog]

Run as root (the synthetic vault lives on a loop-mounted ext4; PostgreSQL runs as the
`postgres` user); with any interpreter: it re-executes itself with the project's .venv. Every
measured program is a child process (wall time and peak RSS from wait4). It prints a table
of measurements (median, min, max, the job's own duration, peak RSS) and one of targets
(value, target, met yes/NO); a step that fails prints `failed: <one line>` in its rows and
the run goes on; the exit status is 0 whether targets are met or not. Everything it makes is
removed on exit, also on Ctrl-C or SIGTERM.

Sections (full run; --quick in brackets):

1. sparse: a dense 10 GiB [512 MiB] image file backed up into a fresh local vault, then a
   1 TiB [64 GiB] sparse image holding the same 10 GiB [512 MiB] in 16 islands, into another
   fresh vault (no dedup between them). The data: 4 MiB chunks, each half AES-CTR keystream
   (incompressible, unique per chunk: key fixed, counter block from the chunk's index) and
   half a text pattern naming the chunk (zstd shrinks it to almost nothing), so the vault
   stores about half the data. The islands start on chunk boundaries, so both disks hold the
   very same chunks and the ratio measures what the 1 TiB of holes costs. One image exists
   at a time (disk space): each is written, evicted from the page cache, backed up, deleted.
2. vault: a local vault of 1,000,000 [50,000] tiny chunks written directly in the vault
   format (docs/vault-format.md) on a loop-mounted ext4 with inline_data (a chunk of 23
   bytes lives in its inode: ~0.65 GB instead of 4 GB), 100 [5] disks x 10 backups whose
   manifests each name 4,736 chunks plus a run of 64 zero chunks, 10% of a disk's chunks
   changed between its backups; 900,200 [45,010] chunks referenced, 99,800 [4,990] not.
   Then, in a fresh home that adds it: `vault import`, `vault gc --dry-run --grace 0`,
   `vault gc --grace 0` (condemns and deletes the unreferenced ones) and `vault gc --grace 0`
   again (nothing left: one scan). Page cache warm (the vault was just written).
3. catalog: bench_console.build_catalog's 1,000 disks (100 servers) and 100,000 backups
   [100 disks, 10,000 backups], on SQLite (the home's catalog.sqlite) and on a throwaway
   PostgreSQL cluster (tests/support/postgres.py: initdb, pg_ctl, fsync off). Warm, 5 [1]
   runs each: `backup list --json` and `backup list` (every backup), `backup list --limit
   100`, `backup list --disk D` (one disk's 100), `disk list --json`, and the console opened
   the way `blockvault` opens it (first paint, then the catalog opened in a thread) in a
   headless Textual pilot at 100x30: the time from process start to the first frame, to the
   disks pane filled, and to the selected disk's backups filled.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_VENV_PYTHON = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != _VENV_PYTHON.parents[1].resolve():
    os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), __file__, *sys.argv[1:]])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import concurrent.futures  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from common import ROOT, Run, Series, evict, mib, run  # noqa: E402

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
BENCH = Path(__file__).resolve().parent
CHUNK = 4 * MiB
RSS_TARGET = 300 * MiB


def _blockvault() -> tuple[list[str], str]:
    """The `blockvault` entry point of this venv and the interpreter in its shebang."""
    script = Path(sys.executable).with_name("blockvault")
    if script.is_file():
        first = script.read_text(errors="replace").splitlines()[0]
        interpreter = first[2:].strip() if first.startswith("#!") else sys.executable
        if Path(interpreter).is_file():
            return [str(script)], interpreter
    return [sys.executable, "-m", "tui.cli"], sys.executable


BV, PYTHON = _blockvault()

BUILD_CATALOG = (
    "import sys\nfrom pathlib import Path\nsys.path.insert(0, sys.argv[1])\n"
    "from bench_console import build_catalog\n"
    "build_catalog(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))\n"
)


@dataclass(frozen=True)
class Sizes:
    data: int  # the dense disk, and what the sparse one holds
    sparse: int  # the sparse disk's size
    chunks: int  # the synthetic vault's chunks
    vault_disks: int  # its disks (10 backups each)
    catalog_disks: int
    catalog_backups: int
    runs: int  # of each catalog measurement
    step_timeout: float


FULL = Sizes(10 * GiB, TiB, 1_000_000, 100, 1000, 100_000, 5, 1800.0)
QUICK = Sizes(512 * MiB, 64 * GiB, 50_000, 5, 100, 10_000, 1, 600.0)
SLOTS, CHANGED, BACKUPS_PER_DISK = 4736, 474, 10  # synthetic vault: chunks per manifest etc.


def size_text(n: int) -> str:
    for unit, name in ((TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit} {name}"
    return mib(n)


def one_line(exc: BaseException) -> str:
    """A failure in one line: the child's last stderr line says why."""
    text = str(exc).strip() or type(exc).__name__
    head, _, tail = text.partition("\n")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if lines:
        head = f"{head.rstrip(': ')}: {lines[-1]}"
    head = " ".join(head.split())
    return head if len(head) <= 200 else head[:197] + "..."


def result_of(result: Run) -> dict:
    """The JSON object on the last line of a blockvault `--json` child."""
    lines = result.stdout.strip().splitlines()
    data = json.loads(lines[-1]) if lines else {}
    return data if isinstance(data, dict) else {"rows": len(data)}


def job_seconds(result: Run) -> float | None:
    try:
        duration = result_of(result).get("duration")
    except ValueError:
        return None
    return float(duration) if isinstance(duration, int | float) else None


def checkout() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "checkout: unknown (no git)"
    return f"checkout {head}{' with uncommitted changes' if dirty else ''}"


def du(path: Path) -> int:
    """Bytes allocated under `path` (st_blocks), like `du -s`."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


# --- 1. the data of the sparse and dense disks ------------------------------------------------


def chunk_bytes(index: int) -> bytes:
    """Chunk `index` of the bench's disks: half keystream, half a pattern (module doc)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    half = CHUNK // 2
    counter = index.to_bytes(8, "big") + bytes(8)
    key = b"blockvault-scale-bench-key-32byt"
    stream = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor().update(bytes(half))
    words = f"blockvault scale bench chunk {index:012d}\n".encode()
    return stream + (words * (half // len(words) + 1))[:half]


def write_image(path: Path, size: int, data: int, islands: int) -> None:
    """`size` bytes, holding data chunks 0..data/CHUNK-1 in `islands` runs, each starting on a
    chunk boundary at an even spread; the rest is holes. Written, then fsynced."""
    count = data // CHUNK
    per, step = count // islands, (size // islands) // CHUNK * CHUNK
    with open(path, "wb") as handle:
        handle.truncate(size)
        fd = handle.fileno()
        for index in range(count):
            island, within = divmod(index, per)
            os.pwrite(fd, chunk_bytes(index), island * step + within * CHUNK)
        os.fsync(fd)


# --- 2. the synthetic vault -------------------------------------------------------------------


def synthetic_chunk(i: int) -> tuple[str, bytes]:
    import blake3

    data = b"bv-scale-chunk-" + i.to_bytes(8, "big")
    return blake3.blake3(data).hexdigest(), b"\x00" + data  # a raw envelope (flag 0)


def build_vault(root: Path, chunks: int, disks: int) -> tuple[int, int]:
    """The vault of section 2, written file by file (no fsync; one sync at the end); returns
    (referenced, unreferenced) chunk counts."""
    import blake3
    import zstandard

    per_disk = SLOTS + (BACKUPS_PER_DISK - 1) * CHANGED
    referenced = disks * per_disk
    if referenced > chunks:
        raise ValueError(f"{disks} disks need {referenced} chunks, more than {chunks}")
    root.mkdir(parents=True)
    config = {
        "format": "blockvault-vault", "version": 1, "id": os.urandom(16).hex(),
        "chunk_size": CHUNK, "compression": 3, "chunk_hash": "blake3", "encryption": None,
    }  # fmt: skip
    (root / "config").write_text(json.dumps(config, indent=1))
    for prefix in range(256):
        (root / "chunks" / f"{prefix:02x}").mkdir(parents=True)
    (root / "manifests").mkdir()

    def write(start: int) -> list[str]:
        ids = []
        for i in range(start, min(start + 10_000, chunks)):
            chunk_id, blob = synthetic_chunk(i)
            fd = os.open(root / "chunks" / chunk_id[:2] / chunk_id, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.write(fd, blob)
            finally:
                os.close(fd)
            ids.append(chunk_id)
        return ids

    ids: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for part in pool.map(write, range(0, chunks, 10_000)):
            ids.extend(part)
    packer = zstandard.ZstdCompressor(level=3, write_checksum=True)
    now = datetime.now(UTC).isoformat()
    size = (SLOTS + 64) * CHUNK
    for d in range(disks):
        base = d * per_disk
        for k in range(BACKUPS_PER_DISK):
            entries: list[str | int] = [
                ids[base + SLOTS + s] if s < k * CHANGED else ids[base + s] for s in range(SLOTS)
            ]
            entries.append(64)  # a run of 64 zero chunks (manifest version 2)
            manifest_id = f"backup-{d:04x}{k:04x}"
            body = {
                "format": "blockvault-manifest", "version": 2, "id": manifest_id,
                "kind": "backup", "name": f"scale{d:04d}-{k:04d}", "created_at": now,
                "disk": {"id": f"disk-{d:06x}", "name": f"scale{d:04d}", "size": size,
                         "server": "scale", "role": "data"},
                "size": size, "chunk_size": CHUNK,
                "digest": blake3.blake3("".join(map(str, entries)).encode()).hexdigest(),
                "parent": f"backup-{d:04x}{k - 1:04x}" if k else None,
                "stats": {"bytes_new": 0, "bytes_reused": 0, "bytes_zero": 0,
                          "bytes_stored": 0, "duration": 0.0},
                "base": None, "warnings": [], "chunks": entries,
            }  # fmt: skip
            blob = b"\x01" + packer.compress(json.dumps(body, separators=(",", ":")).encode())
            (root / "manifests" / manifest_id).write_bytes(blob)
    os.sync()
    return referenced, chunks - referenced


@contextlib.contextmanager
def inline_ext4(workdir: Path, inodes: int) -> Iterator[Path]:
    """A loop-mounted ext4 with inline_data and `inodes` inodes (sparse backing file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    backing, mountpoint = workdir / "ext4.backing", workdir / "ext4-mnt"
    mountpoint.mkdir(exist_ok=True)
    with open(backing, "wb") as handle:
        handle.truncate(max(2 * GiB, inodes * 2 * KiB))
    try:
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-O", "inline_data", "-I", "256", "-N", str(inodes),
             "-E", "lazy_itable_init=0,lazy_journal_init=0", str(backing)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        subprocess.run(
            ["mount", "-o", "loop", str(backing), str(mountpoint)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        try:
            yield mountpoint
        finally:
            for attempt in range(10):
                done = subprocess.run(["umount", str(mountpoint)], capture_output=True)
                if done.returncode == 0 or not os.path.ismount(mountpoint):
                    break
                time.sleep(0.2 * (attempt + 1))
            else:
                subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
    finally:
        backing.unlink(missing_ok=True)


# --- 3. the console, measured in a child -------------------------------------------------------


def console_child(home: str, started: float) -> None:
    """In a fresh process, as `blockvault` opens the console: the first paint, then the
    catalog opened in a thread (BLOCKVAULT_CATALOG may name PostgreSQL). Prints JSON."""
    from textual.css.query import NoMatches

    from tui.console.app import BlockvaultApp

    def opener():
        from core.api import Blockvault

        return Blockvault.open(home=home)

    def rows(app: BlockvaultApp, pane: str) -> int:
        try:
            return app.main.table(pane).row_count if app.main is not None else 0
        except NoMatches:  # the main screen is still being composed
            return 0

    async def main() -> dict:
        app = BlockvaultApp(None, opener=opener)
        result: dict = {}
        async with app.run_test(size=(100, 30)) as pilot:
            result["first_frame_s"] = time.time() - started
            while rows(app, "disks") == 0:
                if app.error is not None:
                    raise RuntimeError(str(app.error))
                await asyncio.sleep(0.005)
            await pilot.pause()
            result["disks_s"] = time.time() - started
            result["disk_rows"] = rows(app, "disks")
            while rows(app, "backups") == 0:
                await asyncio.sleep(0.005)
            await pilot.pause()
            result["backups_s"] = time.time() - started
            result["backup_rows"] = rows(app, "backups")
        if app.bv is not None:
            app.bv.close()
        return result

    print(json.dumps(asyncio.run(main())))


# --- measuring ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, sizes: Sizes, scratch: Path) -> None:
        self.sizes, self.scratch = sizes, scratch
        self.series: dict[str, Series] = {}
        self.failed: dict[str, str] = {}
        self.order: list[str] = []
        self.values: dict[str, float] = {}  # other figures (console phases, sizes)
        self.notes: list[str] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.env.pop("BLOCKVAULT_CATALOG", None)

    def measure(self, name: str, step: Callable[[], Run], *, quiet: bool = False) -> Run | None:
        if name not in self.order:
            self.order.append(name)
        if name in self.failed:
            return None
        try:
            result = step()
        except Exception as exc:
            self.failed[name] = one_line(exc)
            print(f"    {name}: failed: {self.failed[name]}", flush=True)
            return None
        self.series.setdefault(name, Series(name)).runs.append(result)
        if not quiet:
            job = job_seconds(result)
            detail = f"  (job {job:.2f} s)" if job is not None else ""
            print(f"    {name}: {result.seconds:.2f} s, {mib(result.peak_rss)}{detail}", flush=True)
        return result

    @contextlib.contextmanager
    def section(self, title: str) -> Iterator[None]:
        started = time.monotonic()
        print(f"\n== {title}", flush=True)
        try:
            yield
        except Exception as exc:
            why = one_line(exc)
            print(f"  section failed: {why}", flush=True)
            self.notes.append(f"section '{title}' failed: {why}")
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)

    def child(self, argv: list[str], env: dict | None = None, keep: int = 64 * KiB) -> Run:
        """One child, timed, its peak RSS from wait4, only the last 64 KiB of its output kept.

        A child's peak RSS is never below this process's RSS when it forked (exec keeps the
        forked memory's high-water mark), so this process holds nothing big: the vault is
        built in a child, and a list of 100,000 backups is not kept."""
        return run(
            argv, env=env or self.env, cwd=str(ROOT), timeout=self.sizes.step_timeout, keep=keep
        )

    def bv(
        self,
        home: Path,
        *argv: str,
        env: dict | None = None,
        json_out: bool = True,
        keep: int = 64 * KiB,
    ) -> Run:
        return self.child(
            [*BV, "--home", str(home), *argv, *(["--json"] if json_out else [])], env, keep
        )

    # --- 1. sparse against dense ---------------------------------------------------------------

    def sparse(self) -> None:
        s = self.sizes
        dense_name = f"backup, dense {size_text(s.data)}"
        sparse_name = f"backup, {size_text(s.sparse)} sparse holding {size_text(s.data)}"
        self.sparse_names = (dense_name, sparse_name)
        for name, size, islands in ((dense_name, s.data, 1), (sparse_name, s.sparse, 16)):
            folder = self.scratch / ("dense" if islands == 1 else "sparse")
            folder.mkdir()
            image, home = folder / "disk.img", folder / "home"
            started = time.monotonic()
            write_image(image, size, s.data, islands)
            print(f"  wrote {name.split(', ', 1)[1]} in {time.monotonic() - started:.0f} s")
            self.bv(home, "disk", "register", "img", "--path", str(image))
            self.bv(home, "vault", "add", "v", "--path", str(folder / "vault"))
            evict(image)
            result = self.measure(
                name, lambda home=home: self.bv(home, "backup", "create", "img", "--vault", "v")
            )
            if result is not None:
                stored = du(folder / "vault")
                self.values[f"{name}: vault size"] = stored
                manifests = list((folder / "vault" / "manifests").iterdir())
                self.notes.append(
                    f"{name}: {result_of(result).get('summary', '')}; vault {mib(stored)} on disk"
                    f", manifest {manifests[0].stat().st_size if manifests else 0} bytes"
                )
            shutil.rmtree(folder, ignore_errors=True)

    # --- 2. a million chunks -------------------------------------------------------------------

    def vault(self) -> None:
        s = self.sizes
        label = f"{s.chunks:,} chunks"
        self.vault_names = [
            f"vault import ({label}, {s.vault_disks * BACKUPS_PER_DISK} backups)",
            f"vault gc --dry-run --grace 0 ({label})",
            f"vault gc --grace 0 ({label}: condemn and delete)",
            "vault gc --grace 0 again (nothing left to delete)",
        ]
        why = _loop_unavailable()
        with contextlib.ExitStack() as stack:
            if why is None:
                where = stack.enter_context(inline_ext4(self.scratch / "loop", s.chunks + 100_000))
            else:
                where = self.scratch / "plain"
                self.notes.append(f"synthetic vault on the scratch filesystem: {why}")
            root = where / "vault"
            started = time.monotonic()
            made = self.child(
                [PYTHON, __file__, "--build-vault", str(root), str(s.chunks), str(s.vault_disks)]
            )  # in a child: its million ids never raise this process's RSS (see `child`)
            referenced, unreferenced = json.loads(made.stdout.strip().splitlines()[-1])
            took = time.monotonic() - started
            print(
                f"  built {s.chunks:,} chunks ({referenced:,} referenced, {unreferenced:,} not) "
                f"and {s.vault_disks * BACKUPS_PER_DISK} manifests in {took:.0f} s; "
                f"{mib(du(root))} on disk",
                flush=True,
            )
            self.notes.append(
                f"synthetic vault: {s.chunks:,} chunks, {referenced:,} referenced by "
                f"{s.vault_disks * BACKUPS_PER_DISK} manifests of {SLOTS + 64} entries; "
                f"built in {took:.0f} s, {mib(du(root))} on disk"
            )
            home = self.scratch / "home-vault"
            self.bv(home, "vault", "add", "big", "--path", str(root))
            steps = [
                ("vault", "import", "big"),
                ("vault", "gc", "big", "--dry-run", "--grace", "0"),
                ("vault", "gc", "big", "--grace", "0"),
                ("vault", "gc", "big", "--grace", "0"),
            ]
            for name, argv in zip(self.vault_names, steps, strict=True):
                result = self.measure(name, lambda argv=argv: self.bv(home, *argv, keep=16 * MiB))
                if result is not None:
                    self.notes.append(f"{name}: {_vault_summary(result)}")
            shutil.rmtree(home, ignore_errors=True)

    # --- 3. 100,000 backups --------------------------------------------------------------------

    CATALOG_STEPS = (
        ("backup list --json (every backup)", ("backup", "list"), True),
        ("backup list (text, every backup)", ("backup", "list"), False),
        ("backup list --limit 100", ("backup", "list", "--limit", "100"), False),
        ("backup list --disk D (its 100)", ("backup", "list", "--disk", "DISK"), False),
        ("disk list --json", ("disk", "list"), True),
    )
    CONSOLE = ("console: first frame", "console: disks pane filled", "console: backups filled")

    def catalog(self, backend: str, env: dict) -> None:
        s = self.sizes
        home = self.scratch / f"home-{backend}"
        started = time.monotonic()
        self.child(
            [PYTHON, "-c", BUILD_CATALOG, str(BENCH), str(home), str(s.catalog_disks),
             str(s.catalog_backups)],
            env=env,
        )  # fmt: skip
        print(
            f"  built {s.catalog_disks:,} disks and {s.catalog_backups:,} backups in "
            f"{time.monotonic() - started:.0f} s",
            flush=True,
        )
        servers = max(s.catalog_disks // 10, 1)  # build_catalog's names: its first data disk
        disk = f"srv{(servers + 1) % servers:03d}-data{servers + 1}"
        steps = [
            (
                f"{backend}: {name}",
                lambda argv=tuple(disk if a == "DISK" else a for a in argv), js=js: self.bv(
                    home, *argv, env=env, json_out=js
                ),
            )
            for name, argv, js in self.CATALOG_STEPS
        ]
        for _, step in steps:  # warm: programs and catalog in the page cache
            with contextlib.suppress(Exception):
                step()
        for _ in range(s.runs):
            for name, step in steps:
                self.measure(name, step, quiet=True)
            self.console(backend, home, env)
        for name, _ in steps:
            if name in self.series:
                series = self.series[name]
                print(
                    f"    {name}: median {series.median:.2f} s of {len(series.runs)}, "
                    f"{mib(series.peak_rss)}",
                    flush=True,
                )
        for phase in self.CONSOLE:
            name = f"{backend}: {phase}"
            if name in self.series:
                print(f"    {name}: median {self.series[name].median:.2f} s", flush=True)
        shutil.rmtree(home, ignore_errors=True)

    def console(self, backend: str, home: Path, env: dict) -> None:
        names = [f"{backend}: {phase}" for phase in self.CONSOLE]
        for name in names:
            if name not in self.order:
                self.order.append(name)
        if names[0] in self.failed:
            return
        started = time.time()
        try:
            done = self.child([PYTHON, __file__, "--console-child", str(home), str(started)], env)
            paint = json.loads(done.stdout.strip().splitlines()[-1])
        except Exception as exc:
            for name in names:
                self.failed[name] = one_line(exc)
            print(f"    {backend}: console: failed: {one_line(exc)}", flush=True)
            return
        for name, key in zip(names, ("first_frame_s", "disks_s", "backups_s"), strict=True):
            self.series.setdefault(name, Series(name)).runs.append(
                Run(paint[key], done.peak_rss, "")
            )

    # --- report --------------------------------------------------------------------------------

    def targets(self) -> list[tuple[str, float | None, str, bool | None, str]]:
        """(measure, value, target text, met, unit)."""
        rows: list[tuple[str, float | None, str, bool | None, str]] = []
        names = getattr(self, "sparse_names", None)
        if names:
            dense, sparse = (self.series.get(n) for n in names)
            value = sparse.median / dense.median if dense and sparse else None
            rows.append(
                (f"{names[1]} / dense", value, "<= 1.15x", None if value is None else value <= 1.15, "x")
            )  # fmt: skip
        for name in getattr(self, "vault_names", []):
            series = self.series.get(name)
            value = series.peak_rss / MiB if series else None
            met = None if value is None else value <= RSS_TARGET / MiB
            rows.append((f"peak RSS, {name}", value, "<= 300 MiB", met, " MiB"))
        for backend in ("sqlite", "postgresql"):
            for name in (
                *(f"{backend}: {n}" for n, _, _ in self.CATALOG_STEPS[:4]),
                *(f"{backend}: {p}" for p in self.CONSOLE),
            ):
                if name not in self.order:
                    continue
                series = self.series.get(name)
                value = series.median if series else None
                rows.append((name, value, "<= 1.00 s", None if value is None else value <= 1.0, " s"))  # fmt: skip
        return rows

    def report(self) -> None:
        print("\n### Measurements (seconds; every program a child process; peak RSS from wait4)\n")
        print("job: the duration blockvault reports for its job (in-process)\n")
        print("| measurement | runs | median | min | max | job | peak RSS |")
        print("|---|---|---|---|---|---|---|")
        for name in self.order:
            series = self.series.get(name)
            if series is None:
                print(f"| {name} | 0 | failed: {self.failed.get(name, 'not run')} | | | | |")
                continue
            times = [r.seconds for r in series.runs]
            jobs = [job_seconds(r) for r in series.runs]
            job = f"{statistics.median(jobs):.2f}" if jobs and None not in jobs else ""
            print(
                f"| {name} | {len(times)} | {series.median:.3f} | {min(times):.3f} "
                f"| {max(times):.3f} | {job} | {mib(series.peak_rss)} |"
            )
        print("\n### Targets\n")
        print("| measure | value | target | met |")
        print("|---|---|---|---|")
        for name, value, target, met, unit in self.targets():
            if value is None:
                print(f"| {name} | failed | {target} | NO |")
                continue
            shown = f"{value:.2f}{unit}" if unit != " MiB" else f"{value:.0f} MiB"
            print(f"| {name} | {shown} | {target} | {'yes' if met else 'NO'} |")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KiB
        self.notes.append(
            f"peak RSS is each child's own (wait4), never below this script's peak when it "
            f"forked ({mib(own)} at most)"
        )
        print()
        for note in self.notes:
            print(f"- {note}")


def _vault_summary(result: Run) -> str:
    try:
        data = result_of(result)
    except ValueError:
        return "?"
    if "rows" in data:
        return f"{data['rows']} backups imported"
    if "bytes_freed" in data:
        return "; ".join(str(item.get("name")) for item in data.get("items", []))
    keys = ("manifests", "chunks", "condemned_chunks", "deleted_chunks", "deferred_chunks")
    return ", ".join(f"{k} {data.get(k)}" for k in keys if k in data)


def _loop_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root (no loop mount)"
    for tool in ("mkfs.ext4", "mount", "umount", "losetup"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--console-child":
        console_child(sys.argv[2], float(sys.argv[3]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--build-vault":
        made = build_vault(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(made))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about two minutes")
    parser.add_argument("--work", default=None, help="scratch is made inside DIR (/var/tmp)")
    parser.add_argument(
        "--only", default="sparse,vault,catalog", help="sections to run (comma-separated)"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    only = set(args.only.split(","))
    base = Path(args.work or "/var/tmp")
    base.mkdir(parents=True, exist_ok=True)
    need = (sizes.data * 3 // 2 + 2 * GiB) if "sparse" in only else 2 * GiB
    free = shutil.disk_usage(base).free
    if free < need:
        raise SystemExit(f"{base} has {free / GiB:.0f} GiB free; this run needs {need / GiB:.0f}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    subprocess.run([PYTHON, "-m", "compileall", "-q", "core", "tui"], cwd=ROOT, check=True)
    started = time.monotonic()
    load = os.getloadavg()
    with contextlib.ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="bv-scale-", dir=base))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        bench = Bench(sizes, scratch)
        print(
            f"bench_scale{' --quick' if args.quick else ''}: {datetime.now(UTC):%Y-%m-%d %H:%M} "
            f"UTC, {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, "
            f"scratch {scratch} ({free / GiB:.0f} GiB free)\n{checkout()}; blockvault: "
            f"{' '.join(BV)}",
            flush=True,
        )
        if "sparse" in only:
            with bench.section(f"sparse {size_text(sizes.sparse)} against dense {size_text(sizes.data)}"):  # fmt: skip
                bench.sparse()
        if "vault" in only:
            with bench.section(f"vault import and gc over {sizes.chunks:,} chunks"):
                bench.vault()
        if "catalog" in only:
            with bench.section(f"{sizes.catalog_backups:,} backups on SQLite"):
                bench.catalog("sqlite", bench.env)
            with bench.section(f"{sizes.catalog_backups:,} backups on PostgreSQL"):
                from tests.support import postgres

                why = postgres.unavailable()
                if why is not None:
                    raise RuntimeError(f"PostgreSQL: {why}")
                cluster = stack.enter_context(postgres.running_cluster())
                url = cluster.create_database("scale")
                bench.catalog("postgresql", {**bench.env, "BLOCKVAULT_CATALOG": url})
        bench.report()
        print(f"\ntotal {time.monotonic() - started:.0f} s; load average at the end "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
