"""Claims: a disk (or snapshot) has one owner at a time.

A claim is one compare-and-set UPDATE (same id, same version, same status as the plan read)
inside the transaction that creates the job (`Catalog.writer`), so "is it free?" and "it is
mine" are a single step on SQLite and PostgreSQL alike. The job releases its claims on every
exit path; a claim whose job's process is gone is released by the next process that opens the
catalog (`reconcile`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from core.base.errors import PlanChanged
from core.catalog.context import Context
from core.catalog.models import Disk, Job, Server, Snapshot
from core.rules.states import check_transition

Claimable = Disk | Snapshot


def claim(session: Session, row: Claimable, new_status: str, *, job_id: str | None) -> str:
    """Move `row` into `new_status` owned by `job_id`, only if nobody changed it since it was
    read in this transaction; the caller commits together with the job row. Returns the
    status it had, which an untouched row goes back to."""
    before = row.status
    kind = "disk" if isinstance(row, Disk) else "snapshot"
    check_transition(kind, row.name, current=row.status, new=new_status)
    model = type(row)
    result = session.execute(
        sa.update(model)
        .where(model.id == row.id, model.version == row.version, model.status == row.status)
        .values(status=new_status, claim_job_id=job_id, version=model.version + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise PlanChanged(f"{kind} {row.name} changed while it was being claimed", plan=None)
    session.refresh(row)
    return before


def release(
    ctx: Context,
    model: type[Claimable],
    row_id: str,
    *,
    job_id: str | None,
    status: str,
    incomplete: bool | None = None,
) -> None:
    """Hand the row back in `status` (and mark or clear an interrupted restore), if `job_id`
    still owns it."""
    values: dict[str, Any] = {
        "status": status,
        "claim_job_id": None,
        "version": model.version + 1,
    }
    if incomplete is not None:
        values["restore_incomplete"] = incomplete
    with ctx.catalog.writer() as session:
        session.execute(
            sa.update(model)
            .where(model.id == row_id, model.claim_job_id == job_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.commit()


def release_disk(
    ctx: Context, disk_id: str, *, job_id: str | None, status: str, incomplete: bool | None = None
) -> None:
    release(ctx, Disk, disk_id, job_id=job_id, status=status, incomplete=incomplete)


def owner_of(session: Session, row: Claimable) -> Job | None:
    """The job that holds `row`, if it is still active."""
    if not row.claim_job_id:
        return None
    job = session.get(Job, row.claim_job_id)
    return job if job is not None and job.status in ("queued", "running", "cancelling") else None


def active_readers(session: Session, source_id: str) -> list[Job]:
    """Active jobs that read this snapshot or backup (it may not be deleted under them)."""
    return list(
        session.exec(
            select(Job).where(
                Job.source_id == source_id,
                Job.status.in_(("queued", "running", "cancelling")),  # type: ignore[attr-defined]
            )
        ).all()
    )


def disk_metadata(session: Session, disk: Disk) -> dict[str, Any]:
    """The copy of the disk a manifest and a backup row keep (survives the disk's deletion)."""
    server = session.get(Server, disk.server_id) if disk.server_id else None
    return {
        "id": disk.id,
        "name": disk.name,
        "size": disk.size,
        "server": server.name if server else None,
        "role": disk.role,
        "path": disk.path,
    }
