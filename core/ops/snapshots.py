"""Snapshots in the catalog: create, list, delete, rollback, to-disk, undo, and the OS rule.

Snapshots live in the disk's own pool folder (`pool/<disk-id>/snapshots/`), so deleting a
disk removes them by construction. The engine (`core.snapshots`) does the bytes; this module
keeps the status machines, the limits and the audit log.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.base.errors import Conflict, UserError
from core.catalog.context import Context, record, resolve
from core.catalog.models import Disk, Server, Snapshot, utcnow
from core.catalog.views import snapshot_view
from core.engine.snapshot_store import BaseOpener, RestoreSource, SnapshotEngine
from core.jobs.claims import claim_disk, default_name, disk_metadata, set_disk_status
from core.jobs.runner import JobContext, JobHandle, create_job
from core.ops.inventory import (
    check_new_name,
    create_disk,
    disk_folder,
    running_job_kinds,
    unique_id,
    writers_of,
)
from core.repo.manifest import Manifest
from core.repo.repository import Repository
from core.rules import lifecycle


def engine_for(ctx: Context, disk: Disk) -> SnapshotEngine:
    return SnapshotEngine(
        Path(disk.path),
        disk_folder(ctx, disk.id) / "snapshots",
        strategy=disk.snapshot_strategy,
        chunk_size=ctx.settings.chunk_size,
    )


def _view(session: Session, snapshot: Snapshot) -> dict[str, Any]:
    disk = session.get(Disk, snapshot.disk_id)
    server = session.get(Server, disk.server_id) if disk and disk.server_id else None
    return snapshot_view(snapshot, disk=disk, server=server)


def _count(session: Session, disk_id: str) -> int:
    return len(session.exec(select(Snapshot).where(Snapshot.disk_id == disk_id)).all())


def _snapshot_now(
    ctx: Context,
    disk: Disk,
    *,
    name: str,
    kind: str,
    job: JobContext | None,
    restore_of: RestoreSource | None = None,
) -> Snapshot:
    """Insert a `creating` row, take the snapshot, mark it available (error on failure)."""
    with ctx.catalog.session() as session:
        snapshot = Snapshot(
            id=unique_id(session, Snapshot, "snapshot"),
            name=name,
            disk_id=disk.id,
            strategy=disk.snapshot_strategy,
            size=disk.size,
            kind=kind,
            expires_at=utcnow() + timedelta(hours=ctx.settings.safety_snapshot_hours)
            if kind == "safety"
            else None,
        )
        session.add(snapshot)
        session.commit()
        meta = disk_metadata(session, disk)
    reporter = job.reporter("snapshotting", disk.size) if job else None
    try:
        info = engine_for(ctx, disk).create(
            snapshot.id,
            disk_meta=meta,
            reporter=reporter,
            cancel=job.cancel if job else None,
            workers=ctx.settings.workers,
            restore_of=restore_of,
        )
    except BaseException:
        with ctx.catalog.session() as session:
            row = session.get(Snapshot, snapshot.id)
            row.status = "error"
            session.add(row)
            session.commit()
        raise
    with ctx.catalog.session() as session:
        row = session.get(Snapshot, snapshot.id)
        row.status, row.bytes_stored, row.strategy = "available", info.bytes_stored, info.strategy
        session.add(row)
        record(
            session,
            ctx,
            f"snapshot.create.{kind}",
            "snapshot",
            row.id,
            row.name,
            f"disk {disk.name}",
        )
        session.commit()
        return row


def plan_create(ctx: Context, disk_ref: str) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, disk_ref, "disk")
        return lifecycle.plan_snapshot_create(
            disk,
            existing=_count(session, disk.id),
            limit=ctx.settings.max_snapshots_per_disk,
            strategy=disk.snapshot_strategy,
        )


def start_create(ctx: Context, disk_ref: str, *, name: str | None = None) -> JobHandle:
    plan = plan_create(ctx, disk_ref)
    if not plan.allowed:
        raise Conflict(plan.refusal)
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, disk_ref, "disk")
        if name:
            check_new_name(session, Snapshot, name, "snapshot")
        name = name or default_name(session, Snapshot, disk.name)
    claim_disk(ctx, disk.id, "snapshotting")

    def run(job: JobContext) -> dict[str, Any]:
        try:
            snapshot = _snapshot_now(ctx, disk, name=name, kind="user", job=job)
        finally:
            set_disk_status(ctx, disk.id, "available")
        with ctx.catalog.session() as session:
            return _view(session, snapshot)

    return create_job(
        ctx,
        "snapshot",
        target_kind="disk",
        target_id=disk.id,
        target_name=disk.name,
        disk_id=disk.id,
        fn=run,
    )


def take_safety_snapshot(
    ctx: Context,
    disk_id: str,
    *,
    reason: str,
    job: JobContext | None,
    restore_of: RestoreSource | None = None,
) -> Snapshot:
    """Before an overwrite: a cheap snapshot kept for `safety_snapshot_hours`, for `disk undo`.

    Before a restore (`restore_of`), the chunk strategy keeps only what the restore will
    overwrite and tells the restore which chunks those are (SnapshotEngine.create).
    """
    expire_safety_snapshots(ctx)
    with ctx.catalog.session() as session:
        disk = session.get(Disk, disk_id)
        if _count(session, disk_id) >= ctx.settings.max_snapshots_per_disk:
            raise Conflict(
                f"disk {disk.name} has reached its snapshot limit; a safety snapshot is needed "
                "before an overwrite: delete a snapshot first"
            )
        name = default_name(session, Snapshot, f"{disk.name}-safety")
    return _snapshot_now(ctx, disk, name=name, kind="safety", job=job, restore_of=restore_of)


def open_base(ctx: Context) -> BaseOpener:
    """Opens the backup a partial safety snapshot leans on (its vault from the catalog)."""

    def opener(base: dict[str, Any]) -> tuple[Manifest, Repository]:
        from core.catalog.models import VaultRecord as VaultRow
        from core.ops.vaults import open_repository

        with ctx.catalog.session() as session:
            row = session.get(VaultRow, base.get("vault_id"))
        if row is None:
            raise UserError(
                f"the vault of backup {base.get('backup_id')} is no longer registered; "
                "the undo needs it for the chunks the restore did not change"
            )
        repo = open_repository(ctx, row)
        return repo.read_manifest(base["backup_id"]), repo

    return opener


def expire_safety_snapshots(ctx: Context) -> int:
    """Delete safety snapshots older than their window; returns how many went."""
    with ctx.catalog.session() as session:
        expired = session.exec(
            select(Snapshot).where(Snapshot.kind == "safety", Snapshot.expires_at < utcnow())  # type: ignore[operator]
        ).all()
    for snapshot in expired:
        _delete(ctx, snapshot.id, detail="safety window over")
    return len(expired)


def list_snapshots(ctx: Context, *, disk_ref: str | None = None) -> list[dict[str, Any]]:
    with ctx.catalog.session() as session:
        query = select(Snapshot).order_by(Snapshot.created_at.desc())  # type: ignore[attr-defined]
        if disk_ref:
            query = query.where(Snapshot.disk_id == resolve(session, Disk, disk_ref, "disk").id)
        return [_view(session, s) for s in session.exec(query).all()]


def get_snapshot(ctx: Context, ref: str) -> dict[str, Any]:
    with ctx.catalog.session() as session:
        return _view(session, resolve(session, Snapshot, ref, "snapshot"))


def plan_delete(ctx: Context, ref: str) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        snapshot = resolve(session, Snapshot, ref, "snapshot")
        return lifecycle.plan_snapshot_delete(snapshot, disk=session.get(Disk, snapshot.disk_id))


def _delete(ctx: Context, snapshot_id: str, *, detail: str = "") -> None:
    with ctx.catalog.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        disk = session.get(Disk, snapshot.disk_id)
        if disk.status == "snapshotting":
            raise Conflict(f"a snapshot of disk {disk.name} is in progress; try again after it")
        snapshot.status = "deleting"
        session.add(snapshot)
        session.commit()
    engine_for(ctx, disk).delete(snapshot_id)
    with ctx.catalog.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        session.delete(snapshot)
        record(session, ctx, "snapshot.delete", "snapshot", snapshot.id, snapshot.name, detail)
        session.commit()


def delete_snapshot(ctx: Context, ref: str) -> lifecycle.Plan:
    plan = plan_delete(ctx, ref)
    with ctx.catalog.session() as session:
        snapshot = resolve(session, Snapshot, ref, "snapshot")
    _delete(ctx, snapshot.id)
    return plan


def plan_rollback(ctx: Context, ref: str, *, force: bool = False) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        snapshot = resolve(session, Snapshot, ref, "snapshot")
        disk = session.get(Disk, snapshot.disk_id)
        return lifecycle.plan_rollback(
            snapshot,
            disk=disk,
            running_job_kinds=running_job_kinds(session, disk.id),
            writers=writers_of(disk),
            force=force,
        )


def start_rollback(
    ctx: Context, ref: str, *, force: bool = False, safety: bool = True, kind: str = "rollback"
) -> JobHandle:
    """Roll a disk back to one of its snapshots, after a safety snapshot for undo."""
    plan = plan_rollback(ctx, ref, force=force)
    if not plan.allowed:
        raise Conflict(plan.refusal)
    with ctx.catalog.session() as session:
        snapshot = resolve(session, Snapshot, ref, "snapshot")
        disk = session.get(Disk, snapshot.disk_id)
    claim_disk(ctx, disk.id, "rolling-back")

    def run(job: JobContext) -> dict[str, Any]:
        ok = False
        try:
            engine = engine_for(ctx, disk)
            source = engine.restore_source(snapshot.id) if safety else None
            if safety:
                take_safety_snapshot(
                    ctx,
                    disk.id,
                    reason=f"before rollback to {snapshot.name}",
                    job=job,
                    restore_of=source,
                )
            reporter = job.reporter("rolling back", disk.size)
            engine.rollback(
                snapshot.id,
                reporter=reporter,
                cancel=job.cancel,
                workers=ctx.settings.workers,
                open_base=open_base(ctx),
                only=source.differing if source is not None and source.compared else None,
            )
            ok = True
        finally:
            set_disk_status(ctx, disk.id, "available" if ok else "error-rolling-back")
        with ctx.catalog.session() as session:
            record(
                session,
                ctx,
                f"disk.{kind}",
                "disk",
                disk.id,
                disk.name,
                f"to snapshot {snapshot.name}",
            )
            session.commit()
            return {**_view(session, session.get(Snapshot, snapshot.id)), "rolled_back": disk.name}

    return create_job(
        ctx,
        kind,
        target_kind="snapshot",
        target_id=snapshot.id,
        target_name=snapshot.name,
        disk_id=disk.id,
        fn=run,
    )


def plan_to_disk(ctx: Context, ref: str, new_name: str) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        snapshot = resolve(session, Snapshot, ref, "snapshot")
        check_new_name(session, Disk, new_name, "disk")
        return lifecycle.plan_new_disk_from(
            "snapshot", snapshot.id, snapshot.name, size=snapshot.size, new_name=new_name
        )


def start_to_disk(ctx: Context, ref: str, new_name: str) -> JobHandle:
    """A new, unattached pool disk with the snapshot's content."""
    plan_to_disk(ctx, ref, new_name)
    with ctx.catalog.session() as session:
        snapshot = resolve(session, Snapshot, ref, "snapshot")
        source = session.get(Disk, snapshot.disk_id)
    target = create_disk(ctx, new_name, snapshot.size)
    set_disk_status(ctx, target.id, "restoring", incomplete=True)

    def run(job: JobContext) -> dict[str, Any]:
        ok = False
        try:
            reporter = job.reporter("copying", snapshot.size)
            engine_for(ctx, source).to_new_disk(
                snapshot.id, Path(target.path), reporter=reporter, cancel=job.cancel
            )
            ok = True
        finally:
            set_disk_status(
                ctx, target.id, "available" if ok else "error-restoring", incomplete=not ok
            )
        with ctx.catalog.session() as session:
            record(
                session,
                ctx,
                "disk.from-snapshot",
                "disk",
                target.id,
                target.name,
                f"from {snapshot.name}",
            )
            session.commit()
        return {
            "id": target.id,
            "name": target.name,
            "status": "available",
            "size": target.size,
            "created_at": None,
            "path": target.path,
            "snapshot_id": snapshot.id,
        }

    return create_job(
        ctx,
        "to-disk",
        target_kind="snapshot",
        target_id=snapshot.id,
        target_name=snapshot.name,
        disk_id=target.id,
        fn=run,
    )


def latest_safety(session: Session, disk_id: str) -> Snapshot | None:
    return session.exec(
        select(Snapshot)
        .where(
            Snapshot.disk_id == disk_id, Snapshot.kind == "safety", Snapshot.status == "available"
        )
        .order_by(Snapshot.created_at.desc())  # type: ignore[attr-defined]
    ).first()


def plan_undo(ctx: Context, disk_ref: str) -> lifecycle.Plan:
    expire_safety_snapshots(ctx)
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, disk_ref, "disk")
        return lifecycle.plan_undo(disk, safety=latest_safety(session, disk.id))


def start_undo(ctx: Context, disk_ref: str, *, force: bool = False) -> JobHandle:
    plan = plan_undo(ctx, disk_ref)
    if not plan.allowed:
        raise UserError(plan.refusal)
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, disk_ref, "disk")
        safety = latest_safety(session, disk.id)
    handle = start_rollback(ctx, safety.id, force=force, safety=False, kind="undo")
    inner = handle._fn

    def run(job: JobContext) -> dict[str, Any]:
        result = inner(job)
        _delete(ctx, safety.id, detail="used by disk undo")
        return result

    handle._fn = run
    return handle


# --- OS reinstall ---------------------------------------------------------------------------


def _server_facts(session: Session, server: Server) -> tuple[list[Disk], dict[str, list[Snapshot]]]:
    disks = list(session.exec(select(Disk).where(Disk.server_id == server.id)).all())
    snaps = {
        d.id: list(session.exec(select(Snapshot).where(Snapshot.disk_id == d.id)).all())
        for d in disks
    }
    return disks, snaps


def plan_os_changed(ctx: Context, server_ref: str) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        server = resolve(session, Server, server_ref, "server")
        disks, snaps = _server_facts(session, server)
        return lifecycle.plan_os_reinstall(
            server,
            disks=disks,
            snapshots_by_disk=snaps,
            image_name=None,
            image_size=None,
            already_happened=True,
        )


def os_changed(ctx: Context, server_ref: str) -> lifecycle.Plan:
    """The OS was reinstalled outside blockvault: the system disk's snapshots go now."""
    plan = plan_os_changed(ctx, server_ref)
    if not plan.allowed:
        raise Conflict(plan.refusal)
    for item in plan.of("delete", "snapshot"):
        _delete(ctx, item.id, detail="OS changed on the server")
    with ctx.catalog.session() as session:
        server = resolve(session, Server, server_ref, "server")
        record(session, ctx, "server.os-changed", "server", server.id, server.name)
        session.commit()
    return plan


def plan_reinstall(
    ctx: Context, server_ref: str, image: str, *, force: bool = False
) -> lifecycle.Plan:
    """Reinstall from an image file or a backup id/name onto the server's system disk."""
    with ctx.catalog.session() as session:
        server = resolve(session, Server, server_ref, "server")
        disks, snaps = _server_facts(session, server)
        system = next((d for d in disks if d.role == "system"), None)
        image_name, image_size = _image_facts(session, image)
        return lifecycle.plan_os_reinstall(
            server,
            disks=disks,
            snapshots_by_disk=snaps,
            image_name=image_name,
            image_size=image_size,
            running_job_kinds=running_job_kinds(session, system.id) if system else (),
            writers=writers_of(system) if system else (),
            force=force,
        )


def _image_facts(session: Session, image: str) -> tuple[str, int]:
    from core.catalog.models import Backup

    path = Path(image)
    if path.is_file():
        return str(path), path.stat().st_size
    backup = session.exec(
        select(Backup).where((Backup.id == image) | (Backup.name == image))
    ).first()
    if backup is None:
        raise UserError(f"no image file or backup named {image!r}")
    return f"backup {backup.name}", backup.size


def start_reinstall(ctx: Context, server_ref: str, image: str, *, force: bool = False) -> JobHandle:
    """Write the image onto the system disk as a job; only after success delete its snapshots."""
    plan = plan_reinstall(ctx, server_ref, image, force=force)
    if not plan.allowed:
        raise Conflict(plan.refusal)
    system_id = plan.of("overwrite", "disk")[0].id
    doomed = [item.id for item in plan.of("delete", "snapshot")]
    with ctx.catalog.session() as session:
        server = resolve(session, Server, server_ref, "server")
        system = session.get(Disk, system_id)
    claim_disk(ctx, system.id, "restoring")

    def run(job: JobContext) -> dict[str, Any]:
        ok = False
        try:
            _write_image(ctx, image, system, job)
            ok = True
        finally:
            set_disk_status(
                ctx, system.id, "available" if ok else "error-restoring", incomplete=not ok
            )
        for snapshot_id in doomed:  # only now: the snapshots were the way back until success
            _delete(ctx, snapshot_id, detail=f"OS reinstalled on {server.name}")
        with ctx.catalog.session() as session:
            row = session.get(Server, server.id)
            row.os_image = image
            session.add(row)
            record(session, ctx, "server.reinstall", "server", server.id, server.name, image)
            session.commit()
        return {
            "id": server.id,
            "name": server.name,
            "status": "available",
            "size": system.size,
            "created_at": None,
            "disk_id": system.id,
            "disk_name": system.name,
            "snapshots_deleted": doomed,
        }

    return create_job(
        ctx,
        "reinstall",
        target_kind="server",
        target_id=server.id,
        target_name=server.name,
        disk_id=system.id,
        fn=run,
    )


def _write_image(ctx: Context, image: str, system: Disk, job: JobContext) -> None:
    from core.catalog.models import Backup, VaultRecord
    from core.engine import pipeline
    from core.engine.imaging import copy_image
    from core.ops.vaults import open_repository

    if Path(image).is_file():
        reporter = job.reporter("writing image", system.size)
        copy_image(Path(image), Path(system.path), reporter=reporter, cancel=job.cancel)
        reporter.emit(final=True)
        return
    with ctx.catalog.session() as session:
        backup = session.exec(
            select(Backup).where((Backup.id == image) | (Backup.name == image))
        ).first()
        vault = session.get(VaultRecord, backup.vault_id)
    repo = open_repository(ctx, vault)
    manifest = repo.read_manifest(backup.id)
    reporter = job.reporter("writing image", manifest.size)
    pipeline.restore_device(
        manifest,
        repo,
        Path(system.path),
        compare_existing=False,
        reporter=reporter,
        cancel=job.cancel,
        workers=ctx.settings.workers,
    )
    reporter.emit(final=True)
