"""Snapshots through the real CLI: rollback, to-disk, limits, the OS rule and deletion."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.support.cli import CLI, Result
from tests.support.ledger import Ledger
from tests.test_backup_reliability import refused, said

MiB = 1 << 20


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, "[blockvault]\nmax_snapshots_per_disk = 3\n")


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def job(cli: CLI, *argv: str) -> dict:
    return done(cli(*argv, "--json"))


def done(result: Result) -> dict:
    """What `job` asserts of a job's run (--json): success; returns its result object."""
    assert result.code == 0, result.err
    return json.loads(result.out.strip().splitlines()[-1])


def write(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_rollback_any_number_of_times_and_to_disk(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "4M")
    write(disk["path"], 0, os.urandom(3 * MiB))
    before = digest(disk["path"])
    snap = job(cli, "snapshot", "create", "d1", "--name", "before")
    assert (
        snap["status"] == "available" and snap["disk_name"] == "d1" and snap["path"] == disk["path"]
    )
    for round_ in range(2):
        write(disk["path"], MiB + round_, b"changed" * 500)
        assert digest(disk["path"]) != before
        job(cli, "snapshot", "rollback", "before", "--yes")
        assert digest(disk["path"]) == before
    job(cli, "snapshot", "to-disk", "before", "d1-copy")
    copy = cli.ok("disk", "show", "d1-copy")
    assert digest(copy["path"]) == before and copy["server"] is None
    cli.ok("snapshot", "delete", "before", "--yes")
    assert digest(copy["path"]) == before  # disks made from a snapshot are unaffected


@pytest.mark.slow
def test_deleting_a_disk_deletes_its_snapshots_and_their_bytes(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "4M")
    write(disk["path"], 0, os.urandom(4 * MiB))
    job(cli, "snapshot", "create", "d1")
    folder = Path(disk["path"]).parent
    stored = sum(p.stat().st_blocks * 512 for p in (folder / "snapshots").rglob("*") if p.is_file())
    assert stored > 0
    plan = cli.ok("disk", "delete", "d1", "--dry-run")
    assert len([i for i in plan["items"] if i["kind"] == "snapshot" and i["op"] == "delete"]) == 1
    cli.ok("disk", "delete", "d1", "--yes")
    assert not folder.exists()
    assert cli.ok("snapshot", "list") == []


def test_snapshot_limit_is_a_clear_error(cli: CLI) -> None:
    cli.ok("disk", "create", "d1", "--size", "1M")
    for _ in range(3):
        job(cli, "snapshot", "create", "d1")
    err = cli.fails("snapshot", "create", "d1")
    assert "limit 3" in err


def test_os_changed_deletes_system_snapshots_keeps_data_snapshots(cli: CLI) -> None:
    cli.ok("server", "create", "web1")
    cli.ok("disk", "create", "root", "--size", "1M", "--server", "web1", "--role", "system")
    cli.ok("disk", "create", "data", "--size", "1M", "--server", "web1", "--role", "data")
    job(cli, "snapshot", "create", "root", "--name", "root-s1")
    job(cli, "snapshot", "create", "data", "--name", "data-s1")
    plan = cli.ok("server", "os-changed", "web1", "--dry-run")
    assert [i["name"] for i in plan["items"] if i["op"] == "delete"] == ["root-s1"]
    cli.ok("server", "os-changed", "web1", "--yes")
    assert [s["name"] for s in cli.ok("snapshot", "list")] == ["data-s1"]


def test_rollback_refused_while_another_process_writes_the_disk(
    cli: CLI, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "1M")
    job(cli, "snapshot", "create", "d1", "--name", "s1")
    before = digest(disk["path"])
    with open(disk["path"], "r+b"):
        # our own process is excluded; a child holding it open for writing is not
        import subprocess
        import sys

        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import time; f = open({disk['path']!r}, 'r+b'); print('ok', flush=True); time.sleep(30)",
            ],
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout.readline().strip() == b"ok"
            assert cli.ok("disk", "show", "d1")["status"] == "in-use"
            assert [d["status"] for d in cli.ok("disk", "list")] == ["in-use"]
            refusal = cli("snapshot", "rollback", "s1", "--yes")
            untouched = digest(disk["path"]) == before
        finally:
            holder.kill()
            holder.wait()
    rollback = cli("snapshot", "rollback", "s1", "--yes", "--json")
    fault_ledger.record(
        "concurrency",
        detected=said(refusal, "held open for writing"),
        data_intact=untouched and rollback.code == 0 and digest(disk["path"]) == before,
        note="rollback while another process holds the disk open for writing",
    )
    err = refused(refusal)
    assert "held open for writing" in err
    done(rollback)


@pytest.mark.slow
def test_reinstall_deletes_system_snapshots_only_after_success(
    cli: CLI, tmp_path: Path, fault_ledger: Ledger
) -> None:
    cli.ok("server", "create", "web1")
    root = cli.ok("disk", "create", "root", "--size", "2M", "--server", "web1", "--role", "system")
    cli.ok("disk", "create", "data", "--size", "1M", "--server", "web1")
    write(root["path"], 0, os.urandom(2 * MiB))
    job(cli, "snapshot", "create", "root", "--name", "root-s1")
    job(cli, "snapshot", "create", "data", "--name", "data-s1")
    # a failing reinstall (backup whose chunk is damaged) deletes nothing
    backup = job(cli, "backup", "create", "root")
    victim = next(p for p in sorted((cli.home / "vault" / "chunks").rglob("*")) if p.is_file())
    victim.write_bytes(b"garbage")
    before = Path(root["path"]).read_bytes()
    failed = cli("server", "reinstall", "web1", "--image", backup["id"], "--yes")
    kept = cli.ok("snapshot", "list")
    half = cli.ok("disk", "show", "root")["status"]
    # the safety snapshot taken before the reinstall is the way back, in one step
    undo = cli("disk", "undo", "root", "--yes", "--json")
    shown = cli.ok("disk", "show", "root")
    back = Path(root["path"]).read_bytes() == before
    fault_ledger.record(
        "corrupt",
        detected=failed.code != 0 and "Traceback" not in failed.err,
        data_intact=undo.code == 0
        and back
        and sorted(s["name"] for s in kept if s["kind"] == "user") == ["data-s1", "root-s1"],
        silent_corruption=failed.code == 0,  # reinstalled from a damaged backup, no word
        partial_visible=half == "available",
        note="a reinstall from a backup whose chunk was overwritten with garbage",
    )
    assert failed.code != 0 and "Traceback" not in failed.err
    assert sorted(s["name"] for s in kept if s["kind"] == "user") == ["data-s1", "root-s1"]
    assert [s["disk_name"] for s in kept if s["kind"] == "safety"] == ["root"]
    assert half == "error-restoring"
    done(undo)
    assert (shown["status"], shown["restore_incomplete"]) == ("available", False)
    assert back
    # a successful reinstall from an image file
    image = tmp_path / "debian.img"
    image.write_bytes(b"OSIMAGE" * 100_000)
    plan = cli.ok("server", "reinstall", "web1", "--image", str(image), "--dry-run")
    doomed = [i["name"] for i in plan["items"] if i["op"] == "delete"]
    assert "root-s1" in doomed and "data-s1" not in doomed  # the rollback's safety one goes too
    assert all(name.startswith("root-") for name in doomed)
    job(cli, "server", "reinstall", "web1", "--image", str(image), "--yes")
    names = [s["name"] for s in cli.ok("snapshot", "list") if s["kind"] == "user"]
    assert names == ["data-s1"]
    assert [s["kind"] for s in cli.ok("snapshot", "list", "--disk", "root")] == ["safety"]
    content = Path(root["path"]).read_bytes()
    assert (
        content.startswith(image.read_bytes())
        and content[image.stat().st_size :].count(0) == len(content) - image.stat().st_size
    )


@pytest.mark.slow
def test_safety_snapshot_expires_after_its_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`disk undo` works inside the safety window; after it the safety snapshot is gone."""
    import time

    home = tmp_path / "short"
    home.mkdir()
    (home / "config.toml").write_text("[blockvault]\nsafety_snapshot_hours = 0.0005\n")  # 1.8 s
    cli = CLI(home, capsys)
    disk = cli.ok("disk", "create", "d1", "--size", "1M")
    write(disk["path"], 0, b"first" * 1000)
    job(cli, "snapshot", "create", "d1", "--name", "s1")
    write(disk["path"], 0, b"second" * 1000)
    job(cli, "snapshot", "rollback", "s1", "--yes")
    assert [s["kind"] for s in cli.ok("snapshot", "list", "--disk", "d1")].count("safety") == 1
    time.sleep(2.0)
    assert "nothing to undo" in cli.fails("disk", "undo", "d1", "--yes")
    assert [s["name"] for s in cli.ok("snapshot", "list", "--disk", "d1")] == ["s1"]


def test_a_torn_chunk_left_by_a_crashed_snapshot_is_never_trusted(
    cli: CLI, fault_ledger: Ledger
) -> None:
    """The snapshot store syncs once per commit, so a crash can leave a torn chunk file that
    no manifest names; the next snapshot rewrites it instead of deduplicating against it."""
    import blake3

    disk = cli.ok("disk", "create", "d1", "--size", "8M")
    assert disk["snapshot_strategy"] == "chunks"
    job(cli, "snapshot", "create", "d1", "--name", "s1")
    fresh = os.urandom(4 * MiB)  # the default chunk size
    write(disk["path"], 4 * MiB, fresh)
    chunk_id = blake3.blake3(fresh).hexdigest()
    store = Path(disk["path"]).parent / "snapshots" / "store"
    torn = store / "chunks" / chunk_id[:2] / chunk_id
    torn.parent.mkdir(parents=True, exist_ok=True)
    torn.write_bytes(b"\x00" + fresh[:MiB])  # what a crash mid-write can leave
    job(cli, "snapshot", "create", "d1", "--name", "s2")
    rewritten = torn.read_bytes() != b"\x00" + fresh[:MiB]
    expected = digest(disk["path"])
    write(disk["path"], 4 * MiB, os.urandom(4 * MiB))
    rollback = cli("snapshot", "rollback", "s2", "--yes", "--json")
    same = rollback.code == 0 and digest(disk["path"]) == expected
    fault_ledger.record(
        "kill",
        detected=rewritten,  # the next snapshot stored the chunk again
        data_intact=same,
        silent_corruption=rollback.code == 0 and not same,
        note="a torn chunk file left by a snapshot that crashed before its sync",
    )
    done(rollback)
    assert digest(disk["path"]) == expected
