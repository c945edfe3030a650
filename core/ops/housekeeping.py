"""What the next process cleans up after one that died: its jobs, claims and half-made objects.

Runs when the catalog is opened; it also lets safety snapshots past their window go, and
clears what interrupted restore drills left in the scratch area (`drills.sweep_scratch`).
A job whose process is gone (same host) or whose heartbeat stopped is failed; the disks it
owned are released honestly (a half-written disk is marked incomplete, so `disk undo` or the
restore again can finish it); its `creating` snapshots lose their bytes and rows; its
`creating` backup rows go (their chunks are reused by the next run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, select

from core.catalog.context import Context, on_this_host
from core.catalog.models import Backup, Disk, Drill, Job, Snapshot, utcnow
from core.jobs.claims import release_disk
from core.jobs.runner import STALE_SECONDS, job_is_stale
from core.rules.states import JOB_ACTIVE

# Every command runs reconcile, and there is seldom anything to clean: `drills` and `safety`
# bring the block pipeline, BLAKE3, zstd and the crypto (0.1-0.2 s that `disk list` would pay
# for nothing), so they are imported below only when there is work for them.

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
        running_drill = session.exec(select(Drill.id).where(Drill.status == "running")).first()
        expired = session.exec(
            select(Snapshot.id)
            .join(Disk, Disk.id == Snapshot.disk_id)  # type: ignore[arg-type]
            .where(
                Snapshot.kind == "safety",
                Snapshot.status == "available",
                Snapshot.expires_at < utcnow(),  # type: ignore[operator]
                Disk.host.in_(("", ctx.host)),  # type: ignore[attr-defined]
            )
        ).first()
    if running_drill is not None or ctx.locations.scratch_dir.is_dir():
        from core.ops.drills import sweep_scratch

        sweep_scratch(ctx)  # scratch files and `running` rows of drills whose job is gone
    if expired is not None:
        from core.ops.safety import expire_safety_snapshots

        expire_safety_snapshots(ctx)


@dataclass
class Orphans:
    """What dead jobs left behind, as seen in one read of the catalog."""

    stale_jobs: list[str] = field(default_factory=list)
    disks: list[Disk] = field(default_factory=list)  # claimed by no active job
    snapshots: list[Snapshot] = field(default_factory=list)  # `creating`, owner gone
    backups: list[Backup] = field(default_factory=list)  # `creating`, no job on its disk
    untouched: set[str] = field(default_factory=set)  # dead jobs that never wrote a disk

    def __bool__(self) -> bool:
        return bool(self.stale_jobs or self.disks or self.snapshots or self.backups)


def find_orphans(session: Session, *, lease: float = STALE_SECONDS) -> Orphans:
    """Stale jobs, and the claims and half-made rows of every job that is not active (a
    stale job counts as gone already)."""
    jobs = session.exec(select(Job).where(Job.status.in_(JOB_ACTIVE))).all()  # type: ignore[attr-defined]
    stale = [j.id for j in jobs if job_is_stale(j, lease=lease)]
    live = [j for j in jobs if j.id not in stale]
    active = {j.id for j in live}
    creating = session.exec(select(Snapshot).where(Snapshot.status == "creating")).all()
    busy_disks = {j.disk_id for j in live}
    return Orphans(
        stale_jobs=stale,
        disks=[
            d
            for d in session.exec(
                select(Disk).where(Disk.status.in_(list(INTERRUPTED_DISK_STATUS)))  # type: ignore[attr-defined]
            ).all()
            if d.claim_job_id not in active
        ],
        snapshots=[s for s in creating if s.claim_job_id not in active],
        backups=[
            b
            for b in session.exec(select(Backup).where(Backup.status == "creating")).all()
            if b.disk_id not in busy_disks
        ],
        # an overwrite writes only after its safety snapshot is complete: a dead job whose
        # safety snapshot is still `creating` never touched its disk
        untouched={s.claim_job_id for s in creating if s.kind == "safety" and s.claim_job_id},
    )


def _reconcile_jobs(ctx: Context) -> None:
    lease = ctx.settings.job_lease_seconds
    with ctx.catalog.session() as session:
        if not find_orphans(session, lease=lease):
            return
    with ctx.catalog.writer() as session:  # again under the lock: what is true now
        found = find_orphans(session, lease=lease)
        for job in (session.get(Job, job_id) for job_id in found.stale_jobs):
            job.status = "failed"
            job.error = (
                "interrupted: its process ended before the job finished"
                if job.host in (None, ctx.host)
                else f"interrupted: host {job.host} stopped answering (no heartbeat for "
                f"{lease:g} s)"
            )
            job.finished_at = utcnow()
            session.add(job)
        for backup in found.backups:
            session.delete(backup)
        session.commit()
    for snapshot in found.snapshots:
        from core.ops.safety import discard_snapshot

        with ctx.catalog.session() as session:
            disk = session.get(Disk, snapshot.disk_id)
        if disk is not None and not on_this_host(ctx, disk):
            continue  # its bytes are in the other host's pool: that host's reconcile cleans up
        discard_snapshot(ctx, disk, snapshot.id)
    for disk in found.disks:
        new_status, incomplete = INTERRUPTED_DISK_STATUS[disk.status]
        if disk.claim_job_id is not None and disk.claim_job_id in found.untouched:
            new_status = "error-restoring" if disk.restore_incomplete else "available"
            incomplete = None
        release_disk(
            ctx, disk.id, job_id=disk.claim_job_id, status=new_status, incomplete=incomplete
        )
