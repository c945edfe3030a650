"""Jobs handed to the service: the queued request row, the service's claim of it, following it
from another process, and the service's own heartbeat.

The CLI's `--background` inserts a job row as `queued` with a `request` (the verb, its
arguments and the plan the user confirmed) and follows the row; a service claims it with one
compare-and-set UPDATE (queued -> running, with its own host and pid), so two services never
run one request, then runs the verb inside `runner.handed_over` (the executor fills in this
row). `job cancel` works as for any job: a queued request becomes `cancelled` and no service
takes it; a running one `cancelling`, which the job's heartbeat in the service notices.

A running service writes a `meta` row `service:<host>:<pid>` (JSON: host, pid, started, last
beat, jobs running) every few seconds and deletes it when it stops; a service is running for
this catalog while such a row is fresh (and, on this host, its process is alive).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from core.base.errors import BlockvaultError, Cancelled
from core.base.host import pid_alive
from core.base.progress import ProgressEvent, Subscriber
from core.catalog.context import Context, record
from core.catalog.models import Job, Meta, iso, utcnow
from core.catalog.names import unique_id
from core.rules.states import JOB_ACTIVE

SERVICE_KEY = "service:"
SERVICE_BEAT_SECONDS = 2.0
#: a service whose row is older than this is gone (it beats every SERVICE_BEAT_SECONDS)
SERVICE_STALE_SECONDS = 30.0
FOLLOW_POLL_SECONDS = 0.5
#: how often a follower of a still-queued request checks that a service is running
FOLLOW_SERVICE_CHECK_SECONDS = 5.0
NO_SERVICE = (
    "no blockvault service is running for this catalog: start it with `blockvault service` "
    "or `systemctl start blockvault`"
)


# --- the service's heartbeat ----------------------------------------------------------------


def service_key(ctx: Context) -> str:
    return f"{SERVICE_KEY}{ctx.host}:{os.getpid()}"


def beat(ctx: Context, *, started: datetime, jobs: int, tick: float) -> None:
    """Record that this service is alive (its meta row, written in its own transaction)."""
    value = {
        "host": ctx.host,
        "pid": os.getpid(),
        "actor": ctx.actor,
        "started_at": iso(started),
        "beat_at": iso(utcnow()),
        "jobs": jobs,
        "tick": tick,
    }
    with ctx.catalog.session() as session:
        session.merge(Meta(key=service_key(ctx), value=json.dumps(value)))
        session.commit()


def clear_beat(ctx: Context) -> None:
    """This service stopped: its row goes, and rows of services of this host that died."""
    with ctx.catalog.session() as session:
        for row in session.exec(select(Meta).where(Meta.key.startswith(SERVICE_KEY))).all():  # type: ignore[attr-defined]
            info = _parse(row)
            if row.key == service_key(ctx) or (
                info is not None and info["host"] == ctx.host and not pid_alive(info["pid"])
            ):
                session.delete(row)
        session.commit()


def _parse(row: Meta) -> dict[str, Any] | None:
    try:
        info = json.loads(row.value)
        stamp = datetime.fromisoformat(info["beat_at"])
        int(info["pid"])
        str(info["host"])
    except (ValueError, TypeError, KeyError):
        return None
    return {**info, "beat": stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)}


def running_services(ctx: Context, *, now: float | None = None) -> list[dict[str, Any]]:
    """Services beating for this catalog now: a fresh row whose process (on this host) lives."""
    now = time.time() if now is None else now
    found = []
    with ctx.catalog.session() as session:
        rows = session.exec(select(Meta).where(Meta.key.startswith(SERVICE_KEY))).all()  # type: ignore[attr-defined]
    for row in rows:
        info = _parse(row)
        if info is None or now - info["beat"].timestamp() > SERVICE_STALE_SECONDS:
            continue
        if info["host"] == ctx.host and not pid_alive(int(info["pid"])):
            continue
        info.pop("beat")
        found.append(info)
    return sorted(found, key=lambda i: (i["host"], i["pid"]))


# --- requests -------------------------------------------------------------------------------


def queue_request(
    ctx: Context,
    kind: str,
    request: dict[str, Any],
    *,
    target_kind: str,
    target_id: str,
    target_name: str,
) -> Job:
    """A queued job row for the service: `request` holds the verb, its arguments and plan."""
    with ctx.catalog.writer() as session:
        job = Job(
            id=unique_id(session, Job, "job"),
            kind=kind,
            target_kind=target_kind,
            target_id=target_id,
            target_name=target_name,
            actor=ctx.actor,
            host=ctx.host,
            pid=None,
            phase="queued",
            request=json.dumps(request, default=str),
            heartbeat_at=utcnow(),
        )
        session.add(job)
        record(
            session,
            ctx,
            f"job.{kind}.handed",
            kind="job",
            object_id=job.id,
            name=target_name,
            detail="handed to the service (--background)",
        )
        session.commit()
        return job


def claim_request(ctx: Context) -> Job | None:
    """Take the oldest queued request of this host (its disks are here; another host's
    service would only be refused): queued -> running with this process as its owner, in
    one compare-and-set UPDATE (a request another service took first is skipped)."""
    with ctx.catalog.session() as session:
        candidates = session.exec(
            select(Job.id)
            .where(Job.status == "queued", Job.request.is_not(None), Job.host == ctx.host)  # type: ignore[union-attr]
            .order_by(Job.created_at)
        ).all()
    for job_id in candidates:
        now = utcnow()
        with ctx.catalog.session() as session:
            result = session.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(
                    status="running",
                    host=ctx.host,
                    pid=os.getpid(),
                    started_at=now,
                    heartbeat_at=now,
                    phase="starting",
                )
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if result.rowcount != 1:
                continue
            return session.get(Job, job_id)
    return None


def end_request(ctx: Context, job_id: str, error: str) -> str:
    """A request that never became a running job (its verb refused, or it was cancelled
    first): `cancelled` if someone asked for that, else `failed` with the one-line error."""
    with ctx.catalog.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.status not in JOB_ACTIVE:
            return job.status if job is not None else "gone"
        status = "cancelled" if job.status == "cancelling" else "failed"
        job.status, job.finished_at = status, utcnow()
        job.error = "cancelled by user" if status == "cancelled" else error
        session.add(job)
        record(
            session,
            ctx,
            f"job.{job.kind}.{status}",
            kind="job",
            object_id=job.id,
            name=job.target_name,
            detail=job.error,
        )
        session.commit()
        return status


def cancel_process_jobs(ctx: Context) -> int:
    """Ask every running job of this process to stop (their heartbeats notice it)."""
    with ctx.catalog.session() as session:
        result = session.execute(
            sa.update(Job)
            .where(Job.host == ctx.host, Job.pid == os.getpid(), Job.status == "running")
            .values(status="cancelling")
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return result.rowcount or 0


def request_of(job: Job) -> dict[str, Any]:
    try:
        data = json.loads(job.request or "")
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("verb"), str):
        raise BlockvaultError(f"job {job.id} carries no readable request")
    return data


# --- following a job from another process ---------------------------------------------------


class FollowedJob:
    """A job that runs elsewhere (the service), followed through its row: progress events to
    subscribers as the row changes, then its result or error. Like `JobHandle`, without
    owning the job: leaving the follower does not stop it."""

    def __init__(self, ctx: Context, job_id: str) -> None:
        self.ctx = ctx
        self.id = job_id
        self.subscribers: list[Subscriber] = []
        self.status = "queued"
        self.result: Any = None
        self.error: BaseException | None = None
        self._seen: tuple | None = None
        self._done = False
        self._checked = time.monotonic()

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    @property
    def done(self) -> bool:
        return self._done

    def wait(self, timeout: float | None = None) -> Any:
        """Poll the row until the job ends (or `timeout` passes); re-raise its error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            left = FOLLOW_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(FOLLOW_POLL_SECONDS, left))
        if self.error is not None:
            raise self.error
        return self.result

    def poll(self) -> bool:
        """Read the row once; emit a progress event if it moved. True once the job ended."""
        if self._done:
            return True
        with self.ctx.catalog.session() as session:
            job = session.get(Job, self.id)
            if job is None:
                self._end(None, BlockvaultError(f"job {self.id} is gone from the catalog"))
                return True
            session.expunge(job)
        self.status = job.status
        if job.status == "queued":
            self._check_service(job)
        ended = job.status not in JOB_ACTIVE
        state = (job.status, job.phase, job.bytes_done, job.bytes_total)
        if state != self._seen or ended:
            self._seen = state
            self._emit(job, final=ended)
        if ended:
            if job.status == "succeeded":
                self._end(json.loads(job.result) if job.result else {}, None)
            elif job.status == "cancelled":
                self._end(None, Cancelled("cancelled"))
            else:
                self._end(None, BlockvaultError(job.error or f"job {job.id} {job.status}"))
        return self._done

    def _end(self, result: Any, error: BaseException | None) -> None:
        self.result, self.error, self._done = result, error, True

    def _emit(self, job: Job, *, final: bool) -> None:
        event = ProgressEvent(
            job_id=job.id,
            phase=job.phase or job.status,
            bytes_done=job.bytes_done,
            bytes_total=job.bytes_total,
            rate=job.rate,
            eta=0.0 if final else job.eta,
            message="waiting for the service" if job.status == "queued" else "",
            final=final,
        )
        for subscriber in list(self.subscribers):
            subscriber(event)

    def _check_service(self, job: Job) -> None:
        """A request still queued when no service runs any more is withdrawn (nothing ran),
        unless a service takes it at that moment."""
        if time.monotonic() - self._checked < FOLLOW_SERVICE_CHECK_SECONDS:
            return
        self._checked = time.monotonic()
        if any(s["host"] == job.host for s in running_services(self.ctx)):
            return  # only a service of the job's own host takes it
        with self.ctx.catalog.session() as session:
            result = session.execute(
                sa.update(Job)
                .where(Job.id == job.id, Job.status == "queued")
                .values(
                    status="failed",
                    finished_at=utcnow(),
                    error="withdrawn: no blockvault service took it; nothing ran",
                )
                .execution_options(synchronize_session=False)
            )
            session.commit()
        if result.rowcount == 1:
            self._end(None, BlockvaultError(f"{NO_SERVICE} (job {job.id} withdrawn, nothing ran)"))
