"""Disks: create, register, attach, detach, delete.

A disk's name is taken and its row inserted in one claiming transaction; the image file is
made right after, and a disk whose file cannot be made is removed again, with one clear line.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlmodel import Session, select

from core.base.errors import Conflict, UserError
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, Server, Snapshot
from core.catalog.names import check_new_name, commit_unique, unique_id
from core.engine import devices
from core.engine.snapshot_store import detect_strategy
from core.jobs.claims import active_readers, claim, release_disk
from core.ops.facts import check_plan, disk_facts, disk_folder, folder_freed_bytes
from core.rules import lifecycle
from core.rules.plans import Plan

ROLES = ("system", "data")
T = TypeVar("T")


def attach_checks(
    session: Session, server: Server, role: str, *, disk_id: str | None, disk_host: str = ""
) -> None:
    """A role is system or data; a server has at most one system disk; a server and its
    disks live on one host."""
    if role not in ROLES:
        raise UserError(f"invalid role {role!r}: use system or data")
    if server.host and disk_host and server.host != disk_host:
        raise Conflict(
            f"server {server.name} lives on host {server.host}, the disk on {disk_host}: "
            "a server's disks are on its own host"
        )
    if role == "system":
        existing = session.exec(
            select(Disk).where(Disk.server_id == server.id, Disk.role == "system")
        ).first()
        if existing and existing.id != disk_id:
            raise Conflict(f"server {server.name} already has a system disk ({existing.name})")


def insert_pool_disk(
    ctx: Context,
    session: Session,
    name: str,
    *,
    size: int,
    server: Server | None = None,
    role: str = "data",
    status: str = "available",
    job_id: str | None = None,
    origin: str | None = None,
) -> Disk:
    """Add a pool disk's row (and make its sparse image) in the caller's transaction."""
    check_new_name(session, Disk, name, kind="disk")
    if server is not None:
        attach_checks(session, server, role, disk_id=None, disk_host=ctx.host)
    elif role not in ROLES:
        raise UserError(f"invalid role {role!r}: use system or data")
    disk_id = unique_id(session, Disk, "disk")
    folder = disk_folder(ctx, disk_id)
    image = folder / "disk.img"
    try:
        folder.mkdir(parents=True, exist_ok=False)
        with open(image, "xb") as handle:
            handle.truncate(size)
    except (OSError, OverflowError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        reason = getattr(exc, "strerror", None) or "size too large"
        raise UserError(f"cannot create disk image {image}: {reason}") from None
    disk = Disk(
        id=disk_id,
        name=name,
        size=size,
        path=str(image),
        managed=True,
        server_id=server.id if server else None,
        role=role if server else "data",
        snapshot_strategy=detect_strategy(folder),
        status=status,
        claim_job_id=job_id,
        restore_incomplete=status == "restoring",
        origin=origin,
        host=ctx.host,
    )
    session.add(disk)
    record(
        session,
        ctx,
        "disk.create",
        kind="disk",
        object_id=disk.id,
        name=name,
        detail=f"size {size}",
    )
    return disk


def fill_new_disk(ctx: Context, *, job_id: str, disk: Disk, write: Callable[[], T]) -> T:
    """Write a disk this job made (or resumes filling); release it complete, or marked
    incomplete if the write stopped, so running it again resumes."""
    ok = False
    try:
        result = write()
        ok = True
        return result
    finally:
        status = "available" if ok else "error-restoring"
        release_disk(ctx, disk.id, job_id=job_id, status=status, incomplete=not ok)


def filled_disk(disk: Disk, **extra: Any) -> dict[str, Any]:
    """The result of a job that filled a disk."""
    return {
        "id": disk.id,
        "name": disk.name,
        "status": "available",
        "size": disk.size,
        "created_at": None,
        "path": disk.path,
        **extra,
    }


def commit_new_disk(session: Session, ctx: Context, disk: Disk) -> None:
    """Commit a new disk; if its name was taken meanwhile, remove the image made for it."""
    try:
        commit_unique(session, f"a disk named {disk.name!r}")
    except Conflict:
        shutil.rmtree(disk_folder(ctx, disk.id), ignore_errors=True)
        raise


def create_disk(
    ctx: Context, name: str, size: int, *, server: str | None = None, role: str = "data"
) -> Disk:
    """A sparse raw image in the pool, optionally attached to a server."""
    with ctx.catalog.writer() as session:
        owner = resolve(session, Server, server, kind="server") if server else None
        disk = insert_pool_disk(ctx, session, name, size=size, server=owner, role=role)
        commit_new_disk(session, ctx, disk)
        return disk


def register_disk(
    ctx: Context, name: str, path: str, *, server: str | None = None, role: str = "data"
) -> Disk:
    """Adopt an existing raw image file or block device; its size is read from it."""
    target = Path(path).expanduser()
    try:
        st = os.stat(target)
    except FileNotFoundError:
        raise UserError(f"no such file or device: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path} is a directory, not a disk image or block device")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise UserError(f"{path} is not a regular file or block device")
    try:
        size = devices.device_size(target)
    except OSError as exc:
        raise UserError(f"cannot open {path}: {exc.strerror or exc}") from None
    if size <= 0:
        raise UserError(f"{path} is empty: a disk needs a size greater than zero")
    real = str(target.resolve())
    with ctx.catalog.writer() as session:
        check_new_name(session, Disk, name, kind="disk")
        same_file = select(Disk).where(Disk.path == real, Disk.host.in_(("", ctx.host)))  # type: ignore[attr-defined]
        if session.exec(same_file).first():  # /dev/sdb of another host is another device
            raise Conflict(f"{path} is already registered")
        owner = resolve(session, Server, server, kind="server") if server else None
        if owner:
            attach_checks(session, owner, role, disk_id=None, disk_host=ctx.host)
        disk_id = unique_id(session, Disk, "disk")
        folder = disk_folder(ctx, disk_id)
        folder.mkdir(parents=True, exist_ok=False)
        disk = Disk(
            id=disk_id,
            name=name,
            size=size,
            path=real,
            managed=False,
            device_kind="block" if stat.S_ISBLK(st.st_mode) else "file",
            server_id=owner.id if owner else None,
            role=role if owner else "data",
            snapshot_strategy="chunks"
            if stat.S_ISBLK(st.st_mode)
            else _registered_strategy(real, folder),
            host=ctx.host,
        )
        session.add(disk)
        record(
            session, ctx, "disk.register", kind="disk", object_id=disk.id, name=name, detail=real
        )
        commit_new_disk(session, ctx, disk)
        return disk


def _registered_strategy(real: str, folder: Path) -> str:
    """Reflink only works when the image and its snapshot folder share one filesystem."""
    if os.stat(real).st_dev != os.stat(folder).st_dev:
        return "chunks"
    return detect_strategy(folder)


def attach_disk(ctx: Context, ref: str, server_ref: str, *, role: str = "data") -> Disk:
    with ctx.catalog.writer() as session:
        disk = resolve(session, Disk, ref, kind="disk")
        server = resolve(session, Server, server_ref, kind="server")
        if disk.server_id and disk.server_id != server.id:
            current = session.get(Server, disk.server_id)
            raise Conflict(
                f"disk {disk.name} is attached to server {current.name}; detach it first"
            )
        attach_checks(session, server, role, disk_id=disk.id, disk_host=disk.host)
        disk.server_id, disk.role = server.id, role
        session.add(disk)
        record(
            session,
            ctx,
            "disk.attach",
            kind="disk",
            object_id=disk.id,
            name=disk.name,
            detail=f"{server.name} as {role}",
        )
        session.commit()
        return disk


def unattach(ctx: Context, session: Session, disk: Disk, *, detail: str) -> None:
    """The disk belongs to no server any more (a data disk), in the caller's transaction."""
    disk.server_id, disk.role = None, "data"
    session.add(disk)
    record(
        session, ctx, "disk.detach", kind="disk", object_id=disk.id, name=disk.name, detail=detail
    )


def detach_disk(ctx: Context, ref: str) -> Disk:
    with ctx.catalog.writer() as session:
        disk = resolve(session, Disk, ref, kind="disk")
        if not disk.server_id:
            raise Conflict(f"disk {disk.name} is not attached to a server")
        server = session.get(Server, disk.server_id)
        unattach(ctx, session, disk, detail=f"from {server.name}")
        session.commit()
        return disk


# --- delete ------------------------------------------------------------------------------


def _delete_plan(ctx: Context, session: Session, disk: Disk, *, measure: bool) -> Plan:
    snapshots = session.exec(select(Snapshot).where(Snapshot.disk_id == disk.id)).all()
    backups = session.exec(
        select(Backup).where(Backup.disk_id == disk.id, Backup.status == "available")
    ).all()
    readers = [job for s in snapshots for job in active_readers(session, s.id)]
    return lifecycle.plan_disk_delete(
        disk_facts(ctx, session, disk, writers=False),
        freed=folder_freed_bytes(ctx, disk) if measure else 0,
        snapshots=snapshots,
        backups=backups,
        readers=readers,
    )


def plan_disk_delete(ctx: Context, ref: str) -> Plan:
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, ref, kind="disk")
        return _delete_plan(ctx, session, disk, measure=True)


def delete_disk(ctx: Context, ref: str, *, plan: Plan | None = None) -> Plan:
    """Delete the disk and, by construction, its folder with every snapshot; keep backups.
    Checked and claimed in one transaction: a disk a job owns is never deleted under it."""
    with ctx.catalog.writer() as session:
        disk = resolve(session, Disk, ref, kind="disk")
        now = check_plan(plan, _delete_plan(ctx, session, disk, measure=False))
        claim(session, disk, "deleting", job_id=None)
        for snapshot in session.exec(select(Snapshot).where(Snapshot.disk_id == disk.id)).all():
            session.delete(snapshot)
            record(
                session,
                ctx,
                "snapshot.delete",
                kind="snapshot",
                object_id=snapshot.id,
                name=snapshot.name,
                detail="disk deleted",
            )
        session.flush()  # snapshots first: their rows point at the disk
        session.delete(disk)
        record(session, ctx, "disk.delete", kind="disk", object_id=disk.id, name=disk.name)
        session.commit()
    shutil.rmtree(disk_folder(ctx, disk.id), ignore_errors=True)
    return plan or now
