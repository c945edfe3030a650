"""Plain dicts of catalog rows with their relations, for JSON output and the console."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from core.catalog.models import Backup, Disk, Job, Server, Snapshot, VaultRecord, iso


def allocated_bytes(path: str) -> int | None:
    """Bytes really allocated by a disk image (sparse files allocate less than their size)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_blocks * 512 if os.path.isfile(path) else st.st_size


def disk_view(
    disk: Disk,
    *,
    server: Server | None,
    status: str | None = None,
    last_backup_at=None,
    local: bool = True,
) -> dict[str, Any]:
    """`local`: the disk is on this host (another host's path is not measured here)."""
    return {
        "id": disk.id,
        "name": disk.name,
        "status": status or disk.status,
        "size": disk.size,
        "allocated": allocated_bytes(disk.path) if local else None,
        "created_at": iso(disk.created_at),
        "path": disk.path,
        "managed": disk.managed,
        "device_kind": disk.device_kind,
        "server": server.name if server else None,
        "server_id": disk.server_id,
        "host": disk.host,
        "role": disk.role,
        "snapshot_strategy": disk.snapshot_strategy,
        "restore_incomplete": disk.restore_incomplete,
        "last_backup_at": iso(last_backup_at),
    }


def server_view(server: Server, *, disks: list[Disk]) -> dict[str, Any]:
    data = server.public()
    data["disks"] = [{"id": d.id, "name": d.name, "role": d.role} for d in disks]
    data["size"] = sum(d.size for d in disks)
    return data


def snapshot_view(
    snapshot: Snapshot, *, disk: Disk | None, server: Server | None
) -> dict[str, Any]:
    return {
        "id": snapshot.id,
        "name": snapshot.name,
        "status": snapshot.status,
        "size": snapshot.size,
        "bytes_stored": snapshot.bytes_stored,
        "created_at": iso(snapshot.created_at),
        "expires_at": iso(snapshot.expires_at),
        "kind": snapshot.kind,
        "strategy": snapshot.strategy,
        "disk_id": snapshot.disk_id,
        "disk_name": disk.name if disk else None,
        "server": server.name if server else None,
        "role": disk.role if disk else None,
        "path": disk.path if disk else None,
    }


#: the backups table's columns a view shows, in the order `backup_row_view` reads them
BACKUP_VIEW_COLUMNS = (
    "id", "name", "status", "size", "created_at", "completed_at", "disk_id", "disk_name",
    "disk_size", "server_name", "role", "vault_id", "parent_id", "bytes_new", "bytes_reused",
    "bytes_zero", "bytes_stored", "digest", "duration", "policy_id", "pinned", "locked_until",
    "copy_of",
)  # fmt: skip


def backup_view(backup: Backup, *, vault: VaultRecord | None, disk_exists: bool) -> dict[str, Any]:
    """A backup as the fronts show it."""
    values = tuple(getattr(backup, column) for column in BACKUP_VIEW_COLUMNS)
    return backup_row_view(values, vault=vault.name if vault else None, disk_exists=disk_exists)


def backup_row_view(
    values: Sequence[Any], *, vault: str | None, disk_exists: bool
) -> dict[str, Any]:
    """`backup_view` from the BACKUP_VIEW_COLUMNS of one row, read by position: a catalog of
    100,000 backups lists ~15x faster than from ORM objects (bench/bench_scale.py)."""
    (
        backup_id, name, status, size, created_at, completed_at, disk_id, disk_name,
        disk_size, server_name, role, vault_id, parent_id, bytes_new, bytes_reused,
        bytes_zero, bytes_stored, digest, duration, policy_id, pinned, locked_until, copy_of,
    ) = values  # fmt: skip
    return {
        "id": backup_id,
        "name": name,
        "status": status,
        "size": size,
        "created_at": iso(created_at),
        "completed_at": iso(completed_at),
        "disk_id": disk_id,
        "disk_name": disk_name,
        "disk_size": disk_size,
        "disk_deleted": not disk_exists,
        "server": server_name,
        "role": role,
        "vault": vault,
        "vault_id": vault_id,
        "parent_id": parent_id,
        "bytes_new": bytes_new,
        "bytes_reused": bytes_reused,
        "bytes_zero": bytes_zero,
        "bytes_stored": bytes_stored,
        "digest": digest,
        "duration": duration,
        "policy_id": policy_id,
        "pinned": pinned,
        "locked_until": iso(locked_until),
        "copy_of": copy_of,  # a replica: the backup it was copied from
    }


def vault_view(vault: VaultRecord, **stats: Any) -> dict[str, Any]:
    return {
        "id": vault.id,
        "name": vault.name,
        "status": vault.status,
        "kind": vault.kind,
        "location": vault.location,
        "endpoint_url": vault.endpoint_url,
        "region": vault.region,
        "profile": vault.profile,
        "addressing_style": vault.addressing_style,
        "request_checksum": vault.request_checksum,
        "chunk_size": vault.chunk_size,
        "encrypted": vault.encrypted,
        "object_lock": vault.object_lock,  # S3 Object Lock mode of locked backups, or None
        "created_at": iso(vault.created_at),
        "size": stats.get("logical_bytes"),
        **capacity_view(vault),
        **stats,
    }


def capacity_view(vault: VaultRecord) -> dict[str, Any]:
    """Usage (bytes really stored, as last measured) against the quota and its alert."""
    percent = None
    if vault.quota_bytes and vault.usage_bytes is not None:
        percent = round(vault.usage_bytes / vault.quota_bytes * 100, 1)
    return {
        "usage_bytes": vault.usage_bytes,
        "usage_at": iso(vault.usage_at),
        "quota_bytes": vault.quota_bytes,
        "alert_at": vault.alert_at,
        "percent_used": percent,
        "over_alert": vault.over_alert,
    }


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.id,
        "kind": job.kind,
        "status": job.status,
        "size": job.bytes_total,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "target_kind": job.target_kind,
        "target_id": job.target_id,
        "target_name": job.target_name,
        "disk_id": job.disk_id,
        "actor": job.actor,
        "host": job.host,
        "phase": job.phase,
        "bytes_done": job.bytes_done,
        "bytes_total": job.bytes_total,
        "rate": job.rate,
        "eta": job.eta,
        "error": job.error,
        "result": _result(job.result),
    }


def _result(text: str | None) -> Any:
    """A job's result as the object it was (stored as JSON text), not a string of JSON."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
