"""Shared steps of every job on a disk: claiming it (its status machine), releasing it,
the copy of its metadata that backups and snapshots keep, and default object names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from core.catalog.context import Context
from core.catalog.models import Disk, Server
from core.rules.states import check_transition


def set_disk_status(
    ctx: Context, disk_id: str, new: str, *, incomplete: bool | None = None
) -> None:
    """Release a disk into `new` (and mark or clear an interrupted restore)."""
    with ctx.catalog.session() as session:
        disk = session.get(Disk, disk_id)
        if disk is None:
            return
        disk.status = new
        if incomplete is not None:
            disk.restore_incomplete = incomplete
        session.add(disk)
        session.commit()


def claim_disk(ctx: Context, disk_id: str, new: str) -> Disk:
    """Move a disk into a busy status, refusing if its status machine forbids it."""
    with ctx.catalog.session() as session:
        disk = session.get(Disk, disk_id)
        check_transition("disk", disk.name, disk.status, new)
        disk.status = new
        session.add(disk)
        session.commit()
        return disk


def disk_metadata(session: Session, disk: Disk) -> dict[str, Any]:
    """The copy of the disk a manifest and a backup row keep (survives the disk's deletion)."""
    server = session.get(Server, disk.server_id) if disk.server_id else None
    return {
        "id": disk.id,
        "name": disk.name,
        "size": disk.size,
        "server": server.name if server else None,
        "role": disk.role,
        "path": disk.path,
    }


def default_name(session: Session, model: type, base: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"{base}-{stamp}"
    suffix = 1
    while session.exec(select(model).where(model.name == name)).first():
        suffix += 1
        name = f"{base}-{stamp}-{suffix}"
    return name
