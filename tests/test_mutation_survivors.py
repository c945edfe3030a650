"""Behaviours no other test noticed when mutmut changed them (docs/mutation.md lists each
surviving mutant, and the test here that now kills it, or why it is harmless).

Pure rules take real catalog rows; the GC tests run on a real vault directory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from core.base.errors import Conflict, IntegrityError
from core.catalog.models import Backup, Disk, Job, Policy, Snapshot, VaultRecord
from core.engine import pipeline
from core.repo.gc import _Lock, collect_garbage
from core.repo.repository import GC_LOCK_KEY, Repository
from core.rules import lifecycle
from core.rules.lifecycle import DiskFacts
from core.rules.retention import plan_retention
from core.stores.local import LocalStore
from tests.test_backup_reliability import CHUNK, random_file
from tests.test_lifecycle import DATA, SERVER, SYSTEM, backup, snap


def _job(kind: str) -> Job:
    return Job(id=f"job-{kind[:6]:0>6}", kind=kind, host="h", status="running")


def _identity(plan: lifecycle.Plan) -> list[tuple]:
    return [(i.op, i.kind, i.id, i.name, i.bytes, i.when) for i in plan.items]


# --- retention ---------------------------------------------------------------------------


def test_the_retention_plan_names_each_expired_backup_and_what_it_frees() -> None:
    policy = Policy(id="pol-000002", name="nightly")
    first, second = backup(DATA, 1), backup(DATA, 2)
    plan = plan_retention(policy, [first, second], freed={first.id: 4096})
    assert (plan.action, plan.target) == ("retention of policy nightly", "nightly")
    assert _identity(plan) == [
        ("delete", "backup", first.id, first.name, 4096, "now"),
        ("delete", "backup", second.id, second.name, 0, "now"),  # frees nothing of its own
    ]
    assert plan.bytes_freed == 4096
    text = "\n".join(plan.lines())
    assert first.name in text and second.name in text


# --- lifecycle rules ---------------------------------------------------------------------


def test_a_snapshot_being_made_or_whose_disk_is_rolled_back_cannot_be_deleted() -> None:
    making = Snapshot(**{**snap(DATA, 1).model_dump(), "status": "creating"})
    plan = lifecycle.plan_snapshot_delete(making, disk=DATA, owner=None, readers=[], freed=0)
    assert plan.refusal == f"snapshot {making.name} is still being created"
    ready = snap(DATA, 2)
    for kind in ("snapshot", "rollback", "undo"):
        owner = _job(kind)
        plan = lifecycle.plan_snapshot_delete(ready, disk=DATA, owner=owner, readers=[], freed=0)
        assert plan.refusal == lifecycle.disk_busy(DATA, owner), kind
    other = lifecycle.plan_snapshot_delete(
        ready, disk=DATA, owner=_job("backup"), readers=[], freed=5 << 20
    )
    assert other.allowed, "a backup of the disk does not touch its snapshots"
    assert (other.action, other.target) == ("delete snapshot", f"{ready.name} ({ready.id})")
    reader = _job("to-disk")
    read = lifecycle.plan_snapshot_delete(ready, disk=DATA, owner=None, readers=[reader], freed=0)
    assert (
        read.refusal
        == f"snapshot {ready.name} is being read by job {reader.id} on host h (to-disk)"
    )
    assert _identity(other) == [("delete", "snapshot", ready.id, ready.name, 5 << 20, "now")]


def test_a_rollback_needs_an_available_snapshot_and_the_typed_disk_name() -> None:
    broken = Snapshot(**{**snap(DATA, 1).model_dump(), "status": "error"})
    assert lifecycle.plan_rollback(broken, facts=DiskFacts(DATA)).refusal == (
        f"snapshot {broken.name} is error"
    )
    good = snap(DATA, 2)
    plan = lifecycle.plan_rollback(good, facts=DiskFacts(DATA))
    assert plan.allowed and plan.confirm_text == DATA.name
    assert (plan.action, plan.target) == (
        "roll back disk",
        f"disk {DATA.name} to snapshot {good.name}",
    )
    assert _identity(plan)[1:] == [
        ("overwrite", "disk", DATA.id, DATA.name, good.size, "now"),
        ("keep", "snapshot", good.id, good.name, 0, "now"),
    ]
    assert _identity(plan)[0][:2] == ("create", "snapshot"), "the safety snapshot first"
    reflink = Snapshot(**{**good.model_dump(), "strategy": "reflink"})
    assert "reflink" in lifecycle.plan_rollback(reflink, facts=DiskFacts(DATA)).route
    assert "reflink" not in plan.route


def test_undo_is_refused_on_a_busy_or_written_disk_and_asks_for_its_name() -> None:
    safety = Snapshot(**{**snap(DATA, 3).model_dump(), "kind": "safety"})
    owner = _job("backup")
    busy = lifecycle.plan_undo(DiskFacts(DATA, owner=owner), safety=safety)
    assert busy.refusal == lifecycle.disk_busy(DATA, owner)
    held = lifecycle.plan_undo(DiskFacts(DATA, writers=["qemu (pid 7)"]), safety=safety)
    assert held.refusal is not None and "held open for writing by qemu" in held.refusal
    assert lifecycle.plan_undo(
        DiskFacts(DATA, writers=["qemu (pid 7)"]), safety=safety, force=True
    ).allowed
    plan = lifecycle.plan_undo(DiskFacts(DATA), safety=safety, freed=3 << 20)
    assert plan.allowed and plan.confirm_text == DATA.name
    assert _identity(plan) == [
        ("overwrite", "disk", DATA.id, DATA.name, safety.size, "now"),
        ("delete", "snapshot", safety.id, safety.name, 3 << 20, "after-success"),
    ]
    assert plan.bytes_freed == 3 << 20
    assert plan.items[0].note == "", "only a half-restored disk has a mark to clear"


def test_a_new_disk_needs_an_available_source_and_a_free_name() -> None:
    def new(**kw: object) -> lifecycle.Plan:
        return lifecycle.plan_new_disk_from(
            "snapshot", "snap-000001", "s1", size=7 << 20, new_name="copy", **kw
        )

    assert new(source_status="creating").refusal == "snapshot s1 is creating"
    assert "already exists" in (new(name_taken=True).refusal or "")
    ok = new()
    assert ok.allowed and not ok.destructive
    assert (ok.action, ok.target) == ("new disk from snapshot", "s1 -> copy")
    assert _identity(ok) == [("create", "disk", "", "copy", 7 << 20, "now")]
    assert ok.items[0].note == "from snapshot s1"


def test_a_vault_is_not_forgotten_while_a_policy_a_backup_or_a_job_uses_it() -> None:
    vault = VaultRecord(id="vault-000001", name="v", location="/v")
    done = backup(DATA, 1)
    making = Backup(**{**backup(DATA, 2).model_dump(), "status": "creating"})

    def remove(backups: list[Backup], **kw: object) -> lifecycle.Plan:
        return lifecycle.plan_vault_remove(vault, backups=backups, force=True, **kw)

    assert "target of policy nightly" in (remove([], policies=["nightly"]).refusal or "")
    assert "is running" in (remove([done, making]).refusal or "")
    job = _job("verify")
    assert remove([], running=[job]).refusal == f"vault v is used by job {job.id} (verify)"
    forced = remove([done])
    assert forced.allowed
    assert _identity(forced) == [
        ("delete", "vault", vault.id, vault.name, 0, "now"),
        ("delete", "backup", done.id, done.name, 0, "now"),
    ]
    assert (forced.action, forced.target) == ("remove vault", "v (/v)")


def test_os_reinstall_rules_at_their_edges() -> None:
    def reinstall(**kw: object) -> lifecycle.Plan:
        args: dict = {
            "disks": [SYSTEM, DATA],
            "snapshots_by_disk": {SYSTEM.id: [snap(SYSTEM, 1)]},
            "image_name": "debian.img",
            "image_size": SYSTEM.size,
            **kw,
        }
        return lifecycle.plan_os_reinstall(SERVER, **args)

    exact = reinstall(freed={"snap-000001": 9 << 20})
    assert exact.allowed, "an image exactly the size of the system disk fits"
    assert exact.action == "reinstall OS" and exact.confirm_text == SYSTEM.name
    overwrite = exact.of("overwrite", "disk")[0]
    assert (overwrite.name, overwrite.bytes, overwrite.note) == (
        SYSTEM.name,
        SYSTEM.size,
        "with debian.img",
    )
    assert _identity(exact)[2:] == [
        ("delete", "snapshot", "snap-000001", f"{SYSTEM.name}-s1", 9 << 20, "after-success")
    ]
    assert exact.warnings and "frees at most" in exact.warnings[0]
    assert reinstall().warnings == (), "nothing freed, nothing to qualify"
    assert reinstall().lines()
    held = reinstall(facts=DiskFacts(SYSTEM, writers=["vm (pid 9)"]))
    assert "held open for writing" in (held.refusal or ""), "force is off unless asked"
    reader = _job("to-disk")
    read = reinstall(readers=[reader])
    assert read.refusal == (
        f"a snapshot of disk {SYSTEM.name} is being read by job {reader.id} on host h (to-disk)"
    )
    changed = reinstall(already_happened=True, image_name=None, image_size=None)
    assert changed.action == "OS changed" and changed.confirm_text is None
    assert not changed.warnings and changed.bytes_freed == 0
    assert changed.target == f"server {SERVER.name} (system disk {SYSTEM.name})"


def test_restoring_to_a_new_disk_at_the_edges() -> None:
    b = backup(DATA, 1)
    exact = lifecycle.plan_restore(
        b, to_original=False, target=None, new_name="copy", new_size=b.size
    )
    assert exact.allowed, "a new disk exactly the backup's size holds it"
    assert (exact.action, exact.target) == (
        "restore backup to a new disk",
        f"{b.name} -> new disk copy",
    )
    assert _identity(exact) == [("create", "disk", "", "copy", b.size, "now")]
    assert exact.items[0].note == f"from backup {b.name}"
    assert exact.route == "full restore into a new sparse disk"
    assert exact.estimate_seconds == b.size / lifecycle.DEFAULT_RESTORE_RATE
    holey = Backup(**{**b.model_dump(), "bytes_zero": b.size // 4})
    onto = lifecycle.plan_restore(holey, to_original=True, target=DiskFacts(DATA), rate=1 << 20)
    assert onto.estimate_seconds == (b.size - b.size // 4) / (1 << 20), "holes are not read"
    assert (onto.action, onto.target) == (
        "restore backup onto its original disk",
        f"{b.name} -> disk {DATA.name}",
    )
    assert _identity(onto)[1] == ("overwrite", "disk", DATA.id, DATA.name, b.size, "now")
    assert onto.route.startswith("changed chunks only")
    half = Disk(
        **{
            **DATA.model_dump(),
            "restore_incomplete": True,
            "status": "error-restoring",
            "origin": f"backup:{b.id}",
        }
    )
    owner = _job("restore")
    busy = lifecycle.plan_restore(
        b,
        to_original=False,
        target=DiskFacts(half, owner=owner),
        new_name=half.name,
        existing=half,
    )
    assert busy.refusal == lifecycle.disk_busy(half, owner), "one owner while resuming too"
    resume = lifecycle.plan_restore(
        b, to_original=False, target=None, new_name=half.name, existing=half
    )
    assert resume.allowed and resume.items[0].id == half.id


def test_deleting_a_server_detaches_its_disks_by_id() -> None:
    plan = lifecycle.plan_server_delete(SERVER, disks=[SYSTEM, DATA], detach_disks=True)
    assert (plan.action, plan.target) == ("delete server", f"{SERVER.name} ({SERVER.id})")
    assert [(i.op, i.kind, i.id, i.name, i.note) for i in plan.items] == [
        ("delete", "server", SERVER.id, SERVER.name, ""),
        ("detach", "disk", SYSTEM.id, SYSTEM.name, "was system"),
        ("detach", "disk", DATA.id, DATA.name, "was data"),
    ]
    refused = lifecycle.plan_server_delete(SERVER, disks=[SYSTEM, DATA], detach_disks=False)
    assert f"({SYSTEM.name}, {DATA.name})" in (refused.refusal or "")


def test_deleting_a_disk_says_whether_its_file_goes() -> None:
    kept = backup(DATA, 1)
    managed = lifecycle.plan_disk_delete(DiskFacts(DATA), freed=1, snapshots=[], backups=[kept])
    registered = Disk(**{**DATA.model_dump(), "managed": False})
    outside = lifecycle.plan_disk_delete(DiskFacts(registered), freed=0, snapshots=[], backups=[])
    assert managed.items[0].note == "with its snapshots"
    assert outside.items[0].note == "registered: the file itself stays"
    assert (managed.action, managed.target) == ("delete disk", f"{DATA.name} ({DATA.id})")
    assert _identity(managed) == [
        ("delete", "disk", DATA.id, DATA.name, 1, "now"),
        ("keep", "backup", kept.id, kept.name, kept.size, "now"),
    ]
    assert managed.items[1].note == "retained in vault"


def test_deleting_a_policy_names_it_and_keeps_its_backups() -> None:
    policy = Policy(id="pol-000003", name="nightly")
    plan = lifecycle.plan_policy_delete(policy, disks=[DATA])
    assert (plan.action, plan.target) == ("delete policy", "nightly")
    assert [(i.op, i.kind, i.id, i.name, i.note) for i in plan.items] == [
        ("delete", "policy", policy.id, policy.name, f"covers {DATA.name}; backups kept")
    ]
    none = lifecycle.plan_policy_delete(policy, disks=[])
    assert none.items[0].note == "covers no disk; backups kept"


# --- garbage collection (real vault directories) -----------------------------------------


def _vault(tmp_path: Path) -> Repository:
    return Repository.init(LocalStore(tmp_path / "vault"), chunk_size=CHUNK)


def _files(tmp_path: Path, folder: str) -> list[Path]:
    return sorted(p for p in (tmp_path / "vault" / folder).rglob("*") if p.is_file())


def _stamp(paths: list[Path], when: float) -> None:
    for path in paths:
        os.utime(path, (when, when))


def _chunk_file(tmp_path: Path, chunk_id: str) -> Path:
    return next(p for p in _files(tmp_path, "chunks") if p.name == chunk_id)


def _backup(vault: Repository, tmp_path: Path, name: str, chunks: int, seed: int):  # type: ignore[no-untyped-def]
    image = tmp_path / f"{name}.img"
    random_file(image, chunks * CHUNK, seed=seed)
    return pipeline.backup_device(image, vault, manifest_id=f"backup-{name}", disk_meta={})


def test_gc_keeps_the_chunks_of_every_manifest_not_only_the_last(tmp_path: Path) -> None:
    """Every manifest's chunks are referenced, the union of all of them: two backups of
    different data lose nothing to a GC without grace."""
    vault = _vault(tmp_path)
    first = _backup(vault, tmp_path, "union0001", 3, seed=61)
    second = _backup(vault, tmp_path, "union0002", 3, seed=62)
    stats = collect_garbage(vault, grace_seconds=0)
    assert (stats.manifests, stats.condemned_chunks, stats.deleted_chunks) == (2, 0, 0), stats
    assert all(vault.has_chunk(c) for c in first.referenced() | second.referenced())


def test_gc_never_deletes_a_condemned_chunk_a_committed_manifest_names(tmp_path: Path) -> None:
    """A writer that started before the chunks were condemned reuses them without rescuing
    them and commits: once its manifest is listed, the chunks stay, however old."""
    vault = _vault(tmp_path)
    first = _backup(vault, tmp_path, "late0001", 4, seed=63)
    vault.trash_manifest(first.id)
    assert collect_garbage(vault, grace_seconds=3600).condemned_chunks == 4
    late = vault.read_manifest(first.id, trashed=True)
    late.id = "backup-late0002"
    vault.write_manifest(late)  # the earlier writer commits, naming the same chunks
    now = time.time()
    _stamp(_files(tmp_path, "condemned"), now - 7200)  # past the grace
    _stamp(_files(tmp_path, "chunks"), now - 7300)  # stored before, never rewritten
    assert collect_garbage(vault, grace_seconds=3600, dry_run=True).deleted_chunks == 0
    stats = collect_garbage(vault, grace_seconds=3600)
    assert stats.deleted_chunks == 0, stats
    assert all(vault.has_chunk(c) for c in late.referenced())


def test_gc_counts_a_rewrite_in_the_same_tick_as_a_rescue_and_deletes_the_rest(
    tmp_path: Path,
) -> None:
    """A chunk rewritten at the very timestamp of its condemned list (coarse file-system
    clocks) is rescued; every other chunk of the list still goes in the same pass, and the
    bytes reported are theirs."""
    vault = _vault(tmp_path)
    first = _backup(vault, tmp_path, "tick0001", 8, seed=64)
    vault.trash_manifest(first.id)
    assert collect_garbage(vault, grace_seconds=3600).condemned_chunks == 8
    (listed,) = _files(tmp_path, "condemned")
    then = time.time() - 7200
    _stamp([listed], then)
    ids = sorted(first.referenced())
    rescued, doomed = ids[:4], ids[4:]
    _stamp([_chunk_file(tmp_path, c) for c in rescued], then)  # rewritten in the same tick
    _stamp([_chunk_file(tmp_path, c) for c in doomed], then - 100)
    sizes = vault.chunk_sizes()
    dry = collect_garbage(vault, grace_seconds=3600, dry_run=True)
    assert dry.deleted_chunks == 4 and dry.deleted_bytes == sum(sizes[c] for c in doomed)
    stats = collect_garbage(vault, grace_seconds=3600)
    assert stats.deleted_chunks == 4 and stats.deleted_bytes == sum(sizes[c] for c in doomed)
    assert all(vault.has_chunk(c) for c in rescued)
    assert not any(vault.has_chunk(c) for c in doomed)


def test_gc_reports_every_condemned_list_it_defers(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    for n, seed in ((1, 65), (2, 66)):
        made = _backup(vault, tmp_path, f"defer000{n}", 3, seed=seed)
        vault.trash_manifest(made.id)
        assert collect_garbage(vault, grace_seconds=3600).condemned_chunks == 3
    assert len(_files(tmp_path, "condemned")) == 2
    dry = collect_garbage(vault, grace_seconds=3600, dry_run=True)
    assert (dry.deferred_chunks, dry.deleted_chunks) == (6, 0), dry
    stats = collect_garbage(vault, grace_seconds=3600)
    assert (stats.deferred_chunks, stats.deleted_chunks) == (6, 0), stats


def test_gc_empties_the_trash_of_deleted_backups(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    for n, seed in ((1, 67), (2, 68)):
        vault.trash_manifest(_backup(vault, tmp_path, f"trash000{n}", 1, seed=seed).id)
    assert len(_files(tmp_path, "trash")) == 2
    stats = collect_garbage(vault, grace_seconds=0)
    assert stats.trash_emptied == 2 and stats.deleted_chunks == 2, stats
    assert _files(tmp_path, "trash") == []


def test_gc_stops_on_a_damaged_manifest_naming_the_backup_to_delete(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    kept = _backup(vault, tmp_path, "dmg00001", 2, seed=69)
    vault.trash_manifest(_backup(vault, tmp_path, "dmg00002", 2, seed=70).id)
    (tmp_path / "vault" / "manifests" / "backup-dmg00003").write_bytes(b"not a manifest")
    with pytest.raises(IntegrityError, match=r"gc stopped before deleting anything: .*") as err:
        collect_garbage(vault, grace_seconds=0)
    assert "`blockvault backup delete backup-dmg00003`" in str(err.value)
    assert len(_files(tmp_path, "chunks")) == 4 and all(vault.has_chunk(c) for c in kept.chunks)


def test_a_gc_lock_holder_fences_itself_after_half_its_lease(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    vault.gc_lease = 100.0
    lock = _Lock(vault)
    lock.acquire()
    lock.taken_at = time.monotonic() - 40  # under half the lease: may go on
    lock.check()
    lock.taken_at = time.monotonic() - 60  # past half of it: deletes nothing more
    with pytest.raises(Conflict, match="ran past its lock lease"):
        lock.check()


def test_a_gc_whose_lock_was_taken_over_notices_it(tmp_path: Path) -> None:
    """Each holder has its own token: a GC whose lapsed lock another GC took does not
    mistake that GC's lock for its own."""
    vault = _vault(tmp_path)
    first, second = _Lock(vault), _Lock(vault)
    assert first.owner != second.owner
    first.acquire()
    vault.store.delete(GC_LOCK_KEY)  # lapsed and taken over
    second.acquire()
    with pytest.raises(Conflict, match="lost its lock"):
        first.check()
    second.check()


@pytest.mark.slow  # 300 chunks written and deleted: over a second on a busy machine
def test_a_long_delete_pass_checks_its_lock_as_it_goes(tmp_path: Path) -> None:
    """Every 256 deletions the pass checks that its lock is still its own, so a GC that lost
    its lock midway stops there instead of deleting the rest of the list."""
    vault = _vault(tmp_path)
    for n in range(300):  # unreferenced chunks: all condemned and deleted by one run
        data = n.to_bytes(4, "big") * 8
        vault.put_chunk(vault.encode_chunk(vault.chunk_id(data), data))
    _stamp(_files(tmp_path, "chunks"), time.time() - 100)
    deleted = 0
    delete = vault.delete_chunk

    def delete_then_lose_the_lock(chunk_id: str, **options: bool) -> None:
        nonlocal deleted
        delete(chunk_id, **options)
        deleted += 1
        if deleted == 10:  # another GC takes the lock over
            body = {"owner": "elsewhere:1:0", "at": time.time()}
            vault.store.put(GC_LOCK_KEY, json.dumps(body).encode())

    vault.delete_chunk = delete_then_lose_the_lock  # type: ignore[method-assign]
    with pytest.raises(Conflict, match="lost its lock"):
        collect_garbage(vault, grace_seconds=0)
    assert 10 <= deleted <= 256 and len(_files(tmp_path, "chunks")) == 300 - deleted


def test_a_gc_dry_run_predicts_the_run_and_its_plan_says_so(tmp_path: Path) -> None:
    """`vault gc --dry-run` (and the plan a user confirms) counts what the run then does:
    chunks condemned and their bytes, lists deferred by the grace or a live writer, chunks
    deleted and their bytes."""
    vault = _vault(tmp_path)
    gone = _backup(vault, tmp_path, "dry00001", 3, seed=71)
    _backup(vault, tmp_path, "dry00002", 2, seed=72)
    vault.trash_manifest(gone.id)
    sizes = vault.chunk_sizes()
    freed = sum(sizes[c] for c in gone.referenced())
    vault_row = VaultRecord(id="vault-000001", name="v", location=str(tmp_path / "vault"))

    def both(grace: float) -> dict:
        dry_stats = collect_garbage(vault, grace_seconds=grace, dry_run=True)
        real_stats = collect_garbage(vault, grace_seconds=grace)
        assert str(dry_stats).startswith(f"would delete {dry_stats.deleted_chunks} chunks (")
        assert str(real_stats).startswith(f"deleted {real_stats.deleted_chunks} chunks (")
        dry, real = dry_stats.to_dict(), real_stats.to_dict()
        assert dry.pop("dry_run") and not real.pop("dry_run")
        real.pop("trash_emptied")
        dry.pop("trash_emptied")
        # `chunks`: the dry run counts them before its delete pass, a run with a grace after it
        assert dry["chunks"] == real["chunks"] + (real["deleted_chunks"] if grace > 0 else 0)
        assert {**dry, "chunks": real["chunks"]} == real, (dry, real)
        return real

    at_once = lifecycle.plan_gc(
        vault_row, collect_garbage(vault, grace_seconds=0, dry_run=True), grace_seconds=0
    )
    keep = at_once.of("keep", "chunks")  # docs/mutation.md: its delete item is missing
    assert [(i.id, i.name, i.bytes, i.note) for i in keep] == [
        ("", "3 newly unreferenced chunks", freed, "condemned now, freed by this run")
    ]
    condemn_plan = lifecycle.plan_gc(
        vault_row, collect_garbage(vault, grace_seconds=3600, dry_run=True), grace_seconds=3600
    )
    assert [(i.op, i.kind, i.id, i.name, i.bytes, i.note) for i in condemn_plan.items] == [
        (
            "keep",
            "chunks",
            "",
            "3 newly unreferenced chunks",
            freed,
            "condemned now, freed by a gc after 3600 s",
        )
    ]
    assert (condemn_plan.action, condemn_plan.target, condemn_plan.bytes_freed) == (
        "garbage-collect vault",
        "v",
        0,
    )
    assert both(3600) == {
        **both_zero(),
        "manifests": 1,
        "chunks": 5,
        "condemned_chunks": 3,
        "condemned_bytes": freed,
    }
    waiting = lifecycle.plan_gc(
        vault_row, collect_garbage(vault, grace_seconds=3600, dry_run=True), grace_seconds=3600
    )
    assert waiting.items == () and waiting.warnings == (
        "3 condemned chunks wait for the grace period or a live writer",
    )
    assert both(3600) == {**both_zero(), "manifests": 1, "chunks": 5, "deferred_chunks": 3}
    _stamp(_files(tmp_path, "condemned"), time.time() - 7200)
    _stamp(_files(tmp_path, "chunks"), time.time() - 7300)
    session = vault.begin_session("writer-dry0001")
    try:  # a live writer: nothing goes, and both say so
        assert both(0) == {**both_zero(), "manifests": 1, "chunks": 5, "deferred_chunks": 3}
    finally:
        session.end()
    deleting = lifecycle.plan_gc(
        vault_row, collect_garbage(vault, grace_seconds=3600, dry_run=True), grace_seconds=3600
    )
    assert [(i.op, i.kind, i.id, i.name, i.bytes, i.note) for i in deleting.items] == [
        (
            "delete",
            "chunks",
            "",
            "3 unreferenced chunks",
            freed,
            "condemned longer than the grace period",
        )
    ]
    assert deleting.bytes_freed == freed and deleting.warnings == ()
    assert both(3600) == {
        **both_zero(),
        "manifests": 1,
        "chunks": 2,
        "deleted_chunks": 3,
        "deleted_bytes": freed,
    }
    assert all(vault.has_chunk(c) for m in vault.manifests() for c in m.referenced())


def both_zero() -> dict:
    return {
        "manifests": 0,
        "chunks": 0,
        "condemned_chunks": 0,
        "condemned_bytes": 0,
        "deleted_chunks": 0,
        "deleted_bytes": 0,
        "deferred_chunks": 0,
        "retained_chunks": 0,  # condemned chunks S3 Object Lock still retains (none here)
        "retained_bytes": 0,
        "retained_free_at": None,
        "locked_backups": 0,
        "locked_until": None,
    }


def test_two_gcs_taking_over_a_lapsed_lock_at_once_get_it_once(tmp_path: Path) -> None:
    """Taking over a lapsed lock deletes it, then creates a new one create-only: of two GCs
    doing so at once, the slower one is refused instead of overwriting the other's lock."""
    vault = _vault(tmp_path)
    vault.gc_lease = 60.0
    _Lock(vault).acquire()
    _stamp([tmp_path / "vault" / "locks" / "gc"], time.time() - 120)  # lapsed
    rival = _Lock(vault)
    store = vault.store
    delete = store.delete

    def rival_wins_the_race(key: str) -> None:
        delete(key)
        if key == GC_LOCK_KEY:
            body = {"owner": rival.owner, "at": time.time()}
            assert store.put(GC_LOCK_KEY, json.dumps(body).encode(), create_only=True)

    store.delete = rival_wins_the_race  # type: ignore[method-assign]
    with pytest.raises(Conflict, match="another garbage collection took this vault's lock"):
        _Lock(vault).acquire()
    store.delete = delete  # type: ignore[method-assign]
    assert json.loads(store.get(GC_LOCK_KEY))["owner"] == rival.owner


def test_a_gc_dry_run_without_grace_counts_what_it_condemns_and_deletes_at_once(
    tmp_path: Path,
) -> None:
    """Found while writing the tests above (docs/mutation.md): with `--grace 0` the run
    condemns unreferenced chunks and deletes them in the same run; the dry run stamped that
    list a second in the future and so counted its chunks as deferred: the plan a user
    confirmed said nothing was freed."""
    vault = _vault(tmp_path)
    vault.trash_manifest(_backup(vault, tmp_path, "atonce01", 3, seed=73).id)
    dry = collect_garbage(vault, grace_seconds=0, dry_run=True)
    real = collect_garbage(vault, grace_seconds=0)
    assert real.deleted_chunks == 3
    assert (dry.deleted_chunks, dry.deferred_chunks) == (real.deleted_chunks, 0)
