"""A store wrapper that holds transfers to a job's bandwidth limits (`--limit-upload`).

It sits under the retries (`RetryingStore(ThrottledStore(backend))`), so every attempt pays
for the bytes it really sends or receives: the blobs as stored (compressed, encrypted), not
the disk's bytes. Listings, existence checks and deletes carry no payload and pass freely.
Every payload is counted; only those of the keys `paced` names wait (the data): a heartbeat
or a lock is never held behind the job's own chunks, the chunks after it wait for it instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import datetime

from core.base.ratelimit import Throttle
from core.stores.base import ObjectInfo, ObjectStore
from core.stores.retry import RetryingStore


class ThrottledStore(ObjectStore):
    """`inner`, with puts and gets paced by `throttle`."""

    def __init__(
        self,
        inner: ObjectStore,
        throttle: Throttle,
        *,
        paced: Callable[[str], bool] = lambda key: True,
    ) -> None:
        self.inner = inner
        self.throttle = throttle
        self.paced = paced
        self.location = inner.location
        self.object_lock = inner.object_lock
        self.remote = inner.remote  # the bottleneck stage is still "network" for S3
        self.durable_puts = inner.durable_puts

    def put(
        self,
        key: str,
        data: bytes,
        *,
        create_only: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        self.throttle.sending(len(data), wait=self.paced(key))
        return self.inner.put(key, data, create_only=create_only, retain_until=retain_until)

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        data = self.inner.get(key, max_bytes=max_bytes)
        self.throttle.received(len(data), wait=self.paced(key))
        return data

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def retain(self, key: str, until: datetime) -> datetime | None:
        return self.inner.retain(key, until)

    def retained_until(self, key: str) -> datetime | None:
        return self.inner.retained_until(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


def throttled(
    store: ObjectStore, throttle: Throttle, *, paced: Callable[[str], bool] = lambda key: True
) -> ObjectStore:
    """`store` paced by `throttle`, as a new wrapper: the store itself (shared by every job
    of the process) is left unlimited. Under a RetryingStore the pacing goes beneath the
    retries, so a retried upload pays again."""
    if not throttle:
        return store
    if isinstance(store, RetryingStore):
        twin = copy.copy(store)
        twin.inner = ThrottledStore(store.inner, throttle, paced=paced)
        return twin
    return ThrottledStore(store, throttle, paced=paced)
