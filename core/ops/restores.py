"""Restoring a backup: onto its original disk (after a safety snapshot, only differing chunks
written) or into a new pool disk (whose name must be free, except to resume the interrupted
restore of the same backup into it). Planned, claimed in one transaction, then run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.base.errors import UserError
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, VaultRecord, iso
from core.engine import pipeline
from core.engine.snapshot_store import RestoreSource
from core.jobs.claims import claim, owner_of
from core.jobs.runner import JobContext, JobHandle, new_job
from core.ops import bandwidth
from core.ops.disks import commit_new_disk, fill_new_disk, filled_disk, insert_pool_disk
from core.ops.facts import change_tracker, check_plan, disk_facts, disk_folder
from core.ops.replication import ReadFrom, choose_source, reading_plan
from core.ops.safety import new_snapshot_row, overwrite
from core.ops.vaults import open_repository
from core.ops.ways_back import restore_rate
from core.repo.manifest import Manifest
from core.rules import lifecycle
from core.rules.lifecycle import DiskFacts
from core.rules.plans import Plan


def _restore_plan(
    ctx: Context,
    session: Session,
    backup: Backup,
    *,
    to_original: bool,
    new_name: str | None,
    new_size: int | None,
    force: bool,
    read: ReadFrom | None = None,
) -> tuple[Plan, Disk | None]:
    """The plan and the disk it writes (None: a new disk to make); `read`: where the backup
    is read (a replica when its own vault is unreachable: the plan names it)."""
    plan, target = _plan_for(
        ctx,
        session,
        backup,
        to_original=to_original,
        new_name=new_name,
        new_size=new_size,
        force=force,
    )
    own = session.get(VaultRecord, backup.vault_id)
    return reading_plan(plan, backup, read, own), target


def _plan_for(
    ctx: Context,
    session: Session,
    backup: Backup,
    *,
    to_original: bool,
    new_name: str | None,
    new_size: int | None,
    force: bool,
) -> tuple[Plan, Disk | None]:
    if backup.status != "available":
        return Plan(
            "restore backup", backup.name, refusal=f"backup {backup.name} is {backup.status}"
        ), None
    rate = restore_rate(session, backup.vault_id)  # as last measured: the chooser's estimate
    if to_original:
        target = session.get(Disk, backup.disk_id)
        facts = disk_facts(ctx, session, target) if target else None
        plan = lifecycle.plan_restore(
            backup, to_original=True, target=facts, force=force, rate=rate
        )
        return plan, target
    if not new_name:
        raise UserError("say where to restore: --to-original or --to-new NAME")
    existing = session.exec(select(Disk).where(Disk.name == new_name)).first()
    plan = lifecycle.plan_restore(
        backup,
        rate=rate,
        to_original=False,
        target=DiskFacts(existing, owner=owner_of(session, existing), here=ctx.host)
        if existing
        else None,
        new_name=new_name,
        new_size=new_size,
        existing=existing,
    )
    return plan, existing


def plan_restore(
    ctx: Context,
    backup_ref: str,
    *,
    to_original: bool,
    new_name: str | None = None,
    new_size: int | None = None,
    force: bool = False,
) -> Plan:
    read = choose_source(ctx, backup_ref)  # probes the vaults only for a backup with replicas
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        return _restore_plan(
            ctx,
            session,
            backup,
            to_original=to_original,
            new_name=new_name,
            new_size=new_size,
            force=force,
            read=read,
        )[0]


def _tracked_changes(
    ctx: Context, disk: Disk, backup: Backup, manifest: Manifest
) -> set[int] | None:
    """Onto the original disk whose tracking clone is this very backup's: only the chunks
    whose extents differ from that clone can differ from the backup (None: compare all)."""
    if not ctx.settings.change_tracking or disk.id != backup.disk_id:
        return None
    tracker = change_tracker(ctx, disk.id, backup.vault_id)
    if not tracker.has(backup.id):
        return None
    return tracker.changed_chunks(
        Path(disk.path), backup.id, size=manifest.size, chunk_size=manifest.chunk_size
    )


def start_restore(
    ctx: Context,
    backup_ref: str,
    *,
    to_original: bool,
    new_name: str | None = None,
    new_size: int | None = None,
    force: bool = False,
    passphrase: str | None = None,
    plan: Plan | None = None,
    limit_download: int | None = None,
) -> JobHandle:
    """Claim the target disk (or take the new disk's name) with the plan, then restore. The
    vault read is chosen again here (outside the lock): a plan that read another one differs.
    `limit_download`: bytes per second read from the vault (None: config.toml's, 0: none)."""
    read = choose_source(ctx, backup_ref)
    with ctx.catalog.session() as session:
        vault = session.get(
            VaultRecord, resolve(session, Backup, backup_ref, kind="backup").vault_id
        )
    if read is not None:
        vault = read.vault
    repo = open_repository(ctx, vault, passphrase=passphrase)  # fail early, outside the lock
    with ctx.catalog.writer() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        now, target = _restore_plan(
            ctx,
            session,
            backup,
            to_original=to_original,
            new_name=new_name,
            new_size=new_size,
            force=force,
            read=read,
        )
        check_plan(plan, now)
        source = read.backup if read is not None else backup  # the backup whose manifest is read
        job = new_job(
            ctx,
            session,
            "restore",
            target_kind="backup",
            target_id=backup.id,
            target_name=backup.name,
            disk_id=target.id if target else None,
            source_id=source.id,  # the backup read (a replica, maybe): not deleted under it
        )
        safety = None
        before = target.status if target is not None else "available"
        if to_original:
            claim(session, target, "restoring", job_id=job.id)
            safety = new_snapshot_row(ctx, session, target, name=None, kind="safety", job_id=job.id)
            safety.leans_on = source.id  # its undo may read unchanged chunks from the backup
            session.commit()
        elif target is not None:  # resuming the interrupted restore of this backup
            claim(session, target, "restoring", job_id=job.id)
            session.commit()
        else:
            target = insert_pool_disk(
                ctx,
                session,
                new_name,
                size=max(new_size or 0, backup.size),
                status="restoring",
                job_id=job.id,
                origin=f"backup:{backup.id}",
            )
            job.disk_id = target.id
            session.add(job)
            commit_new_disk(session, ctx, target)

    def restore(context: JobContext, differing: frozenset[int] | None, compare: bool) -> Any:
        manifest = repo.read_manifest(source.id)
        reporter = context.reporter("restoring", manifest.size)
        throttle = bandwidth.for_job(
            ctx.settings,
            context,
            limit_upload=None,
            limit_download=limit_download,
            upload=False,
            download=True,
            reporter=reporter,
        )
        only = set(differing) if differing is not None else None
        if compare and only is None:
            only = _tracked_changes(ctx, target, backup, manifest)
        stats = pipeline.restore_device(
            manifest,
            bandwidth.limited(repo, throttle),
            Path(target.path),
            compare_existing=compare and differing is None,
            reporter=reporter,
            cancel=context.cancel,
            workers=ctx.settings.workers,
            state_path=disk_folder(ctx, target.id) / f"restore-{backup.id}.state",
            only=only,
        )
        reporter.emit(final=True)
        return stats

    def run(context: JobContext) -> dict[str, Any]:
        done: list[Any] = []
        if safety is not None:
            overwrite(
                ctx,
                context,
                job_id=job.id,
                disk=target,
                before=before,
                safety_id=safety.id,
                restore_of=RestoreSource(
                    repo.read_manifest(source.id),
                    repo,
                    {"vault_id": vault.id, "backup_id": source.id},
                ),
                fail_status="error-restoring",
                write=lambda differing: done.append(restore(context, differing, True)),
            )
        else:
            done.append(
                fill_new_disk(
                    ctx, job_id=job.id, disk=target, write=lambda: restore(context, None, False)
                )
            )
        replica_note = (
            f" (its copy {source.name} in vault {vault.name})" if source.id != backup.id else ""
        )
        with ctx.catalog.writer() as session:
            record(
                session,
                ctx,
                "backup.restore",
                kind="disk",
                object_id=target.id,
                name=target.name,
                detail=f"from {backup.name}{replica_note}",
            )
            session.commit()
        stats = done[0]
        return filled_disk(
            target,
            disk_id=target.id,
            disk_name=target.name,
            backup_id=backup.id,
            backup_name=backup.name,
            read_from_vault=vault.name,
            undo=safety.name if safety else None,
            undo_until=iso(safety.expires_at) if safety else None,
            bytes_fetched=stats.bytes_fetched,
            bytes_written=stats.bytes_written,
            bytes_skipped=stats.bytes_skipped,
        )

    return JobHandle(ctx, job, run)
