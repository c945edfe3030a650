"""Locked backups (issue 12): `backup lock`, a policy's --lock-for, S3 Object Lock vaults.

Against the suite's real SeaweedFS (its S3 has Object Lock): a locked backup's manifest and
chunks cannot be deleted by anyone holding the bucket's credentials (a direct boto3 delete of
a version is refused), `backup delete` and a policy's retention refuse it in one clear line,
`vault gc` deletes nothing retained and says so, a new locked backup extends the retention of
the chunks it reuses, and once the date has passed everything goes, every version of it.
A local vault records the lock in the vault itself: another host importing it knows it too.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.support.cli import CLI
from tests.support.seaweed import S3Server

MiB = 1 << 20
CONFIG = "[blockvault]\nchunk_size = 262144\ngc_grace_seconds = 0\n"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def last_json(cli: CLI, *argv: str) -> dict:
    """A job's result: the last JSON line it prints."""
    result = cli(*argv, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out.strip().splitlines()[-1])


def add_locked_vault(cli: CLI, server: S3Server, mode: str, name: str = "locked") -> str:
    """A vault on a bucket vault add creates with Object Lock; returns the bucket."""
    bucket = f"lock-{secrets.token_hex(4)}"
    vault = cli.ok(
        "vault",
        "add",
        name,
        "--s3",
        f"s3://{bucket}/vault",
        "--endpoint-url",
        server.endpoint_url,
        "--region",
        server.region,
        "--addressing-style",
        "path",
        "--object-lock",
        mode,
    )
    assert vault["kind"] == "s3"
    return bucket


def make_disk(cli: CLI, name: str, size_mib: int = 1) -> dict:
    disk = cli.ok("disk", "create", name, "--size", f"{size_mib}M")
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(size_mib * MiB))
    return disk


def versions(client: Any, bucket: str, prefix: str) -> list[dict]:
    """Every version and delete marker under a prefix."""
    found = client.list_object_versions(Bucket=bucket, Prefix=prefix)
    return [*found.get("Versions", []), *found.get("DeleteMarkers", [])]


def refused(client: Any, bucket: str, item: dict) -> str:
    """The error code of a direct delete of one object version (as an attacker would try)."""
    try:
        client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    except botocore.exceptions.ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "deleted"


def retained_until(client: Any, bucket: str, item: dict) -> datetime:
    found = client.get_object_retention(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    return found["Retention"]["RetainUntilDate"]


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _names(cli: CLI, backup_id: str, bucket: str, client: Any) -> list[str]:
    """The chunk keys a backup's manifest names, read with blockvault's own reader."""
    from core.repo.repository import Repository, chunk_key
    from core.stores.s3 import S3Store

    store = S3Store(
        bucket,
        "vault",
        endpoint_url=client.meta.endpoint_url,
        region=client.meta.region_name,
        addressing_style="path",
    )
    manifest = Repository.open(store).read_manifest(backup_id)
    return [f"vault/{chunk_key(c)}" for c in manifest.referenced()]


@pytest.mark.slow
def test_a_locked_backup_on_object_lock_survives_everyone(cli: CLI, s3_server: S3Server) -> None:
    bucket = add_locked_vault(cli, s3_server, "compliance")
    client = s3_server.client()
    assert (
        client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"][
            "ObjectLockEnabled"
        ]
        == "Enabled"
    )
    disk = make_disk(cli, "db", 1)
    first = last_json(cli, "backup", "create", "db", "--vault", "locked")
    locked = cli.ok("backup", "lock", first["id"], "--for", "1d")
    assert locked["name"] == first["name"] and locked["warnings"] == []
    assert locked["enforced_by"] == "s3-object-lock (compliance)"
    until = parse(locked["locked_until"])
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(days=1, seconds=5)
    assert cli.ok("backup", "show", first["id"])["locked_until"] == locked["locked_until"]

    # anyone holding the bucket's credentials: a version delete is refused, manifest and chunk
    (manifest,) = versions(client, bucket, f"vault/manifests/{first['id']}")
    chunks = versions(client, bucket, "vault/chunks/")
    assert chunks and all(c.get("IsLatest") for c in chunks)
    assert refused(client, bucket, manifest) == "AccessDenied"
    assert refused(client, bucket, chunks[0]) == "AccessDenied"
    assert retained_until(client, bucket, manifest) >= until
    assert all(retained_until(client, bucket, c) >= until for c in chunks)
    # a compliance lock cannot be shortened, by blockvault either
    shorter = cli.fails("backup", "lock", first["id"], "--for", "1h")
    assert "only be extended" in shorter

    # blockvault: delete refused in one line naming the date; gc deletes nothing of it
    line = cli.fails("backup", "delete", first["id"], "--yes")
    assert "locked until" in line and f"{until:%Y-%m-%d %H:%M:%S}" in line
    assert [b["id"] for b in cli.ok("backup", "list")] == [first["id"]]
    gc = last_json(cli, "vault", "gc", "locked")
    assert gc["deleted_chunks"] == 0 and gc["locked_backups"] == 1
    assert gc["locked_until"] == until.isoformat(timespec="seconds")
    plan = cli.ok("vault", "gc", "locked", "--dry-run")
    assert any("locked backups" in item["name"] for item in plan["items"])
    assert len(versions(client, bucket, "vault/chunks/")) == len(chunks)

    # a policy locking its backups: the reused chunks' retention is extended before the
    # new manifest is written; its retention keeps its expired-but-locked backup
    cli.ok("policy", "create", "locking", "--vault", "locked", "--lock-for", "2d", "--disk", "db")
    assert cli.ok("policy", "show", "locking")["lock_for"] == "2d"
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(4096))  # one chunk changes, the others are reused
    runs = cli.ok("policy", "run", "locking", "--now")
    second = next(o for o in runs if o["status"] == "succeeded")["backup"]
    second_until = parse(cli.ok("backup", "show", second)["locked_until"])
    assert second_until - datetime.now(UTC) > timedelta(days=1, hours=23)
    (manifest2,) = versions(client, bucket, f"vault/manifests/{second}")
    assert retained_until(client, bucket, manifest2) >= second_until
    keys = {c["Key"] for c in chunks}
    now_chunks = versions(client, bucket, "vault/chunks/")
    reused = [c for c in now_chunks if c["Key"] in keys]
    assert len(reused) == len(chunks) and len(now_chunks) == len(chunks) + 1
    # the reused chunks now hold for the second backup; the first's new chunk only for it
    changed = {c["Key"] for c in chunks} - set(_names(cli, second, bucket, client))
    assert len(changed) == 1
    assert all(
        retained_until(client, bucket, c) >= second_until for c in reused if c["Key"] not in changed
    )


@pytest.mark.slow
def test_retention_keeps_a_locked_backup_and_says_why(cli: CLI, s3_server: S3Server) -> None:
    add_locked_vault(cli, s3_server, "governance")
    make_disk(cli, "web", 1)
    cli.ok("policy", "create", "p", "--vault", "locked", "--keep-last", "1", "--lock-for", "1d")
    cli.ok("policy", "apply", "p", "web")
    first = next(o for o in cli.ok("policy", "run", "p", "--now") if "disk" in o)["backup"]
    runs = cli.ok("policy", "run", "p", "--now")
    assert all(o["status"] == "succeeded" for o in runs), runs
    assert first in {b["id"] for b in cli.ok("backup", "list")}  # expired by the rules, kept
    plan = cli.ok("policy", "prune", "p", "--dry-run")
    (kept,) = [i for i in plan["items"] if i["id"] == first]
    assert kept["op"] == "keep" and "locked until" in kept["note"]
    assert plan["bytes_freed"] == 0
    result = cli("policy", "prune", "p", "--dry-run")
    assert "locked until" in result.out


@pytest.mark.slow
def test_after_the_date_delete_and_gc_free_every_version(cli: CLI, s3_server: S3Server) -> None:
    bucket = add_locked_vault(cli, s3_server, "governance")
    client = s3_server.client()
    make_disk(cli, "tmp", 1)
    backup = last_json(cli, "backup", "create", "tmp", "--vault", "locked")
    until = datetime.now(UTC) + timedelta(seconds=6)
    locked = cli.ok("backup", "lock", backup["id"], "--until", until.isoformat())
    until = parse(locked["locked_until"])
    (manifest,) = versions(client, bucket, f"vault/manifests/{backup['id']}")
    assert refused(client, bucket, manifest) == "AccessDenied"  # governance, no bypass
    assert "locked until" in cli.fails("backup", "delete", backup["id"], "--yes")
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.5)
    cli.ok("backup", "delete", backup["id"], "--yes")
    gc = last_json(cli, "vault", "gc", "locked")
    assert gc["deleted_chunks"] > 0 and gc["retained_chunks"] == 0 and gc["locked_backups"] == 0
    for prefix in ("vault/chunks/", "vault/manifests/", "vault/trash/", "vault/retention/"):
        assert versions(client, bucket, prefix) == [], prefix


@pytest.mark.slow
def test_object_lock_needs_a_bucket_that_has_it(cli: CLI, s3_server: S3Server) -> None:
    bucket = s3_server.make_bucket()
    where = ["--endpoint-url", s3_server.endpoint_url, "--region", s3_server.region]
    where += ["--addressing-style", "path"]
    line = cli.fails(
        "vault", "add", "v", "--s3", f"s3://{bucket}/v", *where, "--object-lock", "compliance"
    )
    assert "does not have S3 Object Lock enabled" in line
    assert cli.ok("vault", "list")[0]["name"] == "local"  # nothing added
    # the same bucket as a plain vault: blockvault enforces a lock, and says who does not
    cli.ok("vault", "add", "v", "--s3", f"s3://{bucket}/v", *where)
    make_disk(cli, "d", 1)
    backup = last_json(cli, "backup", "create", "d", "--vault", "v")
    locked = cli.ok("backup", "lock", backup["id"], "--for", "1d")
    assert locked["enforced_by"] == "blockvault"
    assert "anyone holding the bucket's credentials" in locked["warnings"][0]
    assert "locked until" in cli.fails("backup", "delete", backup["id"], "--yes")


@pytest.mark.slow
def test_a_local_vault_records_the_lock_and_refuses(
    cli: CLI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_disk(cli, "d", 1)
    backup = last_json(cli, "backup", "create", "d")
    vault_dir = cli.home / "vault"
    chunks = sorted(p.name for p in (vault_dir / "chunks").rglob("*") if p.is_file())
    # another host, its own catalog, the same vault; it learnt the backup before the lock
    other = CLI.with_config(tmp_path / "other", capsys, CONFIG)
    other.ok("vault", "add", "shared", "--path", str(vault_dir))
    (imported,) = other.ok("vault", "import", "shared")
    assert imported["locked_until"] is None

    until = datetime.now(UTC) + timedelta(seconds=6)
    locked = cli.ok("backup", "lock", backup["id"], "--until", until.isoformat())
    until = parse(locked["locked_until"])
    assert locked["enforced_by"] == "blockvault" and locked["warnings"]
    earlier = (until - timedelta(seconds=1)).isoformat()
    assert "only be extended" in cli.fails("backup", "lock", backup["id"], "--until", earlier)
    assert "has passed" in cli.fails("backup", "lock", backup["id"], "--until", "2000-01-01")
    line = cli.fails("backup", "delete", backup["id"], "--yes")
    assert "locked until" in line and f"{until:%Y-%m-%d %H:%M:%S}" in line
    dry = cli("backup", "delete", backup["id"], "--dry-run", "--json")
    plan = json.loads(dry.out)
    assert dry.code != 0 and not plan["allowed"] and "locked until" in plan["refusal"]

    # the other host's catalog does not know: the vault's record refuses, and it learns
    line = other.fails("backup", "delete", backup["id"], "--yes")
    assert "locked until" in line and f"{until:%Y-%m-%d %H:%M:%S}" in line
    (still,) = other.ok("backup", "list", "--all")
    assert still["status"] == "available" and parse(still["locked_until"]) == until
    gc = last_json(other, "vault", "gc", "shared")
    assert gc["deleted_chunks"] == 0 and gc["locked_backups"] == 1
    assert sorted(p.name for p in (vault_dir / "chunks").rglob("*") if p.is_file()) == chunks
    # a catalog rebuilt from the vault knows the lock too
    third = CLI.with_config(tmp_path / "third", capsys, CONFIG)
    third.ok("vault", "add", "shared", "--path", str(vault_dir))
    (rebuilt,) = third.ok("vault", "import", "shared")
    assert parse(rebuilt["locked_until"]) == until

    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.5)
    cli.ok("backup", "delete", backup["id"], "--yes")
    gc = last_json(cli, "vault", "gc")
    assert gc["deleted_chunks"] == len(chunks) and gc["locked_backups"] == 0
    assert not (vault_dir / "retention" / backup["id"]).exists()
