"""Locked backups: `backup lock ID --for 30d|--until DATE` and a policy's `--lock-for`.

A locked backup is not deleted, expired or garbage-collected before its date. The vault is
the truth (I7): the lock is recorded in it (core.repo.repository, `retention/`) after every
chunk and the manifest are retained, and only then in the catalog (`Backup.locked_until`,
what plans read). Where the vault is on S3 Object Lock (`vault add --object-lock MODE`), the
store itself refuses the deletion, to anyone holding the bucket's credentials; elsewhere
blockvault refuses it, and the result says so plainly.

A lock is only ever extended: asking for an earlier date than the one a backup has is
refused (an S3 compliance lock cannot be shortened at all, and one rule for every vault).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from core.base.errors import Conflict, Retained, UserError
from core.base.times import as_utc
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, VaultRecord, iso
from core.ops.vaults import open_repository
from core.repo.repository import when
from core.rules.gfs import parse_duration
from core.stores.base import lock_instant

MAX_LOCK = timedelta(days=100 * 365)


def lock_until(
    *, lock_for: str | None = None, until: str | None = None, now: datetime | None = None
) -> datetime:
    """The date of `--for DURATION` (30d, 1y, 12h) or `--until DATE` (2027-01-01, taken as
    midnight UTC, or an ISO 8601 moment; naive means UTC): exactly one of them, in the future,
    at most 100 years ahead; whole seconds, rounded up."""
    now = now or datetime.now(UTC)
    if (lock_for is None) == (until is None):
        raise UserError("give exactly one of --for DURATION (e.g. 30d) or --until DATE")
    moment = now + parse_duration(lock_for) if lock_for is not None else _parse_date(str(until))
    if moment <= now:
        raise UserError(f"--until {until}: that date has passed; a lock needs a future date")
    if moment - now > MAX_LOCK:
        raise UserError("a lock may last at most 100 years")
    return lock_instant(moment)


def _parse_date(text: str) -> datetime:
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"--until {text[:40]!r}: expected a date (2027-01-01) or an ISO 8601 moment "
            "(2027-01-01T12:00:00Z)"
        ) from None
    return as_utc(moment)


def enforcement(vault: VaultRecord) -> tuple[str, list[str]]:
    """Who refuses the deletion of a locked backup in this vault, and what to say about it."""
    if vault.object_lock:
        return f"s3-object-lock ({vault.object_lock})", []
    if vault.kind == "s3":
        return "blockvault", [
            f"vault {vault.name} is not on S3 Object Lock: blockvault refuses to delete this "
            "backup, but anyone holding the bucket's credentials still can (for that, use a "
            "vault added with --object-lock)"
        ]
    return "blockvault", [
        f"vault {vault.name} is a directory: the lock is recorded in it and blockvault refuses "
        "the deletion, but the filesystem itself does not"
    ]


def lock_backup(
    ctx: Context,
    ref: str,
    *,
    lock_for: str | None = None,
    until: str | None = None,
    passphrase: str | None = None,
) -> dict[str, Any]:
    """Lock a backup until a date (only ever later): the vault first (chunks, manifest,
    record), then the catalog row."""
    moment = lock_until(lock_for=lock_for, until=until)
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, ref, kind="backup")
        vault = session.get(VaultRecord, backup.vault_id)
    if backup.status != "available":
        raise Conflict(f"backup {backup.name} is {backup.status}; only a complete backup is locked")
    if backup.locked_until is not None and as_utc(backup.locked_until) > moment:
        raise Conflict(
            f"backup {backup.name} is already locked until {when(as_utc(backup.locked_until))}; "
            "a lock can only be extended, never shortened"
        )
    repo = open_repository(ctx, vault, passphrase=passphrase)
    recorded = repo.lock_of(backup.id)
    if recorded is not None and recorded > moment:
        raise Conflict(
            f"backup {backup.name} is already locked until {when(recorded)} (recorded in vault "
            f"{vault.name}); a lock can only be extended, never shortened"
        )
    locked = repo.lock(backup.id, moment)
    with ctx.catalog.writer() as session:
        row = session.get(Backup, backup.id)
        if row is not None:
            row.locked_until = locked
            row.version += 1
            session.add(row)
        record(
            session,
            ctx,
            "backup.lock",
            kind="backup",
            object_id=backup.id,
            name=backup.name,
            detail=f"until {when(locked)}",
        )
        session.commit()
    enforced, warnings = enforcement(vault)
    return {
        "id": backup.id,
        "name": backup.name,
        "vault": vault.name,
        "locked_until": iso(locked),
        "enforced_by": enforced,
        "warnings": warnings,
    }


def note_lock(ctx: Context, backup_id: str, error: Retained) -> None:
    """The vault refused to delete a backup the catalog did not know was locked (locked from
    another host, or a catalog rebuilt): the row is available again and learns the date."""
    with ctx.catalog.writer() as session:
        row = session.get(Backup, backup_id)
        if row is None:
            return
        if row.status == "deleting":
            row.status = "available"
        if isinstance(error.until, datetime):
            row.locked_until = error.until
        row.version += 1
        session.add(row)
        session.commit()
