"""Restore drills: prove that a backup restores, and measure how long it takes (the RTO).

A drill restores a backup into scratch space — a sparse file in the pool's scratch area,
`<pool>/.scratch/drill-<job id>.scratch`, made 0600 — with the restore's own checks (every
chunk against its id, then the whole-disk digest), and when the image starts with an ext2/3/4
or XFS filesystem it runs the read-only check (`e2fsck -fn`, `xfs_repair -n -f`) on that
copy. It records a `Drill` row (status, filesystem, seconds the restore took, detail) and
removes the scratch file on every exit path. A failed drill raises `drill.failed`.

What a drill touches: only the backup (read, like a restore to a new disk: the job names it
as its `source_id`, so it cannot be deleted meanwhile, and a backup that is not `available`
is refused) and its own scratch file. It never opens the original disk, holds no claim on it,
and works for backups of deleted disks. A drill's id is its job's id; the scratch file is
named after it, so `sweep_scratch` (run by `reconcile` and before each drill) removes files
and closes rows left by a drill whose job is no longer alive. The suffix is not `.img` and the
folder is hidden: nothing left there is taken for a disk.

Scheduled drills: `run_due_drills(ctx, now)` is what the service calls each tick.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.base.errors import BlockvaultError, Cancelled, Conflict, NotFound, UserError
from core.base.times import as_utc
from core.catalog.context import Context, record, resolve
from core.catalog.models import Backup, Disk, Drill, Job, Policy, VaultRecord, iso
from core.engine import pipeline
from core.engine.backup_view import SHOWN_FILESYSTEMS, ext_needs_recovery, filesystem_in
from core.jobs.alerts import alert
from core.jobs.runner import JobContext, JobHandle, job_is_stale, new_job
from core.ops import bandwidth
from core.ops.policies import claim_slot, finish_slot, next_due_slot, targets_of, zone
from core.ops.vaults import open_repository
from core.rules.states import JOB_ACTIVE

_SCRATCH_NAME = re.compile(r"^drill-(job-[0-9a-f]{6,12})\.")
#: where filesystem checkers live when they are not on an ordinary user's PATH
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
#: free space kept beyond what a drill's image needs
_SPACE_MARGIN = 64 << 20
_DETAIL_MAX = 500


class DrillFailed(BlockvaultError):
    """A drill found the backup unrestorable or its filesystem damaged (exit 1)."""


def scratch_dir(ctx: Context) -> Path:
    """The pool's scratch area: drills restore here, nothing else lives here."""
    return ctx.locations.scratch_dir


# --- leftovers ---------------------------------------------------------------------------


def _alive(job: Job | None, lease: float) -> bool:
    return job is not None and job.status in JOB_ACTIVE and not job_is_stale(job, lease=lease)


def sweep_scratch(ctx: Context) -> list[str]:
    """Remove scratch files of drills whose job is gone, and close their `running` rows as
    `cancelled` (interrupted). Cheap when there is nothing to do: one query and one stat.
    Returns the names of the files removed."""
    folder = scratch_dir(ctx)
    with ctx.catalog.session() as session:
        running = list(session.exec(select(Drill).where(Drill.status == "running")).all())
        lease = ctx.settings.job_lease_seconds
        dead_rows = [d.id for d in running if not _alive(session.get(Job, d.id), lease)]
    removed: list[str] = []
    if folder.is_dir():
        with ctx.catalog.session() as session:
            for entry in sorted(folder.iterdir()):
                match = _SCRATCH_NAME.match(entry.name)
                if match is None or _alive(session.get(Job, match.group(1)), lease):
                    continue  # not a drill's file, or its drill is still running
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                removed.append(entry.name)
    if dead_rows:
        with ctx.catalog.writer() as session:
            for drill_id in dead_rows:
                drill = session.get(Drill, drill_id)
                if drill is not None and drill.status == "running":
                    drill.status = "cancelled"
                    drill.detail = "interrupted: its process ended before the drill finished"
                    drill.finished_at = datetime.now(UTC)
                    session.add(drill)
            session.commit()
    return removed


# --- what to drill -----------------------------------------------------------------------


def _newest_backup(session: Session, disk_id: str, vault_id: str | None = None) -> Backup | None:
    query = select(Backup).where(Backup.disk_id == disk_id, Backup.status == "available")
    if vault_id is not None:
        query = query.where(Backup.vault_id == vault_id)
    return max(session.exec(query).all(), key=lambda b: as_utc(b.created_at), default=None)


def _target(backup: Backup | None, disk_id: str, disk_name: str, policy: Policy | None) -> dict:
    return {
        "disk_id": disk_id,
        "disk_name": disk_name,
        "backup_id": backup.id if backup else None,
        "backup_name": backup.name if backup else None,
        "policy_id": policy.id if policy else None,
        "policy": policy.name if policy else None,
        "error": None if backup else f"disk {disk_name} has no available backup to drill",
    }


def _policy_targets(session: Session, policy: Policy, disk_ref: str | None) -> list[dict]:
    disks = targets_of(session, policy)
    if disk_ref is not None:
        disks = [d for d in disks if disk_ref in (d.id, d.name)]
        if not disks:
            raise UserError(f"policy {policy.name} does not cover a disk named {disk_ref!r}")
    return [
        _target(_newest_backup(session, d.id, policy.vault_id), d.id, d.name, policy) for d in disks
    ]


def drill_targets(
    ctx: Context,
    *,
    disk_ref: str | None = None,
    policy_ref: str | None = None,
    backup_ref: str | None = None,
) -> list[dict[str, Any]]:
    """What `backup drill` restores: one entry per disk with the backup it drills (its newest
    available one; with a policy, its newest in the policy's vault), or an `error` naming a
    disk with nothing to drill. A disk that no longer exists is found by its backups."""
    if backup_ref is not None and (disk_ref or policy_ref):
        raise UserError("--backup names the backup to drill: give no DISK or --policy with it")
    with ctx.catalog.session() as session:
        if backup_ref is not None:
            backup = resolve(session, Backup, backup_ref, kind="backup")
            return [_target(backup, backup.disk_id, backup.disk_name, None)]
        if policy_ref is not None:
            return _policy_targets(
                session, resolve(session, Policy, policy_ref, kind="policy"), disk_ref
            )
        if disk_ref is None:
            raise UserError("say what to drill: a DISK, --policy NAME or --backup ID")
        try:
            disk = resolve(session, Disk, disk_ref, kind="disk")
            disk_id, disk_name = disk.id, disk.name
        except NotFound:  # a deleted disk: its backups keep its id and name
            kept = session.exec(
                select(Backup).where((Backup.disk_id == disk_ref) | (Backup.disk_name == disk_ref))
            ).first()
            if kept is None:
                raise
            disk_id, disk_name = kept.disk_id, kept.disk_name
        target = _target(_newest_backup(session, disk_id), disk_id, disk_name, None)
        if target["error"]:
            raise UserError(target["error"])
        return [target]


# --- the filesystem check ----------------------------------------------------------------


@dataclass
class CheckResult:
    """The filesystem found in an image and what its read-only check said."""

    filesystem: str  # ext2 | ext3 | ext4 | xfs | "" (none recognised)
    ok: bool = True
    detail: str = ""
    seconds: float = 0.0


def detect_filesystem(image: Path) -> tuple[str, bool]:
    """The filesystem at the start of `image` by its superblock magic, and whether its
    journal needs replaying (ext3/4 `needs_recovery`): ("", False) when none is recognised."""
    with open(image, "rb") as handle:
        head = handle.read(2048)
    kind = filesystem_in(head)
    if kind not in SHOWN_FILESYSTEMS:
        return "", False
    return kind, ext_needs_recovery(head)


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SBIN)


_NOISE = re.compile(
    r"^(Pass \d|Phase \d|\s*- |e2fsck \d|xfs_repair version|No modify flag|"
    r"Cannot get host filesystem geometry|Repair may fail|the image and the host|"
    r"Warning: skipping journal recovery|.*: \d+/\d+ files \(|"
    r".*WARNING: Filesystem still has errors)"
)


def _summary(output: str, image: Path) -> str:
    """The checker's findings in one line (progress lines and banners left out)."""
    found = []
    for raw in output.splitlines():
        line = raw.replace(str(image), "image").strip().strip("*").strip()
        if not line or _NOISE.match(line):
            continue
        line = re.sub(r"\s+(Fix|Ignore|Clear|Recreate|Salvage|Relocate)\?\s+no\.?$", "", line)
        found.append(re.sub(r"\s+", " ", line).rstrip("."))
        if len(found) == 3:
            break
    return "; ".join(found)


def _run(argv: list[str], log: Path, cancel: threading.Event, env: dict[str, str]) -> int:
    """Run a checker with its output in `log`; a set `cancel` kills it (Cancelled)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            while True:
                try:
                    return process.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    if cancel.is_set():
                        raise Cancelled("cancelled") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _read_log(log: Path) -> str:
    with open(log, "rb") as handle:
        return handle.read(64 << 10).decode("utf-8", "replace")


def check_filesystem(image: Path, cancel: threading.Event) -> CheckResult:
    """The read-only check of the filesystem in `image` (a scratch copy: replaying an ext
    journal writes to the copy only, as mounting it would). A missing checker is recorded,
    not a failure."""
    filesystem, recover = detect_filesystem(image)
    if not filesystem:
        return CheckResult("", detail="no ext4 or XFS filesystem at the start of the disk")
    started = time.monotonic()
    log = image.with_name(image.name.split(".")[0] + ".check.log")
    env = {**os.environ, "LC_ALL": "C"}
    notes = []
    if filesystem == "xfs":
        tool = _tool("xfs_repair")
        if tool is None:
            return CheckResult(filesystem, detail="check skipped: xfs_repair not installed")
        argv = [tool, "-n", "-f", str(image)]
    else:
        tool = _tool("e2fsck")
        if tool is None:
            return CheckResult(filesystem, detail="check skipped: e2fsck not installed")
        # the host's clock says nothing about the filesystem: no "time is in the future"
        config = image.with_name(image.name.split(".")[0] + ".e2fsck.conf")
        config.write_text("[options]\n\tbroken_system_clock = true\n")
        env["E2FSCK_CONFIG"] = str(config)
        # a crash-consistent copy: replay its journal first, as mounting it would
        replay = [tool, "-E", "journal_only", "-p", str(image)]
        if recover and _run(replay, log, cancel, env) < 4:
            notes.append("journal replayed")
        argv = [tool, "-f", "-n", str(image)]
    code = _run(argv, log, cancel, env)
    seconds = time.monotonic() - started
    name = Path(argv[0]).name
    if code == 0:
        notes.insert(0, f"{name}: clean")
        return CheckResult(filesystem, detail=", ".join(notes), seconds=seconds)
    findings = _summary(_read_log(log), image) or "no details"
    return CheckResult(
        filesystem,
        ok=False,
        detail=f"{name} found errors in the {filesystem} filesystem (exit {code}): {findings}",
        seconds=seconds,
    )


# --- running a drill ---------------------------------------------------------------------


def _finish(ctx: Context, drill_id: str, **values: Any) -> None:
    with ctx.catalog.writer() as session:
        drill = session.get(Drill, drill_id)
        if drill is None:
            return
        for key, value in values.items():
            setattr(drill, key, value)
        drill.detail = (drill.detail or "")[:_DETAIL_MAX]
        drill.finished_at = datetime.now(UTC)
        session.add(drill)
        if drill.status == "passed":
            record(
                session,
                ctx,
                "drill.passed",
                kind="disk",
                object_id=drill.disk_id,
                name=drill.disk_name,
                detail=f"{drill.backup_name}: restored in {drill.seconds:.2f} s; {drill.detail}",
            )
        session.commit()


def _check_space(folder: Path, backup: Backup) -> None:
    """Refuse before starting when the scratch area cannot hold the backup's data."""
    need = max(0, backup.size - backup.bytes_zero)
    try:
        stats = os.statvfs(folder)
    except OSError:
        return
    free = stats.f_bavail * stats.f_frsize
    if free < need + _SPACE_MARGIN:
        raise Conflict(
            f"not enough scratch space in {folder} to drill {backup.name}: it needs about "
            f"{need + _SPACE_MARGIN} bytes, {free} are free"
        )


def start_drill(
    ctx: Context,
    backup_ref: str,
    *,
    policy_ref: str | None = None,
    passphrase: str | None = None,
    limit_download: int | None = None,
) -> JobHandle:
    """A drill of one backup, as a job (not started). The backup must be `available`; the
    job reads it (`source_id`), so it cannot be deleted while drilled. It reads as a restore
    would, under the same `limit_download` (so its time is the restore time under it)."""
    with ctx.catalog.session() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        vault = session.get(VaultRecord, backup.vault_id)
        policy = resolve(session, Policy, policy_ref, kind="policy") if policy_ref else None
    repo = open_repository(ctx, vault, passphrase=passphrase)  # fail early, outside the lock
    sweep_scratch(ctx)
    folder = scratch_dir(ctx)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with ctx.catalog.writer() as session:
        backup = resolve(session, Backup, backup_ref, kind="backup")
        if backup.status != "available":
            raise Conflict(f"backup {backup.name} is {backup.status}: it cannot be drilled")
        _check_space(folder, backup)
        job = new_job(
            ctx,
            session,
            "drill",
            target_kind="backup",
            target_id=backup.id,
            target_name=backup.name,
            disk_id=None,  # the disk is never touched: a drill holds nothing of it
            source_id=backup.id,
        )
        session.add(
            Drill(
                id=job.id,
                disk_id=backup.disk_id,
                disk_name=backup.disk_name,
                backup_id=backup.id,
                backup_name=backup.name,
                policy_id=policy.id if policy else None,
            )
        )
        session.commit()
    image = folder / f"drill-{job.id}.scratch"
    failure_data = {
        "drill_id": job.id,
        "job_id": job.id,
        "backup_id": backup.id,
        "backup_name": backup.name,
        "policy_id": policy.id if policy else None,
    }

    def failed(message: str, **values: Any) -> DrillFailed:
        _finish(ctx, job.id, status="failed", detail=message, **values)
        alert(
            ctx,
            "drill.failed",
            kind="disk",
            object_id=backup.disk_id,
            name=backup.disk_name,
            detail=message[:_DETAIL_MAX],
            data=failure_data,
        )
        return DrillFailed(f"drill of {backup.name} (disk {backup.disk_name}) failed: {message}")

    def run(context: JobContext) -> dict[str, Any]:
        with ctx.catalog.writer() as session:
            row = session.get(Drill, job.id)
            row.started_at = datetime.now(UTC)
            session.add(row)
            session.commit()
        started = time.monotonic()
        seconds = 0.0
        try:
            context.check_cancel()
            manifest = repo.read_manifest(backup.id)
            with open(os.open(image, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
                handle.truncate(manifest.size)  # sparse: only the data takes room
            reporter = context.reporter("restoring", manifest.size)
            throttle = bandwidth.for_job(
                ctx.settings,
                context,
                limit_upload=None,
                limit_download=limit_download,
                upload=False,
                download=True,
                reporter=reporter,
            )
            stats = pipeline.restore_device(
                manifest,
                bandwidth.limited(repo, throttle),
                image,
                compare_existing=False,
                reporter=reporter,
                cancel=context.cancel,
                workers=ctx.settings.workers,
            )
            seconds = time.monotonic() - started
            reporter.emit(final=True)
            checker = context.reporter("checking filesystem", 0)
            checker.emit()
            check = check_filesystem(image, context.cancel)
            checker.emit(final=True)
        except Cancelled:
            _finish(ctx, job.id, status="cancelled", detail="cancelled by user")
            raise
        except BlockvaultError as exc:
            raise failed(str(exc), seconds=time.monotonic() - started) from None
        except OSError as exc:
            raise failed(
                f"scratch file {image}: {exc.strerror or exc}", seconds=time.monotonic() - started
            ) from None
        except Exception as exc:  # a bug: the row and the alert stay honest
            raise failed(f"internal error: {exc!r}") from exc
        finally:
            for leftover in folder.glob(f"drill-{job.id}.*"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        if not check.ok:
            raise failed(check.detail, seconds=seconds, filesystem=check.filesystem)
        detail = check.detail
        _finish(
            ctx,
            job.id,
            status="passed",
            seconds=seconds,
            filesystem=check.filesystem,
            detail=detail,
        )
        checked = f"{check.filesystem} filesystem, {detail}" if check.filesystem else detail
        return {
            "id": job.id,
            "drill_id": job.id,
            "status": "passed",
            "disk_id": backup.disk_id,
            "disk_name": backup.disk_name,
            "backup_id": backup.id,
            "backup_name": backup.name,
            "policy_id": policy.id if policy else None,
            "seconds": round(seconds, 3),
            "filesystem": check.filesystem,
            "check_seconds": round(check.seconds, 3),
            "detail": detail,
            "bytes_fetched": stats.bytes_fetched,
            "summary": (
                f"drill passed: {backup.name} of disk {backup.disk_name} restored and its "
                f"digest checked in {seconds:.2f} s; {checked}"
            ),
        }

    return JobHandle(ctx, job, run)


# --- listing -----------------------------------------------------------------------------


def drill_view(drill: Drill, policy_name: str | None = None) -> dict[str, Any]:
    return {
        "id": drill.id,
        "name": drill.backup_name,
        "status": drill.status,
        "size": None,
        "created_at": iso(drill.started_at),
        "disk_id": drill.disk_id,
        "disk_name": drill.disk_name,
        "backup_id": drill.backup_id,
        "backup_name": drill.backup_name,
        "policy_id": drill.policy_id,
        "policy": policy_name,
        "filesystem": drill.filesystem or None,
        "seconds": round(drill.seconds, 3) if drill.status != "running" else None,
        "detail": drill.detail,
        "started_at": iso(drill.started_at),
        "finished_at": iso(drill.finished_at),
    }


def list_drills(ctx: Context, *, disk_ref: str | None = None, limit: int = 100) -> list[dict]:
    """Past drills, newest first; `disk_ref` is a disk's name or id (also a deleted one's)."""
    with ctx.catalog.session() as session:
        query = select(Drill).order_by(Drill.started_at.desc()).limit(limit)  # type: ignore[attr-defined]
        if disk_ref is not None:
            disk = session.exec(
                select(Disk).where((Disk.id == disk_ref) | (Disk.name == disk_ref))
            ).first()
            ids = {disk_ref} | ({disk.id} if disk else set())
            query = query.where(
                Drill.disk_id.in_(ids) | (Drill.disk_name == disk_ref)  # type: ignore[attr-defined]
            )
        names = {p.id: p.name for p in session.exec(select(Policy)).all()}
        return [drill_view(d, names.get(d.policy_id or "")) for d in session.exec(query).all()]


# --- scheduled drills --------------------------------------------------------------------


def _due_drill_slots(ctx: Context, now: datetime) -> list[tuple[Policy, datetime]]:
    tz = zone(ctx)
    found = []
    with ctx.catalog.session() as session:
        policies = session.exec(
            select(Policy).where(Policy.enabled == True, Policy.drill != None)  # noqa: E711, E712
        ).all()
        for policy in policies:
            slot = next_due_slot(session, policy, policy.drill, now=now, tz=tz, kind="drill")
            if slot is not None:
                found.append((policy, slot))
    return found


def run_due_drills(
    ctx: Context,
    now: datetime | None = None,
    *,
    on_job: Callable[[JobHandle], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the drills that are due at `now` (default: the clock); what the service calls each
    tick. For each enabled policy with a `drill` schedule whose newest slot since its last
    claimed drill slot has come (missed slots run once), claim that slot (PolicySlot
    kind="drill": two services never run it twice) and drill each covered disk's newest
    backup in the policy's vault, one after the other, in this thread. `on_job` sees each
    job handle before it runs (to follow or cancel it).

    Returns one outcome per disk: {"policy", "disk", "backup", "drill", "status": passed |
    failed | skipped (no backup) | cancelled, "seconds", "error"}; empty when nothing was
    due. A failed drill (also one that could not start) has already raised its
    `drill.failed` alert. A cancelled drill (the service stopping) ends the slot: the
    remaining disks are not started, and the slot is recorded `cancelled`."""
    now = as_utc(now or datetime.now(UTC))
    outcomes: list[dict[str, Any]] = []
    for policy, slot in _due_drill_slots(ctx, now):
        if not claim_slot(ctx, policy, slot, kind="drill"):
            continue
        with ctx.catalog.session() as session:
            targets = _policy_targets(session, policy, None)
        mine: list[dict[str, Any]] = []
        cancelled = False
        for target in targets:
            outcome = {
                "policy": policy.name,
                "disk": target["disk_name"],
                "backup": target["backup_id"],
                "drill": None,
                "status": "skipped",
                "seconds": None,
                "error": target["error"],
            }
            mine.append(outcome)
            if target["backup_id"] is None:
                continue
            if cancelled:  # the service is stopping: the rest of the slot is not started
                outcome.update(status="cancelled", error="cancelled")
                continue
            handle = None
            try:
                handle = start_drill(ctx, target["backup_id"], policy_ref=policy.id)
                outcome["drill"] = handle.id
                if on_job is not None:
                    on_job(handle)
                result = handle.run()
                if handle.error is not None:
                    raise handle.error
                outcome.update(status="passed", seconds=result["seconds"])
            except Cancelled:
                cancelled = True
                outcome.update(status="cancelled", error="cancelled")
            except BlockvaultError as exc:
                outcome.update(status="failed", error=str(exc))
                if handle is None:  # it could not even start (no scratch space): an alert too
                    alert(
                        ctx,
                        "drill.failed",
                        kind="disk",
                        object_id=target["disk_id"],
                        name=target["disk_name"],
                        detail=f"the drill of {target['backup_name']} could not start: {exc}",
                        data={"backup_id": target["backup_id"], "policy_id": policy.id},
                    )
        failed = [o for o in mine if o["status"] == "failed"]
        ran = [o for o in mine if o["status"] in ("passed", "failed")]
        status = (
            "cancelled"
            if cancelled
            else "failed"
            if failed and len(failed) == len(ran)
            else "partial"
            if failed
            else "succeeded"
        )
        detail = "; ".join(f"{o['disk']}: {o['error']}" for o in mine if o["error"])
        finish_slot(ctx, policy, slot, status, detail, kind="drill")
        outcomes += mine
    return outcomes
