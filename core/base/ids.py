"""Stable, short, typeable object ids such as `disk-7f3a2c`."""

from __future__ import annotations

import re
import secrets

PREFIXES = {
    "server": "srv",
    "disk": "disk",
    "snapshot": "snap",
    "vault": "vault",
    "backup": "bk",
    "policy": "pol",
    "job": "job",
}
ID_PATTERN = re.compile(r"^(srv|disk|snap|vault|bk|pol|job)-[0-9a-f]{6,12}$")


def new_id(kind: str) -> str:
    """A fresh id for an object of `kind`; 24 random bits, collisions checked by the catalog."""
    return f"{PREFIXES[kind]}-{secrets.token_hex(3)}"


def looks_like_id(text: str) -> bool:
    """True when `text` has the shape of an id (names may not take that shape)."""
    return bool(ID_PATTERN.match(text))
