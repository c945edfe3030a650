"""Jobs: catalog rows (queued → running → succeeded | failed | cancelled) plus an in-process handle.

A job runs its function in a thread with a cancel event, a progress reporter and a heartbeat
that mirrors progress into the row about once a second; another process cancels a job by
setting its row to `cancelling`, which the heartbeat notices.

A job handed to the service (`--background`) is a queued row with a `request` made by the
CLI; the service claims it (core/jobs/handoff.py) and runs its verb `handed_over(job_id)`: the
executor's `new_job` then fills in that row instead of inserting another, so the id the user
follows and cancels is the job that runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from core.base.errors import BlockvaultError, Cancelled
from core.base.host import host_id, pid_alive
from core.base.progress import ProgressEvent, ProgressReporter, Subscriber
from core.catalog.context import Context, record
from core.catalog.models import Job, utcnow
from core.catalog.names import unique_id
from core.jobs.alerts import alert
from core.rules.states import JOB_ACTIVE, check_transition

HEARTBEAT_SECONDS = 1.0
STALE_SECONDS = 30.0

#: the claimed row of a job handed to the service, which the next `new_job` fills in
_HANDED: ContextVar[str | None] = ContextVar("handed_job", default=None)


@contextlib.contextmanager
def handed_over(job_id: str) -> Iterator[None]:
    """Run an executor so that the job it creates is the service's claimed row `job_id`."""
    token = _HANDED.set(job_id)
    try:
        yield
    finally:
        _HANDED.reset(token)


@dataclass
class JobContext:
    """Given to a job's function: its id, cancellation and a reporter factory."""

    job_id: str
    cancel: threading.Event
    subscribers: list[Subscriber]
    reporters: list[ProgressReporter] = field(default_factory=list)

    def reporter(self, phase: str, total: int) -> ProgressReporter:
        """A rate-limited reporter whose events reach every subscriber of the job."""
        reporter = ProgressReporter(self.job_id, phase, total, subscribers=self.subscribers)
        self.reporters.append(reporter)
        return reporter

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")


class JobHandle:
    """An in-process job: subscribe to progress, wait for the result, cancel."""

    def __init__(self, ctx: Context, job: Job, fn: Callable[[JobContext], Any]) -> None:
        self.ctx = ctx
        self.id = job.id
        self.kind = job.kind
        self.cancel_event = threading.Event()
        self.subscribers: list[Subscriber] = [self._remember]
        self.latest: ProgressEvent | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.status = "queued"
        self.lease_lost = False  # its heartbeat stopped reaching the catalog (see _heartbeat)
        self._fn = fn
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _remember(self, event: ProgressEvent) -> None:
        self.latest = event

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def cancel(self) -> None:
        """Ask the job to stop at the next chunk boundary."""
        self.cancel_event.set()

    def start(self) -> JobHandle:
        self._thread = threading.Thread(target=self.run, name=f"job-{self.id}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; re-raise its error."""
        self._done.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def run(self) -> Any:
        """Run the job in the calling thread, keeping its catalog row current. A job cancelled
        before it started never runs (its claims are released by its own function's
        `finally`, so the function is entered with the cancel event set)."""
        if not _start(self.ctx, self.id):
            self.cancel_event.set()
        self.status = "running"
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(stop,), daemon=True)
        beat.start()
        context = JobContext(self.id, self.cancel_event, self.subscribers)
        try:
            self.result = self._fn(context)
            self.status = "succeeded"
            _finish(self.ctx, self.id, "succeeded", result=self.result, latest=self.latest)
        except Cancelled as exc:
            if self.lease_lost:  # its row is failed already by whoever took the claims over
                self.error, self.status = BlockvaultError(LEASE_LOST), "failed"
                with contextlib.suppress(Exception):  # unless the catalog is still away
                    _finish(self.ctx, self.id, "failed", error=LEASE_LOST, latest=self.latest)
            else:
                self.error, self.status = exc, "cancelled"
                _finish(
                    self.ctx, self.id, "cancelled", error="cancelled by user", latest=self.latest
                )
        except BlockvaultError as exc:
            self.error, self.status = exc, "failed"
            _finish(self.ctx, self.id, "failed", error=str(exc), latest=self.latest)
        except BaseException as exc:  # a bug: keep the job row honest, then re-raise
            self.error, self.status = exc, "failed"
            _finish(
                self.ctx, self.id, "failed", error=f"internal error: {exc!r}", latest=self.latest
            )
        finally:
            stop.set()
            self._done.set()
        return self.result

    def _heartbeat(self, stop: threading.Event) -> None:
        """Beat every second while the job runs. A beat that fails (a busy or unreachable
        catalog) is tried again; a job whose row another host failed (its lease ran out), or
        that could not beat for half the lease, stops at once: past the lease, another host
        may take its claims over, and nothing may write behind it (the job fences itself)."""
        lease = self.ctx.settings.job_lease_seconds
        last_beat = time.monotonic()
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                still_ours = _beat(self.ctx, self.id, self.latest, self.cancel_event)
            except Exception:  # any catalog error: the next beat tries again
                still_ours = None
            if still_ours:
                last_beat = time.monotonic()
            if still_ours is False or time.monotonic() - last_beat > lease / 2:
                self.lease_lost = True
                self.cancel_event.set()
                return


#: why a job stopped that lost its lease
LEASE_LOST = (
    "its lease ran out (no heartbeat reached the catalog): stopped, another host may own its "
    "claims now"
)


def _beat(ctx: Context, job_id: str, latest: ProgressEvent | None, cancel: threading.Event) -> bool:
    """One heartbeat, only while the job is active (compare-and-set): False if its row was
    failed or removed by another process; sets `cancel` when a user asked to cancel."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if latest is not None:
        values.update(
            phase=latest.phase,
            bytes_done=latest.bytes_done,
            bytes_total=latest.bytes_total,
            rate=latest.rate,
            eta=latest.eta,
        )
    with ctx.catalog.session() as session:
        updated = session.execute(
            sa.update(Job)
            .where(Job.id == job_id, Job.status.in_(JOB_ACTIVE))  # type: ignore[attr-defined]
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        if updated.rowcount != 1:
            return False
        if session.get(Job, job_id).status == "cancelling":
            cancel.set()
    return True


def _copy_progress(job: Job, event: ProgressEvent | None) -> None:
    if event is None:
        return
    job.phase = event.phase
    job.bytes_done = event.bytes_done
    job.bytes_total = event.bytes_total
    job.rate = event.rate
    job.eta = event.eta


def new_job(
    ctx: Context,
    session: Session,
    kind: str,
    *,
    target_kind: str,
    target_id: str,
    target_name: str,
    disk_id: str | None,
    source_id: str | None = None,
) -> Job:
    """Add a queued job row to the caller's claiming transaction (committed with the claims);
    inside `handed_over`, fill in the service's claimed row instead."""
    handed = _HANDED.get()
    if handed is not None:
        _HANDED.set(None)  # one executor, one job
        return _fill_handed(
            ctx, session, handed, kind, target_kind, target_id, target_name, disk_id, source_id
        )
    job = Job(
        id=unique_id(session, Job, "job"),
        kind=kind,
        target_kind=target_kind,
        target_id=target_id,
        target_name=target_name,
        disk_id=disk_id,
        source_id=source_id,
        actor=ctx.actor,
        pid=os.getpid(),
        host=ctx.host,
        heartbeat_at=utcnow(),
    )
    session.add(job)
    record(session, ctx, f"job.{kind}.queued", kind="job", object_id=job.id, name=target_name)
    session.flush()
    return job


def _fill_handed(
    ctx: Context,
    session: Session,
    job_id: str,
    kind: str,
    target_kind: str,
    target_id: str,
    target_name: str,
    disk_id: str | None,
    source_id: str | None,
) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.status not in ("running", "cancelling"):
        raise Cancelled(f"job {job_id} was cancelled before it started")
    job.kind, job.target_kind, job.target_id = kind, target_kind, target_id
    job.target_name, job.disk_id, job.source_id = target_name, disk_id, source_id
    job.heartbeat_at = utcnow()
    session.add(job)
    record(session, ctx, f"job.{kind}.started", kind="job", object_id=job.id, name=target_name)
    session.flush()
    return job


def create_job(
    ctx: Context,
    kind: str,
    *,
    target_kind: str,
    target_id: str,
    target_name: str,
    disk_id: str | None,
    fn: Callable[[JobContext], Any],
    source_id: str | None = None,
) -> JobHandle:
    """A job that claims nothing (verify, gc): its own transaction, handle not started;
    `source_id` names the backup it reads (which may not be deleted under it)."""
    with ctx.catalog.writer() as session:
        job = new_job(
            ctx,
            session,
            kind,
            target_kind=target_kind,
            target_id=target_id,
            target_name=target_name,
            disk_id=disk_id,
            source_id=source_id,
        )
        session.commit()
    return JobHandle(ctx, job, fn)


def _start(ctx: Context, job_id: str) -> bool:
    """queued -> running, checked against the job's status machine; False if it was
    cancelled (or is being cancelled) before it started."""
    with ctx.catalog.writer() as session:
        job = session.get(Job, job_id)
        if job.status == "running" and job.request is not None and _ours(ctx, job):
            return True  # handed to this service, which claimed it queued -> running
        if job.status != "queued":
            return False
        check_transition("job", job_id, current=job.status, new="running")
        job.status = "running"
        job.started_at = job.heartbeat_at = utcnow()
        session.add(job)
        session.commit()
        return True


def _ours(ctx: Context, job: Job) -> bool:
    return job.host == ctx.host and job.pid == os.getpid()


def _finish(
    ctx: Context,
    job_id: str,
    status: str,
    *,
    result: Any = None,
    error: str | None = None,
    latest: ProgressEvent | None = None,
) -> None:
    with ctx.catalog.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.status not in JOB_ACTIVE:
            return  # failed already by a host that took its claims over: that stays true
        job.status = status
        job.error = error
        job.finished_at = utcnow()
        _copy_progress(job, latest)
        if result is not None:
            job.result = json.dumps(result, default=str)
        session.add(job)
        record(
            session,
            ctx,
            f"job.{job.kind}.{status}",
            kind="job",
            object_id=job.id,
            name=job.target_name,
            detail=error or "",
        )
        session.commit()
        failed = {"job_id": job.id, "job_kind": job.kind, "disk_id": job.disk_id}
        target = (job.target_kind, job.target_id, job.target_name)
    if status == "failed" and failed["job_kind"] != "drill":  # a drill alerts drill.failed
        kind, object_id, name = target
        alert(
            ctx,
            "job.failed",
            kind=kind or "job",
            object_id=object_id or job_id,
            name=name,
            detail=error or "",
            data=failed,
            recorded=True,
        )


def job_is_stale(job: Job, now: float | None = None, *, lease: float = STALE_SECONDS) -> bool:
    """A job whose process is gone (same host) or whose heartbeat stopped `lease` seconds
    ago (any host: a host that vanished cannot say so). A job handed to the service and
    still queued waits for a service, not for whoever asked."""
    if job.status == "queued" and job.request is not None:
        return False
    if job.host == host_id():
        if not pid_alive(job.pid):
            return True
        lease *= 10  # alive here: it fences itself, so only a pid taken over by another
        # process (after a reboot) leaves a live pid with a long silent heartbeat
    beat = job.heartbeat_at or job.created_at
    now = now or time.time()
    stamp = (beat if beat.tzinfo else beat.replace(tzinfo=UTC)).timestamp()
    return now - stamp > lease
