"""The object-store interface every vault backend implements (shape of restic's backend.go).

Keys are '/'-separated relative names ("chunks/ab/abcd...", "manifests/bk-1234.json").
Backends classify their own errors: `StoreError(transient=True)` for what a retry may fix,
`ObjectMissing` for absent keys. Retries live in `stores.retry.RetryingStore`, not here.

Retention (S3 Object Lock): a store whose `object_lock` is set writes objects given
`retain_until` so that nobody, not even the bucket's owner, deletes them before that date;
`retain` only ever extends a date and `delete` removes every version of a key, refusing
(`Retained`) where one is still retained. Stores without it (`object_lock` None) ignore the
date: blockvault then enforces locks itself (core.repo.repository's lock records).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

#: the S3 Object Lock modes a vault may write with (`vault add --object-lock MODE`)
OBJECT_LOCK_MODES = ("compliance", "governance")


def lock_instant(moment: datetime) -> datetime:
    """A retain-until date as stores keep it: UTC, whole seconds, rounded up (S3 truncates
    to seconds; rounding up never shortens a lock). A naive moment is taken as UTC."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return datetime.fromtimestamp(math.ceil(moment.timestamp()), UTC)


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: key, size in bytes, modification time (unix seconds)."""

    key: str
    size: int
    mtime: float


class ObjectStore(ABC):
    """Minimal key/value object storage; implementations must be thread-safe."""

    #: human-readable location ("/var/lib/blockvault/vault", "s3://bucket/prefix")
    location: str = ""

    #: the S3 Object Lock mode objects given `retain_until` are written with ("compliance" or
    #: "governance"), or None when the store does not enforce retention itself
    object_lock: str | None = None

    #: whether the data travels over a network (S3): progress then names "network" as the
    #: bottleneck stage of vault I/O, else "writing" or "reading" (a local directory)
    remote: bool = False

    @abstractmethod
    def put(
        self,
        key: str,
        data: bytes,
        *,
        create_only: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        """Store `data` durably under `key`; return False if create_only and it already existed
        (then nothing is written, and an existing object's retention is left as it was).

        A put is atomic: readers see the whole object or none of it. `retain_until`: where the
        store enforces retention (`object_lock`), the object cannot be deleted before then.
        """

    @abstractmethod
    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Return the object's bytes, or raise ObjectMissing; an object larger than
        `max_bytes` is a StoreError, refused before its bytes are held in memory."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True if the key is stored."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the key (in a versioned bucket: every version of it); deleting a missing key
        is not an error. `Retained` (with the date) when a version is still retained."""

    def retain(self, key: str, until: datetime) -> datetime | None:
        """Extend the key's retention to at least `until` (never shorten it); the date it is
        retained until now, or None where the store does not enforce retention.
        ObjectMissing if there is no such key."""
        return None

    def retained_until(self, key: str) -> datetime | None:
        """The date before which the store refuses to delete the key's current version, if
        that is in the future; None otherwise (or where the store has no retention)."""
        return None

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`: in ascending key order (by code point)
        where `ordered_listing` is True, else in no particular order."""

    #: True when `list` yields keys in ascending order: a listing restarted after a failure
    #: then skips what it yielded by comparing with the last key, holding no set of keys
    ordered_listing: bool = False

    def delete_lazily(self, key: str) -> None:
        """`delete`, without waiting for the delete to be durable (a later `flush()` makes
        it so): for deletes a crash may undo harmlessly (gc's: a chunk that comes back is
        condemned again), thousands of which would each cost a sync otherwise."""
        self.delete(key)

    #: True when every put is durable on return; False when durability waits for `flush()`
    durable_puts: bool = True

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make every earlier put durable (a no-op where puts already are)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
