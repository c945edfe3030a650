"""Backups end to end through the real CLI on a local vault: what an admin would check."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import CLI
from tests.support.ledger import Ledger
from tests.test_backup_reliability import refused, said

MiB = 1 << 20


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(
        tmp_path / "home", capsys, "[blockvault]\nchunk_size = 262144\ngc_grace_seconds = 0\n"
    )


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fill(path: str, size: int, *, seed: int = 1, holes: bool = True) -> None:
    """Random data with holes at odd offsets, like a real, partly used disk."""
    import random

    rng = random.Random(seed)
    with open(path, "r+b") as handle:
        offset = 0
        while offset < size:
            length = min(rng.randrange(10_000, 700_000), size - offset)
            if not holes or rng.random() < 0.6:
                handle.seek(offset)
                handle.write(rng.randbytes(length))
            offset += length + (rng.randrange(1, 300_000) if holes else 0)


def run_json_lines(cli: CLI, *argv: str) -> tuple[list[dict], dict]:
    result = cli(*argv, "--json")
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines() if line.strip()]
    return lines[:-1], lines[-1]


def test_full_then_incremental_backup_and_restore_to_new_disk(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "data1", "--size", "8M")
    fill(disk["path"], 8 * MiB - 12345)
    events, first = run_json_lines(cli, "backup", "create", "data1")
    assert first["type"] == "result" and first["status"] == "available"
    assert first["disk_name"] == "data1" and first["bytes_new"] > 0
    assert "backed up" in first["summary"] and "reused" in first["summary"]
    assert all(e["type"] == "progress" for e in events) and events[-1]["final"]
    # change about 1% and back up again: only changed chunks are stored
    with open(disk["path"], "r+b") as handle:
        handle.seek(3 * MiB + 7)
        handle.write(os.urandom(80_000))
    _, second = run_json_lines(cli, "backup", "create", "data1")
    assert second["parent_id"] == first["id"]
    assert second["bytes_new"] <= 2 * 262144 < first["bytes_new"]
    run_json_lines(cli, "backup", "restore", second["id"], "--to-new", "data1-copy")
    copy = cli.ok("disk", "show", "data1-copy")
    assert copy["status"] == "available" and copy["server"] is None
    with open(copy["path"], "rb") as a, open(disk["path"], "rb") as b:
        assert a.read() == b.read()
    assert os.stat(copy["path"]).st_blocks * 512 < 8 * MiB  # sparse stays sparse
    listed = cli.ok("backup", "list", "--disk", "data1")
    assert [b["id"] for b in listed] == [second["id"], first["id"]]


@pytest.mark.slow
def test_restore_to_original_writes_only_changes_and_undo_returns(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "4M")
    fill(disk["path"], 4 * MiB, seed=2)
    good = digest(disk["path"])
    _, backup = run_json_lines(cli, "backup", "create", "d1")
    with open(disk["path"], "r+b") as handle:
        handle.seek(MiB)
        handle.write(b"oops" * 1000)
    bad = digest(disk["path"])
    assert "--yes" in cli.fails("backup", "restore", backup["id"], "--to-original")
    plan = cli.ok("backup", "restore", backup["id"], "--to-original", "--dry-run")
    assert plan["confirm_text"] == "d1" and plan["allowed"]
    _, result = run_json_lines(cli, "backup", "restore", backup["id"], "--to-original", "--yes")
    assert digest(disk["path"]) == good
    assert result["bytes_written"] <= 262144  # only the changed chunk
    safety = [s for s in cli.ok("snapshot", "list", "--disk", "d1") if s["kind"] == "safety"]
    assert len(safety) == 1
    run_json_lines(cli, "disk", "undo", "d1", "--yes")
    assert digest(disk["path"]) == bad


@pytest.mark.slow
def test_deleting_a_disk_keeps_its_backups_restorable(cli: CLI, fault_ledger: Ledger) -> None:
    disk = cli.ok("disk", "create", "gone", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=3)
    original = Path(disk["path"]).read_bytes()
    _, backup = run_json_lines(cli, "backup", "create", "gone")
    cli.ok("disk", "delete", "gone", "--yes")
    listed = cli.ok("backup", "list")  # every backup, those of deleted disks marked
    assert [b["id"] for b in listed] == [backup["id"]] and listed[0]["disk_deleted"]
    retained = cli.ok("backup", "list", "--all")
    assert [b["id"] for b in retained] == [backup["id"]] and retained[0]["disk_deleted"]
    assert retained[0]["disk_name"] == "gone" and retained[0]["disk_size"] == 2 * MiB
    onto_deleted = cli("backup", "restore", backup["id"], "--to-original", "--yes")
    run_json_lines(cli, "backup", "restore", backup["id"], "--to-new", "reborn")
    reborn = Path(cli.ok("disk", "show", "reborn")["path"]).read_bytes() == original
    fault_ledger.record(
        "hostile",
        detected=said(onto_deleted, "was deleted"),
        data_intact=reborn,  # the backup still restores byte for byte
        note="restore --to-original of a disk that was deleted",
    )
    assert "was deleted" in refused(onto_deleted)
    assert reborn


def test_restore_refuses_smaller_new_disk_and_bad_targets(cli: CLI, fault_ledger: Ledger) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=4)
    before = digest(disk["path"])
    _, backup = run_json_lines(cli, "backup", "create", "d1")
    attempts = [
        (("backup", "restore", backup["id"], "--to-new", "small", "--size", "1M"),
         "smaller than the backup"),
        (("backup", "restore", backup["id"], "--to-new", "d1"), "already exists"),
        (("backup", "restore", "nope", "--to-new", "x"), "no backup named"),
    ]  # fmt: skip
    outcomes = [cli(*argv) for argv, _ in attempts]
    disks = sorted(d["name"] for d in cli.ok("disk", "list"))
    untouched = digest(disk["path"]) == before and disks == ["d1"]  # no disk made or written
    for (argv, says), result in zip(attempts, outcomes, strict=True):
        fault_ledger.record(
            "hostile",
            detected=said(result, says),
            data_intact=untouched,
            note=" ".join(argv[:2] + argv[3:]),
        )
    for (_, says), result in zip(attempts, outcomes, strict=True):
        assert says in refused(result)


@pytest.mark.slow
def test_verify_names_the_damaged_chunk(cli: CLI, fault_ledger: Ledger) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=5, holes=False)
    _, backup = run_json_lines(cli, "backup", "create", "d1")
    _, report = run_json_lines(cli, "backup", "verify", backup["id"])
    assert report["ok"]
    chunks = sorted((cli.home / "vault" / "chunks").rglob("*"))
    victim = next(p for p in chunks if p.is_file())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = cli("backup", "verify", backup["id"])
    failed = cli("backup", "restore", backup["id"], "--to-new", "bad-copy")
    wrong_bytes = failed.code == 0 and digest(cli.ok("disk", "show", "bad-copy")["path"]) != digest(
        disk["path"]
    )
    fault_ledger.record(
        "corrupt",
        detected=said(result, "chunk", "offset"),
        data_intact=not wrong_bytes,  # refused, or (if restored) the right bytes
        silent_corruption=result.code == 0 or wrong_bytes,
        note="one byte of a chunk flipped; verify, then restore",
    )
    assert result.code != 0
    assert "chunk" in result.err and "offset" in result.err
    assert failed.code != 0 and "Traceback" not in failed.err


@pytest.mark.slow
def test_backup_delete_then_gc_frees_only_unreferenced_chunks(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=6, holes=False)
    _, first = run_json_lines(cli, "backup", "create", "d1")
    fill(disk["path"], 2 * MiB, seed=7, holes=False)
    _, second = run_json_lines(cli, "backup", "create", "d1")
    shown = cli.ok("backup", "show", first["id"])
    assert shown["unique_bytes"] > 0
    plan = cli.ok("backup", "delete", first["id"], "--dry-run")
    assert plan["bytes_freed"] == shown["unique_bytes"]
    cli.ok("backup", "delete", first["id"], "--yes")
    _, gc = run_json_lines(cli, "vault", "gc")
    assert gc["deleted_chunks"] > 0
    run_json_lines(cli, "backup", "restore", second["id"], "--to-new", "after-gc")
    assert digest(cli.ok("disk", "show", "after-gc")["path"]) == digest(disk["path"])


@pytest.mark.slow
def test_catalog_rebuilt_from_the_vault(cli: CLI, fault_ledger: Ledger) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=8)
    _, backup = run_json_lines(cli, "backup", "create", "d1")
    for name in os.listdir(cli.home):
        if name.startswith("catalog.sqlite"):
            os.remove(cli.home / name)
    assert cli.ok("backup", "list", "--all") == []
    cli.ok("vault", "add", "local", "--path", str(cli.home / "vault"))
    imported = cli.ok("vault", "import", "local")
    run_json_lines(cli, "backup", "restore", backup["id"], "--to-new", "rebuilt")
    restored = digest(cli.ok("disk", "show", "rebuilt")["path"]) == digest(disk["path"])
    fault_ledger.rebuild(
        ok=[(b["id"], b["disk_name"], b["size"]) for b in imported]
        == [(backup["id"], "d1", backup["size"])]
        and restored
    )
    assert [b["id"] for b in imported] == [backup["id"]]
    assert imported[0]["disk_name"] == "d1" and imported[0]["size"] == backup["size"]
    assert restored


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 (e2fsprogs) not installed")
def test_ext4_image_round_trip_is_fsck_clean(cli: CLI, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("web1\n")
    (tree / "blob.bin").write_bytes(os.urandom(700_000))
    for i in range(50):
        (tree / f"file{i}.txt").write_text(f"line {i}\n" * (i * 40 + 1))
    image = tmp_path / "fs.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image), "24M"], check=True)
    cli.ok("disk", "register", "fs", "--path", str(image))
    _, backup = run_json_lines(cli, "backup", "create", "fs")
    run_json_lines(cli, "backup", "restore", backup["id"], "--to-new", "fs-copy")
    copy = cli.ok("disk", "show", "fs-copy")["path"]
    assert digest(copy) == digest(image)
    fsck = subprocess.run(["e2fsck", "-fn", copy], capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_vault_remove_refused_while_backups_reference_it(cli: CLI, tmp_path: Path) -> None:
    cli.ok("vault", "add", "second", "--path", str(tmp_path / "v2"))
    disk = cli.ok("disk", "create", "d1", "--size", "1M")
    fill(disk["path"], MiB, seed=9)
    run_json_lines(cli, "backup", "create", "d1", "--vault", "second")
    assert "holds 1 backup" in cli.fails("vault", "remove", "second", "--yes")
    vaults = {v["name"]: v for v in cli.ok("vault", "list")}
    assert vaults["second"]["backups"] == 1 and "local" in vaults
    shown = cli.ok("vault", "show", "second")
    assert shown["stored_bytes"] > 0 and shown["logical_bytes"] >= shown["stored_bytes"] / 2
    cli.ok("vault", "remove", "second", "--yes", "--force")
    assert "second" not in {v["name"] for v in cli.ok("vault", "list")}
    assert "--path" in cli.fails("vault", "add", "x")


@pytest.mark.slow
def test_undo_after_restore_uses_the_backup_for_chunks_the_restore_kept(cli: CLI) -> None:
    """The safety snapshot before a restore stores only what the restore overwrites; an undo
    after later writes elsewhere fetches the other chunks from the backup itself."""
    disk = cli.ok("disk", "create", "d1", "--size", "2M")
    fill(disk["path"], 2 * MiB, seed=12, holes=False)
    _, backup = run_json_lines(cli, "backup", "create", "d1")
    with open(disk["path"], "r+b") as handle:
        handle.seek(10)
        handle.write(b"before-restore" * 100)
    before_restore = Path(disk["path"]).read_bytes()
    _, result = run_json_lines(cli, "backup", "restore", backup["id"], "--to-original", "--yes")
    assert result["bytes_written"] == 262144 and result["bytes_fetched"] == 262144
    safety = next(s for s in cli.ok("snapshot", "list", "--disk", "d1") if s["kind"] == "safety")
    assert safety["bytes_stored"] <= 262144 + 4096  # only the chunk the restore overwrote
    with open(disk["path"], "r+b") as handle:  # a later write the restore never touched
        handle.seek(MiB + 5)
        handle.write(b"after-restore" * 100)
    run_json_lines(cli, "disk", "undo", "d1", "--yes")
    assert Path(disk["path"]).read_bytes() == before_restore


def test_backup_plan_says_full_then_incremental_and_refuses_a_half_restored_disk(
    cli: CLI, fault_ledger: Ledger
) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "1M")
    fill(disk["path"], MiB, seed=13)
    first = cli.ok("backup", "create", "d1", "--dry-run")
    assert first["route"].startswith("full") and first["allowed"] and not first["destructive"]
    assert cli.ok("backup", "list") == []  # a dry run backs up nothing
    _, backup = run_json_lines(cli, "backup", "create", "d1")
    second = cli.ok("backup", "create", "d1", "--dry-run")
    assert second["route"].startswith(f"incremental from {backup['name']}")
    # a restore into a new disk that was interrupted leaves it error-restoring: no backup of it
    from core.api import Blockvault

    bv = Blockvault.open(home=cli.home)
    bv.create_disk("half", MiB)
    from core.jobs.claims import release_disk

    release_disk(
        bv.ctx, bv.get_disk("half")["id"], job_id=None, status="error-restoring", incomplete=True
    )
    result = cli("backup", "create", "half")
    listed = cli.ok("backup", "list", "--all")
    of_half = [b for b in listed if b["disk_name"] == "half"]
    fault_ledger.record(
        "kill",
        detected=said(result, "incomplete"),
        data_intact=[b["id"] for b in listed if b["disk_name"] == "d1"] == [backup["id"]],
        silent_corruption=result.code == 0,  # a half-written disk backed up as if whole
        partial_visible=bool(of_half),
        note="a backup of a disk left half-restored by an interrupted restore",
    )
    assert "incomplete" in refused(result)
