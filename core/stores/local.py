"""A vault in a local directory: one file per key, written atomically and durably.

A put writes a temp file in the target directory, fsyncs it, then renames it into place
(or hard-links it for create_only, which fails instead of overwriting) and fsyncs the
directory, so a crash leaves either the old object, the new one, or a stray temp file that
`list` ignores — never a torn object.

Confined (RELIABILITY I12): a vault is a directory other people may write. Every path below
the root is walked one component at a time with `dir_fd` and O_NOFOLLOW, so a symlink
planted anywhere inside (`trash -> /`, `chunks/ab -> /etc`) is refused, never followed; only
regular files are read or deleted, reads never block on a FIFO and are bounded; there is no
recursive delete. Folders are made 0700 and objects 0600: a vault is readable by its owner only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from core.base.errors import ObjectMissing, StoreError
from core.base.libc import libc
from core.stores.base import ObjectInfo, ObjectStore

#: temp files start with this; keys may not, so a listing never shows half-written objects
TEMP_PREFIX = ".bvtmp-"
DIR_MODE = 0o700
FILE_MODE = 0o600
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
            self._make_root()
        except OSError as exc:
            raise _store_error("creating vault directory", str(self.root), exc) from exc
        # Only guards the create_only fallback for filesystems without hard links.
        self._lock = threading.Lock()

    def _make_root(self) -> None:
        """mkdir -p of the root itself (the admin's path: symlinks there are the admin's)."""
        missing: list[Path] = []
        probe = self.root
        while not probe.is_dir():
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
        for new_dir in reversed(missing):
            try:
                new_dir.mkdir(mode=DIR_MODE)
            except FileExistsError:
                if not new_dir.is_dir():
                    raise
                continue
            if self.sync_each_put:
                _fsync_dir(new_dir.parent)

    # --- confined path walking --------------------------------------------------------

    def _parent_fd(self, key: str, *, create: bool = False) -> tuple[int, str]:
        """An fd of the folder holding `key` and the key's last segment: every folder on the
        way opened with O_NOFOLLOW beneath the root (made 0700 when `create`)."""
        segments = validate_key(key).split("/")
        fd = os.open(self.root, _ROOT_FLAGS)
        for segment in segments[:-1]:
            fd = self._step(fd, segment, key, create=create)  # consumes fd, even on error
        return fd, segments[-1]

    def _step(self, fd: int, segment: str, key: str, *, create: bool) -> int:
        """Open `segment` below `fd` as a real folder (never a symlink); closes `fd`."""
        try:
            try:
                child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(segment, DIR_MODE, dir_fd=fd)
                    if self.sync_each_put:
                        os.fsync(fd)
                except FileExistsError:
                    pass  # another writer made it
                child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _escape(key) from None
            raise
        finally:
            os.close(fd)
        return child

    def _open_file(self, key: str) -> int:
        """Open an object for reading: a regular file, no symlink, no FIFO wait."""
        parent, name = self._parent_fd(key)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _escape(key) from None
            raise
        finally:
            os.close(parent)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "a folder is not an object", key)
            raise StoreError(f"vault object {key!r} is not a regular file; refusing to read it")
        return fd

    # --- the interface ----------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        create_only: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        """Write atomically; with create_only, never replace an existing object. A directory
        has no retention: `retain_until` is ignored (locks are records in the vault)."""
        try:
            parent, name = self._parent_fd(key, create=True)
        except OSError as exc:
            raise _store_error("writing", key, exc) from exc
        tmp = f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, _WRITE_FLAGS, FILE_MODE, dir_fd=parent)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self.sync_each_put:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                if create_only:
                    created = self._link_or_replace(parent, tmp, name)
                else:
                    self._refuse_non_file(parent, name, key)
                    os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                    created = True
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=parent)
            if self.sync_each_put:
                os.fsync(parent)
            return created
        except OSError as exc:
            raise _store_error("writing", key, exc) from exc
        finally:
            os.close(parent)

    @staticmethod
    def _refuse_non_file(parent: int, name: str, key: str) -> None:
        """Replacing is only for objects: a planted symlink or folder there is an error."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode):
            raise _escape(key)

    def _link_or_replace(self, parent: int, tmp: str, name: str) -> bool:
        """Publish `tmp` as `name` unless something is there: link(2) fails rather than replace."""
        try:
            os.link(tmp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
        # No hard links here (some FUSE/SMB mounts): check-then-rename, race-free between this
        # process's threads only; a second process writing the same key could still replace it.
        with self._lock:
            try:
                os.stat(name, dir_fd=parent, follow_symlinks=False)
                return False
            except FileNotFoundError:
                os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
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

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; more than `max_bytes` is refused before it is read."""
        try:
            fd = self._open_file(key)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectMissing(f"no object {key!r} in {self.location}") from exc
        except OSError as exc:
            raise _store_error("reading", key, exc) from exc
        try:
            size = os.fstat(fd).st_size
            if max_bytes is not None and size > max_bytes:
                raise StoreError(
                    f"vault object {key!r} is {size} bytes, more than the {max_bytes} allowed"
                )
            chunks = []
            while True:
                block = os.read(fd, 1 << 20)
                if not block:
                    break
                chunks.append(block)
                if max_bytes is not None and sum(map(len, chunks)) > max_bytes:
                    raise StoreError(f"vault object {key!r} grew past {max_bytes} bytes")
            return b"".join(chunks)
        except OSError as exc:
            raise _store_error("reading", key, exc) from exc
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        try:
            parent, name = self._parent_fd(key)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise _store_error("checking", key, exc) from exc
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        finally:
            os.close(parent)
        return stat.S_ISREG(st.st_mode)

    def delete(self, key: str) -> None:
        """Unlink one regular file beneath the root; a symlink or folder there is refused.
        Empty folders stay, so a concurrent put into them never races a rmdir."""
        self._delete(key, sync=self.sync_each_put)

    def delete_lazily(self, key: str) -> None:
        """`delete` without the folder's fsync: `flush()` (one syncfs) makes a batch durable."""
        self._delete(key, sync=False)

    def _delete(self, key: str, *, sync: bool) -> None:
        try:
            parent, name = self._parent_fd(key)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise _store_error("deleting", key, exc) from exc
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return
            if stat.S_ISDIR(st.st_mode):
                return  # a "directory" key is not an object
            if not stat.S_ISREG(st.st_mode):
                raise StoreError(
                    f"vault object {key!r} is not a regular file; refusing to delete it"
                )
            try:
                os.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                return
            if sync:
                os.fsync(parent)
        except OSError as exc:
            raise _store_error("deleting", key, exc) from exc
        finally:
            os.close(parent)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walk only the subtree the prefix can be in, never through a symlink, in key order;
        temp files, vanished files and anything but regular files are skipped."""
        validate_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        base = f"{head}/" if head else ""
        try:
            fd = os.open(self.root, _ROOT_FLAGS)
            try:
                for segment in head.split("/") if head else ():
                    fd = self._step(fd, segment, head, create=False)
            except (FileNotFoundError, NotADirectoryError):
                return
            try:
                yield from self._walk(fd, base, prefix)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _store_error("listing", prefix, exc) from exc

    #: `list` walks each folder in key order: a folder's keys all start with "name/", so
    #: sorting its entries by name (plus "/" for a folder) yields every key in ascending order
    ordered_listing = True

    def _walk(self, fd: int, base: str, prefix: str) -> Iterator[ObjectInfo]:
        with os.scandir(fd) as scan:
            entries = sorted(
                scan, key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name
            )
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            key = base + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while we walked
            if stat.S_ISDIR(st.st_mode):
                # descend only if keys below could match the prefix
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    try:
                        child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    try:
                        yield from self._walk(child, key + "/", prefix)
                    finally:
                        os.close(child)
                continue
            if key.startswith(prefix) and stat.S_ISREG(st.st_mode):
                yield ObjectInfo(key=key, size=st.st_size, mtime=st.st_mtime)


def _escape(key: str) -> StoreError:
    return StoreError(
        f"vault path of {key!r} goes through a symlink or a non-folder; refusing to follow it "
        "out of the vault"
    )
