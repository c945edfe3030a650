"""The plan of a policy's retention (which backups expire is core/rules/gfs.py). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from core.base.times import as_utc
from core.catalog.models import Backup, Policy
from core.rules.plans import Plan, PlanItem


def plan_retention(
    policy: Policy,
    victims: Sequence[Backup],
    *,
    freed: dict[str, int] | None = None,
    now: datetime | None = None,
) -> Plan:
    """What retention deletes now; each backup's bytes are those only it references. A
    backup the rules expire while it is locked (`backup lock`, the policy's --lock-for) is
    kept, and the plan says until when."""
    freed = freed or {}
    now = now or datetime.now(UTC)
    items = []
    for b in victims:
        until = as_utc(b.locked_until) if b.locked_until is not None else None
        if until is not None and until > now:
            note = (
                f"expired by policy {policy.name}, but locked until "
                f"{until:%Y-%m-%d %H:%M:%S} UTC: kept until then"
            )
            items.append(PlanItem("keep", "backup", b.id, b.name, 0, note))
        else:
            note = f"expired by policy {policy.name}"
            items.append(PlanItem("delete", "backup", b.id, b.name, freed.get(b.id, 0), note))
    return Plan(f"retention of policy {policy.name}", policy.name, tuple(items))
