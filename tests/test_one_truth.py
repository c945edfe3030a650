"""The plan shown is the plan executed; every overwrite has a safety net (issue "One truth").

Each test reproduces a finding of that issue with the real CLI (in-process or as a child
process killed with SIGKILL), then checks what a user would: the bytes of the disk, its
status and mark, the refusal line, and that nothing partial is left behind.
"""

from __future__ import annotations

import os

import pytest
from sqlmodel import select

from core.api import Blockvault, PlanChanged
from core.base.errors import NotFound
from tests import test_backup_reliability as reliability
from tests.support.cli import CLI
from tests.support.faultproxy import FaultProxy, Rule
from tests.test_backup_reliability import (
    MiB,
    fill,
    kill_after_progress,
    run_job,
    sha,
    spawn_cli,
)

cli = reliability.cli  # the same fixtures: a home with small chunks, an S3 vault behind a proxy
slow_s3 = reliability.slow_s3

#: every test runs on SQLite and on PostgreSQL (tests/conftest.py: `catalog_backend`)
pytestmark = pytest.mark.usefixtures("catalog_backend")


def catalog_ok(cli: CLI) -> None:
    """SQLite's integrity check of the home's catalog file; a catalog on PostgreSQL has no
    file there (the server keeps its own consistency)."""
    if not os.environ.get("BLOCKVAULT_CATALOG"):
        reliability.catalog_ok(cli)


@pytest.mark.slow
def test_undo_after_an_interrupted_restore_then_to_new_refuses_the_name(
    cli: CLI, slow_s3: FaultProxy
) -> None:
    """Kill a --to-original restore at ~30%, `disk undo` returns the disk as it was and clears
    the mark in one step; then `--to-new db` is refused (it once overwrote db)."""
    disk = cli.ok("disk", "create", "db", "--size", "16M")
    fill(disk["path"], 16 * MiB, seed=1)
    backup = run_job(cli, "backup", "create", "db", "--vault", "s3")
    fill(disk["path"], 16 * MiB, seed=2)  # what the admin has now, and wants back by undo
    before = sha(disk["path"])
    slow_s3.add(Rule("stall", None, "GET", path="/chunks/", seconds=0.08))

    def restoring_a_third(event: dict) -> bool:
        return event["phase"] == "restoring" and event["bytes_done"] >= 5 * MiB

    child = spawn_cli(cli, "backup", "restore", backup["id"], "--to-original", "--yes")
    kill_after_progress(child, restoring_a_third)
    slow_s3.clear()
    catalog_ok(cli)
    shown = cli.ok("disk", "show", "db")
    assert (shown["status"], shown["restore_incomplete"]) == ("error-restoring", True)
    assert sha(disk["path"]) != before, "the kill must land in the middle of the overwrite"

    plan = cli.ok("disk", "undo", "db", "--dry-run")
    assert "clears the incomplete mark" in plan["items"][0]["note"]
    run_job(cli, "disk", "undo", "db", "--yes")
    assert sha(disk["path"]) == before
    shown = cli.ok("disk", "show", "db")
    assert (shown["status"], shown["restore_incomplete"]) == ("available", False)

    other = cli.ok("disk", "create", "other", "--size", "1M")
    fill(other["path"], MiB, seed=3)
    other_backup = run_job(cli, "backup", "create", "other")
    dry = cli("backup", "restore", other_backup["id"], "--to-new", "db", "--dry-run")
    assert dry.code != 0 and "already exists" in dry.err
    assert "already exists" in cli.fails("backup", "restore", other_backup["id"], "--to-new", "db")
    assert sha(disk["path"]) == before


@pytest.mark.slow
def test_a_killed_safety_snapshot_is_cleaned_up_and_the_disk_released(cli: CLI) -> None:
    """SIGKILL during the safety snapshot of a rollback: the next process removes the half
    snapshot and gives the untouched disk back as it was."""
    disk = cli.ok("disk", "create", "d", "--size", "96M")
    fill(disk["path"], 96 * MiB, seed=4)
    run_job(cli, "snapshot", "create", "d", "--name", "s1")
    fill(disk["path"], 96 * MiB, seed=5)
    before = sha(disk["path"])
    child = spawn_cli(cli, "snapshot", "rollback", "s1", "--yes")
    kill_after_progress(child, lambda event: event["phase"] == "snapshotting")
    catalog_ok(cli)
    snapshots = cli.ok("snapshot", "list", "--disk", "d")
    assert [(s["name"], s["status"]) for s in snapshots] == [("s1", "available")]
    shown = cli.ok("disk", "show", "d")
    assert (shown["status"], shown["restore_incomplete"]) == ("available", False)
    assert sha(disk["path"]) == before
    store = cli.home / "pool" / disk["id"] / "snapshots" / "store" / "manifests"
    assert sorted(p.name for p in store.iterdir()) == [snapshots[0]["id"]]


@pytest.mark.slow
def test_undo_after_an_interrupted_rollback_returns_the_disk_before_it(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "128M")
    fill(disk["path"], 128 * MiB, seed=6)
    run_job(cli, "snapshot", "create", "d", "--name", "s1")
    fill(disk["path"], 128 * MiB, seed=7)
    before = sha(disk["path"])
    child = spawn_cli(cli, "snapshot", "rollback", "s1", "--yes")
    kill_after_progress(
        child, lambda e: e["phase"] == "rolling back" and e["bytes_done"] >= 16 * MiB
    )
    shown = cli.ok("disk", "show", "d")
    assert (shown["status"], shown["restore_incomplete"]) == ("error-rolling-back", True)
    assert sha(disk["path"]) != before
    run_job(cli, "disk", "undo", "d", "--yes")  # the first undo is the right one
    assert sha(disk["path"]) == before
    shown = cli.ok("disk", "show", "d")
    assert (shown["status"], shown["restore_incomplete"]) == ("available", False)


def test_the_snapshot_a_rollback_reads_cannot_be_deleted_under_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bv = Blockvault.open(home=tmp_path / "home")
    disk = bv.create_disk("d", 16 * MiB)
    fill(disk["path"], 16 * MiB, seed=8)
    bv.start_snapshot("d", name="s1").run()
    rollback = bv.start_rollback("s1", plan=bv.plan_rollback("s1"))  # claimed, not yet run
    try:
        refused = bv.plan_delete_snapshot("s1")
        assert f"is being read by job {rollback.id}" in refused.refusal
        with pytest.raises(Exception, match="is being read by job"):
            bv.delete_snapshot("s1")
    finally:
        rollback.run()
    assert rollback.status == "succeeded"
    bv.delete_snapshot("s1", plan=bv.plan_delete_snapshot("s1"))  # free again once it ended
    bv.close()


def test_a_plan_that_changed_since_it_was_shown_is_refused_with_the_new_plan(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bv = Blockvault.open(home=tmp_path / "home")
    disk = bv.create_disk("d", MiB)
    shown = bv.plan_delete_disk("d")
    assert not shown.of("delete", "snapshot")
    bv.start_snapshot("d", name="late").run()  # another admin's snapshot, after the plan
    with pytest.raises(PlanChanged) as refused:
        bv.delete_disk("d", plan=shown)
    assert "the plan changed" in str(refused.value)
    assert [i.name for i in refused.value.plan.of("delete", "snapshot")] == ["late"]
    assert bv.get_disk("d")["id"] == disk["id"], "nothing was done"
    bv.delete_disk("d", plan=refused.value.plan)  # the new plan, confirmed, runs
    bv.close()


def test_a_refused_vault_remove_is_refused_by_its_dry_run_too(cli: CLI) -> None:
    cli.ok("disk", "create", "d", "--size", "1M")
    run_job(cli, "backup", "create", "d")
    dry = cli("vault", "remove", "local", "--dry-run")
    assert dry.code != 0 and "holds 1 backup" in dry.err
    assert "holds 1 backup" in cli.fails("vault", "remove", "local", "--yes")


def test_two_backups_with_one_name_never_both_land(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A backup's name is taken when its disk is claimed, not when it finishes."""
    bv = Blockvault.open(home=tmp_path / "home")
    for name in ("a", "b"):
        bv.create_disk(name, MiB)
    first = bv.start_backup("a", name="nightly")
    with pytest.raises(Exception, match="already exists"):
        bv.start_backup("b", name="nightly")
    first.run()
    assert [b["name"] for b in bv.list_backups()] == ["nightly"]
    bv.close()


def test_an_incremental_dry_run_does_not_claim_to_send_the_whole_disk(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "8M")
    fill(disk["path"], 8 * MiB, seed=9)
    assert cli.ok("backup", "create", "d", "--dry-run")["items"][0]["bytes"] == 8 * MiB
    run_job(cli, "backup", "create", "d")
    incremental = cli.ok("backup", "create", "d", "--dry-run")
    assert incremental["items"][0]["bytes"] == 0
    assert "sends only changed chunks" in incremental["route"]


def test_policy_run_dry_run_shows_what_retention_deletes(cli: CLI) -> None:
    cli.ok("disk", "create", "d", "--size", "1M")
    cli.ok("policy", "create", "p", "--disk", "d", "--keep-last", "1")
    for _ in range(2):
        cli.ok("policy", "run", "p", "--now")
    mine = [b["id"] for b in cli.ok("backup", "list")]
    dry = cli.ok("policy", "run", "p", "--now", "--dry-run")
    assert dry[0]["backs_up"] == ["d"]
    # keep-last 1 applies after this run's own backup: both existing ones go
    assert [i["id"] for i in dry[0]["retention"]["items"]] == mine
    assert [b["id"] for b in cli.ok("backup", "list")] == mine, "a dry run deletes nothing"


def test_os_reinstall_is_undoable(cli: CLI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cli.ok("server", "create", "web1")
    root = cli.ok("disk", "create", "root", "--size", "4M", "--server", "web1", "--role", "system")
    fill(root["path"], 4 * MiB, seed=10)
    before = sha(root["path"])
    image = tmp_path / "os.img"
    image.write_bytes(os.urandom(MiB))
    plan = cli.ok("server", "reinstall", "web1", "--image", str(image), "--dry-run")
    assert [i["kind"] for i in plan["items"] if i["op"] == "create"] == ["snapshot"]
    run_job(cli, "server", "reinstall", "web1", "--image", str(image), "--yes")
    assert sha(root["path"]) != before
    run_job(cli, "disk", "undo", "root", "--yes")
    assert sha(root["path"]) == before


@pytest.mark.slow
def test_gc_dry_run_says_what_the_run_deletes_and_what_it_only_condemns(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "4M")
    fill(disk["path"], 4 * MiB, seed=11)
    first = run_job(cli, "backup", "create", "d")
    fill(disk["path"], 2 * MiB, seed=12)
    run_job(cli, "backup", "create", "d")
    cli.ok("backup", "delete", first["id"], "--yes")
    chunks = cli.home / "vault" / "chunks"

    def stored() -> int:
        return sum(p.stat().st_size for p in chunks.rglob("*") if p.is_file())

    waiting = cli.ok("vault", "gc", "--grace", "3600", "--dry-run")
    assert [i["op"] for i in waiting["items"]] == ["keep"] and waiting["bytes_freed"] == 0
    condemned = waiting["items"][0]["bytes"]
    before = stored()
    run_job(cli, "vault", "gc", "--grace", "3600")
    assert stored() == before, "inside the grace period nothing is deleted"
    now = cli.ok("vault", "gc", "--grace", "0", "--dry-run")
    assert now["bytes_freed"] == condemned > 0
    run_job(cli, "vault", "gc", "--grace", "0")
    assert before - stored() == condemned


def test_what_a_job_reads_or_an_undo_needs_cannot_be_deleted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bv = Blockvault.open(home=tmp_path / "home")
    disk = bv.create_disk("d", 4 * MiB)
    fill(disk["path"], 4 * MiB, seed=13)
    first = bv.start_backup("d")  # claimed: its row exists as `creating`, not listed
    assert bv.list_backups() == []
    assert "is busy" in bv.plan_delete_disk("d").refusal
    first.run()
    backup = bv.list_backups()[0]["id"]
    verify = bv.start_verify(backup)  # queued: it reads the backup
    assert f"being read by job {verify.id}" in bv.plan_delete_backup(backup).refusal
    verify.run()
    fill(disk["path"], 4 * MiB, seed=14)
    bv.start_restore(backup, to_original=True, plan=bv.plan_restore(backup, to_original=True)).run()
    refused = bv.plan_delete_backup(backup).refusal
    assert "the undo of disk" in refused and "safety snapshot" in refused
    assert "reads chunks from vault" in bv.plan_remove_vault("local", force=True).refusal
    bv.close()


def test_a_job_cancelled_before_it_started_touches_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bv = Blockvault.open(home=tmp_path / "home")
    disk = bv.create_disk("d", 4 * MiB)
    fill(disk["path"], 4 * MiB, seed=15)
    bv.start_snapshot("d", name="s1").run()
    fill(disk["path"], 4 * MiB, seed=16)
    before = sha(disk["path"])
    rollback = bv.start_rollback("s1", plan=bv.plan_rollback("s1"))
    assert bv.cancel_job(rollback.id)["status"] == "cancelled"
    rollback.run()
    assert rollback.status == "cancelled"
    assert sha(disk["path"]) == before
    shown = bv.get_disk("d")
    assert (shown["status"], shown["restore_incomplete"]) == ("available", False)
    assert [s["name"] for s in bv.list_snapshots(disk="d")] == ["s1"]
    bv.close()


def test_a_plan_whose_disk_was_deleted_meanwhile_is_a_clear_refusal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The race test's find: a rollback planned while a disk delete commits said
    AttributeError; now it says the snapshot went with its disk."""
    from core.catalog.models import Snapshot
    from core.ops import snapshots as snapshot_ops

    bv = Blockvault.open(home=tmp_path / "home")
    bv.create_disk("d", MiB)
    bv.start_snapshot("d", name="s1").run()
    with bv.ctx.catalog.session() as session:
        snapshot = session.exec(select(Snapshot).where(Snapshot.name == "s1")).one()
        bv.delete_disk("d", plan=bv.plan_delete_disk("d"))  # another process, in effect
        with pytest.raises(NotFound, match="its disk was just deleted"):
            snapshot_ops._rollback_plan(bv.ctx, session, snapshot, force=False)
        with pytest.raises(NotFound, match="its disk was just deleted"):
            snapshot_ops._delete_plan(bv.ctx, session, snapshot, measure=True)
    bv.close()
