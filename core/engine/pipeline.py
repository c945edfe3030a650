"""The block pipeline shared by backups and chunk-store snapshots: backup, restore, verify.

A disk is read in fixed chunks by a bounded pool of threads (BLAKE3, zstd, AES and socket I/O
release the GIL). Holes are skipped without reading, all-zero chunks are never stored,
chunks already in the vault are never sent again. Memory stays bounded by the number of
chunks in flight, whatever the disk size. Write order (I3): every chunk durable, then the
manifest, create-only; the caller adds the catalog row last.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import blake3

from core.base.errors import Cancelled, DeviceError, IntegrityError, StoreError, UserError
from core.base.progress import ProgressReporter
from core.engine import devices
from core.repo.manifest import MAX_CHUNKS, Manifest, Stats
from core.repo.repository import Repository

T = TypeVar("T")
# a restore's progress (the chunks written so far) is saved at most this often
STATE_FLUSH_SECONDS = 1.0


def vault_stage(vault: Repository, local: str) -> str:
    """What a vault's I/O counts as in the bottleneck estimate: "network" for a remote store
    (S3), else `local`: "writing" for a backup into a local directory, "reading" for a
    restore from one (a local vault is a disk, not a network)."""
    return "network" if vault.store.remote else local


class _Timer:
    """Adds the wall time of a block to a reporter stage (the bottleneck estimate)."""

    def __init__(self, reporter: ProgressReporter | None, stage: str) -> None:
        self.reporter, self.stage = reporter, stage

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        if self.reporter is not None:
            self.reporter.stage_time(self.stage, time.monotonic() - self.start)


def run_bounded(
    items: Iterable[T],
    fn: Callable[[T], None],
    *,
    workers: int,
    cancel: threading.Event | None,
    in_flight: int | None = None,
) -> None:
    """Run `fn` over items on `workers` threads with at most `in_flight` outstanding.

    The first error stops submission and is re-raised once running tasks finish; a set
    `cancel` event raises Cancelled the same way.
    """
    workers = max(1, workers)
    slots = threading.Semaphore(in_flight or workers + 2)
    errors: list[BaseException] = []

    def done(future: Future) -> None:
        slots.release()
        exc = future.exception()
        if exc is not None:
            errors.append(exc)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bv-chunk") as pool:
        for item in items:
            slots.acquire()
            if errors:
                slots.release()
                break
            if cancel is not None and cancel.is_set():
                slots.release()
                errors.append(Cancelled("cancelled"))
                break
            pool.submit(fn, item).add_done_callback(done)
    if errors:
        first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
        raise first
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


def _zero_ids(vault: Repository, size: int, chunk_size: int) -> dict[int, str]:
    lengths = {chunk_size, size % chunk_size or chunk_size} if size else set()
    return {n: vault.chunk_id(devices.zeros(n)) for n in lengths}


def _telling(reporter: ProgressReporter) -> Callable[[str], None]:
    """Say what the job waits for, in its progress line (a wait is never silent)."""

    def tell(message: str) -> None:
        reporter.message = message
        reporter.emit(final=False)

    return tell


def disk_digest(vault: Repository, chunks: list[str | None], *, size: int, chunk_size: int) -> str:
    """BLAKE3 over every chunk's id in order, zero chunks as the id of their zeros."""
    zero = _zero_ids(vault, size, chunk_size)
    hasher = blake3.blake3()
    for index, chunk_id in enumerate(chunks):
        length = min(chunk_size, size - index * chunk_size)
        hasher.update((chunk_id or zero[length]).encode())
    return hasher.hexdigest()


@contextlib.contextmanager
def _device_errors(what: str, path: Path, offset: int) -> Iterator[None]:
    """An OSError on a disk becomes a DeviceError naming the disk and the offset."""
    try:
        yield
    except OSError as exc:
        raise DeviceError(
            f"{what} {path} at offset {offset} failed: {exc.strerror or exc}"
        ) from None


def _open_disk(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"disk image {path} is missing") from None
    except OSError as exc:
        raise UserError(f"cannot open {path}: {exc.strerror}") from None


def _indices_to_read(ranges: list[tuple[int, int]], chunk_size: int, count: int) -> list[int]:
    """Chunk indices that meet a data range, in order; every other chunk is a hole."""
    indices: list[int] = []
    for start, end in ranges:
        first = max(start // chunk_size, indices[-1] + 1 if indices else 0)
        indices.extend(range(first, min(count, -(-end // chunk_size))))
    return indices


def _account_unread(
    entries: list[str | None],
    to_read: list[int],
    *,
    size: int,
    chunk_size: int,
    tracked: bool,
    account: Callable[..., None],
    note_zero: Callable[[int, int], None] | None,
) -> None:
    """Count every chunk that is not read, in one step: holes as zero, and under tracking
    the parent's unchanged chunks as reused (their entries are already in place)."""
    if note_zero is not None:  # comparing with a backup: each hole may differ from it
        reading = set(to_read)
        for index in range(len(entries)):
            if index not in reading:
                note_zero(index, min(chunk_size, size - index * chunk_size))
        return
    last = len(entries) - 1
    last_length = size - last * chunk_size if entries else 0
    read_bytes = sum(min(chunk_size, size - i * chunk_size) for i in to_read)
    reading = set(to_read) if tracked else ()
    reused = 0
    if tracked:
        reused = sum(
            chunk_size if i != last else last_length
            for i, c in enumerate(entries)
            if c is not None and i not in reading
        )
    zero = size - read_bytes - reused
    if reused or zero:
        account(done=reused + zero, reused=reused, zero=zero)


# --- backup -----------------------------------------------------------------------------


def backup_device(
    path: Path,
    vault: Repository,
    *,
    manifest_id: str,
    disk_meta: dict[str, Any],
    parent_id: str | None = None,
    name: str | None = None,
    kind: str = "backup",
    reporter: ProgressReporter | None = None,
    cancel: threading.Event | None = None,
    workers: int = 4,
    compare_to: tuple[Manifest, Repository] | None = None,
    differing: set[int] | None = None,
    base: dict[str, Any] | None = None,
    changed: set[int] | None = None,
) -> Manifest:
    """Store every changed chunk of the disk at `path`, then commit its manifest.

    Only chunks that may hold data are read: holes (SEEK_DATA/SEEK_HOLE) are counted as zero
    in one step, never prefetched, read or handed to a worker, so the cost follows the data.

    With `compare_to` (a backup about to be restored onto this disk, same chunk size), chunks
    whose content equals the backup's are not stored: the restore leaves them as they are,
    so the backup itself holds them (the manifest's `base`). The indices that differ are
    added to `differing`: exactly what the restore must write (a safety snapshot and the
    changed-only comparison in one read of the disk).

    With `changed` (changed-block tracking: the indices whose extents differ from the clone
    the parent backup read), every other index takes the parent's entry unread, provided the
    parent reads fine with the same size and chunk size; otherwise the whole disk is read.
    """
    started = time.monotonic()
    chunk_size = vault.chunk_size
    fd = _open_disk(path, os.O_RDONLY)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        before = os.fstat(fd)
        count = -(-size // chunk_size)
        if count > MAX_CHUNKS:
            raise UserError(
                f"disk {path} needs {count:,} chunks of {chunk_size} bytes, more than the "
                f"{MAX_CHUNKS:,} a manifest holds: set a larger chunk_size for this vault"
            )
        data_ranges = devices.data_ranges(fd, size)
        # The session is announced before the parent is read: the parent's chunks are reused
        # unchecked, so a GC between the two must see this writer (or its rescue list).
        session = vault.begin_session(
            manifest_id, on_wait=_telling(reporter) if reporter is not None else None
        )
        known: set[str] = set()
        upload = vault_stage(vault, "writing")
        parent: Manifest | None = None
        try:
            if parent_id:
                with contextlib.suppress(IntegrityError):
                    parent = vault.read_manifest(parent_id)
                    known = parent.referenced()
        except BaseException:
            session.end()
            raise
        trusted = vault.store.durable_puts
        if not trusted:  # only chunks a committed (synced) manifest names are known good
            for other in vault.list_manifest_ids():
                with contextlib.suppress(IntegrityError):
                    known |= vault.read_manifest(other).referenced()
        # reuse is trusted only as far as it was verified: a chunk found damaged is stored again
        sick = vault.quarantined()
        known -= sick
        # Into a vault with no chunk at all (a first backup), asking whether each chunk is
        # there costs a round trip for nothing: the create-only PUT settles races anyway.
        empty = trusted and not known and not vault.holds_any_chunk()
        tracked = (
            changed is not None
            and compare_to is None
            and parent is not None
            and (parent.size, parent.chunk_size) == (size, chunk_size)
        )
        entries: list[str | None] = list(parent.chunks) if tracked else [None] * count
        to_read = _indices_to_read(data_ranges, chunk_size, count)
        if tracked:
            # unchanged extents hold the parent's bytes; a chunk the parent names that was
            # found damaged, or that GC condemned, is read and stored again all the same
            doubtful = sick | session.condemned
            to_read = sorted(
                {i for i in to_read if i in changed}
                | {i for i, c in enumerate(entries) if c is not None and c in doubtful}
            )
            for index in [*changed, *to_read]:
                if index < count:
                    entries[index] = None  # a hole now, or whatever the read below finds
        stats = Stats()
        lock = threading.Lock()
        seen: set[str] = set()

        def account(**counts: int) -> None:
            with lock:
                stats.bytes_new += counts.get("new", 0)
                stats.bytes_reused += counts.get("reused", 0)
                stats.bytes_zero += counts.get("zero", 0)
                stats.bytes_stored += counts.get("stored", 0)
            if reporter is not None:
                reporter.add(
                    done=counts["done"], **{k: v for k, v in counts.items() if k != "done"}
                )

        base_manifest, base_vault = compare_to if compare_to else (None, None)

        def base_entry(index: int) -> str | bool | None:
            """The backup's id for this index, None for zero, False past its end."""
            if base_manifest is None or index >= len(base_manifest.chunks):
                return False
            if base_manifest.chunk_length(index) != min(chunk_size, size - index * chunk_size):
                return False
            return base_manifest.chunks[index]

        def note_zero(index: int, length: int) -> None:
            if base_manifest is not None and base_entry(index) is not None:
                with lock:
                    differing.add(index)
            account(done=length, zero=length)

        ahead = max(2, workers)

        def one(item: tuple[int, int]) -> None:
            position, index = item
            offset = index * chunk_size
            length = min(chunk_size, size - offset)
            if position + ahead < len(to_read):  # the chunk a worker will want next, data only
                devices.prefetch(fd, to_read[position + ahead] * chunk_size, chunk_size)
            with _Timer(reporter, "reading"), _device_errors("reading", path, offset):
                data = devices.pread_exact(fd, length, offset)
            if devices.is_zero(data):
                note_zero(index, length)
                return
            with _Timer(reporter, "hashing/compressing"):
                chunk_id = vault.chunk_id(data)
            entries[index] = chunk_id
            if base_manifest is not None:
                wanted = base_entry(index)
                same_id = vault.encrypted == base_vault.encrypted and not vault.encrypted
                if wanted and (chunk_id if same_id else base_vault.chunk_id(data)) == wanted:
                    account(done=length, reused=length)  # kept by the backup itself
                    return
                with lock:
                    differing.add(index)
            condemned = chunk_id in session.condemned
            with lock:
                duplicate = chunk_id in seen
                seen.add(chunk_id)
            if not condemned and (duplicate or chunk_id in known):
                account(done=length, reused=length)
                return
            if not condemned and trusted and not empty:
                with _Timer(reporter, upload):
                    present = vault.has_chunk(chunk_id)
                if present:
                    account(done=length, reused=length)
                    return
            with _Timer(reporter, "hashing/compressing"):
                encoded = vault.encode_chunk(chunk_id, data)
            del data
            with _Timer(reporter, upload):
                if condemned or not trusted:
                    vault.rewrite_chunk(encoded)  # rescue it from GC, or replace a torn orphan
                    created = True
                else:
                    created = vault.put_chunk(encoded)
            if chunk_id in sick:
                vault.healed(chunk_id)  # a good copy is stored again
            if created:
                account(done=length, new=length, stored=len(encoded.blob))
            else:
                account(done=length, reused=length)

        try:
            _account_unread(
                entries,
                to_read,
                size=size,
                chunk_size=chunk_size,
                tracked=tracked,
                account=account,
                note_zero=note_zero if base_manifest is not None else None,
            )
            run_bounded(enumerate(to_read), one, workers=workers, cancel=cancel)
            after = os.fstat(fd)
            warnings = []
            if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size):
                warnings.append(
                    "the disk was written to while it was read: this copy may be inconsistent "
                    "(take a snapshot first, or stop the writer)"
                )
            stats.duration = time.monotonic() - started
            manifest = Manifest(
                id=manifest_id,
                kind=kind,
                size=size,
                chunk_size=chunk_size,
                chunks=entries,
                digest=disk_digest(vault, entries, size=size, chunk_size=chunk_size),
                disk=disk_meta,
                name=name,
                parent=parent_id,
                stats=stats,
                base=base,
                warnings=warnings,
            )
            vault.store.flush()  # every chunk durable before the manifest names it (I3)
            vault.write_manifest(manifest)  # the commit point
            vault.store.flush()
        finally:
            session.end()
        return manifest
    finally:
        os.close(fd)


# --- restore ----------------------------------------------------------------------------


@dataclass
class RestoreStats:
    """What a restore did: bytes fetched from the vault, written, skipped (already right)."""

    bytes_fetched: int = 0
    bytes_written: int = 0
    bytes_skipped: int = 0
    bytes_zeroed: int = 0
    resumed_chunks: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class _RestoreState:
    """Chunks already written to the target, saved beside it so a restart resumes (issue 3).

    Written, not synced: a restore makes its target durable once, at the end. A resumed
    restore reads each chunk recorded here back and checks it against its id (a write the
    crash lost is fetched again), so the record never has to be trusted, only verified."""

    def __init__(self, path: Path | None, manifest: Manifest, fd: int) -> None:
        self.path, self.fd = path, fd
        self.manifest_id = manifest.id
        self.done: set[int] = set()
        self.lock = threading.Lock()
        self.last_flush = time.monotonic()
        if path is not None and path.exists():
            with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
                body = json.loads(path.read_text())
                if body["manifest"] == manifest.id:
                    self.done = {int(i) for i in body["done"]}

    def mark(self, index: int) -> None:
        self.mark_all((index,))

    def mark_all(self, indices: Iterable[int]) -> None:
        with self.lock:
            self.done.update(indices)
            due = time.monotonic() - self.last_flush > STATE_FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        if self.path is None:
            return
        with self.lock:
            snapshot = sorted(self.done)
            self.last_flush = time.monotonic()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"manifest": self.manifest_id, "done": snapshot}))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def _restore_work(
    manifest: Manifest, only: set[int] | None
) -> tuple[int, list[tuple[int, int]], list[int]]:
    """Split a restore: bytes skipped (outside `only`), runs of zero chunks [first, end) to
    punch, and the indices whose chunks must be fetched (or compared)."""
    skipped = 0
    zero_runs: list[tuple[int, int]] = []
    data: list[int] = []
    for index, chunk_id in enumerate(manifest.chunks):
        if only is not None and index not in only:
            skipped += manifest.chunk_length(index)
        elif chunk_id is not None:
            data.append(index)
        elif zero_runs and zero_runs[-1][1] == index:
            zero_runs[-1] = (zero_runs[-1][0], index + 1)
        else:
            zero_runs.append((index, index + 1))
    return skipped, zero_runs, data


def restore_device(
    manifest: Manifest,
    vault: Repository,
    target: Path,
    *,
    compare_existing: bool,
    reporter: ProgressReporter | None = None,
    cancel: threading.Event | None = None,
    workers: int = 4,
    state_path: Path | None = None,
    only: set[int] | None = None,
    fetch: Callable[[int, str], bytes] | None = None,
) -> RestoreStats:
    """Write a manifest's content onto `target`, verifying every chunk before it is written.

    `compare_existing` (restore onto the original disk, snapshot rollback): chunks whose
    current content already matches are neither fetched nor written. An interrupted restore
    resumes from `state_path` (the chunks it records are read back and checked, not
    trusted), so the target is synced once, at the end. `only` restricts the work to indices already known to differ
    (the rest is counted as skipped); `fetch(index, id)` replaces `vault.get_chunk` and must
    return verified bytes. The whole-disk digest is checked at the end.
    """
    get = fetch or (lambda _index, chunk_id: vault.get_chunk(chunk_id))
    download = vault_stage(vault, "reading")
    fd = _open_disk(target, os.O_RDWR)
    try:
        target_size = os.lseek(fd, 0, os.SEEK_END)
        if target_size < manifest.size:
            raise UserError(
                f"target {target} ({target_size} bytes) is smaller than the backup "
                f"({manifest.size} bytes)"
            )
        block = devices.is_block_device(target)
        chunk_size = manifest.chunk_size
        state = _RestoreState(state_path, manifest, fd)
        stats = RestoreStats(resumed_chunks=len(state.done))
        ahead = max(2, workers)
        lock = threading.Lock()
        skipped, zero_runs, wanted = _restore_work(manifest, only)
        resumed = frozenset(state.done)  # written by a run that stopped: verified, not trusted

        def account(length: int, **counts: int) -> None:
            with lock:
                for key, value in counts.items():
                    setattr(stats, key, getattr(stats, key) + value)
            if reporter is not None:
                reporter.add(done=length)

        def one(item: tuple[int, int]) -> None:
            position, index = item
            offset = index * chunk_size
            length = manifest.chunk_length(index)
            chunk_id = manifest.chunks[index]
            if compare_existing or index in resumed:
                if position + ahead < len(wanted):
                    devices.prefetch(fd, wanted[position + ahead] * chunk_size, chunk_size)
                with _Timer(reporter, "reading"), _device_errors("reading", target, offset):
                    current = devices.pread_exact(fd, length, offset)
                with _Timer(reporter, "hashing/compressing"):
                    same = vault.chunk_id(current) == chunk_id
                del current
                if same:
                    state.mark(index)
                    account(length, bytes_skipped=length)
                    return
            with _Timer(reporter, download):
                try:
                    data = get(index, chunk_id)
                except IntegrityError as exc:
                    if fetch is None:
                        vault.quarantine_chunk(chunk_id)
                    raise IntegrityError(
                        f"backup {manifest.id}: chunk {index} (offset {offset}, {length} bytes) "
                        f"is damaged: {exc}"
                    ) from None
            if len(data) != length:
                raise IntegrityError(
                    f"backup {manifest.id}: chunk {index} (offset {offset}) has {len(data)} "
                    f"bytes, expected {length}"
                )
            with _Timer(reporter, "writing"), _device_errors("writing", target, offset):
                devices.pwrite_all(fd, data, offset)
            state.mark(index)
            account(length, bytes_fetched=length, bytes_written=length)

        try:
            if skipped:
                account(skipped, bytes_skipped=skipped)
            for first, end in zero_runs:  # holes are punched, a run at a time, never written
                if cancel is not None and cancel.is_set():
                    raise Cancelled("cancelled")
                offset = first * chunk_size
                length = min(end * chunk_size, manifest.size) - offset
                with _Timer(reporter, "writing"), _device_errors("writing", target, offset):
                    devices.punch_hole(fd, offset, length, block_device=block)
                state.mark_all(range(first, end))
                account(length, bytes_zeroed=length)
            run_bounded(enumerate(wanted), one, workers=workers, cancel=cancel)
        except (Cancelled, IntegrityError, StoreError, DeviceError):
            with contextlib.suppress(OSError):
                state.flush()
            raise
        with _device_errors("writing", target, 0):
            os.fsync(fd)
        # every chunk written or kept was checked against its id: the ids are the disk
        if (
            disk_digest(vault, manifest.chunks, size=manifest.size, chunk_size=chunk_size)
            != manifest.digest
        ):
            raise IntegrityError(
                f"backup {manifest.id}: the whole-disk digest does not match its manifest"
            )
        state.clear()
        return stats
    finally:
        os.close(fd)


# --- verify -----------------------------------------------------------------------------


@dataclass
class VerifyReport:
    """Result of reading back every chunk of a backup; `damaged` names index and offset."""

    backup_id: str
    chunks_checked: int = 0
    bytes_checked: int = 0
    damaged: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "chunks_checked": self.chunks_checked,
            "bytes_checked": self.bytes_checked,
            "damaged": self.damaged,
        }

    def describe(self) -> str:
        """One line naming the first damaged chunks, for the error message."""
        parts = [
            f"chunk {d['index']} (offset {d['offset']}, {d['length']} bytes): {d['error']}"
            for d in self.damaged[:3]
        ]
        more = f" and {len(self.damaged) - 3} more" if len(self.damaged) > 3 else ""
        return f"backup {self.backup_id} is damaged: " + "; ".join(parts) + more


def verify_backup(
    manifest: Manifest,
    vault: Repository,
    *,
    reporter: ProgressReporter | None = None,
    cancel: threading.Event | None = None,
    workers: int = 4,
) -> VerifyReport:
    """Fetch and check every distinct chunk once; report every index that uses a bad one."""
    report = VerifyReport(manifest.id)
    if (
        disk_digest(vault, manifest.chunks, size=manifest.size, chunk_size=manifest.chunk_size)
        != manifest.digest
    ):
        report.damaged.append(
            {"index": -1, "offset": 0, "length": 0, "error": "manifest digest mismatch"}
        )
    users: dict[str, list[int]] = {}
    for index, chunk_id in enumerate(manifest.chunks):
        if chunk_id:
            users.setdefault(chunk_id, []).append(index)
        elif reporter is not None:
            reporter.add(done=manifest.chunk_length(index), zero=manifest.chunk_length(index))
    lock = threading.Lock()

    def one(item: tuple[str, list[int]]) -> None:
        chunk_id, indices = item
        error = None
        try:
            vault.get_chunk(chunk_id)
        except IntegrityError as exc:
            error = str(exc)
            vault.quarantine_chunk(chunk_id)  # never reused; the next backup stores it again
        length = sum(manifest.chunk_length(i) for i in indices)
        with lock:
            report.chunks_checked += 1
            report.bytes_checked += length
            if error:
                for i in indices:
                    report.damaged.append(
                        {
                            "index": i,
                            "offset": i * manifest.chunk_size,
                            "length": manifest.chunk_length(i),
                            "chunk_id": chunk_id,
                            "error": error,
                        }
                    )
        if reporter is not None:
            reporter.add(done=length)

    run_bounded(users.items(), one, workers=workers, cancel=cancel)
    report.damaged.sort(key=lambda d: d["index"])
    return report
