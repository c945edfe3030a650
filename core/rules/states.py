"""Status machines for disks, snapshots, backups and jobs, enforced by the core.

A disk's "in-use" status is detected (another process holds it open for writing), never stored.
"""

from __future__ import annotations

from core.base.errors import Conflict

DISK_TRANSITIONS: dict[str, set[str]] = {
    "available": {"backing-up", "snapshotting", "restoring", "rolling-back", "deleting"},
    "backing-up": {"available"},
    "snapshotting": {"available"},
    "restoring": {"available", "error-restoring"},
    "rolling-back": {"available", "error-rolling-back"},
    "error-restoring": {"restoring", "rolling-back", "deleting"},
    "error-rolling-back": {"restoring", "rolling-back", "deleting"},
    "deleting": set(),
}
ARTIFACT_TRANSITIONS: dict[str, set[str]] = {
    "creating": {"available", "error"},
    "available": {"deleting"},
    "error": {"deleting"},
    "deleting": set(),
}
JOB_TRANSITIONS: dict[str, set[str]] = {
    "queued": {"running", "cancelled", "failed"},
    "running": {"succeeded", "failed", "cancelling", "cancelled"},
    "cancelling": {"cancelled", "succeeded", "failed"},
    "succeeded": set(),
    "failed": set(),
    "cancelled": set(),
}
JOB_ACTIVE = {"queued", "running", "cancelling"}
DISK_BUSY_VERB = {
    "backing-up": "a backup is running",
    "snapshotting": "a snapshot is being taken",
    "restoring": "a restore is running",
    "rolling-back": "a rollback is running",
    "deleting": "it is being deleted",
}


def check_transition(kind: str, name: str, *, current: str, new: str) -> None:
    """Raise Conflict with a readable reason if `current -> new` is not allowed."""
    table = {"disk": DISK_TRANSITIONS, "job": JOB_TRANSITIONS}.get(kind, ARTIFACT_TRANSITIONS)
    if new not in table.get(current, set()):
        reason = DISK_BUSY_VERB.get(current, f"it is {current}")
        raise Conflict(f"{kind} {name} cannot become {new}: {reason}")
