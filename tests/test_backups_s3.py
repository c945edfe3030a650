"""Backups into an S3 vault on the real SeaweedFS fixture, through the CLI, as an admin would."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.support.cli import CLI
from tests.support.ledger import Ledger
from tests.support.seaweed import S3Server

MiB = 1 << 20


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(
        tmp_path / "home", capsys, "[blockvault]\nchunk_size = 262144\ngc_grace_seconds = 0\n"
    )


def last_json(cli: CLI, *argv: str) -> dict:
    result = cli(*argv, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out.strip().splitlines()[-1])


def sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def add_s3_vault(cli: CLI, server: S3Server, name: str = "s3") -> dict:
    return cli.ok(
        "vault",
        "add",
        name,
        "--s3",
        f"s3://{server.shared_bucket}/{server.fresh_prefix()}",
        "--endpoint-url",
        server.endpoint_url,
        "--region",
        server.region,
        "--addressing-style",
        "path",
    )


@pytest.mark.slow
def test_s3_backup_incremental_restore_and_import(
    cli: CLI, s3_server: S3Server, fault_ledger: Ledger
) -> None:
    vault = add_s3_vault(cli, s3_server)
    fault_ledger.secrets(scanned=1, hits=int(s3_server.secret_key in json.dumps(vault)))
    assert vault["kind"] == "s3" and vault["location"].startswith("s3://")
    assert s3_server.secret_key not in json.dumps(vault)
    disk = cli.ok("disk", "create", "web-data", "--size", "6M")
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(2 * MiB))
        handle.seek(4 * MiB + 999)
        handle.write(os.urandom(MiB))
    first = last_json(cli, "backup", "create", "web-data", "--vault", "s3")
    with open(disk["path"], "r+b") as handle:
        handle.seek(100)
        handle.write(b"x" * 5000)
    second = last_json(cli, "backup", "create", "web-data", "--vault", "s3")
    assert second["bytes_new"] <= 262144 < first["bytes_new"]
    last_json(cli, "backup", "restore", second["id"], "--to-new", "web-copy")
    assert sha(cli.ok("disk", "show", "web-copy")["path"]) == sha(disk["path"])
    report = last_json(cli, "backup", "verify", first["id"])
    assert report["ok"]
    shown = cli.ok("vault", "show", "s3")
    assert shown["backups"] == 2 and shown["stored_bytes"] > 0
    # a new admin host: empty catalog, same bucket
    other = CLI(cli.home.parent / "other-host", cli.capsys)
    other.ok(
        "vault",
        "add",
        "s3",
        "--s3",
        vault["location"],
        "--endpoint-url",
        s3_server.endpoint_url,
        "--region",
        s3_server.region,
        "--addressing-style",
        "path",
    )
    imported = other.ok("vault", "import", "s3")
    last_json(other, "backup", "restore", second["id"], "--to-new", "elsewhere")
    restored = sha(other.ok("disk", "show", "elsewhere")["path"]) == sha(disk["path"])
    fault_ledger.rebuild(ok={b["id"] for b in imported} == {first["id"], second["id"]} and restored)
    assert {b["id"] for b in imported} == {first["id"], second["id"]}
    assert restored


def test_wrong_credentials_are_a_clear_error_without_secrets(
    cli: CLI, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, fault_ledger: Ledger
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sentinel-wrong-secret-123")
    result = cli(
        "vault",
        "add",
        "bad",
        "--s3",
        f"s3://{s3_server.shared_bucket}/x",
        "--endpoint-url",
        s3_server.endpoint_url,
        "--region",
        s3_server.region,
    )
    fault_ledger.secrets(
        scanned=2,
        hits=sum("sentinel-wrong-secret-123" in text for text in (result.err, result.out)),
    )
    assert result.code != 0 and "Traceback" not in result.err
    assert "access denied" in result.err
    assert "sentinel-wrong-secret-123" not in result.err + result.out
