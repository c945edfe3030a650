"""Vaults in the catalog: adding, opening, listing, removing; the embedded local default.

A vault row stores where the vault is (path, or bucket/prefix/region/endpoint/profile), never
a secret: credentials come from the standard AWS chain, passphrases from the environment
(BLOCKVAULT_PASSPHRASE) or a prompt in the front.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlmodel import Session, func, select

from core.base.errors import Conflict, UserError
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, VaultRecord
from core.ops.inventory import check_new_name, unique_id
from core.repo.repository import Repository
from core.stores.factory import open_store, parse_s3_url

DEFAULT_VAULT_NAME = "local"
PASSPHRASE_ENV = "BLOCKVAULT_PASSPHRASE"


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
    }


def open_repository(
    ctx: Context, vault: VaultRecord, *, passphrase: str | None = None
) -> Repository:
    """Open the vault's repository (config read from the store)."""
    if vault.encrypted:
        passphrase = passphrase or os.environ.get(PASSPHRASE_ENV)
        if not passphrase:
            raise UserError(f"vault {vault.name} is encrypted: set {PASSPHRASE_ENV}")
    key = (vault.id, vault.location, bool(passphrase))
    cached = ctx.repositories.get(key)
    if cached is not None and (not vault.encrypted or cached.passphrase_matches(passphrase)):
        return cached
    repo = Repository.open(
        open_store(store_spec(vault)),
        passphrase=passphrase if vault.encrypted else None,
        cache_dir=ctx.locations.cache_dir / vault.id,
    )
    ctx.repositories[key] = repo
    return repo


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
) -> VaultRecord:
    """Register a vault; initialise it if the location is empty, adopt it if it holds one."""
    if bool(path) == bool(s3_url):
        raise UserError("give exactly one of --path DIR or --s3 s3://bucket/prefix")
    with ctx.catalog.session() as session:
        check_new_name(session, VaultRecord, name, "vault")
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
        )
        if row.kind == "s3":
            parse_s3_url(row.location)
        _existing_location(session, row)
        store = open_store(store_spec(row))
        if create_bucket and row.kind == "s3":
            store.inner.ensure_bucket()
        if Repository.exists(store):
            repo = Repository.open(store, passphrase=passphrase)
            row.chunk_size, row.encrypted = repo.chunk_size, repo.encrypted
        else:
            Repository.init(store, chunk_size=row.chunk_size, passphrase=passphrase)
        session.add(row)
        record(session, ctx, "vault.add", "vault", row.id, name, row.location)
        session.commit()
        return row


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
        return resolve(session, VaultRecord, ref, "vault")


def backup_counts(session: Session) -> dict[str, tuple[int, int, int]]:
    """vault id -> (backups, logical bytes, stored bytes) from the catalog."""
    rows = session.exec(
        select(
            Backup.vault_id, func.count(), func.sum(Backup.size), func.sum(Backup.bytes_stored)
        ).group_by(Backup.vault_id)
    ).all()
    return {vid: (n, int(logical or 0), int(stored or 0)) for vid, n, logical, stored in rows}


def remove_vault(ctx: Context, ref: str, *, force: bool) -> VaultRecord:
    """Forget a vault. Its data stays in the store; refused while backups reference it."""
    with ctx.catalog.session() as session:
        vault = resolve(session, VaultRecord, ref, "vault")
        backups = session.exec(select(Backup).where(Backup.vault_id == vault.id)).all()
        if backups and not force:
            raise Conflict(
                f"vault {vault.name} holds {len(backups)} backup(s); delete them or use --force "
                "(the data stays in the store and can be imported again)"
            )
        for backup in backups:
            session.delete(backup)
        session.flush()  # backups first: they point at the vault
        session.delete(vault)
        record(
            session,
            ctx,
            "vault.remove",
            "vault",
            vault.id,
            vault.name,
            f"{len(backups)} backups forgotten",
        )
        session.commit()
        return vault
