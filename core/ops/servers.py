"""Servers: create, delete, and the OS rule (reinstall through blockvault, or changed outside).

A reinstall overwrites the system disk like a restore does: claimed with the plan in one
transaction, a safety snapshot first (`disk undo` brings the old system back for the undo
window, whatever happens to the reinstall), the system disk's older snapshots deleted only
after the new image was written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.base.errors import UserError
from core.catalog.context import Context, on_this_host, record, resolve
from core.catalog.models import Backup, Disk, Server, Snapshot, VaultRecord, iso
from core.catalog.names import check_new_name, commit_unique, unique_id
from core.engine import pipeline
from core.engine.imaging import copy_image
from core.jobs.claims import active_readers, claim
from core.jobs.runner import JobContext, JobHandle, new_job
from core.ops.disks import unattach
from core.ops.facts import check_plan, disk_facts
from core.ops.safety import discard_snapshot, engine_for, new_snapshot_row, overwrite
from core.ops.vaults import open_repository
from core.rules import lifecycle
from core.rules.lifecycle import DiskFacts
from core.rules.plans import Plan


def create_server(ctx: Context, name: str) -> Server:
    with ctx.catalog.writer() as session:
        check_new_name(session, Server, name, kind="server")
        server = Server(id=unique_id(session, Server, "server"), name=name, host=ctx.host)
        session.add(server)
        record(session, ctx, "server.create", kind="server", object_id=server.id, name=name)
        commit_unique(session, f"a server named {name!r}")
        return server


def _delete_plan(session: Session, server: Server, *, detach_disks: bool) -> Plan:
    disks = session.exec(select(Disk).where(Disk.server_id == server.id)).all()
    return lifecycle.plan_server_delete(server, disks=disks, detach_disks=detach_disks)


def plan_server_delete(ctx: Context, ref: str, *, detach_disks: bool) -> Plan:
    with ctx.catalog.session() as session:
        server = resolve(session, Server, ref, kind="server")
        return _delete_plan(session, server, detach_disks=detach_disks)


def delete_server(ctx: Context, ref: str, *, detach_disks: bool, plan: Plan | None = None) -> Plan:
    with ctx.catalog.writer() as session:
        server = resolve(session, Server, ref, kind="server")
        now = check_plan(plan, _delete_plan(session, server, detach_disks=detach_disks))
        for item in now.of("detach", "disk"):
            unattach(
                ctx, session, session.get(Disk, item.id), detail=f"server {server.name} deleted"
            )
        session.flush()  # detach first: disks point at the server
        session.delete(server)
        record(session, ctx, "server.delete", kind="server", object_id=server.id, name=server.name)
        session.commit()
        return plan or now


# --- the OS rule -------------------------------------------------------------------------


def _server_facts(session: Session, server: Server) -> tuple[list[Disk], dict[str, list[Snapshot]]]:
    disks = list(session.exec(select(Disk).where(Disk.server_id == server.id)).all())
    snaps = {
        d.id: list(session.exec(select(Snapshot).where(Snapshot.disk_id == d.id)).all())
        for d in disks
    }
    return disks, snaps


def _freed(
    ctx: Context, disks: list[Disk], snaps: dict[str, list[Snapshot]], *, measure: bool
) -> dict[str, int]:
    """What deleting the system disk's snapshots frees, each counted once (for the plan)."""
    system = lifecycle.system_disk(disks)
    if not measure or system is None or not snaps.get(system.id) or not on_this_host(ctx, system):
        return {}
    ids = [s.id for s in snaps[system.id] if s.status != "deleting"]
    return engine_for(ctx, system).freed_by_delete(ids, pool=ctx.locations.pool_dir)


def _os_changed_plan(ctx: Context, session: Session, server: Server, *, measure: bool) -> Plan:
    disks, snaps = _server_facts(session, server)
    return lifecycle.plan_os_reinstall(
        server,
        disks=disks,
        snapshots_by_disk=snaps,
        image_name=None,
        image_size=None,
        already_happened=True,
        facts=_system_facts(ctx, disks),
        freed=_freed(ctx, disks, snaps, measure=measure),
    )


def _system_facts(ctx: Context, disks: list[Disk]) -> DiskFacts | None:
    """What the rules need to know of the system disk for a change they only record: the
    host asking (another host's system disk is refused: its snapshots live there)."""
    system = lifecycle.system_disk(disks)
    return DiskFacts(system, here=ctx.host) if system is not None else None


def plan_os_changed(ctx: Context, server_ref: str) -> Plan:
    with ctx.catalog.session() as session:
        server = resolve(session, Server, server_ref, kind="server")
        return _os_changed_plan(ctx, session, server, measure=True)


def os_changed(ctx: Context, server_ref: str, *, plan: Plan | None = None) -> Plan:
    """The OS was reinstalled outside blockvault: the system disk's snapshots go now."""
    with ctx.catalog.writer() as session:
        server = resolve(session, Server, server_ref, kind="server")
        now = check_plan(plan, _os_changed_plan(ctx, session, server, measure=False))
        doomed = []
        for item in now.of("delete", "snapshot"):
            snapshot = session.get(Snapshot, item.id)
            if active_readers(session, snapshot.id):
                raise UserError(
                    f"snapshot {snapshot.name} is being read by a job; try again after it"
                )
            if snapshot.status != "deleting":
                claim(session, snapshot, "deleting", job_id=None)
            doomed.append(snapshot.id)
        system = lifecycle.system_disk(_server_facts(session, server)[0])
        record(
            session, ctx, "server.os-changed", kind="server", object_id=server.id, name=server.name
        )
        session.commit()
    for snapshot_id in doomed:
        discard_snapshot(ctx, system, snapshot_id, detail="OS changed on the server")
    return plan or now


def reinstall_sources(ctx: Context, server_ref: str) -> tuple[dict[str, Any], list[Backup]]:
    """The system disk a reinstall overwrites and the backups of it to reinstall from; a
    server without a system disk is refused by the OS rule itself."""
    with ctx.catalog.session() as session:
        server = resolve(session, Server, server_ref, kind="server")
        disks, _ = _server_facts(session, server)
        system = lifecycle.system_disk(disks)
        if system is None:
            refusal = lifecycle.plan_os_reinstall(
                server, disks=disks, snapshots_by_disk={}, image_name=None, image_size=None
            ).refusal
            raise UserError(refusal or f"server {server.name} has no system disk")
        found = session.exec(
            select(Backup)
            .where(Backup.disk_id == system.id, Backup.status == "available")
            .order_by(Backup.created_at.desc())  # type: ignore[attr-defined]
        ).all()
        return {"id": system.id, "name": system.name}, list(found)


def _claim_for_deletion(ctx: Context, snapshot_ids: list[str]) -> list[str]:
    """Mark the snapshots still there and read by no job `deleting`; the rest are kept (a
    job started reading one while the image was written: it wins, the user is told)."""
    claimed = []
    with ctx.catalog.writer() as session:
        for snapshot_id in snapshot_ids:
            snapshot = session.get(Snapshot, snapshot_id)
            if snapshot is None or active_readers(session, snapshot_id):
                continue
            if snapshot.status != "deleting":
                claim(session, snapshot, "deleting", job_id=None)
            claimed.append(snapshot_id)
        session.commit()
    return claimed


def _image_facts(session: Session, image: str) -> tuple[str, int, Backup | None]:
    path = Path(image)
    if path.is_file():
        return str(path), path.stat().st_size, None
    backup = session.exec(
        select(Backup).where(
            (Backup.id == image) | (Backup.name == image), Backup.status == "available"
        )
    ).first()
    if backup is None:
        raise UserError(f"no image file or backup named {image!r}")
    return f"backup {backup.name}", backup.size, backup


def _reinstall_plan(
    ctx: Context,
    session: Session,
    server: Server,
    image: str,
    *,
    force: bool,
    measure: bool = False,
) -> tuple[Plan, Disk | None, Backup | None]:
    disks, snaps = _server_facts(session, server)
    system = lifecycle.system_disk(disks)
    image_name, image_size, backup = _image_facts(session, image)
    readers = (
        [j for s in snaps.get(system.id, ()) for j in active_readers(session, s.id)]
        if system
        else []
    )
    plan = lifecycle.plan_os_reinstall(
        server,
        disks=disks,
        snapshots_by_disk=snaps,
        image_name=image_name,
        image_size=image_size,
        facts=disk_facts(ctx, session, system) if system else None,
        force=force,
        readers=readers,
        freed=_freed(ctx, disks, snaps, measure=measure),
    )
    return plan, system, backup


def plan_reinstall(ctx: Context, server_ref: str, image: str, *, force: bool = False) -> Plan:
    """Reinstall from an image file or a backup id/name onto the server's system disk."""
    with ctx.catalog.session() as session:
        server = resolve(session, Server, server_ref, kind="server")
        return _reinstall_plan(ctx, session, server, image, force=force, measure=True)[0]


def start_reinstall(
    ctx: Context, server_ref: str, image: str, *, force: bool = False, plan: Plan | None = None
) -> JobHandle:
    """Safety snapshot, write the image onto the system disk, and only after success delete
    the system disk's older snapshots."""
    with ctx.catalog.writer() as session:
        server = resolve(session, Server, server_ref, kind="server")
        now, system, backup = _reinstall_plan(ctx, session, server, image, force=force)
        check_plan(plan, now)
        doomed = [item.id for item in now.of("delete", "snapshot")]
        vault = session.get(VaultRecord, backup.vault_id) if backup else None
        job = new_job(
            ctx,
            session,
            "reinstall",
            target_kind="server",
            target_id=server.id,
            target_name=server.name,
            disk_id=system.id,
            source_id=backup.id if backup else None,
        )
        before = claim(session, system, "restoring", job_id=job.id)
        safety = new_snapshot_row(ctx, session, system, name=None, kind="safety", job_id=job.id)
        session.commit()
    repo = open_repository(ctx, vault) if vault is not None else None

    def run(context: JobContext) -> dict[str, Any]:
        def write(_differing: frozenset[int] | None) -> None:
            if repo is None:
                reporter = context.reporter("writing image", system.size)
                copy_image(Path(image), Path(system.path), reporter=reporter, cancel=context.cancel)
                reporter.emit(final=True)
                return
            manifest = repo.read_manifest(backup.id)
            reporter = context.reporter("writing image", manifest.size)
            pipeline.restore_device(
                manifest,
                repo,
                Path(system.path),
                compare_existing=False,
                reporter=reporter,
                cancel=context.cancel,
                workers=ctx.settings.workers,
            )
            reporter.emit(final=True)

        overwrite(
            ctx,
            context,
            job_id=job.id,
            disk=system,
            before=before,
            safety_id=safety.id,
            restore_of=None,
            fail_status="error-restoring",
            write=write,
        )
        # only now: the snapshots were the way back until success
        deleted = _claim_for_deletion(ctx, doomed)
        for snapshot_id in deleted:
            discard_snapshot(ctx, system, snapshot_id, detail=f"OS reinstalled on {server.name}")
        with ctx.catalog.writer() as session:
            row = session.get(Server, server.id)
            row.os_image = image
            session.add(row)
            record(
                session,
                ctx,
                "disk.reinstall",
                kind="disk",
                object_id=system.id,
                name=system.name,
                detail=f"OS image {image} written",
            )
            record(
                session,
                ctx,
                "server.reinstall",
                kind="server",
                object_id=server.id,
                name=server.name,
                detail=image,
            )
            session.commit()
        return {
            "id": server.id,
            "name": server.name,
            "status": "available",
            "size": system.size,
            "created_at": None,
            "disk_id": system.id,
            "disk_name": system.name,
            "snapshots_deleted": deleted,
            "snapshots_kept": [s for s in doomed if s not in deleted],
            "undo": safety.name,
            "undo_until": iso(safety.expires_at),
        }

    return JobHandle(ctx, job, run)
