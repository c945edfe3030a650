"""Snapshots on real filesystems: reflink clones on XFS (reflink=1), the chunk store on ext4.

Each filesystem is a 1 GiB sparse file, formatted and loop-mounted once per module; every test
keeps its BLOCKVAULT home on the mount. Needs root, xfsprogs/e2fsprogs and a loop device;
skipped with the reason otherwise. CI runs as root, so these run there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import CLI
from tests.support.loopfs import MountError, free_bytes, loop_mount, shares_extents, unavailable

MiB = 1 << 20
pytestmark = pytest.mark.root


def _mounted(factory: pytest.TempPathFactory, fs: str) -> Iterator[Path]:
    reason = unavailable(fs)
    if reason:
        pytest.skip(f"{fs} loop mount: {reason}")
    with contextlib.ExitStack() as stack:
        try:
            mountpoint = stack.enter_context(loop_mount(factory.mktemp(fs), fs, 1 << 30))
        except MountError as exc:
            pytest.skip(f"{fs} loop mount: {exc}")
        yield mountpoint


@pytest.fixture(scope="module")
def xfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from _mounted(tmp_path_factory, "xfs")


@pytest.fixture(scope="module")
def ext4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from _mounted(tmp_path_factory, "ext4")


def _scratch(mount: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    folder = mount / request.node.name
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def xfs_dir(xfs: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A per-test folder on the XFS mount, removed afterwards."""
    yield from _scratch(xfs, request)


@pytest.fixture
def ext4_dir(ext4: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    yield from _scratch(ext4, request)


@pytest.fixture
def xcli(xfs_dir: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    """The CLI with its home (catalog, pool, vault) on the XFS mount."""
    return CLI(xfs_dir / "home", capsys)


@pytest.fixture
def ecli(ext4_dir: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    """The CLI with its home on the ext4 mount."""
    return CLI(ext4_dir / "home", capsys)


# --- helpers ---------------------------------------------------------------------------------


def job(cli: CLI, *argv: str) -> dict:
    result = cli(*argv, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out.strip().splitlines()[-1])


def digest(path: str | Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 * MiB):
            sha.update(block)
    return sha.hexdigest()


def write(path: str | Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def fill_random(path: str | Path, size: int) -> None:
    with open(path, "r+b") as handle:
        for _ in range(0, size, 8 * MiB):
            handle.write(os.urandom(min(8 * MiB, size - handle.tell())))


def snapshot_image(disk: dict, snapshot: dict) -> Path:
    return Path(disk["path"]).parent / "snapshots" / f"{snapshot['id']}.img"


def wait_for_free(path: Path, at_least: int, timeout: float = 10.0) -> int:
    """Free bytes once they reach `at_least` (XFS frees unlinked extents in the background)."""
    deadline = time.monotonic() + timeout
    while (free := free_bytes(path)) < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return free


def need_filefrag() -> None:
    if shutil.which("filefrag") is None:
        pytest.skip("filefrag is not installed (e2fsprogs)")


# --- XFS: reflink ----------------------------------------------------------------------------


def test_xfs_pool_disks_get_reflink(xcli: CLI) -> None:
    need_filefrag()
    disk = xcli.ok("disk", "create", "d1", "--size", "4M")
    assert disk["snapshot_strategy"] == "reflink"
    assert xcli.ok("disk", "show", "d1")["snapshot_strategy"] == "reflink"
    fill_random(disk["path"], 4 * MiB)
    snap = job(xcli, "snapshot", "create", "d1")
    assert snap["strategy"] == "reflink" and snap["status"] == "available"
    image = snapshot_image(disk, snap)
    assert image.is_file() and shares_extents(image)
    assert not (image.parent / "store").exists()  # no chunk store was needed


@pytest.mark.slow
def test_reflink_rollback_any_number_of_times_to_disk_and_undo(xcli: CLI) -> None:
    need_filefrag()
    disk = xcli.ok("disk", "create", "d1", "--size", "64M")
    fill_random(disk["path"], 64 * MiB)
    before = digest(disk["path"])
    job(xcli, "snapshot", "create", "d1", "--name", "before")
    for round_ in range(3):
        write(disk["path"], round_ * 20 * MiB + 12345, os.urandom(MiB))
        assert digest(disk["path"]) != before
        rolled = job(xcli, "snapshot", "rollback", "before", "--yes")
        assert rolled["rolled_back"] == "d1"
        assert digest(disk["path"]) == before
        assert shares_extents(disk["path"])  # the rollback cloned, it did not copy
    # undo after a rollback puts back what the rollback overwrote
    write(disk["path"], 5 * MiB, b"after the snapshot" * 1000)
    changed = digest(disk["path"])
    job(xcli, "snapshot", "rollback", "before", "--yes")
    assert digest(disk["path"]) == before
    job(xcli, "disk", "undo", "d1", "--yes")
    assert digest(disk["path"]) == changed
    # every snapshot, safety ones included, is a clone
    snaps = xcli.ok("snapshot", "list", "--disk", "d1")
    assert {s["strategy"] for s in snaps} == {"reflink"}
    assert {s["kind"] for s in snaps} == {"user", "safety"}
    # a new disk from the snapshot: identical, a clone, and independent of the snapshot
    job(xcli, "snapshot", "to-disk", "before", "d1-copy")
    copy = xcli.ok("disk", "show", "d1-copy")
    assert digest(copy["path"]) == before and shares_extents(copy["path"])
    assert copy["snapshot_strategy"] == "reflink"
    xcli.ok("snapshot", "delete", "before", "--yes")
    assert digest(copy["path"]) == before


@pytest.mark.slow
def test_reflink_snapshot_of_a_full_disk_costs_no_data_blocks(xcli: CLI, xfs: Path) -> None:
    """Create and rollback share extents instead of copying: constant time whatever the size."""
    need_filefrag()
    timings = {}
    for name, size in (("small", 4 * MiB), ("big", 256 * MiB)):
        disk = xcli.ok("disk", "create", name, "--size", str(size))
        fill_random(disk["path"], size)
        free_before = free_bytes(xfs)
        started = time.perf_counter()
        snap = job(xcli, "snapshot", "create", name)
        timings[name] = time.perf_counter() - started
        # a copy of the big disk would take 256 MiB; a clone only metadata
        assert free_before - free_bytes(xfs) < 4 * MiB
        assert shares_extents(snapshot_image(disk, snap))
    big = xcli.ok("disk", "show", "big")
    write(big["path"], 100 * MiB, os.urandom(int(2.56 * MiB)))  # a 1% change
    free_before = free_bytes(xfs)
    job(xcli, "snapshot", "rollback", snap["id"], "--yes")  # with its safety snapshot
    # the safety clone keeps the changed extents, the rollback re-shares the old ones
    assert free_before - free_bytes(xfs) < 8 * MiB
    assert shares_extents(big["path"])
    print(f"reflink snapshot create (in-process CLI): {timings}")


@pytest.mark.slow
def test_deleting_a_disk_frees_its_reflink_snapshots(xcli: CLI, xfs: Path) -> None:
    disk = xcli.ok("disk", "create", "d1", "--size", "128M")
    fill_random(disk["path"], 128 * MiB)
    job(xcli, "snapshot", "create", "d1", "--name", "s1")
    fill_random(disk["path"], 128 * MiB)  # now s1 alone holds the old 128 MiB
    job(xcli, "snapshot", "create", "d1", "--name", "s2")
    folder = Path(disk["path"]).parent
    assert (folder / "snapshots").is_dir()
    free_before = free_bytes(xfs)
    plan = xcli.ok("disk", "delete", "d1", "--yes")
    assert sorted(i["name"] for i in plan["items"] if i["kind"] == "snapshot") == ["s1", "s2"]
    assert not folder.exists()
    assert xcli.ok("snapshot", "list") == []
    # the disk's 128 MiB and the 128 MiB only s1 held come back
    expected = free_before + int(0.9 * 256 * MiB)
    assert wait_for_free(xfs, expected) >= expected


@pytest.mark.slow
def test_registered_disk_gets_reflink_only_on_the_pool_filesystem(
    xcli: CLI, xfs_dir: Path, ext4_dir: Path
) -> None:
    need_filefrag()
    images = {"on-xfs": xfs_dir / "on-xfs.img", "on-ext4": ext4_dir / "on-ext4.img"}
    expected = {"on-xfs": "reflink", "on-ext4": "chunks"}
    for name, image in images.items():
        image.write_bytes(os.urandom(16 * MiB))
        disk = xcli.ok("disk", "register", name, "--path", str(image))
        assert disk["snapshot_strategy"] == expected[name], name
        before = digest(image)
        snap = job(xcli, "snapshot", "create", name)
        assert snap["strategy"] == expected[name]
        write(image, 3 * MiB, os.urandom(MiB))
        job(xcli, "snapshot", "rollback", snap["id"], "--yes")
        assert digest(image) == before, name
    snaps = {s["disk_name"]: s for s in xcli.ok("snapshot", "list") if s["kind"] == "user"}
    pool = xcli.home / "pool" / snaps["on-xfs"]["disk_id"] / "snapshots"
    assert shares_extents(pool / f"{snaps['on-xfs']['id']}.img")
    # the other one lives as chunks in the pool (on XFS), not next to its image on ext4
    assert (xcli.home / "pool" / snaps["on-ext4"]["disk_id"] / "snapshots" / "store").is_dir()
    assert sorted(p.name for p in ext4_dir.iterdir()) == ["on-ext4.img"]


# --- ext4: chunk store -------------------------------------------------------------------------


@pytest.mark.slow
def test_ext4_pool_disks_get_chunks_and_roll_back_bit_identical(ecli: CLI) -> None:
    disk = ecli.ok("disk", "create", "d1", "--size", "32M")
    assert disk["snapshot_strategy"] == "chunks"
    fill_random(disk["path"], 24 * MiB)  # the tail stays sparse
    before = digest(disk["path"])
    snap = job(ecli, "snapshot", "create", "d1", "--name", "before")
    assert snap["strategy"] == "chunks"
    assert not snapshot_image(disk, snap).exists()
    for round_ in range(3):
        write(disk["path"], round_ * 9 * MiB + 7, os.urandom(MiB))
        write(disk["path"], 30 * MiB, b"into the hole")
        job(ecli, "snapshot", "rollback", "before", "--yes")
        assert digest(disk["path"]) == before
    write(disk["path"], MiB, b"after the snapshot" * 1000)
    changed = digest(disk["path"])
    job(ecli, "snapshot", "rollback", "before", "--yes")
    job(ecli, "disk", "undo", "d1", "--yes")
    assert digest(disk["path"]) == changed
    job(ecli, "snapshot", "to-disk", "before", "d1-copy")
    copy = ecli.ok("disk", "show", "d1-copy")
    assert digest(copy["path"]) == before
    ecli.ok("snapshot", "delete", "before", "--yes")
    assert digest(copy["path"]) == before


@pytest.mark.slow
def test_second_chunk_snapshot_after_1pct_change_stores_far_less(ecli: CLI) -> None:
    disk = ecli.ok("disk", "create", "d1", "--size", "128M")
    fill_random(disk["path"], 128 * MiB)
    first = job(ecli, "snapshot", "create", "d1", "--name", "first")
    assert first["strategy"] == "chunks"
    assert first["bytes_stored"] >= 0.9 * 128 * MiB  # random data does not compress
    original = digest(disk["path"])
    write(disk["path"], 64 * MiB + 4096, os.urandom(int(1.28 * MiB)))  # 1% of the disk
    second = job(ecli, "snapshot", "create", "d1", "--name", "second")
    assert 0 < second["bytes_stored"] <= 0.1 * first["bytes_stored"], (first, second)
    changed = digest(disk["path"])
    job(ecli, "snapshot", "rollback", "first", "--yes")
    assert digest(disk["path"]) == original
    job(ecli, "snapshot", "rollback", "second", "--yes")
    assert digest(disk["path"]) == changed


@pytest.mark.slow
def test_deleting_a_disk_frees_its_chunk_snapshots(ecli: CLI, ext4: Path) -> None:
    disk = ecli.ok("disk", "create", "d1", "--size", "64M")
    fill_random(disk["path"], 64 * MiB)
    job(ecli, "snapshot", "create", "d1")
    fill_random(disk["path"], 64 * MiB)
    job(ecli, "snapshot", "create", "d1")
    folder = Path(disk["path"]).parent
    stored = sum(p.stat().st_blocks * 512 for p in (folder / "snapshots").rglob("*") if p.is_file())
    assert stored >= 0.9 * 128 * MiB
    free_before = free_bytes(ext4)
    ecli.ok("disk", "delete", "d1", "--yes")
    assert not folder.exists()
    expected = free_before + int(0.9 * (64 * MiB + stored))
    assert wait_for_free(ext4, expected) >= expected
