"""Names and ids of catalog objects. Taken inside a claiming transaction (`Catalog.writer`),
so a check and the insert that follows it cannot interleave with another process; the
unique index is the last word (`commit_unique`)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from core.base.errors import Conflict, UserError
from core.base.ids import looks_like_id, new_id
from core.base.units import validate_name


def check_name_shape(name: str, *, kind: str) -> str:
    """A valid name that does not look like an id (so a ref is never ambiguous)."""
    validate_name(name, kind=kind)
    if looks_like_id(name):
        raise UserError(f"invalid {kind} name {name!r}: it looks like an id")
    return name


def check_new_name(session: Session, model: type, name: str, *, kind: str) -> str:
    """Names are unique per kind and may not look like ids (so a ref is never ambiguous)."""
    check_name_shape(name, kind=kind)
    if session.exec(select(model).where(model.name == name)).first():
        raise Conflict(f"a {kind} named {name!r} already exists")
    return name


def unique_id(session: Session, model: type, kind: str) -> str:
    while True:
        candidate = new_id(kind)
        if session.get(model, candidate) is None:
            return candidate


def default_name(session: Session, model: type, base: str) -> str:
    """`base-YYYYmmdd-HHMMSS`, with a suffix when that name is taken."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = f"{base}-{stamp}"
    suffix = 1
    while session.exec(select(model).where(model.name == name)).first():
        suffix += 1
        name = f"{base}-{stamp}-{suffix}"
    return name


def commit_unique(session: Session, what: str) -> None:
    """Commit; a unique index that refuses the insert becomes one clear line, not a traceback."""
    try:
        session.commit()
    except sa.exc.IntegrityError:
        session.rollback()
        raise Conflict(f"{what} already exists (taken by another process just now)") from None
