"""The plan of a policy's retention (which backups expire is core/rules/gfs.py). Pure."""

from __future__ import annotations

from collections.abc import Sequence

from core.catalog.models import Backup, Policy
from core.rules.plans import Plan, PlanItem


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
