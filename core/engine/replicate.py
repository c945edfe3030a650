"""Copying a backup from one vault into another (replication).

Only the chunks missing in the target travel: a chunk the target already holds (from any
backup, deduplicated across vaults) is not sent again. Every chunk read from the source is
checked against its id before it is used; in the target it gets the target's id (the same
id between unencrypted vaults; a keyed id, so another one, in an encrypted target) and is
encoded (compressed, sealed with the target's key) and checked again before upload.

Write order (I3) as for a backup: every chunk durable in the target, then the copy's manifest
(create-only), and the caller adds the catalog row last. A copy cut short leaves chunks the
next run reuses (the existence check), never a manifest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.base.errors import IntegrityError, UserError
from core.base.progress import ProgressReporter
from core.base.units import human_size
from core.engine.pipeline import disk_digest, run_bounded
from core.repo.manifest import Manifest, Stats
from core.repo.repository import Repository


@dataclass
class CopyStats:
    """What a copy moved: bytes sent to the target (and stored there after zstd), bytes the
    target already held, zero bytes, and what was read from the source."""

    bytes_sent: int = 0
    bytes_stored: int = 0
    bytes_reused: int = 0
    bytes_zero: int = 0
    bytes_read: int = 0
    chunks_sent: int = 0
    chunks_reused: int = 0


def same_ids(source: Repository, target: Repository) -> bool:
    """True when a chunk has the same id in both vaults (both unencrypted, or the same key)."""
    key = lambda repo: repo.keys.id_key if repo.keys is not None else None  # noqa: E731
    return key(source) == key(target)


def known_pairs(source_manifest: Manifest, target_manifest: Manifest) -> dict[str, str]:
    """Source id -> target id, index by index, from an earlier backup and its copy (both read
    and checked by the caller): what an encrypted target already holds, without reading the
    source's chunks again. Empty when they do not line up."""
    if (source_manifest.size, source_manifest.chunk_size) != (
        target_manifest.size,
        target_manifest.chunk_size,
    ):
        return {}
    pairs: dict[str, str] = {}
    for mine, theirs in zip(source_manifest.chunks, target_manifest.chunks, strict=True):
        if (mine is None) != (theirs is None):
            return {}  # not a copy of it after all
        if mine is not None and pairs.setdefault(mine, theirs) != theirs:
            return {}
    return pairs


def check_digest(manifest: Manifest, repo: Repository, what: str) -> None:
    """The manifest's own whole-disk digest matches its chunk list (a changed list is damage)."""
    if (
        disk_digest(repo, manifest.chunks, size=manifest.size, chunk_size=manifest.chunk_size)
        != manifest.digest
    ):
        raise IntegrityError(f"{what}: the whole-disk digest does not match its manifest")


def copy_backup(
    manifest: Manifest,
    source: Repository,
    target: Repository,
    *,
    manifest_id: str,
    name: str,
    copy_of: str,
    guide: Callable[[], tuple[dict[str, str], str | None]] | None = None,
    reporter: ProgressReporter | None = None,
    cancel: threading.Event | None = None,
    workers: int = 4,
    on_wait: Callable[[str], None] | None = None,
) -> tuple[Manifest, CopyStats]:
    """Copy the backup `manifest` (read from `source`) into `target` as the manifest
    `manifest_id`, then commit it. `guide()`, called once the target knows of this writer (so
    a gc deleting what it names is seen, I4), gives the source ids whose target ids the
    target already holds (an earlier copy's chunks: neither read nor sent) and that earlier
    backup's id (the copy's parent)."""
    started = time.monotonic()
    if manifest.kind != "backup" or manifest.base is not None:
        raise UserError(f"{manifest.id} is not a self-contained backup: it cannot be copied")
    if manifest.chunk_size != target.chunk_size:
        raise UserError(
            f"the target vault stores {human_size(target.chunk_size)} chunks, the backup has "
            f"{human_size(manifest.chunk_size)} chunks: a copy needs the same chunk size"
        )
    check_digest(manifest, source, f"backup {manifest.id}")
    identical = same_ids(source, target)
    users: dict[str, list[int]] = {}
    for index, chunk_id in enumerate(manifest.chunks):
        if chunk_id is not None:
            users.setdefault(chunk_id, []).append(index)
    stats = Stats()
    moved = CopyStats()
    lock = threading.Lock()
    mapping: dict[str, str] = {}

    def account(length: int, **counts: int) -> None:
        with lock:
            for field_name, value in counts.items():
                setattr(moved, field_name, getattr(moved, field_name) + value)
        if reporter is not None:
            reporter.add(
                done=length,
                new=counts.get("bytes_sent", 0),
                reused=counts.get("bytes_reused", 0),
                zero=counts.get("bytes_zero", 0),
                stored=counts.get("bytes_stored", 0),
            )

    session = target.begin_session(manifest_id, on_wait=on_wait)
    try:
        known, parent_id = guide() if guide is not None else ({}, None)
        sick = target.quarantined()
        trusted = target.store.durable_puts
        # chunks a committed manifest of the target names are there (I4), unless condemned
        held = set(known.values()) - sick - session.condemned

        def usable(target_id: str) -> bool:
            """The target holds this chunk and it may be reused as it is."""
            if target_id in sick or target_id in session.condemned or not trusted:
                return False
            return target_id in held or target.has_chunk(target_id)

        def one(item: tuple[str, list[int]]) -> None:
            source_id, indices = item
            length = sum(manifest.chunk_length(i) for i in indices)
            guess = source_id if identical else known.get(source_id)
            if guess is not None and usable(guess):
                mapping[source_id] = guess
                account(length, bytes_reused=length, chunks_reused=1)
                return
            try:
                data = source.get_chunk(source_id)  # checked against its id
            except IntegrityError as exc:
                first = indices[0]
                raise IntegrityError(
                    f"backup {manifest.id}: chunk {first} (offset {first * manifest.chunk_size})"
                    f" is damaged in the source vault: {exc}"
                ) from None
            target_id = source_id if identical else target.chunk_id(data)
            mapping[source_id] = target_id
            if not identical and usable(target_id):
                account(length, bytes_read=len(data), bytes_reused=length, chunks_reused=1)
                return
            encoded = target.encode_chunk(target_id, data)  # decodes again before upload
            if target_id in session.condemned or not trusted:
                target.rewrite_chunk(encoded)  # rescue it from a gc, or replace a torn orphan
                created = True
            else:
                created = target.put_chunk(encoded)
            if target_id in sick:
                target.healed(target_id)
            if created:
                account(
                    length,
                    bytes_read=len(data),
                    bytes_sent=length,
                    bytes_stored=len(encoded.blob),
                    chunks_sent=1,
                )
            else:  # another writer stored it meanwhile
                account(length, bytes_read=len(data), bytes_reused=length, chunks_reused=1)

        zero = sum(manifest.chunk_length(i) for i, c in enumerate(manifest.chunks) if c is None)
        if zero:
            account(zero, bytes_zero=zero)
        run_bounded(users.items(), one, workers=workers, cancel=cancel)
        chunks = [mapping[c] if c is not None else None for c in manifest.chunks]
        stats.bytes_new, stats.bytes_reused = moved.bytes_sent, moved.bytes_reused
        stats.bytes_zero, stats.bytes_stored = moved.bytes_zero, moved.bytes_stored
        stats.duration = time.monotonic() - started
        copy = Manifest(
            id=manifest_id,
            kind="backup",
            size=manifest.size,
            chunk_size=manifest.chunk_size,
            chunks=chunks,
            digest=disk_digest(target, chunks, size=manifest.size, chunk_size=manifest.chunk_size),
            disk=dict(manifest.disk),
            name=name,
            parent=parent_id,
            stats=stats,
            warnings=list(manifest.warnings),
            created_at=manifest.created_at,  # the moment the data is of: the source's
            copy_of=copy_of,
        )
        target.store.flush()  # every chunk durable before the manifest names it (I3)
        target.write_manifest(copy)  # the commit point
        target.store.flush()
    finally:
        session.end()
    return copy, moved
