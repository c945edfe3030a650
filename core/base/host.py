"""This host's identity in a shared catalog or vault, and whether a process of it is alive."""

from __future__ import annotations

import os
import socket


def host_id() -> str:
    """BLOCKVAULT_HOST_ID, else the hostname: several hosts can be tested on one machine."""
    return os.environ.get("BLOCKVAULT_HOST_ID") or socket.gethostname()


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
