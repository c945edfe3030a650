"""Typed errors. Fronts print `UserError` as one line and exit non-zero; anything else is a bug.

`EXIT_CODES` is the one table of what the CLI (and the console) exit with, and
`ERROR_EXITS` maps each error class to one of its codes: README "Exit codes" shows both.
"""

from __future__ import annotations


class BlockvaultError(Exception):
    """Base of every error the engine raises on purpose."""

    @property
    def exit_code(self) -> int:
        """The process exit code for this error (`ERROR_EXITS`)."""
        return exit_status(self)[0]


class UserError(BlockvaultError):
    """A mistake the user can fix (bad name, bad size, wrong state): shown as one line."""


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


class PartlyFailed(BlockvaultError):
    """Some of several independent steps failed, the others succeeded (exit 3, "partial")."""


class Aborted(BlockvaultError):
    """The user declined a confirmation (answered no, typed another name): nothing changed."""


class DeviceError(BlockvaultError):
    """Reading or writing a disk failed (EIO, ENOSPC, ...): the transfer stops, never
    substituting zeros or claiming a whole disk."""


class IntegrityError(BlockvaultError):
    """Stored data does not match its content id or digest: never written to a disk."""


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


class Refusal(str):
    """A plan's refusal: its text, and the error it becomes when the plan is run anyway
    (a busy disk is `Busy`, nothing to undo `NotFound`, a locked backup `Retained`)."""

    error: type[BlockvaultError] = Conflict

    def __new__(cls, text: str, error: type[BlockvaultError] = Conflict) -> Refusal:
        made = super().__new__(cls, text)
        made.error = error
        return made


def refused(refusal: str) -> BlockvaultError:
    """The error a refused plan raises: its `Refusal.error`, else `Conflict`."""
    return getattr(refusal, "error", Conflict)(str(refusal))


#: every exit code of the CLI: (code, kind, meaning). `status` alone differs (Nagios codes).
EXIT_CODES: tuple[tuple[int, str, str], ...] = (
    (0, "ok", "success"),
    (
        1,
        "failure",
        "the command failed: a vault, a store or a device failed, stored data is "
        "damaged, or the state refuses the action (a name taken, a disk in the wrong state)",
    ),
    (
        2,
        "usage",
        "a mistake on the command line: an unknown option, a bad size or name, a "
        "confirmation needed without a terminal, or no command without a terminal",
    ),
    (
        3,
        "partial",
        "some of the work failed: some due backups, copies or drills (policy run, "
        "service --once, backup drill of several disks)",
    ),
    (
        10,
        "not-found",
        "no object by that name or id (server, disk, snapshot, backup, vault, "
        "policy, job, AWS profile), or nothing to undo",
    ),
    (
        11,
        "busy",
        "another job holds the object, or it is locked until a date (backup lock, "
        "S3 Object Lock, a vault's gc lock)",
    ),
    (12, "aborted", "the confirmation was declined: nothing changed"),
    (70, "internal", "a bug in blockvault (a traceback with --debug)"),
    (130, "interrupted", "cancelled with Ctrl-C or `job cancel`: nothing partial is visible"),
)

#: error class -> exit code; the first class of an error's MRO found here decides
ERROR_EXITS: dict[type[BaseException], int] = {
    NotFound: 10,
    InUse: 11,
    Retained: 11,
    Aborted: 12,
    PartlyFailed: 3,
    Cancelled: 130,
    Conflict: 1,
    UserError: 2,
    BlockvaultError: 1,
}


def exit_status(exc: BaseException) -> tuple[int, str]:
    """(exit code, kind) for an error: `ERROR_EXITS`, 70 "internal" for anything else."""
    code = next((ERROR_EXITS[c] for c in type(exc).__mro__ if c in ERROR_EXITS), 70)
    return code, next(kind for number, kind, _ in EXIT_CODES if number == code)
