"""Typed progress events and a rate-limited reporter (restic's counters + timed updater).

The engine never prints: it updates a `ProgressReporter`, which emits at most `max_rate`
events per second to its subscribers (CLI bar, JSON lines, the console's jobs strip).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from core.base.ratelimit import Bandwidth


@dataclass(frozen=True)
class ProgressEvent:
    """A snapshot of one job's progress; `final` is set on the last event of a phase."""

    job_id: str
    phase: str
    bytes_done: int
    bytes_total: int
    bytes_new: int = 0
    bytes_reused: int = 0
    bytes_zero: int = 0
    bytes_stored: int = 0
    rate: float = 0.0
    eta: float | None = None
    bottleneck: str = ""
    message: str = ""
    final: bool = False
    elapsed: float = 0.0
    #: the job's bandwidth limits in bytes per second (None: no limit in that direction)
    limit_upload: int | None = None
    limit_download: int | None = None

    @property
    def fraction(self) -> float:
        """Completed share in [0, 1]."""
        return min(1.0, self.bytes_done / self.bytes_total) if self.bytes_total else 1.0

    @property
    def limited(self) -> str:
        """'limited to 20.0 MiB/s' for the progress line; '' without a limit."""
        return Bandwidth(self.limit_upload or 0, self.limit_download or 0).describe()

    def to_dict(self) -> dict:
        """JSON-ready dict, with `type: progress`."""
        return {"type": "progress", **asdict(self)}


Subscriber = Callable[[ProgressEvent], None]


@dataclass
class ProgressReporter:
    """Thread-safe counters for one job, emitted at most `max_rate` times per second.

    Workers call `add(...)`; the reporter decides when to emit. Stage timings feed the
    bottleneck estimate: the stage where workers spent the most wall time.
    """

    job_id: str
    phase: str
    bytes_total: int
    subscribers: list[Subscriber] = field(default_factory=list)
    max_rate: float = 10.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_emit = 0.0
        self.bytes_done = 0
        self.bytes_new = 0
        self.bytes_reused = 0
        self.bytes_zero = 0
        self.bytes_stored = 0
        self.stage_seconds: dict[str, float] = {}
        self.message = ""
        #: the job's bandwidth limits (bytes per second), carried by every event it emits
        self.limit_upload: int | None = None
        self.limit_download: int | None = None

    def add(
        self,
        *,
        done: int = 0,
        new: int = 0,
        reused: int = 0,
        zero: int = 0,
        stored: int = 0,
    ) -> None:
        """Account for processed bytes and maybe emit."""
        with self._lock:
            self.bytes_done += done
            self.bytes_new += new
            self.bytes_reused += reused
            self.bytes_zero += zero
            self.bytes_stored += stored
        self._maybe_emit()

    def stage_time(self, stage: str, seconds: float) -> None:
        """Record time spent in a stage: reading, hashing/compressing, network, writing."""
        with self._lock:
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def set_phase(self, phase: str, *, bytes_total: int | None = None, message: str = "") -> None:
        """Switch phase (e.g. 'scanning' -> 'uploading'); resets done counters if total given."""
        with self._lock:
            self.phase = phase
            self.message = message
            if bytes_total is not None:
                self.bytes_total = bytes_total
                self.bytes_done = 0
                self._start = time.monotonic()
        self.emit()

    def _maybe_emit(self) -> None:
        now = time.monotonic()
        if now - self._last_emit >= 1.0 / self.max_rate:
            self.emit()

    def snapshot(self, *, final: bool = False) -> ProgressEvent:
        """The current state as an event."""
        with self._lock:
            elapsed = max(time.monotonic() - self._start, 1e-9)
            rate = self.bytes_done / elapsed
            remaining = max(self.bytes_total - self.bytes_done, 0)
            eta = remaining / rate if rate > 0 else None
            bottleneck = (
                max(self.stage_seconds, key=self.stage_seconds.__getitem__)
                if self.stage_seconds
                else ""
            )
            return ProgressEvent(
                job_id=self.job_id,
                phase=self.phase,
                bytes_done=self.bytes_done,
                bytes_total=self.bytes_total,
                bytes_new=self.bytes_new,
                bytes_reused=self.bytes_reused,
                bytes_zero=self.bytes_zero,
                bytes_stored=self.bytes_stored,
                rate=rate,
                eta=0.0 if final else eta,
                bottleneck=bottleneck,
                message=self.message,
                final=final,
                elapsed=elapsed,
                limit_upload=self.limit_upload,
                limit_download=self.limit_download,
            )

    def emit(self, *, final: bool = False) -> None:
        """Send the current state to every subscriber now."""
        self._last_emit = time.monotonic()
        event = self.snapshot(final=final)
        for subscriber in list(self.subscribers):
            subscriber(event)
