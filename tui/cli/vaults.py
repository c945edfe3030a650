"""`blockvault vault`: where backups live, a local directory or S3-compatible storage."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tui.cli.common import (
    BACKUP_COLUMNS,
    add_verb,
    background_parent,
    confirm_parent,
    json_parent,
    print_dry_run,
    read_new_passphrase,
    run_background,
    run_job,
    run_planned,
    show_created,
    show_list,
    show_object,
    size_arg,
    verbs_of,
)

if TYPE_CHECKING:
    from core.api import Blockvault

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
    "usage_bytes",
    "quota_bytes",
)


def vault_add(bv: Blockvault, a: argparse.Namespace) -> None:
    show_created(
        "vault",
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
            object_lock=a.object_lock,
            quota=a.quota,
            alert_at=a.alert_at,
        ),
        a,
    )


def vault_set(bv: Blockvault, a: argparse.Namespace) -> None:
    show_object(bv.set_vault(a.vault, quota=a.quota, alert_at=a.alert_at), a)


def add_capacity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quota",
        metavar="SIZE",
        help="refuse backups that would store more than this in the vault (e.g. 500G; none)",
    )
    p.add_argument(
        "--alert-at",
        metavar="PERCENT",
        help="alert (event, notify_command, console badge) past this share of the quota "
        "(e.g. 80%%; default: at the quota)",
    )


def vault_remove(bv: Blockvault, a: argparse.Namespace) -> None:
    plan = bv.plan_remove_vault(a.vault, force=a.force)
    run_planned(a, plan, lambda p: bv.remove_vault(a.vault, force=a.force, plan=p))


def vault_gc(bv: Blockvault, a: argparse.Namespace) -> None:
    """`--dry-run` prints the plan (what goes now, what is condemned); else runs the job."""
    if a.dry_run:
        print_dry_run(a, bv.plan_gc(a.vault, grace_seconds=a.grace))
        return
    if a.background:
        arguments = {"vault": a.vault, "grace_seconds": a.grace}
        run_background(bv, a, "gc", arguments, description="gc")
        return
    run_job(bv.start_gc(a.vault, grace_seconds=a.grace), a, "gc")


def vault_check(bv: Blockvault, a: argparse.Namespace) -> None:
    if a.background:
        arguments = {"vault": a.vault, "read_fraction": a.read_data}
        run_background(bv, a, "check", arguments, description="check")
        return
    run_job(bv.start_check(a.vault, read_fraction=a.read_data), a, "check")


def add_to(noun: argparse.ArgumentParser) -> None:
    js, cf, bg = json_parent(), confirm_parent(), background_parent()
    vault = verbs_of(noun)
    p = add_verb(
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
    p.add_argument(
        "--object-lock",
        choices=("compliance", "governance"),
        help="S3 Object Lock: locked backups are written retained, undeletable before their "
        "date by anyone (the bucket is made with Object Lock, or checked to have it)",
    )
    add_capacity_options(p)
    p = add_verb(
        vault,
        "set",
        vault_set,
        parents=[js],
        help="set a vault's quota and alert threshold (--quota 500G --alert-at 80%%)",
    )
    p.add_argument("vault")
    add_capacity_options(p)
    add_verb(
        vault,
        "list",
        lambda bv, a: show_list(VAULT_COLUMNS, "no vaults")(bv.list_vaults(), a),
        parents=[js],
        help="list vaults",
    )
    p = add_verb(
        vault,
        "show",
        lambda bv, a: show_object(bv.get_vault(a.vault), a),
        parents=[js],
        help="show a vault: its usage measured, quota, forecast days until full",
    )
    p.add_argument("vault", nargs="?")
    p = add_verb(
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
    p = add_verb(
        vault,
        "check",
        vault_check,
        parents=[js, bg],
        help="check structure and read back a share of the data; lost chunks are quarantined",
    )
    p.add_argument("vault", nargs="?")
    p.add_argument(
        "--read-data",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of the chunks to read back and verify, 0..1 (default 0: structure only)",
    )
    p = add_verb(
        vault,
        "gc",
        vault_gc,
        parents=[js, bg],
        help="delete chunks no backup references",
    )
    p.add_argument("vault", nargs="?")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument(
        "--grace", type=float, help="keep unreferenced chunks younger than this many seconds"
    )
    p = add_verb(
        vault,
        "import",
        lambda bv, a: show_list(BACKUP_COLUMNS, "nothing new to import")(
            bv.import_vault(a.vault), a
        ),
        parents=[js],
        help="register every backup found in a vault",
    )
    p.add_argument("vault", nargs="?")
