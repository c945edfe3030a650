"""The façade `Blockvault`: every user action is one method (the fronts reach it as `core.api`).

Methods return plain data (dicts from `core.catalog.views`), a `Plan`, or a `JobHandle`
whose progress can be subscribed to. Nothing here prints or imports a front.

Importing this module loads SQLModel and the catalog (what every command needs); each
`core.ops` module is imported by the methods that call it (lazy: `core.ops.backups` alone
brings the block pipeline, BLAKE3, zstd and the crypto, 0.1 s that `disk list` never uses).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sqlmodel import func, select

from core.base.config import Settings
from core.base.errors import Conflict, UserError
from core.base.host import HOST_ID_RULE, host_id, valid_host_id
from core.base.host import configure as configure_host
from core.base.locations import Locations
from core.catalog.context import Context, current_actor, on_this_host, record, resolve
from core.catalog.db import Catalog, shown_url
from core.catalog.models import (
    Backup,
    Disk,
    Event,
    Job,
    Policy,
    Server,
    Snapshot,
    VaultRecord,
    iso,
)
from core.catalog.views import disk_view, job_view, server_view, vault_view
from core.engine import devices
from core.rules.states import JOB_ACTIVE

if TYPE_CHECKING:
    from core.jobs.handoff import FollowedJob
    from core.jobs.runner import JobHandle
    from core.ops.service import Log, Service
    from core.rules.plans import Plan

#: what `names` lists, by kind (shell completion)
NAMED = {
    "server": Server,
    "disk": Disk,
    "snapshot": Snapshot,
    "vault": VaultRecord,
    "backup": Backup,
    "policy": Policy,
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
        read_only: bool = False,
    ) -> Blockvault:
        """Resolve locations, open (and migrate) the catalog, reconcile interrupted jobs.

        `read_only` writes nothing anywhere: no folder is made, the catalog is opened
        read-only (it must exist), nothing is reconciled or expired."""
        locations = Locations.resolve(home)
        if not read_only:
            locations.ensure()
        settings = Settings.load(locations.config_file)
        configure_host(settings.host_id)
        if not valid_host_id(host_id()):
            raise UserError(f"BLOCKVAULT_HOST_ID {host_id()[:70]!r} {HOST_ID_RULE}")
        url = (
            catalog_url
            or os.environ.get("BLOCKVAULT_CATALOG")
            or f"sqlite:///{locations.catalog_file}"
        )
        ctx = Context(
            Catalog(url, read_only=read_only), locations, settings, actor or current_actor()
        )
        service = cls(ctx)
        if not read_only:
            service.reconcile()
        return service

    def close(self) -> None:
        self.ctx.catalog.dispose()

    @staticmethod
    def describe_config(
        *, home: str | None = None, catalog_url: str | None = None
    ) -> list[dict[str, str]]:
        """Every effective setting, its value and its source (flag, environment variable,
        config.toml, default), as `open` would resolve them, without opening the catalog."""
        from core.base import config

        env_home, env_catalog = (
            os.environ.get("BLOCKVAULT_HOME"),
            os.environ.get("BLOCKVAULT_CATALOG"),
        )
        locations = Locations.resolve(home)
        url = catalog_url or env_catalog or f"sqlite:///{locations.catalog_file}"
        return config.describe(
            locations,
            home_source="flag --home" if home else "env BLOCKVAULT_HOME" if env_home else "default",
            catalog=shown_url(url),
            catalog_source="flag --catalog"
            if catalog_url
            else "env BLOCKVAULT_CATALOG"
            if env_catalog
            else "default",
        )

    # --- housekeeping ---------------------------------------------------------------------

    def reconcile(self) -> None:
        """Fail jobs whose process died, release their claims honestly, drop their
        unfinished snapshots and backups (see `housekeeping.reconcile`)."""
        from core.ops import housekeeping

        housekeeping.reconcile(self.ctx)

    def status(self) -> dict[str, Any]:
        """What the console header shows: catalog location, actor, counts, and each vault as
        (name, status, backups) — read only: unlike `list_vaults`, it creates nothing."""
        from core.ops import vaults

        with self.ctx.catalog.session() as session:
            counts = vaults.backup_counts(session)
            rows = session.exec(select(VaultRecord).order_by(VaultRecord.name)).all()
            return {
                "actor": self.ctx.actor,
                "catalog": shown_url(self.ctx.catalog.url),  # never its password
                "home": str(self.ctx.locations.data_dir),
                "schema_version": self.ctx.catalog.version,
                "servers": session.exec(select(func.count()).select_from(Server)).one(),
                "disks": session.exec(select(func.count()).select_from(Disk)).one(),
                "vaults": [(v.name, v.status, counts.get(v.id, (0, 0, 0))[0]) for v in rows],
                "vaults_over_alert": [v.name for v in rows if v.over_alert],
            }

    def keymap(self) -> dict[str, str]:
        """The console's keys from config.toml's [keys] table (action name -> keys)."""
        from core.base.config import load_keys

        return load_keys(self.ctx.locations.config_file)

    # --- servers ----------------------------------------------------------------------------

    def create_server(self, name: str) -> dict[str, Any]:
        from core.ops import servers

        server = servers.create_server(self.ctx, name)
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
            server = resolve(session, Server, ref, kind="server")
            disks = session.exec(select(Disk).where(Disk.server_id == server.id)).all()
            return server_view(server, disks=list(disks))

    def plan_delete_server(self, ref: str, *, detach_disks: bool = False) -> Plan:
        from core.ops import servers

        return servers.plan_server_delete(self.ctx, ref, detach_disks=detach_disks)

    def delete_server(
        self, ref: str, *, detach_disks: bool = False, plan: Plan | None = None
    ) -> Plan:
        from core.ops import servers

        return servers.delete_server(self.ctx, ref, detach_disks=detach_disks, plan=plan)

    # --- disks ------------------------------------------------------------------------------

    def create_disk(
        self, name: str, size: int, *, server: str | None = None, role: str = "data"
    ) -> dict[str, Any]:
        from core.ops import disks

        disk = disks.create_disk(self.ctx, name, size, server=server, role=role)
        return self.get_disk(disk.id)

    def register_disk(
        self, name: str, path: str, *, server: str | None = None, role: str = "data"
    ) -> dict[str, Any]:
        from core.ops import disks

        disk = disks.register_disk(self.ctx, name, path, server=server, role=role)
        return self.get_disk(disk.id)

    def _disk_views(self, session: Any, disks: list[Disk]) -> list[dict[str, Any]]:
        """Disks with their server, live status and last good backup: three queries and one
        /proc scan whatever the number of disks (of this host's disks: another host's path
        means nothing here)."""
        servers = {s.id: s for s in session.exec(select(Server)).all()}
        query = select(Backup.disk_id, func.max(Backup.completed_at)).where(
            Backup.status == "available"
        )
        last = dict(session.exec(query.group_by(Backup.disk_id)).all())
        here = [d for d in disks if on_this_host(self.ctx, d)]
        local = {d.id for d in here}  # by id: `d in here` compared models field by field, O(n^2)
        busy = devices.paths_open_for_writing([d.path for d in here if d.status == "available"])
        return [
            disk_view(
                d,
                server=servers.get(d.server_id) if d.server_id else None,
                status="in-use" if d.status == "available" and d.path in busy else d.status,
                last_backup_at=last.get(d.id),
                local=d.id in local,
            )
            for d in disks
        ]

    def list_disks(self, *, server: str | None = None) -> list[dict[str, Any]]:
        with self.ctx.catalog.session() as session:
            query = select(Disk).order_by(Disk.name)
            if server:
                query = query.where(
                    Disk.server_id == resolve(session, Server, server, kind="server").id
                )
            return self._disk_views(session, list(session.exec(query).all()))

    def get_disk(self, ref: str) -> dict[str, Any]:
        with self.ctx.catalog.session() as session:
            return self._disk_views(session, [resolve(session, Disk, ref, kind="disk")])[0]

    def attach_disk(self, ref: str, server: str, *, role: str = "data") -> dict[str, Any]:
        from core.ops import disks

        disk = disks.attach_disk(self.ctx, ref, server, role=role)
        return self.get_disk(disk.id)

    def detach_disk(self, ref: str) -> dict[str, Any]:
        from core.ops import disks

        disk = disks.detach_disk(self.ctx, ref)
        return self.get_disk(disk.id)

    def plan_delete_disk(self, ref: str) -> Plan:
        from core.ops import disks

        return disks.plan_disk_delete(self.ctx, ref)

    def delete_disk(self, ref: str, *, plan: Plan | None = None) -> Plan:
        from core.ops import disks

        return disks.delete_disk(self.ctx, ref, plan=plan)

    # --- jobs and events --------------------------------------------------------------------

    def list_jobs(self, *, active: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        with self.ctx.catalog.session() as session:
            query = select(Job).order_by(Job.created_at.desc()).limit(limit)  # type: ignore[attr-defined]
            if active:
                query = query.where(Job.status.in_(JOB_ACTIVE))  # type: ignore[attr-defined]
            return [job_view(j) for j in session.exec(query).all()]

    def get_job(self, ref: str) -> dict[str, Any]:
        with self.ctx.catalog.session() as session:
            return job_view(resolve(session, Job, ref, kind="job"))

    def cancel_job(self, ref: str) -> dict[str, Any]:
        """Ask a running job (in any process sharing the catalog) to stop."""

        with self.ctx.catalog.session() as session:
            job = resolve(session, Job, ref, kind="job")
            if job.status not in JOB_ACTIVE:
                raise Conflict(f"job {job.id} is already {job.status}")
            job.status = "cancelling" if job.status == "running" else "cancelled"
            session.add(job)
            record(
                session, self.ctx, "job.cancel", kind="job", object_id=job.id, name=job.target_name
            )
            session.commit()
            return job_view(job)

    def events(
        self, *, limit: int = 50, object_ref: str | None = None, after_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The newest events first; with `after_id`, the events after that id, oldest first
        (what `events --follow` polls)."""
        with self.ctx.catalog.session() as session:
            query = select(Event).order_by(Event.id.desc()).limit(limit)  # type: ignore[union-attr]
            if after_id is not None:
                query = (
                    select(Event)
                    .where(Event.id > after_id)  # type: ignore[operator]
                    .order_by(Event.id)  # type: ignore[arg-type]
                    .limit(limit)
                )
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

    # --- shell completion ---------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        """The names of every server, disk, snapshot, vault, backup or policy (`kind`), sorted:
        what shell completion offers (one query; no core.ops module is imported)."""
        model = NAMED.get(kind)
        if model is None:
            raise UserError(f"unknown kind {kind!r}: one of {', '.join(NAMED)}")
        with self.ctx.catalog.session() as session:
            return list(session.exec(select(model.name).order_by(model.name)).all())

    # --- vaults -----------------------------------------------------------------------------

    def add_vault(
        self, name: str, *, quota: Any = None, alert_at: Any = None, **options: Any
    ) -> dict[str, Any]:
        """Register (and initialise if empty) a local or S3 vault; see `vaults.add_vault`.
        `quota` ('500G') and `alert_at` ('80%') are checked before anything is added."""
        from core.ops import capacity, vaults

        capacity.parse_quota(quota)
        if capacity.parse_percent(alert_at) is not None and capacity.parse_quota(quota) is None:
            raise UserError("--alert-at is a share of a quota: give --quota too")
        vault = vaults.add_vault(self.ctx, name, **options)
        if quota is not None or alert_at is not None:
            capacity.set_capacity(self.ctx, vault.id, quota=quota, alert_at=alert_at)
        else:
            capacity.measure(self.ctx, vault)
        return self.get_vault(vault.id, deep=False)

    def set_vault(self, ref: str, *, quota: Any = None, alert_at: Any = None) -> dict[str, Any]:
        """`vault set`: the quota ('500G', or 'none' to remove it) and the alert threshold
        ('80%', or 'none'); None leaves a setting as it is. The usage is measured again."""
        from core.ops import capacity

        vault = capacity.set_capacity(
            self.ctx,
            ref,
            quota=capacity.UNCHANGED if quota is None else quota,
            alert_at=capacity.UNCHANGED if alert_at is None else alert_at,
        )
        return self.get_vault(vault.id, deep=False)

    def list_vaults(self, *, create_default: bool = True) -> list[dict[str, Any]]:
        """Every vault with its counts, capacity (usage, quota, alert, forecast), locked
        backups and replication; `create_default=False` (the console, read-only) adds
        nothing."""
        from core.ops import capacity, vaults

        if create_default:
            vaults.default_vault(self.ctx)  # the embedded default always shows
        with self.ctx.catalog.session() as session:
            counts = vaults.backup_counts(session)
            links = capacity.vault_links(session, self.ctx.settings.default_vault)
            rows = session.exec(select(VaultRecord).order_by(VaultRecord.name)).all()
            return [
                self._vault_dict(
                    v,
                    counts.get(v.id, (0, 0, 0)),
                    **links.get(v.id, {}),
                    capacity=capacity.usage_line(v),
                    **capacity.forecast(session, v),
                )
                for v in rows
            ]

    @staticmethod
    def _vault_dict(vault: Any, count: tuple[int, int, int], **extra: Any) -> dict[str, Any]:
        backups_n, logical, stored = count
        return vault_view(
            vault,
            backups=backups_n,
            logical_bytes=logical,
            stored_bytes=stored,
            dedup_ratio=round(logical / stored, 2) if stored else None,
            **extra,
        )

    def get_vault(
        self, ref: str | None, *, deep: bool = True, passphrase: str | None = None
    ) -> dict[str, Any]:
        """A vault with catalog counts; `deep` also reads the store's real usage."""
        from core.ops import capacity, vaults

        vault = vaults.get_vault(self.ctx, ref)
        if deep:  # the store is read anyway: its usage is measured again on the way
            capacity.measure(self.ctx, vault)
        with self.ctx.catalog.session() as session:
            vault = session.get(VaultRecord, vault.id)
            count = vaults.backup_counts(session).get(vault.id, (0, 0, 0))
            links = capacity.vault_links(session, self.ctx.settings.default_vault)
            extra = {
                **links.get(vault.id, {}),
                "capacity": capacity.usage_line(vault),
                **capacity.forecast(session, vault),
            }
        if not deep:
            return self._vault_dict(vault, count, **extra)
        stats = vaults.open_repository(self.ctx, vault, passphrase=passphrase).stats()
        return self._vault_dict(
            vault,
            (count[0], stats.logical_bytes, stats.stored_bytes),
            chunks=stats.chunks,
            manifests=stats.manifests,
            damaged_manifests=list(stats.damaged_manifests),
            **extra,
        )

    def plan_remove_vault(self, ref: str, *, force: bool = False) -> Plan:
        from core.ops import vaults

        return vaults.plan_remove_vault(self.ctx, ref, force=force)

    def remove_vault(self, ref: str, *, force: bool = False, plan: Plan | None = None) -> Plan:
        from core.ops import vaults

        return vaults.remove_vault(self.ctx, ref, force=force, plan=plan)

    def import_vault(
        self, ref: str | None, *, passphrase: str | None = None
    ) -> list[dict[str, Any]]:
        from core.ops import vaults

        return vaults.import_vault(self.ctx, ref, passphrase=passphrase)

    def plan_gc(self, ref: str | None, *, grace_seconds: float | None = None) -> Plan:
        from core.ops import vaults

        return vaults.plan_gc(self.ctx, ref, grace_seconds=grace_seconds)

    def start_check(self, ref: str | None, *, read_fraction: float = 0.0) -> JobHandle:
        """Check a vault's structure and read back `read_fraction` of its data (a job)."""
        from core.ops import vaults

        return vaults.start_check(self.ctx, ref, read_fraction=read_fraction)

    def start_gc(self, ref: str | None, *, grace_seconds: float | None = None) -> JobHandle:
        """Garbage-collect a vault as a job (`plan_gc` is its dry run)."""
        from core.ops import vaults

        return vaults.start_gc(self.ctx, ref, grace_seconds=grace_seconds)

    # --- backups ----------------------------------------------------------------------------

    def plan_backup(self, disk: str, *, vault: str | None = None) -> Plan:
        from core.ops import backups

        return backups.plan_backup(self.ctx, disk, vault_ref=vault)

    def start_backup(
        self,
        disk: str,
        *,
        vault: str | None = None,
        name: str | None = None,
        passphrase: str | None = None,
        plan: Plan | None = None,
        limit_upload: int | None = None,
    ) -> JobHandle:
        """Back a disk up as a job; `limit_upload` in bytes per second (None: config.toml's
        `limit_upload`, 0: no limit) paces what is sent to the vault."""
        from core.ops import backups

        return backups.start_backup(
            self.ctx,
            disk,
            vault_ref=vault,
            name=name,
            passphrase=passphrase,
            plan=plan,
            limit_upload=limit_upload,
        )

    def list_backups(
        self,
        *,
        disk: str | None = None,
        include_deleted_disks: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        from core.ops import backups

        return backups.list_backups(
            self.ctx, disk_ref=disk, include_deleted_disks=include_deleted_disks, limit=limit
        )

    def get_backup(self, ref: str) -> dict[str, Any]:
        """A backup, with what it was copied from and its copies in other vaults."""
        from core.ops import backups, replication

        return {**backups.get_backup(self.ctx, ref), **replication.copies(self.ctx, ref)}

    def plan_restore(
        self,
        ref: str,
        *,
        to_original: bool,
        new_name: str | None = None,
        new_size: int | None = None,
        force: bool = False,
    ) -> Plan:
        from core.ops import restores

        return restores.plan_restore(
            self.ctx,
            ref,
            to_original=to_original,
            new_name=new_name,
            new_size=new_size,
            force=force,
        )

    def restore_routes(self, disk: str) -> list[dict[str, Any]]:
        """Every way back for a disk: its snapshots and backups, newest first, each with its
        route, estimated seconds (sizes over the rates last measured) and refusal; the quickest
        allowed one is marked `fastest`."""
        from core.ops import ways_back

        return ways_back.restore_routes(self.ctx, disk)

    def start_restore(
        self,
        ref: str,
        *,
        to_original: bool,
        new_name: str | None = None,
        new_size: int | None = None,
        force: bool = False,
        plan: Plan | None = None,
        limit_download: int | None = None,
    ) -> JobHandle:
        """Restore as a job; `limit_download` (bytes per second, None: config.toml's, 0: no
        limit) paces what is read from the vault."""
        from core.ops import restores

        return restores.start_restore(
            self.ctx,
            ref,
            to_original=to_original,
            new_name=new_name,
            new_size=new_size,
            force=force,
            plan=plan,
            limit_download=limit_download,
        )

    def start_verify(self, ref: str, *, limit_download: int | None = None) -> JobHandle:
        from core.ops import backups

        return backups.start_verify(self.ctx, ref, limit_download=limit_download)

    def plan_copy(self, ref: str, *, to_vault: str) -> Plan:
        """What `backup copy --to-vault` will do (a refusal is one line)."""
        from core.ops import replication

        return replication.plan_copy(self.ctx, ref, to_vault)

    def start_copy(
        self,
        ref: str,
        *,
        to_vault: str,
        plan: Plan | None = None,
        limit_upload: int | None = None,
        limit_download: int | None = None,
    ) -> JobHandle:
        """Copy a backup into another vault as a job: only chunks missing there travel; the
        copy is a backup of its own, linked to its source (`copy_of`). The limits pace what
        is read from the source vault and sent to the target (as in `start_backup`)."""
        from core.ops import replication

        return replication.start_copy(
            self.ctx,
            ref,
            to_vault,
            plan=plan,
            limit_upload=limit_upload,
            limit_download=limit_download,
        )

    def plan_delete_backup(self, ref: str) -> Plan:
        from core.ops import backups

        return backups.plan_delete_backup(self.ctx, ref)

    def delete_backup(self, ref: str, *, plan: Plan | None = None) -> Plan:
        from core.ops import backups

        return backups.delete_backup(self.ctx, ref, plan=plan)

    # --- snapshots --------------------------------------------------------------------------

    def plan_snapshot(self, disk: str) -> Plan:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.plan_create(self.ctx, disk)

    def start_snapshot(
        self, disk: str, *, name: str | None = None, plan: Plan | None = None
    ) -> JobHandle:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.start_create(self.ctx, disk, name=name, plan=plan)

    def list_snapshots(self, *, disk: str | None = None) -> list[dict[str, Any]]:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.list_snapshots(self.ctx, disk_ref=disk)

    def get_snapshot(self, ref: str) -> dict[str, Any]:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.get_snapshot(self.ctx, ref)

    def plan_delete_snapshot(self, ref: str) -> Plan:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.plan_delete(self.ctx, ref)

    def delete_snapshot(self, ref: str, *, plan: Plan | None = None) -> Plan:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.delete_snapshot(self.ctx, ref, plan=plan)

    def plan_rollback(self, ref: str, *, force: bool = False) -> Plan:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.plan_rollback(self.ctx, ref, force=force)

    def start_rollback(
        self, ref: str, *, force: bool = False, plan: Plan | None = None
    ) -> JobHandle:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.start_rollback(self.ctx, ref, force=force, plan=plan)

    def plan_snapshot_to_disk(self, ref: str, new_name: str) -> Plan:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.plan_to_disk(self.ctx, ref, new_name)

    def start_snapshot_to_disk(
        self, ref: str, new_name: str, *, plan: Plan | None = None
    ) -> JobHandle:
        from core.ops import snapshots as snapshot_ops

        return snapshot_ops.start_to_disk(self.ctx, ref, new_name, plan=plan)

    def plan_undo(self, disk: str, *, force: bool = False) -> Plan:
        from core.ops import safety

        return safety.plan_undo(self.ctx, disk, force=force)

    def start_undo(self, disk: str, *, force: bool = False, plan: Plan | None = None) -> JobHandle:
        from core.ops import safety

        return safety.start_undo(self.ctx, disk, force=force, plan=plan)

    def plan_reinstall(self, server: str, image: str, *, force: bool = False) -> Plan:
        from core.ops import servers

        return servers.plan_reinstall(self.ctx, server, image, force=force)

    def start_reinstall(
        self, server: str, image: str, *, force: bool = False, plan: Plan | None = None
    ) -> JobHandle:
        from core.ops import servers

        return servers.start_reinstall(self.ctx, server, image, force=force, plan=plan)

    def reinstall_sources(self, server: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The system disk of a server and the backups of it a reinstall can use."""
        from core.ops import servers

        system, found = servers.reinstall_sources(self.ctx, server)
        return system, [{"id": b.id, "name": b.name} for b in found]

    def plan_os_changed(self, server: str) -> Plan:
        from core.ops import servers

        return servers.plan_os_changed(self.ctx, server)

    def os_changed(self, server: str, *, plan: Plan | None = None) -> Plan:
        from core.ops import servers

        return servers.os_changed(self.ctx, server, plan=plan)

    # --- policies ---------------------------------------------------------------------------

    def create_policy(
        self,
        name: str,
        *,
        schedule: str,
        vault: str | None = None,
        keep: dict[str, int | None] | None = None,
        keep_within: str | None = None,
        drill: str | None = None,
        disks: list[str] | tuple[str, ...] = (),
        replicate_to: str | None = None,
        lock_for: str | None = None,
    ) -> dict[str, Any]:
        """A policy; `schedule` is any form parse_schedule takes, `keep` the GFS counts
        (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly);
        `replicate_to` a vault each of its backups is copied into."""
        from core.ops import policies

        return policies.create_policy(
            self.ctx,
            name,
            schedule=schedule,
            vault=vault,
            keep=dict(keep if keep is not None else {"keep_last": 7}),
            keep_within=keep_within,
            drill=drill,
            disks=list(disks),
            replicate_to=replicate_to,
            lock_for=lock_for,
        )

    def apply_policy(self, policy: str, targets: list[str]) -> dict[str, Any]:
        """Cover disks, or every disk of a server, with a policy."""
        from core.ops import policies

        return policies.apply_policy(self.ctx, policy, targets)

    def unapply_policy(self, policy: str, targets: list[str]) -> dict[str, Any]:
        from core.ops import policies

        return policies.apply_policy(self.ctx, policy, targets, remove=True)

    def list_policies(self) -> list[dict[str, Any]]:
        from core.ops import policies

        return policies.list_policies(self.ctx)

    def get_policy(self, ref: str) -> dict[str, Any]:
        from core.ops import policies

        return policies.get_policy(self.ctx, ref)

    def plan_delete_policy(self, ref: str) -> Plan:
        from core.ops import policies

        return policies.plan_delete_policy(self.ctx, ref)

    def delete_policy(self, ref: str, *, plan: Plan | None = None) -> Plan:
        from core.ops import policies

        return policies.delete_policy(self.ctx, ref, plan=plan)

    def plan_policy_run(
        self, *, policy: str | None = None, force: bool = False
    ) -> list[dict[str, Any]]:
        """What `policy run` would do now: the slot each due policy claims, the disks it
        backs up, and its retention plan as it applies after those backups."""
        from core.ops import policies

        return [
            {
                "policy": p.name,
                "slot": iso(slot),
                "backs_up": [d.name for d in disks],
                "retention": policies.plan_prune(self.ctx, p.id, pending=True).to_dict(),
            }
            for p, disks, slot in policies.due_policies(self.ctx, force=force, policy_ref=policy)
        ]

    def plan_retention(self, policy: str) -> Plan:
        """What `policy prune` deletes now, with the bytes really freed."""
        from core.ops import policies

        return policies.plan_prune(self.ctx, policy)

    def prune_policy(self, policy: str, *, plan: Plan | None = None) -> list[dict[str, Any]]:
        from core.ops import policies

        return policies.prune(self.ctx, policy, plan=plan)

    def lock_backup(
        self, ref: str, *, lock_for: str | None = None, until: str | None = None
    ) -> dict[str, Any]:
        """Lock a backup for a duration ('30d') or until a date ('2027-01-01'): not deleted,
        expired or garbage-collected before then (S3 Object Lock where the vault has it).
        Only ever extended; the result names the backup, its date and who enforces it."""
        from core.ops import locks

        return locks.lock_backup(self.ctx, ref, lock_for=lock_for, until=until)

    def pin_backup(self, ref: str, *, pinned: bool = True) -> dict[str, Any]:
        """Exempt a backup from retention (`pinned=False` returns it to its policy)."""
        from core.ops import policies

        return policies.pin_backup(self.ctx, ref, pinned=pinned)

    def run_policies(
        self, *, policy: str | None = None, force: bool = False
    ) -> list[dict[str, Any]]:
        """Run due policies now (what cron calls); `force` runs them whatever the schedule."""
        from core.ops import policies

        return policies.run_due(self.ctx, policy_ref=policy, force=force)

    def run_policy_now(self, policy: str, *, on_backup: Any = None) -> list[dict[str, Any]]:
        """`policy run POLICY --now` for a front that shows each backup as it runs: the same
        slot `plan_policy_run(policy=..., force=True)` shows, and `on_backup(handle)` is called
        with each backup's `JobHandle` before it runs (to follow its progress or cancel it)."""
        from core.ops import policies

        outcomes: list[dict[str, Any]] = []
        for found, covered, slot in policies.due_policies(self.ctx, force=True, policy_ref=policy):
            outcomes += policies.run_policy(self.ctx, found, covered, slot, on_backup=on_backup)
        return outcomes

    def protection_status(self) -> dict[str, Any]:
        """Each disk: protected, overdue, failing or unprotected; the counts by status."""
        from core.ops import protection

        return protection.status(self.ctx)

    # --- monitoring: protection alerts and the Prometheus textfile ----------------------------

    def raise_protection_alerts(self, report: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Alert `disk.overdue` / `disk.failing` once per disk per spell (the service calls it
        every tick, `blockvault status` unless read-only); returns the events notified."""
        from core.ops import protection

        return protection.raise_overdue_alerts(self.ctx, report=report)

    def write_prometheus(self, path: str, report: dict[str, Any] | None = None) -> str:
        """Write the node_exporter textfile of `report` (default: the status now) atomically."""
        from core.ops import protection

        return str(protection.write_prometheus(report or self.protection_status(), path))

    # --- restore drills -------------------------------------------------------------------

    def drill_targets(
        self, disk: str | None = None, *, policy: str | None = None, backup: str | None = None
    ) -> list[dict[str, Any]]:
        """What `backup drill` restores: per disk (one DISK, every disk `policy` covers, or
        the disk of `backup`) the backup it drills, or an `error` when it has none."""
        from core.ops import drills

        return drills.drill_targets(self.ctx, disk_ref=disk, policy_ref=policy, backup_ref=backup)

    def start_drill(
        self, backup: str, *, policy: str | None = None, limit_download: int | None = None
    ) -> JobHandle:
        """A restore drill of one backup into scratch space, as a job (not started): every
        chunk and the digest checked, an ext4/XFS filesystem checked read-only, the restore
        time recorded (RTO). A failed drill raises its error and a `drill.failed` alert."""
        from core.ops import drills

        return drills.start_drill(
            self.ctx, backup, policy_ref=policy, limit_download=limit_download
        )

    def list_drills(self, *, disk: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Past drills, newest first (a deleted disk's too, by its name or id)."""
        from core.ops import drills

        return drills.list_drills(self.ctx, disk_ref=disk, limit=limit)

    def run_due_drills(self) -> list[dict[str, Any]]:
        """Run the drills due now by the policies' drill schedules (what the service does)."""
        from core.ops import drills

        return drills.run_due_drills(self.ctx)

    @staticmethod
    def schedule_text(
        *,
        cron: str | None = None,
        daily_at: str | None = None,
        weekly: str | None = None,
        every_days: str | None = None,
        every: str | None = None,
    ) -> str:
        """The stored form of a schedule given as one of the CLI's options."""
        from core.rules.schedules import from_options

        return from_options(
            cron=cron, daily_at=daily_at, weekly=weekly, every_days=every_days, every=every
        ).text

    @staticmethod
    def policy_exit_code(outcomes: list[dict[str, Any]]) -> int:
        """0 every due backup succeeded, 3 some failed, 1 none could run."""
        from core.ops import policies

        return policies.exit_code(outcomes)

    # --- the service (core/ops/service.py) and jobs handed to it ----------------------------

    def make_service(self, *, tick: float | None = None, log: Log | None = None) -> Service:
        """The service of this catalog: `run()` until `stop()` (a signal), or `run(once=True)`;
        `log(level, line)` gets one plain line per event; `tick` defaults to DEFAULT_TICK."""
        from core.ops import service as service_ops

        if tick is None:
            tick = service_ops.DEFAULT_TICK
        return service_ops.Service(self.ctx, tick=tick, log=log)

    def running_services(self) -> list[dict[str, Any]]:
        """Services beating for this catalog now (host, pid, started_at, beat_at, jobs)."""
        from core.jobs import handoff

        return handoff.running_services(self.ctx)

    def submit_job(
        self, verb: str, arguments: dict[str, Any], *, plan: Plan | None = None
    ) -> dict[str, Any]:
        """Hand `verb` (backup, restore, verify, gc, check) with its arguments and the plan
        the user confirmed to the running service (`--background`): the queued job."""
        from core.ops import service as service_ops

        return job_view(service_ops.submit(self.ctx, verb, arguments, plan=plan))

    def follow_job(self, ref: str) -> FollowedJob:
        """Follow a job that runs in another process (progress from its row, then its
        result); leaving the follower leaves the job running."""
        from core.jobs import handoff

        with self.ctx.catalog.session() as session:
            job = resolve(session, Job, ref, kind="job")
        return handoff.FollowedJob(self.ctx, job.id)

    def service_unit(self, *, user: bool = False) -> dict[str, Any]:
        """The systemd unit for this catalog: path, text, and the commands that enable it."""
        from core.ops import service as service_ops

        return service_ops.unit(self.ctx, user=user)

    def install_service(self, *, user: bool = False) -> dict[str, Any]:
        """Write the systemd unit (system-wide, or with `user` the user's own)."""
        from core.ops import service as service_ops

        return service_ops.install_unit(self.ctx, user=user)

    # --- one file back: mounts (core/ops/mounts.py) -------------------------------------------

    def mount_backup(self, ref: str, directory: str | None = None) -> dict[str, Any]:
        """Mount a backup read-only (FUSE image, its ext4/XFS files loop-mounted) at
        `directory` (default: under the data directory); `note` says where the files are."""
        from core.ops import mounts

        return mounts.mount_backup(self.ctx, ref, directory)

    def unmount_backup(self, target: str) -> list[dict[str, Any]]:
        """Unmount by directory, or every mount of a backup; stops each mount's server."""
        from core.ops import mounts

        return mounts.unmount(self.ctx, target)

    def list_mounts(self) -> list[dict[str, Any]]:
        """The backups mounted from this data directory, and whether each still serves."""
        from core.ops import mounts

        return mounts.list_mounts(self.ctx)

    def backup_files(self, ref: str, path: str = "/") -> list[dict[str, Any]]:
        """The entries of a directory inside a backup's filesystem, read on demand."""
        from core.ops import mounts

        return mounts.list_files(self.ctx, ref, path)

    def extract_from_backup(self, ref: str, path: str, to: str) -> dict[str, Any]:
        """Copy a file or directory out of a backup's filesystem into directory `to`."""
        from core.ops import mounts

        return mounts.extract(self.ctx, ref, path, to)
