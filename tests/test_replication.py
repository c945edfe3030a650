"""Replication (issue 12): `backup copy --to-vault`, a policy's `--replicate-to`, and restores
that read a replica when a backup's own vault is gone. Real vaults (local directories and
SeaweedFS buckets), the real CLI, as an admin would use them."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.api import Blockvault, PlanChanged
from core.base.errors import IntegrityError
from core.repo.repository import Repository
from core.stores.local import LocalStore
from tests.support.cli import CLI, Result, spawn_cli
from tests.support.faultproxy import FaultProxy, Rule
from tests.support.ledger import Ledger
from tests.support.seaweed import S3Server

KiB, MiB = 1 << 10, 1 << 20
CHUNK = 256 * KiB
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\ngc_grace_seconds = 0\n"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def job(cli: CLI, *argv: str) -> dict:
    """Run a job verb with --json; its final result object."""
    result = cli(*argv, "--json")
    assert result.code == 0, result.err
    last = json.loads(result.out.strip().splitlines()[-1])
    assert last["type"] == "result", last
    return last


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def scribble(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def make_disk(cli: CLI, name: str, size: int, seed: int) -> dict:
    """A disk whose first three quarters hold random data (the rest a hole)."""
    disk = cli.ok("disk", "create", name, "--size", str(size))
    scribble(disk["path"], 0, random.Random(seed).randbytes(size * 3 // 4))
    return disk


def chunk_ids(vault: Path) -> set[str]:
    return {p.name for p in (vault / "chunks").rglob("*") if p.is_file()}


def restored(cli: CLI, backup_id: str, name: str) -> str:
    """Restore a backup into a new disk; the new disk's digest."""
    result = job(cli, "backup", "restore", backup_id, "--to-new", name)
    return sha(result["path"])


# --- (a) local -> local: only missing chunks travel -------------------------------------------


@pytest.mark.slow
def test_copy_sends_only_missing_chunks_and_restores_identical(cli: CLI, tmp_path: Path) -> None:
    cli.ok("vault", "add", "main", "--path", str(tmp_path / "main"))
    cli.ok("vault", "add", "offsite", "--path", str(tmp_path / "offsite"))
    disk = make_disk(cli, "web", 4 * MiB, seed=1)
    first = job(cli, "backup", "create", "web", "--vault", "main")

    plan = cli.ok("backup", "copy", first["id"], "--to-vault", "offsite", "--dry-run")
    assert plan["allowed"] and plan["action"] == "copy backup"
    assert "vault main -> vault offsite" in plan["route"]
    copy = job(cli, "backup", "copy", first["id"], "--to-vault", "offsite")
    assert copy["vault"] == "offsite" and copy["copy_of"] == first["id"]
    assert copy["bytes_sent"] == 3 * MiB and copy["bytes_reused"] == 0
    assert copy["digest"] == first["digest"]  # unencrypted vaults: the same chunk ids
    assert "as " + copy["name"] in copy["summary"]

    # an incremental backup, then its copy: only the changed chunk travels
    scribble(disk["path"], 100, b"x" * 5000)
    second = job(cli, "backup", "create", "web", "--vault", "main")
    again = job(cli, "backup", "copy", second["id"], "--to-vault", "offsite")
    assert again["bytes_sent"] == CHUNK and again["chunks_sent"] == 1
    assert again["bytes_reused"] == 3 * MiB - CHUNK
    assert again["parent_id"] == copy["id"]
    assert chunk_ids(tmp_path / "offsite") == chunk_ids(tmp_path / "main")

    # listed and shown as replicas of their sources
    listed = {b["id"]: b for b in cli.ok("backup", "list")}
    assert (
        listed[again["id"]]["copy_of"] == second["id"] and listed[second["id"]]["copy_of"] is None
    )
    shown = cli.ok("backup", "show", second["id"])
    assert shown["copies"] == [{"id": again["id"], "name": again["name"], "vault": "offsite"}]
    assert cli.ok("backup", "show", again["id"])["copy_of_vault"] == "main"
    assert job(cli, "backup", "verify", again["id"])["ok"]

    # the copy is a backup of its own: it restores byte for byte
    assert restored(cli, again["id"], "from-copy") == sha(disk["path"])

    # a new host that imports only the offsite vault finds the copies, linked to their sources
    other = CLI(tmp_path / "other-host", cli.capsys)
    other.ok("vault", "add", "offsite", "--path", str(tmp_path / "offsite"))
    imported = {b["id"]: b for b in other.ok("vault", "import", "offsite")}
    assert imported[again["id"]]["copy_of"] == second["id"]
    assert imported[copy["id"]]["copy_of"] == first["id"]


def test_the_vault_a_confirmed_restore_reads_is_the_one_it_runs_with(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG)
    bv = Blockvault.open(home=home)
    try:
        bv.add_vault("main", path=str(tmp_path / "main"))
        bv.add_vault("offsite", path=str(tmp_path / "offsite"))
        disk = bv.create_disk("d", MiB)
        scribble(disk["path"], 0, random.Random(7).randbytes(MiB // 2))
        backup = bv.start_backup("d", vault="main").start().wait()
        bv.start_copy(backup["id"], to_vault="offsite").start().wait()
        # while its own vault is reachable, a restore reads it and says nothing else
        assert (
            "reads_vault"
            not in bv.plan_restore(backup["id"], to_original=False, new_name="a").extra
        )
        (tmp_path / "main").rename(tmp_path / "away")
        plan = bv.plan_restore(backup["id"], to_original=False, new_name="b")
        assert plan.extra["reads_vault"] == "offsite"
        (tmp_path / "main").rmdir()  # left by the probe; the vault comes back
        (tmp_path / "away").rename(tmp_path / "main")
        with pytest.raises(PlanChanged):  # confirmed: read offsite; now it would read main
            bv.start_restore(backup["id"], to_original=False, new_name="b", plan=plan)
        result = bv.start_restore(backup["id"], to_original=False, new_name="b").start().wait()
        assert result["read_from_vault"] == "main" and sha(result["path"]) == sha(disk["path"])
    finally:
        bv.close()


# --- (b) S3 -> S3: the primary bucket deleted, the restore reads the replica ---------------


def add_s3(cli: CLI, server: S3Server, name: str, bucket: str) -> dict:
    return cli.ok(
        "vault", "add", name,
        "--s3", f"s3://{bucket}/vault",
        "--endpoint-url", server.endpoint_url,
        "--region", server.region,
        "--addressing-style", "path",
    )  # fmt: skip


def delete_bucket(server: S3Server, bucket: str) -> None:
    """Every object, then the bucket itself (what losing a region or an account looks like)."""
    client = server.client()
    while True:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        if not listed:
            break
        for item in listed:
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


def test_s3_replica_restores_after_the_primary_bucket_is_deleted(
    cli: CLI, s3_server: S3Server, fault_ledger: Ledger
) -> None:
    primary, offsite = s3_server.make_bucket(), s3_server.make_bucket()
    add_s3(cli, s3_server, "primary", primary)
    add_s3(cli, s3_server, "offsite", offsite)
    disk = make_disk(cli, "db", 4 * MiB, seed=2)
    backup = job(cli, "backup", "create", "db", "--vault", "primary")
    copy = job(cli, "backup", "copy", backup["id"], "--to-vault", "offsite")
    assert copy["bytes_sent"] == 3 * MiB

    delete_bucket(s3_server, primary)
    plan = cli.ok("backup", "restore", backup["id"], "--to-new", "db-back", "--dry-run")
    assert plan["allowed"]
    assert plan["extra"]["reads_vault"] == "offsite"
    assert "reads vault offsite" in plan["route"] and "vault primary unreachable" in plan["route"]
    assert f"replica {copy['name']}" in plan["route"]
    result = job(cli, "backup", "restore", backup["id"], "--to-new", "db-back")
    intact = sha(result["path"]) == sha(disk["path"])
    fault_ledger.record(
        "network",
        detected=plan["extra"]["reads_vault"] == "offsite",
        data_intact=intact,
        note="primary S3 bucket deleted; the restore read its replica in another bucket",
    )
    assert result["read_from_vault"] == "offsite"
    assert intact
    # the lost vault's backup is still described, with its reachable copy
    shown = cli.ok("backup", "show", backup["id"])
    assert shown["unique_bytes"] is None and "does not exist" in shown["vault_error"]
    assert [c["vault"] for c in shown["copies"]] == ["offsite"]


# --- (c) encrypted -> encrypted: re-encrypted under the target's key -------------------------


@pytest.mark.slow
def test_encrypted_copy_is_reencrypted_with_the_target_key(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", "first secret one")
    cli.ok("vault", "add", "main", "--path", str(tmp_path / "main"), "--encrypt")
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", "second secret two")
    cli.ok("vault", "add", "offsite", "--path", str(tmp_path / "offsite"), "--encrypt")
    disk = cli.ok("disk", "create", "secret", "--size", str(2 * MiB))
    marker = b"PLAINTEXT-MARKER-" * 64
    scribble(disk["path"], 0, random.Random(3).randbytes(MiB) + marker)

    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", "first secret one")
    backup = job(cli, "backup", "create", "secret", "--vault", "main")
    # the target's passphrase by its own variable; without it the copy is refused, one line
    assert "wrong passphrase" in cli.fails("backup", "copy", backup["id"], "--to-vault", "offsite")
    assert len(cli.ok("backup", "list")) == 1  # no copy row left behind
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE_OFFSITE", "second secret two")
    copy = job(cli, "backup", "copy", backup["id"], "--to-vault", "offsite")
    assert copy["bytes_sent"] > MiB

    main_ids, offsite_ids = chunk_ids(tmp_path / "main"), chunk_ids(tmp_path / "offsite")
    assert main_ids and offsite_ids and not main_ids & offsite_ids  # keyed ids differ per key
    assert copy["digest"] != backup["digest"]
    for path in (tmp_path / "offsite").rglob("*"):
        assert not path.is_file() or b"PLAINTEXT-MARKER" not in path.read_bytes()
    # the copy's chunks open with the offsite key only
    main = Repository.open(LocalStore(tmp_path / "main"), passphrase="first secret one")
    offsite = Repository.open(LocalStore(tmp_path / "offsite"), passphrase="second secret two")
    one = sorted(offsite_ids)[0]
    blob = (tmp_path / "offsite" / "chunks" / one[:2] / one).read_bytes()
    assert len(offsite.decode_chunk(one, blob)) > 0
    with pytest.raises(IntegrityError):
        main.decode_chunk(one, blob)

    # an incremental copy reads and sends only the changed chunk (earlier copy's ids reused)
    scribble(disk["path"], 10, b"y" * 100)
    second = job(cli, "backup", "create", "secret", "--vault", "main")
    again = job(cli, "backup", "copy", second["id"], "--to-vault", "offsite")
    assert again["bytes_sent"] == CHUNK and again["bytes_read"] == CHUNK

    # the copy restores with the offsite passphrase alone
    monkeypatch.delenv("BLOCKVAULT_PASSPHRASE_OFFSITE")
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", "first secret one")
    assert "passphrase" in cli.fails("backup", "restore", again["id"], "--to-new", "wrong-key")
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", "second secret two")
    assert restored(cli, again["id"], "from-offsite") == sha(disk["path"])


# --- (d) a copy killed mid-way, then run again ----------------------------------------------


@pytest.fixture
def slow_offsite(cli: CLI, s3_server: S3Server) -> Iterator[FaultProxy]:
    """An S3 vault `offsite` reached through a fault proxy (stalls make a slow network)."""
    (cli.home / "config.toml").write_text(CONFIG + "workers = 2\n")
    with FaultProxy(("127.0.0.1", s3_server.port)) as proxy:
        cli.ok(
            "vault", "add", "offsite",
            "--s3", f"s3://{s3_server.shared_bucket}/{s3_server.fresh_prefix()}",
            "--endpoint-url", proxy.endpoint_url,
            "--region", s3_server.region,
            "--addressing-style", "path",
        )  # fmt: skip
        yield proxy


def kill_mid_way(child: subprocess.Popen[str], least: int) -> dict:
    """SIGKILL the child at its first progress line past `least` bytes done."""
    try:
        for line in child.stdout:  # type: ignore[union-attr]
            event = json.loads(line)
            assert event["type"] == "progress", f"finished before the kill: {event}"
            if not event["final"] and event["bytes_done"] >= least:
                os.kill(child.pid, signal.SIGKILL)
                return event
        raise AssertionError(f"no progress line: {child.stderr.read()}")  # type: ignore[union-attr]
    finally:
        child.kill()
        child.wait()


def test_a_killed_copy_leaves_nothing_visible_and_resumes(
    cli: CLI, tmp_path: Path, slow_offsite: FaultProxy, fault_ledger: Ledger
) -> None:
    cli.ok("vault", "add", "main", "--path", str(tmp_path / "main"))
    disk = cli.ok("disk", "create", "big", "--size", str(16 * MiB))
    scribble(disk["path"], 0, random.Random(4).randbytes(16 * MiB))
    backup = job(cli, "backup", "create", "big", "--vault", "main")
    slow_offsite.add(Rule("stall", None, "PUT", path="/chunks/", seconds=0.05))
    event = kill_mid_way(
        spawn_cli(cli, "backup", "copy", backup["id"], "--to-vault", "offsite"), 2 * MiB
    )
    assert event["bytes_done"] < 16 * MiB
    slow_offsite.clear()

    listed = cli.ok("backup", "list")
    copy_job = next(j for j in cli.ok("job", "list") if j["kind"] == "copy")
    again = job(cli, "backup", "copy", backup["id"], "--to-vault", "offsite")
    intact = restored(cli, again["id"], "resumed") == sha(disk["path"])
    fault_ledger.record(
        "kill",
        detected=copy_job["status"] == "failed" and "interrupted" in (copy_job["error"] or ""),
        data_intact=intact,
        partial_visible=[b["id"] for b in listed] != [backup["id"]],
        note="kill -9 of a copy into S3 mid-way, then copied again",
    )
    assert [b["id"] for b in listed] == [backup["id"]]  # no partial copy listed
    assert copy_job["status"] == "failed" and "interrupted" in copy_job["error"]
    assert again["bytes_reused"] > 0 and again["bytes_sent"] < 16 * MiB
    assert again["bytes_sent"] + again["bytes_reused"] == 16 * MiB
    assert intact


# --- (e) a policy that replicates ------------------------------------------------------------


def run_policy(cli: CLI, name: str) -> tuple[int, list[dict]]:
    result: Result = cli("policy", "run", name, "--now", "--json")
    return result.code, json.loads(result.out)


@pytest.mark.slow
def test_a_policy_with_replicate_to_makes_a_backup_and_its_copy(cli: CLI, tmp_path: Path) -> None:
    cli.ok("vault", "add", "main", "--path", str(tmp_path / "main"))
    cli.ok("vault", "add", "offsite", "--path", str(tmp_path / "offsite"))
    disk = make_disk(cli, "app", 2 * MiB, seed=5)
    policy = cli.ok(
        "policy", "create", "nightly", "--vault", "main", "--replicate-to", "offsite",
        "--keep-last", "1", "--disk", "app",
    )  # fmt: skip
    assert policy["replicate_to"] == "offsite"

    code, outcomes = run_policy(cli, "nightly")
    assert code == 0, outcomes
    made, copied = outcomes[0], outcomes[1]
    assert made["status"] == copied["status"] == "succeeded"
    assert copied["copy_of"] == made["backup"]
    rows = {b["id"]: b for b in cli.ok("backup", "list")}
    assert rows[copied["backup"]]["vault"] == "offsite"
    assert rows[copied["backup"]]["copy_of"] == made["backup"]

    # retention applies in each vault on its own: keep-last 1 keeps one here and one there
    scribble(disk["path"], 0, b"z" * 4096)
    code, outcomes = run_policy(cli, "nightly")
    assert code == 0, outcomes
    kept = cli.ok("backup", "list")
    assert sorted(b["vault"] for b in kept) == ["main", "offsite"]
    newest = next(b for b in kept if b["vault"] == "main")
    assert next(b for b in kept if b["vault"] == "offsite")["copy_of"] == newest["id"]

    # a replica vault that is gone: the backup is made, the copy fails, alerted; exit 3
    (tmp_path / "offsite" / "config").unlink()
    code, outcomes = run_policy(cli, "nightly")
    assert code == 3
    assert outcomes[0]["status"] == "succeeded"
    assert outcomes[1]["status"] == "failed" and "vault offsite" in outcomes[1]["error"]
    alerts = [e for e in cli.ok("events", "--limit", "200") if e["action"] == "job.failed"]
    assert any("vault offsite" in (e["detail"] or "") for e in alerts)
    assert any(b["id"] == outcomes[0]["backup"] for b in cli.ok("backup", "list"))


# --- (f) refusals ------------------------------------------------------------------------


@pytest.mark.slow
def test_copies_that_cannot_be_made_are_refused_in_one_line(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.ok("vault", "add", "main", "--path", str(tmp_path / "main"))
    cli.ok("vault", "add", "wide", "--path", str(tmp_path / "wide"), "--chunk-size", "1M")
    make_disk(cli, "d", MiB, seed=6)
    backup = job(cli, "backup", "create", "d", "--vault", "main")
    assert "already in vault main" in cli.fails(
        "backup", "copy", backup["id"], "--to-vault", "main"
    )
    assert "same chunk size" in cli.fails("backup", "copy", backup["id"], "--to-vault", "wide")
    assert "no vault named" in cli.fails("backup", "copy", backup["id"], "--to-vault", "nowhere")
    cli.ok("vault", "add", "other", "--path", str(tmp_path / "other"))
    job(cli, "backup", "copy", backup["id"], "--to-vault", "other")
    assert "already holds backup" in cli.fails(
        "backup", "copy", backup["id"], "--to-vault", "other"
    )
    # out of an encrypted vault into a plain one: never plaintext by accident
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", "a passphrase")
    cli.ok("vault", "add", "sealed", "--path", str(tmp_path / "sealed"), "--encrypt")
    sealed = job(cli, "backup", "create", "d", "--vault", "sealed")
    assert "plaintext" in cli.fails("backup", "copy", sealed["id"], "--to-vault", "other")
    # a policy replicating into its own vault, or into other-sized chunks
    assert "own vault" in cli.fails(
        "policy", "create", "p1", "--vault", "main", "--replicate-to", "main"
    )
    assert "same chunk size" in cli.fails(
        "policy", "create", "p2", "--vault", "main", "--replicate-to", "wide"
    )
    assert cli.ok("backup", "list")  # nothing half-made
    assert all(b["status"] == "available" for b in cli.ok("backup", "list"))


def test_a_replica_a_restore_reads_cannot_be_deleted_under_it(tmp_path: Path) -> None:
    """A restore that reads a replica (its backup's vault unreachable) holds that replica as
    its source: deleting it (then a gc) while the job lives is refused, as for any restore."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG)
    bv = Blockvault.open(home=home)
    try:
        bv.add_vault("main", path=str(tmp_path / "main"))
        bv.add_vault("offsite", path=str(tmp_path / "offsite"))
        disk = bv.create_disk("d", MiB)
        scribble(disk["path"], 0, random.Random(9).randbytes(MiB // 2))
        backup = bv.start_backup("d", vault="main").start().wait()
        copy = bv.start_copy(backup["id"], to_vault="offsite").start().wait()
        (tmp_path / "main").rename(tmp_path / "away")
        handle = bv.start_restore(backup["id"], to_original=False, new_name="r")
        # the job exists (claimed, not yet run): the replica it reads may not go under it
        refused = bv.plan_delete_backup(copy["id"])
        assert not refused.allowed, "the replica a restore reads was deletable under it"
        result = handle.start().wait()
        assert result["read_from_vault"] == "offsite" and sha(result["path"]) == sha(disk["path"])
    finally:
        bv.close()
