"""What the next process cleans up after one that died: its jobs, claims and half-made objects.

Runs when the catalog is opened; it also lets safety snapshots past their window go. A job whose process is gone (same host) or whose heartbeat
stopped is failed; the disks it owned are released honestly (a half-written disk is marked
incomplete, so `disk undo` or the restore again can finish it); its `creating` snapshots lose
their bytes and rows; its `creating` backup rows go (their chunks are reused by the next run).
"""

from __future__ import annotations

from sqlmodel import select

from core.catalog.context import Context
from core.catalog.models import Backup, Disk, Job, Snapshot, utcnow
from core.jobs.claims import release_disk
from core.jobs.runner import job_is_stale
from core.ops.safety import discard_snapshot, expire_safety_snapshots
from core.rules.states import JOB_ACTIVE

#: a disk whose owner died: (status, restore_incomplete) it is released into
INTERRUPTED_DISK_STATUS = {
    "backing-up": ("available", None),
    "snapshotting": ("available", None),
    "restoring": ("error-restoring", True),
    "rolling-back": ("error-rolling-back", True),
    "deleting": ("available", None),
}


def reconcile(ctx: Context) -> None:
    _reconcile_jobs(ctx)
    with ctx.catalog.session() as session:
        expired = session.exec(
            select(Snapshot.id).where(
                Snapshot.kind == "safety",
                Snapshot.status == "available",
                Snapshot.expires_at < utcnow(),  # type: ignore[operator]
            )
        ).first()
    if expired is not None:
        expire_safety_snapshots(ctx)


def _reconcile_jobs(ctx: Context) -> None:
    with ctx.catalog.session() as session:
        candidates = session.exec(select(Job).where(Job.status.in_(JOB_ACTIVE))).all()  # type: ignore[attr-defined]
        if not any(job_is_stale(job) for job in candidates) and not _orphans_exist(session):
            return
    with ctx.catalog.writer() as session:
        for job in session.exec(select(Job).where(Job.status.in_(JOB_ACTIVE))).all():  # type: ignore[attr-defined]
            if job_is_stale(job):
                job.status = "failed"
                job.error = "interrupted: its process ended before the job finished"
                job.finished_at = utcnow()
                session.add(job)
        session.commit()
        active = {
            j.id
            for j in session.exec(select(Job).where(Job.status.in_(JOB_ACTIVE))).all()  # type: ignore[attr-defined]
        }
        stuck_disks = [
            (d.id, d.claim_job_id, d.status, d.restore_incomplete)
            for d in session.exec(select(Disk)).all()
            if d.status in INTERRUPTED_DISK_STATUS and d.claim_job_id not in active
        ]
        creating = session.exec(select(Snapshot).where(Snapshot.status == "creating")).all()
        stuck_snapshots = [(s.id, s.disk_id) for s in creating if s.claim_job_id not in active]
        # an overwrite writes only after its safety snapshot is complete: a dead job whose
        # safety snapshot is still `creating` never touched its disk
        untouched = {s.claim_job_id for s in creating if s.kind == "safety"}
        busy_disks = {
            j.disk_id
            for j in session.exec(select(Job).where(Job.id.in_(active))).all()  # type: ignore[attr-defined]
        }
        for backup in session.exec(select(Backup).where(Backup.status == "creating")).all():
            if backup.disk_id not in busy_disks:
                session.delete(backup)
        session.commit()
    for snapshot_id, disk_id in stuck_snapshots:
        with ctx.catalog.session() as session:
            disk = session.get(Disk, disk_id)
        discard_snapshot(ctx, disk, snapshot_id)
    for disk_id, job_id, status, was_incomplete in stuck_disks:
        new_status, incomplete = INTERRUPTED_DISK_STATUS[status]
        if job_id is not None and job_id in untouched:
            new_status, incomplete = ("error-restoring" if was_incomplete else "available"), None
        release_disk(ctx, disk_id, job_id=job_id, status=new_status, incomplete=incomplete)


def _orphans_exist(session) -> bool:  # type: ignore[no-untyped-def]
    """Claims or half-made objects whose owner is no longer an active job."""
    active = {
        j.id
        for j in session.exec(select(Job).where(Job.status.in_(JOB_ACTIVE))).all()  # type: ignore[attr-defined]
    }
    for disk in session.exec(
        select(Disk).where(Disk.status.in_(list(INTERRUPTED_DISK_STATUS)))
    ).all():  # type: ignore[attr-defined]
        if disk.claim_job_id not in active:
            return True
    creating = session.exec(select(Snapshot).where(Snapshot.status == "creating")).all()
    if any(s.claim_job_id not in active for s in creating):
        return True
    return (
        session.exec(select(Backup).where(Backup.status == "creating")).first() is not None
        and not active
    )
