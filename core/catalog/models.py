"""Catalog tables (SQLModel). The catalog is a cache of what the vaults and pool hold (I7).

Statuses follow the cloud service's state machines; `core.rules.states` enforces the transitions.
Backups copy their source disk's metadata so deleting a disk never orphans one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

#: a count of bytes: past 2**31 for any disk over 2 GiB, so BIGINT on PostgreSQL (SQLite's
#: INTEGER holds 64 bits already, and its DDL stays what earlier versions wrote)
BYTES = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    """Timezone-aware now; stored as UTC."""
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC, for JSON output (SQLite drops the tzinfo)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="seconds")


class Meta(SQLModel, table=True):
    """Key/value facts about the catalog itself (schema_version)."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class Server(SQLModel, table=True):
    __tablename__ = "servers"
    id: str = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    status: str = "active"
    os_image: str | None = None
    #: the host it lives on (`host_id`): its disks are there; "" in catalogs before v6
    host: str = ""
    created_at: datetime = Field(default_factory=utcnow)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "host": self.host,
            "status": self.status,
            "os_image": self.os_image,
            "created_at": iso(self.created_at),
            "size": None,
        }


class Disk(SQLModel, table=True):
    __tablename__ = "disks"
    id: str = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    size: int = Field(sa_type=BYTES)
    path: str
    managed: bool = True  # True: a pool image blockvault created; False: registered
    device_kind: str = "file"  # file | block
    server_id: str | None = Field(default=None, foreign_key="servers.id", index=True)
    role: str = "data"  # system | data
    status: str = "available"
    snapshot_strategy: str = "chunks"  # reflink | chunks
    restore_incomplete: bool = False
    version: int = 0  # bumped by every claim and release (compare-and-set)
    claim_job_id: str | None = None  # the job that owns the disk while it is busy
    origin: str | None = None  # "backup:<id>" for a disk made by restoring that backup
    #: the host whose pool or device holds it: only that host reads or writes its data; ""
    #: (catalogs before v6) is any host
    host: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Snapshot(SQLModel, table=True):
    __tablename__ = "snapshots"
    id: str = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    disk_id: str = Field(foreign_key="disks.id", index=True)
    status: str = "creating"
    strategy: str = "chunks"
    size: int = Field(default=0, sa_type=BYTES)
    bytes_stored: int = Field(default=0, sa_type=BYTES)
    kind: str = "user"  # user | safety
    expires_at: datetime | None = None
    version: int = 0
    claim_job_id: str | None = None  # the job creating or deleting it
    leans_on: str | None = None  # a safety snapshot that reads unchanged chunks from this backup
    created_at: datetime = Field(default_factory=utcnow)


class VaultRecord(SQLModel, table=True):
    __tablename__ = "vaults"
    id: str = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    kind: str = "local"  # local | s3
    location: str = ""  # /path or s3://bucket/prefix
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    addressing_style: str = "auto"
    request_checksum: str = "when_required"
    chunk_size: int = Field(default=4 << 20, sa_type=BYTES)
    encrypted: bool = False
    status: str = "available"
    version: int = 0
    #: the vault's settings (chunk size, compression, encryption...) as first seen: a vault
    #: whose config changes afterwards is refused (canonical JSON, no secret in it)
    config_settings: str | None = None
    #: S3 Object Lock mode every object is written with (compliance | governance), or None
    object_lock: str | None = None
    #: `vault set --quota`: backups that would pass it are refused
    quota_bytes: int | None = Field(default=None, sa_type=BYTES)
    alert_at: float | None = None  # percent of the quota whose crossing raises an alert
    #: bytes really stored (after dedup and zstd), last measured
    usage_bytes: int | None = Field(default=None, sa_type=BYTES)
    usage_at: datetime | None = None
    over_alert: bool = False  # the last measurement was past alert_at (one alert per crossing)
    created_at: datetime = Field(default_factory=utcnow)


class Backup(SQLModel, table=True):
    __tablename__ = "backups"
    #: a disk's last backup (disk list, the console, plans) without scanning all its backups
    __table_args__ = (
        sa.Index("ix_backups_disk_status_completed", "disk_id", "status", "completed_at"),
    )
    id: str = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    vault_id: str = Field(foreign_key="vaults.id", index=True)
    # copy of the source disk's metadata: no foreign key, the disk may be deleted
    disk_id: str = Field(index=True)
    disk_name: str = ""
    disk_size: int = Field(default=0, sa_type=BYTES)
    server_name: str | None = None
    role: str = "data"
    status: str = "creating"
    size: int = Field(default=0, sa_type=BYTES)
    bytes_new: int = Field(default=0, sa_type=BYTES)
    bytes_reused: int = Field(default=0, sa_type=BYTES)
    bytes_zero: int = Field(default=0, sa_type=BYTES)
    bytes_stored: int = Field(default=0, sa_type=BYTES)
    digest: str | None = None
    parent_id: str | None = None
    policy_id: str | None = None
    duration: float = 0.0
    version: int = 0
    pinned: bool = False  # exempt from every policy's retention (`backup pin`)
    #: `backup lock`: no delete, expiry or gc before this (S3 Object Lock on locked vaults)
    locked_until: datetime | None = None
    copy_of: str | None = Field(default=None, index=True)  # the backup this one replicates
    created_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None


class Policy(SQLModel, table=True):
    __tablename__ = "policies"
    id: str = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    schedule: str = "0 2 * * *"
    vault_id: str | None = Field(default=None, foreign_key="vaults.id")
    keep_last: int | None = None  # `policy create` gives 7 when no rule is given
    keep_days: int | None = None  # v1..v3 catalogs; read as keep_within of that many days
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: str | None = None  # a duration, e.g. "30d"
    drill: str | None = None  # a schedule for restore drills of the policy's disks
    lock_for: str | None = None  # a duration: each backup it makes is locked that long
    replicate_to: str | None = None  # a vault id: each backup it makes is copied there
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class PolicySlot(SQLModel, table=True):
    """One scheduled run of a policy, claimed by the first service or `policy run` to insert
    it: two services on one catalog never run the same slot twice."""

    __tablename__ = "policy_slots"
    #: a policy's id, or another schedule's owner (e.g. "gc:<vault id>" for gc windows)
    policy_id: str = Field(primary_key=True)
    slot_at: datetime = Field(primary_key=True)
    kind: str = Field(default="backup", primary_key=True)  # backup | drill | gc
    host: str = ""
    status: str = "running"  # running | succeeded | failed | partial
    claimed_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    detail: str = ""


class Drill(SQLModel, table=True):
    """A restore drill: a backup restored into scratch space, its digest and filesystem checked,
    the time it took (the measured RTO)."""

    __tablename__ = "drills"
    id: str = Field(primary_key=True)
    disk_id: str = Field(index=True)
    disk_name: str = ""
    backup_id: str = ""
    backup_name: str = ""
    policy_id: str | None = None
    status: str = "running"  # running | passed | failed | cancelled (by a user, or interrupted)
    filesystem: str = ""  # ext2 | ext3 | ext4 | xfs | "" (none found)
    detail: str = ""
    seconds: float = 0.0
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class PolicyTarget(SQLModel, table=True):
    __tablename__ = "policy_targets"
    policy_id: str = Field(foreign_key="policies.id", primary_key=True)
    disk_id: str = Field(primary_key=True)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    id: str = Field(primary_key=True)
    kind: str  # backup | restore | snapshot | rollback | undo | to-disk | verify | gc | reinstall
    status: str = "queued"  # queued | running | cancelling | succeeded | failed | cancelled
    target_kind: str = ""
    target_id: str = ""
    target_name: str = ""
    disk_id: str | None = Field(default=None, index=True)
    source_id: str | None = Field(default=None, index=True)  # the snapshot or backup it reads
    actor: str = ""
    pid: int | None = None
    host: str | None = None
    phase: str = ""
    bytes_done: int = Field(default=0, sa_type=BYTES)
    bytes_total: int = Field(default=0, sa_type=BYTES)
    rate: float = 0.0
    eta: float | None = None
    error: str | None = None
    result: str | None = None  # JSON of the result object
    request: str | None = None  # JSON of a job handed to the service (`--background`)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None


class Event(SQLModel, table=True):
    """Audit log: who (user@host), what, when."""

    __tablename__ = "events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    action: str
    object_kind: str
    object_id: str
    object_name: str = ""
    detail: str = ""
