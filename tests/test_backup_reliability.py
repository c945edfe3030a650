"""Issue 3 reliability on real parts (files, SQLite, SeaweedFS): what an admin would check.

Odd sizes and sparse images round-trip bit-identical; GC beside a running backup loses
nothing (RELIABILITY D, I4); cancel and kill -9 leave nothing visible and resume (I2, I10);
an encrypted vault holds no plaintext and refuses wrong keys (I8); every corruption is
named by verify and refused by restore (I5); a disk another process writes is not
overwritten (I10). Slow networks are made with the fault proxy's stalls, never with mocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.api import Blockvault
from core.base.errors import BlockvaultError
from core.engine import pipeline
from core.repo.gc import collect_garbage
from core.repo.repository import Repository
from core.stores.local import LocalStore
from tests.support.cli import CLI, Result, spawn_cli
from tests.support.faultproxy import FaultProxy, Rule
from tests.support.ledger import Ledger
from tests.support.seaweed import S3Server

CHUNK = 262144
MiB = 1 << 20
REPO = Path(__file__).resolve().parents[1]
CONFIG = "[blockvault]\nchunk_size = 262144\ngc_grace_seconds = 0\n"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def run_job(cli: CLI, *argv: str) -> dict:
    """Run a job verb with --json; return the final result object."""
    return job_result(cli(*argv, "--json"))


def job_result(result: Result) -> dict:
    """What `run_job` asserts of a job's run (--json): success, and its final result object."""
    assert result.code == 0, result.err
    last = json.loads(result.out.strip().splitlines()[-1])
    assert last["type"] == "result"
    return last


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def random_file(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def fill(path: str, size: int, seed: int) -> None:
    with open(path, "r+b") as handle:
        handle.write(random.Random(seed).randbytes(size))


def results(out: str) -> list[dict]:
    """The result objects among a job's JSON lines (a failed job prints none)."""
    return [e for e in map(json.loads, out.splitlines()) if e.get("type") == "result"]


def finished(result: Result) -> dict:
    """A job's final result object, or {} when it failed (for the fault ledger)."""
    found = results(result.out) if result.code == 0 else []
    return found[-1] if found else {}


def vault_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- for the fault ledger: outcomes a test records before it asserts them -------------------


def refused(result: Result) -> str:
    """What `CLI.fails` asserts, on a result already in hand (recorded in the fault ledger
    first): a non-zero exit and one line on stderr, no traceback. Returns that line."""
    assert result.code != 0, f"unexpectedly succeeded: {result.out}"
    assert "Traceback" not in result.err
    lines = [line for line in result.err.strip().splitlines() if line]
    assert len(lines) == 1, result.err
    return lines[0]


def said(result: Result, *words: str) -> bool:
    """The command failed and its error names every word (what a test counts as detected)."""
    return result.code != 0 and all(word in result.err for word in words)


def caught(kind: type[BaseException], action: Callable[[], object]) -> BaseException | None:
    """The `kind` exception `action` raised, or None (in place of pytest.raises, so the
    outcome can be recorded before it is asserted)."""
    try:
        action()
    except kind as exc:
        return exc
    return None


def tree(root: Path, *folders: str) -> dict[str, str]:
    """Digest of every file under `root` (or only under its `folders`)."""
    tops = [root / folder for folder in folders] if folders else [root]
    return {str(p.relative_to(root)): sha(p) for top in tops for p in vault_files(top)}


def stored_backups(vault: Path) -> dict[str, str]:
    """Digest of every manifest and chunk file of a local vault."""
    return tree(vault, "manifests", "chunks")


def kept(before: dict[str, str], after: dict[str, str]) -> bool:
    """Every file of `before` is still there with the same bytes (new files may have come)."""
    return all(after.get(name) == digest for name, digest in before.items())


# --- odd sizes and sparse images ----------------------------------------------------------


@pytest.mark.slow
def test_odd_sizes_round_trip_bit_identical(cli: CLI, tmp_path: Path) -> None:
    for size in (1, CHUNK - 1, CHUNK + 1, 3 * CHUNK + 5):
        image = tmp_path / f"raw-{size}.img"
        data = random_file(image, size, seed=size)
        cli.ok("disk", "register", f"odd{size}", "--path", str(image))
        backup = run_job(cli, "backup", "create", f"odd{size}")
        assert backup["size"] == size and backup["bytes_new"] == size
        assert backup["bytes_zero"] == 0
        copy = run_job(cli, "backup", "restore", backup["id"], "--to-new", f"copy{size}")
        restored = Path(copy["path"]).read_bytes()
        assert len(restored) == size and restored == data, f"size {size} differs"
        assert run_job(cli, "backup", "verify", backup["id"])["ok"]
    # a larger new disk: the backup's bytes first, zeros after
    backup_id = cli.ok("backup", "list", "--disk", f"odd{CHUNK + 1}")[0]["id"]
    big = run_job(cli, "backup", "restore", backup_id, "--to-new", "bigger", "--size", "2M")
    content = Path(big["path"]).read_bytes()
    assert len(content) == 2 * MiB and cli.ok("disk", "show", "bigger")["size"] == 2 * MiB
    assert content[: CHUNK + 1] == (tmp_path / f"raw-{CHUNK + 1}.img").read_bytes()
    assert content[CHUNK + 1 :].count(0) == 2 * MiB - CHUNK - 1
    # changing the 5-byte tail chunk stores exactly those 5 bytes again
    tail = tmp_path / f"raw-{3 * CHUNK + 5}.img"
    with open(tail, "r+b") as handle:
        handle.seek(3 * CHUNK + 4)
        last = handle.read(1)
        handle.seek(3 * CHUNK + 4)
        handle.write(bytes([last[0] ^ 0xFF]))
    second = run_job(cli, "backup", "create", f"odd{3 * CHUNK + 5}")
    assert second["bytes_new"] == 5 and second["bytes_reused"] == 3 * CHUNK
    again = run_job(cli, "backup", "restore", second["id"], "--to-new", "tail-copy")
    assert sha(again["path"]) == sha(tail)
    # an empty image is refused with a clear error, not a zero-chunk backup
    (tmp_path / "empty.img").write_bytes(b"")
    assert "empty" in cli.fails("disk", "register", "empty", "--path", str(tmp_path / "empty.img"))


@pytest.mark.slow
def test_sparse_image_with_islands_at_odd_offsets_stays_sparse(cli: CLI, tmp_path: Path) -> None:
    image = tmp_path / "sparse.img"
    size = 64 * MiB
    islands = [(1, 100), (5 * MiB + 12345, 300_000), (CHUNK * 40 - 7, 14), (size - 3, 3)]
    rng = random.Random(11)
    with open(image, "wb") as handle:
        handle.truncate(size)
        for offset, length in islands:
            handle.seek(offset)
            handle.write(rng.randbytes(length))
    cli.ok("disk", "register", "sparse", "--path", str(image))
    backup = run_job(cli, "backup", "create", "sparse")
    touched = {o // CHUNK for off, n in islands for o in (off, off + n - 1)}
    assert backup["bytes_zero"] == size - len(touched) * CHUNK
    assert backup["bytes_new"] == len(touched) * CHUNK
    assert backup["bytes_stored"] < 2 * MiB
    copy = run_job(cli, "backup", "restore", backup["id"], "--to-new", "sparse-copy")
    assert sha(copy["path"]) == sha(image)
    allocated = os.stat(copy["path"]).st_blocks * 512
    assert allocated <= (len(touched) + 1) * CHUNK, f"restored image allocates {allocated} bytes"


# --- GC beside a running backup (RELIABILITY D) ---------------------------------------------


class Gate:
    """A progress subscriber that holds the first event (a slow screen) until released."""

    def __init__(self, action=None) -> None:  # type: ignore[no-untyped-def]
        self.reached = threading.Event()
        self.release = threading.Event()
        self.action = action
        self._first = True
        self._lock = threading.Lock()

    def __call__(self, event) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            first, self._first = self._first, False
        if not first:
            return
        if self.action is not None:
            self.action()
        self.reached.set()
        if self.action is None:
            assert self.release.wait(60), "gate never released"


@pytest.fixture
def bv(tmp_path: Path) -> Iterator[Blockvault]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG + "workers = 2\n")
    service = Blockvault.open(home=home)
    yield service
    service.close()


@pytest.mark.slow
def test_gc_while_a_backup_runs_into_the_same_vault(bv: Blockvault, fault_ledger: Ledger) -> None:
    disk = bv.create_disk("d", 16 * MiB)
    fill(disk["path"], 16 * MiB, seed=21)
    old = bv.start_backup("d").start().wait(60)
    with open(disk["path"], "r+b") as handle:  # two chunks only the old backup has
        handle.seek(CHUNK * 3)
        handle.write(os.urandom(2 * CHUNK))
    expected = Path(disk["path"]).read_bytes()
    gate = Gate()
    running = bv.start_backup("d")
    running.subscribe(gate)
    running.start()
    assert gate.reached.wait(30)
    try:
        bv.delete_backup(old["id"])
        gc = bv.start_gc(None, grace_seconds=0).start().wait(60)
        assert not running.done
    finally:
        gate.release.set()
    new = running.wait(60)
    after = bv.start_gc(None, grace_seconds=0).start().wait(60)
    verified = bv.start_verify(new["id"]).start().wait(60)
    copy = bv.start_restore(new["id"], to_original=False, new_name="copy").start().wait(60)
    restored = Path(copy["path"]).read_bytes()
    fault_ledger.record(
        "concurrency",
        detected=gc["deferred_chunks"] > 0 and gc["deleted_chunks"] == 0,
        data_intact=verified["ok"] and restored == expected,
        silent_corruption=verified["ok"] and restored != expected,
        note="gc of a deleted backup while a backup reusing its chunks runs",
    )
    # GC condemned the old backup's chunks but deleted none while the writer was live
    assert gc["condemned_chunks"] > 0 and gc["deferred_chunks"] > 0
    assert gc["deleted_chunks"] == 0
    assert new["bytes_reused"] >= 60 * CHUNK  # it shares almost everything with the old one
    assert after["deleted_chunks"] == 2  # the two chunks only the deleted backup needed
    assert verified["ok"]
    assert restored == expected


def _vault(tmp_path: Path) -> Repository:
    return Repository.init(LocalStore(tmp_path / "vault"), chunk_size=CHUNK)


def test_a_writer_rescues_condemned_chunks_and_gc_keeps_them(
    tmp_path: Path, fault_ledger: Ledger
) -> None:
    vault = _vault(tmp_path)
    image = tmp_path / "img"
    data = random_file(image, 6 * CHUNK, seed=31)
    first = pipeline.backup_device(image, vault, manifest_id="backup-first001", disk_meta={})
    vault.trash_manifest(first.id)
    condemned = collect_garbage(vault, grace_seconds=3600)  # condemn now, delete later
    assert condemned.condemned_chunks == 6 and condemned.deleted_chunks == 0
    time.sleep(0.02)  # the rescue's mtime must be later than the condemned list's
    session = vault.begin_session("backup-second01")
    try:
        assert session.condemned == first.referenced()  # a late writer sees the list
        gate_passes: list = []

        def gc_mid_backup() -> None:  # the writer has rescued chunk 0, GC runs now
            gate_passes.append(collect_garbage(vault, grace_seconds=0))

        from core.base.progress import ProgressReporter

        reporter = ProgressReporter("job-x", "backing up", len(data))
        reporter.subscribers.append(Gate(action=gc_mid_backup))
        second = pipeline.backup_device(
            image, vault, manifest_id="backup-second02", disk_meta={}, reporter=reporter, workers=1
        )
    finally:
        session.end()
    stats = gate_passes[0]
    present = all(vault.has_chunk(chunk_id) for chunk_id in second.referenced())
    verified = pipeline.verify_backup(second, vault).ok
    target = tmp_path / "restored"
    target.write_bytes(b"\0" * len(data))
    pipeline.restore_device(second, vault, target, compare_existing=False)
    restored = target.read_bytes()
    final = collect_garbage(vault, grace_seconds=0)
    fault_ledger.record(
        "concurrency",
        detected=stats.deferred_chunks > 0 and stats.deleted_chunks == 0,
        data_intact=present and verified and restored == data and final.deleted_chunks == 0,
        silent_corruption=verified and restored != data,
        note="gc mid-backup over chunks the writer rescued from the condemned list",
    )
    # a live writer defers every deletion; it rescued (rewrote) each condemned chunk it reused
    assert stats.deleted_chunks == 0 and stats.deferred_chunks == 6, stats
    assert present
    assert verified
    assert restored == data
    assert final.deleted_chunks == 0


@pytest.mark.slow
def test_gc_between_reading_the_parent_and_announcing_the_session(
    tmp_path: Path, s3_server: S3Server, fault_ledger: Ledger
) -> None:
    """The parent's chunks a writer will reuse unchecked must be protected by its session:
    the session is announced before the parent is read, so a GC in between cannot delete them
    (with the old order this lost every reused chunk)."""
    image = tmp_path / "img"
    data = random_file(image, 8 * CHUNK, seed=35)
    with FaultProxy(("127.0.0.1", s3_server.port)) as proxy:
        prefix = s3_server.fresh_prefix()
        slow = Repository.init(
            s3_server.store(s3_server.shared_bucket, prefix, endpoint_url=proxy.endpoint_url),
            chunk_size=CHUNK,
        )
        direct = Repository.open(s3_server.store(s3_server.shared_bucket, prefix))
        parent = pipeline.backup_device(image, slow, manifest_id="backup-parent01", disk_meta={})
        time.sleep(1.1)  # S3 mtimes have 1 s resolution: the chunks must predate GC's list
        proxy.add(Rule("stall", 1, "PUT", path="/sessions/", seconds=1.5))
        result: list = []
        writer = threading.Thread(
            target=lambda: result.append(
                pipeline.backup_device(
                    image, slow, manifest_id="backup-child001", disk_meta={}, parent_id=parent.id
                )
            )
        )
        writer.start()
        deadline = time.monotonic() + 10
        while not proxy.injected["stall"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.injected["stall"] == 1  # the writer's session announcement is in flight
        direct.trash_manifest(parent.id)
        gc = collect_garbage(direct, grace_seconds=0)
        writer.join(30)
        (child,) = result
    report = pipeline.verify_backup(child, direct)
    target = tmp_path / "restored"
    target.write_bytes(b"\0" * len(data))
    pipeline.restore_device(child, direct, target, compare_existing=False)
    restored = target.read_bytes()
    fault_ledger.record(
        "concurrency",
        detected=report.ok,  # the writer stored again what GC deleted under it
        data_intact=report.ok and restored == data,
        silent_corruption=report.ok and restored != data,
        note="gc between a writer reading its parent and announcing its session (S3)",
    )
    assert gc.deleted_chunks == 8  # nothing else protected them at that moment
    assert report.ok, report.describe()
    assert restored == data


@pytest.mark.slow
def test_a_rescue_during_gc_deletion_is_not_lost(
    tmp_path: Path, s3_server: S3Server, fault_ledger: Ledger
) -> None:
    """A writer that starts while GC is deleting waits for GC's lock before it reads the
    condemned lists; before that wait existed, GC deleted the chunks it rescued."""
    image = tmp_path / "img"
    data = random_file(image, 8 * CHUNK, seed=37)
    with FaultProxy(("127.0.0.1", s3_server.port)) as proxy:
        prefix = s3_server.fresh_prefix()
        direct = Repository.init(s3_server.store(s3_server.shared_bucket, prefix), chunk_size=CHUNK)
        slow = Repository.open(
            s3_server.store(s3_server.shared_bucket, prefix, endpoint_url=proxy.endpoint_url)
        )
        old = pipeline.backup_device(image, direct, manifest_id="backup-old00001", disk_meta={})
        time.sleep(1.1)  # S3 mtimes have 1 s resolution
        direct.trash_manifest(old.id)
        assert collect_garbage(direct, grace_seconds=3600).condemned_chunks == 8
        time.sleep(1.1)  # a rescue is recognisably later than the condemned list
        proxy.add(Rule("stall", 1, "DELETE", path="/chunks/", seconds=2.0))
        gc = threading.Thread(target=lambda: collect_garbage(slow, grace_seconds=0))
        gc.start()
        deadline = time.monotonic() + 10
        while not proxy.injected["stall"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.injected["stall"] == 1  # GC has listed the chunks and is deleting
        late = pipeline.backup_device(image, direct, manifest_id="backup-late0001", disk_meta={})
        gc.join(30)
    report = pipeline.verify_backup(late, direct)
    target = tmp_path / "restored"
    target.write_bytes(b"\0" * len(data))
    pipeline.restore_device(late, direct, target, compare_existing=False)
    restored = target.read_bytes()
    fault_ledger.record(
        "concurrency",
        detected=report.ok,  # the writer waited for GC's lock before trusting the list
        data_intact=report.ok and restored == data,
        silent_corruption=report.ok and restored != data,
        note="a backup rescuing condemned chunks while gc deletes them (S3)",
    )
    assert report.ok, report.describe()
    assert restored == data


# --- cancel, kill -9 ------------------------------------------------------------------------


@pytest.mark.slow
def test_cancelled_backup_leaves_nothing_visible_and_resumes(
    bv: Blockvault, fault_ledger: Ledger
) -> None:
    disk = bv.create_disk("d", 16 * MiB)
    fill(disk["path"], 16 * MiB, seed=41)
    handle = bv.start_backup("d")
    handle.subscribe(Gate(action=handle.cancel))
    handle.start()
    error = caught(BlockvaultError, lambda: handle.wait(60))
    job = bv.get_job(handle.id)
    listed = bv.list_backups(include_deleted_disks=True)
    vault_dir = bv.ctx.locations.default_vault_dir
    manifests = list((vault_dir / "manifests").glob("*"))
    sessions = list((vault_dir / "sessions").glob("*"))
    disk_status = bv.get_disk("d")["status"]
    again = bv.start_backup("d").start().wait(60)
    copy = bv.start_restore(again["id"], to_original=False, new_name="copy").start().wait(60)
    intact = sha(copy["path"]) == sha(disk["path"])
    fault_ledger.record(
        "kill",
        detected=error is not None and job["status"] == "cancelled",
        data_intact=intact and disk_status == "available",
        partial_visible=bool(listed or manifests),
        note="backup cancelled at its first progress event, then run again",
    )
    assert error is not None and "cancelled" in str(error)
    assert handle.status == "cancelled"
    assert job["status"] == "cancelled"
    assert listed == []
    assert disk_status == "available"
    assert not manifests
    assert not sessions  # no session left to block GC
    assert again["bytes_reused"] > 0 and again["bytes_new"] < 16 * MiB
    assert again["bytes_new"] + again["bytes_reused"] == 16 * MiB
    assert intact


@pytest.fixture
def slow_s3(cli: CLI, s3_server: S3Server) -> Iterator[FaultProxy]:
    """An S3 vault `s3` reached through a fault proxy (stalls make a slow network)."""
    (cli.home / "config.toml").write_text(CONFIG + "workers = 2\n")
    with FaultProxy(("127.0.0.1", s3_server.port)) as proxy:
        cli.ok(
            "vault", "add", "s3",
            "--s3", f"s3://{s3_server.shared_bucket}/{s3_server.fresh_prefix()}",
            "--endpoint-url", proxy.endpoint_url,
            "--region", s3_server.region,
            "--addressing-style", "path",
        )  # fmt: skip
        yield proxy


def kill_after_progress(child: subprocess.Popen[str], ready=lambda event: True) -> dict:  # type: ignore[no-untyped-def]
    """SIGKILL the child at its first progress line for which `ready` holds."""
    try:
        for line in child.stdout:  # type: ignore[union-attr]
            event = json.loads(line)
            assert event["type"] == "progress", f"finished before the kill: {event}"
            if not event["final"] and ready(event):
                os.kill(child.pid, signal.SIGKILL)
                return event
        raise AssertionError(f"no progress line: {child.stderr.read()}")  # type: ignore[union-attr]
    finally:
        child.kill()
        child.wait()


def catalog_integrity(cli: CLI) -> str:
    with sqlite3.connect(cli.home / "catalog.sqlite") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def catalog_ok(cli: CLI) -> None:
    assert catalog_integrity(cli) == "ok"


@pytest.mark.slow
def test_kill_9_during_backup_then_backup_again_resumes(
    cli: CLI, slow_s3: FaultProxy, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "16M")
    fill(disk["path"], 16 * MiB, seed=51)
    slow_s3.add(Rule("stall", None, "PUT", path="/chunks/", seconds=0.05))
    event = kill_after_progress(spawn_cli(cli, "backup", "create", "d", "--vault", "s3"))
    assert event["bytes_done"] < 16 * MiB
    slow_s3.clear()
    integrity = catalog_integrity(cli)
    listed = cli.ok("backup", "list", "--all")
    job = next(j for j in cli.ok("job", "list") if j["kind"] == "backup")
    disk_status = cli.ok("disk", "show", "d")["status"]
    again = run_job(cli, "backup", "create", "d", "--vault", "s3")
    copy = run_job(cli, "backup", "restore", again["id"], "--to-new", "copy")
    intact = sha(copy["path"]) == sha(disk["path"])
    fault_ledger.record(
        "kill",
        detected=job["status"] == "failed" and "interrupted" in (job["error"] or ""),
        data_intact=integrity == "ok" and intact and disk_status == "available",
        partial_visible=listed != [],
        note="kill -9 of a backup into S3 mid-way, then backed up again",
    )
    catalog_ok(cli)
    assert listed == []
    assert job["status"] == "failed" and "interrupted" in job["error"]
    assert disk_status == "available"
    assert again["bytes_reused"] > 0 and again["bytes_new"] < 16 * MiB
    assert intact


@pytest.mark.slow
def test_kill_9_during_restore_marks_incomplete_then_resumes(
    cli: CLI, slow_s3: FaultProxy, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "16M")
    fill(disk["path"], 16 * MiB, seed=61)
    backup = run_job(cli, "backup", "create", "d", "--vault", "s3")
    slow_s3.add(Rule("stall", None, "GET", path="/chunks/", seconds=0.08))
    state = cli.home / "pool"

    def state_saved(event: dict) -> bool:  # resume needs a saved state (flushed each second)
        return any(state.rglob(f"restore-{backup['id']}.state"))

    child = spawn_cli(cli, "backup", "restore", backup["id"], "--to-new", "copy")
    event = kill_after_progress(child, state_saved)
    assert event["bytes_done"] < 16 * MiB
    slow_s3.clear()
    integrity = catalog_integrity(cli)
    half = cli.ok("disk", "show", "copy")
    job = next(j for j in cli.ok("job", "list") if j["kind"] == "restore")
    done = run_job(cli, "backup", "restore", backup["id"], "--to-new", "copy")
    intact = sha(done["path"]) == sha(disk["path"])
    fault_ledger.record(
        "kill",
        detected=job["status"] == "failed" and "interrupted" in (job["error"] or ""),
        data_intact=integrity == "ok" and intact,
        # a half-restored disk that passed for a whole one
        partial_visible=not half["restore_incomplete"] or half["status"] == "available",
        note="kill -9 of a restore from S3 mid-way, then resumed",
    )
    catalog_ok(cli)
    assert half["restore_incomplete"] and half["status"] == "error-restoring"
    assert job["status"] == "failed" and "interrupted" in job["error"]
    assert done["bytes_skipped"] > 0 and done["bytes_fetched"] < 16 * MiB  # resumed
    assert intact
    copy = cli.ok("disk", "show", "copy")
    assert not copy["restore_incomplete"] and copy["status"] == "available"
    assert not any(state.rglob("restore-*.state"))


# --- encryption -----------------------------------------------------------------------------

MARKER = b"PLAINTEXT-MARKER-blockvault-3f9e1c"
PASSPHRASE = "correct horse battery staple 42"


@pytest.mark.slow
def test_encrypted_vault_holds_no_plaintext_and_refuses_wrong_keys(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_ledger: Ledger
) -> None:
    enc_dir = tmp_path / "enc-vault"
    monkeypatch.delenv("BLOCKVAULT_PASSPHRASE", raising=False)
    assert "BLOCKVAULT_PASSPHRASE" in cli.fails(
        "vault", "add", "enc", "--path", str(enc_dir), "--encrypt"
    )
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", PASSPHRASE)
    vault = cli.ok("vault", "add", "enc", "--path", str(enc_dir), "--encrypt")
    assert vault["encrypted"]
    disk = cli.ok("disk", "create", "secret", "--size", "2M")
    with open(disk["path"], "r+b") as handle:  # the marker all over, amid random bytes
        handle.write(b"".join(MARKER + os.urandom(1000) for _ in range(1900)))
    backup = run_job(cli, "backup", "create", "secret", "--vault", "enc")
    # control: the same disk in the plain default vault does show the marker
    run_job(cli, "backup", "create", "secret")
    assert any(MARKER in p.read_bytes() for p in vault_files(cli.home / "vault"))
    files = vault_files(enc_dir)
    catalog = (cli.home / "catalog.sqlite").read_bytes()
    leaked = [p for p in files if MARKER in p.read_bytes() or PASSPHRASE.encode() in p.read_bytes()]
    fault_ledger.secrets(
        scanned=len(files) + 1, hits=len(leaked) + (PASSPHRASE.encode() in catalog)
    )
    assert len(files) > 3
    for path in files:
        content = path.read_bytes()
        assert MARKER not in content, f"plaintext in {path}"
        assert PASSPHRASE.encode() not in content
    assert PASSPHRASE.encode() not in catalog
    copy = run_job(cli, "backup", "restore", backup["id"], "--to-new", "copy")
    restored = sha(copy["path"]) == sha(disk["path"])
    assert restored
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", "not the passphrase")
    wrong_restore = cli("backup", "restore", backup["id"], "--to-new", "wrong")
    wrong_verify = cli("backup", "verify", backup["id"])
    monkeypatch.delenv("BLOCKVAULT_PASSPHRASE")
    no_key = cli("backup", "restore", backup["id"], "--to-new", "nokey")
    disks = {d["name"] for d in cli.ok("disk", "list")}
    errors = [wrong_restore, wrong_verify, no_key]
    fault_ledger.secrets(
        scanned=len(errors),
        hits=sum("not the passphrase" in r.err or PASSPHRASE in r.err for r in errors),
    )
    nothing_written = disks == {"secret", "copy"}  # no disk came out of a wrong key
    for result, words, note in (
        (wrong_restore, ("wrong passphrase",), "restore with a wrong passphrase"),
        (wrong_verify, ("wrong passphrase",), "verify with a wrong passphrase"),
        (no_key, ("encrypted", "BLOCKVAULT_PASSPHRASE"), "restore without the passphrase"),
    ):
        fault_ledger.record(
            "hostile",
            detected=said(result, *words),
            data_intact=restored and nothing_written,
            silent_corruption=result.code == 0,  # it read the vault with the wrong key
            note=note,
        )
    error = refused(wrong_restore)
    assert "wrong passphrase" in error and "not the passphrase" not in error
    assert "wrong passphrase" in refused(wrong_verify)
    error = refused(no_key)
    assert "encrypted" in error and "BLOCKVAULT_PASSPHRASE" in error
    assert all("not the passphrase" not in r.err and PASSPHRASE not in r.err for r in errors)
    assert disks == {"secret", "copy"}


# --- corruption -----------------------------------------------------------------------------


def _damage(kind: str, home: Path, backup_id: str) -> tuple[list[int], str]:
    """Damage the vault; return the chunk indices hit and the word the error must name."""
    vault = Repository.open(LocalStore(home / "vault"))
    manifest = vault.read_manifest(backup_id)
    chunk_file = lambda i: home / "vault" / "chunks" / manifest.chunks[i][:2] / manifest.chunks[i]  # noqa: E731
    if kind == "truncate":
        path = chunk_file(5)
        path.write_bytes(path.read_bytes()[: CHUNK // 3])
        return [5], "chunk"
    if kind == "delete":
        chunk_file(2).unlink()
        return [2], "missing"
    if kind == "swap":
        a, b = chunk_file(1), chunk_file(6)
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)
        return [1, 6], "chunk"
    path = home / "vault" / "manifests" / backup_id
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return [], "manifest"


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("truncate", marks=pytest.mark.slow),
        "delete",
        pytest.param("swap", marks=pytest.mark.slow),
        "manifest",
    ],
)
def test_corruption_is_named_by_verify_and_refused_by_restore(
    cli: CLI, kind: str, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=71)
    original = sha(disk["path"])
    backup = run_job(cli, "backup", "create", "d")
    hit, word = _damage(kind, cli.home, backup["id"])
    verify = cli("backup", "verify", backup["id"], "--json")
    restore = cli("backup", "restore", backup["id"], "--to-new", "copy", "--json")
    copy = cli.ok("disk", "show", "copy")
    wrong_bytes = restore.code == 0 and sha(copy["path"]) != original
    fault_ledger.record(
        "corrupt",
        detected=said(verify, word, backup["id"])
        and all(f"chunk {i} (offset {i * CHUNK}" in verify.err for i in hit),
        data_intact=not wrong_bytes,  # refused, or (if restored) the right bytes
        silent_corruption=verify.code == 0 or wrong_bytes,
        partial_visible=restore.code != 0 and not copy["restore_incomplete"],
        note=f"{kind} ({'manifest' if not hit else f'chunks {hit}'})",
    )
    assert verify.code != 0 and "Traceback" not in verify.err
    assert results(verify.out) == []
    assert word in verify.err and backup["id"] in verify.err
    for index in hit:
        assert f"chunk {index} (offset {index * CHUNK}" in verify.err, verify.err
    assert restore.code != 0 and "Traceback" not in restore.err
    assert results(restore.out) == [] and word in restore.err
    assert copy["restore_incomplete"] and copy["status"] != "available"


def test_every_single_bit_flip_in_a_manifest_is_detected(
    tmp_path: Path, fault_ledger: Ledger
) -> None:
    vault = _vault(tmp_path)
    image = tmp_path / "img"
    random_file(image, 3 * CHUNK + 5, seed=81)
    manifest = pipeline.backup_device(
        image, vault, manifest_id="backup-flip0001", disk_meta={"name": "d", "size": 1}
    )
    path = tmp_path / "vault" / "manifests" / manifest.id
    original = path.read_bytes()
    silent = []
    for position in range(len(original)):
        for bit in (0x01, 0x80):
            damaged = bytearray(original)
            damaged[position] ^= bit
            path.write_bytes(bytes(damaged))
            note = f"manifest byte {position} bit {bit:#04x}"
            try:
                read = vault.read_manifest(manifest.id)
            except BlockvaultError:
                fault_ledger.record("corrupt", detected=True, note=note)
                continue
            changed = read.to_bytes() != manifest.to_bytes()
            passes = pipeline.verify_backup(read, vault).ok
            fault_ledger.record(
                "corrupt",
                detected=not passes,
                data_intact=not (changed and passes),
                silent_corruption=changed and passes,
                note=note + ("" if changed else ": read back unchanged"),
            )
            if changed and passes:
                silent.append((position, bit))
    assert silent == [], f"{len(silent)} undetected manifest bit flips"


def test_bit_flips_in_a_compressed_chunk_are_typed_damage(
    tmp_path: Path, fault_ledger: Ledger
) -> None:
    vault = _vault(tmp_path)
    image = tmp_path / "img"
    image.write_bytes(b"".join(b"line %06d of a text file\n" % i for i in range(9000))[:CHUNK])
    manifest = pipeline.backup_device(image, vault, manifest_id="backup-flip0002", disk_meta={})
    (chunk_id,) = manifest.referenced()
    path = tmp_path / "vault" / "chunks" / chunk_id[:2] / chunk_id
    original = path.read_bytes()
    assert original[0] == 1 and len(original) < CHUNK // 4  # zstd-compressed
    content = image.read_bytes()
    positions = [*range(min(40, len(original))), len(original) // 2, len(original) - 1]
    detected = 0
    for position in positions:  # the frame header above all: sizes, flags, window
        for bit in (0x01, 0x10, 0x80):
            damaged = bytearray(original)
            damaged[position] ^= bit
            path.write_bytes(bytes(damaged))
            report = pipeline.verify_backup(manifest, vault)  # typed errors only, no MemoryError
            note = f"compressed chunk byte {position} bit {bit:#04x}"
            if report.ok:  # a flip zstd ignores: the content (checked by its id) is intact
                same = vault.get_chunk(chunk_id) == content
                fault_ledger.record(
                    "corrupt",
                    detected=False,
                    data_intact=same,
                    silent_corruption=not same,
                    note=note + ": ignored by zstd, content intact" if same else note,
                )
                assert same
            else:
                detected += 1
                fault_ledger.record("corrupt", detected=True, note=note)
                assert report.damaged[0]["index"] == 0
    assert detected >= len(positions) * 3 - 6
    path.write_bytes(original)
    assert pipeline.verify_backup(manifest, vault).ok


# --- restore onto a disk another process writes ---------------------------------------------


@pytest.mark.slow
def test_restore_to_original_refused_while_another_process_writes_it(
    cli: CLI, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=91)
    backup = run_job(cli, "backup", "create", "d")
    original = sha(disk["path"])
    with open(disk["path"], "r+b") as handle:
        handle.write(b"changed since the backup")
    changed = sha(disk["path"])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; f = open({disk['path']!r}, 'r+b'); print('ok', flush=True); "
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"ok"  # type: ignore[union-attr]
        result = cli("backup", "restore", backup["id"], "--to-original", "--yes")
    finally:
        holder.kill()
        holder.wait()
    untouched = sha(disk["path"]) == changed
    safety = [s for s in cli.ok("snapshot", "list", "--disk", "d") if s["kind"] == "safety"]
    status = cli.ok("disk", "show", "d")["status"]
    run_job(cli, "backup", "restore", backup["id"], "--to-original", "--yes")
    restored = sha(disk["path"]) == original
    fault_ledger.record(
        "concurrency",
        detected=said(result, "held open for writing", str(holder.pid)),
        data_intact=untouched and restored,
        note="restore to original while another process holds the disk open for writing",
    )
    error = refused(result)
    assert "held open for writing" in error and str(holder.pid) in error
    assert untouched  # not a byte written
    assert safety == []
    assert status == "available"
    assert restored


@pytest.mark.slow
def test_a_writer_waits_for_a_running_gc_but_not_for_a_dead_one(
    tmp_path: Path, fault_ledger: Ledger
) -> None:
    """The GC lock makes writers wait (so GC never deletes what they rescue); a lock left by
    a GC killed on this host does not block backups for its whole lease."""
    import socket

    vault = _vault(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = {"owner": f"{socket.gethostname()}:{dead.pid}:dead", "at": time.time()}
    vault.store.put("locks/gc", json.dumps(lock).encode())
    started = time.monotonic()
    vault.begin_session("backup-afterdead").end()
    waited_dead = time.monotonic() - started
    # the vault holds no backup: nothing to lose here, only whether the writer waited
    fault_ledger.record(
        "kill",
        detected=waited_dead < 2,
        note="a gc lock left by a gc killed on this host (empty vault)",
    )
    assert waited_dead < 2
    lock["owner"] = f"{socket.gethostname()}:{os.getpid()}:alive"  # a live holder: wait
    vault.store.put("locks/gc", json.dumps(lock).encode())
    threading.Timer(1.0, lambda: vault.store.delete("locks/gc")).start()
    started = time.monotonic()
    vault.begin_session("backup-afterlive").end()
    waited_live = time.monotonic() - started
    fault_ledger.record(
        "concurrency",
        detected=waited_live >= 0.9,
        note="a writer starting while a live gc holds the lock (empty vault)",
    )
    assert waited_live >= 0.9


def test_a_disk_written_during_its_backup_is_reported(bv: Blockvault, fault_ledger: Ledger) -> None:
    """RELIABILITY C: a source written to while it is read is detected and reported, in the
    result, the summary line and the manifest, never silently."""
    disk = bv.create_disk("busy", 8 * MiB)
    fill(disk["path"], 8 * MiB, seed=71)
    calm = bv.start_backup("busy").start().wait(60)
    assert calm["warnings"] == [] and "warning" not in calm["summary"]

    def scribble() -> None:
        with open(disk["path"], "r+b") as handle:
            handle.seek(5 * MiB)
            handle.write(b"written during the backup")

    handle = bv.start_backup("busy")
    gate = Gate(action=scribble)
    gate.release.set()
    handle.subscribe(gate)
    result = handle.start().wait(60)
    from core.ops.vaults import get_vault, open_repository

    manifest = open_repository(bv.ctx, get_vault(bv.ctx, None)).read_manifest(result["id"])
    warned = bool(result["warnings"]) and "written to while it was read" in result["warnings"][0]
    calm_ok = bv.start_verify(calm["id"]).start().wait(60)["ok"]
    fault_ledger.record(
        "concurrency",
        detected=warned,
        # the earlier backup is untouched; the inconsistent one carries its warning
        data_intact=calm_ok and manifest.warnings == result["warnings"],
        silent_corruption=not result["warnings"],  # an inconsistent copy reported good
        note="another process writes the disk while it is backed up",
    )
    assert result["warnings"] and "written to while it was read" in result["warnings"][0]
    assert "warning:" in result["summary"]
    assert manifest.warnings == result["warnings"]
    assert calm_ok


def test_a_gc_whose_lease_lapsed_fences_itself_and_another_takes_over(
    tmp_path: Path, fault_ledger: Ledger
) -> None:
    """I9: a GC suspended past its lease (its lock file's age says so) loses the lock to the
    next GC, and, resumed, deletes nothing more (self-fencing)."""
    from core.base.errors import Conflict
    from core.repo import gc as gc_module

    vault = _vault(tmp_path)
    image = tmp_path / "img"
    random_file(image, 4 * CHUNK, seed=81)
    doomed = pipeline.backup_device(image, vault, manifest_id="backup-doomed01", disk_meta={})
    vault.trash_manifest(doomed.id)
    suspended = gc_module._Lock(vault)
    suspended.acquire()
    # a live holder keeps the vault to itself
    second = caught(Conflict, lambda: collect_garbage(vault, grace_seconds=0))
    fault_ledger.record(
        "concurrency",
        detected=second is not None and "holds this vault's lock" in str(second),
        data_intact=vault.has_chunk(next(iter(doomed.referenced()))),  # it deleted nothing
        note="a second gc while a live one holds the lock",
    )
    assert isinstance(second, Conflict) and "holds this vault's lock" in str(second)
    lock_file = tmp_path / "vault" / "locks" / "gc"
    past = time.time() - vault.gc_lease - 5
    os.utime(lock_file, (past, past))  # ... then it sleeps past its lease (SIGSTOP, suspend)
    suspended.taken_at -= vault.gc_lease
    taken_over = collect_garbage(vault, grace_seconds=0)
    resumed = caught(Conflict, suspended.check)  # resumed: it must stop before deleting anything
    suspended.taken_at = time.monotonic()  # even within its own clock, the lock is not its own
    own_clock = caught(Conflict, suspended.check)
    # only a trashed backup is in the vault: what counts is that the resumed gc stops
    fault_ledger.record(
        "concurrency",
        detected=resumed is not None and own_clock is not None,
        note="a gc suspended past its lease resumes after another took over (no live backup)",
    )
    assert taken_over.deleted_chunks == 4
    assert isinstance(resumed, Conflict) and re.search(r"lease|lost its lock", str(resumed))
    assert isinstance(own_clock, Conflict) and "lost its lock" in str(own_clock)
