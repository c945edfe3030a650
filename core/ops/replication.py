"""Replication: copy a backup into another vault (`backup copy`, a policy's `replicate_to`),
and find a replica to read when a backup's own vault cannot be reached.

A copy is a backup of its own: a row (`copy_of` naming the backup it was copied from, the
same disk metadata and moment as its source) and a manifest in the target vault (which names
its source too, so `vault import` links them again). Only chunks the target lacks are sent;
between encrypted vaults they are re-encrypted under the target's key. Commit order (I3):
chunks, then the copy's manifest, then its row turns `available`; a copy cut short leaves no
row and no manifest, and its chunks are reused by the next attempt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from sqlmodel import Session, select

from core.base.errors import BlockvaultError, IntegrityError, StoreError
from core.base.ratelimit import Throttle
from core.base.units import human_size
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, VaultRecord, utcnow
from core.catalog.names import commit_unique, unique_id
from core.catalog.views import backup_view
from core.engine import replicate
from core.jobs.runner import JobContext, JobHandle, new_job
from core.ops import bandwidth, capacity, recovery
from core.ops.backups import drop_unfinished
from core.ops.facts import check_plan
from core.ops.vaults import get_vault, open_repository, store_spec
from core.repo.manifest import Manifest
from core.repo.repository import Repository
from core.rules import replication as rules
from core.rules.lifecycle import Capacity
from core.rules.plans import Plan
from core.stores.factory import open_store

#: earlier copies looked at for chunks the target already holds (newest first)
PRIOR_COPIES = 3


def relatives(session: Session, backup: Backup) -> list[Backup]:
    """The backup's family: what it was copied from and every copy, transitively (copies
    still being made included)."""
    rows = session.exec(select(Backup).where(Backup.disk_id == backup.disk_id)).all()
    return rules.family(backup, rows)


def _plan(session: Session, backup: Backup, target: VaultRecord) -> Plan:
    source = session.get(VaultRecord, backup.vault_id)
    taken = session.exec(select(Backup.name)).all()
    plan = rules.plan_copy(
        backup,
        source=source,
        target=target,
        relatives=relatives(session, backup),
        name=rules.copy_name(backup, target, taken),
    )
    room = _room(session, backup, target)
    return replace(
        plan,
        route=f"{plan.route}; {room.line(target.name)}",
        refusal=plan.refusal or room.refusal(target.name),
        extra={**plan.extra, **room.to_dict()},
    )


def _room(session: Session, backup: Backup, target: VaultRecord) -> Capacity:
    """The target vault's quota against the copy's estimate: what the source backup added to
    its own vault when the target already holds a copy of that disk (the chunks before it
    are there), else all its data (nothing to deduplicate against yet: an upper bound)."""
    row = session.get(VaultRecord, target.id) or target
    earlier = session.exec(
        select(Backup.id).where(
            Backup.disk_id == backup.disk_id,
            Backup.vault_id == target.id,
            Backup.status == "available",
        )
    ).first()
    if earlier is not None:
        estimate, basis = backup.bytes_stored, f"what {backup.name} added to its vault"
    else:
        estimate, basis = backup.size - backup.bytes_zero, f"all the data of {backup.name}"
    return Capacity(row.usage_bytes, row.quota_bytes, estimate, basis)


def plan_copy(ctx: Context, backup_ref: str, vault_ref: str) -> Plan:
    """What `backup copy --to-vault` will do (refused with one line when it may not)."""
    target = get_vault(ctx, vault_ref)
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        return _plan(session, backup, target)


def start_copy(
    ctx: Context,
    backup_ref: str,
    vault_ref: str,
    *,
    policy_id: str | None = None,
    passphrase: str | None = None,
    target_passphrase: str | None = None,
    plan: Plan | None = None,
    limit_upload: int | None = None,
    limit_download: int | None = None,
) -> JobHandle:
    """Take the copy's name (a `creating` row) with the plan, then copy as a job. The limits
    (bytes per second; None: config.toml's, 0: none) hold what is read from the source vault
    and what is sent to the target."""
    target = get_vault(ctx, vault_ref)
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        source = session.get(VaultRecord, backup.vault_id)
        check_plan(None, _plan(session, backup, target))  # refused: before any vault is read
    # fail early, outside the catalog lock: credentials, passphrases, reachability
    source_repo = open_repository(ctx, source, passphrase=passphrase)
    target_repo = open_repository(ctx, target, passphrase=target_passphrase)
    with ctx.catalog.writer() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        now = check_plan(plan, _plan(session, backup, target))
        name = now.of("create", "backup")[0].name
        job = new_job(
            ctx,
            session,
            "copy",
            target_kind="backup",
            target_id=backup.id,
            target_name=backup.name,
            disk_id=backup.disk_id,  # its `creating` row is not an orphan while the job lives
            source_id=backup.id,  # may not be deleted while it is read
        )
        row = Backup(
            id=unique_id(session, Backup, "backup"),
            name=name,
            vault_id=target.id,
            disk_id=backup.disk_id,
            disk_name=backup.disk_name,
            disk_size=backup.disk_size,
            server_name=backup.server_name,
            role=backup.role,
            status="creating",
            policy_id=policy_id,
            copy_of=backup.id,
            created_at=backup.created_at,  # the moment its data is of
        )
        session.add(row)
        commit_unique(session, f"a backup named {name!r}")

    def run(context: JobContext) -> dict[str, Any]:
        ok = False
        try:
            throttle = bandwidth.for_job(
                ctx.settings,
                context,
                limit_upload=limit_upload,
                limit_download=limit_download,
                upload=True,
                download=True,
            )
            result = _run_copy(
                ctx,
                context,
                backup,
                row,
                source,
                target,
                bandwidth.limited(source_repo, throttle),
                bandwidth.limited(target_repo, throttle),
                throttle,
            )
            ok = True
            return result
        finally:
            if not ok:
                drop_unfinished(ctx, row.id)

    return JobHandle(ctx, job, run)


def _prior(
    ctx: Context,
    backup: Backup,
    source: VaultRecord,
    target: VaultRecord,
    source_repo: Repository,
    target_repo: Repository,
) -> tuple[dict[str, str], str | None]:
    """Chunks the target already holds, as source id -> target id, from the newest backup
    of this disk in the target (with different ids: the newest copy of a backup in the
    source vault, both manifests checked against their digests and rows); and that backup's
    id (the copy's parent). Nothing found: ({}, None), every chunk is looked up."""
    identical = replicate.same_ids(source_repo, target_repo)
    with ctx.catalog.session() as session:
        rows = session.exec(
            select(Backup)
            .where(
                Backup.disk_id == backup.disk_id,
                Backup.vault_id == target.id,
                Backup.status == "available",
            )
            .order_by(Backup.created_at.desc())  # type: ignore[attr-defined]
        ).all()
        pairs = [
            (row, session.get(Backup, row.copy_of) if row.copy_of else None)
            for row in rows
            if identical or row.copy_of
        ]
    for row, origin in pairs[:PRIOR_COPIES]:
        try:
            theirs = _checked(target_repo, row)
            if identical:
                return {c: c for c in theirs.referenced()}, row.id
            if origin is None or origin.vault_id != source.id or origin.status != "available":
                continue
            found = replicate.known_pairs(_checked(source_repo, origin), theirs)
        except BlockvaultError:
            continue  # unreadable: not a guide, the copy looks chunks up instead
        if found:
            return found, row.id
    return {}, None


def _checked(repo: Repository, row: Backup) -> Manifest:
    manifest = repo.read_manifest(row.id)
    replicate.check_digest(manifest, repo, f"backup {row.name}")
    if row.digest and manifest.digest != row.digest:
        raise IntegrityError(f"backup {row.name}: its manifest is not the one the catalog knows")
    return manifest


def _run_copy(
    ctx: Context,
    job: JobContext,
    backup: Backup,
    row: Backup,
    source: VaultRecord,
    target: VaultRecord,
    source_repo: Repository,
    target_repo: Repository,
    throttle: Throttle,
) -> dict[str, Any]:
    started = time.monotonic()
    manifest = source_repo.read_manifest(backup.id)
    if backup.digest and manifest.digest != backup.digest:
        raise IntegrityError(
            f"backup {backup.name}: its manifest in vault {source.name} is not the one the "
            "catalog knows"
        )
    reporter = job.reporter("copying", manifest.size)
    reporter.message = f"vault {source.name} -> vault {target.name}"
    bandwidth.show(reporter, throttle)

    def tell(message: str) -> None:
        reporter.message = message
        reporter.emit(final=False)

    copy, moved = replicate.copy_backup(
        manifest,
        source_repo,
        target_repo,
        manifest_id=row.id,
        name=row.name,
        copy_of=backup.id,
        guide=lambda: _prior(ctx, backup, source, target, source_repo, target_repo),
        reporter=reporter,
        cancel=job.cancel,
        workers=ctx.settings.workers,
        on_wait=tell,
    )
    duration = time.monotonic() - started
    summary = (
        f"copied {backup.name} to vault {target.name} as {row.name}: sent "
        f"{human_size(moved.bytes_sent)} of {human_size(manifest.size)} (stored "
        f"{human_size(moved.bytes_stored)}), {human_size(moved.bytes_reused)} already there, "
        f"in {duration:.1f} s"
    )
    committed = _commit(ctx, row.id, copy, moved, duration, summary, backup)
    warnings = list(copy.warnings)
    usage_warning = capacity.note_backup(ctx, target, committed, target_repo.store)
    if usage_warning:
        warnings.append(usage_warning)
    try:
        recovery.save_copy(ctx, target_repo)  # the catalog's description, for a host that lost it
    except (BlockvaultError, OSError) as exc:
        warnings.append(f"the catalog's copy was not saved in the vault: {exc}")
    if warnings:
        summary += "; warning: " + "; ".join(warnings)
    reporter.message = summary
    reporter.emit(final=True)
    with ctx.catalog.session() as session:
        exists = session.get(Disk, backup.disk_id) is not None
    return {
        **backup_view(committed, vault=target, disk_exists=exists),
        "copy_of": backup.id,
        "source_name": backup.name,
        "source_vault": source.name,
        "bytes_sent": moved.bytes_sent,
        "bytes_read": moved.bytes_read,
        "chunks_sent": moved.chunks_sent,
        "chunks_reused": moved.chunks_reused,
        "summary": summary,
        "warnings": warnings,
    }


def _commit(
    ctx: Context,
    row_id: str,
    copy: Manifest,
    moved: replicate.CopyStats,
    duration: float,
    summary: str,
    source: Backup,
) -> Backup:
    """The copy's row turns `available` (its manifest is already committed)."""
    with ctx.catalog.writer() as session:
        row = session.get(Backup, row_id)
        if row is None:  # dropped under it (it cannot be: the job keeps it), say so plainly
            raise IntegrityError(f"the catalog row of copy {copy.name} disappeared")
        row.status = "available"
        row.size = copy.size
        row.bytes_new, row.bytes_reused = moved.bytes_sent, moved.bytes_reused
        row.bytes_zero, row.bytes_stored = moved.bytes_zero, moved.bytes_stored
        row.digest = copy.digest
        row.parent_id = copy.parent
        row.duration = duration
        row.completed_at = utcnow()
        row.version += 1
        session.add(row)
        record(
            session,
            ctx,
            "backup.copy",
            kind="backup",
            object_id=row.id,
            name=row.name,
            detail=summary,
        )
        session.commit()
        session.refresh(row)
        return row


# --- reading a replica when a backup's vault cannot be reached ------------------------------


@dataclass(frozen=True)
class ReadFrom:
    """Where a restore reads a backup: the backup itself, or a replica in another vault."""

    backup: Backup  # the row whose manifest is read
    vault: VaultRecord
    why: str | None = None  # why the backup's own vault is not read (None: it is)


def unreachable(vault: VaultRecord, backup: Backup) -> str | None:
    """Why this vault cannot give this backup now (unreachable, gone, its manifest missing),
    or None when it can. Two cheap requests; a wrong passphrase is not asked here."""
    try:
        store = open_store(store_spec(vault))
        if not store.exists("config"):
            return f"no vault at {vault.location} any more"
        if not store.exists(f"manifests/{backup.id}"):
            return f"backup {backup.name}'s manifest is missing from it"
    except (StoreError, OSError) as exc:
        return str(exc) or type(exc).__name__
    except BlockvaultError as exc:
        return str(exc)
    return None


def choose_source(ctx: Context, backup_ref: str) -> ReadFrom | None:
    """The backup itself while its vault answers; else its first available replica whose vault
    answers. None: the backup has no replica (nothing to choose, nothing probed)."""
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        others = [
            b
            for b in relatives(session, backup)
            if b.id != backup.id and b.status == "available" and b.vault_id != backup.vault_id
        ]
        if backup.status != "available" or not others:
            return None
        vaults = {v.id: v for v in session.exec(select(VaultRecord)).all()}
    own = vaults[backup.vault_id]
    why = unreachable(own, backup)
    if why is None:
        return ReadFrom(backup, own)
    for other in sorted(others, key=lambda b: (b.copy_of != backup.id, b.created_at)):
        vault = vaults.get(other.vault_id)
        if vault is not None and unreachable(vault, other) is None:
            return ReadFrom(other, vault, why)
    return ReadFrom(backup, own)  # nothing better: its own vault's error will say why


def reading_plan(plan: Plan, backup: Backup, read: ReadFrom | None, own: VaultRecord) -> Plan:
    """A restore plan that reads a replica names it: its target (part of what is confirmed)
    and its route say which vault is read, and why not the backup's own."""
    if read is None or read.backup.id == backup.id or not plan.allowed:
        return plan
    route = rules.read_route(
        backup, read=read.backup, vault=read.vault, own_vault=own, why=read.why
    )
    return replace(
        plan,
        target=f"{plan.target} (reads vault {read.vault.name})",
        route=f"{route}; {plan.route}" if plan.route else route,
        extra={**plan.extra, "reads_vault": read.vault.name, "reads_backup": read.backup.id},
    )


def copies(ctx: Context, backup_ref: str) -> dict[str, Any]:
    """For `backup show`: what it was copied from and its copies, with their vaults."""
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        vaults = {v.id: v.name for v in session.exec(select(VaultRecord)).all()}
        source = session.get(Backup, backup.copy_of) if backup.copy_of else None
        found = session.exec(
            select(Backup).where(Backup.copy_of == backup.id, Backup.status == "available")
        ).all()
        return {
            "copy_of_name": source.name if source else None,
            "copy_of_vault": vaults.get(source.vault_id) if source else None,
            "copies": [
                {"id": c.id, "name": c.name, "vault": vaults.get(c.vault_id)} for c in found
            ],
        }
