"""Ways back for a disk: each of its snapshots and backups, the route it takes and how long it
should take, so a chooser can show the fastest safe one first.

Estimates come from sizes and the rates last measured here: the bytes the last few restores
from the same vault (or the last rollbacks of copied snapshots) moved over their wall time;
before anything was measured, the defaults of `core.rules.lifecycle`. The same measured rate
goes into the restore plan, so the estimate chosen is the estimate confirmed.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from core.catalog.context import Context, resolve
from core.catalog.models import Backup, Disk, Job, Snapshot, VaultRecord, iso
from core.ops.facts import disk_facts
from core.rules import lifecycle
from core.rules.plans import Plan

#: bytes/s of a rollback that copies changed chunks on the pool, before one was measured
DEFAULT_ROLLBACK_RATE = 400 << 20
#: a reflink rollback is a clone and a rename: constant time, whatever the disk's size
REFLINK_SECONDS = 1.0
#: how many recent jobs of a kind make a measured rate
MEASURED_JOBS = 5


def measured_rate(
    session: Session, kind: str, *, vault_id: str | None = None, default: float
) -> float:
    """Bytes per second over the last `MEASURED_JOBS` succeeded jobs of `kind` (restores: from
    `vault_id`); `default` before any was measured."""
    query = (
        select(Job)
        .where(Job.kind == kind, Job.status == "succeeded", Job.bytes_total > 0)
        .where(Job.started_at.is_not(None), Job.finished_at.is_not(None))  # type: ignore[union-attr]
        .order_by(Job.finished_at.desc())  # type: ignore[union-attr]
        .limit(MEASURED_JOBS)
    )
    if vault_id is not None:
        query = query.join(Backup, Backup.id == Job.source_id).where(Backup.vault_id == vault_id)  # type: ignore[arg-type]
    moved = seconds = 0.0
    for job in session.exec(query).all():
        moved += job.bytes_total
        seconds += max((job.finished_at - job.started_at).total_seconds(), 0.001)  # type: ignore[operator]
    return moved / seconds if moved and seconds else default


def restore_rate(session: Session, vault_id: str) -> float:
    return measured_rate(
        session, "restore", vault_id=vault_id, default=lifecycle.DEFAULT_RESTORE_RATE
    )


def rollback_seconds(session: Session, snapshot: Snapshot) -> float:
    if snapshot.strategy == "reflink":
        return REFLINK_SECONDS
    rate = measured_rate(session, "rollback", default=DEFAULT_ROLLBACK_RATE)
    return snapshot.size / rate


def restore_routes(ctx: Context, disk_ref: str) -> list[dict[str, Any]]:
    """Each available snapshot and backup of the disk, newest first, as a way back onto it:
    kind_of, id, name, created_at, size, how (in a few words), route (the plan's), estimate_seconds,
    refusal (None: it may run), and `fastest` on the quickest one that may run (to the second;
    of those as quick, the newest)."""
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, disk_ref, kind="disk")
        facts = disk_facts(ctx, session, disk)
        snapshots = session.exec(
            select(Snapshot)
            .where(Snapshot.disk_id == disk.id, Snapshot.status == "available")
            .order_by(Snapshot.created_at.desc())  # type: ignore[attr-defined]
        ).all()
        backups = session.exec(
            select(Backup)
            .where(Backup.disk_id == disk.id, Backup.status == "available")
            .order_by(Backup.created_at.desc())  # type: ignore[attr-defined]
        ).all()
        routes: list[tuple[datetime, dict[str, Any]]] = []
        for snapshot in snapshots:
            plan = lifecycle.plan_rollback(snapshot, facts=facts)
            how = f"rollback, {'clone' if snapshot.strategy == 'reflink' else 'copy'}"
            seconds = rollback_seconds(session, snapshot)
            routes.append(
                (snapshot.created_at, _route(snapshot, "snapshot", plan, seconds, disk, how))
            )
        rates = {b.vault_id: restore_rate(session, b.vault_id) for b in backups}
        for backup in backups:
            plan = lifecycle.plan_restore(
                backup, to_original=True, target=facts, rate=rates[backup.vault_id]
            )
            vault = session.get(VaultRecord, backup.vault_id)
            how = f"restore, vault {vault.name if vault else '?'}"
            route = _route(backup, "backup", plan, plan.estimate_seconds or 0.0, disk, how)
            routes.append((backup.created_at, {**route, "vault_id": backup.vault_id}))
    routes.sort(key=lambda pair: pair[0], reverse=True)  # newest first, to the microsecond
    ways = [route for _, route in routes]
    allowed = [r for r in ways if r["refusal"] is None]
    if allowed:  # the quickest to the second; of equals, the newest (it loses the least)
        min(allowed, key=lambda r: math.ceil(r["estimate_seconds"]))["fastest"] = True
    return ways


def _route(
    obj: Snapshot | Backup, kind: str, plan: Plan, seconds: float, disk: Disk, how: str
) -> dict[str, Any]:
    return {
        "kind_of": kind,
        "id": obj.id,
        "name": obj.name,
        "disk_id": disk.id,
        "disk_name": disk.name,
        "created_at": iso(obj.created_at),
        "size": obj.size,
        "how": how,
        "route": plan.route,
        "estimate_seconds": seconds,
        "refusal": plan.refusal,
        "fastest": False,
    }
