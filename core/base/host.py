"""This host's identity in a shared catalog or vault, and whether a process of it is alive."""

from __future__ import annotations

import os
import re
import socket

HOST_ID_RULE = "must be 1 to 64 letters, digits, '.', '_' or '-'"
_HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: config.toml's `host_id`, set once the settings are read (`configure`)
_configured: str = ""


def valid_host_id(value: object) -> bool:
    """A host id is shown in refusals and job lists and is part of lock owner tokens."""
    return isinstance(value, str) and _HOST_ID.fullmatch(value) is not None


def configure(configured: str) -> None:
    """Adopt config.toml's `host_id` (empty: none) for this process."""
    global _configured
    _configured = configured


def host_id() -> str:
    """BLOCKVAULT_HOST_ID, else config.toml's host_id, else the hostname: several hosts can be
    tested as separate processes on one machine."""
    return os.environ.get("BLOCKVAULT_HOST_ID") or _configured or socket.gethostname()


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists on this host (or we may not signal it)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_gone(owner: str) -> bool:
    """An owner token `host:pid:...` whose process is gone from this host: its lock or lease
    can be taken over at once instead of waiting for it to lapse."""
    host, _, rest = str(owner).partition(":")
    pid, _, _ = rest.partition(":")
    if host != host_id() or not pid.isdigit():
        return False
    return not pid_alive(int(pid))
