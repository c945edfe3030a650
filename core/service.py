"""The façade: the one object the console and the CLI hold. Every user action is one method.

Methods return plain data (dicts from `core.views`), a `lifecycle.Plan`, or a `JobHandle`
whose progress can be subscribed to. Nothing here prints or imports a front.
"""

from __future__ import annotations

import os
from typing import Any

from sqlmodel import select

from core import inventory, lifecycle
from core.catalog import Catalog
from core.config import Settings
from core.context import Context, current_actor, record, resolve
from core.errors import Conflict
from core.jobs import job_is_stale
from core.locations import Locations
from core.models import Backup, Disk, Event, Job, Server, iso, utcnow
from core.states import JOB_ACTIVE
from core.views import disk_view, job_view, server_view

INTERRUPTED_DISK_STATUS = {
    "backing-up": "available",
    "snapshotting": "available",
    "restoring": "error-restoring",
    "rolling-back": "error-rolling-back",
}


class Blockvault:
    """Entry point for fronts: `Blockvault.open()` then call methods."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @classmethod
    def open(
        cls,
        *,
        home: str | os.PathLike | None = None,
        catalog_url: str | None = None,
        actor: str | None = None,
    ) -> Blockvault:
        """Resolve locations, open (and migrate) the catalog, reconcile interrupted jobs."""
        locations = Locations.resolve(home)
        locations.ensure()
        settings = Settings.load(locations.config_file)
        url = (
            catalog_url
            or os.environ.get("BLOCKVAULT_CATALOG")
            or f"sqlite:///{locations.catalog_file}"
        )
        ctx = Context(Catalog(url), locations, settings, actor or current_actor())
        service = cls(ctx)
        service.reconcile()
        return service

    def close(self) -> None:
        self.ctx.catalog.dispose()

    # --- housekeeping ---------------------------------------------------------------------

    def reconcile(self) -> None:
        """Mark jobs whose process died as failed and put their disks in an honest state."""
        with self.ctx.catalog.session() as session:
            active = session.exec(select(Job).where(Job.status.in_(JOB_ACTIVE))).all()  # type: ignore[attr-defined]
            for job in active:
                if job_is_stale(job):
                    job.status = "failed"
                    job.error = "interrupted: its process ended before the job finished"
                    job.finished_at = utcnow()
                    session.add(job)
            session.commit()
            still_active = {
                j.disk_id
                for j in session.exec(select(Job).where(Job.status.in_(JOB_ACTIVE))).all()  # type: ignore[attr-defined]
            }
            for disk in session.exec(select(Disk)).all():
                if disk.status in INTERRUPTED_DISK_STATUS and disk.id not in still_active:
                    disk.status = INTERRUPTED_DISK_STATUS[disk.status]
                    session.add(disk)
            session.commit()

    def status(self) -> dict[str, Any]:
        """What the console header shows: catalog location, actor, counts."""
        with self.ctx.catalog.session() as session:
            return {
                "actor": self.ctx.actor,
                "catalog": self.ctx.catalog.url,
                "home": str(self.ctx.locations.data_dir),
                "schema_version": self.ctx.catalog.version,
                "servers": len(session.exec(select(Server)).all()),
                "disks": len(session.exec(select(Disk)).all()),
            }

    # --- servers ----------------------------------------------------------------------------

    def create_server(self, name: str) -> dict[str, Any]:
        server = inventory.create_server(self.ctx, name)
        return server_view(server, disks=[])

    def list_servers(self) -> list[dict[str, Any]]:
        with self.ctx.catalog.session() as session:
            servers = session.exec(select(Server).order_by(Server.name)).all()
            disks = session.exec(select(Disk)).all()
            return [
                server_view(s, disks=[d for d in disks if d.server_id == s.id]) for s in servers
            ]

    def get_server(self, ref: str) -> dict[str, Any]:
        with self.ctx.catalog.session() as session:
            server = resolve(session, Server, ref, "server")
            disks = session.exec(select(Disk).where(Disk.server_id == server.id)).all()
            return server_view(server, disks=list(disks))

    def plan_delete_server(self, ref: str, *, detach_disks: bool = False) -> lifecycle.Plan:
        return inventory.plan_server_delete(self.ctx, ref, detach_disks=detach_disks)

    def delete_server(self, ref: str, *, detach_disks: bool = False) -> lifecycle.Plan:
        return inventory.delete_server(self.ctx, ref, detach_disks=detach_disks)

    # --- disks ------------------------------------------------------------------------------

    def create_disk(
        self, name: str, size: int, *, server: str | None = None, role: str = "data"
    ) -> dict[str, Any]:
        disk = inventory.create_disk(self.ctx, name, size, server=server, role=role)
        return self.get_disk(disk.id)

    def register_disk(
        self, name: str, path: str, *, server: str | None = None, role: str = "data"
    ) -> dict[str, Any]:
        disk = inventory.register_disk(self.ctx, name, path, server=server, role=role)
        return self.get_disk(disk.id)

    def _disk_dict(self, session, disk: Disk) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        server = session.get(Server, disk.server_id) if disk.server_id else None
        last = session.exec(
            select(Backup.completed_at)
            .where(Backup.disk_id == disk.id, Backup.status == "available")
            .order_by(Backup.completed_at.desc())  # type: ignore[union-attr]
        ).first()
        return disk_view(
            disk, server=server, status=inventory.effective_status(disk), last_backup_at=last
        )

    def list_disks(self, *, server: str | None = None) -> list[dict[str, Any]]:
        with self.ctx.catalog.session() as session:
            query = select(Disk).order_by(Disk.name)
            if server:
                query = query.where(Disk.server_id == resolve(session, Server, server, "server").id)
            return [self._disk_dict(session, d) for d in session.exec(query).all()]

    def get_disk(self, ref: str) -> dict[str, Any]:
        with self.ctx.catalog.session() as session:
            return self._disk_dict(session, resolve(session, Disk, ref, "disk"))

    def attach_disk(self, ref: str, server: str, *, role: str = "data") -> dict[str, Any]:
        disk = inventory.attach_disk(self.ctx, ref, server, role=role)
        return self.get_disk(disk.id)

    def detach_disk(self, ref: str) -> dict[str, Any]:
        disk = inventory.detach_disk(self.ctx, ref)
        return self.get_disk(disk.id)

    def plan_delete_disk(self, ref: str) -> lifecycle.Plan:
        return inventory.plan_disk_delete(self.ctx, ref)

    def delete_disk(self, ref: str) -> lifecycle.Plan:
        return inventory.delete_disk(self.ctx, ref)

    # --- jobs and events --------------------------------------------------------------------

    def list_jobs(self, *, active: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        with self.ctx.catalog.session() as session:
            query = select(Job).order_by(Job.created_at.desc()).limit(limit)  # type: ignore[attr-defined]
            if active:
                query = query.where(Job.status.in_(JOB_ACTIVE))  # type: ignore[attr-defined]
            return [job_view(j) for j in session.exec(query).all()]

    def get_job(self, ref: str) -> dict[str, Any]:
        with self.ctx.catalog.session() as session:
            return job_view(resolve(session, Job, ref, "job"))

    def cancel_job(self, ref: str) -> dict[str, Any]:
        """Ask a running job (in any process sharing the catalog) to stop."""

        with self.ctx.catalog.session() as session:
            job = resolve(session, Job, ref, "job")
            if job.status not in JOB_ACTIVE:
                raise Conflict(f"job {job.id} is already {job.status}")
            job.status = "cancelling" if job.status == "running" else "cancelled"
            session.add(job)
            record(session, self.ctx, "job.cancel", "job", job.id, job.target_name)
            session.commit()
            return job_view(job)

    def events(self, *, limit: int = 50, object_ref: str | None = None) -> list[dict[str, Any]]:
        with self.ctx.catalog.session() as session:
            query = select(Event).order_by(Event.id.desc()).limit(limit)  # type: ignore[union-attr]
            if object_ref:
                query = query.where(
                    (Event.object_id == object_ref) | (Event.object_name == object_ref)
                )
            return [
                {
                    "id": e.id,
                    "name": e.action,
                    "status": "recorded",
                    "size": None,
                    "created_at": iso(e.at),
                    "actor": e.actor,
                    "action": e.action,
                    "object_kind": e.object_kind,
                    "object_id": e.object_id,
                    "object_name": e.object_name,
                    "detail": e.detail,
                }
                for e in session.exec(query).all()
            ]
