"""Backup policies: a cron schedule, a vault, retention, and the disks they cover.

`run_due` is what cron calls (`blockvault policy run`): it backs up every disk of every policy
whose schedule fired since its last run, then applies retention (keep the newest `keep_last`,
and anything younger than `keep_days`), never deleting the newest backup of a disk.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError
from sqlmodel import select

from core.base.errors import BlockvaultError, UserError
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, Policy, PolicyTarget, iso
from core.ops.inventory import check_new_name, unique_id
from core.ops.vaults import get_vault


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def validate_schedule(schedule: str) -> str:
    try:
        CronSim(schedule, datetime.now(UTC))
    except CronSimError as exc:
        raise UserError(f"invalid schedule {schedule!r}: {exc}") from None
    return schedule


def policy_view(policy: Policy, disks: list[Disk]) -> dict[str, Any]:
    return {
        "id": policy.id,
        "name": policy.name,
        "status": "enabled" if policy.enabled else "disabled",
        "size": None,
        "created_at": iso(policy.created_at),
        "schedule": policy.schedule,
        "vault_id": policy.vault_id,
        "keep_last": policy.keep_last,
        "keep_days": policy.keep_days,
        "disks": [{"id": d.id, "name": d.name} for d in disks],
        "next_run_at": iso(next(iter(CronSim(policy.schedule, datetime.now(UTC))))),
    }


def _targets(session, policy: Policy) -> list[Disk]:  # type: ignore[no-untyped-def]
    ids = [
        t.disk_id
        for t in session.exec(select(PolicyTarget).where(PolicyTarget.policy_id == policy.id)).all()
    ]
    return [d for d in (session.get(Disk, i) for i in ids) if d is not None]


def create_policy(
    ctx: Context,
    name: str,
    *,
    schedule: str,
    vault: str | None,
    keep_last: int | None,
    keep_days: int | None,
    disks: list[str],
) -> dict[str, Any]:
    validate_schedule(schedule)
    if keep_last is not None and keep_last < 1:
        raise UserError("--keep-last must be at least 1")
    if keep_days is not None and keep_days < 1:
        raise UserError("--keep-days must be at least 1")
    target_vault = get_vault(ctx, vault)
    with ctx.catalog.session() as session:
        check_new_name(session, Policy, name, "policy")
        policy = Policy(
            id=unique_id(session, Policy, "policy"),
            name=name,
            schedule=schedule,
            vault_id=target_vault.id,
            keep_last=keep_last,
            keep_days=keep_days,
        )
        session.add(policy)
        resolved = [resolve(session, Disk, ref, "disk") for ref in disks]
        for disk in resolved:
            session.add(PolicyTarget(policy_id=policy.id, disk_id=disk.id))
        record(session, ctx, "policy.create", "policy", policy.id, name, schedule)
        session.commit()
        return policy_view(policy, resolved)


def list_policies(ctx: Context) -> list[dict[str, Any]]:
    with ctx.catalog.session() as session:
        return [
            policy_view(p, _targets(session, p))
            for p in session.exec(select(Policy).order_by(Policy.name)).all()
        ]


def get_policy(ctx: Context, ref: str) -> dict[str, Any]:
    with ctx.catalog.session() as session:
        policy = resolve(session, Policy, ref, "policy")
        return policy_view(policy, _targets(session, policy))


def delete_policy(ctx: Context, ref: str) -> dict[str, Any]:
    """Deleting a policy stops future backups; the backups it made are kept."""
    with ctx.catalog.session() as session:
        policy = resolve(session, Policy, ref, "policy")
        view = policy_view(policy, _targets(session, policy))
        for target in session.exec(
            select(PolicyTarget).where(PolicyTarget.policy_id == policy.id)
        ).all():
            session.delete(target)
        session.flush()  # targets first: they point at the policy
        session.delete(policy)
        record(session, ctx, "policy.delete", "policy", policy.id, policy.name)
        session.commit()
        return view


def retention_victims(
    backups: list[Backup], *, keep_last: int | None, keep_days: int | None, now: datetime
) -> list[Backup]:
    """Backups of one disk that retention removes: beyond keep_last AND older than keep_days.

    Pure; the newest backup is always kept.
    """
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
    start = _aware(last_run or policy.created_at)
    fire = next(iter(CronSim(policy.schedule, start)))
    return fire <= now


def run_due(
    ctx: Context, *, now: datetime | None = None, force: bool = False, policy_ref: str | None = None
) -> list[dict[str, Any]]:
    """Back up the disks of every due policy, then apply its retention. Returns what happened."""
    from core.ops import backups

    now = now or datetime.now(UTC)
    outcomes: list[dict[str, Any]] = []
    with ctx.catalog.session() as session:
        policies = (
            [resolve(session, Policy, policy_ref, "policy")]
            if policy_ref
            else list(
                session.exec(select(Policy).where(Policy.enabled == True)).all()  # noqa: E712
            )
        )
        plans = []
        for policy in policies:
            last = session.exec(
                select(Backup.created_at)
                .where(Backup.policy_id == policy.id)
                .order_by(Backup.created_at.desc())  # type: ignore[attr-defined]
            ).first()
            if force or due(policy, last_run=last, now=now):
                plans.append((policy, _targets(session, policy)))
    for policy, disks in plans:
        for disk in disks:
            try:
                handle = backups.start_backup(
                    ctx, disk.id, vault_ref=policy.vault_id, policy_id=policy.id
                )
                result = handle.run()
                if handle.error:
                    raise handle.error
                outcomes.append(
                    {
                        "policy": policy.name,
                        "disk": disk.name,
                        "backup": result["id"],
                        "status": "succeeded",
                    }
                )
            except BlockvaultError as exc:
                outcomes.append(
                    {
                        "policy": policy.name,
                        "disk": disk.name,
                        "status": "failed",
                        "error": str(exc),
                    }
                )
            with ctx.catalog.session() as session:
                mine = list(
                    session.exec(
                        select(Backup).where(
                            Backup.policy_id == policy.id, Backup.disk_id == disk.id
                        )
                    ).all()
                )
            for victim in retention_victims(
                mine, keep_last=policy.keep_last, keep_days=policy.keep_days, now=now
            ):
                backups.delete_backup(ctx, victim.id)
                outcomes.append(
                    {
                        "policy": policy.name,
                        "disk": disk.name,
                        "backup": victim.id,
                        "status": "expired",
                    }
                )
    return outcomes
