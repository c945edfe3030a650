"""`blockvault <noun> <verb>`: the command line for scripts, cron and admins. No args opens the console.

Every verb calls one façade method; user mistakes end in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from core.api import Blockvault, BlockvaultError, Cancelled
from tui.cli import output
from tui.cli.common import (
    confirm_parent,
    json_parent,
    run_planned,
    show_list,
    show_object,
    size_arg,
)

Handler = Callable[[Blockvault, argparse.Namespace], Any]

DISK_COLUMNS = (
    "id",
    "name",
    "server",
    "role",
    "size",
    "allocated",
    "status",
    "snapshot_strategy",
    "last_backup_at",
)
SERVER_COLUMNS = ("id", "name", "status", "disks", "created_at")
JOB_COLUMNS = (
    "id",
    "kind",
    "target_name",
    "status",
    "phase",
    "bytes_done",
    "bytes_total",
    "created_at",
    "error",
)
EVENT_COLUMNS = (
    "created_at",
    "actor",
    "action",
    "object_kind",
    "object_name",
    "object_id",
    "detail",
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"blockvault: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


# --- handlers ----------------------------------------------------------------------------


def server_delete(bv: Blockvault, args: argparse.Namespace) -> None:
    plan = bv.plan_delete_server(args.server, detach_disks=args.detach_disks)
    run_planned(args, plan, lambda: bv.delete_server(args.server, detach_disks=args.detach_disks))


def disk_delete(bv: Blockvault, args: argparse.Namespace) -> None:
    plan = bv.plan_delete_disk(args.disk)
    run_planned(args, plan, lambda: bv.delete_disk(args.disk))


def build_parser() -> argparse.ArgumentParser:
    js, cf = json_parent(), confirm_parent()
    parser = ArgumentParser(
        prog="blockvault",
        description="Disk snapshots and backups for admin hosts. Without a command, opens the console.",
    )
    parser.add_argument(
        "--home", help="keep config, catalog, pool and vault under DIR (BLOCKVAULT_HOME)"
    )
    parser.add_argument("--catalog", help="catalog SQLAlchemy URL (BLOCKVAULT_CATALOG)")
    parser.add_argument("--demo", action="store_true", help="open the console on a throwaway demo")
    parser.add_argument(
        "--read-only", action="store_true", help="console without destructive actions"
    )
    nouns = parser.add_subparsers(dest="noun", metavar="NOUN", parser_class=ArgumentParser)

    def verb(
        noun_parsers, name: str, handler: Handler, *, parents=(), help: str = ""
    ) -> ArgumentParser:  # type: ignore[no-untyped-def]
        sub = noun_parsers.add_parser(name, parents=list(parents), help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    # server
    server = nouns.add_parser("server", help="servers that disks attach to").add_subparsers(
        dest="verb", metavar="VERB", required=True, parser_class=ArgumentParser
    )
    p = verb(
        server,
        "create",
        lambda bv, a: show_object(bv.create_server(a.name), a),
        parents=[js],
        help="add a server",
    )
    p.add_argument("name")
    verb(
        server,
        "list",
        lambda bv, a: show_list(SERVER_COLUMNS, "no servers")(bv.list_servers(), a),
        parents=[js],
        help="list servers",
    )
    p = verb(
        server,
        "show",
        lambda bv, a: show_object(bv.get_server(a.server), a),
        parents=[js],
        help="show a server",
    )
    p.add_argument("server")
    p = verb(
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

    # disk
    disk = nouns.add_parser(
        "disk", help="disks: pool images and registered files or devices"
    ).add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=ArgumentParser)
    p = verb(
        disk,
        "create",
        lambda bv, a: show_object(bv.create_disk(a.name, a.size, server=a.server, role=a.role), a),
        parents=[js],
        help="create a sparse disk image in the pool",
    )
    p.add_argument("name")
    p.add_argument("--size", required=True, type=size_arg, help="e.g. 10G, 512M")
    p.add_argument("--server")
    p.add_argument("--role", default="data", choices=("system", "data"))
    p = verb(
        disk,
        "register",
        lambda bv, a: show_object(
            bv.register_disk(a.name, a.path, server=a.server, role=a.role), a
        ),
        parents=[js],
        help="adopt an existing raw image file or block device",
    )
    p.add_argument("name")
    p.add_argument("--path", required=True)
    p.add_argument("--server")
    p.add_argument("--role", default="data", choices=("system", "data"))
    p = verb(
        disk,
        "list",
        lambda bv, a: show_list(DISK_COLUMNS, "no disks")(bv.list_disks(server=a.server), a),
        parents=[js],
        help="list disks",
    )
    p.add_argument("--server")
    p = verb(
        disk,
        "show",
        lambda bv, a: show_object(bv.get_disk(a.disk), a),
        parents=[js],
        help="show a disk",
    )
    p.add_argument("disk")
    p = verb(
        disk,
        "delete",
        disk_delete,
        parents=[js, cf],
        help="delete a disk and its snapshots (backups are kept)",
    )
    p.add_argument("disk")
    p = verb(
        disk,
        "attach",
        lambda bv, a: show_object(bv.attach_disk(a.disk, a.server, role=a.role), a),
        parents=[js],
        help="attach a disk to a server",
    )
    p.add_argument("disk")
    p.add_argument("--server", required=True)
    p.add_argument("--role", default="data", choices=("system", "data"))
    p = verb(
        disk,
        "detach",
        lambda bv, a: show_object(bv.detach_disk(a.disk), a),
        parents=[js],
        help="detach a disk from its server",
    )
    p.add_argument("disk")

    # job
    job = nouns.add_parser("job", help="transfers and other long operations").add_subparsers(
        dest="verb", metavar="VERB", required=True, parser_class=ArgumentParser
    )
    p = verb(
        job,
        "list",
        lambda bv, a: show_list(JOB_COLUMNS, "no jobs")(bv.list_jobs(active=a.active), a),
        parents=[js],
        help="list jobs",
    )
    p.add_argument("--active", action="store_true", help="only queued and running jobs")
    p = verb(
        job,
        "show",
        lambda bv, a: show_object(bv.get_job(a.job), a),
        parents=[js],
        help="show a job",
    )
    p.add_argument("job")
    p = verb(
        job,
        "cancel",
        lambda bv, a: show_object(bv.cancel_job(a.job), a),
        parents=[js, cf],
        help="cancel a running job",
    )
    p.add_argument("job")

    # events
    p = nouns.add_parser("events", parents=[js], help="audit log: who did what, when")
    p.set_defaults(
        handler=lambda bv, a: show_list(EVENT_COLUMNS, "no events")(
            bv.events(limit=a.limit, object_ref=a.object), a
        )
    )
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--object", help="only events about this id or name")

    from tui.cli import transfers as cli_transfers

    cli_transfers.add_nouns(nouns, verb, js, cf)
    cli_transfers.add_disk_and_server_verbs(disk, server, verb, js, cf)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.noun is None:
        from tui.console.app import run_console

        return run_console(
            home=args.home, catalog=args.catalog, demo=args.demo, read_only=args.read_only
        )
    try:
        bv = Blockvault.open(home=args.home, catalog_url=args.catalog)
        try:
            args.handler(bv, args)
        finally:
            bv.close()
    except Cancelled:
        output.err.print(
            "blockvault: cancelled; nothing partial is visible, run it again to resume"
        )
        return 130
    except BlockvaultError as exc:
        sys.stderr.write(f"blockvault: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("blockvault: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
