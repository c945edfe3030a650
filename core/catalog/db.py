"""Open the catalog: SQLite (WAL) at the data directory by default, any SQLAlchemy URL otherwise.

The schema carries a version in the `meta` table; `MIGRATIONS` bring an older catalog forward
with Alembic operations, so later work adds columns without losing a user's catalog.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine, select

from core.catalog import models

if TYPE_CHECKING:
    from alembic.operations import Operations
from core.base.errors import UserError
from core.base.host import host_id

SCHEMA_VERSION = 6
CLAIM_LOCK_KEY = "claim_lock"  # the meta row every claiming transaction updates first


def _v2_restore_marker_and_heartbeat(op: Operations) -> None:
    """v2: disks remember an interrupted restore; jobs carry a heartbeat for liveness."""
    with op.batch_alter_table("disks") as batch:
        batch.add_column(
            sa.Column("restore_incomplete", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))


def _v3_claims(op: Operations) -> None:
    """v3: a version and an owning job per claimable row (compare-and-set claims); jobs name
    the snapshot or backup they read; disks remember the backup a new disk is restored from."""
    present = set(sa.inspect(op.get_bind()).get_table_names())  # later tables come complete
    for table in ("disks", "snapshots", "vaults", "backups"):
        if table not in present:
            continue
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("0"))
            )
            if table in ("disks", "snapshots"):
                batch.add_column(sa.Column("claim_job_id", sa.String(), nullable=True))
            if table == "snapshots":
                batch.add_column(sa.Column("leans_on", sa.String(), nullable=True))
            if table == "vaults":
                batch.add_column(sa.Column("config_settings", sa.String(), nullable=True))
    with op.batch_alter_table("disks") as batch:
        batch.add_column(sa.Column("origin", sa.String(), nullable=True))
    if "jobs" in present:
        with op.batch_alter_table("jobs") as batch:
            batch.add_column(sa.Column("source_id", sa.String(), nullable=True))


def _v4_protection(op: Operations) -> None:
    """v4: GFS retention and drills on policies, pinned backups, jobs handed to the service
    (policy_slots and drills are new tables, made complete by create_all)."""
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "policies" in present:
        with op.batch_alter_table("policies") as batch:
            for column in (
                "keep_hourly",
                "keep_daily",
                "keep_weekly",
                "keep_monthly",
                "keep_yearly",
            ):
                batch.add_column(sa.Column(column, sa.Integer(), nullable=True))
            batch.add_column(sa.Column("keep_within", sa.String(), nullable=True))
            batch.add_column(sa.Column("drill", sa.String(), nullable=True))
    if "backups" in present:
        with op.batch_alter_table("backups") as batch:
            batch.add_column(
                sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
            )
    if "jobs" in present:
        with op.batch_alter_table("jobs") as batch:
            batch.add_column(sa.Column("request", sa.String(), nullable=True))


def _v5_protecting_backups(op: Operations) -> None:
    """v5: locked backups and object-lock vaults, replicas and replicating policies, vault
    quotas with their alert threshold and last measured usage. Plain ADD COLUMNs: a batch
    rebuild of `vaults` would drop a table that backups and policies reference."""
    present = set(sa.inspect(op.get_bind()).get_table_names())
    columns = {
        "vaults": [
            sa.Column("object_lock", sa.String(), nullable=True),
            sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
            sa.Column("alert_at", sa.Float(), nullable=True),
            sa.Column("usage_bytes", sa.BigInteger(), nullable=True),
            sa.Column("usage_at", sa.DateTime(), nullable=True),
            sa.Column("over_alert", sa.Boolean(), nullable=False, server_default=sa.false()),
        ],
        "backups": [
            sa.Column("locked_until", sa.DateTime(), nullable=True),
            sa.Column("copy_of", sa.String(), nullable=True),
        ],
        "policies": [
            sa.Column("lock_for", sa.String(), nullable=True),
            sa.Column("replicate_to", sa.String(), nullable=True),
        ],
    }
    for table, added in columns.items():
        if table in present:
            for column in added:
                op.add_column(table, column)
    if "backups" in present:
        op.create_index("ix_backups_copy_of", "backups", ["copy_of"])
    _widen_byte_columns(op, present)


def _v6_hosts(op: Operations) -> None:
    """v6: servers and disks record the host they live on (several hosts share a catalog);
    an index finds a disk's last backup among 100,000 without a scan. Plain ADD COLUMNs,
    as in v5. Until v6 a catalog had one host, the one migrating it: its servers and disks
    become that host's (left empty, any host sharing the catalog later could write them)."""
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for table in ("servers", "disks"):
        if table in present:
            op.add_column(table, sa.Column("host", sa.String(), nullable=False, server_default=""))
            op.execute(sa.text(f"UPDATE {table} SET host = :host").bindparams(host=host_id()))
    if "backups" in present:
        op.create_index(
            "ix_backups_disk_status_completed", "backups", ["disk_id", "status", "completed_at"]
        )


#: the columns counting bytes (models.BYTES): INTEGER in the DDL of v1..v4
BYTE_COLUMNS = {
    "disks": ("size",),
    "snapshots": ("size", "bytes_stored"),
    "vaults": ("chunk_size",),
    "backups": ("disk_size", "size", "bytes_new", "bytes_reused", "bytes_zero", "bytes_stored"),
    "jobs": ("bytes_done", "bytes_total"),
}


def _widen_byte_columns(op: Operations, present: set[str]) -> None:
    """Byte counts become BIGINT where INTEGER is 32 bits (PostgreSQL: a 2 GiB disk would not
    fit); SQLite's INTEGER holds 64 bits, so its catalogs are left as they are."""
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, names in BYTE_COLUMNS.items():
        if table in present:
            for name in names:
                op.alter_column(table, name, type_=sa.BigInteger(), existing_type=sa.Integer())


MIGRATIONS: dict[int, Callable[[Operations], None]] = {
    2: _v2_restore_marker_and_heartbeat,
    3: _v3_claims,
    4: _v4_protection,
    5: _v5_protecting_backups,
    6: _v6_hosts,
}


def _enable_sqlite_pragmas(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


#: PostgreSQL sessions run in UTC: times read back as the same UTC instants as on SQLite
#: (TIMESTAMPTZ columns and the plain TIMESTAMP ones migrations add, which hold UTC as SQLite
#: does); a lock waited for past 30 s is an error, as SQLite's busy timeout makes it
POSTGRESQL_OPTIONS = "-c timezone=UTC -c lock_timeout=30000"


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unparsable URL)"


def _is_postgresql(url: str) -> bool:
    return url.startswith(("postgresql:", "postgresql+", "postgres:"))


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """Build the engine for `url` (created by a factory, never at import time)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            _enable_sqlite_pragmas(engine)
        elif _is_postgresql(url):
            options = POSTGRESQL_OPTIONS
            if read_only:  # every transaction read only: the server refuses any write
                options += " -c default_transaction_read_only=on"
            engine = create_engine(
                url.replace("postgres://", "postgresql://", 1),
                pool_pre_ping=True,
                connect_args={"options": options, "connect_timeout": 10},
            )
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        if _is_postgresql(url):
            raise UserError(
                f"the catalog {shown_url(url)} needs psycopg 3: pip install "
                "'blockvault[postgresql]' (or pip install 'psycopg[binary]')"
            ) from None
        raise UserError(f"invalid catalog URL {shown_url(url)}: {exc}") from None
    except sa.exc.ArgumentError as exc:
        raise UserError(f"invalid catalog URL: {exc}") from None
    return engine


def make_read_only_engine(url: str) -> Engine:
    """The catalog opened so that nothing can write it (SQLite's mode=ro; PostgreSQL sessions
    whose transactions are read only); a missing SQLite catalog is an error, not a new file."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserError(
                f"no catalog at {path}: nothing to show read-only (open it once without "
                "--read-only to create it)"
            )
        engine = create_engine(
            f"sqlite:///file:{path}?mode=ro&uri=true",
            connect_args={"check_same_thread": False, "timeout": 30},
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.execute("PRAGMA busy_timeout=10000")
            dbapi_connection.execute("PRAGMA query_only=ON")

        return engine
    if _is_postgresql(url):
        return make_engine(url, read_only=True)
    engine = make_engine(url)

    @sa.event.listens_for(engine, "begin")
    def _read_only(connection) -> None:  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")

    return engine


def current_version(engine: Engine) -> int:
    """The schema version, without migrating: a read-only open of an older catalog is
    refused (migrating would write it)."""
    version = schema_version(engine)
    if version is None:
        raise UserError("the catalog is empty: nothing to show read-only")
    if version != SCHEMA_VERSION:
        raise UserError(
            f"the catalog is schema v{version}, this blockvault needs v{SCHEMA_VERSION}: open "
            "it once without --read-only to migrate it"
        )
    return version


def schema_version(engine: Engine) -> int | None:
    """The stored schema version, or None for an empty database. Every command asks, so it
    is one plain query; the table names are read only when that query fails."""
    try:
        with engine.connect() as connection:
            row = connection.exec_driver_sql(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).first()
    except sa.exc.DBAPIError:
        if "meta" not in sa.inspect(engine).get_table_names():
            return None
        raise
    return int(row[0]) if row else 1


def migrate(engine: Engine) -> int:
    """Create a fresh schema or bring an older one to SCHEMA_VERSION; return the version."""
    try:
        current = schema_version(engine)
    except sa.exc.OperationalError as exc:
        if engine.dialect.name != "sqlite":
            raise  # Catalog names the server's URL (without its password) and its reason
        raise UserError(f"cannot open catalog: {exc.orig}") from None
    if current == SCHEMA_VERSION:
        return current  # the usual open: nothing to create, Alembic not even imported
    with _migration_lock(engine):  # hosts sharing a catalog may all open it at once
        return _migrate_locked(engine)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migrating process at a time: a PostgreSQL advisory lock, or a lock file beside a
    SQLite catalog (whose ALTERs the driver runs outside a transaction)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            connection.commit()
            try:
                yield
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                connection.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl  # only when a migration runs

    descriptor = os.open(f"{database}.migrating", os.O_RDWR | os.O_CREAT, 0o600)  # as the catalog
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


#: the advisory lock every migrating blockvault takes on a PostgreSQL catalog
MIGRATION_LOCK_KEY = 0x626C6B76  # "blkv"


def _migrate_locked(engine: Engine) -> int:
    """Read the version again under the lock (another host may have migrated meanwhile),
    then create or migrate."""
    current = schema_version(engine)
    if current is None:
        SQLModel.metadata.create_all(engine)
        _stamp(engine, SCHEMA_VERSION)
        return SCHEMA_VERSION
    if current == SCHEMA_VERSION:
        return current
    if current > SCHEMA_VERSION:
        raise UserError(
            f"catalog schema v{current} is newer than this blockvault (v{SCHEMA_VERSION}); upgrade"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with engine.begin() as connection:
            from alembic.migration import MigrationContext  # only when a migration runs
            from alembic.operations import Operations

            MIGRATIONS[version](Operations(MigrationContext.configure(connection)))
        _stamp(engine, version)
    SQLModel.metadata.create_all(engine)  # tables added in later versions
    return SCHEMA_VERSION


def _stamp(engine: Engine, version: int) -> None:
    with Session(engine) as session:
        session.merge(models.Meta(key="schema_version", value=str(version)))
        if session.get(models.Meta, CLAIM_LOCK_KEY) is None:
            session.add(models.Meta(key=CLAIM_LOCK_KEY, value="claims"))
        session.commit()


RECOVERY = "blockvault vault add NAME --path DIR|--s3 URL && blockvault vault import NAME"


def _where(url: str) -> str:
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else "database"


def _owner_only(url: str) -> None:
    """The catalog names every disk, path and vault of the host: readable by its owner only."""
    if not url.startswith("sqlite:///"):
        return
    base = url.removeprefix("sqlite:///")
    for path in (Path(base), Path(f"{base}-wal"), Path(f"{base}-shm")):
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
        except FileNotFoundError:
            continue


def _refuse_empty_file(url: str) -> None:
    """A zero-length SQLite file would open as an empty catalog: say what happened instead."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    try:
        empty = path.is_file() and path.stat().st_size == 0
    except OSError:
        return
    if empty:
        raise UserError(
            f"the catalog {path} is empty (0 bytes): it was truncated; move it aside and "
            f"rebuild it from your vaults with `{RECOVERY}`"
        )


class Catalog:
    """The engine plus a session factory; each thread opens its own session."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        _refuse_empty_file(url)
        self.engine = make_read_only_engine(url) if read_only else make_engine(url)
        try:
            self.version = current_version(self.engine) if read_only else migrate(self.engine)
            if not read_only:
                _owner_only(url)
        except sa.exc.DatabaseError as exc:
            self.engine.dispose()
            if not url.startswith("sqlite"):  # a server: unreachable, refused, no rights...
                reason = (str(exc.orig).strip().splitlines() or [type(exc).__name__])[0]
                raise UserError(
                    f"cannot open the catalog {shown_url(url)}: {reason[:200]}"
                ) from None
            raise UserError(
                f"the catalog {_where(url)} is damaged ({str(exc.orig)[:80]}); move it aside "
                f"and rebuild it from your vaults with `{RECOVERY}`"
            ) from None
        except UserError:
            self.engine.dispose()
            raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction the caller commits (one unit of work)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def writer(self) -> Iterator[Session]:
        """A session that first takes the catalog's claim lock, then reads.

        Every transaction that claims objects or takes names starts here, so "check the plan,
        then claim" is one atomic step on SQLite (the first statement is a write: the
        transaction holds the write lock before it reads anything) and on PostgreSQL (the
        lock row stays locked until commit). The caller commits; leaving without a commit
        rolls everything back and releases the lock.
        """
        if self.read_only:
            raise UserError("read-only: this blockvault changes nothing")
        with Session(self.engine, expire_on_commit=False) as session:
            session.execute(
                sa.update(models.Meta)
                .where(models.Meta.key == CLAIM_LOCK_KEY)
                .values(value=models.Meta.value)
            )
            yield session

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check (used by crash tests)."""
        if not self.url.startswith("sqlite"):
            return True
        with self.engine.connect() as connection:
            return connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"

    def dispose(self) -> None:
        self.engine.dispose()


__all__ = ["SCHEMA_VERSION", "Catalog", "migrate", "schema_version", "select"]
