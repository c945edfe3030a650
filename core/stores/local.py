"""A vault in a local directory: one file per key, written atomically and durably.

A put writes a temp file in the target directory, fsyncs it, then renames it into place
(or hard-links it for create_only, which fails instead of overwriting) and fsyncs the
directory, so a crash leaves either the old object, the new one, or a stray temp file that
`list` ignores — never a torn object.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from core.base.errors import ObjectMissing, StoreError
from core.base.libc import libc
from core.stores.base import ObjectInfo, ObjectStore

#: temp files start with this; keys may not, so a listing never shows half-written objects
TEMP_PREFIX = ".bvtmp-"


class InvalidKey(StoreError, ValueError):
    """A key that could escape the store or name a temp file ("..", "/abs", "a//b", ...)."""


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative '/'-separated name, else raise InvalidKey.

    Every backend applies the same rule, so a vault copied between S3 and a directory keeps
    working, and a malicious vault writer cannot smuggle `../` into a local path.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("empty object key")
    if "\x00" in key:
        raise InvalidKey(f"object key contains NUL: {key!r}")
    if key.startswith("/"):
        raise InvalidKey(f"object key is absolute: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(f"object key has an empty, '.' or '..' segment: {key!r}")
        if segment.startswith(TEMP_PREFIX):
            raise InvalidKey(f"object key uses the reserved prefix {TEMP_PREFIX!r}: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A list prefix is a key, or a key followed by '/', or a partial last segment, or ''."""
    if prefix == "":
        return prefix
    head, _, _ = prefix.rpartition("/")
    if head:
        validate_key(head)
    if prefix.startswith("/") or "\x00" in prefix:
        raise InvalidKey(f"bad list prefix: {prefix!r}")
    return prefix


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _store_error(what: str, key: str, exc: OSError) -> StoreError:
    # Disk full, read-only filesystem, permission: none of these go away by retrying at once.
    transient = exc.errno in (errno.EAGAIN, errno.EINTR, errno.EBUSY)
    return StoreError(f"{what} {key!r} failed: {exc.strerror or exc}", transient=transient)


class LocalStore(ObjectStore):
    """ObjectStore over a directory tree; safe for many threads and processes at once.

    Unlike S3, a key cannot also be a "directory" of other keys ("a" and "a/b"): the second
    put fails with StoreError. blockvault's key layout never does that.
    """

    def __init__(self, root: Path | str, *, sync_each_put: bool = True) -> None:
        """`sync_each_put=False` (a disk's own snapshot store) skips the per-object fsyncs;
        the writer then calls `flush()` (one syncfs) before its commit point, and trusts only
        objects that a committed manifest names (`durable_puts` is False)."""
        self.sync_each_put = sync_each_put
        self.durable_puts = sync_each_put
        self.root = Path(root).expanduser().absolute()
        self.location = str(self.root)
        try:
            self._makedirs(self.root)
        except OSError as exc:
            raise _store_error("creating vault directory", str(self.root), exc) from exc
        # Only guards the create_only fallback for filesystems without hard links.
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def _makedirs(self, directory: Path) -> None:
        """mkdir -p that also fsyncs each new directory's parent, so the entry survives a crash."""
        missing: list[Path] = []
        probe = directory
        while not probe.is_dir():
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
        for new_dir in reversed(missing):
            try:
                new_dir.mkdir()
            except FileExistsError:
                if not new_dir.is_dir():
                    raise
                continue  # another thread made it (and fsyncs its parent)
            if self.sync_each_put:
                _fsync_dir(new_dir.parent)

    def put(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        """Write atomically; with create_only, never replace an existing object."""
        path = self._path(key)
        try:
            self._makedirs(path.parent)
            tmp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self.sync_each_put:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                created = self._link_or_replace(tmp, path) if create_only else True
                if not create_only:
                    os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            if self.sync_each_put:
                _fsync_dir(path.parent)
            return created
        except OSError as exc:
            raise _store_error("writing", key, exc) from exc

    def _link_or_replace(self, tmp: Path, path: Path) -> bool:
        """Publish `tmp` at `path` unless something is there: link(2) fails rather than replace."""
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
        # No hard links here (some FUSE/SMB mounts): check-then-rename, race-free between this
        # process's threads only; a second process writing the same key could still replace it.
        with self._lock:
            if path.exists():
                return False
            os.replace(tmp, path)
            return True

    def flush(self) -> None:
        """syncfs(2) on the store's filesystem: every earlier put and delete is durable."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if libc().syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise _store_error("syncing", str(self.root), OSError(err, os.strerror(err)))
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectMissing(f"no object {key!r} in {self.location}") from exc
        except OSError as exc:
            raise _store_error("reading", key, exc) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Unlink; empty directories stay, so a concurrent put into them never races a rmdir."""
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a "directory" key is not an object
        except OSError as exc:
            raise _store_error("deleting", key, exc) from exc
        if not self.sync_each_put:
            return
        try:
            _fsync_dir(path.parent)
        except OSError as exc:
            raise _store_error("deleting", key, exc) from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walk only the subtree the prefix can be in; temp files and vanished files are skipped."""
        validate_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if head else self.root
        base = f"{head}/" if head else ""
        try:
            yield from self._walk(start, base, prefix)
        except OSError as exc:
            raise _store_error("listing", prefix, exc) from exc

    def _walk(self, directory: Path, base: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            key = base + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    # descend only if keys below could match the prefix
                    if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                        yield from self._walk(Path(entry.path), key + "/", prefix)
                    continue
                if not key.startswith(prefix) or not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while we walked
            yield ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)
