"""The shared context every operation receives: catalog, locations, settings, actor."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlmodel import Session, SQLModel, select

from core.base.config import Settings
from core.base.errors import NotFound
from core.base.host import host_id
from core.base.ids import looks_like_id
from core.base.locations import Locations
from core.catalog.db import Catalog
from core.catalog.models import Event

T = TypeVar("T", bound=SQLModel)


def current_actor() -> str:
    """user@host, as shown in the audit log and the console header."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{host_id()}"


@dataclass
class Context:
    """Everything an operation needs; built once by the façade."""

    catalog: Catalog
    locations: Locations
    settings: Settings
    actor: str
    host: str = field(default_factory=host_id)
    #: open vaults, reused by every job of this process (opening an S3 client costs ~0.2 s)
    repositories: dict[tuple[str, str, bool], Any] = field(default_factory=dict)


def on_this_host(ctx: Context, disk: Any) -> bool:
    """The disk's image or device is on this host (a disk of a catalog before v6 names no
    host: any host)."""
    return not disk.host or disk.host == ctx.host


def resolve(session: Session, model: type[T], ref: str, *, kind: str) -> T:
    """Find an object by id or by name; NotFound names what was asked for."""
    row = session.get(model, ref) if looks_like_id(ref) else None
    if row is None and hasattr(model, "name"):
        row = session.exec(select(model).where(model.name == ref)).first()  # type: ignore[attr-defined]
    if row is None:
        raise NotFound(f"no {kind} named {ref!r}")
    return row


def record(
    session: Session,
    ctx: Context,
    action: str,
    *,
    kind: str,
    object_id: str,
    name: str = "",
    detail: str = "",
) -> None:
    """Add an audit event in the caller's transaction."""
    session.add(
        Event(
            actor=ctx.actor,
            action=action,
            object_kind=kind,
            object_id=object_id,
            object_name=name,
            detail=detail,
        )
    )
