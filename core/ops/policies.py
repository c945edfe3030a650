"""Backup policies: a schedule, a vault, GFS retention, drills, and the disks they cover.

`run_due` is what the service and cron call (`blockvault policy run`): for each policy whose
schedule has a slot since its last claimed one, it claims that slot in the catalog (the first
claimer wins: two services never run one slot twice; slots missed while the host was down
run once), backs up every covered disk, then applies retention (core/rules/gfs.py): only
the policy's own automatic backups expire, never a pinned one, never a disk's newest good one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from core.base.errors import BlockvaultError, UserError
from core.base.host import host_id
from core.base.times import as_utc
from core.base.units import human_size
from core.catalog.context import Context, on_this_host, record, resolve
from core.catalog.models import (
    Backup,
    Disk,
    Policy,
    PolicySlot,
    PolicyTarget,
    Server,
    VaultRecord,
    iso,
)
from core.catalog.names import check_new_name, commit_unique, unique_id
from core.jobs.alerts import alert
from core.jobs.runner import create_job
from core.ops import backups, replication
from core.ops.facts import check_plan
from core.ops.vaults import get_vault, open_repository
from core.rules import lifecycle
from core.rules.gfs import KeepRules, decide, parse_duration
from core.rules.plans import Plan
from core.rules.retention import plan_retention
from core.rules.schedules import Schedule, due_slot, parse_schedule, zone_named

#: `--drill weekly` and friends: a quiet hour after the usual backup window
DRILL_SHORTHANDS = {
    "daily": "daily 04:00",
    "weekly": "weekly sun 04:00",
    "monthly": "0 4 1 * *",
}
KEEP_COUNTS = (
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
)


def zone(ctx: Context) -> tzinfo:
    """The zone schedules and retention buckets are read in (config `timezone`, else local)."""
    return zone_named(ctx.settings.timezone or None)


def rules_of(policy: Policy) -> KeepRules:
    within = None
    if policy.keep_within:
        within = parse_duration(policy.keep_within)
    elif policy.keep_days:
        within = timedelta(days=policy.keep_days)
    return KeepRules(
        last=policy.keep_last,
        hourly=policy.keep_hourly,
        daily=policy.keep_daily,
        weekly=policy.keep_weekly,
        monthly=policy.keep_monthly,
        yearly=policy.keep_yearly,
        within=within,
    )


def slot_kind(kind: str = "backup") -> str:
    """Backup slots are claimed per host: each host of a shared catalog backs up its own
    disks of a policy once per slot (drill and gc slots stay one per catalog)."""
    return f"backup@{host_id()}" if kind == "backup" else kind


def _last_slot(session: Session, policy: Policy, kind: str = "backup") -> PolicySlot | None:
    """The newest slot this host claimed (a backup slot claimed before v6 counts too)."""
    return session.exec(
        select(PolicySlot)
        .where(PolicySlot.policy_id == policy.id, PolicySlot.kind.in_({slot_kind(kind), kind}))  # type: ignore[attr-defined]
        .order_by(PolicySlot.slot_at.desc())  # type: ignore[attr-defined]
    ).first()


def policy_view(
    session: Session, policy: Policy, disks: list[Disk], *, tz: tzinfo, now: datetime
) -> dict[str, Any]:
    schedule = parse_schedule(policy.schedule)
    last = _last_slot(session, policy)
    return {
        "id": policy.id,
        "name": policy.name,
        "status": "enabled" if policy.enabled else "disabled",
        "size": None,
        "created_at": iso(policy.created_at),
        "schedule": schedule.text,
        "runs": schedule.describe(),
        "vault_id": policy.vault_id,
        "retention": rules_of(policy).describe(),
        **{key: getattr(policy, key) for key in KEEP_COUNTS},
        "keep_within": policy.keep_within or (f"{policy.keep_days}d" if policy.keep_days else None),
        "drill": parse_schedule(policy.drill).describe() if policy.drill else None,
        "lock_for": policy.lock_for,
        "replicate_to": _vault_name(session, policy.replicate_to),
        "disks": [{"id": d.id, "name": d.name} for d in disks],
        "last_run_at": iso(last.slot_at) if last else None,
        "last_run_status": last.status if last else None,
        "next_run_at": iso(schedule.next_after(now, tz)),
    }


def _vault_name(session: Session, vault_id: str | None) -> str | None:
    vault = session.get(VaultRecord, vault_id) if vault_id else None
    return vault.name if vault else vault_id


def targets_of(session: Session, policy: Policy) -> list[Disk]:
    ids = [
        t.disk_id
        for t in session.exec(select(PolicyTarget).where(PolicyTarget.policy_id == policy.id)).all()
    ]
    found = [d for d in (session.get(Disk, i) for i in ids) if d is not None]
    return sorted(found, key=lambda d: d.name)


def _resolve_targets(session: Session, refs: list[str]) -> list[Disk]:
    """Disks named directly, or every disk of a named server."""
    found: dict[str, Disk] = {}
    for ref in refs:
        disk = session.exec(select(Disk).where((Disk.id == ref) | (Disk.name == ref))).first()
        if disk is not None:
            found[disk.id] = disk
            continue
        server = session.exec(
            select(Server).where((Server.id == ref) | (Server.name == ref))
        ).first()
        if server is None:
            raise UserError(f"no disk or server named {ref!r}")
        for disk in session.exec(select(Disk).where(Disk.server_id == server.id)).all():
            found[disk.id] = disk
    return list(found.values())


def _check_rules(keep: dict[str, int | None], keep_within: str | None) -> None:
    for key, value in keep.items():
        if value is not None and value < 1:
            raise UserError(f"--{key.replace('_', '-')} must be at least 1")
    if keep_within is not None:
        parse_duration(keep_within)


def create_policy(
    ctx: Context,
    name: str,
    *,
    schedule: str,
    vault: str | None,
    keep: dict[str, int | None],
    keep_within: str | None = None,
    drill: str | None = None,
    disks: list[str],
    replicate_to: str | None = None,
    lock_for: str | None = None,
) -> dict[str, Any]:
    """A new policy; `keep` holds the GFS counts (keep_last, keep_daily, ...); `replicate_to`
    a vault each backup it makes is copied into."""
    parsed = parse_schedule(schedule)
    drill_text = parse_schedule(DRILL_SHORTHANDS.get(drill, drill)).text if drill else None
    unknown = set(keep) - set(KEEP_COUNTS)
    if unknown:
        raise UserError(f"unknown retention rule(s): {', '.join(sorted(unknown))}")
    _check_rules(keep, keep_within)
    if lock_for is not None:
        parse_duration(lock_for)  # each backup it makes is locked this long (`backup lock`)
    target_vault = get_vault(ctx, vault)
    replica_vault = get_vault(ctx, replicate_to) if replicate_to else None
    if replica_vault is not None:
        refusal = replica_refusal(target_vault, replica_vault)
        if refusal:
            raise UserError(f"--replicate-to {replica_vault.name}: {refusal}")
    with ctx.catalog.writer() as session:
        check_new_name(session, Policy, name, kind="policy")
        policy = Policy(
            id=unique_id(session, Policy, "policy"),
            name=name,
            schedule=parsed.text,
            vault_id=target_vault.id,
            keep_within=keep_within,
            drill=drill_text,
            replicate_to=replica_vault.id if replica_vault else None,
            lock_for=lock_for,
            **{key: keep.get(key) for key in KEEP_COUNTS},
        )
        session.add(policy)
        resolved = _resolve_targets(session, disks)
        session.flush()
        for disk in resolved:
            session.add(PolicyTarget(policy_id=policy.id, disk_id=disk.id))
        record(
            session,
            ctx,
            "policy.create",
            kind="policy",
            object_id=policy.id,
            name=name,
            detail=parsed.text,
        )
        commit_unique(session, f"a policy named {name!r}")
        view = policy_view(session, policy, resolved, tz=zone(ctx), now=datetime.now(UTC))
    view["warnings"] = (
        []
        if resolved
        else [f"policy {name} covers no disk yet: `blockvault policy apply {name} DISK|SERVER`"]
    )
    return view


def apply_policy(ctx: Context, ref: str, targets: list[str], *, remove: bool = False) -> dict:
    """Cover (or with `remove`, stop covering) disks, or every disk of a server."""
    with ctx.catalog.writer() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        disks = _resolve_targets(session, targets)
        changed = []
        for disk in disks:
            current = session.get(PolicyTarget, (policy.id, disk.id))
            if remove and current is not None:
                session.delete(current)
                changed.append(disk.name)
            elif not remove and current is None:
                session.add(PolicyTarget(policy_id=policy.id, disk_id=disk.id))
                changed.append(disk.name)
        record(
            session,
            ctx,
            "policy.unapply" if remove else "policy.apply",
            kind="policy",
            object_id=policy.id,
            name=policy.name,
            detail=", ".join(changed),
        )
        session.commit()
        session.refresh(policy)
        return policy_view(
            session, policy, targets_of(session, policy), tz=zone(ctx), now=datetime.now(UTC)
        )


def list_policies(ctx: Context) -> list[dict[str, Any]]:
    now, tz = datetime.now(UTC), zone(ctx)
    with ctx.catalog.session() as session:
        return [
            policy_view(session, p, targets_of(session, p), tz=tz, now=now)
            for p in session.exec(select(Policy).order_by(Policy.name)).all()
        ]


def get_policy(ctx: Context, ref: str) -> dict[str, Any]:
    with ctx.catalog.session() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        return policy_view(
            session, policy, targets_of(session, policy), tz=zone(ctx), now=datetime.now(UTC)
        )


def plan_delete_policy(ctx: Context, ref: str) -> Plan:
    with ctx.catalog.session() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        return lifecycle.plan_policy_delete(policy, disks=targets_of(session, policy))


def delete_policy(ctx: Context, ref: str, *, plan: Plan | None = None) -> Plan:
    """Deleting a policy stops future backups; the backups it made are kept."""
    with ctx.catalog.writer() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        now = check_plan(
            plan, lifecycle.plan_policy_delete(policy, disks=targets_of(session, policy))
        )
        for model in (PolicyTarget, PolicySlot):
            for row in session.exec(select(model).where(model.policy_id == policy.id)).all():
                session.delete(row)
        session.flush()  # its rows first: they point at the policy
        session.delete(policy)
        record(session, ctx, "policy.delete", kind="policy", object_id=policy.id, name=policy.name)
        session.commit()
        return plan or now


def _retention_plan(
    ctx: Context,
    session: Session,
    policy: Policy,
    *,
    measure: bool,
    pending: datetime | None = None,
    only_here: bool = False,
) -> Plan:
    """Retention of one policy. With `pending` (the moment of this run's backups), as it
    will be once each covered disk has one more backup, which is when `policy run` applies
    it; the new backup is taken to hold what the disk's newest backup holds. The copies a
    policy makes in its replica vault follow the same rules there, on their own: a copy
    neither counts as one more backup nor protects one in the policy's vault. `only_here`:
    of this host's disks only (each host's run expires its own disks' backups, so two hosts
    never race to delete one)."""
    rules, tz = rules_of(policy), zone(ctx)
    victims: dict[str | None, list[Backup]] = {}
    newest: dict[str | None, list[str]] = {}
    for disk in targets_of(session, policy):
        if only_here and not on_this_host(ctx, disk):
            continue
        every = list(
            session.exec(
                select(Backup).where(Backup.disk_id == disk.id, Backup.status == "available")
            ).all()
        )
        groups = {None: [b for b in every if not b.copy_of]}
        if policy.replicate_to:
            groups[policy.replicate_to] = [
                b for b in every if b.copy_of and b.vault_id == policy.replicate_to
            ]
        for group, good in groups.items():
            mine = [b for b in good if b.policy_id == policy.id]
            protected = {b.id for b in good if b.pinned}
            if good:  # a disk's newest good backup never expires: after this run, the new one
                latest = max(good, key=lambda b: as_utc(b.created_at))
                if pending is None:
                    protected.add(latest.id)
                else:
                    newest.setdefault(group, []).append(latest.id)
            if pending is not None:
                mine.append(
                    Backup(
                        id="", name="(this run)", vault_id="", disk_id=disk.id, created_at=pending
                    )
                )
            decision = decide(mine, rules, tz=tz, pinned=frozenset(protected))
            expired = set(decision.expire)
            victims.setdefault(group, []).extend(b for b in mine if b.id and b.id in expired)
    freed: dict[str, int] | None = None
    if measure and any(victims.values()):
        freed = {}
        for group, doomed in victims.items():
            if doomed:
                repo = open_repository(ctx, get_vault(ctx, group or policy.vault_id))
                freed |= repo.freed_by_deleting(
                    [b.id for b in doomed], kept_alike=newest.get(group, [])
                )
    return plan_retention(policy, [b for doomed in victims.values() for b in doomed], freed=freed)


def plan_prune(ctx: Context, ref: str, *, pending: bool = False) -> Plan:
    """What retention deletes now, with the bytes really freed (`policy prune --dry-run`);
    `pending`: as it will be after this run's backups, as `policy run` applies it (to this
    host's disks)."""
    with ctx.catalog.session() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        moment = datetime.now(UTC) if pending else None
        return _retention_plan(
            ctx, session, policy, measure=True, pending=moment, only_here=pending
        )


def prune(ctx: Context, ref: str, *, plan: Plan | None = None) -> list[dict[str, Any]]:
    """Apply a policy's retention now; the plan confirmed must be the plan that runs."""
    with ctx.catalog.session() as session:
        policy = resolve(session, Policy, ref, kind="policy")
        now = _retention_plan(ctx, session, policy, measure=False)
    check_plan(plan, now)
    return _expire(ctx, policy, now)


def _expire(ctx: Context, policy: Policy, plan: Plan) -> list[dict[str, Any]]:
    outcomes = []
    for item in plan.of("delete", "backup"):
        try:
            backups.delete_backup(ctx, item.id)
            status, error = "expired", None
        except BlockvaultError as exc:
            status, error = "failed", str(exc)
        outcomes.append(
            {"policy": policy.name, "backup": item.name, "status": status, "error": error}
        )
    return outcomes


def pin_backup(ctx: Context, ref: str, *, pinned: bool) -> dict[str, Any]:
    """Exempt a backup from retention (or return it to its policy's rules)."""
    with ctx.catalog.writer() as session:
        backup = resolve(session, Backup, ref, kind="backup")
        backup.pinned = pinned
        backup.version += 1
        session.add(backup)
        record(
            session,
            ctx,
            "backup.pin" if pinned else "backup.unpin",
            kind="backup",
            object_id=backup.id,
            name=backup.name,
        )
        session.commit()
        return {"id": backup.id, "name": backup.name, "pinned": pinned}


# --- running what is due -------------------------------------------------------------------


def next_due_slot(
    session: Session,
    policy: Policy,
    schedule: str,
    *,
    now: datetime,
    tz: tzinfo,
    kind: str = "backup",
) -> datetime | None:
    """The newest slot of `schedule` since the policy's last claimed slot of `kind` (or its
    creation), by `now`: missed slots run once, as that one."""
    last = _last_slot(session, policy, kind)
    since = as_utc(last.slot_at if last else policy.created_at)
    return due_slot(parse_schedule(schedule), since=since, now=now, tz=tz)


def due_policies(
    ctx: Context, *, now: datetime | None = None, force: bool = False, policy_ref: str | None = None
) -> list[tuple[Policy, list[Disk], datetime]]:
    """Policies with a slot due now (or the one named, with `force`), each with its disks and
    the slot it would claim: the newest slot since its last claimed one (missed slots run once)."""
    now = as_utc(now or datetime.now(UTC))
    tz = zone(ctx)
    with ctx.catalog.session() as session:
        policies = (
            [resolve(session, Policy, policy_ref, kind="policy")]
            if policy_ref
            else list(
                session.exec(select(Policy).where(Policy.enabled == True)).all()  # noqa: E712
            )
        )
        found = []
        for policy in policies:
            slot = next_due_slot(session, policy, policy.schedule, now=now, tz=tz)
            if force and slot is None:
                slot = now
            targets = targets_of(session, policy)
            here = [d for d in targets if on_this_host(ctx, d)]
            if slot is not None and (here or not targets):  # other hosts back up theirs
                found.append((policy, here, slot))
        return found


def claim_slot(ctx: Context, policy: Policy, slot: datetime, kind: str = "backup") -> bool:
    """Insert the slot's row; the unique key decides between two claimers (False: taken)."""
    stamp, kind = as_utc(slot), slot_kind(kind)
    with ctx.catalog.writer() as session:
        if session.get(PolicySlot, (policy.id, stamp, kind)) is not None:
            return False
        session.add(PolicySlot(policy_id=policy.id, slot_at=stamp, kind=kind, host=host_id()))
        try:
            session.commit()
        except sa.exc.IntegrityError:
            return False
    return True


def finish_slot(
    ctx: Context, policy: Policy, slot: datetime, status: str, detail: str, *, kind: str = "backup"
) -> None:
    """Record the outcome of a claimed slot (`kind` as it was claimed: backup, drill...)."""
    stamp, kind = as_utc(slot), slot_kind(kind)
    with ctx.catalog.writer() as session:
        row = session.get(PolicySlot, (policy.id, stamp, kind))
        if row is not None:
            row.status, row.detail, row.finished_at = status, detail[:500], datetime.now(UTC)
            session.add(row)
            session.commit()


def run_policy(
    ctx: Context,
    policy: Policy,
    disks: list[Disk],
    slot: datetime,
    *,
    on_backup: Callable[[Any], None] | None = None,
) -> list[dict[str, Any]]:
    """Claim the slot, back up each disk, record the slot's outcome, then apply retention.
    A slot another runner claimed first is skipped (an empty list)."""
    if not claim_slot(ctx, policy, slot):
        return []
    outcomes: list[dict[str, Any]] = []
    for disk in disks:
        handle = None
        try:
            handle = backups.start_backup(
                ctx,
                disk.id,
                vault_ref=policy.vault_id,
                policy_id=policy.id,
                lock_until=(
                    datetime.now(UTC) + parse_duration(policy.lock_for) if policy.lock_for else None
                ),
            )
            if on_backup is not None:
                on_backup(handle)
            result = handle.run()
            if handle.error:
                raise handle.error
            outcomes.append(
                {
                    "policy": policy.name,
                    "disk": disk.name,
                    "backup": result["id"],
                    "status": "succeeded",
                    "error": None,
                }
            )
            if policy.replicate_to:
                outcomes.append(_replicate(ctx, policy, disk, result, on_backup=on_backup))
        except BlockvaultError as exc:
            if handle is None:  # refused or failed before its job existed
                failed_to_start(ctx, disk, exc)
            outcomes.append(
                {"policy": policy.name, "disk": disk.name, "status": "failed", "error": str(exc)}
            )
    failed = [o for o in outcomes if o["status"] == "failed"]
    status = (
        "failed"
        if failed and len(failed) == len(outcomes)
        else "partial"
        if failed
        else "succeeded"
    )
    detail = "; ".join(f"{o['disk']}: {o['error']}" for o in failed)
    finish_slot(ctx, policy, slot, status, detail)
    with ctx.catalog.session() as session:
        retention = _retention_plan(ctx, session, policy, measure=False, only_here=True)
    outcomes += _expire(ctx, policy, retention)
    return outcomes


def replica_refusal(vault: VaultRecord, replica: VaultRecord) -> str | None:
    """Why a policy backing up into `vault` cannot copy its backups into `replica`."""
    if replica.id == vault.id:
        return "it is the policy's own vault; choose another vault"
    if replica.chunk_size != vault.chunk_size:
        return (
            f"vault {replica.name} stores {human_size(replica.chunk_size)} chunks and vault "
            f"{vault.name} {human_size(vault.chunk_size)} chunks: copies need the same chunk size"
        )
    if vault.encrypted and not replica.encrypted:
        return f"vault {vault.name} is encrypted and vault {replica.name} is not"
    return None


def _replicate(
    ctx: Context,
    policy: Policy,
    disk: Disk,
    backup: dict[str, Any],
    *,
    on_backup: Callable[[Any], None] | None,
) -> dict[str, Any]:
    """Copy a backup the policy just made into its replica vault. A copy that fails is an
    alert and a failed step (the slot ends `partial`); the backup itself stays."""
    handle = None
    outcome = {"policy": policy.name, "disk": disk.name, "copy_of": backup["id"]}
    try:
        handle = replication.start_copy(ctx, backup["id"], policy.replicate_to, policy_id=policy.id)
        if on_backup is not None:
            on_backup(handle)
        result = handle.run()
        if handle.error:
            raise handle.error
        return {**outcome, "backup": result["id"], "status": "succeeded", "error": None}
    except BlockvaultError as exc:
        with ctx.catalog.session() as session:
            where = _vault_name(session, policy.replicate_to)
        error = f"copy of {backup['name']} to vault {where} failed: {exc}"
        if handle is None:  # refused before its job existed: alert all the same
            alert(
                ctx,
                "job.failed",
                kind="backup",
                object_id=backup["id"],
                name=backup["name"],
                detail=error,
                data={"job_kind": "copy", "disk_id": disk.id, "policy": policy.name},
            )
        return {**outcome, "status": "failed", "error": error}


def failed_to_start(ctx: Context, disk: Disk, error: BlockvaultError) -> None:
    """A policy's backup that failed before its job existed (the vault unreachable, the disk
    busy or incomplete) is still a failed backup of that disk: it becomes a failed job row, so
    `job list`, the disk's protection status (failing) and the `job.failed` alert all see it."""

    def fail(_context: Any) -> None:
        raise error

    create_job(
        ctx,
        "backup",
        target_kind="disk",
        target_id=disk.id,
        target_name=disk.name,
        disk_id=disk.id,
        fn=fail,
    ).run()


def run_due(
    ctx: Context, *, now: datetime | None = None, force: bool = False, policy_ref: str | None = None
) -> list[dict[str, Any]]:
    """Run every due policy (what cron calls); outcomes per backup and per expired backup."""
    outcomes: list[dict[str, Any]] = []
    for policy, disks, slot in due_policies(ctx, now=now, force=force, policy_ref=policy_ref):
        outcomes += run_policy(ctx, policy, disks, slot)
    return outcomes


def exit_code(outcomes: list[dict[str, Any]]) -> int:
    """0: every due backup succeeded (or nothing was due); 3: some failed; 1: none could run."""
    ran = [o for o in outcomes if "disk" in o]
    failed = [o for o in outcomes if o["status"] == "failed"]
    if not failed:
        return 0
    if ran and all(o["status"] == "failed" for o in ran):
        return 1
    return 3


def schedule_of(policy: Policy) -> Schedule:
    return parse_schedule(policy.schedule)
