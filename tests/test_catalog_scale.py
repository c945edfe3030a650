"""A catalog of many backups (issue 13, terabyte scale): `backup list` reads rows, not ORM
objects, and can stop at the newest N; protection status costs a few queries whatever the
number of disks. bench/bench_scale.py measures the same at 100,000 backups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, insert

from core.api import Blockvault
from core.catalog.models import Backup, Disk, Job, Server
from core.ops import protection, vaults
from tests.support.cli import CLI

MiB = 1 << 20
NOW = datetime.now(UTC).replace(microsecond=0)


def fill(home: Path, *, disks: int, per_disk: int, deleted: int = 0) -> list[str]:
    """`disks` disks (the last `deleted` of them gone, their backups kept) with `per_disk`
    backups each, an hour apart, inserted directly; returns backup ids newest first."""
    bv = Blockvault.open(home=home)
    vault = vaults.default_vault(bv.ctx)
    backups = []
    with bv.ctx.catalog.session() as session:
        session.execute(insert(Server), [{"id": "srv-1", "name": "s1"}])
        rows = []
        for d in range(disks):
            path = home / f"d{d}.img"
            path.write_bytes(b"")
            if d < disks - deleted:
                rows.append({"id": f"disk-{d:04x}", "name": f"d{d}", "size": MiB,
                             "path": str(path), "server_id": "srv-1"})  # fmt: skip
            for k in range(per_disk):
                at = NOW - timedelta(hours=k * disks + d)
                backups.append({
                    "id": f"bk-{d:04x}{k:04x}", "name": f"d{d}-{k:04d}", "vault_id": vault.id,
                    "disk_id": f"disk-{d:04x}", "disk_name": f"d{d}", "disk_size": MiB,
                    "status": "available", "size": MiB, "bytes_stored": k,
                    "created_at": at, "completed_at": at,
                })  # fmt: skip
        session.execute(insert(Disk), rows)
        session.execute(insert(Backup), backups)
        session.commit()
    bv.close()
    backups.sort(key=lambda b: b["created_at"], reverse=True)
    return [b["id"] for b in backups]


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(tmp_path / "home", capsys)


@pytest.mark.slow
def test_backup_list_of_1200_backups_and_its_newest_n(cli: CLI) -> None:
    """Every backup, newest first, those of a deleted disk marked; `--limit N` the newest N
    of the same list; the piped text table has every row whole."""
    newest = fill(cli.home, disks=3, per_disk=400, deleted=1)
    rows = cli.ok("backup", "list")
    assert [r["id"] for r in rows] == newest
    assert {r["disk_deleted"] for r in rows if r["disk_id"] == "disk-0002"} == {True}
    assert {r["vault"] for r in rows} == {"local"}
    first = cli.ok("backup", "list", "--limit", "5")
    assert first == rows[:5]
    assert (
        cli.ok("backup", "list", "--disk", "d1", "--limit", "3")
        == [r for r in rows if r["disk_name"] == "d1"][:3]
    )
    text = cli("backup", "list")
    lines = text.out.splitlines()
    assert text.code == 0 and len(lines) == 1 + 1200
    assert lines[0].split()[:2] == ["ID", "NAME"] and lines[1].split()[0] == newest[0]
    error = cli.fails("backup", "list", "--limit", "-1")
    assert "--limit" in error and len(error.strip().splitlines()) == 1


def test_protection_status_costs_a_few_queries_whatever_the_disks(tmp_path: Path) -> None:
    """40 disks of 5 backups, one disk whose last backup job failed: the same handful of
    statements as for 4 disks (it was 4 a disk), and the same answers per disk."""
    home = tmp_path / "home"
    fill(home, disks=40, per_disk=5)
    bv = Blockvault.open(home=home)
    try:
        with bv.ctx.catalog.session() as session:
            session.execute(insert(Job), [{
                "id": "job-failed", "kind": "backup", "status": "failed", "disk_id": "disk-0003",
                "error": "disk full", "created_at": NOW + timedelta(minutes=1),
            }])  # fmt: skip
            session.commit()
        bv.create_policy("nightly", schedule="0 2 * * *", disks=["d3", "d4"], keep={"keep_last": 3})
        engine = bv.ctx.catalog.engine
        statements: list[str] = []
        listen = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listen)
        try:
            report = protection.status(bv.ctx)
        finally:
            event.remove(engine, "before_cursor_execute", listen)
    finally:
        bv.close()
    by_disk = {d["disk"]: d for d in report["disks"]}
    assert len(by_disk) == 40 and len(statements) <= 12, statements
    assert by_disk["d3"]["status"] == "failing" and "disk full" in by_disk["d3"]["detail"]
    assert by_disk["d5"]["status"] == "unprotected"
    newest = (NOW - timedelta(hours=5)).isoformat()  # d5's newest backup: k=0, 5 hours back
    assert by_disk["d5"]["last_success_at"] == newest
    assert by_disk["d5"]["last_bytes_stored"] == 0
    assert report["counts"]["failing"] == 1
