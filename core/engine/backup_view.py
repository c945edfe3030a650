"""A backup as a random-access, read-only disk image: `BackupView.read(offset, size)`.

Chunks are fetched only when a read touches them, through the repository the way a restore
reads them (`Repository.get_chunk`: fetch, authenticate and decrypt, decompress, check the
BLAKE3 content id), and kept in a small LRU cache bounded in bytes. A zero chunk (a hole)
reads as zeros without any fetch. A chunk that fails its check raises IntegrityError: the
caller turns it into EIO, never into bytes. Nothing is written to the vault (a mount is
read-only; `backup verify` is what quarantines a damaged chunk).

Also here: what a disk image holds, from its first bytes (`filesystem_in`), so a mount knows
whether it can show files.
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from concurrent.futures import Future

from core.base.errors import IntegrityError
from core.engine.pipeline import disk_digest
from core.repo.manifest import Manifest
from core.repo.repository import Repository

DEFAULT_CACHE_BYTES = 64 << 20
HEAD_BYTES = 68 << 10  # enough to see every signature `filesystem_in` knows (btrfs at 64 KiB)


class BackupView:
    """Read-only random access to one backup's bytes; thread-safe (FUSE reads in parallel)."""

    def __init__(
        self, manifest: Manifest, repo: Repository, *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        """Check the manifest's whole-disk digest against its chunk list first: a manifest
        whose index was altered is refused before any byte is served."""
        if (
            disk_digest(repo, manifest.chunks, size=manifest.size, chunk_size=manifest.chunk_size)
            != manifest.digest
        ):
            raise IntegrityError(
                f"backup {manifest.id}: its chunk list does not match its whole-disk digest"
            )
        self.manifest = manifest
        self.repo = repo
        self.size = manifest.size
        self.cache_bytes = max(cache_bytes, manifest.chunk_size)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cached = 0
        self._pending: dict[int, Future[bytes]] = {}
        self._lock = threading.Lock()
        #: chunks fetched from the vault (a test and the bench read it: holes never count)
        self.fetches = 0

    def read(self, offset: int, size: int) -> bytes:
        """The bytes at [offset, offset+size), cut at the end of the disk."""
        if offset < 0 or size < 0:
            raise ValueError("negative offset or size")
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        chunk_size = self.manifest.chunk_size
        parts = []
        position = offset
        while position < end:
            index = position // chunk_size
            start = position - index * chunk_size
            stop = min(end - index * chunk_size, self.manifest.chunk_length(index))
            if self.manifest.chunks[index] is None:
                parts.append(bytes(stop - start))
            else:
                parts.append(self._chunk(index)[start:stop])
            position = index * chunk_size + stop
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _chunk(self, index: int) -> bytes:
        """Chunk `index`, from the cache or fetched once (parallel readers of the same chunk
        wait for one fetch)."""
        with self._lock:
            found = self._cache.get(index)
            if found is not None:
                self._cache.move_to_end(index)
                return found
            pending = self._pending.get(index)
            owner = pending is None
            if owner:
                pending = self._pending[index] = Future()
        assert pending is not None
        if not owner:
            return pending.result()
        try:
            data = self._fetch(index)
        except BaseException as exc:
            with self._lock:
                del self._pending[index]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._pending[index]
            self._cache[index] = data
            self._cached += len(data)
            while self._cached > self.cache_bytes and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._cached -= len(dropped)
        pending.set_result(data)
        return data

    def _fetch(self, index: int) -> bytes:
        chunk_id = self.manifest.chunks[index]
        assert chunk_id is not None
        offset = index * self.manifest.chunk_size
        length = self.manifest.chunk_length(index)
        try:
            data = self.repo.get_chunk(chunk_id)
        except IntegrityError as exc:
            raise IntegrityError(
                f"backup {self.manifest.id}: chunk {index} (offset {offset}, {length} bytes) "
                f"is damaged: {exc}"
            ) from None
        if len(data) != length:
            raise IntegrityError(
                f"backup {self.manifest.id}: chunk {index} (offset {offset}) has {len(data)} "
                f"bytes, expected {length}"
            )
        with self._lock:
            self.fetches += 1
        return bytes(data)


#: signatures of what a disk image may hold besides ext2/3/4 and XFS: (offset, magic, name),
#: named in the refusal so a user knows why no files are shown
_OTHER_SIGNATURES = (
    (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
    (0x10040, b"_BHRfS_M", "a btrfs filesystem"),
    (0, b"hsqs", "a squashfs filesystem"),
    (3, b"NTFS    ", "an NTFS filesystem"),
    (0x52, b"FAT32   ", "a FAT filesystem"),
    (0x36, b"FAT1", "a FAT filesystem"),
    (0x218, b"LVM2 001", "an LVM physical volume"),
    (4086, b"SWAPSPACE2", "swap space"),
    (512, b"EFI PART", "a partition table (GPT)"),
)


def filesystem_in(head: bytes) -> str:
    """What the first bytes of a disk image hold: "ext2", "ext3", "ext4" or "xfs" (a
    filesystem blockvault shows files of), a description of something else ("a partition
    table (MBR)", "a btrfs filesystem"...), or "" when nothing is recognised."""
    if head[:4] == b"XFSB":
        return "xfs"
    if len(head) >= 1124 and head[1080:1082] == b"\x53\xef":
        compat, incompat = struct.unpack_from("<II", head, 1024 + 0x5C)
        if incompat & (0x40 | 0x80 | 0x200):  # extents, 64bit, flex_bg
            return "ext4"
        return "ext3" if compat & 0x4 else "ext2"  # has_journal
    for offset, magic, name in _OTHER_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        return "a partition table (MBR)"
    return ""


def ext_needs_recovery(head: bytes) -> bool:
    """An ext3/4 superblock whose journal needs replaying (its `needs_recovery` flag)."""
    if len(head) < 1124 or head[1080:1082] != b"\x53\xef":
        return False
    return bool(struct.unpack_from("<I", head, 1024 + 0x60)[0] & 0x4)


SHOWN_FILESYSTEMS = ("ext2", "ext3", "ext4", "xfs")
