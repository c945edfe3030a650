"""A full filesystem (real ENOSPC from a small tmpfs, as root) ends in a clear error and an
honest state, never a listed partial backup or a disk that claims to be whole (RELIABILITY A)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import CLI

MiB = 1 << 20
CONFIG = "[blockvault]\nchunk_size = 262144\ngc_grace_seconds = 0\n"


def _tmpfs_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs"
    if shutil.which("mount") is None:
        return "mount is not installed (util-linux)"
    return None


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(_tmpfs_unavailable() is not None, reason=str(_tmpfs_unavailable())),
]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs, always unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def random_disk(cli: CLI, name: str, size: int) -> dict:
    disk = cli.ok("disk", "create", name, "--size", f"{size // MiB}M")
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(size))
    return disk


@pytest.mark.slow
def test_backup_into_a_full_vault_fails_clearly_and_lists_nothing(cli: CLI, small_fs: Path) -> None:
    cli.ok("vault", "add", "tiny", "--path", str(small_fs / "vault"))
    random_disk(cli, "big", 16 * MiB)
    err = cli.fails("backup", "create", "big", "--vault", "tiny")
    assert "No space left on device" in err
    assert cli.ok("backup", "list", "--all") == []
    assert cli.ok("disk", "show", "big")["status"] == "available"
    assert cli.ok("job", "list")[0]["status"] == "failed"
    assert not list((small_fs / "vault" / "manifests").glob("*"))
    # the orphan chunks it left are garbage: gc frees them, then a disk that fits backs up
    cli.ok("disk", "delete", "big", "--yes")
    result = cli("vault", "gc", "tiny", "--json")
    assert result.code == 0, result.err
    small = random_disk(cli, "small", 2 * MiB)
    done = cli("backup", "create", "small", "--vault", "tiny", "--json")
    assert done.code == 0, done.err
    backup_id = cli.ok("backup", "list")[0]["id"]
    assert cli("backup", "verify", backup_id).code == 0
    assert Path(small["path"]).stat().st_size == 2 * MiB


def test_restore_onto_a_full_filesystem_leaves_the_disk_marked_incomplete(
    cli: CLI, small_fs: Path
) -> None:
    disk = random_disk(cli, "src", 16 * MiB)
    done = cli("backup", "create", "src", "--json")
    assert done.code == 0, done.err
    backup_id = cli.ok("backup", "list")[0]["id"]
    pool = cli.home / "pool"
    (small_fs / "pool").mkdir()
    os.rename(pool, cli.home / "pool-old")
    pool.symlink_to(small_fs / "pool")  # new pool disks land on the 6 MiB filesystem
    failed = cli("backup", "restore", backup_id, "--to-new", "copy", "--json")
    assert failed.code != 0 and "Traceback" not in failed.err
    assert "No space left on device" in failed.err
    copy = cli.ok("disk", "show", "copy")
    assert copy["status"] == "error-restoring" and copy["restore_incomplete"]
    assert Path(disk["path"]).is_relative_to(cli.home)
