"""Vaults: add, open, list, remove, garbage-collect, import; the embedded local default.

A vault row stores where the vault is (path, or bucket/prefix/region/endpoint/profile), never
a secret: credentials come from the standard AWS chain, passphrases from the environment
(BLOCKVAULT_PASSPHRASE) or a prompt in the front.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, func, select

from core.base.errors import BlockvaultError, Conflict, IntegrityError, NotFound, UserError
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, Job, Policy, Snapshot, VaultRecord, utcnow
from core.catalog.names import check_name_shape, check_new_name, commit_unique, unique_id
from core.catalog.views import backup_view
from core.engine.check import check_vault
from core.jobs.runner import JobContext, JobHandle, create_job
from core.ops import recovery
from core.ops.facts import check_plan
from core.repo.gc import collect_garbage
from core.repo.manifest import Manifest
from core.repo.repository import Repository, settings_of
from core.rules import lifecycle
from core.rules.plans import Plan
from core.rules.states import JOB_ACTIVE
from core.stores.factory import open_store, parse_s3_url

DEFAULT_VAULT_NAME = "local"
PASSPHRASE_ENV = "BLOCKVAULT_PASSPHRASE"


def passphrase_env(vault_name: str) -> str:
    """The variable holding one vault's own passphrase (BLOCKVAULT_PASSPHRASE_OFFSITE for
    vault `offsite`), taken before BLOCKVAULT_PASSPHRASE: two encrypted vaults with different
    passphrases in one command (`backup copy`, a policy's replication)."""
    return f"{PASSPHRASE_ENV}_" + re.sub(r"[^A-Za-z0-9]", "_", vault_name).upper()


def store_spec(vault: VaultRecord) -> dict:
    """What `open_store` needs to reach this vault."""
    if vault.kind == "local":
        return {"kind": "local", "path": vault.location}
    bucket, prefix = parse_s3_url(vault.location)
    return {
        "kind": "s3",
        "bucket": bucket,
        "prefix": prefix,
        "region": vault.region,
        "endpoint_url": vault.endpoint_url,
        "profile": vault.profile,
        "addressing_style": vault.addressing_style,
        "request_checksum": vault.request_checksum,
        "object_lock": vault.object_lock,
        "vault": vault.name,
    }


def vault_passphrase(vault: VaultRecord, passphrase: str | None = None) -> str:
    """An encrypted vault's passphrase: given, else its own variable, else
    BLOCKVAULT_PASSPHRASE; a clear refusal when there is none."""
    own = passphrase_env(vault.name)
    found = passphrase or os.environ.get(own) or os.environ.get(PASSPHRASE_ENV)
    if not found:
        raise UserError(f"vault {vault.name} is encrypted: set {PASSPHRASE_ENV} (or {own})")
    return found


def open_repository(
    ctx: Context, vault: VaultRecord, *, passphrase: str | None = None
) -> Repository:
    """Open the vault's repository (config read from the store)."""
    if vault.encrypted:
        passphrase = vault_passphrase(vault, passphrase)
    key = (vault.id, vault.location, bool(passphrase))
    cached = ctx.repositories.get(key)
    if cached is not None and (not vault.encrypted or cached.passphrase_matches(passphrase)):
        return cached
    repo = Repository.open(
        open_store(store_spec(vault)),
        passphrase=passphrase if vault.encrypted else None,
        cache_dir=ctx.locations.cache_dir / vault.id,
    )
    _check_settings(ctx, vault, repo)
    repo.gc_lease = ctx.settings.gc_lock_lease_seconds
    ctx.repositories[key] = repo
    return repo


def canonical_settings(repo: Repository) -> str:
    return json.dumps(settings_of(repo.config), sort_keys=True, separators=(",", ":"))


def _check_settings(ctx: Context, vault: VaultRecord, repo: Repository) -> None:
    """The settings that decide how data is written may not change behind the catalog's
    back: an encrypted vault never receives plaintext (I8, I12)."""
    if vault.encrypted and not repo.encrypted:
        raise IntegrityError(
            f"vault {vault.name} is encrypted, but its config now says it is not; refusing to "
            "write plaintext into it (someone edited the config)"
        )
    now = canonical_settings(repo)
    if vault.config_settings is None and ctx.catalog.read_only:
        return  # remembered by the next process that may write
    if vault.config_settings is None:  # first open since the catalog learnt to remember
        with ctx.catalog.writer() as session:
            row = session.get(VaultRecord, vault.id)
            if row is not None and row.config_settings is None:
                row.config_settings = now
                session.add(row)
                session.commit()
        vault.config_settings = now
        return
    if vault.config_settings == now:
        return
    before, after = json.loads(vault.config_settings), json.loads(now)
    changes = [
        _describe(k, before.get(k), after.get(k)) for k in before if before[k] != after.get(k)
    ]
    raise IntegrityError(
        f"vault {vault.name}'s config changed since it was added ({'; '.join(changes)}); "
        "refusing to use it"
    )


def _describe(key: str, old: Any, new: Any) -> str:
    if key == "encryption":
        name = lambda e: "none" if not e else str(e.get("cipher", "?"))[:20]  # noqa: E731
        if name(old) != name(new):
            return f"encryption was {name(old)}, now {name(new)}"
        return "encryption key entry replaced"
    return f"{key} was {str(old)[:40]}, now {str(new)[:40]}"


def add_vault(
    ctx: Context,
    name: str,
    *,
    path: str | None = None,
    s3_url: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    addressing_style: str = "auto",
    request_checksum: str = "when_required",
    chunk_size: int | None = None,
    passphrase: str | None = None,
    create_bucket: bool = False,
    object_lock: str | None = None,
) -> VaultRecord:
    """Register a vault; initialise it if the location is empty, adopt it if it holds one."""
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if parts.username or parts.password or "@" in parts.netloc:
            raise UserError(
                "the endpoint URL may not carry credentials (user:secret@host): they would be "
                "stored and shown; give them through the AWS chain (AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, --profile, or an instance role)"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError("the endpoint URL must look like https://host[:port]")
    if bool(path) == bool(s3_url):
        raise UserError("give exactly one of --path DIR or --s3 s3://bucket/prefix")
    with ctx.catalog.writer() as session:
        check_new_name(session, VaultRecord, name, kind="vault")
        row = VaultRecord(
            id=unique_id(session, VaultRecord, "vault"),
            name=name,
            kind="local" if path else "s3",
            location=str(Path(path).expanduser().resolve()) if path else s3_url.rstrip("/"),
            endpoint_url=endpoint_url,
            region=region,
            profile=profile,
            addressing_style=addressing_style,
            request_checksum=request_checksum,
            chunk_size=chunk_size or ctx.settings.chunk_size,
            encrypted=bool(passphrase),
            object_lock=_object_lock_mode(object_lock, s3=bool(s3_url)),
        )
        if row.kind == "s3":
            parse_s3_url(row.location)
        _existing_location(session, row)
        store = open_store(store_spec(row))
        if row.object_lock:  # the bucket made with Object Lock, or checked to have it
            store.inner.ensure_object_lock()
        elif create_bucket and row.kind == "s3":
            store.inner.ensure_bucket()
        if Repository.exists(store):  # adopt it: an encrypted one with the usual passphrase
            repo = Repository.open(store, passphrase=passphrase or os.environ.get(PASSPHRASE_ENV))
            row.chunk_size, row.encrypted = repo.chunk_size, repo.encrypted
        else:
            repo = Repository.init(store, chunk_size=row.chunk_size, passphrase=passphrase)
        row.config_settings = canonical_settings(repo)
        session.add(row)
        record(
            session,
            ctx,
            "vault.add",
            kind="vault",
            object_id=row.id,
            name=name,
            detail=row.location,
        )
        commit_unique(session, f"a vault named {name!r}")
        return row


def _object_lock_mode(mode: str | None, *, s3: bool) -> str | None:
    """`--object-lock compliance|governance`: S3 vaults only (a directory has no such lock;
    `backup lock` records locks in it all the same)."""
    if mode is None:
        return None
    mode = str(mode).lower()
    if mode not in ("compliance", "governance"):
        raise UserError(f"--object-lock takes compliance or governance, not {mode[:30]!r}")
    if not s3:
        raise UserError(
            "--object-lock needs an S3 vault (--s3); a local vault records `backup lock` "
            "itself and blockvault refuses to delete a locked backup"
        )
    return mode


def _existing_location(session: Session, row: VaultRecord) -> None:
    clash = session.exec(
        select(VaultRecord).where(
            VaultRecord.location == row.location, VaultRecord.endpoint_url == row.endpoint_url
        )
    ).first()
    if clash:
        raise Conflict(f"vault {clash.name} already uses {row.location}")


def default_vault(ctx: Context) -> VaultRecord:
    """The configured default vault; the embedded local one is created on first use."""
    with ctx.catalog.session() as session:
        found = session.exec(
            select(VaultRecord).where(VaultRecord.name == ctx.settings.default_vault)
        ).first()
        if found:
            return found
    if ctx.settings.default_vault != DEFAULT_VAULT_NAME:
        raise UserError(f"default vault {ctx.settings.default_vault!r} does not exist")
    return add_vault(ctx, DEFAULT_VAULT_NAME, path=str(ctx.locations.default_vault_dir))


def get_vault(ctx: Context, ref: str | None) -> VaultRecord:
    if ref is None:
        return default_vault(ctx)
    with ctx.catalog.session() as session:
        return resolve(session, VaultRecord, ref, kind="vault")


def backup_counts(session: Session) -> dict[str, tuple[int, int, int]]:
    """vault id -> (backups, logical bytes, stored bytes) from the catalog."""
    rows = session.exec(
        select(
            Backup.vault_id, func.count(), func.sum(Backup.size), func.sum(Backup.bytes_stored)
        ).group_by(Backup.vault_id)
    ).all()
    return {vid: (n, int(logical or 0), int(stored or 0)) for vid, n, logical, stored in rows}


def _remove_plan(session: Session, vault: VaultRecord, *, force: bool) -> Plan:
    backups = session.exec(select(Backup).where(Backup.vault_id == vault.id)).all()
    ids = [b.id for b in backups]
    running = session.exec(
        select(Job).where(
            (Job.target_id == vault.id) | Job.source_id.in_(ids),  # type: ignore[union-attr]
            Job.status.in_(JOB_ACTIVE),  # type: ignore[attr-defined]
        )
    ).all()
    leaning = session.exec(
        select(Snapshot).where(
            Snapshot.leans_on.in_(ids),  # type: ignore[union-attr]
            Snapshot.status == "available",
            Snapshot.expires_at >= utcnow(),  # type: ignore[operator]
        )
    ).all()
    policies = session.exec(select(Policy).where(Policy.vault_id == vault.id)).all()
    return lifecycle.plan_vault_remove(
        vault,
        backups=backups,
        force=force,
        running=running,
        policies=[p.name for p in policies],
        leaning=leaning,
    )


def plan_remove_vault(ctx: Context, ref: str, *, force: bool = False) -> Plan:
    with ctx.catalog.session() as session:
        return _remove_plan(session, resolve(session, VaultRecord, ref, kind="vault"), force=force)


def remove_vault(ctx: Context, ref: str, *, force: bool, plan: Plan | None = None) -> Plan:
    """Forget a vault. Its data stays in the store; refused while backups reference it."""
    with ctx.catalog.writer() as session:
        vault = resolve(session, VaultRecord, ref, kind="vault")
        now = check_plan(plan, _remove_plan(session, vault, force=force))
        for item in now.of("delete", "backup"):
            session.delete(session.get(Backup, item.id))
            record(
                session,
                ctx,
                "backup.forget",
                kind="backup",
                object_id=item.id,
                name=item.name,
                detail=vault.name,
            )
        session.flush()  # backups first: they point at the vault
        session.delete(vault)
        record(
            session,
            ctx,
            "vault.remove",
            kind="vault",
            object_id=vault.id,
            name=vault.name,
            detail=f"{len(now.of('delete', 'backup'))} backups forgotten",
        )
        session.commit()
    ctx.repositories.clear()
    return plan or now


def start_check(
    ctx: Context,
    vault_ref: str | None,
    *,
    read_fraction: float = 0.0,
    passphrase: str | None = None,
) -> JobHandle:
    """`vault check`: structure, plus `read_fraction` of the data read back; what is lost is
    quarantined and reported by backup (a failed job whose error names them)."""
    if not 0.0 <= read_fraction <= 1.0:
        raise UserError("--read-data takes a fraction between 0 and 1 (e.g. 0.1)")
    vault = get_vault(ctx, vault_ref)
    repo = open_repository(ctx, vault, passphrase=passphrase)

    def run(job: JobContext) -> dict[str, Any]:
        report = check_vault(
            repo,
            read_fraction=read_fraction,
            reporter=job.reporter("checking", 0),
            cancel=job.cancel,
            workers=ctx.settings.workers,
        )
        with ctx.catalog.writer() as session:
            record(
                session,
                ctx,
                "vault.check",
                kind="vault",
                object_id=vault.id,
                name=vault.name,
                detail=report.describe(),
            )
            session.commit()
        if not report.ok:
            raise IntegrityError(report.describe())
        return {
            "id": vault.id,
            "name": vault.name,
            "summary": report.describe(),
            **report.to_dict(),
            **_remeasure(ctx, vault),
        }

    return create_job(
        ctx,
        "check",
        target_kind="vault",
        target_id=vault.id,
        target_name=vault.name,
        disk_id=None,
        fn=run,
    )


def start_gc(
    ctx: Context,
    vault_ref: str | None,
    *,
    grace_seconds: float | None = None,
    passphrase: str | None = None,
) -> JobHandle:
    vault = get_vault(ctx, vault_ref)
    repo = open_repository(ctx, vault, passphrase=passphrase)

    def run(job: JobContext) -> dict[str, Any]:
        stats = collect_garbage(
            repo,
            grace_seconds=ctx.settings.gc_grace_seconds if grace_seconds is None else grace_seconds,
        )
        with ctx.catalog.writer() as session:
            record(
                session,
                ctx,
                "vault.gc",
                kind="vault",
                object_id=vault.id,
                name=vault.name,
                detail=str(stats),
            )
            session.commit()
        usage = _remeasure(ctx, vault)
        return {"id": vault.id, "name": vault.name, **stats.to_dict(), **usage}

    return create_job(
        ctx,
        "gc",
        target_kind="vault",
        target_id=vault.id,
        target_name=vault.name,
        disk_id=None,
        fn=run,
    )


def _remeasure(ctx: Context, vault: VaultRecord) -> dict[str, Any]:
    """After gc: the vault's usage measured again (what gc freed no longer counts, and a
    vault back under its alert threshold clears it). A failure only costs the figure."""
    from core.ops import capacity

    try:
        return {"usage_bytes": capacity.measure(ctx, vault).get("usage_bytes")}
    except (BlockvaultError, OSError) as exc:
        return {"usage_error": str(exc)}


def plan_gc(
    ctx: Context,
    vault_ref: str | None,
    *,
    grace_seconds: float | None = None,
    passphrase: str | None = None,
) -> Plan:
    """What `vault gc` would delete now and what it would condemn (a dry run of it)."""
    vault = get_vault(ctx, vault_ref)
    grace = ctx.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
    repo = open_repository(ctx, vault, passphrase=passphrase)
    stats = collect_garbage(repo, grace_seconds=grace, dry_run=True)
    return lifecycle.plan_gc(vault, stats, grace_seconds=grace)


def _text(value: object, limit: int) -> str:
    """A string field from a vault's manifest, bounded (it is shown escaped, never obeyed)."""
    return "" if value is None else str(value)[:limit]


def _imported_name(name: object, manifest_id: str) -> str:
    """A name from a vault is input: kept when it is a valid name, else the backup's id."""
    try:
        return check_name_shape(str(name), kind="backup") if name else manifest_id
    except UserError:
        return manifest_id


def import_vault(
    ctx: Context, vault_ref: str | None, *, passphrase: str | None = None
) -> list[dict[str, Any]]:
    """Rebuild the servers, disks and policies the vault's catalog copies describe, then
    register every completed backup found in it (the catalog is only a cache, I7)."""
    vault = get_vault(ctx, vault_ref)
    repo = open_repository(ctx, vault, passphrase=passphrase)
    rebuilt = recovery.rebuild(ctx, vault, repo)
    if any(rebuilt.values()):
        with ctx.catalog.writer() as session:
            detail = ", ".join(f"{n} {what}" for what, n in rebuilt.items() if n)
            record(
                session,
                ctx,
                "vault.recover",
                kind="vault",
                object_id=vault.id,
                name=vault.name,
                detail=detail,
            )
            session.commit()
    imported = []
    with ctx.catalog.session() as session:
        known = set(session.exec(select(Backup.id)).all())
    found: list[Manifest] = []
    damaged: dict[str, str] = {}
    # one manifest at a time, only its header kept: a vault of a million chunks imports in
    # the memory of its backups' rows, not of their chunk lists
    for manifest_id, manifest, why in repo.iter_manifests(skip=known):
        if manifest is None:
            damaged[manifest_id] = str(why)
        elif manifest.kind == "backup":
            manifest.chunks = []
            found.append(manifest)
    locks = repo.locks()  # the vault's lock records: an imported backup keeps its lock
    with ctx.catalog.writer() as session:  # read the vault first, then hold the lock briefly
        if session.get(VaultRecord, vault.id) is None:
            raise NotFound(f"vault {vault.name} was removed while it was being read")
        for manifest in found:
            manifest_id = manifest.id
            if manifest.kind != "backup" or session.get(Backup, manifest_id) is not None:
                continue
            meta = manifest.disk
            name = _imported_name(manifest.name, manifest_id)
            if session.exec(select(Backup).where(Backup.name == name)).first():
                name = f"{name}-{manifest_id}"
            backup = Backup(
                id=manifest_id,
                name=name,
                vault_id=vault.id,
                disk_id=_text(meta.get("id"), 64),
                disk_name=_text(meta.get("name"), 200),
                disk_size=meta["size"] if type(meta.get("size")) is int else manifest.size,
                server_name=_text(meta.get("server"), 200) or None,
                role="system" if meta.get("role") == "system" else "data",
                status="available",
                size=manifest.size,
                bytes_new=manifest.stats.bytes_new,
                bytes_reused=manifest.stats.bytes_reused,
                bytes_zero=manifest.stats.bytes_zero,
                bytes_stored=manifest.stats.bytes_stored,
                digest=manifest.digest,
                parent_id=manifest.parent,
                copy_of=manifest.copy_of,  # a replica names its source (linked when imported)
                duration=manifest.stats.duration,
                created_at=manifest.created_at,
                completed_at=manifest.created_at,
                locked_until=locks.get(manifest_id),
            )
            session.add(backup)
            record(
                session,
                ctx,
                "backup.import",
                kind="backup",
                object_id=backup.id,
                name=backup.name,
                detail=vault.name,
            )
            imported.append(backup)
        session.commit()
        disks = {d.id for d in session.exec(select(Disk)).all()}
    views = [backup_view(b, vault=vault, disk_exists=b.disk_id in disks) for b in imported]
    return views + [
        {"id": m, "name": m, "status": "damaged", "error": why, "size": None, "created_at": None}
        for m, why in sorted(damaged.items())
    ]
