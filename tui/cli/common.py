"""What the CLI's nouns share: the parser class, parent parsers, argument types, printing, plans,
jobs and prompts. Imports no noun module, so the nouns and main.py can all import it."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from core.api import Cancelled, UserError, printable, refused
from tui.cli import output

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of --help)
if TYPE_CHECKING:
    from typing import Any

    from core.api import Blockvault, Plan

    Handler = Callable[[Blockvault, argparse.Namespace], Any]

Nouns = argparse._SubParsersAction  # what `add_subparsers()` returns: nouns or a noun's verbs

# `vault import` and `backup list` print the same table
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line (one JSON object with --json) and exits 2."""

    #: set by `main` from the command line: usage errors as JSON too
    json_errors = False

    def error(self, message: str) -> None:  # type: ignore[override]
        output.print_error(
            2, "usage", f"{message} (see {self.prog} --help)", as_json=self.json_errors
        )
        sys.exit(2)


# --- building the parser --------------------------------------------------------------------


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """`--json` and `--format table|tsv|json` (README "Output for scripts")."""
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (aligned text; whole rows when piped), tsv (a header line, then "
        "tab-separated raw values: bytes, ISO 8601 times) or json (as --json)",
    )


FORMATS = ("table", "tsv", "json")


def wants_json(argv: Sequence[str]) -> bool:
    """Whether a command line asks for JSON (errors then go to stderr as one JSON object),
    read before parsing: a usage error happens before there is a parsed namespace."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            return False
        if arg == "--json" or arg == "--format=json":
            return True
        if arg == "--format" and args[i + 1 : i + 2] == ["json"]:
            return True
    return False


def json_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_json_option(parent)
    return parent


def background_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--background",
        action="store_true",
        help="hand the job to the blockvault service, which runs it whatever happens to this "
        "session; the progress is followed here, Ctrl-C detaches, `job cancel` stops it",
    )
    return parent


def confirm_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parent.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    return parent


def verbs_of(noun: argparse.ArgumentParser) -> Nouns:
    """What the verbs of `blockvault NOUN VERB` are added to (one is required)."""
    return noun.add_subparsers(
        dest="verb", metavar="VERB", required=True, parser_class=ArgumentParser
    )


def add_verb(
    verbs: Nouns,
    name: str,
    handler: Handler,
    *,
    parents: Sequence[argparse.ArgumentParser] = (),
    help: str = "",
) -> ArgumentParser:
    """A verb that runs `handler(bv, args)`; returns its parser for the arguments."""
    sub = verbs.add_parser(
        name,
        parents=list(parents),
        help=help,
        description=help.replace("%%", "%") if help else help,
    )
    sub.set_defaults(handler=handler)
    return sub


def size_arg(text: str) -> int:
    from core.api import parse_size  # only when a size is given: --help does not load it

    try:
        return parse_size(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count_arg(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type for a bounded whole number (so a huge one is a usage error)."""

    def parse(text: str) -> int:
        from core.api import parse_count  # only when a count is given: --help does not load it

        try:
            return parse_count(text, low=low, high=high, what=what)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


# --- printing results -----------------------------------------------------------------------


def show_list(columns: tuple[str, ...], empty: str) -> Callable[[Any, argparse.Namespace], None]:
    """A list verb's output: a JSON array of objects, or a table (text or TSV) of `columns`."""

    def render(rows: Any, args: argparse.Namespace) -> None:
        if args.json:
            output.print_json(rows)
        else:
            shown = [
                {**r, "disks": ", ".join(d["name"] for d in r["disks"])} if "disks" in r else r
                for r in rows
            ]
            output.print_table(shown, columns, empty=empty, fmt=_format(args))

    return render


def _format(args: argparse.Namespace) -> str:
    return getattr(args, "format", "table")


def show_object(data: Any, args: argparse.Namespace) -> None:
    """A one-object verb's output: a JSON object, or `key  value` lines (TSV with --format)."""
    if args.json:
        output.print_json(data)
    else:
        output.print_object(data, fmt=_format(args))


def show_created(kind: str, data: dict[str, Any], args: argparse.Namespace) -> None:
    """A create's output: as text, first the line naming what was made, then the object."""
    if not args.json and _format(args) == "table":
        from tui.cli.results import created

        output.out.print(created(kind, data), markup=False)
    show_object(data, args)


# --- plans and jobs -------------------------------------------------------------------------


def print_dry_run(args: argparse.Namespace, plan: Plan) -> None:
    """`--dry-run`: the plan as text or JSON; a refused plan still exits non-zero."""
    if args.json:
        output.print_json({**plan.to_dict(), "dry_run": True})
    else:
        output.print_plan(plan, dry_run=True)
    if not plan.allowed:
        raise refused(plan.refusal or "refused")


def run_planned(
    args: argparse.Namespace,
    plan: Plan,
    execute: Callable[[Plan], Any],
    *,
    show_result: bool = True,
) -> Any:
    """Dry run prints the plan; otherwise confirm it and execute exactly that plan (the core
    refuses with the new plan if the state changed since), then print the result."""
    from core.api import Plan  # loaded already: the façade made `plan`

    if args.dry_run:
        return print_dry_run(args, plan)
    output.confirm(plan, yes=args.yes)
    result = execute(plan)
    if isinstance(result, Plan):
        if args.json:
            output.print_json({**result.to_dict(), "status": "done"})
        else:
            output.out.print(printable(f"done: {result.action} {result.target}"), markup=False)
        return None
    if show_result:
        show_object(result, args)
    return result


def run_job(handle: Any, args: argparse.Namespace, description: str) -> Any:
    """Run a job in the foreground with a progress bar or JSON lines; Ctrl-C cancels it."""
    with output.ProgressPrinter(as_json=args.json, description=printable(description)) as printer:
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
    return print_job_result(args, handle.id, handle.wait(), kind=handle.kind)


def print_job_result(args: argparse.Namespace, job_id: str, result: Any, *, kind: str) -> Any:
    """A finished job: with --json the last JSON line, `{"type": "result", "job_id", ...}`;
    as text what it made or overwrote and what next (`results.job_lines`), else its summary
    or its result object."""
    from tui.cli.results import job_lines

    if args.json:
        output.print_json({"type": "result", "job_id": job_id, **result})
    elif (lines := job_lines(kind, result)) is not None:
        for line in lines:
            output.out.print(line, markup=False)
    elif "summary" in result:
        output.out.print(printable(result["summary"]), markup=False)
    else:
        output.print_object(result, fmt=_format(args))
    return result


def run_background(
    bv: Blockvault,
    args: argparse.Namespace,
    verb: str,
    arguments: dict[str, Any],
    *,
    description: str,
    plan: Plan | None = None,
) -> Any:
    """`--background`: hand the job (with the plan confirmed) to the service, then follow it
    with the same progress and result as `run_job`. Ctrl-C detaches: the job goes on."""
    job = bv.submit_job(verb, arguments, plan=plan)
    if args.json:
        output.print_json({"type": "queued", "job_id": job["id"]})
    else:
        output.err.print(printable(f"handed to the service as job {job['id']}"), markup=False)
    followed = bv.follow_job(job["id"])
    try:
        with output.ProgressPrinter(
            as_json=args.json, description=printable(description)
        ) as printer:
            followed.subscribe(printer)
            result = followed.wait()
    except KeyboardInterrupt:
        sys.stderr.write(
            f"detached; `blockvault job show {job['id']}` / `job cancel {job['id']}`\n"
        )
        return None
    return print_job_result(args, job["id"], result, kind=verb)


def run_planned_job(
    args: argparse.Namespace, plan: Plan, start: Callable[[Plan], Any], *, description: str
) -> None:
    """`run_planned` for a job: dry run, or confirm, then `run_job(start(plan))`."""
    run_planned(
        args,
        plan,
        lambda confirmed: run_job(start(confirmed), args, description),
        show_result=False,
    )


# --- prompts --------------------------------------------------------------------------------


def read_new_passphrase() -> str:
    """BLOCKVAULT_PASSPHRASE, or asked twice on a terminal; never a command-line argument."""
    passphrase = os.environ.get("BLOCKVAULT_PASSPHRASE")
    if passphrase:
        return passphrase
    if not sys.stdin.isatty():
        raise UserError("--encrypt needs a passphrase: set BLOCKVAULT_PASSPHRASE")
    import getpass  # only to ask: termios is not needed otherwise

    first = getpass.getpass("New vault passphrase: ")
    if not first or first != getpass.getpass("Repeat passphrase: "):
        raise UserError("passphrases are empty or do not match")
    return first
