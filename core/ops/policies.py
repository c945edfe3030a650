"""Backup policies: a cron schedule, a vault, retention, and the disks they cover.

`run_due` is what cron calls (`blockvault policy run`): it backs up every disk of every policy
whose schedule fired since its last run, then applies retention (keep the newest `keep_last`,
and anything younger than `keep_days`), never deleting the newest backup of a disk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from core.base.errors import BlockvaultError, UserError
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, Policy, PolicyTarget, iso
from core.catalog.names import check_new_name, commit_unique, unique_id
from core.ops import backups
from core.ops.facts import check_plan
from core.ops.vaults import get_vault, open_repository
from core.rules import lifecycle
from core.rules.plans import Plan
from core.rules.retention import (
    due,
    next_run,
    plan_retention,
    retention_victims,
    validate_schedule,
)


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
        "next_run_at": iso(next_run(policy.schedule, datetime.now(UTC))),
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
    with ctx.catalog.writer() as session:
        check_new_name(session, Policy, name, kind="policy")
        policy = Policy(
            id=unique_id(session, Policy, "policy"),
            name=name,
            schedule=schedule,
            vault_id=target_vault.id,
            keep_last=keep_last,
            keep_days=keep_days,
        )
        session.add(policy)
        resolved = [resolve(session, Disk, ref, kind="disk") for ref in disks]
        for disk in resolved:
            session.add(PolicyTarget(policy_id=policy.id, disk_id=disk.id))
        record(
            session,
            ctx,
            "policy.create",
            kind="policy",
            object_id=policy.id,
            name=name,
            detail=schedule,
        )
        commit_unique(session, f"a policy named {name!r}")
        return policy_view(policy, resolved)


def list_policies(ctx: Context) -> list[dict[str, Any]]:
    with ctx.catalog.session() as session:
        return [
            policy_view(p, _targets(session, p))
            for p in session.exec(select(Policy).order_by(Policy.name)).all()
        ]


def get_policy(ctx: Context, ref: str) -> dict[str, Any]:
    with ctx.catalog.session() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        return policy_view(policy, _targets(session, policy))


def plan_delete_policy(ctx: Context, ref: str) -> Plan:
    with ctx.catalog.session() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        return lifecycle.plan_policy_delete(policy, disks=_targets(session, policy))


def delete_policy(ctx: Context, ref: str, *, plan: Plan | None = None) -> Plan:
    """Deleting a policy stops future backups; the backups it made are kept."""
    with ctx.catalog.writer() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        now = check_plan(
            plan, lifecycle.plan_policy_delete(policy, disks=_targets(session, policy))
        )
        for target in session.exec(
            select(PolicyTarget).where(PolicyTarget.policy_id == policy.id)
        ).all():
            session.delete(target)
        session.flush()  # targets first: they point at the policy
        session.delete(policy)
        record(session, ctx, "policy.delete", kind="policy", object_id=policy.id, name=policy.name)
        session.commit()
        return plan or now


def _retention_plan(
    ctx: Context,
    session: Session,
    policy: Policy,
    *,
    now: datetime,
    measure: bool,
    pending: bool = False,
) -> Plan:
    """Retention of one policy. `pending`: as it will be after this run's backups (one new,
    newest backup per covered disk), which is when `policy run` applies it; the new backup
    is taken to hold what the disk's newest backup holds (exact for an unchanged disk)."""
    victims: list[Backup] = []
    newest: list[str] = []
    for disk in _targets(session, policy):
        mine = list(
            session.exec(
                select(Backup).where(
                    Backup.policy_id == policy.id,
                    Backup.disk_id == disk.id,
                    Backup.status == "available",
                )
            ).all()
        )
        if pending and mine:
            newest.append(max(mine, key=lambda b: b.created_at).id)
        if pending:
            mine.append(
                Backup(id="", name="(this run)", vault_id="", disk_id=disk.id, created_at=now)
            )
        victims += [
            b
            for b in retention_victims(
                mine, keep_last=policy.keep_last, keep_days=policy.keep_days, now=now
            )
            if b.id
        ]
    freed = None
    if measure and victims:
        vault = get_vault(ctx, policy.vault_id)
        repo = open_repository(ctx, vault)
        freed = repo.freed_by_deleting([b.id for b in victims], kept_alike=newest)
    return plan_retention(policy, victims, freed=freed)


def plan_retention_of(
    ctx: Context, ref: str, *, now: datetime | None = None, pending: bool = False
) -> Plan:
    """What retention deletes (`pending`: after this run's backups, as `policy run` does)."""
    with ctx.catalog.session() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        moment = now or datetime.now(UTC)
        return _retention_plan(ctx, session, policy, now=moment, measure=True, pending=pending)


def due_policies(
    ctx: Context, *, now: datetime | None = None, force: bool = False, policy_ref: str | None = None
) -> list[tuple[Policy, list[Disk]]]:
    """Policies whose schedule fired since their last run (or the one named, with `force`)."""
    now = now or datetime.now(UTC)
    with ctx.catalog.session() as session:
        policies = (
            [resolve(session, Policy, policy_ref, kind="policy")]
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
        return plans


def run_due(
    ctx: Context, *, now: datetime | None = None, force: bool = False, policy_ref: str | None = None
) -> list[dict[str, Any]]:
    """Back up the disks of every due policy, then apply its retention plan."""
    now = now or datetime.now(UTC)
    outcomes: list[dict[str, Any]] = []
    for policy, disks in due_policies(ctx, now=now, force=force, policy_ref=policy_ref):
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
            retention = _retention_plan(ctx, session, policy, now=now, measure=False)
        for item in retention.of("delete", "backup"):
            try:
                backups.delete_backup(ctx, item.id)
                status, error = "expired", None
            except BlockvaultError as exc:
                status, error = "failed", str(exc)
            outcomes.append(
                {"policy": policy.name, "backup": item.id, "status": status, "error": error}
            )
    return outcomes
