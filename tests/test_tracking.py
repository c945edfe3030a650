"""Changed-block tracking without reading (core/engine/tracking.py), on a real XFS (reflink=1).

Each backup of an image file reads a reflink clone of the disk, kept after the commit; the
next incremental into that vault reads only the chunks whose extents differ from it. The
proof is a tracked incremental equal to a full-read backup of the same state, chunk for
chunk, after random writes, zero writes, hole punches and truncations. Needs root,
xfsprogs and a loop device; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import os
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.api import Blockvault
from core.base.config import Settings
from core.base.errors import UserError
from core.engine import devices, tracking
from core.engine.tracking import ChangeTracker, differing_chunks
from core.ops.facts import change_tracker
from core.ops.vaults import get_vault, open_repository
from core.repo.manifest import Manifest
from tests.support.loopfs import MountError, loop_mount, unavailable

pytestmark = pytest.mark.root

KiB, MiB = 1 << 10, 1 << 20
CHUNK = 256 * KiB
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\nworkers = 2\n"
FULL = "full"  # the second vault: backups read the whole disk (tracking off)


# --- fixtures ----------------------------------------------------------------------------------


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


@pytest.fixture
def xfs_dir(xfs: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    folder = xfs / request.node.name
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def bv(xfs_dir: Path) -> Iterator[Blockvault]:
    """The façade with its home on XFS; a second local vault `full` for full-read backups."""
    home = xfs_dir / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG)
    service = Blockvault.open(home=home)
    service.add_vault(FULL, path=str(xfs_dir / "full-vault"))
    yield service
    service.close()


# --- helpers -----------------------------------------------------------------------------------


def fill(path: Path | str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        devices.pwrite_all(fd, data, offset)
    finally:
        os.close(fd)


def punch(path: Path | str, offset: int, length: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        devices.punch_hole(fd, offset, length)
    finally:
        os.close(fd)


def allocate(path: Path | str, offset: int, length: int) -> None:
    """fallocate mode 0: unwritten extents (they read as zeros)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.posix_fallocate(fd, offset, length)
    finally:
        os.close(fd)


def truncate_tail(path: Path | str, at: int) -> None:
    """Cut the file at `at` and grow it back: the tail is a hole."""
    size = os.stat(path).st_size
    os.truncate(path, at)
    os.truncate(path, size)


def digest(path: Path | str, size: int | None = None) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        left = size if size is not None else os.fstat(handle.fileno()).st_size
        while left and (block := handle.read(min(8 * MiB, left))):
            sha.update(block)
            left -= len(block)
    return sha.hexdigest()


def chunks_of(offset: int, length: int, size: int) -> set[int]:
    end = min(offset + length, size)
    return set(range(offset // CHUNK, (end - 1) // CHUNK + 1)) if end > offset else set()


def run(handle: Any) -> dict[str, Any]:
    return handle.start().wait(120)


@contextlib.contextmanager
def tracking_off(bv: Blockvault) -> Iterator[None]:
    before = bv.ctx.settings
    bv.ctx.settings = dataclasses.replace(before, change_tracking=False)
    try:
        yield
    finally:
        bv.ctx.settings = before


class Reads:
    """Bytes the pipeline reads from disks (pread_exact), while `counting()`."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def counting(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
        real = devices.pread_exact
        self.bytes = 0

        def counted(fd: int, length: int, offset: int) -> bytes:
            with self.lock:
                self.bytes += length
            return real(fd, length, offset)

        with monkeypatch.context() as patch:
            patch.setattr(devices, "pread_exact", counted)
            yield self


def backup(bv: Blockvault, disk: str, *, vault: str | None = None) -> dict[str, Any]:
    return run(bv.start_backup(disk, vault=vault))


def full_backup(bv: Blockvault, disk: str) -> dict[str, Any]:
    """A backup of the same state into the second vault, reading the whole disk."""
    with tracking_off(bv):
        return run(bv.start_backup(disk, vault=FULL))


def manifest(bv: Blockvault, result: dict[str, Any], vault: str | None = None) -> Manifest:
    return open_repository(bv.ctx, get_vault(bv.ctx, vault)).read_manifest(result["id"])


def tracker_of(bv: Blockvault, disk: dict[str, Any], vault: str | None = None) -> ChangeTracker:
    return change_tracker(bv.ctx, disk["id"], get_vault(bv.ctx, vault).id)


def restored_equals(bv: Blockvault, backup_id: str, disk: dict[str, Any], name: str) -> bool:
    """Restore the backup into a new disk, compare with the disk's bytes, drop the copy."""
    copy = run(bv.start_restore(backup_id, to_original=False, new_name=name))
    same = digest(copy["path"], disk["size"]) == digest(disk["path"])
    bv.delete_disk(name)
    return same


# --- the extent comparison ---------------------------------------------------------------------


def test_differing_chunks_compares_physical_addresses_not_extent_boundaries() -> None:
    size, chunk = 16 * CHUNK, CHUNK
    same = [(0, 4 * chunk, 100), (4 * chunk, 8 * chunk, 900)]
    split = [(0, chunk, 100), (chunk, 4 * chunk, 100), (4 * chunk, 8 * chunk, 900)]
    assert differing_chunks(same, split, size=size, chunk_size=chunk) == set()
    assert differing_chunks([], [], size=size, chunk_size=chunk) == set()
    # one block moved in chunk 2, a hole where there was data in chunks 5-6 (half of 6)
    moved = [
        (0, 2 * chunk, 100),
        (2 * chunk, 2 * chunk + 4096, 7),
        (2 * chunk + 4096, 4 * chunk, 100),
    ]
    moved += [(4 * chunk, 5 * chunk, 900), (6 * chunk + chunk // 2, 8 * chunk, 900)]
    assert differing_chunks(moved, same, size=size, chunk_size=chunk) == {2, 5, 6}
    # data where the base has a hole, up to the end of a short last chunk
    assert differing_chunks(
        [*same, (15 * chunk, size - 1, 5)], same, size=size - 1, chunk_size=chunk
    ) == {15}


def test_doubtful_extents_answer_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "a.img"
    image.write_bytes(b"\x01" * 8192)
    for flag in (
        devices.FIEMAP_EXTENT_UNKNOWN | devices.FIEMAP_EXTENT_DELALLOC,
        devices.FIEMAP_EXTENT_ENCODED,
        devices.FIEMAP_EXTENT_DATA_INLINE,
        devices.FIEMAP_EXTENT_NOT_ALIGNED,
        devices.FIEMAP_EXTENT_DATA_ENCRYPTED,
    ):
        monkeypatch.setattr(devices, "file_extents", lambda path, end, f=flag: [(0, 4096, 8192, f)])
        assert tracking._mapping(image, 8192) is None, hex(flag)
    monkeypatch.setattr(
        devices,
        "file_extents",
        lambda path, end: [(0, 4096, 8192, devices.FIEMAP_EXTENT_UNWRITTEN)],
    )
    assert tracking._mapping(image, 8192) == []  # reads as zeros: like a hole


def test_change_tracking_is_a_boolean_setting(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert Settings.load(config).change_tracking is True  # the default
    config.write_text("[blockvault]\nchange_tracking = false\n")
    assert Settings.load(config).change_tracking is False
    for wrong in ('"no"', "0", "1"):
        config.write_text(f"[blockvault]\nchange_tracking = {wrong}\n")
        with pytest.raises(UserError, match=r"change_tracking .* is not a valid bool"):
            Settings.load(config)
    config.write_text("[blockvault]\nworkers = true\n")
    with pytest.raises(UserError, match="not a valid int"):
        Settings.load(config)


# --- on XFS: clones and extents ----------------------------------------------------------------


def test_changed_chunks_are_exactly_the_chunks_written(xfs_dir: Path) -> None:
    size = 64 * CHUNK
    disk = xfs_dir / "disk.img"
    with open(disk, "wb") as handle:
        handle.write(os.urandom(48 * CHUNK))  # the last 16 chunks stay a hole
        handle.truncate(size)
    tracker = ChangeTracker(xfs_dir / "tracking" / "vault")
    clone = tracker.clone(disk, "b1")
    assert clone == tracker.image("b1") and clone.stat().st_mode & 0o777 == 0o400
    assert digest(clone) == digest(disk)
    assert tracker.changed_chunks(disk, "b1", size=size, chunk_size=CHUNK) == set()

    fill(disk, 3 * CHUNK + 100, b"x" * 10)  # a few bytes
    fill(disk, 10 * CHUNK - 1, os.urandom(2 * CHUNK + 2))  # 9..12 across boundaries
    fill(disk, 20 * CHUNK, bytes(4096))  # zeros are a write too
    punch(disk, 30 * CHUNK + 8192, 8192)
    fill(disk, 52 * CHUNK, b"into the hole")
    allocate(disk, 56 * CHUNK, CHUNK)  # unwritten: still reads as zeros, like the hole
    written = {3, 9, 10, 11, 12, 20, 30, 52}
    changed = tracker.changed_chunks(disk, "b1", size=size, chunk_size=CHUNK)
    assert changed == written

    truncate_tail(disk, 40 * CHUNK + 4096)
    changed = tracker.changed_chunks(disk, "b1", size=size, chunk_size=CHUNK)
    # chunk 52 is a hole again, as in the clone: unchanged
    assert changed == written - {52} | set(range(40, 48))

    # the next backup's clone has the same extents as the disk: the same answer, unread
    clone2 = tracker.clone(disk, "b2")
    assert tracker.changed_chunks(clone2, "b1", size=size, chunk_size=CHUNK) == changed
    tracker.keep("b2")
    assert sorted(p.name for p in tracker.folder.iterdir()) == ["b2.img"]
    assert tracker.changed_chunks(disk, "b2", size=size, chunk_size=CHUNK) == set()


def test_leftovers_of_a_crash_go_with_the_next_kept_clone(xfs_dir: Path) -> None:
    disk = xfs_dir / "disk.img"
    disk.write_bytes(os.urandom(4 * CHUNK))
    tracker = ChangeTracker(xfs_dir / "tracking" / "vault")
    assert tracker.clone(disk, "b1") is not None
    tracker.keep("b1")
    (tracker.folder / "b2.partial").write_bytes(b"a clone cut short")  # crashed while cloning
    assert tracker.clone(disk, "b3") is not None  # crashed before its commit: never kept
    (tracker.folder / "b4.partial").write_bytes(b"stale")
    assert tracker.clone(disk, "b4") is not None  # the stale partial is replaced
    assert digest(tracker.image("b4")) == digest(disk)
    assert tracker.changed_chunks(disk, "b4", size=4 * CHUNK, chunk_size=CHUNK) == set()
    tracker.keep("b4")
    assert sorted(p.name for p in tracker.folder.iterdir()) == ["b4.img"]
    tracker.keep("b9")  # no such clone: nothing is deleted
    assert tracker.has("b4")


def test_any_doubt_answers_none(xfs_dir: Path, tmp_path: Path) -> None:
    size = 8 * CHUNK
    disk = xfs_dir / "disk.img"
    disk.write_bytes(os.urandom(size))
    tracker = ChangeTracker(xfs_dir / "tracking" / "vault")
    assert tracker.clone(disk, "b1") is not None
    assert tracker.changed_chunks(disk, "b0", size=size, chunk_size=CHUNK) is None  # no clone
    assert tracker.changed_chunks(disk, "b1", size=size - CHUNK, chunk_size=CHUNK) is None
    os.truncate(disk, size + CHUNK)  # the disk grew
    assert tracker.changed_chunks(disk, "b1", size=size + CHUNK, chunk_size=CHUNK) is None
    assert tracker.changed_chunks(disk, "b1", size=size, chunk_size=CHUNK) is None
    tracker.discard("b1")
    assert not tracker.has("b1") and list(tracker.folder.iterdir()) == []
    # no reflink: a character device, and a filesystem that cannot clone (/tmp here)
    assert tracker.clone(Path("/dev/null"), "b2") is None
    elsewhere = tmp_path / "disk.img"
    elsewhere.write_bytes(os.urandom(size))
    other = ChangeTracker(tmp_path / "tracking" / "vault")
    if other.clone(elsewhere, "b3") is not None:
        pytest.skip(f"{tmp_path} can clone: no filesystem without reflink to try here")
    assert other.changed_chunks(elsewhere, "b3", size=size, chunk_size=CHUNK) is None
    assert not list((tmp_path / "tracking" / "vault").iterdir())  # nothing half-made left
    # a clone on one filesystem is no base for a disk on another
    os.truncate(disk, size)
    assert tracker.clone(disk, "b4") is not None
    elsewhere.write_bytes(disk.read_bytes())
    assert tracker.changed_chunks(elsewhere, "b4", size=size, chunk_size=CHUNK) is None


# --- backups and restores ----------------------------------------------------------------------


def test_a_tracked_incremental_reads_only_what_changed(
    bv: Blockvault, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 24 * CHUNK
    disk = bv.create_disk("d1", size)
    fill(disk["path"], 0, os.urandom(size))
    first = backup(bv, "d1")
    tracker = tracker_of(bv, disk)
    assert tracker.has(first["id"])
    fill(disk["path"], 7 * CHUNK + 5, b"changed")
    fill(disk["path"], 20 * CHUNK, os.urandom(CHUNK))
    reads = Reads()
    with reads.counting(monkeypatch):
        second = backup(bv, "d1")
    assert reads.bytes == 2 * CHUNK
    assert tracker.has(second["id"]) and not tracker.has(first["id"])  # one kept clone
    assert manifest(bv, second).chunks == manifest(bv, full_backup(bv, "d1"), FULL).chunks
    assert second["warnings"] == []


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_tracked_incrementals_equal_full_reads_chunk_for_chunk(
    bv: Blockvault, monkeypatch: pytest.MonkeyPatch, data: st.DataObject
) -> None:
    """Random writes (random and zero data), hole punches and truncations between backups:
    each tracked incremental (vault `local`) equals a full read of the same state (vault
    `full`), chunk for chunk, reads no more than the chunks touched, and restores to the
    disk's bytes."""
    size = 16 * CHUNK + 3 * 4096  # a short last chunk
    name = f"h{next(COUNTER)}"
    disk = bv.create_disk(name, size)
    fill(disk["path"], 0, random.Random(name).randbytes(12 * CHUNK))
    backup(bv, name)
    full_backup(bv, name)
    offset = st.integers(0, size - 1)
    op = st.one_of(
        st.tuples(st.just("write"), offset, st.integers(1, 3 * CHUNK), st.integers(0, 2**32)),
        st.tuples(st.just("zeros"), offset, st.integers(1, 2 * CHUNK), st.just(0)),
        st.tuples(st.just("punch"), offset, st.integers(1, 2 * CHUNK), st.just(0)),
        st.tuples(st.just("truncate"), offset, st.just(0), st.just(0)),
    )
    reads = Reads()
    for round_ in range(data.draw(st.integers(1, 3), label="rounds")):
        touched: set[int] = set()
        for kind, at, length, seed in data.draw(st.lists(op, max_size=5), label="ops"):
            length = min(length, size - at)
            if kind == "write":
                fill(disk["path"], at, random.Random(seed).randbytes(length))
            elif kind == "zeros":
                fill(disk["path"], at, bytes(length))
            elif kind == "punch":
                punch(disk["path"], at, length)
            else:
                truncate_tail(disk["path"], at)
                length = size - at
            touched |= chunks_of(at, length, size)
        with reads.counting(monkeypatch):
            tracked = backup(bv, name)
        full = full_backup(bv, name)
        mine, theirs = manifest(bv, tracked), manifest(bv, full, FULL)
        assert mine.chunks == theirs.chunks, (round_, touched)
        assert mine.digest == theirs.digest
        assert reads.bytes <= len(touched) * CHUNK, (reads.bytes, sorted(touched))
        assert restored_equals(bv, tracked["id"], disk, f"{name}-r{round_}")
    bv.delete_disk(name)


COUNTER = itertools.count()


def test_the_backup_reads_the_clone_not_the_disk_written_meanwhile(
    bv: Blockvault, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 16 * CHUNK
    disk = bv.create_disk("busy", size)
    fill(disk["path"], 0, os.urandom(size))
    backup(bv, "busy")
    fill(disk["path"], 5 * CHUNK, os.urandom(CHUNK))
    as_cloned = digest(disk["path"])
    real_clone = ChangeTracker.clone

    def clone_then_write(self: ChangeTracker, path: Path, backup_id: str) -> Path | None:
        made = real_clone(self, path, backup_id)
        fill(path, 2 * CHUNK, b"written while the backup runs" * 1000)  # after the clone
        fill(path, 9 * CHUNK, os.urandom(CHUNK))
        return made

    monkeypatch.setattr(ChangeTracker, "clone", clone_then_write)
    during = backup(bv, "busy")
    monkeypatch.undo()
    assert during["warnings"] == []  # the clone did not change while it was read
    assert digest(disk["path"]) != as_cloned
    copy = run(bv.start_restore(during["id"], to_original=False, new_name="busy-copy"))
    assert digest(copy["path"]) == as_cloned
    # the next incremental sees the writes made during the backup
    after = backup(bv, "busy")
    assert manifest(bv, after).chunks == manifest(bv, full_backup(bv, "busy"), FULL).chunks


@pytest.mark.slow
def test_without_the_clone_or_at_another_size_the_whole_disk_is_read(
    bv: Blockvault, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 32 * CHUNK
    disk = bv.create_disk("d1", size)
    fill(disk["path"], 0, os.urandom(size))
    first = backup(bv, "d1")
    tracker = tracker_of(bv, disk)
    tracker.image(first["id"]).unlink()  # the clone is gone
    fill(disk["path"], 4 * CHUNK, os.urandom(100))
    reads = Reads()
    with reads.counting(monkeypatch):
        second = backup(bv, "d1")
    assert reads.bytes == size
    assert manifest(bv, second).chunks == manifest(bv, full_backup(bv, "d1"), FULL).chunks
    assert tracker.has(second["id"])
    # the disk grows: its extents are no base for another size
    os.truncate(disk["path"], size + 4 * CHUNK)
    fill(disk["path"], size + CHUNK, b"the new tail")
    with reads.counting(monkeypatch):
        third = backup(bv, "d1")
    assert reads.bytes == size + CHUNK
    assert manifest(bv, third).chunks == manifest(bv, full_backup(bv, "d1"), FULL).chunks
    assert manifest(bv, third).size == size + 4 * CHUNK
    # tracking off: the disk itself is read, and this vault's clones go
    fill(disk["path"], 0, b"off")
    with tracking_off(bv), reads.counting(monkeypatch):
        fourth = backup(bv, "d1")
    assert reads.bytes == size + CHUNK and not tracker.folder.exists()
    assert manifest(bv, fourth).chunks == manifest(bv, full_backup(bv, "d1"), FULL).chunks


@pytest.mark.slow
def test_restore_onto_the_original_compares_only_the_chunks_that_moved(
    bv: Blockvault, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 128 * CHUNK
    disk = bv.create_disk("d1", size)
    fill(disk["path"], 0, os.urandom(size))
    good = backup(bv, "d1")
    original = digest(disk["path"])
    fill(disk["path"], 40 * CHUNK, os.urandom(CHUNK))  # about 1%
    fill(disk["path"], 90 * CHUNK + 17, b"a few bytes")
    punch(disk["path"], 100 * CHUNK, CHUNK)
    reads = Reads()
    with reads.counting(monkeypatch):
        done = run(bv.start_restore(good["id"], to_original=True))
    assert digest(disk["path"]) == original
    assert done["bytes_written"] == 3 * CHUNK
    assert done["bytes_skipped"] == size - 3 * CHUNK
    assert reads.bytes == 3 * CHUNK  # only the three chunks whose extents moved
    # again: the restored chunks were written anew, so they are compared, and all skipped
    with reads.counting(monkeypatch):
        again = run(bv.start_restore(good["id"], to_original=True))
    assert again["bytes_written"] == 0 and reads.bytes == 3 * CHUNK
    assert digest(disk["path"]) == original
    # with tracking off every chunk is compared, as before
    fill(disk["path"], 40 * CHUNK, os.urandom(CHUNK))
    with tracking_off(bv), reads.counting(monkeypatch):
        plain = run(bv.start_restore(good["id"], to_original=True))
    assert plain["bytes_written"] == CHUNK and reads.bytes == size
    assert digest(disk["path"]) == original


@pytest.mark.slow
def test_restore_of_an_older_backup_compares_everything(
    bv: Blockvault, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 32 * CHUNK
    disk = bv.create_disk("d1", size)
    fill(disk["path"], 0, os.urandom(size))
    old = backup(bv, "d1")
    original = digest(disk["path"])
    fill(disk["path"], 3 * CHUNK, os.urandom(CHUNK))
    backup(bv, "d1")  # the kept clone is this one's now
    fill(disk["path"], 9 * CHUNK, os.urandom(CHUNK))
    reads = Reads()
    with reads.counting(monkeypatch):
        done = run(bv.start_restore(old["id"], to_original=True))
    assert reads.bytes == size and done["bytes_written"] == 2 * CHUNK
    assert digest(disk["path"]) == original


@pytest.mark.slow
def test_deleting_a_disk_deletes_its_clones_and_counts_shared_extents_once(
    bv: Blockvault, xfs_dir: Path
) -> None:
    size = 16 * MiB
    disk = bv.create_disk("d1", size)
    fill(disk["path"], 0, os.urandom(size))
    backup(bv, "d1")
    backup(bv, "d1", vault=FULL)  # a clone per vault
    folder = Path(disk["path"]).parent
    assert len(list((folder / "tracking").rglob("*.img"))) == 2
    freed = bv.plan_delete_disk("d1").bytes_freed
    assert size <= freed < size + MiB  # the clones share every extent with the disk
    fill(disk["path"], 0, os.urandom(4 * MiB))  # now the clones alone hold the old 4 MiB
    freed = bv.plan_delete_disk("d1").bytes_freed
    assert size + 4 * MiB <= freed < size + 5 * MiB
    assert [s["id"] for s in bv.list_snapshots(disk="d1")] == []  # clones are no snapshots
    bv.delete_disk("d1")
    assert not folder.exists()
    # a registered image stays: what its clone shares with it is not freed
    image = xfs_dir / "registered.img"
    image.write_bytes(os.urandom(size))
    registered = bv.register_disk("r1", str(image))
    backup(bv, "r1")
    clones = list((Path(bv.ctx.locations.pool_dir) / registered["id"]).rglob("*.img"))
    assert len(clones) == 1
    assert bv.plan_delete_disk("r1").bytes_freed < MiB
    fill(image, 0, os.urandom(2 * MiB))
    assert 2 * MiB <= bv.plan_delete_disk("r1").bytes_freed < 3 * MiB
    bv.delete_disk("r1")
    assert image.exists() and not clones[0].exists()


@pytest.mark.slow
def test_deleting_a_backup_drops_its_clone_and_a_failed_backup_leaves_none(
    bv: Blockvault, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 16 * CHUNK
    disk = bv.create_disk("d1", size)
    fill(disk["path"], 0, os.urandom(size))
    first = backup(bv, "d1")
    tracker = tracker_of(bv, disk)
    bv.delete_backup(first["id"])
    assert not tracker.has(first["id"])
    fill(disk["path"], 0, b"something to read")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(devices, "pread_exact", broken)
    with pytest.raises(Exception, match="Input/output error"):
        backup(bv, "d1")
    monkeypatch.undo()
    assert list(tracker.folder.iterdir()) == []
