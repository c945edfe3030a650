"""Snapshot bytes, stored with the disk: reflink clones where the filesystem can, else chunks.

`reflink`: a FICLONE clone of the whole image in the disk's snapshot folder (XFS with
reflink=1, btrfs): create, rollback and to-disk share extents, so they take constant time
whatever the size. `chunks`: a local incremental chunk store in the same folder, built on the
backup pipeline: a snapshot writes only chunks not already stored, a rollback writes only
chunks that differ. The strategy is detected per pool folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.base.errors import Cancelled, IntegrityError, UserError
from core.base.progress import ProgressReporter
from core.engine import devices, pipeline
from core.engine.imaging import copy_image
from core.repo.gc import collect_garbage
from core.repo.manifest import Manifest
from core.repo.repository import Repository, chunk_key
from core.stores.local import LocalStore

FICLONE = 0x40049409
SNAPSHOT_COMPRESSION = 1  # local snapshots favour speed; backups use the vault's level


def reflink(source: Path, target: Path) -> None:
    """Make `target` share all of `source`'s extents (raises OSError where unsupported)."""
    with open(source, "rb") as src, open(target, "r+b" if target.exists() else "xb") as dst:
        fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        size = os.fstat(src.fileno()).st_size
        if os.fstat(dst.fileno()).st_size > size and target.is_file():
            os.ftruncate(dst.fileno(), size)
        os.fsync(dst.fileno())


def detect_strategy(folder: Path) -> str:
    """'reflink' if FICLONE works inside `folder`, else 'chunks'."""
    folder.mkdir(parents=True, exist_ok=True)
    probe_a, probe_b = folder / ".reflink-probe-a", folder / ".reflink-probe-b"
    try:
        probe_a.write_bytes(b"\x01" * 4096)
        reflink(probe_a, probe_b)
        return "reflink"
    except OSError:
        return "chunks"
    finally:
        for probe in (probe_a, probe_b):
            with contextlib.suppress(FileNotFoundError):
                probe.unlink()


@dataclass
class RestoreSource:
    """A backup about to be restored onto the disk (see SnapshotEngine.create)."""

    manifest: Manifest
    vault: Repository
    base: dict[str, Any] | None  # None: the chunks it keeps are in the snapshot store itself


BaseOpener = Callable[[dict[str, Any]], tuple[Manifest, Repository]]


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot costs where it lives."""

    strategy: str
    bytes_stored: int
    #: with `restore_of` on the chunk strategy: the chunk indices the overwrite must write
    #: (the snapshot compared them while reading); None when it did not compare
    differing: frozenset[int] | None = None


class SnapshotEngine:
    """The bytes of one disk's snapshots, in `folder` (pool/<disk-id>/snapshots)."""

    def __init__(
        self, disk_path: Path, folder: Path, *, strategy: str, chunk_size: int = 4 << 20
    ) -> None:
        self.disk_path = disk_path
        self.folder = folder
        self.strategy = strategy
        self.chunk_size = chunk_size

    # --- chunk store ------------------------------------------------------------------

    def _store(self) -> Repository:
        store = LocalStore(self.folder / "store", sync_each_put=False)  # one syncfs per commit
        if Repository.exists(store):
            return Repository.open(store)
        return Repository.init(store, chunk_size=self.chunk_size, compression=SNAPSHOT_COMPRESSION)

    def _image(self, snapshot_id: str) -> Path:
        return self.folder / f"{snapshot_id}.img"

    def _strategy_of(self, snapshot_id: str) -> str:
        return "reflink" if self._image(snapshot_id).exists() else "chunks"

    # --- operations -------------------------------------------------------------------

    def create(
        self,
        snapshot_id: str,
        *,
        disk_meta: dict[str, Any],
        reporter: ProgressReporter | None = None,
        cancel: threading.Event | None = None,
        workers: int = 4,
        restore_of: RestoreSource | None = None,
    ) -> SnapshotInfo:
        """Take a snapshot of the disk now.

        `restore_of`: a safety snapshot before that backup is restored onto this disk. On the
        chunk strategy (same chunk size) it stores only the chunks the restore will overwrite
        and returns their indices (`SnapshotInfo.differing`), so the disk is read once in all.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.strategy == "reflink":
            image = self._image(snapshot_id)
            try:
                reflink(self.disk_path, image)
            except OSError as exc:
                with contextlib.suppress(FileNotFoundError):
                    image.unlink()
                if exc.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                    raise UserError(f"cannot clone {self.disk_path}: {exc.strerror}") from None
            else:
                if reporter is not None:
                    reporter.add(done=reporter.bytes_total)
                return SnapshotInfo("reflink", 0)  # shares every extent until the disk diverges
        store = self._store()
        fused = restore_of is not None and restore_of.manifest.chunk_size == store.chunk_size
        differing: set[int] = set()
        manifest = pipeline.backup_device(
            self.disk_path,
            store,
            manifest_id=snapshot_id,
            disk_meta=disk_meta,
            kind="snapshot",
            reporter=reporter,
            cancel=cancel,
            workers=workers,
            compare_to=(restore_of.manifest, restore_of.vault) if fused else None,
            differing=differing if fused else None,
            base=restore_of.base if fused else None,
        )
        return SnapshotInfo(
            "chunks", manifest.stats.bytes_stored, frozenset(differing) if fused else None
        )

    def rollback(
        self,
        snapshot_id: str,
        *,
        reporter: ProgressReporter | None = None,
        cancel: threading.Event | None = None,
        workers: int = 4,
        open_base: BaseOpener | None = None,
        only: set[int] | None = None,
    ) -> None:
        """Put the disk back as it was (only chunks that differ are written; `only`: the
        indices a fused safety snapshot found different, so the disk is not read again).

        A safety snapshot taken before a restore keeps only the chunks the restore
        overwrote; `open_base(base)` opens the backup that holds the others.
        """
        self._write(
            snapshot_id, self.disk_path, only is None, reporter, cancel, workers, open_base, only
        )

    def restore_source(self, snapshot_id: str) -> RestoreSource | None:
        """What a safety snapshot before rolling back to `snapshot_id` compares against: the
        chunk store lets it keep only the chunks the rollback will overwrite (one read)."""
        if self._strategy_of(snapshot_id) != "chunks" or not (self.folder / "store").exists():
            return None
        vault = self._store()
        return RestoreSource(vault.read_manifest(snapshot_id), vault, None)

    def to_new_disk(
        self,
        snapshot_id: str,
        target: Path,
        *,
        reporter: ProgressReporter | None = None,
        cancel: threading.Event | None = None,
        workers: int = 4,
    ) -> None:
        """Fill a new disk with the snapshot's content; the snapshot stays independent."""
        self._write(snapshot_id, target, False, reporter, cancel, workers)

    def _write(
        self,
        snapshot_id: str,
        target: Path,
        compare: bool,
        reporter: ProgressReporter | None,
        cancel: threading.Event | None,
        workers: int,
        open_base: BaseOpener | None = None,
        only: set[int] | None = None,
    ) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if self._strategy_of(snapshot_id) == "reflink":
            try:
                reflink(self._image(snapshot_id), target)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                    raise UserError(f"cannot clone onto {target}: {exc.strerror}") from None
                self._copy(self._image(snapshot_id), target)
            if reporter is not None:
                reporter.add(done=reporter.bytes_total)
            return
        vault = self._store()
        manifest = vault.read_manifest(snapshot_id)
        pipeline.restore_device(
            manifest,
            vault,
            target,
            compare_existing=compare,
            reporter=reporter,
            cancel=cancel,
            workers=workers,
            fetch=self._fetcher(vault, manifest, open_base),
            only=only,
        )

    @staticmethod
    def _fetcher(
        vault: Repository, manifest: Manifest, open_base: BaseOpener | None
    ) -> Callable[[int, str], bytes] | None:
        """Local chunks first; the others from the backup named in the manifest's base."""
        if not manifest.base:
            return None
        opened: list[tuple[Manifest, Repository]] = []
        lock = threading.Lock()

        def fetch(index: int, chunk_id: str) -> bytes:
            if vault.has_chunk(chunk_id):
                return vault.get_chunk(chunk_id)
            if open_base is None:
                raise IntegrityError(
                    f"chunk {index} of snapshot {manifest.id} lives in backup "
                    f"{manifest.base.get('backup_id')}, which cannot be opened here"
                )
            with lock:
                if not opened:
                    opened.append(open_base(manifest.base))
            base_manifest, base_vault = opened[0]
            data = base_vault.get_chunk(base_manifest.chunks[index])
            if vault.chunk_id(data) != chunk_id:
                raise IntegrityError(f"chunk {index} of backup {base_manifest.id} changed")
            return data

        return fetch

    @staticmethod
    def _copy(source: Path, target: Path) -> None:
        """A reflink image onto a target on another filesystem: a plain kernel copy."""
        copy_image(source, target)

    def freed_by_delete(self, snapshot_ids: list[str], *, pool: Path) -> dict[str, int]:
        """Bytes deleting these snapshots gives back, per snapshot in the order given: a
        clone's extents no other file of the pool shares, and the stored chunks (plus its
        manifest) no other snapshot of the disk references, each counted once."""
        freed: dict[str, int] = {}
        going: list[Path] = []
        chunked = []
        for snapshot_id in snapshot_ids:
            image = self._image(snapshot_id)
            if image.exists():
                freed[snapshot_id] = devices.exclusive_bytes([image], universe=pool, ignore=going)
                going.append(image)
            else:
                chunked.append(snapshot_id)
        root = self.folder / "store"
        if chunked and root.exists():
            present = [s for s in chunked if (root / "manifests" / s).exists()]
            for snapshot_id, mine in self._store().unique_to(present).items():
                files = [root / chunk_key(c) for c in mine] + [root / "manifests" / snapshot_id]
                freed[snapshot_id] = sum(f.stat().st_blocks * 512 for f in files if f.exists())
        return {s: freed.get(s, 0) for s in snapshot_ids}

    def delete(self, snapshot_id: str) -> None:
        """Free the snapshot's bytes: its clone, or the chunks no other snapshot uses."""
        image = self._image(snapshot_id)
        if image.exists():
            image.unlink()
            return
        if not (self.folder / "store").exists():
            return
        vault = self._store()
        vault.store.delete(f"manifests/{snapshot_id}")
        vault.store.flush()  # gone for good before GC frees its chunks
        collect_garbage(vault, grace_seconds=0)
