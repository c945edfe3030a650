"""`--read-only` is read-only (issue "Hostile vaults and bad input", item 9): the catalog is
opened so that nothing can write it, nothing is reconciled, no folder is made; the bytes of
the catalog are the same before and after a console session."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sqlmodel import select

from core.api import Blockvault, UserError
from core.catalog.models import Disk, Job
from tests.support.console import make_app, settle
from tests.support.ledger import Ledger


def catalog_bytes(home: Path) -> str:
    """The database and what its write-ahead log holds (SQLite may create an empty -wal and
    the -shm shared-memory index for any reader: they hold no catalog data)."""
    digest = hashlib.sha256()
    for name in ("catalog.sqlite", "catalog.sqlite-wal"):
        path = home / name
        digest.update(name.encode() + (path.read_bytes() if path.exists() else b""))
    return digest.hexdigest()


def stale_state(home: Path) -> None:
    """A job whose process is gone, still owning its disk: what a writable open repairs."""
    bv = Blockvault.open(home=home)
    disk = bv.create_disk("d", 1 << 20)
    with bv.ctx.catalog.writer() as session:
        session.add(
            Job(id="job-dead01", kind="restore", status="running", pid=2**22 + 7,
                host=os.uname().nodename, disk_id=disk["id"])
        )  # fmt: skip
        row = session.get(Disk, disk["id"])
        row.status, row.claim_job_id = "restoring", "job-dead01"
        session.add(row)
        session.commit()
    bv.close()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_read_only_console_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stale_state(home)
    before = catalog_bytes(home)
    files_before = sorted(p.relative_to(home) for p in home.rglob("*"))
    bv = Blockvault.open(home=home, read_only=True)
    app = make_app(bv, read_only=True)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.pause(1.5)  # a poll of other processes' jobs happens meanwhile
    with bv.ctx.catalog.session() as session:
        job = session.get(Job, "job-dead01")
        assert job.status == "running", "the stale job is left to a writable open"
    with pytest.raises(UserError, match="read-only"):
        bv.delete_disk("d")
    bv.close()
    assert catalog_bytes(home) == before
    files_after = sorted(p.relative_to(home) for p in home.rglob("*"))
    sidecars = ("catalog.sqlite-shm", "catalog.sqlite-wal")
    assert [f for f in files_after if f.name not in sidecars] == [
        f for f in files_before if f.name not in sidecars
    ]


def test_read_only_on_a_missing_home_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "nowhere"
    with pytest.raises(UserError, match="no catalog"):
        Blockvault.open(home=home, read_only=True)
    assert not home.exists()


def test_a_writable_open_then_repairs_what_read_only_left(
    tmp_path: Path, fault_ledger: Ledger
) -> None:
    home = tmp_path / "home"
    stale_state(home)
    bv = Blockvault.open(home=home)
    with bv.ctx.catalog.session() as session:
        job = session.get(Job, "job-dead01").status
        disk = session.exec(select(Disk)).one()
        fault_ledger.record(
            "kill",
            detected=job == "failed" and disk.status == "error-restoring",
            data_intact=Path(disk.path).is_file(),  # repaired in the catalog, the disk kept
            # a disk its dead restore left half-written, passing for a whole one
            partial_visible=disk.status == "available" or not disk.restore_incomplete,
            note="a restore whose process died, still owning its disk",
        )
        assert job == "failed"
        assert (disk.status, disk.restore_incomplete) == ("error-restoring", True)
    bv.close()


def test_the_cli_with_read_only_lists_but_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.cli import CLI

    cli = CLI(tmp_path / "home", capsys)
    cli.ok("disk", "create", "d", "--size", "1M")
    before = catalog_bytes(cli.home)
    assert [d["name"] for d in cli.ok("--read-only", "disk", "list")] == ["d"]
    assert "read-only" in cli.fails("--read-only", "disk", "delete", "d", "--yes")
    assert catalog_bytes(cli.home) == before
