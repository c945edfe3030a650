"""Messages workers post to the console; widgets change only in their handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from core.api import ProgressEvent


@dataclass
class Inventory(Message):
    """Disks, active jobs, the header's status, each disk's protection, the policies and the
    vaults, loaded off the UI thread."""

    disks: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    snapshot_counts: dict[str, int] = field(default_factory=dict)  # by disk id
    status: dict[str, Any] = field(default_factory=dict)
    protection: dict[str, Any] = field(default_factory=dict)  # protection_status()
    policies: list[dict[str, Any]] = field(default_factory=list)
    vaults: list[dict[str, Any]] = field(default_factory=list)  # list_vaults()


@dataclass
class Selection(Message):
    """Snapshots and backups for one disk (or every backup with `show_all`)."""

    disk_id: str | None
    show_all: bool
    snapshots: list[dict[str, Any]]
    backups: list[dict[str, Any]]


@dataclass
class JobStarted(Message):
    """A job started by a worker (a policy's backups): a row in the strip; `handle` cancels it."""

    job_id: str
    kind: str
    target: str
    handle: Any = None


@dataclass
class JobProgress(Message):
    """Progress of one job; a newer one replaces a queued older one of the same job."""

    event: ProgressEvent

    def can_replace(self, message: Message) -> bool:
        # Textual drops this (older, queued) message when the next one in the queue can replace it.
        return (
            isinstance(message, JobProgress)
            and message.event.job_id == self.event.job_id
            and not self.event.final
        )


@dataclass
class JobFinished(Message):
    job_id: str
    kind: str
    target: str
    status: str  # succeeded | failed | cancelled
    error: str | None = None
    summary: str = ""
    result_id: str | None = None  # what the job made or used: the cursor goes there


@dataclass
class ActiveJobs(Message):
    """Jobs running now according to the catalog (this process or any other sharing it),
    and the catalog rows of followed jobs that are no longer running (None: gone)."""

    jobs: list[dict[str, Any]]
    ended: dict[str, dict[str, Any] | None] = field(default_factory=dict)


@dataclass
class PolicyRan(Message):
    """A policy run from the console ended: what it backed up and expired (`run_policy_now`)."""

    policy: str
    outcomes: list[dict[str, Any]]
