"""Protection status: is each disk covered by a policy that is keeping up?

A disk is
- `unprotected`: no enabled policy covers it;
- `failing`: its newest backup attempt failed and nothing succeeded since;
- `overdue`: a policy's last slot (past a short grace) has no successful backup of it;
- `protected`: otherwise.
The worst status wins. `status()` is what `blockvault status`, the Prometheus textfile, the
service's overdue alerts and the console's disks pane all read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlmodel import Session, select

from core.catalog.context import Context
from core.catalog.models import Backup, Disk, Drill, Job, Policy, PolicyTarget, Server, iso
from core.ops.policies import zone
from core.rules.schedules import parse_schedule

#: how long after its slot a backup may take to start before the disk counts as overdue
GRACE_MIN, GRACE_MAX = timedelta(seconds=60), timedelta(hours=1)
ORDER = ("protected", "overdue", "failing")  # worst last; "unprotected" stands apart
STATUSES = ("protected", "overdue", "failing", "unprotected")


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _expected_slot(policy: Policy, *, now: datetime, tz: tzinfo) -> datetime | None:
    """The newest slot that should have a backup by now (past its grace), if any."""
    schedule = parse_schedule(policy.schedule)
    last = schedule.last_at_or_before(now, tz)
    if last is None:
        return None
    before = schedule.last_at_or_before(last - timedelta(seconds=1), tz)
    period = (last - before) if before else GRACE_MAX
    grace = min(GRACE_MAX, max(GRACE_MIN, period / 10))
    if now - last < grace:  # just due: give the runner time to start
        last = before
    created = _utc(policy.created_at)
    if last is None or created is None or last < created:
        return None
    return last


def _disk_status(
    session: Session, disk: Disk, policies: list[Policy], *, now: datetime, tz: tzinfo
) -> dict[str, Any]:
    backups = session.exec(
        select(Backup).where(Backup.disk_id == disk.id, Backup.status == "available")
    ).all()
    good = max(backups, key=lambda b: _utc(b.created_at), default=None)
    attempt = session.exec(
        select(Job)
        .where(Job.disk_id == disk.id, Job.kind == "backup")
        .order_by(Job.created_at.desc())  # type: ignore[attr-defined]
    ).first()
    drill = session.exec(
        select(Drill)
        .where(Drill.disk_id == disk.id, Drill.status != "running")
        .order_by(Drill.started_at.desc())  # type: ignore[attr-defined]
    ).first()
    proven = session.exec(
        select(Drill)
        .where(Drill.disk_id == disk.id, Drill.status == "passed")
        .order_by(Drill.started_at.desc())  # type: ignore[attr-defined]
    ).first()
    status, detail = ("protected", "") if policies else ("unprotected", "no policy covers it")
    next_runs = []
    for policy in policies:
        schedule = parse_schedule(policy.schedule)
        next_runs.append(schedule.next_after(now, tz))
        expected = _expected_slot(policy, now=now, tz=tz)
        if expected is None:
            continue
        made = [b for b in backups if b.policy_id == policy.id and _utc(b.created_at) >= expected]
        if not made and ORDER.index(status) < ORDER.index("overdue"):
            status = "overdue"
            detail = f"policy {policy.name}: no backup since its slot at {iso(expected)}"
    if (
        policies
        and attempt is not None
        and attempt.status == "failed"
        and (good is None or _utc(attempt.created_at) > _utc(good.created_at))
    ):
        status, detail = "failing", f"last backup failed: {attempt.error or 'unknown error'}"
    return {
        "disk": disk.name,
        "disk_id": disk.id,
        "status": status,
        "detail": detail,
        "policies": [p.name for p in policies],
        "last_success_at": iso(good.created_at) if good else None,
        "last_duration": good.duration if good else None,
        "last_bytes_stored": good.bytes_stored if good else None,
        "next_run_at": iso(min(next_runs)) if next_runs else None,
        "last_drill_at": iso(drill.started_at) if drill else None,
        "last_drill_status": drill.status if drill else None,
        "last_proven_restore_at": iso(proven.started_at) if proven else None,
        "rto_seconds": proven.seconds if proven else None,
    }


def status(ctx: Context, *, now: datetime | None = None) -> dict[str, Any]:
    """Every disk's protection status, and the counts by status."""
    now = _utc(now) or datetime.now(UTC)
    tz = zone(ctx)
    with ctx.catalog.session() as session:
        servers = {s.id: s.name for s in session.exec(select(Server)).all()}
        policies = {
            p.id: p
            for p in session.exec(select(Policy).where(Policy.enabled == True)).all()  # noqa: E712
        }
        covering: dict[str, list[Policy]] = {}
        for target in session.exec(select(PolicyTarget)).all():
            if target.policy_id in policies:
                covering.setdefault(target.disk_id, []).append(policies[target.policy_id])
        disks = []
        for disk in session.exec(select(Disk).order_by(Disk.name)).all():
            if disk.status in ("deleting", "deleted"):
                continue
            row = _disk_status(session, disk, covering.get(disk.id, []), now=now, tz=tz)
            row["server"] = servers.get(disk.server_id or "")
            disks.append(row)
    counts = {name: sum(1 for d in disks if d["status"] == name) for name in STATUSES}
    return {"at": iso(now), "counts": counts, "disks": disks}
