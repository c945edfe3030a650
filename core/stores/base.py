"""The object-store interface every vault backend implements (shape of restic's backend.go).

Keys are '/'-separated relative names ("chunks/ab/abcd...", "manifests/bk-1234.json").
Backends classify their own errors: `StoreError(transient=True)` for what a retry may fix,
`ObjectMissing` for absent keys. Retries live in `stores.retry.RetryingStore`, not here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass


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

    @abstractmethod
    def put(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        """Store `data` durably under `key`; return False if create_only and it already existed.

        A put is atomic: readers see the whole object or none of it.
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
        """Remove the key; deleting a missing key is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in no particular order."""

    #: True when every put is durable on return; False when durability waits for `flush()`
    durable_puts: bool = True

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make every earlier put durable (a no-op where puts already are)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
