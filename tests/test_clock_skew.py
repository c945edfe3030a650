"""A clock moved an hour forward and back under a running gc.

`blockvault vault gc` runs in its own process under libfaketime (Debian package `faketime`):
`FAKETIME_TIMESTAMP_FILE` with `FAKETIME_NO_CACHE=1` makes the library read the offset from a
file at every clock call, so the test moves that process's wall clock (`+3600`, `-3600`)
while it runs; `FAKETIME_DONT_FAKE_MONOTONIC=1` keeps its monotonic clock real, as a stepped
wall clock does (NTP, a VM resumed, an admin's `date -s`). The gc pauses at chosen
object-store calls (tests/support/hosts.py gates), so each jump lands at a known point of its
run; the trace of its calls, stamped with its own clock, shows the jump really happened there.
Meanwhile another host backs up into the same vault with the real clock.

Afterwards: no chunk a good backup needs was deleted, every backup verifies and restores byte
for byte, and the next gc (real clock) runs normally with no lock left behind. On S3 the
server refuses requests signed more than 15 minutes off, so there the gc just stops.

Unit-level variants without libfaketime move `time.time` of the gc in-process.

`time.sleep` cannot run in a faked process: libfaketime 0.9.10's clock_nanosleep answers
EINVAL with FAKETIME_DONT_FAKE_MONOTONIC=1. The gc never sleeps (its waits are Event waits),
and the gates wait on an Event too.
"""

from __future__ import annotations

import glob
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.base.errors import BlockvaultError, Conflict
from core.engine import pipeline
from core.repo import gc as gc_module
from core.repo.gc import collect_garbage
from core.repo.manifest import Manifest
from core.repo.repository import Repository
from core.stores.local import LocalStore
from tests.support.hosts import Gates, Host, Step
from tests.support.ledger import Ledger
from tests.support.seaweed import S3Server

MiB = 1 << 20
CHUNK = 262144
HOUR = 3600
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\ngc_grace_seconds = 0\nworkers = 2\n"
LIBS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
)


def find_libfaketime() -> str | None:
    """The multi-threaded libfaketime (gc and the store use threads), or None."""
    found = [p for p in LIBS if Path(p).is_file()]
    found += glob.glob("/usr/lib*/*/faketime/libfaketimeMT.so.1")  # other multiarch triplets
    return found[0] if found else None


@dataclass
class FakeClock:
    """The offset file libfaketime rereads at every call: `set(+3600)` moves the clock."""

    lib: str
    path: Path

    def set(self, seconds: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+d}\n")
        tmp.replace(self.path)  # never a half-written offset

    @property
    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": self.lib,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


@pytest.fixture
def clock(tmp_path: Path) -> FakeClock:
    lib = find_libfaketime()
    if lib is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    fake = FakeClock(lib, tmp_path / "faketime-offset")
    fake.set(HOUR)
    probe = "import time; print(time.time() - time.monotonic())"
    env = {**os.environ, **fake.env}
    found = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert found.returncode == 0, f"python under libfaketime failed: {found.stderr[-2000:]}"
    moved = float(found.stdout)
    real = time.time() - time.monotonic()
    assert abs(moved - real - HOUR) < 5, "libfaketime is installed but does not move the clock"
    fake.set(0)
    return fake


# --- the scenario ---------------------------------------------------------------------------


def skews(trace: list[dict]) -> list[float]:
    """How far each traced call's wall clock was from the real one (the first call: real)."""
    t0, m0 = trace[0]["t"], trace[0]["m"]
    return [(e["t"] - t0) - (e["m"] - m0) for e in trace]


@dataclass
class Outcome:
    """What happened: the skewed gc, B's backup, and host A's checks on the real clock."""

    gc: Step
    backup: Step
    next_gc: Step
    imported: Step
    verified: dict[str, bool]  # backup id -> verified
    restored: bool  # B's backup restored to a new disk with the sha256 B's disk had
    trace: list[dict]  # the skewed gc's store calls, stamped with its clock
    jumped: list[tuple[int, str]]  # (offset, the call it was set at)

    @property
    def intact(self) -> bool:
        return len(self.verified) == 3 and all(self.verified.values()) and self.restored

    def calls(self) -> list[tuple[str, str, int]]:
        """(op, key, skew in whole seconds) of each store call of the skewed gc."""
        return [
            (e["op"], e["key"], round(s))
            for e, s in zip(self.trace, skews(self.trace), strict=True)
        ]

    def deleted_chunks(self) -> list[tuple[float, str]]:
        """(skew, chunk id) of every chunk the skewed gc deleted."""
        return [
            (skew, key.rsplit("/", 1)[1])
            for op, key, skew in self.calls()
            if op == "delete" and key.startswith("chunks/")
        ]

    def record(self, ledger: Ledger, needed: set[str], *, detected: bool) -> set[str]:
        """One ledger entry per jump; a chunk a kept backup needs, deleted while the clock
        stood at a jump's offset, is that jump's loss. Returns every such chunk."""
        deleted = self.deleted_chunks()
        lost = {chunk for _, chunk in deleted if chunk in needed}
        for offset, where in self.jumped:
            during = {chunk for skew, chunk in deleted if abs(skew - offset) < 60}
            unexplained = not self.intact and not lost  # damage no deletion explains
            ledger.record(
                "clock",
                detected=detected,
                data_intact=not (lost & during) and not unexplained,
                note=f"gc clock moved {offset:+d} s at `{where}`",
            )
        return lost


def gc_under_a_moving_clock(
    tmp_path: Path, clock: FakeClock, where: list[str], jumps: list[tuple[int, str, str]]
) -> Outcome:
    """Host B's backup has stored its chunks and waits at its commit point while host A's gc
    runs under `clock`, which jumps to each offset when the gc reaches the call (op, key).
    Then B commits, and host A, back on the real clock, runs gc again, imports the vault,
    verifies every backup and restores B's."""
    a = Host.make(tmp_path, "host-a", CONFIG)
    b = Host.make(tmp_path, "host-b", CONFIG)
    ready, committed = tmp_path / "ready-a", tmp_path / "committed"
    writer = Gates(tmp_path / "gates-b", [("commit", "put", "manifests/")])
    gates = Gates(
        tmp_path / "gates-a", [(f"jump-{n}", op, key) for n, (_, op, key) in enumerate(jumps)]
    )
    on_a = a.script(
        [
            ["vault", "add", "shared", *where],
            ["disk", "create", "web", "--size", "2M"],
            ["@write", "web", 0, 2 * MiB, 1],
            ["backup", "create", "web", "--vault", "shared", "--name", "web-1"],
            ["@write", "web", CHUNK, 4096, 2],
            ["backup", "create", "web", "--vault", "shared", "--name", "web-2"],
            ["backup", "delete", "web-1", "--yes"],  # one chunk of garbage
            ["@touch", str(ready)],
            ["@wait", str(committed)],
            # back on the real clock, after B committed
            ["vault", "gc", "shared", "--json"],
            ["vault", "import", "shared", "--json"],
            ["@verify-all"],
            ["backup", "restore", "db-2", "--to-new", "db-copy", "--json"],
            ["@sha", "db-copy"],
        ]
    )
    on_b = b.script(
        [
            ["vault", "add", "shared", *where],
            ["disk", "create", "db", "--size", "4M"],
            ["@write", "db", 0, 4 * MiB, 3],
            ["backup", "create", "db", "--vault", "shared", "--name", "db-1"],
            ["@write", "db", 0, 3 * MiB, 4],  # twelve new chunks for the next backup
            ["@gates", str(writer.dir)],
            ["backup", "create", "db", "--vault", "shared", "--name", "db-2", "--json"],
            ["@touch", str(committed)],
        ]
    )
    # host A's gc, its clock ready to move, once B's backup has stored its chunks and waits
    # at its commit point (its session live)
    gc = a.script(
        [
            ["@wait", str(ready)],
            ["@wait", str(writer.dir / "reached-commit")],
            ["vault", "gc", "shared", "--json"],
        ],
        env={**clock.env, **gates.env},
    )
    jumped = []
    for n, (offset, op, key) in enumerate(jumps):
        try:
            gates.reached(f"jump-{n}", child=gc.child)
        except AssertionError:
            break  # the gc stopped at an earlier jump
        clock.set(offset)
        jumped.append((offset, f"{op} {key}"))
        gates.go(f"jump-{n}")
    *_, gc_step = gc.wait()
    clock.set(0)
    writer.go("commit")
    b_steps, a_steps = on_b.wait(), on_a.wait()
    assert all(s.code == 0 for s in a_steps[:9] + b_steps), [s.err for s in a_steps + b_steps]
    next_gc, imported, *verifies, restore, copy = a_steps[9:]
    return Outcome(
        gc=gc_step,
        backup=b_steps[-2],
        next_gc=next_gc,
        imported=imported,
        verified={v.argv[2]: v.code == 0 and v.result()["ok"] for v in verifies},
        restored=restore.code == 0 and copy.sha == b_steps[4].sha,
        trace=gates.trace(),
        jumped=jumped,
    )


def needed_chunks(vault: Repository) -> set[str]:
    """Every chunk the backups in the vault now reference."""
    return set().union(*(m.referenced() for m in vault.readable_manifests()[0]))


def assert_jumped_where_meant(run: Outcome, jumps: list[tuple[int, str, str]]) -> None:
    """The trace, stamped by the gc's own clock: real time up to the first jump, then each
    offset from the call it was set at; the lock was taken on real time."""
    calls = run.calls()
    assert [offset for offset, _ in run.jumped] == [offset for offset, _, _ in jumps]
    at = [next(i for i, c in enumerate(calls) if c[:2] == (op, key)) for _, op, key in jumps]
    assert ("put", "locks/gc", 0) in calls[: at[0]], calls
    for n, (offset, _, _) in enumerate(jumps):
        end = at[n + 1] if n + 1 < len(at) else len(calls)
        assert all(abs(skew - offset) < 60 for _, _, skew in calls[at[n] + 1 : end]), calls


@pytest.mark.slow
@pytest.mark.parametrize(
    "first, second",
    [
        pytest.param(+HOUR, -HOUR, id="forward-then-back"),
        pytest.param(-HOUR, +HOUR, id="back-then-forward"),
    ],
)
def test_gc_under_a_clock_moved_an_hour(
    tmp_path: Path, clock: FakeClock, fault_ledger: Ledger, first: int, second: int
) -> None:
    """Local vault. The gc's clock jumps when it lists the chunks (before it condemns and
    looks for running writers), and jumps again when it empties the trash (after deleting)."""
    vault = tmp_path / "shared-vault"
    jumps = [(first, "list", "chunks/"), (second, "list", "trash/")]
    run = gc_under_a_moving_clock(tmp_path, clock, ["--path", str(vault)], jumps)
    lost = run.record(
        fault_ledger, needed_chunks(Repository.open(LocalStore(vault))), detected=False
    )
    assert run.gc.code == 0, run.gc.err
    assert_jumped_where_meant(run, jumps)
    ops = [call[:2] for call in run.calls()]
    released = max(i for i, op in enumerate(ops) if op == ("delete", "locks/gc"))
    # it released its lock, and changed nothing after (the vault's usage is measured after it:
    # a listing, a read)
    assert all(op in ("list", "get", "exists", "head") for op, _ in ops[released + 1 :]), ops
    # nothing a good backup needs is gone; everything verifies and restores byte for byte
    assert not lost, f"the gc deleted {len(lost)} chunks that committed backups reference"
    assert run.intact, (run.verified, run.restored)
    # the next gc, on the real clock, runs normally; no lock is left
    assert run.next_gc.code == 0 and run.imported.code == 0, run.next_gc.err + run.imported.err
    assert not (vault / "locks" / "gc").exists()


@pytest.mark.slow
@pytest.mark.s3
def test_gc_on_s3_stops_when_its_clock_leaves_the_signing_window(
    tmp_path: Path, clock: FakeClock, fault_ledger: Ledger, s3_server: S3Server
) -> None:
    """S3 signs every request with the client's clock and refuses it 15 minutes off: a gc
    whose clock jumps an hour stops at its next request, deleting nothing; its lock, which it
    could not release either, is taken over at once by the next gc of the same host."""
    prefix = s3_server.fresh_prefix()
    where = [
        "--s3", f"s3://{s3_server.shared_bucket}/{prefix}",
        "--endpoint-url", s3_server.endpoint_url,
        "--region", s3_server.region,
        "--addressing-style", "path",
    ]  # fmt: skip
    jumps = [(+HOUR, "list", "chunks/")]
    run = gc_under_a_moving_clock(tmp_path, clock, where, jumps)
    vault = Repository.open(s3_server.store(s3_server.shared_bucket, prefix))
    stopped = run.gc.code != 0 and "RequestTimeTooSkewed" in run.gc.err
    lost = run.record(fault_ledger, needed_chunks(vault), detected=stopped)
    assert stopped, run.gc.err
    assert "Traceback" not in run.gc.err and len(run.gc.err.strip().splitlines()) == 1
    assert_jumped_where_meant(run, jumps)
    assert not run.deleted_chunks() and not lost
    assert run.intact, (run.verified, run.restored)
    assert run.next_gc.code == 0, run.next_gc.err  # not stuck behind the dead gc's lock
    assert run.next_gc.end - run.next_gc.start < 10
    assert run.next_gc.result()["deleted_chunks"] >= 1  # web-1's garbage, now
    assert vault.gc_lock() is None


# --- unit level: the gc's time.time moved in-process, no libfaketime ----------------------


def shift_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def a_vault_with_garbage(tmp_path: Path) -> tuple[Repository, Manifest, bytes]:
    """A local vault holding one kept backup and the chunks of one deleted backup."""
    vault = Repository.init(LocalStore(tmp_path / "vault"), chunk_size=CHUNK)
    image = tmp_path / "image"
    image.write_bytes(random.Random(7).randbytes(4 * CHUNK))
    doomed = pipeline.backup_device(image, vault, manifest_id="backup-doomed01", disk_meta={})
    vault.trash_manifest(doomed.id)
    data = random.Random(8).randbytes(4 * CHUNK)
    image.write_bytes(data)
    kept = pipeline.backup_device(image, vault, manifest_id="backup-kept0001", disk_meta={})
    return vault, kept, data


def restores(vault: Repository, manifest: Manifest, data: bytes, tmp_path: Path) -> bool:
    target = tmp_path / f"restored-{manifest.id}"
    target.write_bytes(b"\0" * len(data))
    try:
        pipeline.restore_device(manifest, vault, target, compare_existing=False)
    except BlockvaultError:
        return False
    return pipeline.verify_backup(manifest, vault).ok and target.read_bytes() == data


@pytest.mark.parametrize(
    "offset",
    [+HOUR, -HOUR],
    ids=["an-hour-ahead", "an-hour-behind"],
)
def test_a_skewed_gc_spares_the_chunks_of_a_running_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_ledger: Ledger, offset: int
) -> None:
    """A writer has announced its session and stored its chunks; a gc whose clock is an hour
    off runs before the writer commits (as the gated processes above, in-process)."""
    vault, kept, data = a_vault_with_garbage(tmp_path)
    running = random.Random(9).randbytes(3 * CHUNK)
    session = vault.begin_session("backup-running1")
    stored: list[str | None] = []
    for n in range(3):
        piece = running[n * CHUNK : (n + 1) * CHUNK]
        encoded = vault.encode_chunk(vault.chunk_id(piece), piece)
        vault.put_chunk(encoded)
        stored.append(encoded.chunk_id)
    shift_clock(monkeypatch, offset)
    stats = collect_garbage(vault, grace_seconds=0)
    monkeypatch.undo()
    digest = pipeline.disk_digest(vault, stored, size=len(running), chunk_size=CHUNK)
    committed = Manifest("backup-running1", "backup", len(running), CHUNK, stored, digest)
    vault.write_manifest(committed)  # the writer's commit point, as backup_device does it
    session.end()
    intact = restores(vault, kept, data, tmp_path) and restores(vault, committed, running, tmp_path)
    fault_ledger.record("clock", detected=False, data_intact=intact, note=f"gc at {offset:+d} s")
    assert stats.deleted_chunks == 0, f"gc at {offset:+d} s deleted a running backup's chunks"
    assert intact
    after = collect_garbage(vault, grace_seconds=0)  # the next one, on the real clock
    assert after.deleted_chunks == 4  # only the deleted backup's chunks


def test_a_gc_an_hour_behind_respects_a_live_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_ledger: Ledger
) -> None:
    """Lock ages are read on the store's clock (the mtime of a probe it just wrote), so a gc
    whose own clock is an hour behind sees a live lock as just taken and waits its turn;
    once the holder is done it runs normally, on the same skewed clock."""
    vault, kept, data = a_vault_with_garbage(tmp_path)
    holder = gc_module._Lock(vault)
    holder.acquire()  # a gc on the real clock, alive, about to delete
    shift_clock(monkeypatch, -HOUR)
    with pytest.raises(Conflict, match="holds this vault's lock") as refused:
        collect_garbage(vault, grace_seconds=0)
    holder.check()  # still the holder's
    holder.release()
    after = collect_garbage(vault, grace_seconds=0)
    monkeypatch.undo()
    intact = restores(vault, kept, data, tmp_path)
    fault_ledger.record(
        "clock", detected=refused.value is not None, data_intact=intact, note="gc at -3600 s"
    )
    assert after.deleted_chunks == 4 and vault.gc_lock() is None and intact
