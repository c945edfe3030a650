"""Snapshots: create, list, show, delete, roll back, make a new disk from one.

Snapshots live in the disk's own pool folder (`pool/<disk-id>/snapshots/`), so deleting a
disk removes them by construction. The engine (`core.engine.snapshot_store`) does the bytes;
each verb here is plan (rules) -> claim (one transaction) -> job.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.base.errors import NotFound
from core.catalog.context import Context, on_this_host, record, resolve
from core.catalog.models import Disk, Server, Snapshot, iso
from core.catalog.names import check_new_name, commit_unique, default_name
from core.catalog.views import snapshot_view
from core.jobs.claims import active_readers, claim, owner_of, release_disk
from core.jobs.runner import JobContext, JobHandle, new_job
from core.ops.disks import commit_new_disk, fill_new_disk, filled_disk, insert_pool_disk
from core.ops.facts import check_plan, disk_facts
from core.ops.safety import (
    discard_snapshot,
    engine_for,
    new_snapshot_row,
    open_base,
    overwrite,
    take_snapshot,
)
from core.rules import lifecycle
from core.rules.plans import Plan


def _view(session: Session, snapshot: Snapshot) -> dict[str, Any]:
    disk = session.get(Disk, snapshot.disk_id)
    server = session.get(Server, disk.server_id) if disk and disk.server_id else None
    return snapshot_view(snapshot, disk=disk, server=server)


def _disk_of(session: Session, snapshot: Snapshot) -> Disk:
    """The snapshot's disk; a disk deleted meanwhile took the snapshot with it."""
    disk = session.get(Disk, snapshot.disk_id)
    if disk is None:
        raise NotFound(f"no snapshot named {snapshot.name!r} (its disk was just deleted)")
    return disk


# --- create ------------------------------------------------------------------------------


def _create_plan(ctx: Context, session: Session, disk: Disk) -> Plan:
    facts = disk_facts(ctx, session, disk, writers=False)
    return lifecycle.plan_snapshot_create(facts, strategy=disk.snapshot_strategy)


def plan_create(ctx: Context, disk_ref: str) -> Plan:
    with ctx.catalog.session() as session:
        return _create_plan(ctx, session, resolve(session, Disk, disk_ref, kind="disk"))


def start_create(
    ctx: Context, disk_ref: str, *, name: str | None = None, plan: Plan | None = None
) -> JobHandle:
    """Claim the disk and the snapshot's name in one transaction, then take the snapshot."""
    with ctx.catalog.writer() as session:
        disk = resolve(session, Disk, disk_ref, kind="disk")
        check_plan(plan, _create_plan(ctx, session, disk))
        name = check_new_name(session, Snapshot, name, kind="snapshot") if name else None
        name = name or default_name(session, Snapshot, disk.name)
        job = new_job(
            ctx,
            session,
            "snapshot",
            target_kind="disk",
            target_id=disk.id,
            target_name=disk.name,
            disk_id=disk.id,
        )
        claim(session, disk, "snapshotting", job_id=job.id)
        snapshot = new_snapshot_row(ctx, session, disk, name=name, kind="user", job_id=job.id)
        commit_unique(session, f"a snapshot named {name!r}")

    def run(context: JobContext) -> dict[str, Any]:
        try:
            row, _ = take_snapshot(ctx, disk, snapshot.id, job=context)
        finally:
            release_disk(ctx, disk.id, job_id=job.id, status="available")
        with ctx.catalog.session() as session:
            return _view(session, row)

    return JobHandle(ctx, job, run)


# --- list, show --------------------------------------------------------------------------


def list_snapshots(ctx: Context, *, disk_ref: str | None = None) -> list[dict[str, Any]]:
    with ctx.catalog.session() as session:
        query = select(Snapshot).order_by(Snapshot.created_at.desc())  # type: ignore[attr-defined]
        if disk_ref:
            query = query.where(
                Snapshot.disk_id == resolve(session, Disk, disk_ref, kind="disk").id
            )
        return [_view(session, s) for s in session.exec(query).all()]


def get_snapshot(ctx: Context, ref: str) -> dict[str, Any]:
    with ctx.catalog.session() as session:
        return _view(session, resolve(session, Snapshot, ref, kind="snapshot"))


# --- delete ------------------------------------------------------------------------------


def _delete_plan(ctx: Context, session: Session, snapshot: Snapshot, *, measure: bool) -> Plan:
    disk = _disk_of(session, snapshot)
    freed = 0
    if measure and snapshot.status != "deleting" and on_this_host(ctx, disk):
        # (a deletion cut short has freed some already; another host's pool is not ours)
        engine = engine_for(ctx, disk)
        freed = engine.freed_by_delete([snapshot.id], pool=ctx.locations.pool_dir)[snapshot.id]
    return lifecycle.plan_snapshot_delete(
        snapshot,
        disk=disk,
        owner=owner_of(session, disk),
        readers=active_readers(session, snapshot.id),
        freed=freed,
        here=ctx.host,
    )


def plan_delete(ctx: Context, ref: str) -> Plan:
    with ctx.catalog.session() as session:
        snapshot = resolve(session, Snapshot, ref, kind="snapshot")
        return _delete_plan(ctx, session, snapshot, measure=True)


def delete_snapshot(ctx: Context, ref: str, *, plan: Plan | None = None) -> Plan:
    """Mark it `deleting` under the claim lock (refused while a job reads it), free its bytes,
    then drop the row. A deletion cut short is finished by running it again."""
    with ctx.catalog.writer() as session:
        snapshot = resolve(session, Snapshot, ref, kind="snapshot")
        now = check_plan(plan, _delete_plan(ctx, session, snapshot, measure=False))
        disk = session.get(Disk, snapshot.disk_id)
        if snapshot.status != "deleting":
            claim(session, snapshot, "deleting", job_id=None)
        session.commit()
    discard_snapshot(ctx, disk, snapshot.id)
    return plan or now


# --- rollback ----------------------------------------------------------------------------


def _rollback_plan(
    ctx: Context, session: Session, snapshot: Snapshot, *, force: bool
) -> tuple[Plan, Disk]:
    disk = _disk_of(session, snapshot)
    facts = disk_facts(ctx, session, disk)
    return lifecycle.plan_rollback(snapshot, facts=facts, force=force), disk


def plan_rollback(ctx: Context, ref: str, *, force: bool = False) -> Plan:
    with ctx.catalog.session() as session:
        snapshot = resolve(session, Snapshot, ref, kind="snapshot")
        return _rollback_plan(ctx, session, snapshot, force=force)[0]


def start_rollback(
    ctx: Context, ref: str, *, force: bool = False, plan: Plan | None = None
) -> JobHandle:
    """Roll a disk back to one of its snapshots, after a safety snapshot for undo."""
    with ctx.catalog.writer() as session:
        snapshot = resolve(session, Snapshot, ref, kind="snapshot")
        now, disk = _rollback_plan(ctx, session, snapshot, force=force)
        check_plan(plan, now)
        job = new_job(
            ctx,
            session,
            "rollback",
            target_kind="snapshot",
            target_id=snapshot.id,
            target_name=snapshot.name,
            disk_id=disk.id,
            source_id=snapshot.id,
        )
        before = claim(session, disk, "rolling-back", job_id=job.id)
        safety = new_snapshot_row(ctx, session, disk, name=None, kind="safety", job_id=job.id)
        session.commit()

    def run(context: JobContext) -> dict[str, Any]:
        engine = engine_for(ctx, disk)

        def write(differing: frozenset[int] | None) -> None:
            engine.rollback(
                snapshot.id,
                reporter=context.reporter("rolling back", disk.size),
                cancel=context.cancel,
                workers=ctx.settings.workers,
                open_base=open_base(ctx),
                only=set(differing) if differing is not None else None,
            )

        overwrite(
            ctx,
            context,
            job_id=job.id,
            disk=disk,
            before=before,
            safety_id=safety.id,
            restore_of=engine.restore_source(snapshot.id),
            fail_status="error-rolling-back",
            write=write,
        )
        with ctx.catalog.writer() as session:
            record(
                session,
                ctx,
                "disk.rollback",
                kind="disk",
                object_id=disk.id,
                name=disk.name,
                detail=f"to snapshot {snapshot.name}",
            )
            session.commit()
            view = _view(session, session.get(Snapshot, snapshot.id))
        return {
            **view,
            "rolled_back": disk.name,
            "undo": safety.name,
            "undo_until": iso(safety.expires_at),
        }

    return JobHandle(ctx, job, run)


# --- new disk from a snapshot ------------------------------------------------------------


def _to_disk_plan(ctx: Context, session: Session, snapshot: Snapshot, new_name: str) -> Plan:
    taken = session.exec(select(Disk).where(Disk.name == new_name)).first() is not None
    plan = lifecycle.plan_new_disk_from(
        "snapshot",
        snapshot.id,
        snapshot.name,
        size=snapshot.size,
        new_name=new_name,
        name_taken=taken,
        source_status=snapshot.status,
    )
    elsewhere = lifecycle.disk_elsewhere(_disk_of(session, snapshot), ctx.host)
    return replace(plan, refusal=elsewhere) if elsewhere else plan  # its bytes live there


def plan_to_disk(ctx: Context, ref: str, new_name: str) -> Plan:
    with ctx.catalog.session() as session:
        return _to_disk_plan(
            ctx, session, resolve(session, Snapshot, ref, kind="snapshot"), new_name
        )


def start_to_disk(ctx: Context, ref: str, new_name: str, *, plan: Plan | None = None) -> JobHandle:
    """A new, unattached pool disk with the snapshot's content."""
    with ctx.catalog.writer() as session:
        snapshot = resolve(session, Snapshot, ref, kind="snapshot")
        check_plan(plan, _to_disk_plan(ctx, session, snapshot, new_name))
        source = session.get(Disk, snapshot.disk_id)
        job = new_job(
            ctx,
            session,
            "to-disk",
            target_kind="snapshot",
            target_id=snapshot.id,
            target_name=snapshot.name,
            disk_id=None,
            source_id=snapshot.id,
        )
        target = insert_pool_disk(
            ctx,
            session,
            new_name,
            size=snapshot.size,
            status="restoring",
            job_id=job.id,
            origin=f"snapshot:{snapshot.id}",
        )
        job.disk_id = target.id
        session.add(job)
        commit_new_disk(session, ctx, target)

    def run(context: JobContext) -> dict[str, Any]:
        fill_new_disk(
            ctx,
            job_id=job.id,
            disk=target,
            write=lambda: engine_for(ctx, source).to_new_disk(
                snapshot.id,
                Path(target.path),
                reporter=context.reporter("copying", snapshot.size),
                cancel=context.cancel,
            ),
        )
        with ctx.catalog.writer() as session:
            record(
                session,
                ctx,
                "disk.from-snapshot",
                kind="disk",
                object_id=target.id,
                name=target.name,
                detail=f"from {snapshot.name}",
            )
            session.commit()
        return filled_disk(target, snapshot_id=snapshot.id)

    return JobHandle(ctx, job, run)
