"""Typed errors. Fronts print `UserError` as one line and exit non-zero; anything else is a bug."""

from __future__ import annotations


class BlockvaultError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 1


class UserError(BlockvaultError):
    """A mistake the user can fix (bad name, bad size, wrong state): shown as one line."""

    exit_code = 2


class NotFound(UserError):
    """No object by that id or name."""


class Conflict(UserError):
    """The object exists already, or its state forbids the action."""


class Retained(Conflict):
    """Locked until a date (`backup lock`, a policy's `--lock-for`, S3 Object Lock): nothing
    deletes it before then. `until` is that date (aware, UTC)."""

    def __init__(self, message: str, *, until: object = None) -> None:
        super().__init__(message)
        self.until = until


class InUse(Conflict):
    """A disk is used by a running job or held open for writing by another process."""


class Cancelled(BlockvaultError):
    """A job was cancelled by the user (Ctrl-C or `job cancel`)."""

    exit_code = 130


class DeviceError(BlockvaultError):
    """Reading or writing a disk failed (EIO, ENOSPC, ...): the transfer stops, never
    substituting zeros or claiming a whole disk."""


class IntegrityError(BlockvaultError):
    """Stored data does not match its content id or digest: never written to a disk."""

    exit_code = 3


class StoreError(BlockvaultError):
    """A vault or object store failed; `transient` ones are retried by the retry wrapper."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ObjectMissing(StoreError):
    """The key is not in the store."""


class Busy(InUse):
    """Another job owns the object (a disk has one owner at a time): names the job and host."""


class PlanChanged(Conflict):
    """The state changed between the plan a user saw and its execution; carries the new plan."""

    def __init__(self, message: str, *, plan: object) -> None:
        super().__init__(message)
        self.plan = plan
