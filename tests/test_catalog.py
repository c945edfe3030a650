"""The catalog: SQLite in WAL mode, migrations from the previous schema keep user data.

Tests taking `catalog_backend` run twice: on SQLite and on a fresh database of the suite's
own PostgreSQL cluster (tests/conftest.py). The frozen schemas are SQLite DDL; on PostgreSQL
they run with DATETIME spelled TIMESTAMP (the one type name it lacks), and their rows are
copied from the same script run on SQLite (its 0/1 booleans become PostgreSQL's).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from core.base.errors import Conflict, UserError
from core.base.host import host_id
from core.catalog.db import SCHEMA_VERSION, Catalog
from core.catalog.models import Backup, Disk, Job, Policy, Server, VaultRecord
from core.catalog.names import commit_unique


def catalog_url(tmp_path: Path, name: str) -> str:
    """The catalog of this back end: the PostgreSQL database the fixture made, else a file."""
    return os.environ.get("BLOCKVAULT_CATALOG") or f"sqlite:///{tmp_path / name}"


def run_script(url: str, script: str, scratch: Path) -> None:
    """Build a catalog from a frozen SQLite script, on SQLite as is, on PostgreSQL as above."""
    if url.startswith("sqlite:///"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        connection.executescript(script)
        connection.close()
        return
    source = scratch / "frozen.sqlite"
    connection = sqlite3.connect(source)
    connection.executescript(script)
    creates = [
        re.sub(r"\bDATETIME\b", "TIMESTAMP", statement[statement.index("CREATE ") :])
        for statement in script.split(";")
        if "CREATE " in statement
    ]
    engine = sa.create_engine(url)
    with engine.begin() as target:
        for statement in creates:
            target.exec_driver_sql(statement)
        metadata = sa.MetaData()
        metadata.reflect(target)
        for table in metadata.sorted_tables:
            cursor = connection.execute(f'SELECT * FROM "{table.name}"')
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            for row in rows:
                for column in table.columns:
                    if isinstance(column.type, sa.Boolean) and row.get(column.name) is not None:
                        row[column.name] = bool(row[column.name])
            if rows:
                target.execute(table.insert(), rows)
    engine.dispose()
    connection.close()


def set_schema_version(url: str, version: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE meta SET value='{version}' WHERE key='schema_version'")
    engine.dispose()


# The schema blockvault v1 wrote (frozen: never edit; later versions migrate from it).
SCHEMA_V1 = """
CREATE TABLE meta (key VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY (key));
CREATE TABLE servers (id VARCHAR NOT NULL, name VARCHAR NOT NULL, status VARCHAR NOT NULL,
  os_image VARCHAR, created_at DATETIME NOT NULL, PRIMARY KEY (id));
CREATE UNIQUE INDEX ix_servers_name ON servers (name);
CREATE TABLE disks (id VARCHAR NOT NULL, name VARCHAR NOT NULL, size INTEGER NOT NULL,
  path VARCHAR NOT NULL, managed BOOLEAN NOT NULL, device_kind VARCHAR NOT NULL,
  server_id VARCHAR, role VARCHAR NOT NULL, status VARCHAR NOT NULL,
  snapshot_strategy VARCHAR NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id),
  FOREIGN KEY(server_id) REFERENCES servers (id));
CREATE UNIQUE INDEX ix_disks_name ON disks (name);
CREATE TABLE jobs (id VARCHAR NOT NULL, kind VARCHAR NOT NULL, status VARCHAR NOT NULL,
  target_kind VARCHAR NOT NULL, target_id VARCHAR NOT NULL, target_name VARCHAR NOT NULL,
  disk_id VARCHAR, actor VARCHAR NOT NULL, pid INTEGER, host VARCHAR, phase VARCHAR NOT NULL,
  bytes_done INTEGER NOT NULL, bytes_total INTEGER NOT NULL, rate FLOAT NOT NULL, eta FLOAT,
  error VARCHAR, result VARCHAR, created_at DATETIME NOT NULL, started_at DATETIME,
  finished_at DATETIME, PRIMARY KEY (id));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO servers VALUES ('srv-aaaaaa', 'web1', 'active', NULL, '2026-01-01 00:00:00');
INSERT INTO disks VALUES ('disk-bbbbbb', 'web1-root', 1073741824, '/srv/web1.img', 1, 'file',
  'srv-aaaaaa', 'system', 'available', 'chunks', '2026-01-01 00:00:00');
INSERT INTO jobs VALUES ('job-cccccc', 'backup', 'succeeded', 'disk', 'disk-bbbbbb', 'web1-root',
  'disk-bbbbbb', 'root@h', 1, 'h', 'done', 10, 10, 1.0, 0, NULL, NULL, '2026-01-01 00:00:00',
  NULL, NULL);
"""


def test_new_catalog_is_sqlite_wal_at_current_version(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert catalog.version == SCHEMA_VERSION
    catalog.dispose()
    mode = sqlite3.connect(tmp_path / "c.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_catalog_made_by_previous_schema_is_migrated_without_loss(
    tmp_path: Path, catalog_backend: str
) -> None:
    url = catalog_url(tmp_path, "old.sqlite")
    run_script(url, SCHEMA_V1, tmp_path)
    catalog = Catalog(url)
    assert catalog.version == SCHEMA_VERSION
    with catalog.session() as session:
        disk = session.exec(select(Disk)).one()
        assert (disk.name, disk.size, disk.role, disk.restore_incomplete) == (
            "web1-root",
            1 << 30,
            "system",
            False,
        )
        assert session.exec(select(Job)).one().heartbeat_at is None
        disk.size = 1 << 40  # a 1 TiB disk fits the migrated column (BIGINT on PostgreSQL)
        session.add(disk)
        session.commit()
    with catalog.session() as session:
        assert session.exec(select(Disk)).one().size == 1 << 40
    assert catalog.integrity_ok()
    catalog.dispose()
    again = Catalog(url)  # opening twice is a no-op
    assert again.version == SCHEMA_VERSION
    again.dispose()


def test_newer_catalog_is_refused(tmp_path: Path, catalog_backend: str) -> None:
    url = catalog_url(tmp_path, "new.sqlite")
    Catalog(url).dispose()
    set_schema_version(url, 99)
    with pytest.raises(UserError, match="newer"):
        Catalog(url)


def test_a_v4_catalog_gains_locks_replicas_and_quotas_without_loss(
    tmp_path: Path, catalog_backend: str
) -> None:
    """v4 -> v5 (and on) on the exact schema v4 made: rows intact, the new columns empty."""
    url = catalog_url(tmp_path, "v4.sqlite")
    run_script(url, (Path(__file__).parent / "fixtures" / "catalog_v4.sql").read_text(), tmp_path)
    catalog = Catalog(url)
    assert catalog.version == SCHEMA_VERSION == 6
    with catalog.session() as session:
        vault = session.exec(select(VaultRecord)).one()
        assert (vault.name, vault.object_lock, vault.quota_bytes, vault.over_alert) == (
            "offsite",
            None,
            None,
            False,
        )
        backup = session.exec(select(Backup)).one()
        assert (backup.name, backup.pinned, backup.locked_until, backup.copy_of) == (
            "db-nightly",
            True,
            None,
            None,
        )
        policy = session.exec(select(Policy)).one()
        assert (policy.keep_last, policy.lock_for, policy.replicate_to) == (7, None, None)
    assert catalog.integrity_ok()
    catalog.dispose()


def test_a_v5_catalog_gains_hosts_and_the_last_backup_index_without_loss(
    tmp_path: Path, catalog_backend: str
) -> None:
    """v5 -> v6 on the exact schema v5 made: servers and disks become the migrating host's
    (a catalog had one host until v6), every row intact, and a disk's last backup is found
    by an index."""
    url = catalog_url(tmp_path, "v5.sqlite")
    run_script(url, (Path(__file__).parent / "fixtures" / "catalog_v5.sql").read_text(), tmp_path)
    catalog = Catalog(url)
    assert catalog.version == SCHEMA_VERSION == 6
    with catalog.session() as session:
        server = session.exec(select(Server)).one()
        disk = session.exec(select(Disk)).one()
        assert (server.name, server.host, disk.name, disk.host, disk.size) == (
            "web1",
            host_id(),
            "web1-data",
            host_id(),
            1 << 30,
        )
        backup = session.exec(select(Backup)).one()
        assert (backup.name, backup.disk_id, backup.status) == (
            "web1-data-nightly",
            "disk-000001",
            "available",
        )
        assert session.exec(select(Job)).one().host == "alpha"
    indexes = {
        i["name"]: i["column_names"] for i in sa.inspect(catalog.engine).get_indexes("backups")
    }
    assert indexes["ix_backups_disk_status_completed"] == ["disk_id", "status", "completed_at"]
    assert catalog.integrity_ok()
    catalog.dispose()


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from core.catalog.db import Catalog
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
print(Catalog(sys.argv[1]).version)
"""


@pytest.mark.slow
def test_hosts_opening_an_old_catalog_at_once_migrate_it_once(
    tmp_path: Path, catalog_backend: str
) -> None:
    """Three processes (hosts sharing the catalog) open a v5 catalog at the same instant:
    each gets v6, none is told its catalog is damaged, the rows are intact."""
    url = catalog_url(tmp_path, "v5.sqlite")
    run_script(url, (Path(__file__).parent / "fixtures" / "catalog_v5.sql").read_text(), tmp_path)
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_ONCE, url, str(go)],
            cwd=Path(__file__).parent.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    time.sleep(1.0)  # all three imported and waiting
    go.touch()
    results = [child.communicate(timeout=120) for child in children]
    assert [out.strip() for out, _ in results] == ["6", "6", "6"], results
    catalog = Catalog(url)
    with catalog.session() as session:
        assert [d.name for d in session.exec(select(Disk)).all()] == ["web1-data"]
    catalog.dispose()


def test_sizes_times_and_names_round_trip_alike_on_both_back_ends(
    tmp_path: Path, catalog_backend: str
) -> None:
    """A 1 TiB disk, an aware UTC time read back as the same instant, and a name taken twice
    refused by the unique index as one clear line."""
    catalog = Catalog(catalog_url(tmp_path, "c.sqlite"))
    made = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
    with catalog.writer() as session:
        session.add(Server(id="srv-000001", name="web1", created_at=made))
        session.add(Disk(id="disk-000001", name="big", size=1 << 40, path="/p/big"))
        session.commit()
    with catalog.session() as session:
        disk = session.exec(select(Disk)).one()
        server = session.exec(select(Server)).one()
        assert disk.size == 1 << 40
        assert server.created_at == made and server.created_at.utcoffset() is not None
        assert session.exec(select(Server).where(Server.created_at < datetime.now(UTC))).one()
    with catalog.session() as session:
        session.add(Server(id="srv-000002", name="web1"))
        with pytest.raises(Conflict, match="server web1 already exists"):
            commit_unique(session, "server web1")
    catalog.dispose()


def test_claiming_transactions_take_turns_across_connections(
    tmp_path: Path, catalog_backend: str
) -> None:
    """`Catalog.writer` is one at a time across connections (SQLite's write lock, PostgreSQL's
    lock on the claim row): the second waits for the first to commit, then sees its rows."""
    url = catalog_url(tmp_path, "c.sqlite")
    first, second = Catalog(url), Catalog(url)
    seen: list[list[str]] = []
    entered = threading.Event()

    def claim_second() -> None:
        with second.writer() as session:
            entered.set()
            seen.append([d.name for d in session.exec(select(Disk)).all()])
            session.rollback()

    with first.writer() as session:
        session.add(Disk(id="disk-000001", name="first", size=1, path="/p/1"))
        session.flush()
        waiter = threading.Thread(target=claim_second)
        waiter.start()
        time.sleep(0.3)
        assert not entered.is_set(), "the second claim ran while the first held the lock"
        session.commit()
    waiter.join(10)
    assert seen == [["first"]]
    first.dispose()
    second.dispose()


def test_an_unreachable_server_is_one_line_without_the_password(pg_url: str) -> None:
    dead = "postgresql+psycopg://admin:hunter2@127.0.0.1:1/catalog"
    with pytest.raises(UserError) as refused:
        Catalog(dead)
    message = str(refused.value)
    assert message.startswith("cannot open the catalog postgresql+psycopg://admin:***@127.0.0.1:1")
    assert "hunter2" not in message and "\n" not in message
