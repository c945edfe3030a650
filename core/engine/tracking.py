"""Changed-block tracking without reading: a reflink clone of a disk as of its last backup.

On a filesystem that clones (XFS with reflink=1, btrfs), a backup of an image file first
clones the disk (FICLONE: no data copied, whatever the size) and reads that clone, so a disk
written during its backup still yields a consistent copy. Once the backup is committed its
clone is kept, read-only, as `<disk folder>/tracking/<vault id>/<backup id>.img`: the base of
the next incremental into that vault. It costs only the blocks the disk changed since.

The next backup compares the extent maps (FIEMAP, dirty pages synced first) of its own clone
and of the kept one. A range both leave as a hole, or both map to the same physical blocks,
holds the same bytes by construction: a block two files share is never written in place (a
write goes to a new block first). Every chunk any other range meets is read; nothing is read
to decide. Any doubt (no kept clone of that backup, another size, no FIEMAP, an extent whose
physical address does not name its bytes alone) answers None: read everything.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import stat
from pathlib import Path

from core.engine import devices
from core.engine.snapshot_store import reflink

#: the folder of a disk's tracking clones, inside the disk's pool folder
TRACKING_DIR = "tracking"
SUFFIX = ".img"
PARTIAL = ".partial"  # a clone being made; renamed to .img once complete and synced

#: FICLONE errors that mean "this filesystem (or this pair of files) cannot clone"
UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY}

#: extents whose physical address does not name their bytes alone, or names none
DOUBTFUL = (
    devices.FIEMAP_EXTENT_UNKNOWN
    | devices.FIEMAP_EXTENT_DELALLOC
    | devices.FIEMAP_EXTENT_ENCODED
    | devices.FIEMAP_EXTENT_DATA_ENCRYPTED
    | devices.FIEMAP_EXTENT_NOT_ALIGNED
    | devices.FIEMAP_EXTENT_DATA_INLINE
    | devices.FIEMAP_EXTENT_DATA_TAIL
)

#: (start, end, physical - logical) of each range holding data, in logical order
Mapping = list[tuple[int, int, int]]


class ChangeTracker:
    """The clones of one disk kept for one vault, in `folder` (<disk folder>/tracking/<vault>).

    At most one is kept once a backup commits: the clone that backup read (`keep`). A backup
    that fails drops its own (`discard`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def image(self, backup_id: str) -> Path:
        return self.folder / f"{backup_id}{SUFFIX}"

    def _partial(self, backup_id: str) -> Path:
        return self.folder / f"{backup_id}{PARTIAL}"

    def has(self, backup_id: str) -> bool:
        """True if the clone backup `backup_id` read is kept here."""
        return self.image(backup_id).is_file()

    def clone(self, disk_path: Path, backup_id: str) -> Path | None:
        """Clone the disk now, for backup `backup_id` to read; None where the disk cannot be
        cloned here (a block device, a filesystem without reflink, another filesystem).
        Other errors (no space, I/O) are raised."""
        try:
            if not stat.S_ISREG(os.stat(disk_path).st_mode):
                return None
        except FileNotFoundError:
            return None  # the backup reports the missing disk
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self._partial(backup_id)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()  # left by a crash: start again
        try:
            reflink(disk_path, partial)  # FICLONE, then fsync
            os.chmod(partial, 0o400)
            os.replace(partial, self.image(backup_id))
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            if exc.errno in UNSUPPORTED:
                return None
            raise
        _sync_folder(self.folder)
        return self.image(backup_id)

    def changed_chunks(
        self, current: Path, base_backup_id: str, *, size: int, chunk_size: int
    ) -> set[int] | None:
        """The chunk indices of `current` (a disk, or a clone of it) whose extents differ
        from those of the clone backup `base_backup_id` read: a superset of the chunks whose
        bytes differ. None when in any doubt (the whole disk must be read)."""
        if size < 0 or chunk_size <= 0:
            return None
        base = self.image(base_backup_id)
        try:
            mine, theirs = os.stat(current), os.stat(base)
            if not (stat.S_ISREG(mine.st_mode) and stat.S_ISREG(theirs.st_mode)):
                return None
            if mine.st_dev != theirs.st_dev or mine.st_size != size or theirs.st_size != size:
                return None
            ours, kept = _mapping(current, size), _mapping(base, size)
        except OSError:
            return None
        if ours is None or kept is None:
            return None
        return differing_chunks(ours, kept, size=size, chunk_size=chunk_size)

    def keep(self, backup_id: str) -> None:
        """Backup `backup_id` committed: its clone is the base now, every other one goes."""
        if not self.has(backup_id):
            return
        for entry in self._entries():
            if entry.name != self.image(backup_id).name:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    def discard(self, backup_id: str) -> None:
        """Backup `backup_id` failed (or was deleted): its clone goes."""
        for path in (self.image(backup_id), self._partial(backup_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def clear(self) -> None:
        """No tracking for this vault any more: every clone goes."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _entries(self) -> list[Path]:
        try:
            return [e for e in self.folder.iterdir() if e.suffix in (SUFFIX, PARTIAL)]
        except FileNotFoundError:
            return []


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mapping(path: Path, size: int) -> Mapping | None:
    """Where each data range of [0, size) of the file lies, or None if any extent is in
    doubt. Holes and unwritten extents (they read as zeros) are left out."""
    mapping: Mapping = []
    for logical, physical, length, flags in devices.file_extents(path, end=size):
        if logical >= size or length <= 0:
            continue
        if flags & DOUBTFUL or (physical == 0 and not flags & devices.FIEMAP_EXTENT_UNWRITTEN):
            return None
        if mapping and logical < mapping[-1][1]:
            return None  # overlapping or unordered: not a map we understand
        if flags & devices.FIEMAP_EXTENT_UNWRITTEN:
            continue
        mapping.append((logical, min(logical + length, size), physical - logical))
    return mapping


def differing_chunks(a: Mapping, b: Mapping, *, size: int, chunk_size: int) -> set[int]:
    """Chunks of [0, size) that meet a range where `a` and `b` differ: one maps it and the
    other does not, or both map it to other physical blocks. O(extents) after a sort."""
    cuts = sorted({0, size, *(p for s, e, _ in (*a, *b) for p in (s, e) if 0 < p < size)})
    changed: set[int] = set()
    i = j = 0
    for low, high in itertools.pairwise(cuts):
        while i < len(a) and a[i][1] <= low:
            i += 1
        while j < len(b) and b[j][1] <= low:
            j += 1
        here_a = a[i][2] if i < len(a) and a[i][0] <= low else None
        here_b = b[j][2] if j < len(b) and b[j][0] <= low else None
        if here_a != here_b:
            changed.update(range(low // chunk_size, (high - 1) // chunk_size + 1))
    return changed
