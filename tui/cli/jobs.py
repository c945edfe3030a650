"""`blockvault job` (transfers and other long operations) and `blockvault events` (audit log,
alerts; `--follow` streams them)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from core.api import printable
from tui.cli import output
from tui.cli.common import (
    add_json_option,
    add_verb,
    confirm_parent,
    count_arg,
    json_parent,
    show_list,
    show_object,
    verbs_of,
)

if TYPE_CHECKING:
    from core.api import Blockvault

JOB_COLUMNS = (
    "id",
    "kind",
    "target_name",
    "host",
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


def add_to(noun: argparse.ArgumentParser) -> None:
    js, cf = json_parent(), confirm_parent()
    job = verbs_of(noun)
    p = add_verb(
        job,
        "list",
        lambda bv, a: show_list(JOB_COLUMNS, "no jobs")(bv.list_jobs(active=a.active), a),
        parents=[js],
        help="list jobs",
    )
    p.add_argument("--active", action="store_true", help="only queued and running jobs")
    p = add_verb(
        job,
        "show",
        lambda bv, a: show_object(bv.get_job(a.job), a),
        parents=[js],
        help="show a job",
    )
    p.add_argument("job")
    p = add_verb(
        job,
        "cancel",
        lambda bv, a: show_object(bv.cancel_job(a.job), a),
        parents=[js, cf],
        help="cancel a running job",
    )
    p.add_argument("job")


def add_events_to(p: argparse.ArgumentParser) -> None:
    """`events`: a noun without verbs."""
    add_json_option(p)
    p.set_defaults(handler=events_command)
    p.add_argument(
        "--limit",
        type=count_arg(1, 100_000, "--limit"),
        help="how many of the newest events (default 50; 10 before --follow streams)",
    )
    p.add_argument("--object", help="only events about this id or name")
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="print the newest events oldest first, then each new one as it is recorded "
        "(--json: one JSON object a line); Ctrl-C ends it",
    )


FOLLOW_POLL_SECONDS = 0.5
#: ids a PostgreSQL catalog hands out may commit out of order: look this far back each poll
FOLLOW_LOOKBACK = 200


def events_command(bv: Blockvault, args: argparse.Namespace) -> int:
    if not args.follow:
        rows = bv.events(limit=args.limit or 50, object_ref=args.object)
        show_list(EVENT_COLUMNS, "no events")(rows, args)
        return 0
    try:
        follow_events(bv, args)
    except KeyboardInterrupt:  # how a follower ends: not an error
        pass
    except BrokenPipeError:  # `events --follow | head`
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def follow_events(bv: Blockvault, args: argparse.Namespace) -> None:
    """Print the newest events, then poll the catalog by event id (any process sharing it may
    record one) and print each new event once, in id order."""
    newest = bv.events(limit=1)
    start = newest[0]["id"] if newest else 0  # older ids than this are history
    history = reversed(bv.events(limit=args.limit or 10, object_ref=args.object))
    seen: set[int] = set()
    last = start
    batch = list(history)
    while True:
        for event in batch:
            if event["id"] in seen:
                continue
            seen.add(event["id"])
            last = max(last, event["id"])
            _print_event(event, args)
        floor = max(start, last - FOLLOW_LOOKBACK)
        seen = {i for i in seen if i > floor}
        time.sleep(FOLLOW_POLL_SECONDS)
        batch = bv.events(limit=100_000, object_ref=args.object, after_id=floor)


def _print_event(event: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        output.print_json(event)
        return
    what = event["object_name"] or event["object_id"]
    line = (
        f"{event['created_at']}  {event['actor']}  {event['action']}  "
        f"{event['object_kind']} {what}" + (f"  {event['detail']}" if event["detail"] else "")
    )
    sys.stdout.write(printable(line) + "\n")
    sys.stdout.flush()
