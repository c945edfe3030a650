"""Retention and schedules: which backups a policy expires, and when a policy is due. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

from core.base.errors import UserError
from core.catalog.models import Backup, Policy
from core.rules.plans import Plan, PlanItem


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def validate_schedule(schedule: str) -> str:
    try:
        CronSim(schedule, datetime.now(UTC))
    except CronSimError as exc:
        raise UserError(f"invalid schedule {schedule!r}: {exc}") from None
    return schedule


def next_run(schedule: str, after: datetime) -> datetime:
    return next(iter(CronSim(schedule, _aware(after))))


def retention_victims(
    backups: Sequence[Backup], *, keep_last: int | None, keep_days: int | None, now: datetime
) -> list[Backup]:
    """Backups of one disk that retention removes: beyond keep_last AND older than keep_days.

    The newest backup is always kept."""
    if keep_last is None and keep_days is None:
        return []
    ordered = sorted(backups, key=lambda b: _aware(b.created_at), reverse=True)
    victims = []
    for index, backup in enumerate(ordered[1:], start=1):
        kept_by_count = keep_last is not None and index < keep_last
        kept_by_age = keep_days is not None and _aware(backup.created_at) >= now - timedelta(
            days=keep_days
        )
        if not kept_by_count and not kept_by_age:
            victims.append(backup)
    return victims


def due(policy: Policy, *, last_run: datetime | None, now: datetime) -> bool:
    """True if the schedule fired after the last run (or after creation) and by now."""
    return next_run(policy.schedule, last_run or policy.created_at) <= now


def plan_retention(
    policy: Policy, victims: Sequence[Backup], *, freed: dict[str, int] | None = None
) -> Plan:
    """What retention deletes now; each backup's bytes are those only it references."""
    freed = freed or {}
    items = tuple(
        PlanItem(
            "delete",
            "backup",
            b.id,
            b.name,
            freed.get(b.id, 0),
            f"expired by policy {policy.name}",
        )
        for b in victims
    )
    return Plan(f"retention of policy {policy.name}", policy.name, items)
