"""`blockvault status`: is every disk protected? The summary a person reads, the Nagios exit
codes a check reads, and the node_exporter textfile Prometheus reads."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from core.api import printable
from tui.cli import output
from tui.cli.common import add_json_option

if TYPE_CHECKING:
    from core.api import Blockvault

#: the Nagios plugin convention
OK, WARNING, CRITICAL = 0, 1, 2
STATE = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}

COLUMNS = (
    "disk",
    "server",
    "status",
    "policies",
    "last_success_at",
    "next_run_at",
    "last_proven_restore_at",
)

DESCRIPTION = """\
Each disk is protected, overdue (a policy's last slot has no successful backup), failing (its
newest backup failed and none succeeded since) or unprotected (no policy covers it). Prints the
counts, one line per disk that is not protected, and a table of every disk. It also raises the
disk.overdue and disk.failing alerts (events, notify_command) once per disk per spell, as the
service does, so a cron line is enough; `blockvault --read-only status` raises none."""

EPILOG = """\
exit codes (the Nagios plugin convention):
  0  OK        no disk is overdue or failing (unprotected disks are listed, not counted)
  1  WARNING   some disk is overdue, none is failing
  2  CRITICAL  some disk is failing
An error (no catalog, an unwritable FILE, a bad option) prints one line on stderr and exits
non-zero (1 or 2) as every command does: a check that cannot run is never OK.

--prometheus FILE writes the node_exporter textfile format atomically (FILE.tmp, then rename):
blockvault_disk_status{disk,server,status} one-hot (1 for the disk's status, 0 for the others),
blockvault_disk_last_success_timestamp_seconds, blockvault_disk_last_backup_duration_seconds,
blockvault_disk_last_backup_bytes, blockvault_disk_last_proven_restore_timestamp_seconds,
blockvault_vault_stored_bytes{vault}, blockvault_vault_last_success_timestamp_seconds{vault},
blockvault_disks{status}, blockvault_status_timestamp_seconds. A value a disk does not have yet
(never backed up, never drilled) has no sample."""


def add_to(p: argparse.ArgumentParser) -> None:
    """`status`: a noun without verbs, like `events`."""
    p.description, p.epilog = DESCRIPTION, EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_json_option(p)
    p.add_argument(
        "--prometheus",
        metavar="FILE",
        help="also write the node_exporter textfile format to FILE (atomically)",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="print nothing: the exit code says it all"
    )
    p.set_defaults(handler=status_command)


def exit_code(counts: dict[str, int]) -> int:
    if counts.get("failing"):
        return CRITICAL
    if counts.get("overdue"):
        return WARNING
    return OK


def status_command(bv: Blockvault, args: argparse.Namespace) -> int:
    report = bv.protection_status()
    # cron-driven setups get their alerts here too; each is raised once however often we run
    alerts = [] if args.read_only else bv.raise_protection_alerts(report)
    if args.prometheus:
        bv.write_prometheus(args.prometheus, report)
    code = exit_code(report["counts"])
    if args.json:
        output.print_json({**report, "state": STATE[code], "exit_code": code, "alerts": alerts})
    elif not args.quiet:
        print_report(report, code, fmt=args.format)
    return code


def _summary(report: dict[str, Any], code: int) -> str:
    counts = report["counts"]
    order = ("failing", "overdue", "protected", "unprotected")
    parts = ", ".join(f"{counts[name]} {name}" for name in order if counts.get(name))
    return f"BLOCKVAULT {STATE[code]} - {parts or 'no disks'}"


def print_report(report: dict[str, Any], code: int, *, fmt: str = "table") -> None:
    """The summary, the disks in trouble and a table of every disk; `tsv`: the table alone."""
    rows = [{**d, "policies": ", ".join(d["policies"]) or None} for d in report["disks"]]
    if fmt == "tsv":
        output.print_table(rows, COLUMNS, empty="", fmt="tsv")
        return
    lines = [_summary(report, code)]
    rank = {"failing": 0, "overdue": 1, "unprotected": 2}
    troubled = sorted(
        (d for d in report["disks"] if d["status"] != "protected"),
        key=lambda d: (rank.get(d["status"], 3), d["disk"]),
    )
    for disk in troubled:
        where = f" ({disk['server']})" if disk["server"] else ""
        since = f" since {disk['since']}" if disk.get("since") else ""
        lines.append(f"  {disk['disk']}{where}: {disk['status']}{since}: {disk['detail'] or '-'}")
    sys.stdout.write("".join(printable(line) + "\n" for line in lines))
    sys.stdout.flush()
    if report["disks"]:
        output.out.print()
        output.print_table(rows, COLUMNS, empty="no disks")
