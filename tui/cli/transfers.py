"""CLI nouns that move data: vault, backup, snapshot, plus disk undo and the server OS verbs."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from core.api import Blockvault, Cancelled
from tui.cli import output
from tui.cli.common import print_dry_run, run_planned, show_list, show_object, size_arg

VAULT_COLUMNS = (
    "id",
    "name",
    "kind",
    "location",
    "backups",
    "logical_bytes",
    "stored_bytes",
    "dedup_ratio",
    "encrypted",
)
BACKUP_COLUMNS = (
    "id",
    "name",
    "disk_name",
    "server",
    "role",
    "size",
    "bytes_new",
    "bytes_stored",
    "vault",
    "status",
    "created_at",
)
SNAPSHOT_COLUMNS = (
    "id",
    "name",
    "disk_name",
    "kind",
    "strategy",
    "size",
    "bytes_stored",
    "status",
    "created_at",
)


def run_job(handle: Any, args: argparse.Namespace, description: str) -> Any:
    """Run a job in the foreground with a progress bar or JSON lines; Ctrl-C cancels it."""
    with output.ProgressPrinter(as_json=args.json, description=description) as printer:
        handle.subscribe(printer)
        handle.start()
        try:
            while not handle.done:
                handle.wait(0.2)
        except KeyboardInterrupt:
            handle.cancel()
            with contextlib.suppress(Cancelled):
                handle.wait()
            raise Cancelled("cancelled") from None
    result = handle.wait()
    if args.json:
        output.print_json({"type": "result", "job_id": handle.id, **result})
    elif "summary" in result:
        output.out.print(result["summary"], markup=False)
    else:
        output.print_object(result)
    return result


def _planned_job(args: argparse.Namespace, plan: Any, start: Any, description: str) -> None:
    run_planned(args, plan, lambda: run_job(start(), args, description), show_result=False)


# --- handlers -----------------------------------------------------------------------------


def vault_add(bv: Blockvault, a: argparse.Namespace) -> None:
    from tui.cli.common import read_new_passphrase

    show_object(
        bv.add_vault(
            a.name,
            path=a.path,
            s3_url=a.s3,
            endpoint_url=a.endpoint_url,
            region=a.region,
            profile=a.profile,
            addressing_style=a.addressing_style,
            request_checksum=a.request_checksum,
            chunk_size=a.chunk_size,
            passphrase=read_new_passphrase() if a.encrypt else None,
            create_bucket=a.create_bucket,
        ),
        a,
    )


def vault_remove(bv: Blockvault, a: argparse.Namespace) -> None:
    from core.api import Plan, PlanItem

    vault = bv.get_vault(a.vault, deep=False)
    plan = Plan(
        "remove vault",
        f"{vault['name']} ({vault['location']})",
        (
            PlanItem(
                "delete",
                "vault",
                vault["id"],
                vault["name"],
                note="catalog entry only; data stays in the store",
            ),
        ),
    )
    run_planned(a, plan, lambda: bv.remove_vault(a.vault, force=a.force))


def backup_create(bv: Blockvault, a: argparse.Namespace) -> Any:
    plan = bv.plan_backup(a.disk, vault=a.vault)
    if a.dry_run:
        return print_dry_run(a, plan)
    return run_job(bv.start_backup(a.disk, vault=a.vault, name=a.name), a, f"backup {a.disk}")


def backup_restore(bv: Blockvault, a: argparse.Namespace) -> None:
    to_original = a.to_original
    plan = bv.plan_restore(
        a.backup, to_original=to_original, new_name=a.to_new, new_size=a.size, force=a.force
    )

    def start():
        return bv.start_restore(
            a.backup, to_original=to_original, new_name=a.to_new, new_size=a.size, force=a.force
        )

    if not plan.destructive:
        a.yes = True  # creating a new disk overwrites nothing: no question to ask
    _planned_job(a, plan, start, "restore")


def snapshot_rollback(bv: Blockvault, a: argparse.Namespace) -> None:
    _planned_job(
        a,
        bv.plan_rollback(a.snapshot, force=a.force),
        lambda: bv.start_rollback(a.snapshot, force=a.force),
        "rollback",
    )


def snapshot_to_disk(bv: Blockvault, a: argparse.Namespace) -> None:
    bv.plan_snapshot_to_disk(a.snapshot, a.new_name)
    run_job(bv.start_snapshot_to_disk(a.snapshot, a.new_name), a, "to-disk")


def disk_undo(bv: Blockvault, a: argparse.Namespace) -> None:
    _planned_job(a, bv.plan_undo(a.disk), lambda: bv.start_undo(a.disk, force=a.force), "undo")


def add_nouns(nouns: argparse._SubParsersAction, verb, js, cf) -> None:  # type: ignore[no-untyped-def]
    """Register the transfer nouns on the top-level parser."""
    from tui.cli.main import ArgumentParser

    def noun(name: str, help: str):  # type: ignore[no-untyped-def]
        return nouns.add_parser(name, help=help).add_subparsers(
            dest="verb", metavar="VERB", required=True, parser_class=ArgumentParser
        )

    # vault
    vault = noun("vault", "where backups live: a local directory or S3-compatible storage")
    p = verb(
        vault,
        "add",
        vault_add,
        parents=[js],
        help="add a vault (--path DIR or --s3 s3://bucket/prefix)",
    )
    p.add_argument("name")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--path", help="a local directory")
    where.add_argument("--s3", help="s3://bucket/prefix")
    p.add_argument(
        "--endpoint-url", help="S3-compatible endpoint (MinIO, Ceph RGW, OBS, SeaweedFS)"
    )
    p.add_argument("--region")
    p.add_argument("--profile", help="AWS profile name (credentials come from the AWS chain)")
    p.add_argument("--addressing-style", default="auto", choices=("auto", "path", "virtual"))
    p.add_argument(
        "--request-checksum",
        default="when_required",
        choices=("when_required", "when_supported"),
        help="when_required suits most S3-compatible services",
    )
    p.add_argument("--chunk-size", type=size_arg, help="fixed per vault (default 4M)")
    p.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt client-side; passphrase from BLOCKVAULT_PASSPHRASE or a prompt",
    )
    p.add_argument("--create-bucket", action="store_true", help="create the bucket if missing")
    verb(
        vault,
        "list",
        lambda bv, a: show_list(VAULT_COLUMNS, "no vaults")(bv.list_vaults(), a),
        parents=[js],
        help="list vaults",
    )
    p = verb(
        vault,
        "show",
        lambda bv, a: show_object(bv.get_vault(a.vault), a),
        parents=[js],
        help="show a vault with its real usage",
    )
    p.add_argument("vault", nargs="?")
    p = verb(
        vault,
        "remove",
        vault_remove,
        parents=[js, cf],
        help="forget a vault (refused while backups reference it)",
    )
    p.add_argument("vault")
    p.add_argument(
        "--force", action="store_true", help="also forget its backups (data stays in the store)"
    )
    p = verb(
        vault,
        "gc",
        lambda bv, a: run_job(
            bv.start_gc(a.vault, dry_run=a.dry_run, grace_seconds=a.grace), a, "gc"
        ),
        parents=[js],
        help="delete chunks no backup references",
    )
    p.add_argument("vault", nargs="?")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument(
        "--grace", type=float, help="keep unreferenced chunks younger than this many seconds"
    )
    p = verb(
        vault,
        "import",
        lambda bv, a: show_list(BACKUP_COLUMNS, "nothing new to import")(
            bv.import_vault(a.vault), a
        ),
        parents=[js],
        help="register every backup found in a vault",
    )
    p.add_argument("vault", nargs="?")

    # backup
    backup = noun("backup", "block-level, deduplicated backups in a vault")
    p = verb(
        backup,
        "create",
        backup_create,
        parents=[js],
        help="back up a disk (full first, then incremental)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, back up nothing")
    p.add_argument("disk")
    p.add_argument("--vault")
    p.add_argument("--name")
    p = verb(
        backup,
        "list",
        lambda bv, a: show_list(BACKUP_COLUMNS, "no backups")(
            bv.list_backups(disk=a.disk, include_deleted_disks=a.all), a
        ),
        parents=[js],
        help="list backups",
    )
    p.add_argument("--disk")
    p.add_argument("--all", action="store_true", help="include retained backups of deleted disks")
    p = verb(
        backup,
        "show",
        lambda bv, a: show_object(bv.get_backup(a.backup), a),
        parents=[js],
        help="show a backup, with the bytes only it references",
    )
    p.add_argument("backup")
    p = verb(
        backup,
        "restore",
        backup_restore,
        parents=[js, cf],
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
    p = verb(
        backup,
        "verify",
        lambda bv, a: run_job(bv.start_verify(a.backup), a, "verify"),
        parents=[js],
        help="fetch and check every chunk",
    )
    p.add_argument("backup")
    p = verb(
        backup,
        "delete",
        lambda bv, a: run_planned(
            a, bv.plan_delete_backup(a.backup), lambda: bv.delete_backup(a.backup)
        ),
        parents=[js, cf],
        help="delete a backup (vault gc frees its chunks)",
    )
    p.add_argument("backup")

    add_policy_noun(noun, verb, js, cf)

    # snapshot
    snap = noun("snapshot", "fast local snapshots stored with the disk")
    p = verb(
        snap,
        "create",
        lambda bv, a: run_job(bv.start_snapshot(a.disk, name=a.name), a, f"snapshot {a.disk}"),
        parents=[js],
        help="snapshot a disk",
    )
    p.add_argument("disk")
    p.add_argument("--name")
    p = verb(
        snap,
        "list",
        lambda bv, a: show_list(SNAPSHOT_COLUMNS, "no snapshots")(
            bv.list_snapshots(disk=a.disk), a
        ),
        parents=[js],
        help="list snapshots",
    )
    p.add_argument("--disk")
    p = verb(
        snap,
        "show",
        lambda bv, a: show_object(bv.get_snapshot(a.snapshot), a),
        parents=[js],
        help="show a snapshot",
    )
    p.add_argument("snapshot")
    p = verb(
        snap,
        "delete",
        lambda bv, a: run_planned(
            a, bv.plan_delete_snapshot(a.snapshot), lambda: bv.delete_snapshot(a.snapshot)
        ),
        parents=[js, cf],
        help="delete a snapshot",
    )
    p.add_argument("snapshot")
    p = verb(
        snap,
        "rollback",
        snapshot_rollback,
        parents=[js, cf],
        help="roll its disk back to this snapshot",
    )
    p.add_argument("snapshot")
    p.add_argument("--force", action="store_true")
    p = verb(
        snap, "to-disk", snapshot_to_disk, parents=[js], help="make a new disk from a snapshot"
    )
    p.add_argument("snapshot")
    p.add_argument("new_name")


POLICY_COLUMNS = (
    "id",
    "name",
    "status",
    "schedule",
    "keep_last",
    "keep_days",
    "disks",
    "next_run_at",
)


def add_policy_noun(noun, verb, js, cf) -> None:  # type: ignore[no-untyped-def]
    policy = noun("policy", "automatic backups: schedule, vault and retention")
    p = verb(
        policy,
        "create",
        lambda bv, a: show_object(
            bv.create_policy(
                a.name,
                schedule=a.schedule,
                vault=a.vault,
                keep_last=a.keep_last,
                keep_days=a.keep_days,
                disks=a.disk,
            ),
            a,
        ),
        parents=[js],
        help="create a backup policy",
    )
    p.add_argument("name")
    p.add_argument(
        "--schedule", default="0 2 * * *", help="cron expression (default: daily at 02:00 UTC)"
    )
    p.add_argument("--vault")
    p.add_argument("--keep-last", type=int, default=7)
    p.add_argument("--keep-days", type=int)
    p.add_argument("--disk", action="append", default=[], help="a disk to cover (repeatable)")
    verb(
        policy,
        "list",
        lambda bv, a: show_list(POLICY_COLUMNS, "no policies")(bv.list_policies(), a),
        parents=[js],
        help="list policies",
    )
    p = verb(
        policy,
        "show",
        lambda bv, a: show_object(bv.get_policy(a.policy), a),
        parents=[js],
        help="show a policy",
    )
    p.add_argument("policy")
    p = verb(
        policy,
        "delete",
        lambda bv, a: run_planned(
            a, _policy_plan(bv, a.policy), lambda: bv.delete_policy(a.policy)
        ),
        parents=[js, cf],
        help="delete a policy (its backups are kept)",
    )
    p.add_argument("policy")
    p = verb(
        policy,
        "run",
        lambda bv, a: show_list(("policy", "disk", "backup", "status", "error"), "nothing due")(
            bv.run_policies(policy=a.policy, force=a.now), a
        ),
        parents=[js],
        help="run due policies (for cron), then apply retention",
    )
    p.add_argument("policy", nargs="?")
    p.add_argument("--now", action="store_true", help="run even if not due")


def _policy_plan(bv: Blockvault, ref: str):  # type: ignore[no-untyped-def]
    from core.api import Plan, PlanItem

    policy = bv.get_policy(ref)
    return Plan(
        "delete policy",
        policy["name"],
        (PlanItem("delete", "policy", policy["id"], policy["name"], note="its backups are kept"),),
    )


def add_disk_and_server_verbs(disk, server, verb, js, cf) -> None:  # type: ignore[no-untyped-def]
    """Verbs on existing nouns that belong to the snapshot lifecycle."""
    p = verb(
        disk,
        "undo",
        disk_undo,
        parents=[js, cf],
        help="put a disk back as it was before the last overwrite",
    )
    p.add_argument("disk")
    p.add_argument("--force", action="store_true")
    p = verb(
        server,
        "os-changed",
        lambda bv, a: run_planned(a, bv.plan_os_changed(a.server), lambda: bv.os_changed(a.server)),
        parents=[js, cf],
        help="the OS was reinstalled outside blockvault: delete the system disk's snapshots",
    )
    p.add_argument("server")
    p = verb(
        server,
        "reinstall",
        lambda bv, a: _planned_job(
            a,
            bv.plan_reinstall(a.server, a.image, force=a.force),
            lambda: bv.start_reinstall(a.server, a.image, force=a.force),
            "reinstall",
        ),
        parents=[js, cf],
        help="write an OS image (file or backup) onto the system disk; its snapshots go after success",
    )
    p.add_argument("server")
    p.add_argument("--image", required=True, help="an image file, or a backup id or name")
    p.add_argument("--force", action="store_true", help="even if another process writes the disk")
