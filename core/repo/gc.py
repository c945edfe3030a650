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
from collections.abc import Container
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from core.base.errors import Busy, Conflict, IntegrityError, ObjectMissing, Retained
from core.base.host import holder_gone, host_id
from core.base.text import printable
from core.repo.manifest import CHUNK_ID
from core.repo.repository import CONDEMNED_PER_LIST, LOCKS, Repository, chunk_key
from core.repo.repository import GC_LOCK_KEY as LOCK_KEY
from core.stores.base import ObjectInfo

FUTURE_TOLERANCE_SECONDS = 60.0  # clocks may disagree this much; more is skew or tampering
DELETE_WORKERS = 8  # deletes in flight: an S3 DELETE or a local unlink waits on I/O, not CPU
DELETE_WINDOW = 256  # deletes between two checks that the lock is still ours


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


def _chunk_of(info: ObjectInfo) -> str | None:
    """The chunk id a listed `chunks/` object holds, or None for anything else there (a
    stray file is never condemned or deleted: it is not a chunk gc knows how to name)."""
    chunk_id = info.key.rsplit("/", 1)[-1]
    if not CHUNK_ID.match(chunk_id) or info.key != chunk_key(chunk_id):
        return None
    return chunk_id


def _referenced(
    vault: Repository, *, among: Container[bytes] | None = None
) -> tuple[set[bytes], int]:
    """Every chunk a manifest references (only those `among` these, when given: the delete
    pass asks only about the chunks it would delete), as 32-byte digests (a third of a hex
    string's memory), reading one manifest at a time. A damaged manifest stops gc before it
    condemns or deletes anything (I4): which chunks it needs is unknown, so none may go."""
    referenced: set[bytes] = set()
    count = 0
    for manifest_id, manifest, why in vault.iter_manifests():
        if manifest is None:
            raise IntegrityError(
                f"gc stopped before deleting anything: {why}; its chunks cannot be told apart. "
                f"Delete that backup (`blockvault backup delete {manifest_id}`) or repair it, "
                "then run gc"
            )
        digests = map(bytes.fromhex, manifest.referenced())
        if among is not None:
            digests = (d for d in digests if d in among)
        referenced.update(digests)
        count += 1
    return referenced, count


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
    """Delete the chunks of every condemned list older than the grace period that are still
    unreferenced and were not rewritten since (module doc), in one listing of the chunks.
    A chunk in several lists goes if it is older than the newest of them."""
    lists = list(vault.store.list("condemned/"))
    if not lists:
        return
    now = vault.store_clock()  # ages by the store's clock, not this host's
    live = bool(vault.live_sessions(now=now))  # read after the lock is ours: later writers wait
    due: dict[bytes, float] = {}  # chunk -> the newest stamp of a list old enough that names it
    done: list[ObjectInfo] = []
    for info, ids in vault.iter_condemned():
        if live or now - info.mtime < grace_seconds:
            stats.deferred_chunks += len(ids)
            continue
        for chunk_id in ids:
            digest = bytes.fromhex(chunk_id)
            if due.get(digest, 0.0) < info.mtime:
                due[digest] = info.mtime
        done.append(info)
    if not done:
        return
    # listed after the condemned lists; only the chunks due matter here
    referenced, stats.manifests = _referenced(vault, among=due)
    lock.check()

    def delete(chunk_id: str, size: int) -> GcStats:
        """One chunk, in a worker: its own stats, merged by the caller."""
        lock.in_time()  # right before the delete, whatever the queue's wait
        own = GcStats()
        if _still_retained(vault, chunk_id, size, own):
            return own  # condemned again by a later run, deleted once its date has passed
        try:
            vault.delete_chunk(chunk_id, lazily=True)
        except Retained as exc:  # an older version of it is retained
            own.retained(exc.until, size)
            return own
        own.deleted_chunks, own.deleted_bytes = 1, size
        return own

    def merge(futures: list[Future[GcStats]]) -> None:
        for future in futures:
            _add(stats, future.result())
        futures.clear()

    with ThreadPoolExecutor(DELETE_WORKERS, thread_name_prefix="gc-delete") as pool:
        window: list[Future[GcStats]] = []
        for found in vault.list_chunks():
            chunk_id = _chunk_of(found)
            if chunk_id is None:
                continue
            digest = bytes.fromhex(chunk_id)
            stamp = due.get(digest)
            if stamp is None or digest in referenced or found.mtime >= stamp:
                continue  # not condemned long enough, used again, or rescued by a writer
            window.append(pool.submit(delete, chunk_id, found.size))
            if len(window) >= DELETE_WINDOW:
                merge(window)
                lock.check()
        merge(window)
    vault.store.flush()  # the chunks' deletes are durable before their lists go
    for info in done:
        vault.store.delete(info.key)


def _add(stats: GcStats, one: GcStats) -> None:
    """Fold one delete's outcome into the run's stats."""
    stats.deleted_chunks += one.deleted_chunks
    stats.deleted_bytes += one.deleted_bytes
    if one.retained_chunks:
        stats.retained_chunks += one.retained_chunks
        stats.retained_bytes += one.retained_bytes
        if one.retained_free_at is not None and (
            stats.retained_free_at is None or one.retained_free_at < stats.retained_free_at
        ):
            stats.retained_free_at = one.retained_free_at


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


def _condemn(vault: Repository, lock: _Lock, stats: GcStats) -> None:
    """List every chunk once: those no manifest references and no pending list names are
    condemned, CONDEMNED_PER_LIST to a list, written as the listing goes."""
    already: set[bytes] = set()
    for _, ids in vault.iter_condemned():
        already.update(map(bytes.fromhex, ids))
    referenced, stats.manifests = _referenced(vault)
    batch: list[str] = []
    for info in vault.list_chunks():
        chunk_id = _chunk_of(info)
        if chunk_id is None:
            continue
        stats.chunks += 1
        digest = bytes.fromhex(chunk_id)
        if digest in referenced or digest in already:
            continue
        batch.append(chunk_id)
        stats.condemned_chunks += 1
        stats.condemned_bytes += info.size
        if len(batch) >= CONDEMNED_PER_LIST:
            lock.check()
            vault.write_condemned(batch)
            batch = []
    if batch:
        lock.check()
        vault.write_condemned(batch)


def collect_garbage(vault: Repository, *, grace_seconds: float, dry_run: bool = False) -> GcStats:
    """Condemn unreferenced chunks and delete those condemned long enough ago (module doc).

    Memory: the referenced chunks as a set of 32-byte digests, plus the condemned ones due
    for deletion; manifests are read one at a time and the chunks listed as a stream
    (~100 bytes a chunk: a million chunks in about 100 MB)."""
    if dry_run:
        return _simulate(vault, grace_seconds)
    stats = GcStats()
    lock = _Lock(vault)
    lock.acquire()
    try:
        if grace_seconds > 0:  # with no grace, the one pass after condemning does it all
            _delete_pass(vault, lock, grace_seconds, stats)
        _condemn(vault, lock, stats)
        if grace_seconds <= 0:
            _delete_pass(vault, lock, grace_seconds, stats)
        _empty_trash(vault, grace_seconds, stats)
        _note_locks(vault, stats)
    finally:
        lock.release()
    return stats


def _simulate(vault: Repository, grace_seconds: float) -> GcStats:
    """What `collect_garbage` would do now, changing nothing: the same passes, in order, in
    one listing of the chunks."""
    stats = GcStats(dry_run=True)
    now = time.time()
    live = bool(vault.live_sessions(now=now))  # a dry run writes no clock probe
    already: set[bytes] = set()
    due: dict[bytes, float] = {}
    for info, ids in vault.iter_condemned():
        digests = list(map(bytes.fromhex, ids))
        already.update(digests)
        if live or now - info.mtime < grace_seconds:
            stats.deferred_chunks += len(ids)
            continue
        for digest in digests:
            if due.get(digest, 0.0) < info.mtime:
                due[digest] = info.mtime
    referenced, stats.manifests = _referenced(vault)
    fresh_due = grace_seconds <= 0  # condemned now, deleted in the same run
    for info in vault.list_chunks():
        chunk_id = _chunk_of(info)
        if chunk_id is None:
            continue
        stats.chunks += 1
        digest = bytes.fromhex(chunk_id)
        if digest in referenced:
            continue
        if digest not in already:
            stats.condemned_chunks += 1
            stats.condemned_bytes += info.size
            if not fresh_due:
                continue
            if live:
                stats.deferred_chunks += 1
                continue
            stamp: float | None = now
        else:
            stamp = due.get(digest)
        if stamp is None or info.mtime >= stamp:
            continue
        if _still_retained(vault, chunk_id, info.size, stats):
            continue
        stats.deleted_chunks += 1
        stats.deleted_bytes += info.size
    _note_locks(vault, stats)
    return stats
