"""Full catalog recovery (RELIABILITY I7): the catalog is a cache of what the vaults hold.

After each successful backup, the catalog's own description of its servers, disks, policies
and vault settings is saved into that vault (sealed where the vault is encrypted). On a new
host, `vault import` rebuilds them before the backups: servers as they were, pool disks as
empty images of their size marked incomplete (so `backup restore B --to-original` fills each
one back), and the policies that used this vault. Registered disks are not adopted: the path
a vault names could be any device of this host. Nothing that exists is replaced; a vault is input, so every
field is checked and bounded first.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from core.base.errors import UserError
from core.base.ids import looks_like_id
from core.base.units import MAX_SIZE, validate_name
from core.catalog.context import Context, record
from core.catalog.models import Disk, Policy, PolicyTarget, Server, VaultRecord
from core.engine.snapshot_store import detect_strategy
from core.ops.facts import disk_folder
from core.repo.repository import Repository
from core.rules.gfs import parse_duration
from core.rules.schedules import parse_schedule

FORMAT = "blockvault-catalog-copy"
KEEP_MORE = ("keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


def describe(session: Session) -> dict[str, Any]:
    """What the catalog knows that a new host needs (no secret, no job, no snapshot)."""
    servers = session.exec(select(Server)).all()
    names = {s.id: s.name for s in servers}
    vaults = {v.id: v.name for v in session.exec(select(VaultRecord)).all()}
    policies = session.exec(select(Policy)).all()
    return {
        "format": FORMAT,
        "servers": [{"id": s.id, "name": s.name, "os_image": s.os_image} for s in servers],
        "disks": [
            {
                "id": d.id,
                "name": d.name,
                "size": d.size,
                "role": d.role,
                "server": names.get(d.server_id or ""),
                "managed": d.managed,
                "path": None if d.managed else d.path,
            }
            for d in session.exec(select(Disk)).all()
        ],
        "policies": [
            {
                "id": p.id,
                "name": p.name,
                "schedule": p.schedule,
                "vault": vaults.get(p.vault_id or ""),
                "keep_last": p.keep_last,
                "keep_days": p.keep_days,
                **{key: getattr(p, key) for key in KEEP_MORE},
                "keep_within": p.keep_within,
                "drill": p.drill,
                "enabled": p.enabled,
                "disks": [
                    t.disk_id
                    for t in session.exec(
                        select(PolicyTarget).where(PolicyTarget.policy_id == p.id)
                    ).all()
                ],
            }
            for p in policies
        ],
    }


def save_copy(ctx: Context, repo: Repository) -> None:
    """Keep this host's description in the vault (called after each successful backup)."""
    with ctx.catalog.session() as session:
        description = describe(session)
    repo.write_catalog_copy(ctx.host, description)


def _name(value: object, kind: str) -> str | None:
    """A name from a vault, kept only if it is a valid, id-free name."""
    try:
        name = validate_name(str(value), kind=kind)
    except UserError:
        return None
    return None if looks_like_id(name) else name


def _id(value: object, kind: str) -> str | None:
    text = str(value)
    return text if looks_like_id(text) and text.startswith(kind) else None


def rebuild(ctx: Context, vault: VaultRecord, repo: Repository) -> dict[str, int]:
    """Add the servers, disks and policies the vault's catalog copies describe and this
    catalog lacks; returns how many of each came back (and how many disks could not)."""
    counts = {"servers": 0, "disks": 0, "disks_skipped": 0, "policies": 0}
    copies = [c for c in repo.catalog_copies() if c.get("format") == FORMAT]
    if not copies:
        return counts
    made: list[Any] = []
    with ctx.catalog.writer() as session:
        for copy in copies:
            _servers(ctx, session, copy.get("servers"), counts)
        session.flush()
        for copy in copies:
            _disks(ctx, session, copy.get("disks"), counts, made)
        session.flush()
        for copy in copies:
            _policies(ctx, session, copy.get("policies"), vault, counts)
        session.commit()
    for disk in made:  # the images, once the rows are in: empty, marked incomplete
        folder = disk_folder(ctx, disk.id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(folder / "disk.img", "ab") as handle:
            handle.truncate(disk.size)
    return counts


def _entries(value: object) -> list[dict]:
    return [e for e in value if isinstance(e, dict)][:10_000] if isinstance(value, list) else []


def _taken(session: Session, model: type, row_id: str, name: str) -> bool:
    if session.get(model, row_id) is not None:
        return True
    return session.exec(select(model).where(model.name == name)).first() is not None


def _servers(ctx: Context, session: Session, entries: object, counts: dict[str, int]) -> None:
    for entry in _entries(entries):
        server_id, name = _id(entry.get("id"), "srv"), _name(entry.get("name"), "server")
        if not server_id or not name or _taken(session, Server, server_id, name):
            continue
        image = entry.get("os_image")
        session.add(
            Server(
                id=server_id, name=name, os_image=str(image)[:500] if image else None, host=ctx.host
            )
        )
        record(session, ctx, "server.recover", kind="server", object_id=server_id, name=name)
        counts["servers"] += 1


def _disks(
    ctx: Context, session: Session, entries: object, counts: dict[str, int], made: list[Any]
) -> None:
    servers = {s.name: s for s in session.exec(select(Server)).all()}
    for entry in _entries(entries):
        disk_id, name = _id(entry.get("id"), "disk"), _name(entry.get("name"), "disk")
        size = entry.get("size")
        if not disk_id or not name or type(size) is not int or not 0 < size <= MAX_SIZE:
            counts["disks_skipped"] += 1
            continue
        if _taken(session, Disk, disk_id, name):
            continue
        server = servers.get(str(entry.get("server")))
        role = "system" if entry.get("role") == "system" and server else "data"
        if (
            role == "system"
            and session.exec(
                select(Disk).where(Disk.server_id == server.id, Disk.role == "system")
            ).first()
        ):
            role = "data"
        if entry.get("managed") is False:
            # a registered file or device: a path a vault names is never adopted (it could
            # name any device of this host); `disk register` it again by hand
            counts["disks_skipped"] += 1
            continue
        folder = disk_folder(ctx, disk_id)
        disk = Disk(
            id=disk_id,
            name=name,
            size=size,
            path=str(folder / "disk.img"),
            status="error-restoring",
            restore_incomplete=True,
            origin="recovered",
            host=ctx.host,
        )
        made.append(disk)
        disk.server_id, disk.role = (server.id if server else None), role
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        disk.snapshot_strategy = detect_strategy(folder)
        session.add(disk)
        record(
            session,
            ctx,
            "disk.recover",
            kind="disk",
            object_id=disk_id,
            name=name,
            detail="empty, marked incomplete: restore its backup onto it",
        )
        counts["disks"] += 1


def _policies(
    ctx: Context,
    session: Session,
    entries: object,
    vault: VaultRecord,
    counts: dict[str, int],
) -> None:
    for entry in _entries(entries):
        policy_id, name = _id(entry.get("id"), "pol"), _name(entry.get("name"), "policy")
        if not policy_id or not name or entry.get("vault") != vault.name:
            continue
        if _taken(session, Policy, policy_id, name):
            continue
        try:
            schedule = parse_schedule(str(entry.get("schedule"))[:100]).text
            drill = entry.get("drill")
            drill = parse_schedule(str(drill)[:100]).text if drill else None
            within = entry.get("keep_within")
            within = str(within)[:40] if within else None
            if within:
                parse_duration(within)
        except UserError:
            continue
        keep = {
            key: value if type(value) is int and 0 < value <= 100_000 else None
            for key, value in ((k, entry.get(k)) for k in ("keep_last", "keep_days", *KEEP_MORE))
        }
        session.add(
            Policy(
                id=policy_id,
                name=name,
                schedule=schedule,
                vault_id=vault.id,
                enabled=entry.get("enabled") is not False,
                keep_within=within,
                drill=drill,
                **keep,
            )
        )
        session.flush()
        for disk_id in entry.get("disks") or []:
            if isinstance(disk_id, str) and session.get(Disk, disk_id) is not None:
                session.add(PolicyTarget(policy_id=policy_id, disk_id=disk_id))
        record(session, ctx, "policy.recover", kind="policy", object_id=policy_id, name=name)
        counts["policies"] += 1
