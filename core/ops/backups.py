"""Backups: create (full, then incremental), restore, verify, delete, garbage-collect, import.

Commit order (RELIABILITY I3): chunks, then the manifest (create-only, by the pipeline), then
the catalog row here. No row exists for a backup that did not reach its manifest, so a
cancelled or crashed backup is never listed; its chunks are reused by the next run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.base.errors import Conflict, IntegrityError, UserError
from core.base.units import human_size
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, VaultRecord, utcnow
from core.catalog.views import backup_view
from core.engine import pipeline
from core.jobs.claims import claim_disk, default_name, disk_metadata, set_disk_status
from core.jobs.runner import JobContext, JobHandle, create_job
from core.ops.inventory import (
    check_new_name,
    create_disk,
    disk_folder,
    running_job_kinds,
    unique_id,
    writers_of,
)
from core.ops.vaults import get_vault, open_repository
from core.repo.gc import collect_garbage
from core.rules import lifecycle


def summary_line(backup: Backup) -> str:
    """PBS-style line a person reads at a glance."""
    read = backup.size - backup.bytes_zero
    reused = backup.bytes_reused / read * 100 if read else 100.0
    return (
        f"backed up {human_size(backup.bytes_new)} of {human_size(backup.size)} "
        f"(stored {human_size(backup.bytes_stored)}) in {backup.duration:.1f} s, "
        f"reused {reused:.0f}%"
    )


def _latest_backup(session: Session, disk_id: str, vault_id: str) -> Backup | None:
    return session.exec(
        select(Backup)
        .where(Backup.disk_id == disk_id, Backup.vault_id == vault_id, Backup.status == "available")
        .order_by(Backup.created_at.desc())  # type: ignore[attr-defined]
    ).first()


def plan_backup(ctx: Context, disk_ref: str, *, vault_ref: str | None = None) -> lifecycle.Plan:
    """What `backup create` will do: full or incremental (from which backup), into which vault."""
    vault = get_vault(ctx, vault_ref)
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, disk_ref, "disk")
        return lifecycle.plan_backup(
            disk,
            vault_name=vault.name,
            parent=_latest_backup(session, disk.id, vault.id),
            running_job_kinds=running_job_kinds(session, disk.id),
        )


def start_backup(
    ctx: Context,
    disk_ref: str,
    *,
    vault_ref: str | None = None,
    name: str | None = None,
    policy_id: str | None = None,
    passphrase: str | None = None,
) -> JobHandle:
    """Queue a backup job of a disk into a vault (full the first time, then incremental)."""
    vault = get_vault(ctx, vault_ref)
    plan = plan_backup(ctx, disk_ref, vault_ref=vault.id)
    if not plan.allowed:
        raise Conflict(plan.refusal)
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, disk_ref, "disk")
        if name:
            check_new_name(session, Backup, name, "backup")
        name = name or default_name(session, Backup, disk.name)
        backup_id = unique_id(session, Backup, "backup")
        meta = disk_metadata(session, disk)
        parent = _latest_backup(session, disk.id, vault.id)
    open_repository(ctx, vault, passphrase=passphrase)  # fail early: bad credentials, passphrase
    claim_disk(ctx, disk.id, "backing-up")

    def run(job: JobContext) -> dict[str, Any]:
        try:
            return _run_backup(
                ctx, job, disk, vault, backup_id, name, meta, parent, policy_id, passphrase
            )
        finally:
            set_disk_status(ctx, disk.id, "available")

    return create_job(
        ctx,
        "backup",
        target_kind="disk",
        target_id=disk.id,
        target_name=disk.name,
        disk_id=disk.id,
        fn=run,
    )


def _run_backup(
    ctx: Context,
    job: JobContext,
    disk: Disk,
    vault: VaultRecord,
    backup_id: str,
    name: str,
    meta: dict[str, Any],
    parent: Backup | None,
    policy_id: str | None,
    passphrase: str | None,
) -> dict[str, Any]:
    repo = open_repository(ctx, vault, passphrase=passphrase)
    reporter = job.reporter("backing up", disk.size)
    started = time.monotonic()
    manifest = pipeline.backup_device(
        Path(disk.path),
        repo,
        manifest_id=backup_id,
        disk_meta=meta,
        parent_id=parent.id if parent else None,
        name=name,
        reporter=reporter,
        cancel=job.cancel,
        workers=ctx.settings.workers,
    )
    stats = manifest.stats
    backup = Backup(
        id=backup_id,
        name=name,
        vault_id=vault.id,
        disk_id=disk.id,
        disk_name=disk.name,
        disk_size=disk.size,
        server_name=meta["server"],
        role=disk.role,
        status="available",
        size=manifest.size,
        bytes_new=stats.bytes_new,
        bytes_reused=stats.bytes_reused,
        bytes_zero=stats.bytes_zero,
        bytes_stored=stats.bytes_stored,
        digest=manifest.digest,
        parent_id=parent.id if parent else None,
        policy_id=policy_id,
        duration=time.monotonic() - started,
        completed_at=utcnow(),
    )
    with ctx.catalog.session() as session:
        session.add(backup)
        record(
            session, ctx, "backup.create", "backup", backup.id, backup.name, summary_line(backup)
        )
        session.commit()
    summary = summary_line(backup)
    if manifest.warnings:
        summary += "; warning: " + "; ".join(manifest.warnings)
    reporter.message = summary
    reporter.emit(final=True)
    return {
        **backup_view(backup, vault=vault, disk_exists=True),
        "summary": summary,
        "warnings": manifest.warnings,
    }


# --- listing ------------------------------------------------------------------------------


def list_backups(
    ctx: Context, *, disk_ref: str | None = None, include_deleted_disks: bool = False
) -> list[dict[str, Any]]:
    """Backups of existing disks (or of one disk); `include_deleted_disks` adds retained ones."""
    with ctx.catalog.session() as session:
        query = select(Backup).order_by(Backup.created_at.desc())  # type: ignore[attr-defined]
        if disk_ref:
            disk = session.exec(
                select(Disk).where((Disk.id == disk_ref) | (Disk.name == disk_ref))
            ).first()
            if disk is None:
                retained = session.exec(
                    select(Backup).where(
                        (Backup.disk_id == disk_ref) | (Backup.disk_name == disk_ref)
                    )
                ).first()
                if retained is None:
                    raise UserError(f"no disk named {disk_ref!r}")
                query = query.where(Backup.disk_id == retained.disk_id)
            else:
                query = query.where(Backup.disk_id == disk.id)
        disks = {d.id for d in session.exec(select(Disk)).all()}
        vaults = {v.id: v for v in session.exec(select(VaultRecord)).all()}
        rows = []
        for backup in session.exec(query).all():
            exists = backup.disk_id in disks
            if not exists and not include_deleted_disks and not disk_ref:
                continue
            rows.append(backup_view(backup, vault=vaults.get(backup.vault_id), disk_exists=exists))
        return rows


def unique_bytes(
    ctx: Context, backup: Backup, vault: VaultRecord, *, passphrase: str | None = None
) -> int:
    """Bytes only this backup references: what deleting it really frees after deduplication."""
    repo = open_repository(ctx, vault, passphrase=passphrase)
    return repo.unique_bytes(backup.id)


def get_backup(ctx: Context, ref: str, *, passphrase: str | None = None) -> dict[str, Any]:
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, ref, "backup")
        vault = session.get(VaultRecord, backup.vault_id)
        exists = session.get(Disk, backup.disk_id) is not None
    view = backup_view(backup, vault=vault, disk_exists=exists)
    view["unique_bytes"] = unique_bytes(ctx, backup, vault, passphrase=passphrase)
    view["summary"] = summary_line(backup)
    return view


# --- restore ------------------------------------------------------------------------------


def _restore_rate(session: Session) -> float:
    return lifecycle.DEFAULT_RESTORE_RATE


def plan_restore(
    ctx: Context,
    backup_ref: str,
    *,
    to_original: bool,
    new_name: str | None = None,
    new_size: int | None = None,
    force: bool = False,
) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, "backup")
        if to_original:
            target = session.get(Disk, backup.disk_id)
            if target is None:
                return lifecycle.Plan(
                    "restore backup onto its original disk",
                    backup.name,
                    refusal=f"the original disk {backup.disk_name} was deleted; use --to-new NAME",
                )
            return lifecycle.plan_restore(
                backup,
                target=target,
                running_job_kinds=running_job_kinds(session, target.id),
                writers=writers_of(target),
                force=force,
                rate=_restore_rate(session),
            )
        if not new_name:
            raise UserError("say where to restore: --to-original or --to-new NAME")
        existing = session.exec(select(Disk).where(Disk.name == new_name)).first()
        if existing is not None and not existing.restore_incomplete:
            raise Conflict(f"a disk named {new_name!r} already exists")
        return lifecycle.plan_restore(
            backup, target=None, new_name=new_name, new_size=new_size, rate=_restore_rate(session)
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
) -> JobHandle:
    """Restore a backup onto its original disk (after a safety snapshot) or into a new disk."""
    plan = plan_restore(
        ctx, backup_ref, to_original=to_original, new_name=new_name, new_size=new_size, force=force
    )
    if not plan.allowed:
        raise Conflict(plan.refusal)
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, "backup")
        vault = session.get(VaultRecord, backup.vault_id)
        target = session.get(Disk, backup.disk_id) if to_original else None
        if not to_original:
            target = session.exec(select(Disk).where(Disk.name == new_name)).first()
    repo = open_repository(ctx, vault, passphrase=passphrase)
    if target is None:  # a new pool disk, marked incomplete until the restore finishes
        created = create_disk(ctx, new_name, max(new_size or 0, backup.size))
        set_disk_status(ctx, created.id, "error-restoring", incomplete=True)
        target = created
    overwrite = to_original
    claim_disk(ctx, target.id, "restoring")
    set_disk_status(ctx, target.id, "restoring", incomplete=True)

    def run(job: JobContext) -> dict[str, Any]:
        ok = False
        try:
            manifest = repo.read_manifest(backup.id)
            source = None
            if overwrite:
                from core.engine.snapshot_store import RestoreSource
                from core.ops.snapshots import take_safety_snapshot

                source = RestoreSource(
                    manifest, repo, {"vault_id": vault.id, "backup_id": backup.id}
                )
                take_safety_snapshot(
                    ctx,
                    target.id,
                    reason=f"before restore of {backup.name}",
                    job=job,
                    restore_of=source,
                )
            compared = source is not None and source.compared
            reporter = job.reporter("restoring", manifest.size)
            stats = pipeline.restore_device(
                manifest,
                repo,
                Path(target.path),
                compare_existing=overwrite and not compared,
                reporter=reporter,
                cancel=job.cancel,
                workers=ctx.settings.workers,
                state_path=disk_folder(ctx, target.id) / f"restore-{backup.id}.state",
                only=source.differing if compared else None,
            )
            reporter.emit(final=True)
            ok = True
        finally:
            set_disk_status(
                ctx, target.id, "available" if ok else "error-restoring", incomplete=not ok
            )
        with ctx.catalog.session() as session:
            record(
                session,
                ctx,
                "backup.restore",
                "disk",
                target.id,
                target.name,
                f"from {backup.name}",
            )
            session.commit()
        return {
            "id": target.id,
            "name": target.name,
            "status": "available",
            "size": target.size,
            "created_at": None,
            "disk_id": target.id,
            "disk_name": target.name,
            "path": target.path,
            "backup_id": backup.id,
            "bytes_fetched": stats.bytes_fetched,
            "bytes_written": stats.bytes_written,
            "bytes_skipped": stats.bytes_skipped,
        }

    return create_job(
        ctx,
        "restore",
        target_kind="backup",
        target_id=backup.id,
        target_name=backup.name,
        disk_id=target.id,
        fn=run,
    )


# --- verify, delete, gc, import -------------------------------------------------------------


def start_verify(ctx: Context, backup_ref: str, *, passphrase: str | None = None) -> JobHandle:
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, "backup")
        vault = session.get(VaultRecord, backup.vault_id)
    repo = open_repository(ctx, vault, passphrase=passphrase)

    def run(job: JobContext) -> dict[str, Any]:
        manifest = repo.read_manifest(backup.id)
        reporter = job.reporter("verifying", manifest.size)
        report = pipeline.verify_backup(
            manifest, repo, reporter=reporter, cancel=job.cancel, workers=ctx.settings.workers
        )
        reporter.emit(final=True)
        if not report.ok:
            raise IntegrityError(report.describe())
        return {"id": backup.id, "name": backup.name, **report.to_dict()}

    return create_job(
        ctx,
        "verify",
        target_kind="backup",
        target_id=backup.id,
        target_name=backup.name,
        disk_id=None,
        fn=run,
    )


def plan_delete_backup(ctx: Context, ref: str, *, passphrase: str | None = None) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, ref, "backup")
        vault = session.get(VaultRecord, backup.vault_id)
    return lifecycle.plan_backup_delete(
        backup, unique_bytes=unique_bytes(ctx, backup, vault, passphrase=passphrase)
    )


def delete_backup(ctx: Context, ref: str, *, passphrase: str | None = None) -> lifecycle.Plan:
    """Trash the manifest in the vault, then drop the row; `vault gc` frees the chunks."""
    plan = plan_delete_backup(ctx, ref, passphrase=passphrase)
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, ref, "backup")
        vault = session.get(VaultRecord, backup.vault_id)
        open_repository(ctx, vault, passphrase=passphrase).trash_manifest(backup.id)
        session.delete(backup)
        record(session, ctx, "backup.delete", "backup", backup.id, backup.name)
        session.commit()
    return plan


def start_gc(
    ctx: Context,
    vault_ref: str | None,
    *,
    dry_run: bool = False,
    grace_seconds: float | None = None,
    passphrase: str | None = None,
) -> JobHandle:
    vault = get_vault(ctx, vault_ref)
    repo = open_repository(ctx, vault, passphrase=passphrase)

    def run(job: JobContext) -> dict[str, Any]:
        stats = collect_garbage(
            repo,
            grace_seconds=ctx.settings.gc_grace_seconds if grace_seconds is None else grace_seconds,
            dry_run=dry_run,
        )
        with ctx.catalog.session() as session:
            record(session, ctx, "vault.gc", "vault", vault.id, vault.name, str(stats))
            session.commit()
        return {"id": vault.id, "name": vault.name, **stats.to_dict()}

    return create_job(
        ctx,
        "gc",
        target_kind="vault",
        target_id=vault.id,
        target_name=vault.name,
        disk_id=None,
        fn=run,
    )


def import_vault(
    ctx: Context, vault_ref: str | None, *, passphrase: str | None = None
) -> list[dict[str, Any]]:
    """Register every completed backup found in a vault (the catalog is only a cache, I7)."""
    vault = get_vault(ctx, vault_ref)
    repo = open_repository(ctx, vault, passphrase=passphrase)
    imported = []
    with ctx.catalog.session() as session:
        known = {b.id for b in session.exec(select(Backup)).all()}
        for manifest_id in repo.list_manifest_ids():
            if manifest_id in known:
                continue
            manifest = repo.read_manifest(manifest_id)
            if manifest.kind != "backup":
                continue
            meta = manifest.disk
            name = manifest.name or manifest_id
            if session.exec(select(Backup).where(Backup.name == name)).first():
                name = f"{name}-{manifest_id}"
            backup = Backup(
                id=manifest_id,
                name=name,
                vault_id=vault.id,
                disk_id=meta.get("id", ""),
                disk_name=meta.get("name", ""),
                disk_size=meta.get("size", manifest.size),
                server_name=meta.get("server"),
                role=meta.get("role") or "data",
                status="available",
                size=manifest.size,
                bytes_new=manifest.stats.bytes_new,
                bytes_reused=manifest.stats.bytes_reused,
                bytes_zero=manifest.stats.bytes_zero,
                bytes_stored=manifest.stats.bytes_stored,
                digest=manifest.digest,
                parent_id=manifest.parent,
                duration=manifest.stats.duration,
                created_at=manifest.created_at,
                completed_at=manifest.created_at,
            )
            session.add(backup)
            record(session, ctx, "backup.import", "backup", backup.id, backup.name, vault.name)
            imported.append(backup)
        session.commit()
        disks = {d.id for d in session.exec(select(Disk)).all()}
    return [backup_view(b, vault=vault, disk_exists=b.disk_id in disks) for b in imported]
