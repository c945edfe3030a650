"""Cost proportional to data (issue 11): holes are never read, a sparse terabyte disk's
manifest stays small, zero runs are stored as one number, and a restore punches holes.

Bytes read are measured by the kernel (`rchar` in /proc/self/io counts every read and pread
of this process), so "never read" is checked on the real system, not on a counter of ours.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.repo.manifest import MAX_CHUNKS, Manifest, decode_chunks, encode_chunks
from core.repo.repository import Repository
from tests.support.cli import CLI

MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40
ID = "ab" * 32


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, "[blockvault]\ngc_grace_seconds = 0\n")


def bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def islands(path: str, offsets: list[int], length: int) -> bytes:
    """Random data at `offsets` (odd, unaligned); returns what was written, in order."""
    written = b""
    with open(path, "r+b") as handle:
        for offset in offsets:
            data = os.urandom(length)
            handle.seek(offset)
            handle.write(data)
            written += data
    return written


def job(cli: CLI, *argv: str) -> dict:
    result = cli(*argv, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_sparse_terabyte_backup_reads_only_its_data_and_restores_sparse(
    cli: CLI, tmp_path: Path
) -> None:
    disk = cli.ok("disk", "create", "big", "--size", "1T")
    offsets = [7, 3 * GiB + 12345, 600 * GiB + 1, TiB - 3 * MiB - 999]
    written = islands(disk["path"], offsets, 2 * MiB)
    before = bytes_read_by_this_process()
    backup = job(cli, "backup", "create", "big")
    read = bytes_read_by_this_process() - before
    # 8 MiB of data in at most 12 chunks of 4 MiB (islands straddle chunk edges); the
    # catalog, config and vault files add a little: a terabyte of holes adds nothing
    assert read < 12 * 4 * MiB + 8 * MiB, read
    assert backup["bytes_zero"] > TiB - 64 * MiB and backup["bytes_new"] <= 12 * 4 * MiB
    stored = cli.home / "vault" / "manifests" / backup["id"]
    assert stored.stat().st_size < 16 << 10  # 262,144 entries, nearly all zero: a few KiB
    body = json.loads(bytes(Repository._unpack(stored.read_bytes(), "manifest", 1 << 20)))
    assert body["version"] == 2 and sum(e for e in body["chunks"] if type(e) is int) > 262_000

    job(cli, "backup", "restore", backup["id"], "--to-new", "copy")
    copy = cli.ok("disk", "show", "copy")
    assert os.stat(copy["path"]).st_size == TiB
    assert os.stat(copy["path"]).st_blocks * 512 < 64 * MiB  # holes punched, never written
    with open(copy["path"], "rb") as handle:
        got = b""
        for offset in offsets:
            handle.seek(offset)
            got += handle.read(2 * MiB)
        assert got == written
        handle.seek(TiB - 4096)
        assert handle.read() == bytes(4096)


def test_zero_runs_are_stored_as_their_length_and_read_back() -> None:
    chunks = [None, None, ID, None, ID, ID, None, None, None]
    assert encode_chunks(chunks) == [2, ID, 1, ID, ID, 3]
    assert decode_chunks(encode_chunks(chunks), len(chunks), runs=True) == chunks
    assert encode_chunks([]) == [] and decode_chunks([], 0, runs=True) == []
    manifest = Manifest("backup-abcd", "backup", 9 * 65536, 65536, chunks, digest="d")
    again = Manifest.from_bytes(manifest.to_bytes(), expected_id="backup-abcd")
    assert again.chunks == chunks


def test_a_version_1_manifest_with_every_null_written_is_still_read() -> None:
    manifest = Manifest("backup-abcd", "backup", 3 * 65536, 65536, [None, ID, None], digest="d")
    body = json.loads(manifest.to_bytes())
    body["version"], body["chunks"] = 1, [None, ID, None]
    again = Manifest.from_bytes(json.dumps(body).encode(), expected_id="backup-abcd")
    assert again.chunks == [None, ID, None]


@pytest.mark.parametrize(
    "stored",
    [
        [4],  # one run past the end: never expanded beyond the disk's size
        [1 << 40],  # a run the size of a memory bomb
        [0, 3],  # a run of nothing
        [-1, 4],
        [True, 2],  # a bool is not a count
        [1.5, 2],
        [None, 2],  # version 2 has no nulls
        [2],  # too few
        ["xyz", 2],
    ],
)
def test_a_hostile_chunk_list_is_damage_not_memory(stored: list) -> None:
    body = json.loads(
        Manifest("backup-abcd", "backup", 3 * 65536, 65536, [None] * 3, digest="d").to_bytes()
    )
    body["chunks"] = stored
    with pytest.raises(Exception, match="manifest backup-abcd is damaged"):
        Manifest.from_bytes(json.dumps(body).encode(), expected_id="backup-abcd")


def test_a_manifest_claiming_more_chunks_than_any_disk_holds_is_damage() -> None:
    body = json.loads(
        Manifest("backup-abcd", "backup", 65536, 65536, [None], digest="d").to_bytes()
    )
    body["size"], body["chunks"] = (MAX_CHUNKS + 1) * 65536, [MAX_CHUNKS + 1]
    with pytest.raises(Exception, match="more than a manifest holds"):
        Manifest.from_bytes(json.dumps(body).encode(), expected_id="backup-abcd")


def test_a_resumed_restore_checks_what_its_state_claims_and_syncs_once(tmp_path: Path) -> None:
    """The resume record is written without syncing the disk: a chunk it names may have been
    lost with the page cache. A resumed restore reads each one back and checks its id, so a
    record claiming every chunk over a disk holding garbage still ends byte for byte right."""
    from core.engine import pipeline
    from core.stores.local import LocalStore

    chunk = 64 << 10
    source = tmp_path / "source.img"
    data = os.urandom(5 * chunk) + bytes(3 * chunk) + os.urandom(chunk - 100)
    source.write_bytes(data)
    vault = Repository.init(LocalStore(tmp_path / "vault"), chunk_size=chunk, compression=3)
    manifest = pipeline.backup_device(source, vault, manifest_id="backup-abcd", disk_meta={})
    target = tmp_path / "target.img"
    target.write_bytes(data[: 2 * chunk] + os.urandom(len(data) - 2 * chunk))  # 2 good, rest lost
    state = tmp_path / "restore.state"
    state.write_text(json.dumps({"manifest": "backup-abcd", "done": list(range(9))}))
    stats = pipeline.restore_device(
        manifest, vault, target, compare_existing=False, state_path=state
    )
    assert target.read_bytes() == data
    assert stats.resumed_chunks == 9
    assert stats.bytes_skipped == 2 * chunk  # the two chunks that really were there
    assert stats.bytes_fetched == 3 * chunk + chunk - 100  # the lost ones, fetched again
    assert not state.exists()
