"""Retries as a wrapper around any store (restic's layering), not code inside each backend.

Only `StoreError(transient=True)` is retried, with capped exponential backoff and full jitter,
a bounded number of times; everything else passes straight through. Retrying is safe because
every blockvault write is idempotent (I6): same key, same bytes.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from core.base.errors import StoreError
from core.stores.base import ObjectInfo, ObjectStore

T = TypeVar("T")


@dataclass(frozen=True)
class RetryEvent:
    """One failed attempt about to be retried: for logs and progress ("retrying in 0.8 s")."""

    operation: str
    key: str
    attempt: int
    attempts: int
    delay: float
    error: StoreError


class RetryingStore(ObjectStore):
    """Wrap `inner`, retrying transient failures up to `attempts` times per operation."""

    def __init__(
        self,
        inner: ObjectStore,
        *,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        on_retry: Callable[[RetryEvent], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.inner = inner
        self.location = inner.location
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.on_retry = on_retry
        self._sleep = sleep
        self._lock = threading.Lock()
        #: how many retries this wrapper has made (all threads): for tests and statistics
        self.retries = 0

    def _backoff(self, operation: str, key: str, attempt: int, error: StoreError) -> None:
        delay = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        with self._lock:
            self.retries += 1
        if self.on_retry is not None:
            self.on_retry(RetryEvent(operation, key, attempt, self.attempts, delay, error))
        self._sleep(delay)

    def _give_up(self, error: StoreError) -> StoreError:
        return StoreError(f"{error} (gave up after {self.attempts} attempts)", transient=True)

    def _run(self, operation: str, key: str, fn: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except StoreError as exc:
                if not exc.transient:
                    raise
                if attempt == self.attempts:
                    raise self._give_up(exc) from exc
                self._backoff(operation, key, attempt, exc)
        raise AssertionError("unreachable")

    @property
    def object_lock(self) -> str | None:  # type: ignore[override]
        return self.inner.object_lock

    @property
    def remote(self) -> bool:  # type: ignore[override]
        return self.inner.remote

    def put(
        self,
        key: str,
        data: bytes,
        *,
        create_only: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        """Retry a put. For create_only, an attempt that failed transiently may still have
        written (lost acknowledgement): if a later attempt finds the key taken, compare bytes,
        and count it as created when they are ours. An identical object written earlier by
        someone else is then also reported as created, which is harmless by I6 (its
        retention is then extended to `retain_until`, as if this put had made it).
        """
        lock = {"retain_until": retain_until} if retain_until is not None else {}
        if not create_only:
            return self._run("put", key, lambda: self.inner.put(key, data, **lock))
        maybe_written = False
        for attempt in range(1, self.attempts + 1):
            try:
                created = self.inner.put(key, data, create_only=True, **lock)
            except StoreError as exc:
                if not exc.transient:
                    raise
                if attempt == self.attempts:
                    raise self._give_up(exc) from exc
                maybe_written = True
                self._backoff("put", key, attempt, exc)
                continue
            if created or not maybe_written:
                return created
            ours = self._run("get", key, lambda: self.inner.get(key)) == data
            if ours and retain_until is not None:
                self.retain(key, retain_until)
            return ours
        raise AssertionError("unreachable")

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self._run("get", key, lambda: self.inner.get(key, max_bytes=max_bytes))

    @property
    def durable_puts(self) -> bool:  # type: ignore[override]
        return self.inner.durable_puts

    def flush(self) -> None:
        self.inner.flush()

    def exists(self, key: str) -> bool:
        return self._run("exists", key, lambda: self.inner.exists(key))

    def delete(self, key: str) -> None:
        self._run("delete", key, lambda: self.inner.delete(key))

    def delete_lazily(self, key: str) -> None:
        self._run("delete", key, lambda: self.inner.delete_lazily(key))

    @property
    def ordered_listing(self) -> bool:  # type: ignore[override]
        return self.inner.ordered_listing

    def retain(self, key: str, until: datetime) -> datetime | None:
        return self._run("retain", key, lambda: self.inner.retain(key, until))

    def retained_until(self, key: str) -> datetime | None:
        return self._run("retained", key, lambda: self.inner.retained_until(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Restart a listing that failed midway, skipping keys already yielded.

        The attempt budget is per stretch without progress, so a long listing with scattered
        errors completes while a listing that never advances still gives up. An ordered
        listing (`ordered_listing`: a local vault) skips up to the last key it yielded, so a
        listing of millions of chunks holds one key; others hold a 16-byte digest per key
        yielded (half of the key itself), and a collision would need 2^64 keys.
        """
        ordered = self.inner.ordered_listing
        seen: set[bytes] = set()  # unordered stores only: 16-byte digests of the keys
        floor: str | None = None  # ordered: every key up to here was yielded before a restart
        last: str | None = None
        in_order = True  # a store that breaks its promise cannot resume: it fails instead
        failures = 0
        while True:
            try:
                for info in self.inner.list(prefix):
                    if ordered:
                        if floor is not None and info.key <= floor:
                            continue
                        if last is not None and info.key <= last:
                            in_order = False
                        last = info.key if last is None else max(last, info.key)
                    else:
                        mark = hashlib.blake2b(info.key.encode(), digest_size=16).digest()
                        if mark in seen:
                            continue
                        seen.add(mark)
                    failures = 0
                    yield info
                return
            except StoreError as exc:
                if not exc.transient:
                    raise
                if not in_order:
                    raise StoreError(
                        f"listing {prefix or 'the store'} failed midway ({exc}) and the store "
                        "did not list in key order, so it cannot resume without repeats or "
                        "gaps; try again"
                    ) from exc
                failures += 1
                if failures >= self.attempts:
                    raise self._give_up(exc) from exc
                floor = last
                self._backoff("list", prefix, failures, exc)

    def close(self) -> None:
        self.inner.close()
