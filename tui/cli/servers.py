"""`blockvault server`: the servers that disks attach to, and their OS (reinstall, os-changed)."""

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
    verbs_of,
)

if TYPE_CHECKING:
    from core.api import Blockvault

SERVER_COLUMNS = ("id", "name", "host", "status", "disks", "created_at")


def server_delete(bv: Blockvault, args: argparse.Namespace) -> None:
    plan = bv.plan_delete_server(args.server, detach_disks=args.detach_disks)
    run_planned(
        args, plan, lambda p: bv.delete_server(args.server, detach_disks=args.detach_disks, plan=p)
    )


def server_reinstall(bv: Blockvault, a: argparse.Namespace) -> None:
    run_planned_job(
        a,
        bv.plan_reinstall(a.server, a.image, force=a.force),
        lambda p: bv.start_reinstall(a.server, a.image, force=a.force, plan=p),
        description="reinstall",
    )


def add_to(noun: argparse.ArgumentParser) -> None:
    js, cf = json_parent(), confirm_parent()
    server = verbs_of(noun)
    p = add_verb(
        server,
        "create",
        lambda bv, a: show_created("server", bv.create_server(a.name), a),
        parents=[js],
        help="add a server",
    )
    p.add_argument("name")
    add_verb(
        server,
        "list",
        lambda bv, a: show_list(SERVER_COLUMNS, "no servers")(bv.list_servers(), a),
        parents=[js],
        help="list servers",
    )
    p = add_verb(
        server,
        "show",
        lambda bv, a: show_object(bv.get_server(a.server), a),
        parents=[js],
        help="show a server",
    )
    p.add_argument("server")
    p = add_verb(
        server,
        "delete",
        server_delete,
        parents=[js, cf],
        help="delete a server (refused while it has disks unless --detach-disks)",
    )
    p.add_argument("server")
    p.add_argument(
        "--detach-disks",
        action="store_true",
        help="detach its disks (they, their snapshots and backups are kept)",
    )
    p = add_verb(
        server,
        "os-changed",
        lambda bv, a: run_planned(
            a, bv.plan_os_changed(a.server), lambda p: bv.os_changed(a.server, plan=p)
        ),
        parents=[js, cf],
        help="the OS was reinstalled outside blockvault: delete the system disk's snapshots",
    )
    p.add_argument("server")
    p = add_verb(
        server,
        "reinstall",
        server_reinstall,
        parents=[js, cf],
        help="write an OS image (file or backup) onto the system disk; its snapshots go after success",
    )
    p.add_argument("server")
    p.add_argument("--image", required=True, help="an image file, or a backup id or name")
    p.add_argument("--force", action="store_true", help="even if another process writes the disk")
