"""Lifecycle rules as pure functions returning plans: what is created, overwritten, deleted, kept.

Every rule of the product lives here and nowhere else. The confirmation dialog and `--dry-run`
show the plan; the façade executes it. Functions take plain catalog rows and facts (running
jobs, writers) and never touch the database or the disks. docs/lifecycle.md maps each rule to
the test that proves it.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.base.units import human_size
from core.catalog.models import Backup, Disk, Server, Snapshot
from core.rules.plans import Plan, PlanItem

DEFAULT_RESTORE_RATE = 200 << 20  # bytes/s used for estimates before we have measured one


def _disk_busy(disk: Disk, running_job_kinds: Sequence[str]) -> str | None:
    if running_job_kinds:
        return f"disk {disk.name} is used by a running {running_job_kinds[0]} job"
    return None


def _writers_refusal(disk: Disk, writers: Sequence[str], force: bool) -> str | None:
    if writers and not force:
        return (
            f"disk {disk.name} is held open for writing by {', '.join(writers)} "
            "(stop it first, or use --force)"
        )
    return None


def snapshot_item(snapshot: Snapshot, op: str, *, when: str = "now") -> PlanItem:
    return PlanItem(op, "snapshot", snapshot.id, snapshot.name, snapshot.bytes_stored, when=when)


def backup_keep_item(backup: Backup) -> PlanItem:
    return PlanItem("keep", "backup", backup.id, backup.name, backup.size, "retained in vault")


def plan_disk_delete(
    disk: Disk,
    *,
    allocated: int,
    snapshots: Sequence[Snapshot],
    backups: Sequence[Backup],
    running_job_kinds: Sequence[str] = (),
) -> Plan:
    """Deleting a disk deletes its snapshots (they live with its data) and keeps its backups."""
    items = [
        PlanItem(
            "delete",
            "disk",
            disk.id,
            disk.name,
            allocated if disk.managed else 0,
            "" if disk.managed else "registered: the file/device itself is left in place",
        )
    ]
    items += [snapshot_item(s, "delete") for s in snapshots]
    items += [backup_keep_item(b) for b in backups]
    return Plan(
        action="delete disk",
        target=f"{disk.name} ({disk.id})",
        items=tuple(items),
        refusal=_disk_busy(disk, running_job_kinds),
    )


def plan_server_delete(server: Server, *, disks: Sequence[Disk], detach_disks: bool) -> Plan:
    """A server with disks is only deleted with --detach-disks; its disks, snapshots and
    backups are then kept, unattached. Deleting a server never deletes data."""
    items = [PlanItem("delete", "server", server.id, server.name)]
    items += [PlanItem("detach", "disk", d.id, d.name, note=f"was {d.role}") for d in disks]
    refusal = None
    if disks and not detach_disks:
        names = ", ".join(d.name for d in disks)
        refusal = (
            f"server {server.name} still has disks ({names}); detach them or use --detach-disks"
        )
    return Plan("delete server", f"{server.name} ({server.id})", tuple(items), refusal=refusal)


def plan_os_reinstall(
    server: Server,
    *,
    disks: Sequence[Disk],
    snapshots_by_disk: dict[str, Sequence[Snapshot]],
    image_name: str | None,
    image_size: int | None,
    already_happened: bool = False,
    running_job_kinds: Sequence[str] = (),
    writers: Sequence[str] = (),
    force: bool = False,
) -> Plan:
    """An OS reinstall or change deletes the system disk's snapshots, only after it succeeded;
    data-disk snapshots stay usable; backups are retained."""
    system = next((d for d in disks if d.role == "system"), None)
    action = "OS changed" if already_happened else "reinstall OS"
    if system is None:
        return Plan(action, server.name, refusal=f"server {server.name} has no system disk")
    items: list[PlanItem] = []
    refusal = None
    when = "now" if already_happened else "after-success"
    if not already_happened:
        items.append(
            PlanItem(
                "overwrite", "disk", system.id, system.name, image_size or 0, f"with {image_name}"
            )
        )
        if image_size is not None and image_size > system.size:
            refusal = (
                f"image {image_name} ({human_size(image_size)}) is larger than the system disk "
                f"{system.name} ({human_size(system.size)})"
            )
        refusal = (
            refusal
            or _disk_busy(system, running_job_kinds)
            or _writers_refusal(system, writers, force)
        )
    items += [snapshot_item(s, "delete", when=when) for s in snapshots_by_disk.get(system.id, ())]
    for disk in disks:
        if disk.role != "system":
            items += [snapshot_item(s, "keep") for s in snapshots_by_disk.get(disk.id, ())]
    return Plan(
        action,
        f"server {server.name} (system disk {system.name})",
        tuple(items),
        refusal=refusal,
        confirm_text=None if already_happened else system.name,
    )


def plan_backup(
    disk: Disk,
    *,
    vault_name: str,
    parent: Backup | None,
    running_job_kinds: Sequence[str] = (),
) -> Plan:
    """A backup never overwrites anything: full into an empty vault, then only changed chunks.

    Refused while the disk is being restored or rolled back (its content is in flux) or
    already being backed up."""
    refusal = None
    if disk.status in ("restoring", "rolling-back", "backing-up"):
        refusal = f"disk {disk.name} is {disk.status}"
    elif disk.status in ("error-restoring", "error-rolling-back"):
        refusal = (
            f"disk {disk.name} is {disk.status}: its content is incomplete; "
            "finish or repeat the restore first"
        )
    elif "backup" in running_job_kinds:
        refusal = f"a backup of disk {disk.name} is already running"
    route = (
        f"incremental from {parent.name}: only changed chunks travel"
        if parent
        else "full: the first backup of this disk in this vault"
    )
    return Plan(
        "backup",
        f"disk {disk.name}",
        (PlanItem("create", "backup", "", "", disk.size, f"into vault {vault_name}"),),
        refusal=refusal,
        destructive=False,
        route=route,
    )


def plan_snapshot_create(disk: Disk, *, existing: int, limit: int, strategy: str) -> Plan:
    """At most `limit` snapshots per disk; at most one snapshot in progress (status check)."""
    refusal = None
    if existing >= limit:
        refusal = (
            f"disk {disk.name} already has {existing} snapshots (limit {limit}); delete some "
            "or raise max_snapshots_per_disk"
        )
    elif disk.status == "snapshotting":
        refusal = f"a snapshot of disk {disk.name} is already in progress"
    elif disk.status not in ("available",):
        refusal = f"disk {disk.name} is {disk.status}"
    return Plan(
        "snapshot",
        f"disk {disk.name}",
        (PlanItem("create", "snapshot", "", "", 0, strategy),),
        refusal=refusal,
        destructive=False,
        route=strategy,
    )


def plan_snapshot_delete(snapshot: Snapshot, *, disk: Disk | None) -> Plan:
    """Deleting a snapshot never touches disks made from it."""
    return Plan(
        "delete snapshot",
        f"{snapshot.name} ({snapshot.id})",
        (snapshot_item(snapshot, "delete"),),
    )


def plan_backup_delete(backup: Backup, *, unique_bytes: int) -> Plan:
    """The bytes freed are the ones only this backup references (after deduplication)."""
    return Plan(
        "delete backup",
        f"{backup.name} ({backup.id})",
        (
            PlanItem(
                "delete",
                "backup",
                backup.id,
                backup.name,
                unique_bytes,
                "freed by the next vault gc",
            ),
        ),
    )


def _overwrite_checks(
    disk: Disk,
    *,
    source_size: int,
    running_job_kinds: Sequence[str],
    writers: Sequence[str],
    force: bool,
) -> str | None:
    if source_size > disk.size:
        return (
            f"disk {disk.name} ({human_size(disk.size)}) is smaller than the source "
            f"({human_size(source_size)})"
        )
    return _disk_busy(disk, running_job_kinds) or _writers_refusal(disk, writers, force)


def plan_restore(
    backup: Backup,
    *,
    target: Disk | None,
    new_name: str | None = None,
    new_size: int | None = None,
    running_job_kinds: Sequence[str] = (),
    writers: Sequence[str] = (),
    force: bool = False,
    rate: float = DEFAULT_RESTORE_RATE,
    original_exists: bool = True,
) -> Plan:
    """Restore to the original disk (a safety snapshot first, only differing chunks written)
    or to a new, unattached pool disk of at least the backup's size."""
    if target is None:
        size = new_size or backup.size
        refusal = None
        if size < backup.size:
            refusal = (
                f"new disk size {human_size(size)} is smaller than the backup "
                f"({human_size(backup.size)})"
            )
        return Plan(
            "restore backup to a new disk",
            f"{backup.name} -> new disk {new_name}",
            (PlanItem("create", "disk", "", new_name or "", size, f"from backup {backup.name}"),),
            refusal=refusal,
            destructive=False,
            route="full restore into a new sparse disk",
            estimate_seconds=(backup.size - backup.bytes_zero) / rate,
        )
    if target.id != backup.disk_id:
        refusal: str | None = (
            f"backup {backup.name} was taken from disk {backup.disk_name}, not {target.name}; "
            "restore it to a new disk instead"
        )
    else:
        refusal = _overwrite_checks(
            target,
            source_size=backup.size,
            running_job_kinds=running_job_kinds,
            writers=writers,
            force=force,
        )
    return Plan(
        "restore backup onto its original disk",
        f"{backup.name} -> disk {target.name}",
        (
            PlanItem("create", "snapshot", "", "safety snapshot", 0, "for disk undo (24 h)"),
            PlanItem("overwrite", "disk", target.id, target.name, backup.size),
        ),
        refusal=refusal,
        confirm_text=target.name,
        route="changed chunks only (blocks that already match are neither fetched nor written)",
        estimate_seconds=(backup.size - backup.bytes_zero) / rate,
    )


def plan_rollback(
    snapshot: Snapshot,
    *,
    disk: Disk,
    running_job_kinds: Sequence[str] = (),
    writers: Sequence[str] = (),
    force: bool = False,
) -> Plan:
    """Roll a disk back to one of its own snapshots, after a safety snapshot for undo."""
    refusal = _overwrite_checks(
        disk,
        source_size=snapshot.size,
        running_job_kinds=running_job_kinds,
        writers=writers,
        force=force,
    )
    if snapshot.disk_id != disk.id:
        refusal = f"snapshot {snapshot.name} belongs to another disk"
    if snapshot.status != "available":
        refusal = refusal or f"snapshot {snapshot.name} is {snapshot.status}"
    route = "reflink clone (constant time)" if snapshot.strategy == "reflink" else "changed chunks"
    return Plan(
        "roll back disk",
        f"disk {disk.name} to snapshot {snapshot.name}",
        (
            PlanItem("create", "snapshot", "", "safety snapshot", 0, "for disk undo (24 h)"),
            PlanItem("overwrite", "disk", disk.id, disk.name, snapshot.size),
            PlanItem("keep", "snapshot", snapshot.id, snapshot.name, snapshot.bytes_stored),
        ),
        refusal=refusal,
        confirm_text=disk.name,
        route=route,
    )


def plan_new_disk_from(
    source_kind: str, source_id: str, source_name: str, *, size: int, new_name: str
) -> Plan:
    """A new, unattached pool disk made from a snapshot or backup; nothing is overwritten."""
    return Plan(
        f"new disk from {source_kind}",
        f"{source_name} -> {new_name}",
        (PlanItem("create", "disk", "", new_name, size, f"from {source_kind} {source_name}"),),
        destructive=False,
    )


def plan_undo(disk: Disk, *, safety: Snapshot | None) -> Plan:
    """Undo puts a disk back as it was before the last overwrite, within the safety window."""
    if safety is None:
        return Plan("undo", f"disk {disk.name}", refusal=f"nothing to undo on disk {disk.name}")
    return Plan(
        "undo last overwrite",
        f"disk {disk.name} back to {safety.created_at:%Y-%m-%d %H:%M:%S}",
        (PlanItem("overwrite", "disk", disk.id, disk.name, safety.size),),
        confirm_text=disk.name,
        route="roll back to the safety snapshot",
    )
