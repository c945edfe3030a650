"""Servers and disks: creating, registering, attaching, detaching, deleting."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from sqlmodel import Session, select

from core.base.errors import Conflict, InUse, UserError
from core.base.ids import looks_like_id, new_id
from core.base.units import validate_name
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, Job, Server, Snapshot
from core.catalog.views import allocated_bytes
from core.engine import devices
from core.rules import lifecycle
from core.rules.states import JOB_ACTIVE

ROLES = ("system", "data")


def check_new_name(session: Session, model: type, name: str, kind: str) -> str:
    """Names are unique per kind and may not look like ids (so a ref is never ambiguous)."""
    validate_name(name, kind=kind)
    if looks_like_id(name):
        raise UserError(f"invalid {kind} name {name!r}: it looks like an id")
    if session.exec(select(model).where(model.name == name)).first():
        raise Conflict(f"a {kind} named {name!r} already exists")
    return name


def unique_id(session: Session, model: type, kind: str) -> str:
    while True:
        candidate = new_id(kind)
        if session.get(model, candidate) is None:
            return candidate


def disk_folder(ctx: Context, disk_id: str) -> Path:
    """Each disk's own folder in the pool: its image (if managed) and its snapshots."""
    return ctx.locations.pool_dir / disk_id


def running_job_kinds(session: Session, disk_id: str) -> list[str]:
    jobs = session.exec(
        select(Job).where(Job.disk_id == disk_id, Job.status.in_(JOB_ACTIVE))  # type: ignore[attr-defined]
    ).all()
    return [job.kind for job in jobs]


def writers_of(disk: Disk) -> list[str]:
    """Other processes holding the disk open for writing, as 'command (pid N)'."""
    return [f"{command} (pid {pid})" for pid, command in devices.held_open_for_writing(disk.path)]


# --- servers -----------------------------------------------------------------------------


def create_server(ctx: Context, name: str) -> Server:
    with ctx.catalog.session() as session:
        check_new_name(session, Server, name, "server")
        server = Server(id=unique_id(session, Server, "server"), name=name)
        session.add(server)
        record(session, ctx, "server.create", "server", server.id, name)
        session.commit()
        return server


def plan_server_delete(ctx: Context, ref: str, *, detach_disks: bool) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        server = resolve(session, Server, ref, "server")
        disks = session.exec(select(Disk).where(Disk.server_id == server.id)).all()
        return lifecycle.plan_server_delete(server, disks=disks, detach_disks=detach_disks)


def delete_server(ctx: Context, ref: str, *, detach_disks: bool) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        server = resolve(session, Server, ref, "server")
        disks = session.exec(select(Disk).where(Disk.server_id == server.id)).all()
        plan = lifecycle.plan_server_delete(server, disks=disks, detach_disks=detach_disks)
        if not plan.allowed:
            raise Conflict(plan.refusal)
        for disk in disks:
            disk.server_id, disk.role = None, "data"
            session.add(disk)
            record(
                session,
                ctx,
                "disk.detach",
                "disk",
                disk.id,
                disk.name,
                f"server {server.name} deleted",
            )
        session.flush()  # detach first: disks point at the server
        session.delete(server)
        record(session, ctx, "server.delete", "server", server.id, server.name)
        session.commit()
        return plan


# --- disks -------------------------------------------------------------------------------


def _attach_checks(session: Session, server: Server, role: str, disk_id: str | None) -> None:
    if role not in ROLES:
        raise UserError(f"invalid role {role!r}: use system or data")
    if role == "system":
        existing = session.exec(
            select(Disk).where(Disk.server_id == server.id, Disk.role == "system")
        ).first()
        if existing and existing.id != disk_id:
            raise Conflict(f"server {server.name} already has a system disk ({existing.name})")


def _pool_strategy(ctx: Context, folder: Path) -> str:
    from core.engine.snapshot_store import detect_strategy

    return detect_strategy(folder)


def create_disk(
    ctx: Context, name: str, size: int, *, server: str | None = None, role: str = "data"
) -> Disk:
    """A sparse raw image in the pool, optionally attached to a server."""
    with ctx.catalog.session() as session:
        check_new_name(session, Disk, name, "disk")
        owner = resolve(session, Server, server, "server") if server else None
        if owner:
            _attach_checks(session, owner, role, None)
        elif role not in ROLES:
            raise UserError(f"invalid role {role!r}: use system or data")
        disk_id = unique_id(session, Disk, "disk")
        folder = disk_folder(ctx, disk_id)
        folder.mkdir(parents=True, exist_ok=False)
        image = folder / "disk.img"
        try:
            with open(image, "xb") as handle:
                handle.truncate(size)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise UserError(f"cannot create disk image {image}: {exc.strerror}") from None
        disk = Disk(
            id=disk_id,
            name=name,
            size=size,
            path=str(image),
            managed=True,
            server_id=owner.id if owner else None,
            role=role if owner else "data",
            snapshot_strategy=_pool_strategy(ctx, folder),
        )
        session.add(disk)
        record(session, ctx, "disk.create", "disk", disk.id, name, f"size {size}")
        session.commit()
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
    size = devices.device_size(target)
    if size <= 0:
        raise UserError(f"{path} is empty: a disk needs a size greater than zero")
    real = str(target.resolve())
    with ctx.catalog.session() as session:
        check_new_name(session, Disk, name, "disk")
        if session.exec(select(Disk).where(Disk.path == real)).first():
            raise Conflict(f"{path} is already registered")
        owner = resolve(session, Server, server, "server") if server else None
        if owner:
            _attach_checks(session, owner, role, None)
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
            else _registered_strategy(ctx, real, folder),
        )
        session.add(disk)
        record(session, ctx, "disk.register", "disk", disk.id, name, real)
        session.commit()
        return disk


def _registered_strategy(ctx: Context, real: str, folder: Path) -> str:
    """Reflink only works when the image and its snapshot folder share one filesystem."""
    if os.stat(real).st_dev != os.stat(folder).st_dev:
        return "chunks"
    return _pool_strategy(ctx, folder)


def attach_disk(ctx: Context, ref: str, server_ref: str, *, role: str = "data") -> Disk:
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, ref, "disk")
        server = resolve(session, Server, server_ref, "server")
        if disk.server_id and disk.server_id != server.id:
            current = session.get(Server, disk.server_id)
            raise Conflict(
                f"disk {disk.name} is attached to server {current.name}; detach it first"
            )
        _attach_checks(session, server, role, disk.id)
        disk.server_id, disk.role = server.id, role
        session.add(disk)
        record(session, ctx, "disk.attach", "disk", disk.id, disk.name, f"{server.name} as {role}")
        session.commit()
        return disk


def detach_disk(ctx: Context, ref: str) -> Disk:
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, ref, "disk")
        if not disk.server_id:
            raise Conflict(f"disk {disk.name} is not attached to a server")
        server = session.get(Server, disk.server_id)
        disk.server_id, disk.role = None, "data"
        session.add(disk)
        record(session, ctx, "disk.detach", "disk", disk.id, disk.name, f"from {server.name}")
        session.commit()
        return disk


def plan_disk_delete(ctx: Context, ref: str) -> lifecycle.Plan:
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, ref, "disk")
        return _disk_delete_plan(session, disk)


def _disk_delete_plan(session: Session, disk: Disk) -> lifecycle.Plan:
    snapshots = session.exec(select(Snapshot).where(Snapshot.disk_id == disk.id)).all()
    backups = session.exec(select(Backup).where(Backup.disk_id == disk.id)).all()
    return lifecycle.plan_disk_delete(
        disk,
        allocated=allocated_bytes(disk.path) or 0,
        snapshots=snapshots,
        backups=backups,
        running_job_kinds=running_job_kinds(session, disk.id),
    )


def delete_disk(ctx: Context, ref: str) -> lifecycle.Plan:
    """Delete the disk and, by construction, its folder with every snapshot; keep backups."""
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, ref, "disk")
        plan = _disk_delete_plan(session, disk)
        if not plan.allowed:
            raise InUse(plan.refusal)
        for snapshot in session.exec(select(Snapshot).where(Snapshot.disk_id == disk.id)).all():
            session.delete(snapshot)
            record(
                session,
                ctx,
                "snapshot.delete",
                "snapshot",
                snapshot.id,
                snapshot.name,
                "disk deleted",
            )
        session.flush()  # snapshots first: their rows point at the disk
        session.delete(disk)
        record(session, ctx, "disk.delete", "disk", disk.id, disk.name)
        session.commit()
    shutil.rmtree(disk_folder(ctx, disk.id), ignore_errors=True)
    return plan
