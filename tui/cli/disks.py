"""`blockvault disk`: pool images and registered files or devices, and undoing an overwrite."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tui.cli.common import (
    add_verb,
    confirm_parent,
    json_parent,
    run_planned,
    run_planned_job,
    show_created,
    show_list,
    show_object,
    size_arg,
    verbs_of,
)

if TYPE_CHECKING:
    from core.api import Blockvault

DISK_COLUMNS = (
    "id",
    "name",
    "server",
    "host",
    "role",
    "size",
    "allocated",
    "status",
    "snapshot_strategy",
    "last_backup_at",
)


def disk_delete(bv: Blockvault, args: argparse.Namespace) -> None:
    plan = bv.plan_delete_disk(args.disk)
    run_planned(args, plan, lambda p: bv.delete_disk(args.disk, plan=p))


def disk_undo(bv: Blockvault, a: argparse.Namespace) -> None:
    run_planned_job(
        a,
        bv.plan_undo(a.disk, force=a.force),
        lambda p: bv.start_undo(a.disk, force=a.force, plan=p),
        description="undo",
    )


def add_to(noun: argparse.ArgumentParser) -> None:
    js, cf = json_parent(), confirm_parent()
    disk = verbs_of(noun)
    p = add_verb(
        disk,
        "create",
        lambda bv, a: show_created(
            "disk", bv.create_disk(a.name, a.size, server=a.server, role=a.role), a
        ),
        parents=[js],
        help="create a sparse disk image in the pool",
    )
    p.add_argument("name")
    p.add_argument("--size", required=True, type=size_arg, help="e.g. 10G, 512M")
    p.add_argument("--server")
    p.add_argument("--role", default="data", choices=("system", "data"))
    p = add_verb(
        disk,
        "register",
        lambda bv, a: show_created(
            "disk", bv.register_disk(a.name, a.path, server=a.server, role=a.role), a
        ),
        parents=[js],
        help="adopt an existing raw image file or block device",
    )
    p.add_argument("name")
    p.add_argument("--path", required=True)
    p.add_argument("--server")
    p.add_argument("--role", default="data", choices=("system", "data"))
    p = add_verb(
        disk,
        "list",
        lambda bv, a: show_list(DISK_COLUMNS, "no disks")(bv.list_disks(server=a.server), a),
        parents=[js],
        help="list disks",
    )
    p.add_argument("--server")
    p = add_verb(
        disk,
        "show",
        lambda bv, a: show_object(bv.get_disk(a.disk), a),
        parents=[js],
        help="show a disk",
    )
    p.add_argument("disk")
    p = add_verb(
        disk,
        "delete",
        disk_delete,
        parents=[js, cf],
        help="delete a disk and its snapshots (backups are kept)",
    )
    p.add_argument("disk")
    p = add_verb(
        disk,
        "attach",
        lambda bv, a: show_object(bv.attach_disk(a.disk, a.server, role=a.role), a),
        parents=[js],
        help="attach a disk to a server",
    )
    p.add_argument("disk")
    p.add_argument("--server", required=True)
    p.add_argument("--role", default="data", choices=("system", "data"))
    p = add_verb(
        disk,
        "detach",
        lambda bv, a: show_object(bv.detach_disk(a.disk), a),
        parents=[js],
        help="detach a disk from its server",
    )
    p.add_argument("disk")
    p = add_verb(
        disk,
        "undo",
        disk_undo,
        parents=[js, cf],
        help="put a disk back as it was before the last overwrite",
    )
    p.add_argument("disk")
    p.add_argument("--force", action="store_true")
