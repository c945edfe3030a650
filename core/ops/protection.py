"""Protection status: is each disk covered by a policy that is keeping up?

A disk is
- `unprotected`: no enabled policy covers it;
- `failing`: its newest backup attempt failed and nothing succeeded since;
- `overdue`: a policy's last slot (past a short grace) has no successful backup of it;
- `protected`: otherwise.
The worst status wins. `status()` is what `blockvault status`, the Prometheus textfile
(`prometheus_text`), the overdue and failing alerts (`raise_overdue_alerts`, called by the
service every tick and by `blockvault status`) and the console's disks pane all read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as default
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from sqlmodel import Session, func, select

from core.base.errors import UserError
from core.base.times import as_utc
from core.catalog.context import Context, record
from core.catalog.models import (
    Backup,
    Disk,
    Drill,
    Job,
    Meta,
    Policy,
    PolicyTarget,
    Server,
    VaultRecord,
    iso,
)
from core.jobs.alerts import alert
from core.ops.policies import zone
from core.rules.schedules import parse_schedule

#: how long after its slot a backup may take to start before the disk counts as overdue
GRACE_MIN, GRACE_MAX = timedelta(seconds=60), timedelta(hours=1)
ORDER = ("protected", "overdue", "failing")  # worst last; "unprotected" stands apart
STATUSES = ("protected", "overdue", "failing", "unprotected")


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
    created = as_utc(policy.created_at)
    if last is None or last < created:
        return None
    return last


@dataclass
class _Backups:
    """What protection needs of one disk's available backups: the newest, and per policy
    the newest one it made."""

    #: created_at (UTC), duration, bytes_stored, created_at as stored (for queries)
    newest: tuple[datetime, float, int, datetime] | None = None
    by_policy: dict[str, datetime] = default(default_factory=dict)


def _available_backups(session: Session) -> dict[str, _Backups]:
    """Every disk's `_Backups`, grouped by the database (two queries of a row per disk and
    policy): 1,000 disks of 100 backups each took 4,000 queries and 100,000 ORM objects
    (8 s) as a query per disk, and 0.7 s as one query of every backup's columns."""
    available = Backup.status == "available"
    at = func.max(Backup.created_at)
    found: dict[str, _Backups] = {}
    newest = (
        select(Backup.disk_id, at.label("at")).where(available).group_by(Backup.disk_id)
    ).subquery()
    rows = session.exec(
        select(Backup.disk_id, Backup.created_at, Backup.duration, Backup.bytes_stored)
        .join(newest, (Backup.disk_id == newest.c.disk_id) & (Backup.created_at == newest.c.at))
        .where(available)
    )
    for disk_id, created_at, duration, stored in rows:
        entry = found.setdefault(disk_id, _Backups())
        made = as_utc(created_at)
        if entry.newest is None or made > entry.newest[0]:
            entry.newest = (made, duration, stored, created_at)
    by_policy = session.exec(
        select(Backup.disk_id, Backup.policy_id, at)
        .where(available, Backup.policy_id.is_not(None))  # type: ignore[union-attr]
        .group_by(Backup.disk_id, Backup.policy_id)
    )
    for disk_id, policy_id, last in by_policy:
        if isinstance(last, str):  # an aggregate over SQLite comes back as its stored text
            last = datetime.fromisoformat(last)
        found.setdefault(disk_id, _Backups()).by_policy[policy_id] = as_utc(last)
    return found


def _newest_by_disk(rows: Iterable[Any], key: Callable[[Any], datetime]) -> dict[str, Any]:
    """The newest row of each disk (rows have a disk_id)."""
    newest: dict[str, Any] = {}
    for row in rows:
        held = newest.get(row.disk_id)
        if held is None or key(row) > key(held):
            newest[row.disk_id] = row
    return newest


def _disk_status(
    session: Session,
    disk: Disk,
    policies: list[Policy],
    *,
    now: datetime,
    tz: tzinfo,
    backups: _Backups,
    attempt: Job | None,
    drill: Drill | None,
    proven: Drill | None,
) -> dict[str, Any]:
    good = backups.newest
    status, detail = ("protected", "") if policies else ("unprotected", "no policy covers it")
    since: datetime | None = None  # when this overdue or failing spell began
    next_runs = []
    for policy in policies:
        schedule = parse_schedule(policy.schedule)
        next_runs.append(schedule.next_after(now, tz))
        expected = _expected_slot(policy, now=now, tz=tz)
        if expected is None:
            continue
        last = backups.by_policy.get(policy.id)
        if (last is None or last < expected) and ORDER.index(status) < ORDER.index("overdue"):
            status = "overdue"
            detail = f"policy {policy.name}: no backup since its slot at {iso(expected)}"
            # the first slot missed: the same for the whole spell, whatever slots pass since
            base = max([as_utc(policy.created_at), *([last] if last else [])])
            since = schedule.next_after(base, tz) or expected
    if (
        policies
        and attempt is not None
        and attempt.status == "failed"
        and (good is None or as_utc(attempt.created_at) > good[0])
    ):
        status, detail = "failing", f"last backup failed: {attempt.error or 'unknown error'}"
        failures = select(Job).where(
            Job.disk_id == disk.id, Job.kind == "backup", Job.status == "failed"
        )
        if good is not None:
            failures = failures.where(Job.created_at > good[3])
        first = session.exec(failures.order_by(Job.created_at)).first()  # type: ignore[arg-type]
        since = as_utc(first.created_at if first else attempt.created_at)
    return {
        "disk": disk.name,
        "disk_id": disk.id,
        "status": status,
        "detail": detail,
        "since": iso(since),
        "policies": [p.name for p in policies],
        "last_success_at": iso(good[0]) if good else None,
        "last_duration": good[1] if good else None,
        "last_bytes_stored": good[2] if good else None,
        "next_run_at": iso(min(next_runs)) if next_runs else None,
        "last_drill_at": iso(drill.started_at) if drill else None,
        "last_drill_status": drill.status if drill else None,
        "last_proven_restore_at": iso(proven.started_at) if proven else None,
        "rto_seconds": proven.seconds if proven else None,
    }


def status(ctx: Context, *, now: datetime | None = None) -> dict[str, Any]:
    """Every disk's protection status, and the counts by status: a few queries for all
    disks at once, whatever their number."""
    now = as_utc(now or datetime.now(UTC))
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
        backups = _available_backups(session)
        newest_job = (
            select(Job.disk_id, func.max(Job.created_at).label("at"))
            .where(
                Job.kind == "backup",
                Job.disk_id.is_not(None),  # type: ignore[union-attr]
            )
            .group_by(Job.disk_id)
        )
        latest = newest_job.subquery()
        attempts = _newest_by_disk(
            session.exec(
                select(Job)
                .join(latest, (Job.disk_id == latest.c.disk_id) & (Job.created_at == latest.c.at))
                .where(Job.kind == "backup")
            ).all(),
            key=lambda job: as_utc(job.created_at),
        )
        drills = session.exec(select(Drill).where(Drill.status != "running")).all()
        by_start = lambda drill: as_utc(drill.started_at)  # noqa: E731
        last_drills = _newest_by_disk(drills, by_start)
        proven = _newest_by_disk((d for d in drills if d.status == "passed"), by_start)
        disks = []
        for disk in session.exec(select(Disk).order_by(Disk.name)).all():
            if disk.status in ("deleting", "deleted"):
                continue
            row = _disk_status(
                session,
                disk,
                covering.get(disk.id, []),
                now=now,
                tz=tz,
                backups=backups.get(disk.id, _Backups()),
                attempt=attempts.get(disk.id),
                drill=last_drills.get(disk.id),
                proven=proven.get(disk.id),
            )
            row["server"] = servers.get(disk.server_id or "")
            disks.append(row)
        vaults = [
            _vault_status(session, vault)
            for vault in session.exec(select(VaultRecord).order_by(VaultRecord.name)).all()
        ]
    counts = {name: sum(1 for d in disks if d["status"] == name) for name in STATUSES}
    return {"at": iso(now), "counts": counts, "disks": disks, "vaults": vaults}


def _vault_status(session: Session, vault: VaultRecord) -> dict[str, Any]:
    """A vault's available backups: how many, the bytes they stored, the newest one's time."""
    count, stored, newest = session.exec(
        select(
            func.count(Backup.id),  # type: ignore[arg-type]
            func.coalesce(func.sum(Backup.bytes_stored), 0),
            func.max(Backup.created_at),
        ).where(Backup.vault_id == vault.id, Backup.status == "available")
    ).one()
    if isinstance(newest, str):  # an aggregate over SQLite comes back as its stored text
        newest = datetime.fromisoformat(newest)
    return {
        "vault": vault.name,
        "vault_id": vault.id,
        "kind": vault.kind,
        "backups": int(count),
        "stored_bytes": int(stored),
        "last_success_at": iso(newest),
    }


# --- alerts ---------------------------------------------------------------------------------

#: meta rows `alerted:disk:<disk id>` = "<status>|<since>": the spell already alerted
ALERTED_KEY = "alerted:disk:"


def raise_overdue_alerts(
    ctx: Context, *, now: datetime | None = None, report: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Alert `disk.overdue` / `disk.failing` once per disk per spell: a spell is a status and
    when it began (`since`: the first slot missed, the first failed attempt), remembered in
    the catalog's `meta` table inside one writer transaction, so the service's ticks, cron's
    `blockvault status` and two hosts on one catalog alert it once between them. A disk that
    is protected again forgets its spell (the next one alerts). Returns the events notified."""
    report = report or status(ctx, now=now)
    raised: list[dict[str, Any]] = []
    with ctx.catalog.writer() as session:
        remembered = {
            row.key: row
            for row in session.exec(
                select(Meta).where(Meta.key.startswith(ALERTED_KEY))  # type: ignore[attr-defined]
            ).all()
        }
        for disk in report["disks"]:
            key = ALERTED_KEY + disk["disk_id"]
            row = remembered.pop(key, None)
            if disk["status"] not in ("overdue", "failing"):
                if row is not None:
                    session.delete(row)
                continue
            spell = f"{disk['status']}|{disk['since']}"
            if row is not None and row.value == spell:
                continue
            session.merge(Meta(key=key, value=spell))
            action = f"disk.{disk['status']}"
            record(
                session,
                ctx,
                action,
                kind="disk",
                object_id=disk["disk_id"],
                name=disk["disk"],
                detail=disk["detail"],
            )
            raised.append(disk)
        for row in remembered.values():  # disks that are gone
            session.delete(row)
        session.commit()
    return [
        alert(
            ctx,
            f"disk.{disk['status']}",
            kind="disk",
            object_id=disk["disk_id"],
            name=disk["disk"],
            detail=disk["detail"],
            data={
                "disk": disk["disk"],
                "server": disk["server"],
                "status": disk["status"],
                "since": disk["since"],
                "policies": disk["policies"],
                "last_success_at": disk["last_success_at"],
            },
            recorded=True,
        )
        for disk in raised
    ]


# --- the Prometheus textfile ----------------------------------------------------------------

_DISK_METRICS = (
    (
        "blockvault_disk_last_success_timestamp_seconds",
        "Start time of the disk's newest available backup (Unix seconds).",
        "last_success_at",
    ),
    (
        "blockvault_disk_last_backup_duration_seconds",
        "How long the disk's newest available backup took.",
        "last_duration",
    ),
    (
        "blockvault_disk_last_backup_bytes",
        "Bytes the disk's newest available backup stored (new chunks, compressed).",
        "last_bytes_stored",
    ),
    (
        "blockvault_disk_last_proven_restore_timestamp_seconds",
        "Start time of the disk's newest passed restore drill (Unix seconds).",
        "last_proven_restore_at",
    ),
)
_VAULT_METRICS = (
    (
        "blockvault_vault_stored_bytes",
        "Bytes stored by the vault's available backups (the sum of what each stored).",
        "stored_bytes",
    ),
    (
        "blockvault_vault_last_success_timestamp_seconds",
        "Start time of the vault's newest available backup (Unix seconds).",
        "last_success_at",
    ),
)


def label_value(text: str) -> str:
    """A label value escaped as the exposition format says: backslash, quote, newline."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str | None) -> str:
    return ",".join(f'{key}="{label_value(value or "")}"' for key, value in labels.items())


def _number(value: Any) -> str | None:
    """A sample's value: numbers as they are, ISO times as Unix seconds, None as no sample."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value).timestamp()
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def prometheus_text(report: dict[str, Any]) -> str:
    """The node_exporter textfile form of a `status()` report. A disk's status is one-hot
    (`blockvault_disk_status{status="failing"} 1`, 0 for the other statuses, as
    kube-state-metrics does for phases); a value a disk does not have yet (never backed up,
    never drilled) has no sample rather than a made-up 0."""
    lines: list[str] = []

    def family(name: str, help_text: str, samples: list[tuple[str, str | None]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(
            f"{name}{{{labels}}} {value}" if labels else f"{name} {value}"
            for labels, value in samples
            if value is not None
        )

    disks, vaults = report["disks"], report.get("vaults", [])
    family(
        "blockvault_disk_status",
        "Protection status of each disk, one-hot over protected, overdue, failing, unprotected.",
        [
            (
                _labels(disk=d["disk"], server=d["server"], status=name),
                "1" if d["status"] == name else "0",
            )
            for d in disks
            for name in STATUSES
        ],
    )
    for name, help_text, field in _DISK_METRICS:
        family(
            name,
            help_text,
            [(_labels(disk=d["disk"], server=d["server"]), _number(d[field])) for d in disks],
        )
    for name, help_text, field in _VAULT_METRICS:
        family(name, help_text, [(_labels(vault=v["vault"]), _number(v[field])) for v in vaults])
    family(
        "blockvault_disks",
        "Disks by protection status.",
        [(_labels(status=name), str(report["counts"][name])) for name in STATUSES],
    )
    family(
        "blockvault_status_timestamp_seconds",
        "When this report was made (Unix seconds): an old value means a stale file.",
        [("", _number(report["at"]))],
    )
    return "\n".join(lines) + "\n"


def write_prometheus(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the textfile atomically (FILE.tmp, fsync, rename), mode 0644, so node_exporter
    never reads half a file."""
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(prometheus_text(report))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
