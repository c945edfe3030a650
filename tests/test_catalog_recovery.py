"""Full catalog recovery (issue "Hostile vaults and bad input", item 11; RELIABILITY F, I7):
a host that lost its catalog rebuilds servers, disks and policies from a vault, not backups
alone, and restores each disk bit for bit onto the disk it came from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.support.cli import CLI
from tests.support.ledger import Ledger
from tests.test_backup_reliability import CONFIG, MiB, fill, run_job


def sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("encrypted", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_new_host_rebuilds_servers_disks_and_policies_from_the_vault(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    encrypted: bool,
    fault_ledger: Ledger,
) -> None:
    monkeypatch.setenv("BLOCKVAULT_PASSPHRASE", "correct horse battery staple 42")
    old = CLI.with_config(tmp_path / "old", capsys, CONFIG)
    vault = tmp_path / "vault"
    old.ok("vault", "add", "off", "--path", str(vault), *(["--encrypt"] if encrypted else []))
    old.ok("server", "create", "web1")
    root = old.ok("disk", "create", "root", "--size", "2M", "--server", "web1", "--role", "system")
    data = old.ok("disk", "create", "data", "--size", "1M", "--server", "web1")
    fill(root["path"], 2 * MiB, seed=1)
    fill(data["path"], MiB, seed=2)
    old.ok("policy", "create", "nightly", "--vault", "off", "--disk", "root", "--disk", "data")
    backups = {d: run_job(old, "backup", "create", d, "--vault", "off") for d in ("root", "data")}
    digests = {"root": sha(root["path"]), "data": sha(data["path"])}
    if encrypted:  # the description is sealed like everything else in an encrypted vault
        copies = [path.read_bytes() for path in (vault / "catalog").iterdir()]
        fault_ledger.secrets(
            scanned=len(copies),
            hits=sum(b"nightly" in blob or b"web1" in blob for blob in copies),
        )
        for path in (vault / "catalog").iterdir():
            assert b"nightly" not in path.read_bytes() and b"web1" not in path.read_bytes()

    new = CLI.with_config(tmp_path / "new", capsys, CONFIG)  # the old host and catalog are gone
    new.ok("vault", "add", "off", "--path", str(vault))
    new.ok("vault", "import", "off")
    server = new.ok("server", "show", "web1")
    roles = sorted((d["name"], d["role"]) for d in server["disks"])
    rebuilt = {name: new.ok("disk", "show", name) for name in ("root", "data")}
    policy = new.ok("policy", "show", "nightly")
    restored = {
        name: sha(run_job(new, "backup", "restore", b["id"], "--to-original", "--yes")["path"])
        for name, b in backups.items()
    }
    after = {name: new.ok("disk", "show", name) for name in backups}
    fault_ledger.rebuild(
        ok=roles == [("data", "data"), ("root", "system")]
        and all(
            (rebuilt[name]["id"], rebuilt[name]["size"]) == (disk["id"], disk["size"])
            for name, disk in (("root", root), ("data", data))
        )
        and sorted(d["name"] for d in policy["disks"]) == ["data", "root"]
        and restored == digests
        and all(
            (d["status"], d["restore_incomplete"]) == ("available", False) for d in after.values()
        )
    )
    assert roles == [
        ("data", "data"),
        ("root", "system"),
    ]
    for name, disk in (("root", root), ("data", data)):
        shown = rebuilt[name]
        assert (shown["id"], shown["size"]) == (disk["id"], disk["size"])
        assert (shown["status"], shown["restore_incomplete"]) == ("error-restoring", True)
    assert sorted(d["name"] for d in policy["disks"]) == ["data", "root"]
    for name in backups:
        assert restored[name] == digests[name]
        shown = after[name]
        assert (shown["status"], shown["restore_incomplete"]) == ("available", False)
    events = [e["action"] for e in new.ok("events", "--limit", "200")]
    assert "vault.recover" in events
    new.ok("vault", "import", "off")  # again: nothing doubles
    assert len(new.ok("disk", "list")) == 2 and len(new.ok("policy", "list")) == 1


def test_a_hostile_catalog_copy_rebuilds_nothing_dangerous(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_ledger: Ledger
) -> None:
    old = CLI.with_config(tmp_path / "old", capsys, CONFIG)
    disk = old.ok("disk", "create", "d", "--size", "1M")
    fill(disk["path"], MiB, seed=3)
    backup = run_job(old, "backup", "create", "d")
    vault = old.home / "vault"
    (vault / "catalog" / "evil").write_bytes(
        b"\x00"
        + json.dumps(
            {
                "format": "blockvault-catalog-copy",
                "servers": [{"id": "srv-abcdef", "name": "\x1b[2Jevil"}, "junk"],
                "disks": [
                    {"id": "disk-abcdef", "name": "sda", "size": 1 << 20, "managed": False,
                     "path": "/dev/sda"},
                    {"id": "disk-fedcba", "name": "huge", "size": 1 << 62},
                    {"id": "../../etc", "name": "x", "size": 4096},
                ],
                "policies": [{"id": "pol-abcdef", "name": "p", "schedule": "not cron"}],
            }
        ).encode()
    )  # fmt: skip
    new = CLI.with_config(tmp_path / "new", capsys, CONFIG)
    new.ok("vault", "add", "found", "--path", str(vault))
    imported = new.ok("vault", "import", "found")
    disks = [d["name"] for d in new.ok("disk", "list")]
    servers, policies = new.ok("server", "list"), new.ok("policy", "list")
    nothing_planted = disks == ["d"] and servers == [] and policies == []
    real = [b["id"] for b in imported] == [backup["id"]]
    fault_ledger.record(
        "hostile",
        detected=nothing_planted,  # every crafted entry refused
        data_intact=real and "d" in disks,  # the real disk and its backup rebuilt
        note="a crafted catalog copy (ESC in a name, /dev/sda, 4 EiB, ../../etc, bad cron)",
    )
    fault_ledger.rebuild(ok=nothing_planted and real)
    assert disks == ["d"]  # only the real one
    assert servers == [] and policies == []
