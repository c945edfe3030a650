"""`blockvault backup`: block-level, deduplicated backups in a vault; restore, verify, drill."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from core.api import BlockvaultError, Cancelled, PartlyFailed, UserError, printable
from tui.cli import output
from tui.cli.common import (
    BACKUP_COLUMNS,
    add_verb,
    background_parent,
    confirm_parent,
    json_parent,
    print_dry_run,
    run_background,
    run_job,
    run_planned,
    run_planned_job,
    show_list,
    show_object,
    size_arg,
    verbs_of,
)
from tui.cli.limits import limits_of, limits_parent

DELETED_MARK = " (deleted)"

if TYPE_CHECKING:
    from core.api import Blockvault, Plan


def backup_create(bv: Blockvault, a: argparse.Namespace) -> Any:
    plan = bv.plan_backup(a.disk, vault=a.vault)
    if a.dry_run:
        return print_dry_run(a, plan)
    if a.background:
        arguments = {"disk": a.disk, "vault": a.vault, "name": a.name, **limits_of(a)}
        return run_background(bv, a, "backup", arguments, plan=plan, description=f"backup {a.disk}")
    handle = bv.start_backup(a.disk, vault=a.vault, name=a.name, plan=plan, **limits_of(a))
    return run_job(handle, a, f"backup {a.disk}")


def backup_restore(bv: Blockvault, a: argparse.Namespace) -> None:
    to_original = a.to_original
    plan = bv.plan_restore(
        a.backup, to_original=to_original, new_name=a.to_new, new_size=a.size, force=a.force
    )

    def start(confirmed: Plan) -> Any:
        return bv.start_restore(
            a.backup,
            to_original=to_original,
            new_name=a.to_new,
            new_size=a.size,
            force=a.force,
            plan=confirmed,
            **limits_of(a),
        )

    if not plan.destructive:
        a.yes = True  # creating a new disk overwrites nothing: no question to ask
    if plan.extra.get("reads_vault") and not a.dry_run:  # a replica: say which vault is read
        output.err.print(printable(f"note: {plan.route}"), markup=False)
    if a.background:
        arguments = {
            "backup": a.backup,
            "to_original": to_original,
            "new_name": a.to_new,
            "new_size": a.size,
            "force": a.force,
            **limits_of(a),
        }
        run_planned(
            a,
            plan,
            lambda confirmed: run_background(
                bv, a, "restore", arguments, plan=confirmed, description="restore"
            ),
            show_result=False,
        )
        return
    run_planned_job(a, plan, start, description="restore")


def backup_copy(bv: Blockvault, a: argparse.Namespace) -> None:
    """Copy a backup into another vault: plan (refused in one line), confirm, run as a job."""
    plan = bv.plan_copy(a.backup, to_vault=a.to_vault)
    if not plan.destructive:
        a.yes = True  # a copy overwrites nothing: no question to ask
    run_planned_job(
        a,
        plan,
        lambda confirmed: bv.start_copy(
            a.backup, to_vault=a.to_vault, plan=confirmed, **limits_of(a)
        ),
        description=f"copy {a.backup} -> {a.to_vault}",
    )


def backup_lock(bv: Blockvault, a: argparse.Namespace) -> None:
    """Lock a backup (extend only); a vault that does not enforce it itself says so."""
    result = bv.lock_backup(a.backup, lock_for=a.lock_for, until=a.until)
    if not a.json:
        for warning in result.get("warnings", []):
            output.err.print(printable(f"warning: {warning}"), markup=False)
    show_object(result, a)


def backup_list(bv: Blockvault, a: argparse.Namespace) -> None:
    """Every backup, those of deleted disks too (the ones a disaster needs): marked
    "(deleted)" after the disk's name as text, `disk_deleted: true` in JSON and TSV."""
    rows = bv.list_backups(disk=a.disk, include_deleted_disks=True, limit=a.limit)
    if not a.json and a.format == "table":
        rows = [
            {**r, "disk_name": f"{r['disk_name']}{DELETED_MARK}"} if r.get("disk_deleted") else r
            for r in rows
        ]
    columns = BACKUP_COLUMNS if a.format != "tsv" else (*BACKUP_COLUMNS, "disk_deleted")
    show_list(columns, "no backups")(rows, a)


def backup_verify(bv: Blockvault, a: argparse.Namespace) -> Any:
    if a.background:
        arguments = {"backup": a.backup, **limits_of(a)}
        return run_background(bv, a, "verify", arguments, description="verify")
    return run_job(bv.start_verify(a.backup, **limits_of(a)), a, "verify")


DRILL_COLUMNS = (
    "id",
    "disk_name",
    "backup_name",
    "status",
    "filesystem",
    "seconds",
    "started_at",
    "detail",
)


def backup_drill(bv: Blockvault, a: argparse.Namespace) -> None:
    """Drill each target in turn (one job each); `--list` shows past drills instead. One
    failed drill of several does not stop the others; any failure ends in one line."""
    if a.list:
        if a.policy or a.backup:
            raise UserError("--list shows past drills: give it at most a DISK")
        return show_list(DRILL_COLUMNS, "no drills")(bv.list_drills(disk=a.disk), a)
    targets = bv.drill_targets(a.disk, policy=a.policy, backup=a.backup)
    for target in targets:
        if target["error"]:
            output.err.print(printable(f"warning: skipped: {target['error']}"), markup=False)
    targets = [t for t in targets if not t["error"]]
    failures = []
    for target in targets:
        handle = bv.start_drill(target["backup_id"], policy=target["policy_id"], **limits_of(a))
        try:
            run_job(handle, a, f"drill {target['disk_name']}")
        except Cancelled:
            raise
        except BlockvaultError as exc:
            if len(targets) == 1:
                raise
            failures.append(f"{target['disk_name']}: {exc}")
    if failures:
        error = PartlyFailed if len(failures) < len(targets) else BlockvaultError
        raise error(f"{len(failures)} of {len(targets)} drills failed: " + "; ".join(failures))
    return None


def add_to(noun: argparse.ArgumentParser) -> None:
    js, cf, bg = json_parent(), confirm_parent(), background_parent()
    up = limits_parent(upload=True, download=False)
    down = limits_parent(upload=False, download=True)
    both = limits_parent(upload=True, download=True)
    backup = verbs_of(noun)
    p = add_verb(
        backup,
        "create",
        backup_create,
        parents=[js, bg, up],
        help="back up a disk (full first, then incremental)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, back up nothing")
    p.add_argument("disk")
    p.add_argument("--vault")
    p.add_argument("--name")
    p = add_verb(
        backup,
        "list",
        backup_list,
        parents=[js],
        help="list every backup; those of deleted disks are marked (deleted)",
    )
    p.add_argument("--disk")
    p.add_argument("--all", action="store_true", help=argparse.SUPPRESS)  # always all now
    p.add_argument(
        "--limit", type=int, metavar="N", help="only the newest N (default: every backup)"
    )
    p = add_verb(
        backup,
        "show",
        lambda bv, a: show_object(bv.get_backup(a.backup), a),
        parents=[js],
        help="show a backup, with the bytes only it references",
    )
    p.add_argument("backup")
    p = add_verb(
        backup,
        "restore",
        backup_restore,
        parents=[js, cf, bg, down],
        help="restore to the original disk or to a new disk",
    )
    p.add_argument("backup")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-original", action="store_true")
    target.add_argument("--to-new", metavar="NAME")
    p.add_argument("--size", type=size_arg, help="size of the new disk (at least the backup's)")
    p.add_argument(
        "--force", action="store_true", help="restore even if another process holds the disk open"
    )
    p = add_verb(
        backup,
        "copy",
        backup_copy,
        parents=[js, cf, both],
        help="copy a backup into another vault (only chunks missing there are sent; "
        "re-encrypted with that vault's key); the copy is a backup of its own",
    )
    p.add_argument("backup")
    p.add_argument("--to-vault", required=True, metavar="VAULT")
    p = add_verb(
        backup,
        "verify",
        backup_verify,
        parents=[js, bg, down],
        help="fetch and check every chunk",
    )
    p.add_argument("backup")
    p = add_verb(
        backup,
        "drill",
        backup_drill,
        parents=[js, down],
        help="restore a backup into scratch space and check it (digest, ext4/XFS fsck); "
        "--list shows past drills",
    )
    p.add_argument("disk", nargs="?", help="drill this disk's newest backup")
    p.add_argument("--policy", help="drill every disk the policy covers")
    p.add_argument("--backup", help="drill this backup (also of a deleted disk)")
    p.add_argument("--list", action="store_true", help="show past drills (of DISK)")
    p = add_verb(
        backup,
        "delete",
        lambda bv, a: run_planned(
            a, bv.plan_delete_backup(a.backup), lambda p: bv.delete_backup(a.backup, plan=p)
        ),
        parents=[js, cf],
        help="delete a backup (vault gc frees its chunks)",
    )
    p.add_argument("backup")
    p = add_verb(
        backup,
        "lock",
        backup_lock,
        parents=[js],
        help="lock a backup: no delete, expiry or gc before its date (S3 Object Lock where "
        "the vault has it); a lock is only ever extended",
    )
    p.add_argument("backup")
    span = p.add_mutually_exclusive_group(required=True)
    span.add_argument("--for", dest="lock_for", metavar="DURATION", help="e.g. 30d, 1y, 12h")
    span.add_argument("--until", metavar="DATE", help="2027-01-01 (UTC) or 2027-01-01T12:00:00Z")
    for verb, pinned, text in (
        ("pin", True, "exempt a backup from every policy's retention"),
        ("unpin", False, "return a pinned backup to its policy's retention"),
    ):
        p = add_verb(
            backup,
            verb,
            lambda bv, a, pinned=pinned: show_object(bv.pin_backup(a.backup, pinned=pinned), a),
            parents=[js],
            help=text,
        )
        p.add_argument("backup")
