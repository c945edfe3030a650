"""Vault capacity: usage (the bytes really stored), a quota, an alert threshold, a forecast.

Usage is what the store holds, measured by listing it: every object's stored size (chunks
after deduplication and zstd, sealed manifests, the vault's own small files), and on S3 every
version of every object too (a versioned or Object Lock bucket keeps, and bills, the old
versions that gc's deletes leave behind). A full measure is a listing of the whole vault, so it
runs when a vault is added, when its quota is set, on `vault show`, and after gc; after each
backup the catalog adds what that backup stored (its new chunks and its manifest) instead.

Crossing the alert threshold (`alert_at` percent of the quota; the quota itself when no
threshold is set) from below raises one `vault.threshold` alert (an event, and the
notify_command where configured); falling back below it (after gc) clears the state with an
audit event, so the next crossing alerts again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, func, select

from core.base.errors import UserError
from core.base.units import human_size, parse_size
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Policy, VaultRecord, iso
from core.jobs.alerts import alert
from core.stores.base import ObjectStore
from core.stores.factory import open_store

#: the window whose backups give the growth per day in the forecast
FORECAST_DAYS = 30
#: unchanged: `set_capacity` leaves that setting as it is
UNCHANGED: Any = object()
NONE_WORDS = ("none", "off", "")


# --- measuring -----------------------------------------------------------------------------


def stored_bytes(store: ObjectStore) -> int:
    """Every byte the store holds for this vault: all objects, and on S3 all their versions."""
    inner = getattr(store, "inner", store)  # RetryingStore wraps the backend
    if hasattr(inner, "_client") and hasattr(inner, "bucket"):
        return _s3_version_bytes(inner)
    return sum(info.size for info in store.list(""))


def _s3_version_bytes(s3: Any) -> int:
    """Sum of Size over ListObjectVersions under the vault's prefix (S3 has no usage API);
    on an unversioned bucket each object is listed once, as its one "null" version."""
    base = f"{s3.prefix}/" if s3.prefix else ""
    paginator = s3._client.get_paginator("list_object_versions")
    total = 0
    try:
        for page in paginator.paginate(Bucket=s3.bucket, Prefix=base):
            total += sum(int(v.get("Size") or 0) for v in page.get("Versions", ()))
    except Exception as exc:  # botocore/urllib3 failures: classified by the store, no secret
        raise s3._error(exc, "measuring usage of") from None
    return total


def vault_store(vault: VaultRecord) -> ObjectStore:
    """The vault's store, opened only to list it (no passphrase needed to measure)."""
    from core.ops.vaults import store_spec

    return open_store(store_spec(vault))


def measure(ctx: Context, vault: VaultRecord) -> dict[str, Any]:
    """List the whole vault and record its usage (and the threshold state it implies)."""
    store = vault_store(vault)
    try:
        usage = stored_bytes(store)
    finally:
        store.close()
    return record_usage(ctx, vault.id, usage=usage)


def after_write(ctx: Context, vault_id: str, added: int) -> dict[str, Any] | None:
    """After a commit into the vault (a backup, a copy): usage grows by what it stored. A
    vault whose usage was never measured (the embedded default, a vault of an older catalog)
    is measured now, once."""
    with ctx.catalog.session() as session:
        vault = session.get(VaultRecord, vault_id)
    if vault is None:
        return None
    if vault.usage_bytes is None:
        return measure(ctx, vault)
    return record_usage(ctx, vault_id, added=added)


def manifest_bytes(store: ObjectStore, manifest_id: str) -> int:
    """The stored size of one manifest (one listing of its key)."""
    key = f"manifests/{manifest_id}"
    return sum(info.size for info in store.list(key) if info.key == key)


def note_backup(ctx: Context, vault: VaultRecord, backup: Backup, store: ObjectStore) -> str | None:
    """After a backup's commit: its bytes count against the vault and the threshold is
    checked. Never fails the backup (it is committed): a problem comes back as a warning."""
    try:
        after_write(ctx, vault.id, backup.bytes_stored + manifest_bytes(store, backup.id))
    except Exception as exc:  # any error (a catalog one too): the backup is committed already
        return f"the vault's usage was not updated ({exc}); vault show measures it"
    return None


# --- the threshold -------------------------------------------------------------------------


def threshold_bytes(vault: VaultRecord) -> int | None:
    """Usage at which the alert fires: alert_at percent of the quota, else the quota."""
    if not vault.quota_bytes:
        return None
    percent = vault.alert_at if vault.alert_at is not None else 100.0
    return int(vault.quota_bytes * percent / 100)


def record_usage(
    ctx: Context, vault_id: str, *, usage: int | None = None, added: int = 0
) -> dict[str, Any]:
    """Store the usage (measured, or the last one plus `added`) and settle the alert state in
    one write transaction; the alert is notified after the commit."""
    if ctx.catalog.read_only:
        with ctx.catalog.session() as session:
            vault = session.get(VaultRecord, vault_id)
            return {"usage_bytes": usage if usage is not None else vault.usage_bytes}
    raised: dict[str, Any] | None = None
    with ctx.catalog.writer() as session:
        vault = session.get(VaultRecord, vault_id)
        if vault is None:
            return {}
        vault.usage_bytes = usage if usage is not None else (vault.usage_bytes or 0) + added
        vault.usage_at = datetime.now(UTC)  # module `datetime`: frozen by the console tests
        raised = _settle(session, ctx, vault)
        session.add(vault)
        session.commit()
        state = {"usage_bytes": vault.usage_bytes, "over_alert": vault.over_alert}
    if raised is not None:
        alert(ctx, "vault.threshold", recorded=True, **raised)
    return state


def _settle(session: Session, ctx: Context, vault: VaultRecord) -> dict[str, Any] | None:
    """Update `over_alert` from the usage; the alert to notify when it was just crossed."""
    limit = threshold_bytes(vault)
    over = limit is not None and vault.usage_bytes is not None and vault.usage_bytes >= limit
    if over == vault.over_alert:
        return None
    vault.over_alert = over
    line = usage_line(vault)
    if not over:
        record(
            session,
            ctx,
            "vault.threshold.cleared",
            kind="vault",
            object_id=vault.id,
            name=vault.name,
            detail=line,
        )
        return None
    detail = f"vault {vault.name} passed its alert threshold: {line}"
    record(
        session,
        ctx,
        "vault.threshold",
        kind="vault",
        object_id=vault.id,
        name=vault.name,
        detail=detail,
    )
    return {
        "kind": "vault",
        "object_id": vault.id,
        "name": vault.name,
        "detail": detail,
        "data": {
            "vault": vault.name,
            "usage_bytes": vault.usage_bytes,
            "quota_bytes": vault.quota_bytes,
            "alert_at": vault.alert_at,
            "percent": percent_used(vault),
        },
    }


def percent_used(vault: VaultRecord) -> float | None:
    if not vault.quota_bytes or vault.usage_bytes is None:
        return None
    return round(vault.usage_bytes / vault.quota_bytes * 100, 1)


def usage_line(vault: VaultRecord) -> str:
    """'412.0 GiB of 500.0 GiB (82.4%), alert at 80%' (or just the usage without a quota)."""
    if vault.usage_bytes is None:
        return "usage not measured yet"
    if not vault.quota_bytes:
        return f"{human_size(vault.usage_bytes)} stored, no quota"
    alert_at = f"{vault.alert_at:g}%" if vault.alert_at is not None else "the quota"
    return (
        f"{human_size(vault.usage_bytes)} of {human_size(vault.quota_bytes)} "
        f"({percent_used(vault):g}%), alert at {alert_at}"
    )


# --- settings ------------------------------------------------------------------------------


def parse_quota(value: int | str | None) -> int | None:
    """A size ('500G') or none; refused: zero, negatives, garbage (one line)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise UserError(f"invalid quota {value}: must be greater than zero")
        return value
    try:
        return parse_size(str(value).strip())
    except UserError as exc:
        raise UserError(f"invalid quota: {exc}") from None


def parse_percent(value: float | str | None) -> float | None:
    """'80%', '80' or 80 -> 80.0, between 1 and 100; or none."""
    if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
        return None
    text = str(value).strip().removesuffix("%").strip()
    try:
        percent = float(text)
    except ValueError:
        raise UserError(
            f"invalid alert threshold {str(value)[:40]!r}: a percentage of the quota, e.g. 80%"
        ) from None
    if not 1 <= percent <= 100:  # NaN fails this too
        raise UserError(
            f"invalid alert threshold {str(value)[:40]!r}: between 1% and 100% of the quota"
        )
    return percent


def set_capacity(
    ctx: Context, ref: str, *, quota: Any = UNCHANGED, alert_at: Any = UNCHANGED
) -> VaultRecord:
    """`vault set --quota --alert-at`: validated first, then stored with a fresh measure of
    the usage (so the threshold state and the next plan start from the truth)."""
    quota_bytes = UNCHANGED if quota is UNCHANGED else parse_quota(quota)
    percent = UNCHANGED if alert_at is UNCHANGED else parse_percent(alert_at)
    if quota_bytes is UNCHANGED and percent is UNCHANGED:
        raise UserError("nothing to set: give --quota SIZE|none and/or --alert-at PERCENT|none")
    with ctx.catalog.writer() as session:
        vault = resolve(session, VaultRecord, ref, kind="vault")
        if quota_bytes is not UNCHANGED:
            vault.quota_bytes = quota_bytes
        if percent is not UNCHANGED:
            vault.alert_at = percent
        if vault.alert_at is not None and not vault.quota_bytes:
            raise UserError(
                f"vault {vault.name} has no quota: an alert threshold is a share of one "
                "(give --quota too)"
            )
        vault.version += 1
        session.add(vault)
        record(
            session,
            ctx,
            "vault.set",
            kind="vault",
            object_id=vault.id,
            name=vault.name,
            detail=f"quota {human_size(vault.quota_bytes) if vault.quota_bytes else 'none'}, "
            f"alert at {f'{vault.alert_at:g}%' if vault.alert_at is not None else '-'}",
        )
        session.commit()
        session.refresh(vault)
    measure(ctx, vault)
    with ctx.catalog.session() as session:
        return session.get(VaultRecord, vault.id)


# --- the plan's estimate -------------------------------------------------------------------

#: how many of the disk's last incrementals into the vault bound the next one's estimate
RECENT_INCREMENTALS = 5


def backup_estimate(
    session: Session,
    *,
    disk_id: str,
    vault_id: str,
    parent: Backup | None,
    readable: int,
) -> tuple[int, str]:
    """What a backup may add to the vault, and how that was judged.

    A full backup: the bytes it reads (allocated bytes), an upper bound since zstd and
    deduplication only shrink them. An incremental: the most any of the disk's last
    incrementals into this vault stored (what it changed has been of that order), or, before
    there is one, what its parent stored (the full backup's size: conservative)."""
    if parent is None:
        return readable, "the bytes it reads"
    recent = session.exec(
        select(Backup.bytes_stored)
        .where(
            Backup.disk_id == disk_id,
            Backup.vault_id == vault_id,
            Backup.status == "available",
            Backup.parent_id.is_not(None),  # type: ignore[union-attr]
        )
        .order_by(Backup.created_at.desc())  # type: ignore[attr-defined]
        .limit(RECENT_INCREMENTALS)
    ).all()
    if recent:
        n = len(recent)
        return max(recent), f"the most the last {n} incremental{'s' * (n > 1)} stored"
    return parent.bytes_stored, f"what {parent.name} stored"


# --- forecast ------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def forecast(
    session: Session, vault: VaultRecord, *, now: datetime | None = None
) -> dict[str, Any]:
    """Growth per day from the bytes this vault's backups stored over the last FORECAST_DAYS
    days (or since the vault was added, at least one day), and the days until the quota is
    reached at that pace."""
    now = _aware(now or datetime.now(UTC))  # module `datetime`: the console tests freeze it
    since = max(now - timedelta(days=FORECAST_DAYS), _aware(vault.created_at))
    days = max((now - since).total_seconds() / 86400, 1.0)
    # summed by the database: 100,000 backups are not fetched to add up the recent ones
    when = func.coalesce(Backup.completed_at, Backup.created_at)
    grown = session.exec(
        select(func.coalesce(func.sum(Backup.bytes_stored), 0)).where(
            Backup.vault_id == vault.id,
            Backup.status == "available",
            when >= since,
        )
    ).one()
    grown = int(grown or 0)
    per_day = grown / days
    result: dict[str, Any] = {
        "growth_per_day": int(per_day),
        "growth_days": round(days, 1),
        "days_until_full": None,
    }
    if not vault.quota_bytes:
        result["forecast"] = "no quota"
    elif vault.usage_bytes is None:
        result["forecast"] = "usage not measured yet"
    elif vault.usage_bytes >= vault.quota_bytes:
        result["days_until_full"] = 0.0
        result["forecast"] = "full: the quota is reached"
    elif per_day <= 0:
        result["forecast"] = f"no growth over the last {days:.0f} days"
    else:
        left = (vault.quota_bytes - vault.usage_bytes) / per_day
        result["days_until_full"] = round(left, 1)
        result["forecast"] = (
            f"full in {_days(left)} at {human_size(int(per_day))}/day "
            f"(the last {days:.0f} days' backups)"
        )
    return result


def _days(days: float) -> str:
    if days < 1:
        return "less than a day"
    return f"about {days:.0f} day{'s' * (round(days) != 1)}"


# --- the vaults view ------------------------------------------------------------------------


def vault_links(session: Session, default_vault: str) -> dict[str, dict[str, Any]]:
    """vault id -> its locked backups (count, earliest date they free) and its replication:
    copies it holds, its backups copied elsewhere, and the policies replicating into it or
    out of it (by vault name). For the vaults view; catalog only."""
    vaults = {v.id: v for v in session.exec(select(VaultRecord)).all()}
    default_id = next((v.id for v in vaults.values() if v.name == default_vault), None)
    links: dict[str, dict[str, Any]] = {
        vid: {
            "locked_backups": 0,
            "locked_until_min": None,
            "copies_held": 0,
            "copied_out": 0,
            "replicates_to": [],
            "replicated_from": [],
        }
        for vid in vaults
    }
    now = datetime.now(UTC).replace(tzinfo=None)
    # only locked backups and copies: a catalog of 100,000 plain backups reads none of them
    available = Backup.status == "available"
    backups = session.exec(
        select(Backup.vault_id, Backup.locked_until, Backup.copy_of).where(
            available,
            Backup.locked_until.is_not(None) | Backup.copy_of.is_not(None),  # type: ignore[union-attr]
        )
    ).all()
    for vault_id, locked_until, copy_of in backups:
        row = links.get(vault_id)
        if row is None:
            continue
        if locked_until is not None and locked_until.replace(tzinfo=None) > now:
            row["locked_backups"] += 1
            if row["locked_until_min"] is None or locked_until < row["locked_until_min"]:
                row["locked_until_min"] = locked_until
        row["copies_held"] += bool(copy_of)
    sources = select(Backup.copy_of).where(available, Backup.copy_of.is_not(None))  # type: ignore[union-attr]
    copied_out = session.exec(
        select(Backup.vault_id, func.count())
        .where(available, Backup.id.in_(sources))  # type: ignore[attr-defined]
        .group_by(Backup.vault_id)
    ).all()
    for vault_id, count in copied_out:
        if vault_id in links:
            links[vault_id]["copied_out"] += int(count)
    for policy in session.exec(select(Policy).where(Policy.replicate_to.is_not(None))).all():  # type: ignore[union-attr]
        source, target = policy.vault_id or default_id, policy.replicate_to
        if source in links and target in vaults:
            links[source]["replicates_to"].append(vaults[target].name)
        if target in links and source in vaults:
            links[target]["replicated_from"].append(vaults[source].name)
    for row in links.values():
        row["locked_until_min"] = iso(row["locked_until_min"])
        row["replicates_to"] = sorted(set(row["replicates_to"]))
        row["replicated_from"] = sorted(set(row["replicated_from"]))
    return links
