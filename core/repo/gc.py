"""Garbage collection: delete chunks no manifest references, safely beside running backups.

Two phases, kopia-style, so a backup that reuses a chunk GC is about to delete never loses it:

1. *Condemn*: list manifests, then chunks; the unreferenced ones are written to a
   `condemned/` list. A writer announces its session before it reads the condemned lists,
   so a writer that starts later sees the list and rewrites (rescues) any condemned chunk
   it reuses; one that started earlier is still live, or has committed its manifest.
2. *Delete* (this run when the grace period is 0, else a later one): only while no writer
   session is live at all; then a condemned chunk goes if its list is older than the grace
   period, no manifest listed now references it, and it was not rewritten since.

Locked backups (retention): their manifests are never trashed before their date, so their
chunks stay referenced. In a vault on S3 Object Lock, GC also never tries to delete a
retained object: a condemned chunk whose retention has not passed is skipped (and condemned
again by a later run), and the run reports how many and when the first of them is free.

Writers and the delete phase exclude each other Dekker-style: GC writes its lock
(`locks/gc`) before it reads the sessions, and a writer writes its session before it reads
the lock, waiting while a GC holds it. So either GC sees the writer (and defers), or the
writer waits for GC to finish. The lock has an owner and a lease (I9); a GC that has held it
longer than half the lease stops before deleting anything more.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from core.base.errors import Busy, Conflict, IntegrityError, ObjectMissing, Retained
from core.base.host import holder_gone, host_id
from core.base.text import printable
from core.repo.repository import GC_LOCK_KEY as LOCK_KEY
from core.repo.repository import LOCKS, Repository, chunk_key

FUTURE_TOLERANCE_SECONDS = 60.0  # clocks may disagree this much; more is skew or tampering


@dataclass
class GcStats:
    """What a GC run did."""

    manifests: int = 0
    chunks: int = 0
    condemned_chunks: int = 0
    condemned_bytes: int = 0
    deleted_chunks: int = 0
    deleted_bytes: int = 0
    deferred_chunks: int = 0
    trash_emptied: int = 0
    #: condemned chunks the store still retains (S3 Object Lock): skipped, never deleted
    retained_chunks: int = 0
    retained_bytes: int = 0
    #: when the first of them is free (ISO 8601, UTC), or None
    retained_free_at: str | None = None
    #: backups whose lock has not passed (their chunks stay: they are referenced)
    locked_backups: int = 0
    #: when the first of those locks passes (ISO 8601, UTC), or None
    locked_until: str | None = None
    dry_run: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def retained(self, until: datetime | None, size: int) -> None:
        """One condemned chunk left alone because the store retains it until `until`."""
        self.retained_chunks += 1
        self.retained_bytes += size
        if until is not None:
            stamp = until.astimezone(UTC).isoformat(timespec="seconds")
            if self.retained_free_at is None or stamp < self.retained_free_at:
                self.retained_free_at = stamp

    def __str__(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        text = (
            f"{verb} {self.deleted_chunks} chunks ({self.deleted_bytes} bytes), "
            f"condemned {self.condemned_chunks}, deferred {self.deferred_chunks}"
        )
        if self.retained_chunks:
            text += (
                f", kept {self.retained_chunks} retained by Object Lock (the first is free "
                f"at {self.retained_free_at})"
            )
        if self.locked_backups:
            text += (
                f"; {self.locked_backups} locked backups (the first free at {self.locked_until})"
            )
        return text


class _Lock:
    """The single-writer lock of destructive vault operations (I9): an owner token
    `host:pid:random`, a lease, self-fencing. Taken over at once when its holder's process is
    gone from this host; after its lease otherwise; a lock dated in the future (clock skew or
    tampering) counts as lapsed rather than blocking forever."""

    def __init__(self, vault: Repository) -> None:
        self.vault = vault
        self.owner = f"{host_id()}:{os.getpid()}:{os.urandom(4).hex()}"
        self.taken_at = 0.0

    def acquire(self) -> None:
        # the lease goes in the lock: writers on hosts with a shorter lease wait this one
        body = json.dumps(
            {"owner": self.owner, "at": time.time(), "lease": self.vault.gc_lease}
        ).encode()
        if self.vault.store.put(LOCK_KEY, body, create_only=True):
            self.taken_at = time.monotonic()
            return
        held = self.vault.gc_lock()
        if held is not None:
            info, owner = held
            age = self.vault.store_clock() - info.mtime
            lease = max(self.vault.gc_lease, self.vault.gc_lock_lease())  # its holder's too
            if not (holder_gone(owner) or age >= lease or age < -FUTURE_TOLERANCE_SECONDS):
                raise Busy(
                    f"garbage collection by {printable(owner)} holds this vault's lock (taken "
                    f"{max(age, 0):.0f} s ago; it lapses after {lease:.0f} s); try later"
                )
            self.vault.store.delete(LOCK_KEY)  # gone or lapsed: a lapsed holder fences itself
        if not self.vault.store.put(LOCK_KEY, body, create_only=True):
            raise Busy("another garbage collection took this vault's lock; try later")
        self.taken_at = time.monotonic()

    def in_time(self) -> None:
        """The free part of `check`: within half the lease on this host's monotonic clock.
        Run before every delete, so a stall of any length between two checks can't carry
        a delete past the lease that writers wait out."""
        if time.monotonic() - self.taken_at > self.vault.gc_lease / 2:
            raise Conflict("garbage collection ran past its lock lease; stopped before deleting")

    def check(self) -> None:
        """Self-fencing: a holder whose lease may have lapsed deletes nothing more."""
        self.in_time()
        try:
            body = json.loads(self.vault.store.get(LOCK_KEY))
        except ObjectMissing:
            raise Conflict("garbage collection lost its lock; stopped before deleting") from None
        if body.get("owner") != self.owner:
            raise Conflict("garbage collection lost its lock; stopped before deleting")

    def release(self) -> None:
        try:
            body = json.loads(self.vault.store.get(LOCK_KEY))
            if body.get("owner") == self.owner:
                self.vault.store.delete(LOCK_KEY)
        except ObjectMissing:
            pass


def _referenced(vault: Repository) -> tuple[set[str], int]:
    """Every chunk a manifest references. A damaged manifest stops gc before it condemns or
    deletes anything (I4): which chunks it needs is unknown, so none may go."""
    manifests, damaged = vault.readable_manifests()
    if damaged:
        which, why = next(iter(damaged.items()))
        raise IntegrityError(
            f"gc stopped before deleting anything: {why}; its chunks cannot be told apart. "
            f"Delete that backup (`blockvault backup delete {which}`) or repair it, then run gc"
        )
    referenced: set[str] = set()
    for manifest in manifests:
        referenced |= manifest.referenced()
    return referenced, len(manifests)


def _still_retained(vault: Repository, chunk_id: str, size: int, stats: GcStats) -> bool:
    """True (and counted) when the store retains this chunk: GC never tries to delete it."""
    if not vault.store.object_lock:
        return False
    try:
        until = vault.store.retained_until(chunk_key(chunk_id))
    except ObjectMissing:
        return False
    if until is None:
        return False
    stats.retained(until, size)
    return True


def _note_locks(vault: Repository, stats: GcStats) -> None:
    """Count the backups still locked; forget lock records of backups gone after their date."""
    now = datetime.now(UTC)
    live = set(vault.list_manifest_ids())
    for manifest_id, until in vault.locks().items():
        if until > now:
            stats.locked_backups += 1
            stamp = until.isoformat(timespec="seconds")
            if stats.locked_until is None or stamp < stats.locked_until:
                stats.locked_until = stamp
        elif manifest_id not in live and not stats.dry_run:
            with contextlib.suppress(ObjectMissing, Retained):
                vault.store.delete(f"{LOCKS}{manifest_id}")


def _delete_pass(vault: Repository, lock: _Lock, grace_seconds: float, stats: GcStats) -> None:
    pending = vault.condemned_lists()
    if not pending:
        return
    now = vault.store_clock()  # ages by the store's clock, not this host's
    if vault.live_sessions(now=now):  # read after the lock is ours: later writers wait for us
        stats.deferred_chunks += sum(len(ids) for _, ids in pending)
        return
    referenced, stats.manifests = _referenced(vault)  # listed after the condemned lists
    chunks = {info.key.rsplit("/", 1)[1]: info for info in vault.list_chunks()}
    for info, ids in pending:
        if now - info.mtime < grace_seconds:
            stats.deferred_chunks += len(ids)
            continue
        lock.check()
        for count, chunk_id in enumerate(ids):
            found = chunks.get(chunk_id)
            if found is None or chunk_id in referenced or found.mtime >= info.mtime:
                continue  # gone already, used again, or rescued by a writer
            if count % 256 == 255:
                lock.check()
            lock.in_time()
            if _still_retained(vault, chunk_id, found.size, stats):
                continue  # condemned again by a later run, deleted once its date has passed
            try:
                vault.delete_chunk(chunk_id)
            except Retained as exc:  # an older version of it is retained
                stats.retained(exc.until, found.size)
                continue
            stats.deleted_chunks += 1
            stats.deleted_bytes += found.size
        vault.store.delete(info.key)


def _empty_trash(vault: Repository, grace_seconds: float, stats: GcStats) -> None:
    trashed = list(vault.store.list("trash/"))
    if not trashed:
        return
    now = vault.store_clock()
    for info in trashed:
        if now - info.mtime >= grace_seconds:
            try:
                vault.store.delete(info.key)
            except Retained:
                continue  # the store keeps it until its date; a later run empties it
            stats.trash_emptied += 1


def collect_garbage(vault: Repository, *, grace_seconds: float, dry_run: bool = False) -> GcStats:
    """Condemn unreferenced chunks and delete those condemned long enough ago (module doc)."""
    if dry_run:
        return _simulate(vault, grace_seconds)
    stats = GcStats()
    lock = _Lock(vault)
    lock.acquire()
    try:
        if grace_seconds > 0:  # with no grace, the one pass after condemning does it all
            _delete_pass(vault, lock, grace_seconds, stats)
        already = set().union(*(ids for _, ids in vault.condemned_lists()))
        referenced, stats.manifests = _referenced(vault)
        chunk_ids = {info.key.rsplit("/", 1)[1] for info in vault.list_chunks()}
        stats.chunks = len(chunk_ids)
        unreferenced = chunk_ids - referenced - already
        if unreferenced:
            lock.check()
            vault.write_condemned(unreferenced)
            stats.condemned_chunks = len(unreferenced)
            sizes = vault.chunk_sizes()
            stats.condemned_bytes = sum(sizes.get(c, 0) for c in unreferenced)
        if grace_seconds <= 0:
            _delete_pass(vault, lock, grace_seconds, stats)
        _empty_trash(vault, grace_seconds, stats)
        _note_locks(vault, stats)
    finally:
        lock.release()
    return stats


def _simulate(vault: Repository, grace_seconds: float) -> GcStats:
    """What `collect_garbage` would do now, changing nothing: the same passes, in order."""
    stats = GcStats(dry_run=True)
    now = time.time()
    referenced, stats.manifests = _referenced(vault)
    chunks = {info.key.rsplit("/", 1)[1]: info for info in vault.list_chunks()}
    stats.chunks = len(chunks)
    live = bool(vault.live_sessions(now=now))  # a dry run writes no clock probe
    pending = vault.condemned_lists()
    gone: set[str] = set()

    def delete_pass(lists: list[tuple[float, set[str]]]) -> None:
        for stamp, ids in lists:
            if live or now - stamp < grace_seconds:
                stats.deferred_chunks += len(ids)
                continue
            for chunk_id in ids:
                found = chunks.get(chunk_id)
                if found is None or chunk_id in referenced or found.mtime >= stamp:
                    continue
                if chunk_id not in gone:
                    gone.add(chunk_id)
                    if _still_retained(vault, chunk_id, found.size, stats):
                        continue
                    stats.deleted_chunks += 1
                    stats.deleted_bytes += found.size

    listed = [(info.mtime, ids) for info, ids in pending]
    if grace_seconds > 0:
        delete_pass(listed)
    already = set().union(*(ids for _, ids in pending)) if pending else set()
    fresh = set(chunks) - referenced - already
    stats.condemned_chunks = len(fresh)
    stats.condemned_bytes = sum(chunks[c].size for c in fresh)
    if grace_seconds <= 0:
        delete_pass([*listed, (now, fresh)])  # condemned now, deleted in the same run
    _note_locks(vault, stats)
    return stats
