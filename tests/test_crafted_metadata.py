"""Crafted manifests and condemned lists (issue "Hostile vaults", point 10): each is one clear
line or is skipped with a note, never a traceback, and never stops work on the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zstandard

from tests.support.cli import CLI
from tests.support.ledger import Ledger
from tests.test_backup_reliability import CONFIG, MiB, fill, run_job

RAW, ZSTD = b"\x00", b"\x01"
pytestmark = pytest.mark.slow  # eleven CLI round trips


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def manifest_body(cli: CLI, backup_id: str) -> dict:
    blob = (cli.home / "vault" / "manifests" / backup_id).read_bytes()
    payload = blob[1:] if blob[:1] == RAW else zstandard.decompress(blob[1:])
    return json.loads(payload)


def plant(cli: CLI, backup_id: str, body: object) -> None:
    path = cli.home / "vault" / "manifests" / backup_id
    path.write_bytes(RAW + json.dumps(body).encode())


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda b: {**b, "disk": ["not", "a", "dict"]}, "damaged"),
        (lambda b: {**b, "stats": [1, 2]}, "damaged"),
        (lambda b: {**b, "size": 2**64}, "out of range"),
        (lambda b: {**b, "size": 4 << 60, "chunks": b["chunks"]}, "out of range"),
        (lambda b: {**b, "chunks": {"0": None}}, "damaged"),
        (lambda b: [b], "damaged"),
    ],
    ids=["disk-list", "stats-list", "size-2^64", "4-EiB", "chunks-dict", "top-list"],
)
def test_a_crafted_manifest_is_one_line_and_spares_the_others(
    cli: CLI, tmp_path: Path, fault_ledger: Ledger, change, says: str
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "1M")
    fill(disk["path"], MiB, seed=3)
    good = run_job(cli, "backup", "create", "d")
    fill(disk["path"], MiB, seed=4)
    crafted = run_job(cli, "backup", "create", "d")
    plant(cli, crafted["id"], change(manifest_body(cli, crafted["id"])))

    verify = cli.fails("backup", "verify", crafted["id"])
    other = CLI(tmp_path / "other", cli.capsys)
    other.ok("vault", "add", "found", "--path", str(cli.home / "vault"))
    rows = {r["id"]: r["status"] for r in other.ok("vault", "import", "found")}
    restored = run_job(other, "backup", "restore", good["id"], "--to-new", "copy")
    fault_ledger.record(
        "hostile",
        detected="Traceback" not in verify and rows.get(crafted["id"]) == "damaged",
        data_intact=restored["status"] == "available",
        note="crafted manifest",
    )
    assert "Traceback" not in verify and verify.count("\n") == 0, verify
    assert crafted["id"] in verify and says in verify, verify
    assert rows == {good["id"]: "available", crafted["id"]: "damaged"}
    assert restored["status"] == "available"
    cli.ok("backup", "delete", crafted["id"], "--yes")  # and it can be deleted


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all",
        json.dumps({"chunks": [1, 2, 3]}).encode(),
        json.dumps({"chunks": "ab" * 32}).encode(),
        json.dumps(["../../etc/passwd"]).encode(),
        b"",
    ],
    ids=["not-json", "ints", "string", "list", "empty"],
)
def test_a_malformed_condemned_list_never_stops_backups_or_gc(
    cli: CLI, fault_ledger: Ledger, payload: bytes
) -> None:
    disk = cli.ok("disk", "create", "d", "--size", "1M")
    fill(disk["path"], MiB, seed=5)
    first = run_job(cli, "backup", "create", "d")
    condemned = cli.home / "vault" / "condemned"
    condemned.mkdir(exist_ok=True)
    (condemned / "000000000000001-deadbeef").write_bytes(RAW + payload if payload else b"")
    fill(disk["path"], MiB, seed=6)
    second = run_job(cli, "backup", "create", "d")
    gc = run_job(cli, "vault", "gc", "--grace", "0")
    verified = [run_job(cli, "backup", "verify", b["id"]) for b in (first, second)]
    fault_ledger.record(
        "hostile",
        detected=second["status"] == "available" and gc["manifests"] == 2,
        data_intact=all(v["ok"] for v in verified),
        note="malformed condemned list",
    )
    assert second["status"] == "available", second
    assert gc["manifests"] == 2, gc  # gc ran to the end past the damaged list
    assert all(v["ok"] for v in verified), verified
