"""Bandwidth limits: rates as users write them, and one token bucket per direction per job.

A job's worker threads share its buckets, so the limit holds for the job as a whole however
many chunks are in flight. The buckets count the bytes the store layer really sends and
receives: compressed (and encrypted) chunk blobs on the wire, not the disk's bytes, so a
backup of compressible data moves more disk bytes per second than its limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.base.errors import Cancelled, UserError
from core.base.units import human_size, parse_size

#: the smallest limit taken (a slower one would hold a 4 MiB chunk for over a minute)
MIN_RATE = 64 << 10
#: a limit's bucket holds at most this much unused time: after an idle moment (reading,
#: hashing) a job catches up this far, never more, so the average stays at the limit
BURST_SECONDS = 0.1
#: what lifts a limit set in config.toml for one command (`--limit-upload 0`)
UNLIMITED = ("0", "off", "none", "unlimited")


def parse_rate(text: str | int) -> int:
    """Bytes per second from '20MiB', '50M', '512K/s' or a number of bytes (binary units,
    as sizes are); 0 for '0', 'off' or 'none' (no limit)."""
    raw = str(text).strip()
    if raw.lower() in UNLIMITED:
        return 0
    bare = raw[:-2] if raw.lower().endswith("/s") else raw
    try:
        rate = parse_size(bare)
    except UserError:
        raise UserError(
            f"invalid rate {raw[:40]!r}: use bytes per second with K, M or G (e.g. 20MiB), "
            "or 0 for no limit"
        ) from None
    if rate < MIN_RATE:
        raise UserError(f"invalid rate {raw[:40]!r}: at least {human_size(MIN_RATE)}/s")
    return rate


def rate_text(rate: int) -> str:
    """'20.0 MiB/s': how progress and plans show a limit."""
    return f"{human_size(rate)}/s"


@dataclass(frozen=True)
class Bandwidth:
    """Limits in bytes per second for data sent to (upload) and read from (download) vaults;
    0: no limit."""

    upload: int = 0
    download: int = 0

    @classmethod
    def of(cls, upload: str | int, download: str | int) -> Bandwidth:
        """From rates as written ('20MiB'); empty: no limit."""
        return cls(parse_rate(upload or 0), parse_rate(download or 0))

    def given(self, *, upload: int | None, download: int | None) -> Bandwidth:
        """These limits (config.toml's) with a command's where it gave one: None keeps the
        configured limit, 0 lifts it (`--limit-upload 0`)."""
        return Bandwidth(
            self.upload if upload is None else upload,
            self.download if download is None else download,
        )

    def only(self, *, upload: bool, download: bool) -> Bandwidth:
        """The limits of the directions a job moves its data in (a backup uploads)."""
        return Bandwidth(self.upload if upload else 0, self.download if download else 0)

    def __bool__(self) -> bool:
        return bool(self.upload or self.download)

    def to_dict(self) -> dict[str, int | None]:
        """For JSON: bytes per second, null where there is no limit."""
        return {"limit_upload": self.upload or None, "limit_download": self.download or None}

    def describe(self) -> str:
        """'limited to 20.0 MiB/s' (one direction), 'limited to 20.0 MiB/s up, 5.0 MiB/s
        down' (both), '' (none)."""
        parts = [
            (rate, word) for rate, word in ((self.upload, "up"), (self.download, "down")) if rate
        ]
        if not parts:
            return ""
        if len(parts) == 1:
            return f"limited to {rate_text(parts[0][0])}"
        return "limited to " + ", ".join(f"{rate_text(rate)} {word}" for rate, word in parts)


class TokenBucket:
    """A thread-safe token bucket in bytes: `take(n)` waits until `n` bytes fit the rate.

    A take larger than the bucket (a 4 MiB chunk under a 1 MiB/s limit) borrows: the bucket
    goes negative and its caller waits the debt off, and so does every caller after it, in
    the order they came. N bytes through a bucket that starts empty take at least
    N / rate seconds, less at most BURST_SECONDS saved while it was idle."""

    def __init__(
        self,
        rate: int,
        *,
        burst_seconds: float = BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = rate * burst_seconds
        self._clock = clock
        self._tokens = 0.0
        self._stamp = clock()
        self._lock = threading.Lock()

    def reserve(self, size: int) -> float:
        """Take `size` bytes now; the seconds the caller must wait before they may move."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= size
            return max(0.0, -self._tokens / self.rate)

    def take(self, size: int, cancel: threading.Event | None = None) -> float:
        """Wait until `size` bytes may move; Cancelled as soon as `cancel` is set. Returns
        the seconds waited."""
        wait = self.reserve(size)
        if wait <= 0:
            return 0.0
        if cancel is None:
            time.sleep(wait)
        elif cancel.wait(wait):
            raise Cancelled("cancelled")
        return wait


class Throttle:
    """One job's limits: a bucket per limited direction, shared by all its worker threads."""

    def __init__(self, bandwidth: Bandwidth, *, cancel: threading.Event | None = None) -> None:
        self.bandwidth = bandwidth
        self.cancel = cancel
        self.upload = TokenBucket(bandwidth.upload) if bandwidth.upload else None
        self.download = TokenBucket(bandwidth.download) if bandwidth.download else None
        self._lock = threading.Lock()
        #: seconds workers spent waiting on the limit (all threads): for statistics and tests
        self.waited = 0.0

    def __bool__(self) -> bool:
        return bool(self.bandwidth)

    def sending(self, size: int, *, wait: bool = True) -> None:
        """Before `size` bytes go to the store. `wait=False` (small control objects, such as
        a writer's heartbeat, which must never queue behind the job's data): counted, and
        the transfers after it wait for it instead."""
        self._pace(self.upload, size, wait)

    def received(self, size: int, *, wait: bool = True) -> None:
        """After `size` bytes came from the store (a read is paid for once it arrived)."""
        self._pace(self.download, size, wait)

    def _pace(self, bucket: TokenBucket | None, size: int, wait: bool) -> None:
        if bucket is None:
            return
        if not wait:
            bucket.reserve(size)
            return
        waited = bucket.take(size, self.cancel)
        if waited:
            with self._lock:
                self.waited += waited
