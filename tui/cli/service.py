"""`blockvault service`: the scheduler in the foreground (for systemd), its unit, its status.

`blockvault service [--tick SECONDS] [--once]` runs due policies, retention, drills, GC windows
and jobs handed over with `--background`, and logs one plain line per event (stdout; failures
on stderr). Under systemd (JOURNAL_STREAM set) each line carries its syslog priority and no
time stamp, which the journal adds; elsewhere it starts with the local time. SIGTERM or
SIGINT stops it cleanly: running jobs are cancelled, waited for, and it exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from core.api import printable
from tui.cli import output
from tui.cli.common import ArgumentParser, add_verb, json_parent, show_list

if TYPE_CHECKING:
    from core.api import Blockvault

SERVICE_COLUMNS = ("host", "pid", "actor", "started_at", "beat_at", "jobs")
PRIORITY = {"info": "<6>", "error": "<3>"}  # sd-daemon(3) prefixes the journal reads


def log_line(level: str, line: str) -> None:
    """One event: to the journal with its priority, else with the local time."""
    text = printable(line)
    if os.environ.get("JOURNAL_STREAM"):
        text = f"{PRIORITY.get(level, '<6>')}{text}"
    else:
        text = f"{datetime.now().astimezone().isoformat(timespec='seconds')} {text}"
    stream = sys.stderr if level == "error" else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def tick_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tick takes seconds, not {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError("--tick must be between 0.05 and 3600 seconds")
    return value


def service_run(bv: Blockvault, a: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT (exit 0), or `--once`: one round, `policy run`'s codes."""
    service = bv.make_service(tick=a.tick, log=log_line)
    previous = {
        sig: signal.signal(sig, lambda _signum, _frame: service.stop())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        return service.run(once=a.once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def service_install(bv: Blockvault, a: argparse.Namespace) -> None:
    unit = bv.service_unit(user=a.user) if a.print else bv.install_service(user=a.user)
    if a.print:
        sys.stdout.write(unit["text"])
        return
    output.out.print(printable(f"wrote {unit['path']}"), markup=False)
    output.out.print("enable and start it:", markup=False)
    for line in unit["enable"]:
        output.out.print(printable(f"  {line}"), markup=False)


def service_status(bv: Blockvault, a: argparse.Namespace) -> int:
    """The services beating for this catalog; exits 1 when none is."""
    running = bv.running_services()
    show_list(SERVICE_COLUMNS, "no blockvault service is running for this catalog")(running, a)
    return 0 if running else 1


def add_to(noun: argparse.ArgumentParser) -> None:
    js = json_parent()
    noun.description = "Without a verb: run the service in the foreground until SIGTERM/SIGINT."
    noun.set_defaults(handler=service_run)
    noun.add_argument(
        "--tick",
        type=tick_arg,
        default=5.0,
        metavar="SECONDS",
        help="look for due work this often (default 5)",
    )
    noun.add_argument(
        "--once",
        action="store_true",
        help="one round, then exit (0 all due backups succeeded, 3 some failed, 1 none ran)",
    )
    verbs = noun.add_subparsers(
        dest="verb", metavar="VERB", required=False, parser_class=ArgumentParser
    )
    p = add_verb(
        verbs,
        "install",
        service_install,
        help="write the systemd unit (/etc/systemd/system, or the user's with --user)",
    )
    p.add_argument("--user", action="store_true", help="a user unit: ~/.config/systemd/user")
    p.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    add_verb(
        verbs,
        "status",
        service_status,
        parents=[js],
        help="the services running for this catalog (exits 1 when none is)",
    )
