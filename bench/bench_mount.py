"""Time to the first `ls` of a mounted backup against a full restore of it (issue 14).

    python bench/bench_mount.py [--size-gib 4] [--data-gib 3] [--work DIR] [--no-record]

Needs root (FUSE, loop mounts) and fuse3. In a fresh blockvault home (local vault, default
4 MiB chunks) it creates a pool disk of `--size-gib`, makes ext4 on it, loop-mounts it and
fills it with `--data-gib` of incompressible files (256 MiB each) plus a small tree of text
files, then backs it up. With the vault and the pool evicted from the page cache before each
step (data cold, programs warm), it measures, every command a child process as a user runs
it (CLI start-up included):

  * `backup mount ID DIR` then `ls -l DIR/files/docs`: the time to the first listing;
  * `cp` of one text file and of one 256 MiB file out of the mount;
  * `backup unmount DIR`;
  * `backup files ID /docs` (a mount made and taken down for the call);
  * `backup restore ID --to-new NAME` (the whole disk written back: the alternative).

It prints a table and, unless --no-record, puts it in bench/RESULTS.md under its own heading
(replacing that section if there). Everything it mounted is unmounted, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import ROOT, Run, evict_tree, run

BV = [sys.executable, "-m", "tui.cli"]
HEADING = "## Mounting a backup vs restoring it (issue 14): `bench/bench_mount.py`"
FILE_BYTES = 256 << 20


def blockvault(home: Path, *argv: str) -> Run:
    return run([*BV, "--home", str(home), *argv], cwd=str(ROOT), timeout=3600)


def fill(image: Path, work: Path, data_bytes: int) -> None:
    """ext4 on `image`, loop-mounted to write random files and a tree of small ones."""
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mountpoint = work / "fill"
    mountpoint.mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
    try:
        docs = mountpoint / "docs"
        docs.mkdir()
        for index in range(200):
            (docs / f"note-{index:03d}.txt").write_text(f"note {index}\n" * 200)
        data = mountpoint / "data"
        data.mkdir()
        for index in range(max(1, data_bytes // FILE_BYTES)):
            with open(data / f"blob-{index:02d}.bin", "wb") as handle:
                for _ in range(FILE_BYTES // (8 << 20)):
                    handle.write(os.urandom(8 << 20))
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def measure(work: Path, size_gib: int, data_gib: float) -> dict[str, float | str]:
    home = work / "home"
    home.mkdir(parents=True)
    cold = [home / "vault", home / "pool"]
    figures: dict[str, float | str] = {}
    disk = json.loads(
        blockvault(home, "disk", "create", "bench", "--size", f"{size_gib}G", "--json").stdout
    )
    fill(Path(disk["path"]), work, int(data_gib * (1 << 30)))
    evict_tree(*cold)
    made = blockvault(home, "backup", "create", "bench", "--json")
    backup = json.loads(made.stdout.strip().splitlines()[-1])
    figures["backup create"] = made.seconds
    figures["stored"] = f"{backup['bytes_stored'] / (1 << 30):.2f} GiB"

    where = work / "look"
    try:
        evict_tree(*cold)
        mounted = blockvault(home, "backup", "mount", backup["id"], str(where))
        listed = run(["ls", "-l", str(where / "files" / "docs")])
        assert "note-199.txt" in listed.stdout
        figures["backup mount"] = mounted.seconds
        figures["first ls (mount + ls)"] = mounted.seconds + listed.seconds
        out = work / "out"
        out.mkdir()
        small = run(["cp", str(where / "files/docs/note-007.txt"), str(out)])
        figures["cp one text file"] = small.seconds
        big = run(["cp", str(where / "files/data/blob-00.bin"), str(out)])
        figures["cp one 256 MiB file"] = big.seconds
        figures["backup unmount"] = blockvault(home, "backup", "unmount", str(where)).seconds
    finally:
        if where.exists():
            with contextlib.suppress(RuntimeError):
                blockvault(home, "backup", "unmount", str(where))
    evict_tree(*cold)
    figures["backup files /docs (own mount)"] = blockvault(
        home, "backup", "files", backup["id"], "/docs"
    ).seconds
    evict_tree(*cold)
    figures["full restore (new disk)"] = blockvault(
        home, "backup", "restore", backup["id"], "--to-new", "restored", "--json"
    ).seconds
    return figures


def render(figures: dict[str, float | str], size_gib: int, data_gib: float) -> str:
    restore = float(figures["full restore (new disk)"])
    first = float(figures["first ls (mount + ls)"])
    rows = "\n".join(
        f"| {name} | {value if isinstance(value, str) else f'{value:.2f} s'} |"
        for name, value in figures.items()
    )
    return (
        f"{HEADING}\n\n"
        f"`python bench/bench_mount.py --size-gib {size_gib} --data-gib {data_gib:g}` (as "
        f"root), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node() or 'this host'}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end. A "
        f"{size_gib} GiB pool disk holding ext4 with {data_gib:g} GiB of incompressible files "
        "(256 MiB each) and 200 small text files, backed up into the home's local vault (4 MiB "
        "chunks); the vault and the pool evicted from the page cache before each step (data "
        "cold, programs warm); every step a CLI child process, its start-up included.\n\n"
        "| step | wall clock |\n|---|---|\n"
        f"{rows}\n\n"
        f"First `ls` of the backup's files {first:.1f} s against {restore:.1f} s for the full "
        f"restore: {restore / first:.0f}x sooner; a mount reads only the chunks a read "
        "touches (ext4 metadata, then the file asked for), whatever the disk's size.\n"
    )


def record(section: str) -> None:
    """Put `section` into bench/RESULTS.md: replacing the one under HEADING, else at the end."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text()
    if HEADING in text:
        start = text.index(HEADING)
        following = text.find("\n## ", start + len(HEADING))
        end = following + 1 if following >= 0 else len(text)
        text = text[:start] + section + ("\n" if following >= 0 else "") + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=int, default=4)
    parser.add_argument("--data-gib", type=float, default=3.0)
    parser.add_argument("--work", help="scratch directory (default: a new one under /tmp)")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("bench_mount needs root and /dev/fuse", file=sys.stderr)
        return 2
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-mount-"))
    started = time.monotonic()
    try:
        figures = measure(work, args.size_gib, args.data_gib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = render(figures, args.size_gib, args.data_gib)
    print(section)
    print(f"(bench took {time.monotonic() - started:.0f} s)", file=sys.stderr)
    if not args.no_record:
        record(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
