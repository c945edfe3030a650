"""Loop-mounted scratch filesystems (XFS with reflink, ext4) for snapshot tests and benches.

Needs root, mkfs.<fs>, losetup and a free loop device. `unavailable(fs)` says why not (or
None); `loop_mount()` always unmounts and detaches its loop device, even when the body fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

MKFS = {
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"],
}


def unavailable(fs: str) -> str | None:
    """Why a loop-mounted `fs` cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to loop-mount a filesystem"
    tool = MKFS[fs][0]
    if shutil.which(tool) is None:
        package = "xfsprogs" if fs == "xfs" else "e2fsprogs"
        return f"{tool} is not installed (apt-get install {package})"
    for tool in ("losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux)"
    probe = subprocess.run(["losetup", "-f"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"no loop device available: losetup -f: {probe.stderr.strip() or probe.returncode}"
    return None


def _loop_devices_of(image: Path) -> list[str]:
    found = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True)
    return [line.split(":", 1)[0] for line in found.stdout.splitlines() if ":" in line]


def _unmount(mountpoint: Path) -> None:
    for attempt in range(10):
        done = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True)
        if done.returncode == 0 or not os.path.ismount(mountpoint):
            return
        time.sleep(0.2 * (attempt + 1))  # a child may still be closing its files
    subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


class MountError(RuntimeError):
    """mkfs or mount failed (the message carries the tool's stderr)."""


@contextlib.contextmanager
def loop_mount(
    workdir: Path, fs: str, size: int = 1 << 30, *, preallocate: bool = False
) -> Iterator[Path]:
    """A fresh `fs` of `size` bytes mounted under `workdir`.

    The backing file is sparse unless `preallocate` (benches: otherwise every first write
    inside the loop filesystem also pays for allocating blocks in the host filesystem).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / f"{fs}.backing"
    mountpoint = workdir / f"{fs}-mnt"
    mountpoint.mkdir(exist_ok=True)
    with open(image, "wb") as handle:
        handle.truncate(size)
        if preallocate:
            os.posix_fallocate(handle.fileno(), 0, size)
    try:
        made = subprocess.run([*MKFS[fs], str(image)], capture_output=True, text=True)
        if made.returncode != 0:
            raise MountError(f"{MKFS[fs][0]} failed: {made.stderr.strip()}")
        mounted = subprocess.run(
            ["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True, text=True
        )
        if mounted.returncode != 0:
            raise MountError(f"mount -o loop failed: {mounted.stderr.strip()}")
        try:
            yield mountpoint
        finally:
            _unmount(mountpoint)
    finally:
        for device in _loop_devices_of(image):  # mount's autoclear normally did this already
            subprocess.run(["losetup", "-d", device], capture_output=True)
        with contextlib.suppress(OSError):
            image.unlink()
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def free_bytes(path: Path) -> int:
    """Free space of the filesystem holding `path`, after flushing pending writes."""
    os.sync()
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def shares_extents(path: Path) -> bool:
    """True when `filefrag -v` reports at least one extent of `path` as shared (reflinked)."""
    out = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True, check=True)
    return "shared" in out.stdout
