"""Every lifecycle rule as a pure plan (docs/lifecycle.md names these tests)."""

from __future__ import annotations

from core.catalog.models import Backup, Disk, Server, Snapshot
from core.rules import lifecycle

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


def test_deleting_a_disk_deletes_its_snapshots_and_keeps_its_backups() -> None:
    plan = lifecycle.plan_disk_delete(
        DATA, allocated=5 << 20, snapshots=[snap(DATA, 1), snap(DATA, 2)], backups=[backup(DATA, 1)]
    )
    assert plan.allowed
    assert [i.id for i in plan.of("delete", "snapshot")] == ["snap-000001", "snap-000002"]
    assert [i.id for i in plan.of("keep", "backup")] == ["bk-000001"]
    assert plan.bytes_freed == (5 << 20) + 2 * (1 << 20)


def test_deleting_a_disk_used_by_a_running_job_is_refused() -> None:
    plan = lifecycle.plan_disk_delete(
        DATA, allocated=0, snapshots=[], backups=[], running_job_kinds=["backup"]
    )
    assert not plan.allowed and "running backup" in plan.refusal


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


def test_restore_to_original_takes_a_safety_snapshot_and_asks_for_the_disk_name() -> None:
    plan = lifecycle.plan_restore(backup(DATA, 1), target=DATA)
    assert plan.allowed and plan.confirm_text == DATA.name
    assert plan.of("create", "snapshot") and plan.of("overwrite", "disk")[0].id == DATA.id


def test_restore_refuses_smaller_target_disk_in_use_and_foreign_disk() -> None:
    big = backup(DATA, 1, size=DATA.size + 1)
    assert "smaller than the source" in lifecycle.plan_restore(big, target=DATA).refusal
    busy = lifecycle.plan_restore(backup(DATA, 1), target=DATA, running_job_kinds=["snapshot"])
    assert "running snapshot" in busy.refusal
    held = lifecycle.plan_restore(backup(DATA, 1), target=DATA, writers=["qemu (pid 7)"])
    assert "held open for writing by qemu" in held.refusal
    assert lifecycle.plan_restore(
        backup(DATA, 1), target=DATA, writers=["qemu (pid 7)"], force=True
    ).allowed
    assert (
        "restore it to a new disk" in lifecycle.plan_restore(backup(DATA, 1), target=SYSTEM).refusal
    )


def test_restore_to_new_disk_needs_at_least_the_backup_size() -> None:
    plan = lifecycle.plan_restore(backup(DATA, 1), target=None, new_name="copy", new_size=1 << 20)
    assert "smaller than the backup" in plan.refusal
    ok = lifecycle.plan_restore(backup(DATA, 1), target=None, new_name="copy")
    assert ok.allowed and not ok.destructive and ok.of("create", "disk")[0].bytes == DATA.size


def test_rollback_only_onto_its_own_disk_with_safety_snapshot() -> None:
    plan = lifecycle.plan_rollback(snap(DATA, 1), disk=DATA)
    assert plan.allowed and plan.of("create", "snapshot") and plan.of("keep", "snapshot")
    assert "another disk" in lifecycle.plan_rollback(snap(DATA, 1), disk=SYSTEM).refusal
    assert (
        "held open"
        in lifecycle.plan_rollback(snap(DATA, 1), disk=DATA, writers=["vm (pid 1)"]).refusal
    )


def test_snapshot_limit_and_one_snapshot_in_progress() -> None:
    assert (
        "limit 256"
        in lifecycle.plan_snapshot_create(DATA, existing=256, limit=256, strategy="chunks").refusal
    )
    busy = Disk(**{**DATA.model_dump(), "status": "snapshotting"})
    assert (
        "already in progress"
        in lifecycle.plan_snapshot_create(busy, existing=0, limit=256, strategy="chunks").refusal
    )


def test_backup_delete_frees_only_its_unique_bytes() -> None:
    plan = lifecycle.plan_backup_delete(backup(DATA, 1), unique_bytes=123)
    assert plan.bytes_freed == 123


def test_plan_lines_are_readable() -> None:
    lines = lifecycle.plan_disk_delete(
        DATA, allocated=1 << 30, snapshots=[snap(DATA, 1)], backups=[backup(DATA, 1)]
    ).lines()
    text = "\n".join(lines)
    assert "DELETE" in text and "keep" in text and "frees" in text
