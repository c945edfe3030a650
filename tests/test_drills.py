"""Restore drills through the real CLI on real filesystems: a backup of an ext4 (or XFS) disk
image made with mkfs is restored into the pool's scratch area, its chunks and digest checked,
its filesystem checked read-only (e2fsck -fn, xfs_repair -n), the restore time recorded as the
RTO, and the scratch file removed on every path. A damaged chunk or a damaged filesystem is a
failed drill: one line, a `drill.failed` event, status failed. Scheduled drills claim their
policy slot once."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from core.api import Blockvault
from core.catalog.models import Backup, Drill, Job, PolicySlot
from core.ops import drills
from tests.support.cli import CLI
from tests.test_backup_reliability import run_job

CONFIG = "[blockvault]\nchunk_size = 262144\ngc_grace_seconds = 0\n"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ext4_disk(cli: CLI, name: str, *, size: str = "32M") -> dict:
    """A pool disk holding a real ext4 filesystem with a file in it (no root needed)."""
    disk = cli.ok("disk", "create", name, "--size", size)
    subprocess.run(["mkfs.ext4", "-F", "-q", disk["path"]], check=True)
    payload = Path(disk["path"]).with_name("payload")
    payload.write_bytes(bytes(range(256)) * 4096)
    debugfs(disk["path"], f"write {payload} payload")
    payload.unlink()
    return disk


def debugfs(image: str, request: str) -> None:
    subprocess.run(["debugfs", "-w", "-R", request, image], check=True, capture_output=True)


def scratch_files(cli: CLI) -> list[str]:
    folder = cli.home / "pool" / ".scratch"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def drill(cli: CLI, *argv: str) -> dict:
    return run_job(cli, "backup", "drill", *argv)


def open_vault(cli: CLI) -> Blockvault:
    return Blockvault.open(home=cli.home)


def test_a_drill_of_an_ext4_disk_passes_and_proves_the_restore(cli: CLI) -> None:
    disk = ext4_disk(cli, "d1")
    backup = run_job(cli, "backup", "create", "d1")
    before = sha(disk["path"])
    result = drill(cli, "d1")
    assert result["status"] == "passed" and result["filesystem"] == "ext4", result
    assert result["backup_id"] == backup["id"] and result["seconds"] > 0
    assert "e2fsck: clean" in result["detail"]
    assert scratch_files(cli) == [], "the scratch image is removed"
    assert sha(disk["path"]) == before, "the original disk is never touched"
    listed = cli.ok("backup", "drill", "--list", "d1")
    assert [(d["id"], d["status"], d["filesystem"]) for d in listed] == [
        (result["id"], "passed", "ext4")
    ]
    assert listed[0]["seconds"] > 0 and listed[0]["started_at"] and listed[0]["finished_at"]
    text = cli("backup", "drill", "--list")
    assert text.code == 0 and "passed" in text.out
    bv = open_vault(cli)
    try:
        row = next(d for d in bv.protection_status()["disks"] if d["disk"] == "d1")
    finally:
        bv.close()
    assert row["last_proven_restore_at"] == listed[0]["started_at"]
    assert row["rto_seconds"] == pytest.approx(result["seconds"], abs=0.01)
    assert any(e["action"] == "drill.passed" for e in cli.ok("events", "--object", "d1"))


def test_a_damaged_chunk_fails_the_drill_with_one_line_and_an_alert(cli: CLI) -> None:
    ext4_disk(cli, "d1")
    backup = run_job(cli, "backup", "create", "d1")
    chunks = [p for p in (cli.home / "vault" / "chunks").rglob("*") if p.is_file()]
    chunk = max(chunks, key=lambda p: p.stat().st_size)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    line = cli.fails("backup", "drill", "d1")
    assert line.startswith("blockvault: error: drill of") and "damaged" in line, line
    assert scratch_files(cli) == []
    (row,) = cli.ok("backup", "drill", "--list", "d1")
    assert row["status"] == "failed" and row["backup_id"] == backup["id"]
    assert "damaged" in row["detail"]
    events = cli.ok("events", "--object", "d1")
    failed = [e for e in events if e["action"] == "drill.failed"]
    assert len(failed) == 1 and "damaged" in failed[0]["detail"]
    jobs = [j for j in cli.ok("job", "list") if j["kind"] == "drill"]
    assert jobs[0]["status"] == "failed"
    assert not [e for e in cli.ok("events") if e["action"] == "job.failed"], "one alert, not two"


@pytest.mark.slow
def test_a_filesystem_the_check_finds_broken_fails_the_drill(cli: CLI) -> None:
    disk = ext4_disk(cli, "d1")
    # consistent bytes, inconsistent filesystem: the root directory's link count is wrong
    debugfs(disk["path"], "set_inode_field <2> links_count 7")
    run_job(cli, "backup", "create", "d1")
    line = cli.fails("backup", "drill", "d1")
    assert "e2fsck found errors in the ext4 filesystem" in line, line
    assert "ref count is 7, should be 3" in line
    assert scratch_files(cli) == []
    (row,) = cli.ok("backup", "drill", "--list", "d1")
    assert row["status"] == "failed" and row["filesystem"] == "ext4"
    assert any(e["action"] == "drill.failed" for e in cli.ok("events", "--object", "d1"))


@pytest.mark.slow
def test_a_missing_checker_is_recorded_not_a_failure(
    cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    ext4_disk(cli, "d1")
    run_job(cli, "backup", "create", "d1")
    monkeypatch.setattr(drills, "_tool", lambda name: None)
    result = drill(cli, "d1")
    assert result["status"] == "passed"
    assert result["detail"] == "check skipped: e2fsck not installed"


@pytest.mark.slow
def test_a_disk_without_a_filesystem_is_checked_by_its_digest(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "raw", "--size", "1M")
    Path(disk["path"]).write_bytes(b"\x5a" * 300_000 + b"\0" * (1048576 - 300_000))
    run_job(cli, "backup", "create", "raw")
    result = drill(cli, "raw")
    assert result["status"] == "passed" and result["filesystem"] == ""
    assert "no ext4 or XFS filesystem" in result["detail"]


@pytest.mark.slow
def test_a_deleted_disks_backup_is_drilled_by_id_or_by_its_name(cli: CLI) -> None:
    ext4_disk(cli, "gone")
    backup = run_job(cli, "backup", "create", "gone")
    cli.ok("disk", "delete", "gone", "--yes")
    assert drill(cli, "--backup", backup["id"])["status"] == "passed"
    assert drill(cli, "gone")["backup_id"] == backup["id"]
    assert len(cli.ok("backup", "drill", "--list", "gone")) == 2
    assert "no disk named" in cli.fails("backup", "drill", "ghost")
    cli.ok("disk", "create", "e", "--size", "1M")
    assert "no available backup" in cli.fails("backup", "drill", "e")
    assert "give no DISK" in cli.fails("backup", "drill", "e", "--backup", backup["id"])


@pytest.mark.slow
def test_a_drill_reads_the_backup_like_a_restore(cli: CLI) -> None:
    """A queued drill is a reader (the backup cannot be deleted under it); a backup being
    deleted cannot be drilled; a drill cancelled before it ran leaves nothing."""
    ext4_disk(cli, "d1")
    backup = run_job(cli, "backup", "create", "d1")
    bv = open_vault(cli)
    try:
        handle = bv.start_drill(backup["id"])
        refusal = cli.fails("backup", "delete", backup["id"], "--yes")
        assert "being read by job" in refusal and "(drill)" in refusal
        handle.cancel()
        handle.run()
        assert handle.status == "cancelled"
        with bv.ctx.catalog.session() as session:
            assert session.get(Drill, handle.id).status == "cancelled"
            row = session.get(Backup, backup["id"])
            row.status = "deleting"
            session.add(row)
            session.commit()
    finally:
        bv.close()
    assert scratch_files(cli) == []
    line = cli.fails("backup", "drill", "--backup", backup["id"])
    assert "is deleting: it cannot be drilled" in line


def test_leftovers_of_a_dead_drill_are_removed_by_the_next_open(cli: CLI) -> None:
    ext4_disk(cli, "d1")
    backup = run_job(cli, "backup", "create", "d1")
    bv = open_vault(cli)
    try:
        live = bv.start_drill(backup["id"])  # queued: its file must survive the sweep
        with bv.ctx.catalog.session() as session:
            session.add(Job(id="job-dead01", kind="drill", status="failed", pid=1, host="gone"))
            session.add(Drill(id="job-dead01", disk_id="x", disk_name="d1", backup_id=backup["id"]))
            session.commit()
    finally:
        bv.close()
    folder = cli.home / "pool" / ".scratch"
    for name in (
        f"drill-{live.id}.scratch",
        "drill-job-dead01.scratch",
        "drill-job-dead01.check.log",
        "notes.txt",
    ):
        (folder / name).write_bytes(b"x")
    bv = open_vault(cli)  # reconcile sweeps
    try:
        with bv.ctx.catalog.session() as session:
            row = session.get(Drill, "job-dead01")
            assert row.status == "cancelled" and "interrupted" in row.detail
            assert session.get(Drill, live.id).status == "running"
    finally:
        bv.close()
    assert scratch_files(cli) == sorted([f"drill-{live.id}.scratch", "notes.txt"])


def test_scheduled_drills_claim_their_slot_once(cli: CLI) -> None:
    ext4_disk(cli, "d1")
    cli.ok("disk", "create", "empty", "--size", "1M")
    policy = cli.ok(
        "policy", "create", "p", "--disk", "d1", "--disk", "empty", "--drill", "every 1h"
    )
    assert policy["drill"]
    run_job(cli, "backup", "create", "d1")
    bv = open_vault(cli)
    try:
        assert drills.run_due_drills(bv.ctx, datetime.now(UTC)) == [], "no slot yet"
        # ten past an hour, two hours on: `now` and five minutes later fall in one hourly slot
        # whatever the time of day (at 16:57, +2 h and +5 min crossed 19:00: a new slot)
        now = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=10, second=0, microsecond=0)
        outcomes = drills.run_due_drills(bv.ctx, now)
        by_disk = {o["disk"]: o for o in outcomes}
        assert by_disk["d1"]["status"] == "passed" and by_disk["d1"]["seconds"] > 0
        assert by_disk["empty"]["status"] == "skipped"
        assert drills.run_due_drills(bv.ctx, now) == [], "the slot is claimed once"
        assert drills.run_due_drills(bv.ctx, now + timedelta(minutes=5)) == []
        with bv.ctx.catalog.session() as session:
            slots = session.exec(select(PolicySlot).where(PolicySlot.kind == "drill")).all()
            assert [s.status for s in slots] == ["succeeded"]
            assert not session.exec(select(PolicySlot).where(PolicySlot.kind == "backup")).all()
            (row,) = session.exec(select(Drill)).all()
            assert row.policy_id == policy["id"] and row.status == "passed"
        later = drills.run_due_drills(bv.ctx, now + timedelta(hours=1))
        assert [o["status"] for o in later if o["disk"] == "d1"] == ["passed"]
    finally:
        bv.close()
    assert scratch_files(cli) == []


@pytest.mark.slow
def test_a_stopping_service_ends_the_drill_slot_and_a_drill_that_cannot_start_alerts(
    cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("r1", "r2"):
        disk = cli.ok("disk", "create", name, "--size", "1M")
        Path(disk["path"]).write_bytes(b"\x33" * 1048576)
        run_job(cli, "backup", "create", name)
    cli.ok("policy", "create", "p", "--disk", "r1", "--disk", "r2", "--drill", "every 1h")
    bv = open_vault(cli)
    try:
        now = datetime.now(UTC) + timedelta(hours=2)
        outcomes = drills.run_due_drills(bv.ctx, now, on_job=lambda handle: handle.cancel())
        assert [(o["disk"], o["status"]) for o in outcomes] == [
            ("r1", "cancelled"),
            ("r2", "cancelled"),
        ]
        assert outcomes[1]["drill"] is None, "nothing more is started once one is cancelled"
        with bv.ctx.catalog.session() as session:
            assert [d.status for d in session.exec(select(Drill)).all()] == ["cancelled"]
            (slot,) = session.exec(select(PolicySlot).where(PolicySlot.kind == "drill")).all()
            assert slot.status == "cancelled"
        monkeypatch.setattr(drills, "_SPACE_MARGIN", 1 << 62)  # no scratch space left
        later = drills.run_due_drills(bv.ctx, now + timedelta(hours=1))
        assert {o["status"] for o in later} == {"failed"}
        assert "not enough scratch space" in later[0]["error"]
    finally:
        bv.close()
    alerts = [e for e in cli.ok("events") if e["action"] == "drill.failed"]
    assert len(alerts) == 2 and "could not start" in alerts[0]["detail"]
    assert scratch_files(cli) == []


@pytest.mark.slow
def test_backup_drill_with_a_policy_drills_each_covered_disk(cli: CLI) -> None:
    ext4_disk(cli, "d1")
    ext4_disk(cli, "d2")
    cli.ok("disk", "create", "empty", "--size", "1M")
    policy = cli.ok("policy", "create", "p", "--disk", "d1", "--disk", "d2", "--disk", "empty")
    run_job(cli, "backup", "create", "d1")
    run_job(cli, "backup", "create", "d2")
    manual = cli("backup", "drill", "--policy", "p", "--json")
    assert manual.code == 0, manual.err
    assert "skipped: disk empty has no available backup" in manual.err
    results = [json.loads(x) for x in manual.out.splitlines() if '"result"' in x]
    assert [r["disk_name"] for r in results] == ["d1", "d2"]
    assert {r["policy_id"] for r in results} == {policy["id"]}
    # one damaged disk of two: the other is still drilled, and the run ends in one line
    disk2 = cli.ok("disk", "show", "d2")
    debugfs(disk2["path"], "set_inode_field <2> links_count 9")
    run_job(cli, "backup", "create", "d2")
    failed = cli("backup", "drill", "--policy", "p")
    assert failed.code == 3 and "Traceback" not in failed.err  # partial: one of two passed
    line = failed.err.strip().splitlines()[-1]
    assert line.startswith("blockvault: error: 1 of 2 drills failed: d2: drill of"), line
    assert line.endswith(
        "e2fsck found errors in the ext4 filesystem (exit 4): Inode 2 ref count is 9, should be 3"
    )
    statuses = {(d["disk_name"], d["status"]) for d in cli.ok("backup", "drill", "--list")}
    assert ("d1", "passed") in statuses and ("d2", "failed") in statuses
    assert scratch_files(cli) == []


@pytest.mark.slow
def test_a_drill_of_an_xfs_disk_passes(cli: CLI) -> None:
    if shutil.which("mkfs.xfs") is None and not Path("/usr/sbin/mkfs.xfs").exists():
        pytest.skip("xfsprogs not installed (mkfs.xfs)")
    disk = cli.ok("disk", "create", "x1", "--size", "320M")  # XFS needs 300 MiB at least
    subprocess.run(["mkfs.xfs", "-f", "-q", disk["path"]], check=True)
    run_job(cli, "backup", "create", "x1")
    result = drill(cli, "x1")
    assert result["status"] == "passed" and result["filesystem"] == "xfs", result
    assert "xfs_repair: clean" in result["detail"]
    assert scratch_files(cli) == []
