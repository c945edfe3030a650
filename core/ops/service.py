"""The service (`blockvault service`): what runs automatically, in the foreground for systemd.

Every tick (5 s by default) it takes, while it has room for `service_jobs` jobs at a time:

1. jobs handed to it with `--background` (core/jobs/handoff.py: claimed queued -> running in
   one compare-and-set UPDATE, run as the same job row);
2. due policies: `policies.run_policy` claims the slot in `policy_slots` (the first claimer
   wins, so two services on one catalog never run one slot), backs up each disk, applies
   retention;
3. restore drills, through `drills_hook` (core/ops/drills.py `run_due_drills`, once that
   module exists);
4. GC windows: config `gc_window` (a schedule) garbage-collects each vault in its window,
   the slot claimed in `policy_slots` as `gc:<vault id>`, kind `gc`;

and, in its own thread, overdue alerts (`overdue_alerts_hook`: core/ops/protection.py
`raise_overdue_alerts`, once it exists) and the cleanup of dead processes' jobs (`reconcile`),
every minute or so. Each job runs in a worker thread with its own catalog sessions.

`stop()` (SIGTERM, SIGINT) stops taking work, cancels the running jobs (they end `cancelled`:
a cancelled backup leaves no row and no manifest), waits for them, and `run` returns 0. The
service beats in the catalog (`handoff.beat`) so `--background` can tell one is running.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import select

from core.base.errors import BlockvaultError, Conflict, UserError
from core.catalog.context import Context, resolve
from core.catalog.models import Backup, Disk, Job, PolicySlot, VaultRecord, iso, utcnow
from core.jobs import handoff
from core.jobs.runner import JobHandle, handed_over
from core.ops import backups, housekeeping, policies, protection, restores, vaults
from core.rules.plans import Plan
from core.rules.schedules import Schedule, due_slot, parse_schedule

try:  # restore drills: core/ops/drills.py, written alongside; until it exists, no drills run
    from core.ops import drills as _drills
except ModuleNotFoundError as _missing:
    if _missing.name != "core.ops.drills":
        raise
    _drills = None

Log = Callable[[str, str], None]  # (level "info" | "error", one line)

DEFAULT_TICK = 5.0
HOUSEKEEPING_SECONDS = 60.0  # reconcile dead processes' jobs, raise overdue alerts


def drills_hook() -> Callable[..., Any] | None:
    """`run_due_drills(ctx, now, on_job=)` of core/ops/drills.py, or None while it does not
    exist."""
    return getattr(_drills, "run_due_drills", None)


def overdue_alerts_hook() -> Callable[..., Any] | None:
    """`raise_overdue_alerts(ctx, now=)` of core/ops/protection.py, or None until it exists."""
    return getattr(protection, "raise_overdue_alerts", None)


# --- jobs handed to the service (--background) ----------------------------------------------


@dataclass(frozen=True)
class Verb:
    """A verb the CLI can hand over: its job kind, what it acts on, how it starts."""

    kind: str
    #: (ctx, arguments) -> (target kind, id, name), filling in defaults (the vault) in place
    target: Callable[[Context, dict[str, Any]], tuple[str, str, str]]
    start: Callable[[Context, dict[str, Any], Plan | None], JobHandle]


def _text(arguments: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = arguments.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise UserError(f"request argument {key!r} must be a name")
    return value


def _number(arguments: dict[str, Any], key: str) -> float | None:
    value = arguments.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise UserError(f"request argument {key!r} must be a number")
    return value


def _rate(arguments: dict[str, Any], key: str) -> int | None:
    """A bandwidth limit in bytes per second (0: none; absent: config.toml's)."""
    value = _number(arguments, key)
    if value is not None and (value < 0 or value != int(value)):
        raise UserError(f"request argument {key!r} must be a whole number of bytes per second")
    return None if value is None else int(value)


def _disk_target(ctx: Context, arguments: dict[str, Any]) -> tuple[str, str, str]:
    arguments["vault"] = vaults.get_vault(ctx, _text(arguments, "vault")).id
    with ctx.catalog.session() as session:
        disk = resolve(session, Disk, _text(arguments, "disk", required=True), kind="disk")
    return "disk", disk.id, disk.name


def _backup_target(ctx: Context, arguments: dict[str, Any]) -> tuple[str, str, str]:
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, _text(arguments, "backup", required=True), kind="backup")
    return "backup", backup.id, backup.name


def _vault_target(ctx: Context, arguments: dict[str, Any]) -> tuple[str, str, str]:
    vault = vaults.get_vault(ctx, _text(arguments, "vault"))
    arguments["vault"] = vault.id
    return "vault", vault.id, vault.name


VERBS: dict[str, Verb] = {
    "backup": Verb(
        "backup",
        _disk_target,
        lambda ctx, a, plan: backups.start_backup(
            ctx,
            _text(a, "disk", required=True),
            vault_ref=_text(a, "vault"),
            name=_text(a, "name"),
            plan=plan,
            limit_upload=_rate(a, "limit_upload"),
        ),
    ),
    "restore": Verb(
        "restore",
        _backup_target,
        lambda ctx, a, plan: restores.start_restore(
            ctx,
            _text(a, "backup", required=True),
            to_original=bool(a.get("to_original")),
            new_name=_text(a, "new_name"),
            new_size=None if a.get("new_size") is None else int(_number(a, "new_size") or 0),
            force=bool(a.get("force")),
            plan=plan,
            limit_download=_rate(a, "limit_download"),
        ),
    ),
    "verify": Verb(
        "verify",
        _backup_target,
        lambda ctx, a, plan: backups.start_verify(
            ctx,
            _text(a, "backup", required=True),
            limit_download=_rate(a, "limit_download"),
        ),
    ),
    "gc": Verb(
        "gc",
        _vault_target,
        lambda ctx, a, plan: vaults.start_gc(
            ctx, _text(a, "vault"), grace_seconds=_number(a, "grace_seconds")
        ),
    ),
    "check": Verb(
        "check",
        _vault_target,
        lambda ctx, a, plan: vaults.start_check(
            ctx, _text(a, "vault"), read_fraction=float(_number(a, "read_fraction") or 0.0)
        ),
    ),
}


def submit(ctx: Context, verb: str, arguments: dict[str, Any], *, plan: Plan | None = None) -> Job:
    """Hand a job to the service: a queued row with the verb, its arguments and the plan the
    user confirmed (the service's executor checks it again, as the foreground one does)."""
    if verb not in VERBS:
        raise UserError(f"{verb} cannot run in the background")
    if plan is not None and not plan.allowed:
        raise Conflict(plan.refusal or "refused")
    if not any(s["host"] == ctx.host for s in handoff.running_services(ctx)):
        raise UserError(handoff.NO_SERVICE)  # another host's service never takes our jobs
    arguments = dict(arguments)
    target_kind, target_id, target_name = VERBS[verb].target(ctx, arguments)
    request = {
        "verb": verb,
        "arguments": arguments,
        "plan": plan.to_dict() if plan is not None else None,
    }
    return handoff.queue_request(
        ctx,
        VERBS[verb].kind,
        request,
        target_kind=target_kind,
        target_id=target_id,
        target_name=target_name,
    )


def run_request(ctx: Context, job: Job, *, track: Callable[[JobHandle], None]) -> tuple[str, str]:
    """Run a claimed request as its own job row; (status, one-line detail)."""
    try:
        request = handoff.request_of(job)
        verb = VERBS.get(request["verb"])
        if verb is None:
            raise UserError(f"{request['verb']!r} cannot run in the background")
        arguments = request.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise UserError("the request's arguments are not readable")
        plan = Plan.from_dict(request["plan"]) if request.get("plan") else None
        with handed_over(job.id):
            handle = verb.start(ctx, arguments, plan)
    except BlockvaultError as exc:
        return handoff.end_request(ctx, job.id, str(exc)), str(exc)
    except (TypeError, ValueError, KeyError) as exc:  # a request that is not well formed
        error = f"the request is not readable: {exc}"
        return handoff.end_request(ctx, job.id, error), error
    track(handle)
    result = handle.run()
    if handle.error is not None:
        return handle.status, str(handle.error)
    summary = result.get("summary", "") if isinstance(result, dict) else ""
    return handle.status, summary


# --- GC windows -----------------------------------------------------------------------------


def gc_owner(vault: VaultRecord) -> str:
    """The `policy_slots.policy_id` a vault's GC window claims its slots under."""
    return f"gc:{vault.id}"


def _claim(ctx: Context, owner: str, slot: datetime, kind: str) -> bool:
    """Insert the slot's row; the primary key decides between two services (False: taken)."""
    with ctx.catalog.writer() as session:
        if session.get(PolicySlot, (owner, slot, kind)) is not None:
            return False
        session.add(PolicySlot(policy_id=owner, slot_at=slot, kind=kind, host=ctx.host))
        try:
            session.commit()
        except sa.exc.IntegrityError:
            return False
    return True


def _finish(ctx: Context, owner: str, slot: datetime, kind: str, status: str, detail: str) -> None:
    with ctx.catalog.writer() as session:
        row = session.get(PolicySlot, (owner, slot, kind))
        if row is not None:
            row.status, row.detail, row.finished_at = status, detail[:500], utcnow()
            session.add(row)
            session.commit()


def due_gc(ctx: Context, window: Schedule, *, now: datetime) -> list[tuple[VaultRecord, datetime]]:
    """Vaults whose GC window has a slot since their last claimed one (or since the vault was
    added), each with that slot."""
    tz = policies.zone(ctx)
    found = []
    with ctx.catalog.session() as session:
        for vault in session.exec(select(VaultRecord).where(VaultRecord.status == "available")):
            last = session.exec(
                select(PolicySlot)
                .where(PolicySlot.policy_id == gc_owner(vault), PolicySlot.kind == "gc")
                .order_by(PolicySlot.slot_at.desc())  # type: ignore[attr-defined]
            ).first()
            since = last.slot_at if last is not None else vault.created_at
            slot = due_slot(window, since=since, now=now, tz=tz)
            if slot is not None:
                found.append((vault, slot))
    return found


def gc_window(ctx: Context) -> Schedule | None:
    """config.toml's `gc_window`, read like a policy's schedule (None: no GC windows)."""
    text = ctx.settings.gc_window.strip()
    if not text:
        return None
    try:
        return parse_schedule(text)
    except UserError as exc:
        raise UserError(f"{ctx.locations.config_file}: setting gc_window: {exc}") from None


# --- the service ----------------------------------------------------------------------------


def _shown_url(url: str) -> str:
    """A catalog URL as logged: without its password."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def _plain_log(level: str, line: str) -> None:
    stream = sys.stderr if level == "error" else sys.stdout
    stream.write(line + "\n")
    stream.flush()


class Service:
    """One service process: `run()` until `stop()`; `run(once=True)` does one round."""

    def __init__(self, ctx: Context, *, tick: float = DEFAULT_TICK, log: Log | None = None):
        if ctx.catalog.read_only:
            raise UserError("the service runs backups: not with --read-only")
        self.ctx = ctx
        self.tick_seconds = tick
        self.log = log or _plain_log
        self.capacity = ctx.settings.service_jobs
        self.gc_window = gc_window(ctx)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._busy: dict[str, Future] = {}
        self._handles: set[JobHandle] = set()
        self._outcomes: list[dict[str, Any]] | None = None  # collected by `run(once=True)`
        self._pool = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="service")
        self._started = utcnow()
        self._beat_stop = threading.Event()
        # `Blockvault.open` has just reconciled; overdue alerts wait one period, so the slots
        # missed while no service ran get their chance first
        self._housekeeping_at = time.monotonic()

    # --- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking work; `run` then cancels the running jobs and waits for them. Safe in
        a signal handler: it only sets an event."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, once: bool = False) -> int:
        """Serve until stopped (0), or with `once` do one round and wait for it: the exit
        code of `policy run` (0 all due backups succeeded, 3 some failed, 1 none could run)."""
        handoff.beat(self.ctx, started=self._started, jobs=0, tick=self.tick_seconds)
        beating = threading.Thread(target=self._beating, name="service-beat", daemon=True)
        beating.start()
        where = _shown_url(self.ctx.catalog.url)
        gc_text = f", gc window {self.gc_window.describe()}" if self.gc_window else ""
        self.log(
            "info",
            f"started: blockvault service on {self.ctx.host} (pid {os.getpid()}), catalog "
            f"{where}, up to {self.capacity} job(s) at a time, tick {self.tick_seconds:g} s"
            f"{gc_text}",
        )
        try:
            if once:
                self._outcomes = []
                self._once()
            else:
                while not self._stop.is_set():
                    self._guarded("tick", self.tick)
                    self._stop.wait(self.tick_seconds)
        finally:
            self._shutdown()
            self._beat_stop.set()
            beating.join()
            self._guarded("heartbeat", lambda: handoff.clear_beat(self.ctx))
            self.log("info", "stopped")
        return policies.exit_code(self._outcomes) if once and self._outcomes is not None else 0

    def _once(self) -> None:
        """Everything due now, within `service_jobs` at a time; then the overdue alerts."""
        now = utcnow()
        first = True
        while not self._stop.is_set():
            started = self._guarded(
                "tick", partial(self.tick, now, housekeeping=False, first=first)
            )
            first = False
            if not started and not self._busy:
                self._housekeeping(utcnow(), force=True)
                return
            self._stop.wait(0.1)

    def _shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            running = len(self._busy)
            handles = list(self._handles)
        if running:
            self.log("info", f"stopping: cancelling {running} running job(s)")
            for handle in handles:
                handle.cancel()
            # jobs of this process the service holds no handle of (a drill's restore)
            self._guarded("stopping", lambda: handoff.cancel_process_jobs(self.ctx))
        else:
            self.log("info", "stopping")
        self._pool.shutdown(wait=True)

    def _beating(self) -> None:
        failed = False
        while not self._beat_stop.wait(handoff.SERVICE_BEAT_SECONDS):
            try:
                with self._lock:
                    jobs = len(self._busy)
                handoff.beat(self.ctx, started=self._started, jobs=jobs, tick=self.tick_seconds)
                failed = False
            except Exception as exc:  # a busy catalog: the next beat tries again
                if not failed:
                    self.log("error", f"heartbeat not written: {exc}")
                failed = True

    def _guarded(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run `fn`; an error is logged in one line, never the end of the service."""
        try:
            return fn()
        except BlockvaultError as exc:
            self.log("error", f"{what} failed: {exc}")
        except Exception as exc:  # a bug or a catalog error: the service keeps serving
            self.log("error", f"{what} failed: internal error: {type(exc).__name__}: {exc}")
        return None

    # --- one tick ----------------------------------------------------------------------

    def tick(
        self, now: datetime | None = None, *, housekeeping: bool = True, first: bool = True
    ) -> int:
        """Take what is due now while there is room; the number of jobs started."""
        now = now or utcnow()
        started = 0
        for take in (self._take_requests, self._take_policies, self._take_gc):
            if self.stopping:
                break
            started += take(now)
        if first and not self.stopping:
            started += self._take_drills(now)
        if housekeeping and not self.stopping:
            self._housekeeping(now)
        return started

    def _free(self) -> int:
        with self._lock:
            return self.capacity - len(self._busy)

    def _submit(self, key: str, fn: Callable[..., Any], *args: Any) -> bool:
        with self._lock:
            if key in self._busy or len(self._busy) >= self.capacity or self.stopping:
                return False
            self._busy[key] = self._pool.submit(self._work, key, fn, *args)
        return True

    def _work(self, key: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._guarded(key, lambda: fn(*args))
        finally:
            with self._lock:
                self._busy.pop(key, None)

    def _track(self, handle: JobHandle) -> None:
        with self._lock:
            self._handles.add(handle)
        if self.stopping:
            handle.cancel()  # it still runs, and ends cancelled with its claims released

    def _untrack(self, handles: list[JobHandle]) -> None:
        with self._lock:
            self._handles.difference_update(handles)

    def _housekeeping(self, now: datetime, *, force: bool = False) -> None:
        moment = time.monotonic()
        if not force and moment - self._housekeeping_at < HOUSEKEEPING_SECONDS:
            return
        self._housekeeping_at = moment
        self._guarded("reconcile", lambda: housekeeping.reconcile(self.ctx))
        hook = overdue_alerts_hook()
        if hook is not None:
            for event in self._guarded("overdue alerts", lambda: hook(self.ctx, now=now)) or []:
                if isinstance(event, dict):
                    self.log(
                        "error",
                        f"alert {event.get('action')}: {event.get('object_kind')} "
                        f"{event.get('object_name')} {event.get('detail') or ''}".rstrip(),
                    )

    # --- requests --------------------------------------------------------------------

    def _take_requests(self, now: datetime) -> int:
        started = 0
        while self._free() > 0 and not self.stopping:
            job = handoff.claim_request(self.ctx)
            if job is None:
                break
            if not self._submit(f"request:{job.id}", self._run_request, job):
                handoff.end_request(self.ctx, job.id, "the service is stopping")
                break
            started += 1
        return started

    def _run_request(self, job: Job) -> None:
        self.log(
            "info", f"job started: {job.id} {job.kind} {job.target_name} (asked by {job.actor})"
        )
        handles: list[JobHandle] = []

        def track(handle: JobHandle) -> None:
            handles.append(handle)
            self._track(handle)

        try:
            status, detail = run_request(self.ctx, job, track=track)
        finally:
            self._untrack(handles)
        said = f": {detail}" if detail else ""
        level = "info" if status == "succeeded" else "error"
        self.log(level, f"job {status}: {job.id} {job.kind} {job.target_name}{said}")

    # --- policies ----------------------------------------------------------------------

    def _take_policies(self, now: datetime) -> int:
        started = 0
        for policy, disks, slot in policies.due_policies(self.ctx, now=now):
            if self._free() <= 0 or self.stopping:
                break
            if self._submit(f"policy:{policy.id}", self._run_policy, policy, disks, slot):
                started += 1
        return started

    def _run_policy(self, policy: Any, disks: list[Disk], slot: datetime) -> None:
        handles: list[JobHandle] = []

        def on_backup(handle: JobHandle) -> None:
            if not handles:  # run_policy claimed the slot before its first backup
                self._claimed(policy, disks, slot)
            handles.append(handle)
            self._track(handle)

        try:
            outcomes = policies.run_policy(self.ctx, policy, disks, slot, on_backup=on_backup)
        finally:
            self._untrack(handles)
        if not disks and outcomes:
            self._claimed(policy, disks, slot)
        self._report(policy.name, iso(slot), outcomes)

    def _claimed(self, policy: Any, disks: list[Disk], slot: datetime) -> None:
        names = ", ".join(d.name for d in disks) or "no disks"
        self.log("info", f"slot claimed: policy {policy.name} slot {iso(slot)} ({names})")

    def _report(self, policy: str, slot: str | None, outcomes: list[dict[str, Any]]) -> None:
        if self._outcomes is not None:
            with self._lock:
                self._outcomes += outcomes
        expired = 0
        for outcome in outcomes:
            if "disk" in outcome:
                if outcome["status"] == "succeeded":
                    self.log(
                        "info",
                        f"backup done: policy {policy} slot {slot} disk {outcome['disk']} "
                        f"backup {outcome['backup']}",
                    )
                else:
                    self.log(
                        "error",
                        f"backup failed: policy {policy} slot {slot} disk {outcome['disk']}: "
                        f"{outcome['error']}",
                    )
            elif outcome["status"] == "expired":
                expired += 1
            else:
                self.log(
                    "error",
                    f"retention failed: policy {policy} backup {outcome.get('backup')}: "
                    f"{outcome.get('error')}",
                )
        if expired:
            self.log("info", f"retention expired {expired} backup(s) of policy {policy}")

    # --- restore drills --------------------------------------------------------------------

    def _take_drills(self, now: datetime) -> int:
        hook = drills_hook()
        if hook is None:
            return 0
        return 1 if self._submit("drills", self._run_drills, hook, now) else 0

    def _run_drills(self, hook: Callable[..., Any], now: datetime) -> None:
        handles: list[JobHandle] = []

        def on_job(handle: JobHandle) -> None:
            handles.append(handle)
            self._track(handle)

        try:
            outcomes = hook(self.ctx, now=now, on_job=on_job)
        finally:
            self._untrack(handles)
        for outcome in outcomes or []:
            if not isinstance(outcome, dict):
                continue
            status = str(outcome.get("status", "done"))
            said = ", ".join(
                f"{key} {outcome[key]}"
                for key in ("policy", "disk", "backup", "seconds", "error", "detail")
                if outcome.get(key) not in (None, "")
            )
            level = "error" if status in ("failed", "cancelled") else "info"
            self.log(level, f"drill {status}: {said}")

    # --- GC windows ----------------------------------------------------------------------

    def _take_gc(self, now: datetime) -> int:
        if self.gc_window is None:
            return 0
        started = 0
        for vault, slot in due_gc(self.ctx, self.gc_window, now=now):
            if self._free() <= 0 or self.stopping:
                break
            if self._submit(gc_owner(vault), self._run_gc, vault, slot):
                started += 1
        return started

    def _run_gc(self, vault: VaultRecord, slot: datetime) -> None:
        owner = gc_owner(vault)
        stamp = slot.astimezone(UTC)
        if not _claim(self.ctx, owner, stamp, "gc"):
            return
        self.log("info", f"slot claimed: gc window of vault {vault.name} slot {iso(stamp)}")
        handles: list[JobHandle] = []
        try:
            handle = vaults.start_gc(self.ctx, vault.id)
            handles.append(handle)
            self._track(handle)
            result = handle.run()
            if handle.error is not None:
                raise handle.error
        except BlockvaultError as exc:
            _finish(self.ctx, owner, stamp, "gc", "failed", str(exc))
            self.log("error", f"gc failed: vault {vault.name}: {exc}")
            return
        finally:
            self._untrack(handles)
        freed = result.get("deleted_bytes", 0)
        detail = f"deleted {result.get('deleted_chunks', 0)} chunk(s), {freed} bytes"
        _finish(self.ctx, owner, stamp, "gc", "succeeded", detail)
        self.log("info", f"gc done: vault {vault.name}: {detail}")


# --- systemd ----------------------------------------------------------------------------------

UNIT_NAME = "blockvault.service"


def blockvault_command() -> list[str]:
    """How this process was started, as an absolute command for ExecStart: the `blockvault`
    script that runs, else the one beside this Python, else `python -m tui.cli`."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and Path(argv0).name.startswith("blockvault") and not argv0.endswith(".py"):
        found = argv0 if os.sep in argv0 else shutil.which(argv0)
        if found and os.path.isfile(found):
            return [os.path.abspath(found)]
    sibling = Path(sys.executable).parent / "blockvault"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return [str(sibling)]
    return [os.path.abspath(sys.executable), "-m", "tui.cli"]


def _systemd_word(word: str) -> str:
    """One ExecStart word: `%` and `$` escaped, quoted when it holds spaces or quotes."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    escaped = escaped.replace("$", "$$")
    if not escaped or any(c in escaped for c in " \t\"';"):
        return f'"{escaped}"'
    return escaped


def unit_path(*, user: bool) -> Path:
    if not user:
        return Path("/etc/systemd/system") / UNIT_NAME
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user" / UNIT_NAME


def service_arguments(ctx: Context) -> list[str]:
    """The --home and --catalog in use (none when they are the defaults)."""
    args: list[str] = []
    where = ctx.locations
    if where.config_dir == where.data_dir:  # a home: flag or BLOCKVAULT_HOME
        args += ["--home", str(where.data_dir)]
    if ctx.catalog.url != f"sqlite:///{where.catalog_file}":
        args += ["--catalog", ctx.catalog.url]
    return args


def unit(ctx: Context, *, user: bool) -> dict[str, Any]:
    """The unit file (text, path) and how to enable it."""
    command = [*blockvault_command(), *service_arguments(ctx), "service"]
    text = "\n".join(
        [
            "# written by `blockvault service install`; see docs/operations.md",
            "[Unit]",
            "Description=blockvault service: scheduled backups, retention, drills, background jobs",
            "Wants=network-online.target",
            "After=network-online.target local-fs.target",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={' '.join(_systemd_word(w) for w in command)}",
            "Restart=on-failure",
            "RestartSec=10s",
            # SIGTERM to the service alone: it cancels its jobs and waits for them
            "KillSignal=SIGTERM",
            "KillMode=mixed",
            "TimeoutStopSec=15min",
            "Environment=PYTHONUNBUFFERED=1",
            "# encrypted vaults: BLOCKVAULT_PASSPHRASE=... in a file only its owner reads",
            "#EnvironmentFile=/etc/blockvault/environment",
            "",
            "[Install]",
            f"WantedBy={'default.target' if user else 'multi-user.target'}",
            "",
        ]
    )
    ctl = "systemctl --user" if user else "systemctl"
    enable = [f"{ctl} daemon-reload && {ctl} enable --now blockvault"]
    if user:
        enable.append("loginctl enable-linger $USER   # keep it running without a login")
    enable.append(f"journalctl {'--user ' if user else ''}-u blockvault -f   # its log")
    return {
        "path": str(unit_path(user=user)),
        "text": text,
        "enable": enable,
        "secret": bool(urlsplit(ctx.catalog.url).password),
    }


def install_unit(ctx: Context, *, user: bool) -> dict[str, Any]:
    """Write the unit file; its text, path and the commands that enable it."""
    made = unit(ctx, user=user)
    path = Path(made["path"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(made["text"])
        path.chmod(0o600 if made["secret"] else 0o644)  # a catalog URL with a password
    except OSError as exc:
        hint = "run it as root, or pass --user or --print" if not user else "or pass --print"
        raise UserError(f"cannot write {path}: {exc.strerror}; {hint}") from None
    return made
