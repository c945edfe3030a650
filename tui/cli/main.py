"""`blockvault <noun> <verb>`: the command line for scripts, cron and admins. No args opens the console.

Every verb calls one façade method; user mistakes end in one line on stderr and a non-zero exit.
Each noun registers its verbs from its own module; this one only assembles them and runs one.
"""

from __future__ import annotations

import argparse
import sys

from core.api import Blockvault, BlockvaultError, Cancelled, printable
from tui.cli import (
    backups,
    disks,
    jobs,
    output,
    policies,
    servers,
    service,
    snapshots,
    status,
    vaults,
)
from tui.cli.common import ArgumentParser

# in `blockvault --help` order; jobs adds both `job` and `events`
NOUN_MODULES = (servers, disks, jobs, vaults, backups, policies, snapshots, service, status)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="blockvault",
        description="Disk snapshots and backups for admin hosts. Without a command, opens the console.",
    )
    parser.add_argument(
        "--home", help="keep config, catalog, pool and vault under DIR (BLOCKVAULT_HOME)"
    )
    parser.add_argument("--catalog", help="catalog SQLAlchemy URL (BLOCKVAULT_CATALOG)")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an internal error"
    )
    parser.add_argument("--demo", action="store_true", help="open the console on a throwaway demo")
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="change nothing: the catalog opened read-only, destructive actions hidden",
    )
    nouns = parser.add_subparsers(dest="noun", metavar="NOUN", parser_class=ArgumentParser)
    for module in NOUN_MODULES:
        module.add_to(nouns)
    return parser


INTERNAL_ERROR = 70  # EX_SOFTWARE: distinct from user errors (2), failures (1), cancel (130)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.noun is None:
        from tui.console.app import run_console

        return run_console(
            home=args.home, catalog=args.catalog, demo=args.demo, read_only=args.read_only
        )
    try:
        bv = Blockvault.open(home=args.home, catalog_url=args.catalog, read_only=args.read_only)
        try:
            code = args.handler(bv, args)  # a verb with its own exit codes returns one
        finally:
            bv.close()
    except Cancelled:
        output.err.print(
            "blockvault: cancelled; nothing partial is visible, run it again to resume"
        )
        return 130
    except BlockvaultError as exc:
        sys.stderr.write(f"blockvault: error: {printable(exc, newlines=True)}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("blockvault: interrupted\n")
        return 130
    except Exception as exc:  # a bug, never a user's mistake: one line unless --debug
        if args.debug:
            raise
        what = printable(f"{type(exc).__name__}: {exc}")[:300]
        sys.stderr.write(f"blockvault: internal error: {what}; run with --debug for details\n")
        return INTERNAL_ERROR
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
