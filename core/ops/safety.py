"""The safety net under every overwrite: a safety snapshot first, `disk undo` for the window.

Restore onto the original disk, rollback and OS reinstall all run `overwrite`: the safety
snapshot's row is made in the transaction that claims the disk (so the snapshot limit and its
name are part of the claim), its bytes are taken by the job before the first write, and the
disk is released honestly on every exit path: untouched, complete, or marked incomplete.
`disk undo` rolls back to the newest safety snapshot in one step and clears that mark.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.base.errors import UserError
from core.catalog.context import Context, on_this_host, record, resolve
from core.catalog.models import Disk, Snapshot, VaultRecord, utcnow
from core.catalog.names import default_name, unique_id
from core.engine.snapshot_store import BaseOpener, RestoreSource, SnapshotEngine, SnapshotInfo
from core.jobs.claims import claim, disk_metadata, release, release_disk
from core.jobs.runner import JobContext, JobHandle, new_job
from core.ops.facts import check_plan, disk_facts, disk_folder
from core.ops.vaults import open_repository
from core.repo.manifest import Manifest
from core.repo.repository import Repository
from core.rules import lifecycle
from core.rules.plans import Plan


def engine_for(ctx: Context, disk: Disk) -> SnapshotEngine:
    return SnapshotEngine(
        Path(disk.path),
        disk_folder(ctx, disk.id) / "snapshots",
        strategy=disk.snapshot_strategy,
        chunk_size=ctx.settings.chunk_size,
    )


def new_snapshot_row(
    ctx: Context, session: Session, disk: Disk, *, name: str | None, kind: str, job_id: str
) -> Snapshot:
    """A `creating` snapshot owned by `job_id`, added to the caller's claiming transaction."""
    snapshot = Snapshot(
        id=unique_id(session, Snapshot, "snapshot"),
        name=name or default_name(session, Snapshot, f"{disk.name}-safety"),
        disk_id=disk.id,
        strategy=disk.snapshot_strategy,
        size=disk.size,
        kind=kind,
        claim_job_id=job_id,
        expires_at=utcnow() + timedelta(hours=ctx.settings.safety_snapshot_hours)
        if kind == "safety"
        else None,
    )
    session.add(snapshot)
    return snapshot


def take_snapshot(
    ctx: Context,
    disk: Disk,
    snapshot_id: str,
    *,
    job: JobContext,
    restore_of: RestoreSource | None = None,
) -> tuple[Snapshot, SnapshotInfo]:
    """Take the bytes of a `creating` snapshot; on any failure nothing of it remains."""
    with ctx.catalog.session() as session:
        meta = disk_metadata(session, disk)
        kind = session.get(Snapshot, snapshot_id).kind
    engine = engine_for(ctx, disk)
    try:
        job.check_cancel()
        info = engine.create(
            snapshot_id,
            disk_meta=meta,
            reporter=job.reporter("snapshotting", disk.size),
            cancel=job.cancel,
            workers=ctx.settings.workers,
            restore_of=restore_of,
        )
    except BaseException:
        discard_snapshot(ctx, disk, snapshot_id)
        raise
    with ctx.catalog.writer() as session:
        row = session.get(Snapshot, snapshot_id)
        row.status, row.bytes_stored, row.strategy = "available", info.bytes_stored, info.strategy
        row.claim_job_id, row.version = None, row.version + 1
        session.add(row)
        record(
            session,
            ctx,
            f"snapshot.create.{kind}",
            kind="snapshot",
            object_id=row.id,
            name=row.name,
            detail=f"disk {disk.name}",
        )
        session.commit()
        return row, info


def discard_snapshot(
    ctx: Context, disk: Disk | None, snapshot_id: str, *, detail: str = ""
) -> None:
    """Remove a snapshot's bytes, then its row (an unfinished one, or one being deleted)."""
    if disk is not None:
        engine_for(ctx, disk).delete(snapshot_id)
    with ctx.catalog.writer() as session:
        row = session.get(Snapshot, snapshot_id)
        if row is not None:
            session.delete(row)
            if row.status != "creating":
                record(
                    session,
                    ctx,
                    "snapshot.delete",
                    kind="snapshot",
                    object_id=row.id,
                    name=row.name,
                    detail=detail,
                )
            session.commit()


def overwrite(
    ctx: Context,
    job: JobContext,
    *,
    job_id: str,
    disk: Disk,
    before: str,
    safety_id: str,
    restore_of: RestoreSource | None,
    fail_status: str,
    write: Callable[[frozenset[int] | None], None],
) -> None:
    """Safety snapshot, then `write(differing)`, then release the disk: `available` after
    success; as it was (`before`) if the disk was never touched (a job cancelled before it
    began touches nothing); `fail_status` and marked incomplete if the write stopped
    half-way (`disk undo` puts it back)."""
    touched = ok = False
    try:
        job.check_cancel()
        _, info = take_snapshot(ctx, disk, safety_id, job=job, restore_of=restore_of)
        touched = True
        write(info.differing)
        ok = True
    finally:
        if ok:
            release_disk(ctx, disk.id, job_id=job_id, status="available", incomplete=False)
        elif touched:
            release_disk(ctx, disk.id, job_id=job_id, status=fail_status, incomplete=True)
        else:
            discard_snapshot(ctx, disk, safety_id)  # never taken, or already discarded
            release_disk(ctx, disk.id, job_id=job_id, status=before)


def open_base(ctx: Context) -> BaseOpener:
    """Opens the backup a partial safety snapshot leans on (its vault from the catalog)."""

    def opener(base: dict[str, Any]) -> tuple[Manifest, Repository]:
        with ctx.catalog.session() as session:
            row = session.get(VaultRecord, base.get("vault_id"))
        if row is None:
            raise UserError(
                f"the vault of backup {base.get('backup_id')} is no longer registered; "
                "the undo needs it for the chunks the restore did not change"
            )
        repo = open_repository(ctx, row)
        return repo.read_manifest(base["backup_id"]), repo

    return opener


def expire_safety_snapshots(ctx: Context) -> int:
    """Delete this host's safety snapshots past their window that no job uses (another
    host's go with its own reconcile); returns how many went."""
    with ctx.catalog.writer() as session:
        expired = session.exec(
            select(Snapshot).where(
                Snapshot.kind == "safety",
                Snapshot.status == "available",
                Snapshot.expires_at < utcnow(),  # type: ignore[operator]
            )
        ).all()
        doomed = []
        for snapshot in expired:
            disk = session.get(Disk, snapshot.disk_id)  # its bytes are in its host's pool:
            if disk is not None and disk.claim_job_id is None and on_this_host(ctx, disk):
                claim(session, snapshot, "deleting", job_id=None)
                doomed.append((disk, snapshot.id))
        session.commit()
    for disk, snapshot_id in doomed:
        discard_snapshot(ctx, disk, snapshot_id, detail="safety window over")
    return len(doomed)


def latest_safety(session: Session, disk_id: str) -> Snapshot | None:
    """The newest safety snapshot of a disk still inside its window."""
    return session.exec(
        select(Snapshot)
        .where(
            Snapshot.disk_id == disk_id,
            Snapshot.kind == "safety",
            Snapshot.status == "available",
            Snapshot.expires_at >= utcnow(),  # type: ignore[operator]
        )
        .order_by(Snapshot.created_at.desc())  # type: ignore[attr-defined]
    ).first()


def _undo_plan(
    ctx: Context, session: Session, disk: Disk, *, force: bool, measure: bool = False
) -> Plan:
    safety = latest_safety(session, disk.id)
    freed = 0
    if measure and safety is not None:
        engine = engine_for(ctx, disk)
        freed = engine.freed_by_delete([safety.id], pool=ctx.locations.pool_dir)[safety.id]
    return lifecycle.plan_undo(
        disk_facts(ctx, session, disk), safety=safety, force=force, freed=freed
    )


def plan_undo(ctx: Context, disk_ref: str, *, force: bool = False) -> Plan:
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, disk_ref, kind="disk")
        return _undo_plan(ctx, session, disk, force=force, measure=True)


def start_undo(
    ctx: Context, disk_ref: str, *, force: bool = False, plan: Plan | None = None
) -> JobHandle:
    """Put the disk back as it was before the last overwrite, in one step."""
    with ctx.catalog.writer() as session:
        disk = resolve(session, Disk, disk_ref, kind="disk")
        check_plan(plan, _undo_plan(ctx, session, disk, force=force))
        safety = latest_safety(session, disk.id)
        job = new_job(
            ctx,
            session,
            "undo",
            target_kind="disk",
            target_id=disk.id,
            target_name=disk.name,
            disk_id=disk.id,
            source_id=safety.id,
        )
        before = claim(session, disk, "rolling-back", job_id=job.id)
        session.commit()

    def run(context: JobContext) -> dict[str, Any]:
        ok = False
        try:
            engine_for(ctx, disk).rollback(
                safety.id,
                reporter=context.reporter("undoing", disk.size),
                cancel=context.cancel,
                workers=ctx.settings.workers,
                open_base=open_base(ctx),
            )
            ok = True
        finally:
            if ok:
                release_disk(ctx, disk.id, job_id=job.id, status="available", incomplete=False)
            else:
                status = before if before != "available" else "error-rolling-back"
                release_disk(ctx, disk.id, job_id=job.id, status=status, incomplete=True)
        with ctx.catalog.writer() as session:
            record(
                session,
                ctx,
                "disk.undo",
                kind="disk",
                object_id=disk.id,
                name=disk.name,
                detail=f"to {safety.name}",
            )
            session.commit()
        discard_snapshot(ctx, disk, safety.id, detail="used by disk undo")
        return {
            "id": disk.id,
            "name": disk.name,
            "status": "available",
            "size": disk.size,
            "created_at": None,
            "undone_to": safety.name,
        }

    return JobHandle(ctx, job, run)


def release_snapshot(ctx: Context, snapshot_id: str, *, job_id: str | None) -> None:
    release(ctx, Snapshot, snapshot_id, job_id=job_id, status="available")
