"""Every lifecycle rule as a pure plan (docs/lifecycle.md names these tests)."""

from __future__ import annotations

from core.catalog.models import Backup, Disk, Job, Server, Snapshot
from core.rules import lifecycle
from core.rules.lifecycle import DiskFacts

SERVER = Server(id="srv-000001", name="web1")
SYSTEM = Disk(
    id="disk-000001",
    name="web1-root",
    size=10 << 30,
    path="/p/1",
    server_id=SERVER.id,
    role="system",
)
DATA = Disk(
    id="disk-000002", name="web1-data", size=20 << 30, path="/p/2", server_id=SERVER.id, role="data"
)


def snap(disk: Disk, n: int, stored: int = 1 << 20) -> Snapshot:
    return Snapshot(
        id=f"snap-00000{n}",
        name=f"{disk.name}-s{n}",
        disk_id=disk.id,
        status="available",
        size=disk.size,
        bytes_stored=stored,
    )


def backup(disk: Disk, n: int, size: int | None = None) -> Backup:
    return Backup(
        id=f"bk-00000{n}",
        name=f"{disk.name}-b{n}",
        vault_id="vault-000001",
        disk_id=disk.id,
        disk_name=disk.name,
        size=size or disk.size,
        status="available",
    )


JOB = Job(id="job-000009", kind="backup", host="admin1", status="running")


def test_deleting_a_disk_deletes_its_snapshots_and_keeps_its_backups() -> None:
    plan = lifecycle.plan_disk_delete(
        DiskFacts(DATA),
        freed=7 << 20,
        snapshots=[snap(DATA, 1), snap(DATA, 2)],
        backups=[backup(DATA, 1)],
    )
    assert plan.allowed
    assert [i.id for i in plan.of("delete", "snapshot")] == ["snap-000001", "snap-000002"]
    assert [i.id for i in plan.of("keep", "backup")] == ["bk-000001"]
    assert plan.bytes_freed == 7 << 20  # the folder's exclusive bytes, counted once


def test_deleting_a_disk_used_by_a_running_job_is_refused_naming_job_and_host() -> None:
    plan = lifecycle.plan_disk_delete(DiskFacts(DATA, owner=JOB), freed=0, snapshots=[], backups=[])
    assert plan.refusal == "disk web1-data is busy (job job-000009 on host admin1: backup)"


def test_os_reinstall_deletes_system_snapshots_only_after_success_and_keeps_data_snapshots() -> (
    None
):
    plan = lifecycle.plan_os_reinstall(
        SERVER,
        disks=[SYSTEM, DATA],
        snapshots_by_disk={SYSTEM.id: [snap(SYSTEM, 1)], DATA.id: [snap(DATA, 2)]},
        image_name="debian.img",
        image_size=1 << 30,
    )
    assert plan.allowed and plan.confirm_text == SYSTEM.name
    assert plan.of("create", "snapshot"), "a safety snapshot comes before the overwrite"
    deleted = plan.of("delete", "snapshot")
    assert [i.id for i in deleted] == ["snap-000001"] and deleted[0].when == "after-success"
    assert [i.id for i in plan.of("keep", "snapshot")] == ["snap-000002"]
    assert plan.of("overwrite", "disk")[0].id == SYSTEM.id


def test_os_changed_outside_blockvault_deletes_system_snapshots_now() -> None:
    plan = lifecycle.plan_os_reinstall(
        SERVER,
        disks=[SYSTEM, DATA],
        snapshots_by_disk={SYSTEM.id: [snap(SYSTEM, 1)]},
        image_name=None,
        image_size=None,
        already_happened=True,
    )
    assert plan.of("delete", "snapshot")[0].when == "now" and not plan.of("overwrite")


def test_os_reinstall_refuses_an_image_larger_than_the_system_disk_and_a_server_without_one() -> (
    None
):
    too_big = lifecycle.plan_os_reinstall(
        SERVER, disks=[SYSTEM], snapshots_by_disk={}, image_name="big.img", image_size=11 << 30
    )
    assert "larger than the system disk" in too_big.refusal
    none = lifecycle.plan_os_reinstall(
        SERVER, disks=[DATA], snapshots_by_disk={}, image_name="x", image_size=1
    )
    assert "no system disk" in none.refusal


def test_server_delete_refused_while_it_has_disks_unless_detached() -> None:
    assert (
        "still has disks"
        in lifecycle.plan_server_delete(SERVER, disks=[SYSTEM], detach_disks=False).refusal
    )
    plan = lifecycle.plan_server_delete(SERVER, disks=[SYSTEM, DATA], detach_disks=True)
    assert plan.allowed and len(plan.of("detach", "disk")) == 2 and not plan.of("delete", "disk")


def restore(b: Backup, target: Disk | None, **facts: object) -> lifecycle.Plan:
    return lifecycle.plan_restore(
        b, to_original=True, target=DiskFacts(target, **facts) if target else None
    )


def test_restore_to_original_takes_a_safety_snapshot_and_asks_for_the_disk_name() -> None:
    plan = restore(backup(DATA, 1), DATA, undo_hours=6)
    assert plan.allowed and plan.confirm_text == DATA.name
    assert plan.of("create", "snapshot") and plan.of("overwrite", "disk")[0].id == DATA.id
    assert "(6 h)" in plan.of("create", "snapshot")[0].note, "the configured window, not 24 h"


def test_restore_refuses_smaller_target_disk_in_use_foreign_and_deleted_disk() -> None:
    big = backup(DATA, 1, size=DATA.size + 1)
    assert "smaller than the source" in restore(big, DATA).refusal
    assert "is busy (job job-000009" in restore(backup(DATA, 1), DATA, owner=JOB).refusal
    held = restore(backup(DATA, 1), DATA, writers=["qemu (pid 7)"])
    assert "held open for writing by qemu" in held.refusal
    assert "restore it to a new disk" in restore(backup(DATA, 1), SYSTEM).refusal
    assert "was deleted; use --to-new" in restore(backup(DATA, 1), None).refusal
    full = restore(backup(DATA, 1), DATA, snapshots=8, snapshot_limit=8)
    assert "snapshot limit" in full.refusal, "no room for the safety snapshot"


def test_restore_forced_past_a_writer() -> None:
    plan = lifecycle.plan_restore(
        backup(DATA, 1),
        to_original=True,
        target=DiskFacts(DATA, writers=["qemu (pid 7)"]),
        force=True,
    )
    assert plan.allowed


def test_restore_to_new_disk_needs_at_least_the_backup_size_and_a_free_name() -> None:
    b = backup(DATA, 1)
    plan = lifecycle.plan_restore(
        b, to_original=False, target=None, new_name="copy", new_size=1 << 20
    )
    assert "smaller than the backup" in plan.refusal
    ok = lifecycle.plan_restore(b, to_original=False, target=None, new_name="copy")
    assert ok.allowed and not ok.destructive and ok.of("create", "disk")[0].bytes == DATA.size
    half = Disk(**{**DATA.model_dump(), "restore_incomplete": True, "status": "error-restoring"})
    taken = lifecycle.plan_restore(
        b, to_original=False, target=None, new_name=DATA.name, existing=half
    )
    assert "already exists" in taken.refusal, "an interrupted restore of another kind"
    mine = Disk(**{**half.model_dump(), "origin": f"backup:{b.id}"})
    resume = lifecycle.plan_restore(
        b, to_original=False, target=None, new_name=DATA.name, existing=mine
    )
    assert resume.allowed and "resume" in resume.of("create", "disk")[0].note


def test_rollback_only_onto_its_own_disk_with_safety_snapshot() -> None:
    plan = lifecycle.plan_rollback(snap(DATA, 1), facts=DiskFacts(DATA))
    assert plan.allowed and plan.of("create", "snapshot") and plan.of("keep", "snapshot")
    other = lifecycle.plan_rollback(snap(DATA, 1), facts=DiskFacts(SYSTEM))
    assert "another disk" in other.refusal
    held = lifecycle.plan_rollback(snap(DATA, 1), facts=DiskFacts(DATA, writers=["vm (pid 1)"]))
    assert "held open" in held.refusal


def test_snapshot_limit_and_one_owner_at_a_time() -> None:
    full = lifecycle.plan_snapshot_create(
        DiskFacts(DATA, snapshots=256, snapshot_limit=256), strategy="chunks"
    )
    assert "limit 256" in full.refusal
    busy = Disk(**{**DATA.model_dump(), "status": "snapshotting"})
    owner = Job(id="job-000001", kind="snapshot", host="h", status="running")
    plan = lifecycle.plan_snapshot_create(DiskFacts(busy, owner=owner), strategy="chunks")
    assert "is busy (job job-000001 on host h: snapshot)" in plan.refusal


def test_a_snapshot_or_backup_being_read_cannot_be_deleted() -> None:
    reader = Job(id="job-000002", kind="rollback", host="h", status="running")
    plan = lifecycle.plan_snapshot_delete(
        snap(DATA, 1), disk=DATA, owner=None, readers=[reader], freed=0
    )
    assert "being read by job job-000002" in plan.refusal
    assert (
        "being read"
        in lifecycle.plan_backup_delete(backup(DATA, 1), unique_bytes=0, readers=[reader]).refusal
    )


def test_undo_clears_an_interrupted_restore_and_consumes_its_safety_snapshot() -> None:
    half = Disk(**{**DATA.model_dump(), "restore_incomplete": True, "status": "error-restoring"})
    safety = Snapshot(**{**snap(DATA, 3).model_dump(), "kind": "safety"})
    plan = lifecycle.plan_undo(DiskFacts(half), safety=safety)
    assert plan.allowed and "clears the incomplete mark" in plan.of("overwrite")[0].note
    assert plan.of("delete", "snapshot")[0].when == "after-success"
    assert "nothing to undo" in lifecycle.plan_undo(DiskFacts(DATA), safety=None).refusal


def test_plans_compare_by_what_they_do_not_by_sizes() -> None:
    a = lifecycle.plan_backup_delete(backup(DATA, 1), unique_bytes=1)
    b = lifecycle.plan_backup_delete(backup(DATA, 1), unique_bytes=999)
    assert a.same_as(b)
    assert not a.same_as(lifecycle.plan_backup_delete(backup(DATA, 2), unique_bytes=1))


def test_backup_delete_frees_only_its_unique_bytes() -> None:
    plan = lifecycle.plan_backup_delete(backup(DATA, 1), unique_bytes=123)
    assert plan.bytes_freed == 123


def test_plan_lines_are_readable() -> None:
    lines = lifecycle.plan_disk_delete(
        DiskFacts(DATA), freed=1 << 30, snapshots=[snap(DATA, 1)], backups=[backup(DATA, 1)]
    ).lines()
    text = "\n".join(lines)
    assert "DELETE" in text and "keep" in text and "frees" in text
