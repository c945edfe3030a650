"""The catalog: SQLite in WAL mode, migrations from the previous schema keep user data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlmodel import select

from core.base.errors import UserError
from core.catalog.db import SCHEMA_VERSION, Catalog
from core.catalog.models import Backup, Disk, Job, Policy, VaultRecord

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


def test_catalog_made_by_previous_schema_is_migrated_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    connection = sqlite3.connect(path)
    connection.executescript(SCHEMA_V1)
    connection.close()
    catalog = Catalog(f"sqlite:///{path}")
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
    assert catalog.integrity_ok()
    catalog.dispose()
    again = Catalog(f"sqlite:///{path}")  # opening twice is a no-op
    assert again.version == SCHEMA_VERSION


def test_newer_catalog_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    Catalog(f"sqlite:///{path}").dispose()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    connection.commit()
    connection.close()
    with pytest.raises(UserError, match="newer"):
        Catalog(f"sqlite:///{path}")


def test_a_v4_catalog_gains_locks_replicas_and_quotas_without_loss(tmp_path: Path) -> None:
    """v4 -> v5 on the exact schema v4 made: rows intact, the new columns empty."""
    path = tmp_path / "v4.sqlite"
    connection = sqlite3.connect(path)
    connection.executescript((Path(__file__).parent / "fixtures" / "catalog_v4.sql").read_text())
    connection.close()
    catalog = Catalog(f"sqlite:///{path}")
    assert catalog.version == SCHEMA_VERSION == 5
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
