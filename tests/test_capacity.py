"""Vault capacity (issue 12, item 3), through the real CLI: usage is the bytes really stored
(compared with a walk of the vault folder, and with the S3 server's own version listing), a
backup whose estimate would pass the quota is refused before anything is written, crossing
the alert threshold alerts once through a real notify_command and falling below clears it,
`vault show` forecasts the days until full, and `vault set` refuses bad values in one line."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.api import Blockvault
from tests.support.cli import CLI
from tests.support.seaweed import S3Server

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@pytest.fixture
def notified(tmp_path: Path) -> Path:
    return tmp_path / "notified.jsonl"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], notified: Path) -> CLI:
    target = shlex.quote(str(notified))
    command = json.dumps(f"sh -c 'cat >> {target}; echo >> {target}'")  # a TOML basic string
    config = (
        "[blockvault]\nchunk_size = 65536\ngc_grace_seconds = 0\n"
        f'timezone = "UTC"\nnotify_command = {command}\n'
    )
    return CLI.with_config(tmp_path / "home", capsys, config)


def alerts_in(notified: Path) -> list[dict[str, Any]]:
    if not notified.exists():
        return []
    return [json.loads(line) for line in notified.read_text().splitlines() if line]


def walk_bytes(folder: Path) -> int:
    """What the vault folder really holds: every file's size."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def files_of(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def data_disk(cli: CLI, name: str, *, size: int, data: int) -> dict:
    """A disk with `data` random bytes at its start (incompressible: stored as is)."""
    disk = cli.ok("disk", "create", name, "--size", str(size))
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(data))
    return disk


def backup(cli: CLI, disk: str, vault: str | None) -> dict:
    where = ("--vault", vault) if vault else ()
    result = cli("backup", "create", disk, *where, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out.strip().splitlines()[-1])


def vault_row(cli: CLI, name: str) -> dict:
    return next(v for v in cli.ok("vault", "list") if v["name"] == name)


def events_of(cli: CLI, action: str) -> list[dict]:
    return [e for e in cli.ok("events", "--limit", "500") if e["action"] == action]


# --- usage ----------------------------------------------------------------------------------


def test_usage_is_the_bytes_stored_in_the_vault(cli: CLI, tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    added = cli.ok("vault", "add", "v1", "--path", str(folder))
    assert added["usage_bytes"] == walk_bytes(folder)  # a new vault: its config alone
    disk = data_disk(cli, "d1", size=2 * MiB, data=640 * KiB)
    backup(cli, "d1", "v1")
    with open(disk["path"], "r+b") as handle:  # an incremental stores the changed chunks
        handle.seek(MiB)
        handle.write(os.urandom(128 * KiB))
    second = backup(cli, "d1", "v1")
    assert second["bytes_stored"] >= 128 * KiB
    # after each backup the catalog adds what it stored: within the vault's own small files
    # (the catalog's copy, rewritten after the backup) of the truth
    assert abs(vault_row(cli, "v1")["usage_bytes"] - walk_bytes(folder)) < 16 * KiB
    # `vault show` lists the vault: exactly what the folder holds, after dedup and zstd
    shown = cli.ok("vault", "show", "v1")
    assert shown["usage_bytes"] == walk_bytes(folder)
    assert 768 * KiB <= shown["usage_bytes"] < 2 * MiB  # not the 2 MiB disk twice


def test_the_default_vault_is_measured_at_its_first_backup(cli: CLI) -> None:
    data_disk(cli, "d1", size=MiB, data=256 * KiB)
    backup(cli, "d1", None)  # into the embedded default, made now
    local = vault_row(cli, "local")
    assert local["usage_bytes"] >= 256 * KiB
    assert local["quota_bytes"] is None and local["over_alert"] is False


# --- the quota ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_backup_past_the_quota_is_refused_before_it_starts(cli: CLI, tmp_path: Path) -> None:
    folder = tmp_path / "small"
    cli.ok("vault", "add", "small", "--path", str(folder), "--quota", "512K")
    data_disk(cli, "d1", size=2 * MiB, data=768 * KiB)
    refused = cli("backup", "create", "d1", "--vault", "small", "--dry-run", "--json")
    assert refused.code != 0
    plan = json.loads(refused.out)
    assert plan["allowed"] is False
    assert plan["extra"]["estimate_bytes"] == 768 * KiB  # a full backup: what it reads
    assert plan["extra"]["quota_bytes"] == 512 * KiB
    assert "estimate 768.0 KiB" in plan["route"]
    before = files_of(folder)
    line = cli.fails("backup", "create", "d1", "--vault", "small")
    assert "vault small would pass its quota" in line
    assert "estimate is 768.0 KiB" in line and "512.0 KiB" in line
    assert files_of(folder) == before  # nothing written
    assert cli.ok("backup", "list", "--all") == []
    assert [j for j in cli.ok("job", "list") if j["kind"] == "backup"] == []
    # raised quota: the same backup runs, and the plan shows usage against the quota
    cli.ok("vault", "set", "small", "--quota", "2M")
    plan = cli.ok("backup", "create", "d1", "--vault", "small", "--dry-run")
    assert plan["allowed"] is True
    assert "vault small would hold" in plan["route"] and "of its 2.0 MiB quota" in plan["route"]
    backup(cli, "d1", "small")


def test_an_incremental_is_estimated_from_the_last_incrementals(cli: CLI, tmp_path: Path) -> None:
    cli.ok("vault", "add", "v1", "--path", str(tmp_path / "v1"), "--quota", "10M")
    disk = data_disk(cli, "d1", size=2 * MiB, data=MiB)
    full = backup(cli, "d1", "v1")
    plan = cli.ok("backup", "create", "d1", "--vault", "v1", "--dry-run")
    assert plan["extra"]["estimate_bytes"] == full["bytes_stored"]  # only the full to go by
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(128 * KiB))
    incremental = backup(cli, "d1", "v1")
    plan = cli.ok("backup", "create", "d1", "--vault", "v1", "--dry-run")
    assert plan["extra"]["estimate_bytes"] == incremental["bytes_stored"]
    assert "the most the last 1 incremental stored" in plan["route"]


# --- the alert threshold --------------------------------------------------------------------


@pytest.mark.slow
def test_crossing_the_threshold_alerts_once_and_falling_below_clears_it(
    cli: CLI, tmp_path: Path, notified: Path
) -> None:
    cli.ok(
        "vault", "add", "v1", "--path", str(tmp_path / "v1"), "--quota", "2M", "--alert-at", "25%"
    )
    disk = data_disk(cli, "d1", size=2 * MiB, data=256 * KiB)
    first = backup(cli, "d1", "v1")
    assert vault_row(cli, "v1")["over_alert"] is False and alerts_in(notified) == []
    with open(disk["path"], "r+b") as handle:  # 384 KiB more: past 25% (512 KiB)
        handle.seek(MiB)
        handle.write(os.urandom(384 * KiB))
    second = backup(cli, "d1", "v1")
    row = vault_row(cli, "v1")
    assert row["over_alert"] is True and row["percent_used"] >= 25
    bv = Blockvault.open(home=cli.home)
    try:  # the console header's badge reads this
        assert bv.status()["vaults_over_alert"] == ["v1"]
    finally:
        bv.close()
    with open(disk["path"], "r+b") as handle:  # still over: no second alert
        handle.write(os.urandom(64 * KiB))
    backup(cli, "d1", "v1")
    cli.ok("vault", "show", "v1")
    alerts = alerts_in(notified)
    assert [a["action"] for a in alerts] == ["vault.threshold"]
    assert alerts[0]["object_name"] == "v1" and alerts[0]["quota_bytes"] == 2 * MiB
    assert "passed its alert threshold" in alerts[0]["detail"]
    assert len(events_of(cli, "vault.threshold")) == 1
    # the later backups go, gc frees their chunks: usage falls back under 25%, it clears
    for gone in (second, *[b for b in cli.ok("backup", "list") if b["id"] != first["id"]]):
        if any(b["id"] == gone["id"] for b in cli.ok("backup", "list")):
            cli.ok("backup", "delete", gone["id"], "--yes")
    result = cli("vault", "gc", "v1", "--json")
    assert result.code == 0, result.err
    row = vault_row(cli, "v1")
    assert row["over_alert"] is False and row["percent_used"] < 25
    assert len(events_of(cli, "vault.threshold.cleared")) == 1
    # crossing again alerts again
    with open(disk["path"], "r+b") as handle:
        handle.seek(MiB)
        handle.write(os.urandom(384 * KiB))
    backup(cli, "d1", "v1")
    assert [a["action"] for a in alerts_in(notified)] == ["vault.threshold"] * 2


def test_lowering_the_quota_under_the_usage_alerts(
    cli: CLI, tmp_path: Path, notified: Path
) -> None:
    cli.ok("vault", "add", "v1", "--path", str(tmp_path / "v1"))
    data_disk(cli, "d1", size=MiB, data=256 * KiB)
    backup(cli, "d1", "v1")
    assert alerts_in(notified) == []
    shown = cli.ok("vault", "set", "v1", "--quota", "300K")  # no --alert-at: at the quota
    assert shown["over_alert"] is False
    cli.ok("vault", "set", "v1", "--alert-at", "80%")
    assert [a["action"] for a in alerts_in(notified)] == ["vault.threshold"]
    assert (
        cli.ok("vault", "set", "v1", "--quota", "none", "--alert-at", "none")["over_alert"] is False
    )
    assert vault_row(cli, "v1")["quota_bytes"] is None


# --- forecast -------------------------------------------------------------------------------


def insert_backup(db: sqlite3.Connection, vault_id: str, n: int, stored: int, at: datetime) -> None:
    stamp = at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    db.execute(
        "INSERT INTO backups (id, name, vault_id, disk_id, disk_name, disk_size, role, status,"
        " size, bytes_new, bytes_reused, bytes_zero, bytes_stored, duration, version, pinned,"
        " created_at, completed_at) VALUES (?, ?, ?, 'disk-x', 'x', ?, 'data', 'available',"
        " ?, ?, 0, 0, ?, 1.0, 1, 0, ?, ?)",
        (f"backup-f{n}", f"f{n}", vault_id, stored, stored, stored, stored, stamp, stamp),
    )


def test_vault_show_forecasts_the_days_until_full(cli: CLI, tmp_path: Path) -> None:
    """The last 30 days' backups stored 30 GiB (1 GiB a day); the vault, measured, holds
    what it holds, and its quota is set 30 GiB above that: full in about 30 days."""
    vault = cli.ok("vault", "add", "v1", "--path", str(tmp_path / "v1"))
    shown = cli.ok("vault", "show", "v1")
    assert shown["forecast"] == "no quota" and shown["days_until_full"] is None
    usage = shown["usage_bytes"]
    now = datetime.now(UTC)
    old = (now - timedelta(days=90)).replace(tzinfo=None).isoformat(sep=" ")
    with sqlite3.connect(cli.home / "catalog.sqlite") as db:
        db.execute("UPDATE vaults SET created_at = ? WHERE id = ?", (old, vault["id"]))
    cli.ok("vault", "set", "v1", "--quota", str(usage + 30 * GiB))
    shown = cli.ok("vault", "show", "v1")
    assert shown["days_until_full"] is None and shown["forecast"].startswith("no growth")
    with sqlite3.connect(cli.home / "catalog.sqlite") as db:
        for n, (days_ago, gib) in enumerate([(1, 10), (5, 10), (20, 10), (40, 50)]):
            insert_backup(db, vault["id"], n, gib * GiB, now - timedelta(days=days_ago))
    shown = cli.ok("vault", "show", "v1")
    assert shown["growth_per_day"] == GiB  # the backup 40 days ago is outside the window
    assert shown["days_until_full"] == pytest.approx(30, abs=0.1)
    assert shown["forecast"].startswith("full in about 30 days at 1.0 GiB/day")
    text = cli("vault", "show", "v1")
    assert "full in about 30 days" in text.out and text.code == 0


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--quota", "0"), "invalid quota"),
        (("--quota", "lots"), "invalid quota"),
        (("--quota=-5G",), "invalid quota"),
        (("--quota", "1G", "--alert-at", "0%"), "between 1% and 100%"),
        (("--quota", "1G", "--alert-at", "150%"), "between 1% and 100%"),
        (("--quota", "1G", "--alert-at", "eighty"), "a percentage of the quota"),
        (("--quota", "1G", "--alert-at", "nan"), "between 1% and 100%"),
        (("--alert-at", "80%"), "has no quota"),
        ((), "nothing to set"),
    ],
)
def test_vault_set_refuses_bad_values_in_one_line(
    cli: CLI, tmp_path: Path, argv: tuple[str, ...], words: str
) -> None:
    cli.ok("vault", "add", "v1", "--path", str(tmp_path / "v1"))
    assert words in cli.fails("vault", "set", "v1", *argv)
    row = vault_row(cli, "v1")
    assert row["quota_bytes"] is None and row["alert_at"] is None


def test_vault_add_checks_its_capacity_options_before_adding(cli: CLI, tmp_path: Path) -> None:
    assert "invalid quota" in cli.fails(
        "vault", "add", "v1", "--path", str(tmp_path / "v1"), "--quota", "x"
    )
    assert "give --quota too" in cli.fails(
        "vault", "add", "v1", "--path", str(tmp_path / "v1"), "--alert-at", "80%"
    )
    assert not any(v["name"] == "v1" for v in cli.ok("vault", "list"))
    assert "no vault" in cli.fails("vault", "set", "nosuch", "--quota", "1G")
    added = cli.ok(
        "vault", "add", "v1", "--path", str(tmp_path / "v1"), "--quota", "500G", "--alert-at", "80"
    )
    assert added["quota_bytes"] == 500 * GiB and added["alert_at"] == 80.0


# --- S3 -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_s3_usage_counts_every_version_in_the_bucket(cli: CLI, s3_server: S3Server) -> None:
    """In a versioned bucket (as Object Lock buckets are) an overwritten or deleted object's
    old versions stay stored and billed: usage is the server's own version listing."""
    client = s3_server.client()
    bucket = s3_server.make_bucket()
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    prefix = s3_server.fresh_prefix()
    cli.ok(
        "vault", "add", "s3", "--s3", f"s3://{bucket}/{prefix}",
        "--endpoint-url", s3_server.endpoint_url, "--region", s3_server.region,
        "--addressing-style", "path", "--quota", "10M",
    )  # fmt: skip
    disk = data_disk(cli, "d1", size=2 * MiB, data=512 * KiB)
    backup(cli, "d1", "s3")
    with open(disk["path"], "r+b") as handle:
        handle.seek(MiB)
        handle.write(os.urandom(128 * KiB))
    backup(cli, "d1", "s3")  # rewrites the catalog's copy: its old version stays

    def sizes(kind: str) -> list[int]:
        pages = client.get_paginator("list_object_versions").paginate(
            Bucket=bucket, Prefix=f"{prefix}/"
        )
        return [int(v["Size"]) for page in pages for v in page.get(kind, ())]

    current = sum(
        int(o["Size"])
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/"
        )
        for o in page.get("Contents", ())
    )
    every = sum(sizes("Versions"))
    assert every > current  # old versions exist
    shown = cli.ok("vault", "show", "s3")
    assert shown["usage_bytes"] == every
    assert shown["usage_bytes"] >= 640 * KiB
    assert shown["percent_used"] == pytest.approx(every / (10 * MiB) * 100, abs=0.1)


def test_a_copy_counts_against_its_vault_and_respects_the_quota(cli: CLI, tmp_path: Path) -> None:
    cli.ok("vault", "add", "v1", "--path", str(tmp_path / "v1"))
    cli.ok("vault", "add", "v2", "--path", str(tmp_path / "v2"), "--quota", "256K")
    data_disk(cli, "d1", size=2 * MiB, data=512 * KiB)
    source = backup(cli, "d1", "v1")
    line = cli.fails("backup", "copy", source["id"], "--to-vault", "v2", "--yes")
    assert "vault v2 would pass its quota" in line and "estimate is 512.0 KiB" in line
    assert not (tmp_path / "v2" / "manifests").exists() or not any(
        (tmp_path / "v2" / "manifests").iterdir()
    )
    cli.ok("vault", "set", "v2", "--quota", "4M")
    result = cli("backup", "copy", source["id"], "--to-vault", "v2", "--yes", "--json")
    assert result.code == 0, result.err
    assert abs(vault_row(cli, "v2")["usage_bytes"] - walk_bytes(tmp_path / "v2")) < 16 * KiB
