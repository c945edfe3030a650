"""The FUSE server of `backup mount`: a backup as a read-only directory holding `disk.img`
(and an empty `files/` where `core.ops.mounts` loop-mounts the filesystem it holds).

Run as its own process, detached from the command that starts it:
`python -m core.engine.fuse_image`, reading one JSON request on stdin (store spec, backup
id, mountpoint, cache size, whether to offer `files/`, the passphrase of an encrypted vault:
never on the command line) and writing one JSON line on stdout: `{"ready": true, ...}` once
the kernel has the mount, or `{"error": "..."}` before it exits. Then it serves until it is
unmounted (or gets SIGTERM/SIGINT: libfuse unmounts and returns), logging damaged chunks on
stderr, which its starter points at a log file.

Bytes come from `BackupView`: fetched and verified only when read, zeros for holes; a chunk
that fails its check is EIO, never bytes. Everything refuses to write (EROFS), and the
kernel mount is `ro` as well. No `allow_other`: only the user who mounted reads the raw image.
"""

from __future__ import annotations

import ctypes.util
import errno
import json
import os
import stat
import sys
import threading
from collections.abc import Callable
from typing import Any

from core.base.errors import BlockvaultError, IntegrityError, StoreError
from core.base.text import printable
from core.engine.backup_view import HEAD_BYTES, SHOWN_FILESYSTEMS, BackupView, filesystem_in
from core.repo.repository import Repository
from core.stores.factory import open_store

IMAGE = "disk.img"
FILES = "files"
REQUEST_MAX_BYTES = 64 << 10
MODULE = "core.engine.fuse_image"  # what its starter runs (and recognises in /proc/PID/cmdline)


class ImageOperations:
    """The mfusepy operations of the mount: `/`, `/disk.img`, and `/files/` when offered."""

    use_ns = True  # times in nanoseconds (mfusepy's float seconds are deprecated)

    def __init__(
        self, view: BackupView, *, files: bool, mtime: float, on_ready: Callable[[], None]
    ) -> None:
        self.view = view
        self.files = files
        self.mtime = mtime
        self.on_ready = on_ready
        self._told: set[str] = set()
        self._told_lock = threading.Lock()

    def init(self, path: str) -> None:
        """The kernel has the mount: the starter may go on."""
        self.on_ready()

    def _names(self) -> list[str]:
        return [IMAGE, FILES] if self.files else [IMAGE]

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        stamp = int(self.mtime * 1e9)
        times = {"st_atime": stamp, "st_mtime": stamp, "st_ctime": stamp}
        owner = {"st_uid": os.getuid(), "st_gid": os.getgid()}
        if path == "/" or (self.files and path == f"/{FILES}"):
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, **times, **owner}
        if path == f"/{IMAGE}":
            return {
                "st_mode": stat.S_IFREG | 0o444,
                "st_nlink": 1,
                "st_size": self.view.size,
                "st_blocks": -(-self.view.size // 512),
                **times,
                **owner,
            }
        raise OSError(errno.ENOENT, "no such file")

    def readdir(self, path: str, fh: int) -> list[str]:
        if path == "/":
            return [".", "..", *self._names()]
        if self.files and path == f"/{FILES}":
            return [".", ".."]
        raise OSError(errno.ENOTDIR, "not a directory")

    def open(self, path: str, flags: int) -> int:
        if path != f"/{IMAGE}":
            raise OSError(errno.ENOENT, "no such file")
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise OSError(errno.EROFS, "read-only")
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        try:
            return self.view.read(offset, size)
        except IntegrityError as exc:
            self._tell(str(exc))
            raise OSError(errno.EIO, "damaged chunk") from None
        except StoreError as exc:  # the vault did not answer (after its retries)
            self._tell(f"reading the vault failed: {exc}")
            raise OSError(errno.EIO, "vault unreachable") from None

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": -(-self.view.size // 4096)}

    def _tell(self, message: str) -> None:
        """One log line per distinct failure (a damaged chunk is read many times)."""
        with self._told_lock:
            if message in self._told or len(self._told) > 1000:
                return
            self._told.add(message)
        sys.stderr.write(f"blockvault mount: {printable(message)}\n")
        sys.stderr.flush()


def _refuse(path: str, *args: Any) -> int:
    raise OSError(errno.EROFS, "read-only")


for _name in (
    "write",
    "truncate",
    "create",
    "mkdir",
    "rmdir",
    "unlink",
    "rename",
    "chmod",
    "chown",
    "symlink",
    "link",
    "mknod",
    "utimens",
    "setxattr",
    "removexattr",
):
    setattr(ImageOperations, _name, _refuse)


def _load_fuse() -> Any:
    """mfusepy bound to libfuse3 (it would take a libfuse2 found first); a clear error when
    FUSE is not installed."""
    found = ctypes.util.find_library("fuse3")
    if found and "FUSE_LIBRARY_PATH" not in os.environ:
        os.environ["FUSE_LIBRARY_PATH"] = found
    try:
        import mfusepy  # loads libfuse through ctypes: only in the server process
    except (ImportError, OSError) as exc:
        raise BlockvaultError(
            f"FUSE is not available here ({printable(exc)[:120]}): install the Debian package "
            "fuse3 and blockvault's `mount` extra (pip install 'blockvault[mount]')"
        ) from None
    return mfusepy


def serve(
    view: BackupView,
    mountpoint: str,
    *,
    files: bool,
    fsname: str,
    mtime: float,
    on_ready: Callable[[], None],
) -> None:
    """Mount `view` at `mountpoint` and serve it until unmounted (blocks)."""
    mfusepy = _load_fuse()
    operations = ImageOperations(view, files=files, mtime=mtime, on_ready=on_ready)
    mfusepy.FUSE(
        operations,
        mountpoint,
        foreground=True,
        ro=True,
        fsname=fsname.replace(",", "_"),
        subtype="blockvault",
    )


def _say(message: dict[str, Any]) -> None:
    """One JSON line to the starter; once ready, stdout goes to /dev/null (the starter has
    stopped reading and may be gone)."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()
    if "ready" in message:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)


def main() -> int:
    """The server process (see the module doc)."""
    try:
        request = json.loads(sys.stdin.read(REQUEST_MAX_BYTES))
        sys.stdin.close()
        store = open_store(request["store"])
        repo = Repository.open(store, passphrase=request.get("passphrase"))
        manifest = repo.read_manifest(str(request["backup_id"]))
        view = BackupView(manifest, repo, cache_bytes=int(request["cache_bytes"]))
        found = filesystem_in(view.read(0, HEAD_BYTES))
        fsname = f"blockvault:{manifest.id}"
        ready = {"ready": True, "pid": os.getpid(), "filesystem": found}
        serve(
            view,
            str(request["mountpoint"]),
            files=found in SHOWN_FILESYSTEMS,
            fsname=fsname,
            mtime=manifest.created_at.timestamp(),
            on_ready=lambda: _say(ready),
        )
    except BlockvaultError as exc:
        _say({"error": printable(exc)})
        return 1
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        _say({"error": f"the mount server failed: {printable(exc)[:300]}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
