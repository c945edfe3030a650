"""Backups: create (full, then incremental), list, show, verify, delete.

Commit order (RELIABILITY I3): chunks, then the manifest (create-only, by the pipeline), then
the catalog row turns `available`. The row is inserted as `creating` in the transaction that
claims the disk, so the backup's name is taken atomically; a `creating` row is never listed
and never restorable, and a crashed backup's row is dropped by the next process (its chunks
are reused by the next run).
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from core.base.errors import (
    BlockvaultError,
    IntegrityError,
    NotFound,
    ObjectMissing,
    StoreError,
    UserError,
)
from core.base.units import human_size
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, Snapshot, VaultRecord, utcnow
from core.catalog.names import check_new_name, commit_unique, default_name, unique_id
from core.catalog.views import BACKUP_VIEW_COLUMNS, allocated_bytes, backup_row_view, backup_view
from core.engine import pipeline
from core.engine.tracking import ChangeTracker
from core.jobs.claims import active_readers, claim, disk_metadata, release_disk
from core.jobs.runner import JobContext, JobHandle, create_job, new_job
from core.ops import bandwidth, capacity, recovery
from core.ops.facts import change_tracker, check_plan, disk_facts
from core.ops.vaults import get_vault, open_repository
from core.repo.manifest import Manifest
from core.rules import lifecycle
from core.rules.plans import Plan


def summary_line(backup: Backup) -> str:
    """PBS-style line a person reads at a glance."""
    read = backup.size - backup.bytes_zero
    reused = backup.bytes_reused / read * 100 if read else 100.0
    return (
        f"backed up {human_size(backup.bytes_new)} of {human_size(backup.size)} "
        f"(stored {human_size(backup.bytes_stored)}) in {backup.duration:.1f} s, "
        f"reused {reused:.0f}%"
    )


def latest_backup(session: Session, disk_id: str, vault_id: str) -> Backup | None:
    return session.exec(
        select(Backup)
        .where(Backup.disk_id == disk_id, Backup.vault_id == vault_id, Backup.status == "available")
        .order_by(Backup.created_at.desc())  # type: ignore[attr-defined]
    ).first()


def _backup_plan(
    ctx: Context, session: Session, disk: Disk, vault: VaultRecord, *, measure: bool
) -> Plan:
    parent = latest_backup(session, disk.id, vault.id)
    return lifecycle.plan_backup(
        disk_facts(ctx, session, disk, writers=False),
        vault_name=vault.name,
        parent=parent,
        data_bytes=allocated_bytes(disk.path) if measure else None,
        capacity=_capacity(session, disk, vault, parent),
    )


def _capacity(
    session: Session, disk: Disk, vault: VaultRecord, parent: Backup | None
) -> lifecycle.Capacity:
    """The vault's room and this backup's estimate, read in the plan's session (the usage
    as it is now: the executor re-reads it when it claims the disk). The allocated bytes are
    one stat, so the executor's estimate is the plan's."""
    row = session.get(VaultRecord, vault.id) or vault
    allocated = allocated_bytes(disk.path) if disk.device_kind == "file" else None
    readable = disk.size if allocated is None else min(allocated, disk.size)
    estimate, basis = capacity.backup_estimate(
        session, disk_id=disk.id, vault_id=vault.id, parent=parent, readable=readable
    )
    return lifecycle.Capacity(row.usage_bytes, row.quota_bytes, estimate, basis)


def plan_backup(ctx: Context, disk_ref: str, *, vault_ref: str | None = None) -> Plan:
    """What `backup create` will do: full or incremental (from which backup), into which vault."""
    vault = get_vault(ctx, vault_ref)
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, disk_ref, kind="disk")
        return _backup_plan(ctx, session, disk, vault, measure=True)


def start_backup(
    ctx: Context,
    disk_ref: str,
    *,
    vault_ref: str | None = None,
    name: str | None = None,
    policy_id: str | None = None,
    passphrase: str | None = None,
    plan: Plan | None = None,
    lock_until: datetime | None = None,
    limit_upload: int | None = None,
) -> JobHandle:
    """Claim the disk and the backup's name in one transaction, then back it up; with
    `lock_until` (a policy's --lock-for) the backup is locked until then as it is written.
    `limit_upload`: bytes per second sent to the vault (None: config.toml's, 0: none)."""
    vault = get_vault(ctx, vault_ref)
    open_repository(ctx, vault, passphrase=passphrase)  # fail early: credentials, passphrase
    with ctx.catalog.writer() as session:
        disk = resolve(session, Disk, disk_ref, kind="disk")
        check_plan(plan, _backup_plan(ctx, session, disk, vault, measure=False))
        name = check_new_name(session, Backup, name, kind="backup") if name else None
        name = name or default_name(session, Backup, disk.name)
        parent = latest_backup(session, disk.id, vault.id)
        meta = disk_metadata(session, disk)
        job = new_job(
            ctx,
            session,
            "backup",
            target_kind="disk",
            target_id=disk.id,
            target_name=disk.name,
            disk_id=disk.id,
        )
        claim(session, disk, "backing-up", job_id=job.id)
        backup = Backup(
            id=unique_id(session, Backup, "backup"),
            name=name,
            vault_id=vault.id,
            disk_id=disk.id,
            disk_name=disk.name,
            disk_size=disk.size,
            server_name=meta["server"],
            role=disk.role,
            status="creating",
            parent_id=parent.id if parent else None,
            policy_id=policy_id,
            locked_until=lock_until,
        )
        session.add(backup)
        commit_unique(session, f"a backup named {name!r}")

    def run(context: JobContext) -> dict[str, Any]:
        ok = False
        try:
            result = _run_backup(ctx, context, disk, vault, backup, meta, passphrase, limit_upload)
            ok = True
            return result
        finally:
            if not ok:
                drop_unfinished(ctx, backup.id)
            release_disk(ctx, disk.id, job_id=job.id, status="available")

    return JobHandle(ctx, job, run)


def drop_unfinished(ctx: Context, backup_id: str) -> None:
    """A backup (or a copy) that did not reach its commit point leaves no row (I2)."""
    with ctx.catalog.writer() as session:
        row = session.get(Backup, backup_id)
        if row is not None and row.status == "creating":
            session.delete(row)
            session.commit()


def _run_backup(
    ctx: Context,
    job: JobContext,
    disk: Disk,
    vault: VaultRecord,
    backup: Backup,
    meta: dict[str, Any],
    passphrase: str | None,
    limit_upload: int | None = None,
) -> dict[str, Any]:
    repo = open_repository(ctx, vault, passphrase=passphrase)
    if backup.locked_until is not None:  # written retained, reused chunks extended (I3)
        repo = repo.with_retention(backup.locked_until)
    reporter = job.reporter("backing up", disk.size)
    throttle = bandwidth.for_job(
        ctx.settings,
        job,
        limit_upload=limit_upload,
        limit_download=None,
        upload=True,
        download=False,
        reporter=reporter,
    )
    repo = bandwidth.limited(repo, throttle)
    started = time.monotonic()
    tracker = change_tracker(ctx, disk.id, vault.id)
    notes: list[str] = []
    clone = _clone_for_backup(ctx, disk, backup, tracker, notes)
    try:
        manifest = pipeline.backup_device(
            clone or Path(disk.path),
            repo,
            manifest_id=backup.id,
            disk_meta=meta,
            parent_id=backup.parent_id,
            name=backup.name,
            reporter=reporter,
            cancel=job.cancel,
            workers=ctx.settings.workers,
            changed=_changed_since_parent(tracker, clone, backup, repo.chunk_size),
        )
        row = _commit_backup(ctx, backup, manifest, started)
    except BaseException:
        if clone is not None:
            tracker.discard(backup.id)
        raise
    usage_warning = capacity.note_backup(ctx, vault, row, repo.store)
    if usage_warning:
        notes.append(usage_warning)
    if clone is not None:
        with contextlib.suppress(OSError):  # an older clone left behind is dropped next time
            tracker.keep(backup.id)
    summary = summary_line(row)
    manifest.warnings.extend(notes)
    try:
        recovery.save_copy(ctx, repo)  # the catalog's description, for a host that lost it
    except (BlockvaultError, OSError) as exc:
        manifest.warnings.append(f"the catalog's copy was not saved in the vault: {exc}")
    if manifest.warnings:
        summary += "; warning: " + "; ".join(manifest.warnings)
    reporter.message = summary
    reporter.emit(final=True)
    return {
        **backup_view(row, vault=vault, disk_exists=True),
        "summary": summary,
        "warnings": manifest.warnings,
    }


def _clone_for_backup(
    ctx: Context, disk: Disk, backup: Backup, tracker: ChangeTracker, notes: list[str]
) -> Path | None:
    """Under the disk's claim, before anything is read: a reflink clone of the disk for the
    backup to read (consistent even while the disk is written), kept after the commit as the
    base of the next incremental. None: read the disk itself (no reflink here, a block
    device, or tracking off, whose clones for this vault then go)."""
    if not ctx.settings.change_tracking:
        tracker.clear()
        return None
    try:
        return tracker.clone(Path(disk.path), backup.id)
    except OSError as exc:
        notes.append(
            f"read the disk itself, without change tracking: cannot clone {disk.path}: "
            f"{exc.strerror or exc}"
        )
        return None


def _changed_since_parent(
    tracker: ChangeTracker, clone: Path | None, backup: Backup, chunk_size: int
) -> set[int] | None:
    """The chunks whose extents differ from the clone the parent backup read (None: read
    them all: no parent, no clone of it, or any doubt)."""
    if clone is None or not backup.parent_id:
        return None
    return tracker.changed_chunks(
        clone, backup.parent_id, size=clone.stat().st_size, chunk_size=chunk_size
    )


def _commit_backup(ctx: Context, backup: Backup, manifest: Manifest, started: float) -> Backup:
    """The catalog row turns `available` (the manifest is already committed)."""
    stats = manifest.stats
    with ctx.catalog.writer() as session:
        row = session.get(Backup, backup.id)
        row.status = "available"
        row.size = manifest.size
        row.bytes_new, row.bytes_reused = stats.bytes_new, stats.bytes_reused
        row.bytes_zero, row.bytes_stored = stats.bytes_zero, stats.bytes_stored
        row.digest = manifest.digest
        row.duration = time.monotonic() - started
        row.completed_at = utcnow()
        row.version += 1
        session.add(row)
        record(
            session,
            ctx,
            "backup.create",
            kind="backup",
            object_id=row.id,
            name=row.name,
            detail=summary_line(row),
        )
        session.commit()
        return row


# --- listing ------------------------------------------------------------------------------


def list_backups(
    ctx: Context,
    *,
    disk_ref: str | None = None,
    include_deleted_disks: bool = False,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Backups of existing disks (or of one disk), newest first; `include_deleted_disks` adds
    retained ones; `limit`: the newest that many.

    Read as plain rows, not ORM objects: building 100,000 SQLModel instances cost ~3/4 of
    listing a catalog of 100,000 backups (bench/bench_scale.py)."""
    if limit is not None and limit < 0:
        raise UserError("--limit takes a number of backups (0 or more)")
    table = Backup.__table__  # type: ignore[attr-defined]
    with ctx.catalog.session() as session:
        columns = [table.c[name] for name in BACKUP_VIEW_COLUMNS]
        query = sa_select(*columns).where(table.c.status != "creating")
        if disk_ref:
            disk = session.exec(
                select(Disk).where((Disk.id == disk_ref) | (Disk.name == disk_ref))
            ).first()
            if disk is None:
                retained = session.exec(
                    select(Backup.disk_id).where(
                        (Backup.disk_id == disk_ref) | (Backup.disk_name == disk_ref)
                    )
                ).first()
                if retained is None:
                    raise NotFound(f"no disk named {disk_ref!r}")
                query = query.where(table.c.disk_id == retained)
            else:
                query = query.where(table.c.disk_id == disk.id)
        elif not include_deleted_disks:
            query = query.where(table.c.disk_id.in_(select(Disk.id)))
        query = query.order_by(table.c.created_at.desc())
        if limit is not None:
            query = query.limit(limit)
        disks = set(session.exec(select(Disk.id)).all())
        vaults = dict(session.exec(select(VaultRecord.id, VaultRecord.name)).all())
        vault_at, disk_at = (
            BACKUP_VIEW_COLUMNS.index("vault_id"),
            BACKUP_VIEW_COLUMNS.index("disk_id"),
        )
        return [
            backup_row_view(row, vault=vaults.get(row[vault_at]), disk_exists=row[disk_at] in disks)
            for row in session.connection().execute(query)
        ]


def unique_bytes(
    ctx: Context, backup: Backup, vault: VaultRecord, *, passphrase: str | None = None
) -> int:
    """Bytes only this backup references: what deleting it really frees after deduplication."""
    try:
        return open_repository(ctx, vault, passphrase=passphrase).unique_bytes(backup.id)
    except ObjectMissing:
        return 0


def get_backup(ctx: Context, ref: str, *, passphrase: str | None = None) -> dict[str, Any]:
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, ref, kind="backup")
        vault = session.get(VaultRecord, backup.vault_id)
        exists = session.get(Disk, backup.disk_id) is not None
    view = backup_view(backup, vault=vault, disk_exists=exists)
    try:
        view["unique_bytes"] = unique_bytes(ctx, backup, vault, passphrase=passphrase)
    except (StoreError, UserError) as exc:  # its vault unreachable or gone: still described
        view["unique_bytes"], view["vault_error"] = None, str(exc)
    view["summary"] = summary_line(backup)
    return view


def start_verify(
    ctx: Context,
    backup_ref: str,
    *,
    passphrase: str | None = None,
    limit_download: int | None = None,
) -> JobHandle:
    """Read back every chunk of a backup; `limit_download` as in `start_restore`."""
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        vault = session.get(VaultRecord, backup.vault_id)
    repo = open_repository(ctx, vault, passphrase=passphrase)

    def run(job: JobContext) -> dict[str, Any]:
        manifest = repo.read_manifest(backup.id)
        reporter = job.reporter("verifying", manifest.size)
        throttle = bandwidth.for_job(
            ctx.settings,
            job,
            limit_upload=None,
            limit_download=limit_download,
            upload=False,
            download=True,
            reporter=reporter,
        )
        report = pipeline.verify_backup(
            manifest,
            bandwidth.limited(repo, throttle),
            reporter=reporter,
            cancel=job.cancel,
            workers=ctx.settings.workers,
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
        source_id=backup.id,
    )


def _delete_plan(
    ctx: Context, session: Session, backup: Backup, *, passphrase: str | None, measure: bool
) -> Plan:
    freed = 0
    if measure and backup.status == "available":
        vault = session.get(VaultRecord, backup.vault_id)
        freed = unique_bytes(ctx, backup, vault, passphrase=passphrase)
    return lifecycle.plan_backup_delete(
        backup,
        unique_bytes=freed,
        readers=active_readers(session, backup.id),
        leaning=leaning_on(session, [backup.id]),
    )


def leaning_on(session: Session, backup_ids: list[str]) -> list[Snapshot]:
    """Safety snapshots inside their window whose undo reads chunks from these backups."""
    if not backup_ids:
        return []
    return list(
        session.exec(
            select(Snapshot).where(
                Snapshot.leans_on.in_(backup_ids),  # type: ignore[union-attr]
                Snapshot.status == "available",
                Snapshot.expires_at >= utcnow(),  # type: ignore[operator]
            )
        ).all()
    )


def plan_delete_backup(ctx: Context, ref: str, *, passphrase: str | None = None) -> Plan:
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, ref, kind="backup")
        return _delete_plan(ctx, session, backup, passphrase=passphrase, measure=True)


def delete_backup(
    ctx: Context, ref: str, *, passphrase: str | None = None, plan: Plan | None = None
) -> Plan:
    """Mark it deleting under the claim lock (refused while a job reads it), trash the
    manifest in the vault, then drop the row; `vault gc` frees the chunks."""
    with ctx.catalog.writer() as session:
        backup = resolve(session, Backup, ref, kind="backup")
        now = check_plan(
            plan, _delete_plan(ctx, session, backup, passphrase=passphrase, measure=False)
        )
        vault = session.get(VaultRecord, backup.vault_id)
        backup.status, backup.version = "deleting", backup.version + 1
        session.add(backup)
        session.commit()
    from core.base.errors import Retained
    from core.ops.locks import note_lock

    try:
        with contextlib.suppress(ObjectMissing):  # already trashed by a deletion cut short
            open_repository(ctx, vault, passphrase=passphrase).trash_manifest(backup.id)
    except Retained as exc:  # locked in the vault, from another host or a lost catalog
        note_lock(ctx, backup.id, exc)
        raise
    with contextlib.suppress(OSError):  # its tracking clone is no base for anything now
        change_tracker(ctx, backup.disk_id, backup.vault_id).discard(backup.id)
    with ctx.catalog.writer() as session:
        row = session.get(Backup, backup.id)
        if row is not None:
            session.delete(row)
            record(
                session, ctx, "backup.delete", kind="backup", object_id=backup.id, name=backup.name
            )
            session.commit()
    return plan or now
