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
from tests.support.ledger import Ledger
from tests.test_backup_reliability import refused, said

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
def test_backup_into_a_full_vault_fails_clearly_and_lists_nothing(
    cli: CLI, small_fs: Path, fault_ledger: Ledger
) -> None:
    cli.ok("vault", "add", "tiny", "--path", str(small_fs / "vault"))
    big = random_disk(cli, "big", 16 * MiB)
    source = Path(big["path"]).read_bytes()
    failed = cli("backup", "create", "big", "--vault", "tiny")
    listed = cli.ok("backup", "list", "--all")
    big_status = cli.ok("disk", "show", "big")["status"]
    job_status = cli.ok("job", "list")[0]["status"]
    manifests = list((small_fs / "vault" / "manifests").glob("*"))
    source_kept = Path(big["path"]).read_bytes() == source
    # the orphan chunks it left are garbage: gc frees them, then a disk that fits backs up
    cli.ok("disk", "delete", "big", "--yes")
    result = cli("vault", "gc", "tiny", "--json")
    small = random_disk(cli, "small", 2 * MiB)
    done = cli("backup", "create", "small", "--vault", "tiny", "--json")
    backup_id = cli.ok("backup", "list")[0]["id"] if done.code == 0 else None
    verified = backup_id is not None and cli("backup", "verify", backup_id).code == 0
    fault_ledger.record(
        "disk-full",
        detected=said(failed, "No space left on device") and job_status == "failed",
        # the source untouched, and the vault still takes (and reads back) a backup that fits
        data_intact=source_kept and big_status == "available" and verified,
        partial_visible=bool(listed or manifests),
        note="backup of 16 MiB into a vault on a 6 MiB tmpfs (ENOSPC)",
    )
    err = refused(failed)
    assert "No space left on device" in err
    assert listed == []
    assert big_status == "available"
    assert job_status == "failed"
    assert not manifests
    assert result.code == 0, result.err
    assert done.code == 0, done.err
    assert verified
    assert Path(small["path"]).stat().st_size == 2 * MiB


def test_restore_onto_a_full_filesystem_leaves_the_disk_marked_incomplete(
    cli: CLI, small_fs: Path, fault_ledger: Ledger
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
    copy = cli.ok("disk", "show", "copy")
    verified = cli("backup", "verify", backup_id).code == 0
    fault_ledger.record(
        "disk-full",
        detected=said(failed, "No space left on device"),
        data_intact=verified,  # the backup itself is untouched and reads back whole
        # a half-written disk that passed for a whole one
        partial_visible=not copy["restore_incomplete"] or copy["status"] == "available",
        note="restore of 16 MiB onto a 6 MiB tmpfs (ENOSPC)",
    )
    assert failed.code != 0 and "Traceback" not in failed.err
    assert "No space left on device" in failed.err
    assert verified
    assert copy["status"] == "error-restoring" and copy["restore_incomplete"]
    assert Path(disk["path"]).is_relative_to(cli.home)
