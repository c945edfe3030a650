"""Snapshot create / rollback vs disk size for each strategy, and snapshot/backup (issue 4).

    python bench/bench_snapshot.py [--sizes 1,4,16] [--repeat 3] [--work DIR]

Needs root: each strategy gets its own loop-mounted filesystem (XFS made with
`mkfs.xfs -m reflink=1` for `reflink`, ext4 for `chunks`; the backing file is preallocated
so writes do not also pay for growing a sparse file), holding a fresh blockvault home
(catalog, pool, local vault). Per size it creates a pool disk through the CLI, fills it
completely with incompressible data, then measures, with caches dropped before each step:

  * sequential read of the disk image (`dd bs=8M`),
  * `snapshot create` (first), a 1% change, `snapshot create` again (second),
  * `snapshot rollback` to the first (what users run: safety snapshot + rollback),
  * `backup create` of the same disk into the home's local vault (snapshots deleted first).

Everything goes through `python -m tui.cli --home H ... --json` as a child process, so CLI
start-up (about 1 s of imports and catalog opening, measured as `snapshot list`) is included;
for reflink the engine's own FICLONE time is also measured in a child. Peak RSS is each
child's own (wait4 rusage).

Data: 1 GiB of os.urandom is generated once; a disk is written as 4 MiB pieces of it, each
stamped with its offset in the first 16 bytes so no two chunks of a disk are equal (no
dedup across repeats) and none compresses. Disks up to 1 GiB are thus fully random; larger
ones reuse the random pool, which neither zstd level 1 (window far below 1 GiB) nor the chunk
store can exploit. The 1% change rewrites 1 MiB extents at random 1 MiB-aligned offsets.
Loop devices and mounts are released at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from common import ROOT, Run, drop_caches, run

from tests.support.loopfs import loop_mount, unavailable

GiB, MiB = 1 << 30, 1 << 20
BV = [sys.executable, "-m", "tui.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
FS = {"reflink": "xfs", "chunks": "ext4"}
POOL = 1 * GiB
PIECE = 4 * MiB

ENGINE_TIMER = """
import json, sys, time
from pathlib import Path
from core.engine.snapshot_store import SnapshotEngine
disk, folder, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
engine = SnapshotEngine(disk, folder, strategy="reflink")
create, rollback = [], []
for i in range(n):
    t = time.perf_counter(); info = engine.create(f"bench-{i}", disk_meta={})
    create.append(time.perf_counter() - t)
    assert info.strategy == "reflink", info
    t = time.perf_counter(); engine.rollback(f"bench-{i}")
    rollback.append(time.perf_counter() - t)
for i in range(n):
    engine.delete(f"bench-{i}")
print(json.dumps({"create": create, "rollback": rollback}))
"""


@dataclass
class Step:
    """One CLI child: its wall clock and RSS, and its job's own duration from the catalog."""

    run: Run
    job: float

    @property
    def wall(self) -> float:
        return self.run.seconds


@dataclass
class Row:
    strategy: str
    gib: float
    read_s: float = 0.0
    snap1: Step | None = None
    snap2: Step | None = None
    rollback: Step | None = None
    backup: Step | None = None
    stored1: int = 0
    stored2: int = 0
    cli_base: float = 0.0
    cli_create: list[Step] = field(default_factory=list)
    cli_rollback: list[Step] = field(default_factory=list)
    engine_create: list[float] = field(default_factory=list)
    engine_rollback: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.gib * GiB)

    def mbps(self, seconds: float) -> float:
        return self.size / MiB / max(seconds, 1e-6)


def make_pool(path: Path) -> None:
    """1 GiB of random data in a file: a child forked from a parent holding it would count it."""
    with open(path, "wb") as handle:
        for _ in range(POOL // (64 * MiB)):
            handle.write(os.urandom(64 * MiB))


def fill(path: Path, size: int, pool: Path) -> None:
    with open(path, "r+b") as handle, open(pool, "rb") as source:
        for offset in range(0, size, PIECE):
            n = min(PIECE, size - offset)
            piece = os.pread(source.fileno(), n, offset % POOL)
            handle.write(offset.to_bytes(16, "little") + piece[16:])
        handle.flush()
        os.fsync(handle.fileno())


def change_one_percent(path: Path, size: int, seed: int) -> int:
    rng = random.Random(seed)
    pieces = max(1, size // 100 // MiB)
    offsets = rng.sample(range(size // MiB), pieces)
    with open(path, "r+b") as handle:
        for index in offsets:
            handle.seek(index * MiB)
            handle.write(os.urandom(MiB))
        handle.flush()
        os.fsync(handle.fileno())
    return pieces


class Home:
    def __init__(self, path: Path, row: Row) -> None:
        self.path, self.row = path, row

    def __call__(self, *argv: str) -> tuple[Run, Any]:
        result = run([*BV, "--home", str(self.path), *argv, "--json"], env=ENV, cwd=str(ROOT))
        self.row.rss.append(result.peak_rss)
        return result, json.loads(result.stdout.strip().splitlines()[-1])

    def job_seconds(self, job_id: str) -> float:
        """started_at .. finished_at of the job, read from the catalog (microseconds)."""
        with contextlib.closing(sqlite3.connect(self.path / "catalog.sqlite")) as db:
            started, finished = db.execute(
                "SELECT started_at, finished_at FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        parse = datetime.fromisoformat
        return (parse(finished) - parse(started)).total_seconds()

    def step(self, *argv: str) -> tuple[Step, dict]:
        """A job verb with the disk's data out of the page cache but the CLI's code warm."""
        drop_caches()
        self("snapshot", "list")
        result, data = self(*argv)
        return Step(result, self.job_seconds(data["job_id"])), data


def measure(strategy: str, gib: float, work: Path, pool: Path, repeat: int) -> Row:
    row = Row(strategy, gib)
    fs = FS[strategy]
    size = row.size
    # room for the disk, a diverged copy of it (snapshot store or rollback) and a backup
    fs_size = int(2.4 * size) + 3 * GiB
    with loop_mount(work / f"{fs}-{gib:g}", fs, fs_size, preallocate=True) as mnt:
        home = Home(mnt / "home", row)
        _, disk = home("disk", "create", "img", "--size", str(size))
        assert disk["snapshot_strategy"] == strategy, disk
        image = Path(disk["path"])
        print(f"  {strategy} {gib:g} GiB: filling {image}", flush=True)
        fill(image, size, pool)
        row.cli_base = statistics.median(home("snapshot", "list")[0].seconds for _ in range(3))
        drop_caches()
        row.read_s = run(["dd", f"if={image}", "of=/dev/null", "bs=8M"]).seconds
        print(f"  read {row.mbps(row.read_s):.0f} MiB/s; first snapshot", flush=True)
        row.snap1, first = home.step("snapshot", "create", "img", "--name", "first")
        row.stored1 = first["bytes_stored"]
        change_one_percent(image, size, seed=int(gib * 100))
        row.snap2, second = home.step("snapshot", "create", "img", "--name", "second")
        row.stored2 = second["bytes_stored"]
        print(f"  snapshots {row.snap1.job:.2f} s, {row.snap2.job:.2f} s; rollback", flush=True)
        row.rollback, _ = home.step("snapshot", "rollback", "first", "--yes")
        if strategy == "reflink":
            for i in range(repeat):
                row.cli_create.append(home.step("snapshot", "create", "img")[0])
                change_one_percent(image, size, seed=i)
                row.cli_rollback.append(home.step("snapshot", "rollback", "first", "--yes")[0])
            drop_caches()
            timer = run(
                [sys.executable, "-c", ENGINE_TIMER, str(image), str(mnt / "engine"), str(repeat)],
                env=ENV,
                cwd=str(ROOT),
            )
            times = json.loads(timer.stdout)
            row.engine_create, row.engine_rollback = times["create"], times["rollback"]
        for snap in home("snapshot", "list")[1]:  # free the space before the backup
            home("snapshot", "delete", snap["id"], "--yes")
        print("  backup", flush=True)
        row.backup, _ = home.step("backup", "create", "img")
    return row


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def report(rows: list[Row]) -> None:
    print()
    print("Each cell: the job's own duration from the catalog (started_at..finished_at), then")
    print("the CLI child's wall clock (start-up of about 1 s included). Ratios use job times.")
    print()
    print(
        "| strategy | disk | seq read | snapshot 1 | snapshot 2 (after 1%) | rollback (1%) "
        "| backup | stored 1 / 2 | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:

        def t(x: Step) -> str:
            return f"{x.job:.2f} s / {x.wall:.2f} s"

        print(
            f"| {r.strategy} | {r.gib:g} GiB | {r.mbps(r.read_s):.0f} MiB/s "
            f"| {t(r.snap1)} ({r.mbps(r.snap1.job):.0f} MiB/s) | {t(r.snap2)} "
            f"| {t(r.rollback)} | {t(r.backup)} "
            f"| {r.stored1 / MiB:.0f} / {r.stored2 / MiB:.1f} MiB | {max(r.rss) / MiB:.0f} MiB |"
        )
    reflink = [r for r in rows if r.strategy == "reflink" and r.engine_create]
    if reflink:
        print()
        print("reflink, medians of the repeats. engine: FICLONE through SnapshotEngine timed in a")
        print("child; job: catalog duration of `snapshot create` / `snapshot rollback` (the latter")
        print("with its safety clone); CLI: wall clock, of which `snapshot list` is the baseline.")
        print()
        print(
            "| disk | engine create | engine rollback | job create | job rollback "
            "| CLI create | CLI rollback | CLI baseline |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in reflink:
            med = statistics.median
            print(
                f"| {r.gib:g} GiB | {ms(med(r.engine_create))} | {ms(med(r.engine_rollback))} "
                f"| {ms(med(s.job for s in r.cli_create))} "
                f"| {ms(med(s.job for s in r.cli_rollback))} "
                f"| {ms(med(s.wall for s in r.cli_create))} "
                f"| {ms(med(s.wall for s in r.cli_rollback))} | {ms(r.cli_base)} |"
            )
    checks: list[tuple[str, str, str, bool]] = []
    if reflink:
        big = max(reflink, key=lambda r: r.gib)
        small = min(reflink, key=lambda r: r.gib)
        for what in ("create", "rollback"):
            for how, pick in (
                ("engine", lambda r, w=what: getattr(r, f"engine_{w}")),
                ("job", lambda r, w=what: [s.job for s in getattr(r, f"cli_{w}")]),
            ):
                at_big = statistics.median(pick(big))
                at_small = statistics.median(pick(small))
                checks.append(
                    (
                        f"reflink {what} at {big.gib:g} GiB ({how})",
                        ms(at_big),
                        "<= 50 ms",
                        at_big <= 0.05,
                    )
                )
                if big is not small:
                    grow = at_big - at_small
                    checks.append(
                        (
                            f"reflink {what} ({how}) {big.gib:g} GiB minus {small.gib:g} GiB (flat)",
                            ms(grow),
                            "<= 25 ms",
                            grow <= 0.025,
                        )
                    )
    for r in rows:
        tag = f"{r.strategy} {r.gib:g} GiB"
        if r.strategy == "chunks":
            value = r.read_s / r.snap1.job
            checks.append(
                (
                    f"{tag}: first snapshot / seq read throughput",
                    f"{value:.2f}x",
                    ">= 0.8x",
                    value >= 0.8,
                )
            )
            value = r.snap2.job / r.snap1.job
            checks.append(
                (f"{tag}: second snapshot (1%) / first", f"{value:.2f}x", "<= 0.3x", value <= 0.3)
            )
        value = r.snap1.job / r.backup.job
        checks.append((f"{tag}: first snapshot / backup", f"{value:.2f}x", "<= 0.2x", value <= 0.2))
    print()
    print("| check | value | target | met |")
    print("|---|---|---|---|")
    for name, value, target, met in checks:
        print(f"| {name} | {value} | {target} | {'yes' if met else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,4,16", help="disk sizes in GiB, comma-separated")
    parser.add_argument("--strategies", default="reflink,chunks")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the cheap reflink steps")
    parser.add_argument("--work", default=None, help="scratch directory (default: under /var/tmp)")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    strategies = args.strategies.split(",")
    for strategy in strategies:
        reason = unavailable(FS[strategy])
        if reason:
            raise SystemExit(f"cannot bench {strategy}: {reason}")
    work = Path(args.work or tempfile.mkdtemp(prefix="bv-snap-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    need = int(max(sizes) * 2.4 * GiB) + 4 * GiB
    free = shutil.disk_usage(work).free
    if free < need:
        raise SystemExit(
            f"{work} has {free / GiB:.0f} GiB free; {max(sizes):g} GiB disks need {need / GiB:.0f}"
        )
    print(f"work dir {work}; generating {POOL >> 20} MiB of random data", flush=True)
    pool = work / "random.pool"
    make_pool(pool)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for gib in sizes:
            for strategy in strategies:
                rows.append(measure(strategy, gib, work, pool, args.repeat))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\ntotal {time.monotonic() - started:.0f} s; {os.cpu_count()} CPUs; "
        f"{shutil.disk_usage('/').total / GiB:.0f} GiB disk"
    )
    report(rows)


if __name__ == "__main__":
    main()
