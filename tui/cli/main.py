"""`blockvault <noun> <verb>`: the command line for scripts, cron and admins. No args opens the console.

Every verb calls one façade method; user mistakes end in one line on stderr and a non-zero exit.
Each noun adds its verbs from its own module; this one only assembles them and runs one.

`--help`, `--version` and `completion` cost about as much as Python starting: the parser is
built from light modules, and only the noun on the command line gets its verbs (all of them
cost 30 ms to import and build). The façade (SQLModel, the catalog) is imported to run a verb.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Sequence

from core.api import EXIT_CODES, BlockvaultError, Cancelled, __version__, exit_status, printable
from tui.cli import output
from tui.cli.common import ArgumentParser, wants_json

#: in `blockvault --help` order: noun -> the `tui.cli` module and its function that add the
#: noun's verbs and options, and its help (None: hidden)
NOUNS = {
    "server": ("servers", "add_to", "servers that disks attach to"),
    "disk": ("disks", "add_to", "disks: pool images and registered files or devices"),
    "job": ("jobs", "add_to", "transfers and other long operations"),
    "events": ("jobs", "add_events_to", "audit log: who did what, when"),
    "vault": ("vaults", "add_to", "where backups live: a local directory or S3-compatible storage"),
    "backup": ("backups", "add_to", "block-level, deduplicated backups in a vault"),
    "policy": ("policies", "add_to", "automatic backups: schedule, vault, retention, drills"),
    "snapshot": ("snapshots", "add_to", "fast local snapshots stored with the disk"),
    "service": (
        "service",
        "add_to",
        "run policies, retention, drills, GC windows and --background jobs (for systemd)",
    ),
    "status": (
        "status",
        "add_to",
        "protection status of every disk (Nagios exit codes, Prometheus textfile)",
    ),
    "web": ("web", "add_to", "serve the console to a browser (loopback only: no authentication)"),
    "config": ("config", "add_to", "effective settings and where each came from"),
    "completion": ("completion", "add_to", "print a shell completion script (bash, zsh, fish)"),
    "__complete": ("completion", "add_complete_to", None),
}
#: further verbs of a noun, each module's `add_to(noun)` run after the noun's own module
MORE_VERBS = {"backup": ("mounts",)}


# argparse translates its own words ("options", "show this help message and exit") for each
# parser it makes, and gettext looks for message catalogs on disk every time: half the time
# of building the parser. The words do not change while we run: look each up once.
argparse._ = functools.cache(argparse._)  # type: ignore[attr-defined]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every noun and verb. Given the command line `argv`, only its noun gets
    its verbs, the others' modules are not even imported (all of them cost 30 ms, as much as
    Python starting): a first parse finds the noun, or ends at --help or --version."""
    parser = ArgumentParser(
        prog="blockvault",
        description="Disk snapshots and backups for admin hosts. Without a command, opens the "
        "console (in a terminal; without one it prints this usage and exits 2).",
        epilog=exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"blockvault {__version__}")
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
    for name, (_, _, text) in NOUNS.items():  # without -h: one without its verbs takes anything
        nouns.add_parser(name, add_help=False, **({"help": text} if text else {}))
    wanted = NOUNS if argv is None else [parser.parse_known_args(argv)[0].noun]
    for name in wanted:
        if name is not None:
            add_verbs(nouns.choices[name], *NOUNS[name][:2])
    return parser


def add_verbs(noun: argparse.ArgumentParser, module: str, function: str) -> None:
    """Give a listed noun its -h and, from its module (imported now), its verbs and options."""
    noun.add_argument(
        "-h",
        "--help",
        action="help",
        default=argparse.SUPPRESS,
        help="show this help message and exit",
    )
    getattr(importlib.import_module(f"tui.cli.{module}"), function)(noun)
    for more in MORE_VERBS.get(noun.prog.rsplit(" ", 1)[-1], ()):
        importlib.import_module(f"tui.cli.{more}").add_to(noun)


INTERNAL_ERROR = 70  # EX_SOFTWARE: distinct from user errors (2), failures (1), cancel (130)
INTERRUPTED = 130


def exit_codes_text() -> str:
    """The exit codes table (core/base/errors.py EXIT_CODES) for `blockvault --help`."""
    rows = "".join(f"  {code:>3}  {kind:<11} {meaning}\n" for code, kind, meaning in EXIT_CODES)
    return "exit codes (`status` uses the Nagios codes, see status --help):\n" + rows


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    as_json = ArgumentParser.json_errors = wants_json(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "format", None) == "json":
        args.json = True
    if args.noun is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):  # ssh host blockvault, cron
            parser.print_usage(sys.stderr)
            output.print_error(
                2,
                "usage",
                "no command, and the console needs a terminal (see blockvault --help)",
                as_json=as_json,
            )
            return 2
        from tui.console.app import run_console

        return run_console(
            home=args.home, catalog=args.catalog, demo=args.demo, read_only=args.read_only
        )
    try:
        code = run(args)
    except Cancelled:
        message = "cancelled; nothing partial is visible, run it again to resume"
        output.print_error(INTERRUPTED, "interrupted", message, as_json=as_json)
        return INTERRUPTED
    except BlockvaultError as exc:
        code, kind = exit_status(exc)
        output.print_error(code, kind, str(exc), as_json=as_json)
        return code
    except KeyboardInterrupt:
        output.print_error(INTERRUPTED, "interrupted", "interrupted", as_json=as_json)
        return INTERRUPTED
    except Exception as exc:  # a bug, never a user's mistake: one line unless --debug
        if args.debug:
            raise
        what = printable(f"{type(exc).__name__}: {exc}")[:300]
        message = f"internal error: {what}; run with --debug for details"
        output.print_error(INTERNAL_ERROR, "internal", message, as_json=as_json)
        return INTERNAL_ERROR
    return code if isinstance(code, int) else 0


def run(args: argparse.Namespace) -> object:
    """Run a verb with the façade open; a command that needs no catalog (`completion`) as is."""
    if "run_without_catalog" in args:
        return args.run_without_catalog(args, build_parser)
    from core.api import Blockvault  # lazy: SQLModel and the catalog, 0.6 s --help never pays

    bv = Blockvault.open(home=args.home, catalog_url=args.catalog, read_only=args.read_only)
    try:
        return args.handler(bv, args)  # a verb with its own exit codes returns one
    finally:
        bv.close()


if __name__ == "__main__":
    sys.exit(main())
