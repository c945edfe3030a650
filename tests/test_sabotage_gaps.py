"""Rules no other test caught when broken on purpose (scripts/sabotage.py names each break).

Each test here fails under one sabotage and passes on the real code; the docstring says which.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.base.errors import IntegrityError, PlanChanged
from core.base.host import host_id
from core.catalog.db import Catalog
from core.catalog.models import Disk, Job
from core.engine import pipeline
from core.jobs.claims import claim
from core.repo.gc import collect_garbage
from core.repo.repository import Repository
from core.rules import lifecycle
from core.rules.lifecycle import DiskFacts
from core.stores.local import LocalStore
from tests.support.cli import CLI
from tests.test_backup_reliability import CHUNK, CONFIG, MiB, fill, random_file, run_job


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def _vault(tmp_path: Path) -> Repository:
    return Repository.init(LocalStore(tmp_path / "vault"), chunk_size=CHUNK)


def _backdate(paths: list[Path], seconds: float) -> None:
    for path in paths:
        then = path.stat().st_mtime - seconds
        os.utime(path, (then, then))


def test_gc_keeps_condemned_chunks_within_the_grace_period(tmp_path: Path) -> None:
    """Sabotage gc-grace-ignored: a condemned chunk is deleted only once the grace has passed."""
    vault = _vault(tmp_path)
    image = tmp_path / "img"
    random_file(image, 4 * CHUNK, seed=41)
    first = pipeline.backup_device(image, vault, manifest_id="backup-grace0001", disk_meta={})
    vault.trash_manifest(first.id)
    assert collect_garbage(vault, grace_seconds=3600).condemned_chunks == 4
    again = collect_garbage(vault, grace_seconds=3600)  # the list is seconds old
    assert again.deleted_chunks == 0 and again.deferred_chunks == 4, again
    assert all(vault.has_chunk(c) for c in first.referenced())
    root = tmp_path / "vault"
    _backdate([p for p in (root / "condemned").rglob("*") if p.is_file()], 7200)
    _backdate([p for p in (root / "chunks").rglob("*") if p.is_file()], 7300)  # stored before
    late = collect_garbage(vault, grace_seconds=3600)  # now the grace has passed
    assert late.deleted_chunks == 4, late
    assert not any(vault.has_chunk(c) for c in first.referenced())


def test_a_rescued_chunk_outlives_the_list_that_condemned_it(tmp_path: Path) -> None:
    """Sabotages writer-rescue-off and gc-ignores-rescues: a backup that reuses a condemned
    chunk stores it again (a fresher copy than the list that condemned it), and GC never
    deletes a chunk rescued after it was condemned, even before a manifest names it."""
    vault = _vault(tmp_path)
    image = tmp_path / "img"
    data = random_file(image, 4 * CHUNK, seed=42)
    first = pipeline.backup_device(image, vault, manifest_id="backup-rescue001", disk_meta={})
    vault.trash_manifest(first.id)
    assert collect_garbage(vault, grace_seconds=3600).condemned_chunks == 4
    root = tmp_path / "vault"
    lists = [p for p in (root / "condemned").rglob("*") if p.is_file()]
    chunks = [p for p in (root / "chunks").rglob("*") if p.is_file()]
    assert lists and len(chunks) == 4
    _backdate(lists, 7200)  # condemned two hours ago: past the grace
    _backdate(chunks, 7300)  # stored before that
    second = pipeline.backup_device(image, vault, manifest_id="backup-rescue002", disk_meta={})
    assert second.referenced() == first.referenced()
    condemned_at = max(p.stat().st_mtime for p in lists)
    assert all(p.stat().st_mtime > condemned_at for p in chunks), "every reused chunk rescued"
    # the writer's manifest is not committed yet as far as this GC can tell
    vault.trash_manifest(second.id)
    stats = collect_garbage(vault, grace_seconds=3600)
    assert stats.deleted_chunks == 0, stats
    assert all(vault.has_chunk(c) for c in second.referenced())
    target = tmp_path / "restored"
    target.write_bytes(b"\0" * len(data))
    restored = vault.read_manifest(second.id, trashed=True)
    pipeline.restore_device(restored, vault, target, compare_existing=False)
    assert target.read_bytes() == data


def test_a_manifest_is_created_once_never_overwritten(tmp_path: Path) -> None:
    """Sabotage manifest-overwrite: committing other content under an existing manifest id is
    refused and the stored manifest stays; committing the same manifest again is a no-op."""
    vault = _vault(tmp_path)
    image = tmp_path / "img"
    random_file(image, 2 * CHUNK, seed=43)
    manifest = pipeline.backup_device(image, vault, manifest_id="backup-once0001", disk_meta={})
    vault.write_manifest(manifest)  # the same again: fine
    forged = dataclasses.replace(manifest, digest="0" * len(manifest.digest), name="forged")
    with pytest.raises(IntegrityError, match="already exists"):
        vault.write_manifest(forged)
    assert vault.read_manifest(manifest.id).digest == manifest.digest


def test_deleting_a_backup_frees_only_chunks_no_other_backup_needs(tmp_path: Path) -> None:
    """Sabotage freed-ignores-dedup: the bytes a delete frees count each chunk another
    backup still references as kept, not freed."""
    vault = _vault(tmp_path)
    image = tmp_path / "img"
    random_file(image, 6 * CHUNK, seed=44)
    first = pipeline.backup_device(image, vault, manifest_id="backup-dedup0001", disk_meta={})
    with open(image, "r+b") as handle:  # two chunks only the first backup has
        handle.seek(2 * CHUNK)
        handle.write(os.urandom(2 * CHUNK))
    second = pipeline.backup_device(
        image, vault, manifest_id="backup-dedup0002", disk_meta={}, parent_id=first.id
    )
    sizes = vault.chunk_sizes()
    only_first = first.referenced() - second.referenced()
    assert len(only_first) == 2
    freed = vault.freed_by_deleting([first.id])
    assert freed == {first.id: sum(sizes[c] for c in only_first)}
    both = vault.freed_by_deleting([first.id, second.id])
    assert sum(both.values()) == sum(sizes[c] for c in first.referenced() | second.referenced())


def test_a_backup_records_its_disks_server_and_role(cli: CLI) -> None:
    """Sabotage backup-row-loses-server-and-role: a backup says which server and role its
    disk had, and still says so after the disk and the server are gone."""
    cli.ok("server", "create", "web1")
    disk = cli.ok("disk", "create", "root", "--size", "2M", "--server", "web1", "--role", "system")
    fill(disk["path"], 2 * MiB, seed=45)
    backup = run_job(cli, "backup", "create", "root")
    listed = {b["id"]: b for b in cli.ok("backup", "list")}
    assert (listed[backup["id"]]["server"], listed[backup["id"]]["role"]) == ("web1", "system")
    cli.ok("disk", "delete", "root", "--yes")
    cli.ok("server", "delete", "web1", "--yes")
    kept = {b["id"]: b for b in cli.ok("backup", "list", "--all")}
    assert (kept[backup["id"]]["server"], kept[backup["id"]]["role"]) == ("web1", "system")


def test_a_claim_on_a_row_changed_since_it_was_read_is_refused(tmp_path: Path) -> None:
    """Sabotage claim-without-compare-and-set: a claim made from a stale read of the disk
    (another transaction claimed it meanwhile) is refused, and the first owner keeps it."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    try:
        with catalog.session() as session:
            session.add(Disk(id="disk-cas00001", name="d", size=1, path="/nonexistent"))
            session.commit()
        with catalog.session() as stale:
            late = stale.get(Disk, "disk-cas00001")
            assert late is not None and late.status == "available"
            stale.expunge(late)  # the row object stays as read (a rollback would refresh it)
            stale.rollback()
            with catalog.writer() as first:
                disk = first.get(Disk, "disk-cas00001")
                assert disk is not None
                claim(first, disk, "backing-up", job_id=None)
                first.commit()
            stale.add(late)
            assert late.status == "available" and late.version == 0
            with pytest.raises(PlanChanged, match="changed while it was being claimed"):
                claim(stale, late, "backing-up", job_id="job-late0001")
            stale.rollback()
        with catalog.session() as check:
            final = check.get(Disk, "disk-cas00001")
            assert final is not None and final.status == "backing-up"
    finally:
        catalog.dispose()


def test_a_chunk_found_damaged_is_not_reused_from_the_parent(cli: CLI) -> None:
    """Sabotage quarantine-off: the next incremental backup (its parent still there, naming
    the damaged chunk) stores the chunk again instead of trusting the parent."""
    disk = cli.ok("disk", "create", "d", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=46)
    first = run_job(cli, "backup", "create", "d")
    victim = next(p for p in sorted((cli.home / "vault" / "chunks").rglob("*")) if p.is_file())
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    victim.write_bytes(bytes(blob))
    assert "is damaged" in cli.fails("backup", "verify", first["id"])
    again = run_job(cli, "backup", "create", "d")  # incremental: the first is its parent
    assert again["bytes_new"] > 0, "the damaged chunk was stored again, not reused"
    assert run_job(cli, "backup", "verify", again["id"])["ok"]


def test_a_read_only_catalog_refuses_a_write_at_the_database_itself(tmp_path: Path) -> None:
    """Sabotages read-only-writable and read-only-engine-writable: with --read-only even a
    statement that bypasses every check above the database (`Catalog.writer` refuses first)
    cannot change the catalog."""
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    writable = Catalog(url)
    with writable.session() as session:
        session.add(Disk(id="disk-ro000001", name="d", size=1, path="/nonexistent"))
        session.commit()
    writable.dispose()
    before = (tmp_path / "catalog.sqlite").read_bytes()
    catalog = Catalog(url, read_only=True)
    try:
        with (
            pytest.raises(sa.exc.OperationalError, match=r"readonly|read-only|read only"),
            catalog.engine.begin() as connection,
        ):
            connection.exec_driver_sql("UPDATE disks SET name = 'renamed'")
        with catalog.session() as session:
            assert session.get(Disk, "disk-ro000001").name == "d"  # type: ignore[union-attr]
    finally:
        catalog.dispose()
    assert (tmp_path / "catalog.sqlite").read_bytes() == before


def test_deleting_a_disk_whose_snapshot_a_job_reads_is_refused() -> None:
    """Sabotage disk-delete-ignores-readers: deleting a disk deletes its snapshots, so it is
    refused while a running job reads one of them (the disk itself being free)."""
    from tests.test_lifecycle import DATA, snap

    reader = Job(id="job-000003", kind="rollback", host="h", status="running")
    plan = lifecycle.plan_disk_delete(
        DiskFacts(DATA), freed=0, snapshots=[snap(DATA, 1)], backups=[], readers=[reader]
    )
    assert plan.refusal == (
        "a snapshot of disk web1-data is being read by job job-000003 on host h (rollback)"
    )
    free = lifecycle.plan_disk_delete(DiskFacts(DATA), freed=0, snapshots=[], backups=[])
    assert free.refusal is None


def test_a_writer_killed_on_this_host_does_not_hold_up_gc(tmp_path: Path) -> None:
    """A killed backup leaves its session object behind; its process is gone from this host,
    so gc deletes garbage at once instead of waiting out the session lease (10 minutes).
    A session of a live process, or of another host, still defers every deletion."""
    vault = _vault(tmp_path)
    image = tmp_path / "image"
    image.write_bytes(random.Random(3).randbytes(4 * CHUNK))
    doomed = pipeline.backup_device(image, vault, manifest_id="backup-doomed01", disk_meta={})
    vault.trash_manifest(doomed.id)
    dead = subprocess.Popen(["true"])
    dead.wait()
    for session, host, pid in (
        ("backup-dead0001", host_id(), dead.pid),
        ("backup-live0001", host_id(), os.getpid()),
        ("backup-away0001", "another-host", dead.pid),
    ):
        body = json.dumps({"pid": pid, "host": host, "at": time.time()}).encode()
        vault.store.put(f"sessions/{session}", body)
    assert sorted(vault.live_sessions()) == ["backup-away0001", "backup-live0001"]
    for live in ("backup-away0001", "backup-live0001"):
        vault.store.delete(f"sessions/{live}")
    stats = collect_garbage(vault, grace_seconds=0)
    assert stats.deleted_chunks == 4 and stats.deferred_chunks == 0


def test_a_manifest_deleted_between_listing_and_reading_does_not_stop_gc(
    tmp_path: Path,
) -> None:
    """Another host's `backup delete` trashes a manifest just after gc listed it: gc takes
    it as gone (its chunks are garbage now), not as damaged (which stops gc)."""
    vault = _vault(tmp_path)
    image = tmp_path / "image"
    for seed, name in ((5, "backup-kept0001"), (6, "backup-gone0001")):
        image.write_bytes(random.Random(seed).randbytes(4 * CHUNK))
        pipeline.backup_device(image, vault, manifest_id=name, disk_meta={})
    listed = vault.list_manifest_ids

    def listing_then_delete() -> list[str]:
        ids = listed()
        if "backup-gone0001" in ids and vault.store.exists("manifests/backup-gone0001"):
            vault.trash_manifest("backup-gone0001")
        return ids

    vault.list_manifest_ids = listing_then_delete  # type: ignore[method-assign]
    good, damaged = vault.readable_manifests()
    assert [m.id for m in good] == ["backup-kept0001"] and damaged == {}
    stats = collect_garbage(vault, grace_seconds=0)
    assert stats.deleted_chunks == 4
