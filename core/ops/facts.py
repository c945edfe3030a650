"""Facts the rules need, read from the catalog and the host, and the one check every
executor makes: the plan it is about to run is the plan that was shown."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, func, select

from core.base.errors import PlanChanged, refused
from core.catalog.context import Context, on_this_host
from core.catalog.models import Disk, Snapshot
from core.engine import devices
from core.engine.tracking import TRACKING_DIR, ChangeTracker
from core.jobs.claims import owner_of
from core.rules.lifecycle import DiskFacts
from core.rules.plans import Plan


def disk_folder(ctx: Context, disk_id: str) -> Path:
    """Each disk's own folder in the pool: its image (if managed) and its snapshots."""
    return ctx.locations.pool_dir / disk_id


def change_tracker(ctx: Context, disk_id: str, vault_id: str) -> ChangeTracker:
    """The disk's tracking clone for one vault: the disk as that vault's last backup read it."""
    return ChangeTracker(disk_folder(ctx, disk_id) / TRACKING_DIR / vault_id)


def writers_of(disk: Disk) -> list[str]:
    """Other processes holding the disk open for writing, as 'command (pid N)'."""
    return [f"{command} (pid {pid})" for pid, command in devices.held_open_for_writing(disk.path)]


def snapshot_count(session: Session, disk_id: str) -> int:
    return session.exec(
        select(func.count()).select_from(Snapshot).where(Snapshot.disk_id == disk_id)
    ).one()


def disk_facts(ctx: Context, session: Session, disk: Disk, *, writers: bool = True) -> DiskFacts:
    here = on_this_host(ctx, disk)
    return DiskFacts(
        disk,
        owner=owner_of(session, disk),
        here=ctx.host,
        writers=writers_of(disk) if writers and here else (),
        snapshots=snapshot_count(session, disk.id),
        snapshot_limit=ctx.settings.max_snapshots_per_disk,
        undo_hours=ctx.settings.safety_snapshot_hours,
    )


def folder_freed_bytes(ctx: Context, disk: Disk) -> int:
    """What deleting a disk's pool folder gives back: its image (if managed), snapshots and
    tracking clones, extents shared with other files of the pool not counted, nor those a
    registered disk's image (which stays) still shares."""
    folder = disk_folder(ctx, disk.id)
    files = devices.files_under(folder) if folder.exists() else []
    staying = []
    if not disk.managed:
        files = [f for f in files if f.resolve() != Path(disk.path).resolve()]
        staying = [Path(disk.path)]
    return devices.exclusive_bytes(files, universe=ctx.locations.pool_dir, staying=staying)


def check_plan(shown: Plan | None, now: Plan) -> Plan:
    """The executor's gate, inside the claiming transaction: refuse what the rules refuse now,
    and refuse a plan that differs from the one the user confirmed (with the new plan)."""
    if not now.allowed:
        raise refused(now.refusal)
    if shown is not None and not shown.same_as(now):
        lines = "\n".join(now.lines())
        raise PlanChanged(
            f"the plan changed since it was shown; nothing was done. The plan now:\n{lines}",
            plan=now,
        )
    return now
