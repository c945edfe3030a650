"""Helpers shared by the CLI's nouns: argument types, printing results, plans and prompts."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from core.api import Plan, UserError, parse_size
from tui.cli import output


def size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def json_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parent


def confirm_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parent.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    return parent


def show_list(columns: tuple[str, ...], empty: str) -> Callable[[Any, argparse.Namespace], None]:
    def render(rows: Any, args: argparse.Namespace) -> None:
        if args.json:
            output.print_json(rows)
        else:
            shown = [
                {**r, "disks": ", ".join(d["name"] for d in r["disks"])} if "disks" in r else r
                for r in rows
            ]
            output.print_table(shown, columns, empty=empty)

    return render


def show_object(data: Any, args: argparse.Namespace) -> None:
    if args.json:
        output.print_json(data)
    else:
        output.print_object(data)


def print_dry_run(args: argparse.Namespace, plan: Plan) -> None:
    """`--dry-run`: the plan as text or JSON; a refused plan still exits non-zero."""
    if args.json:
        output.print_json(plan.to_dict())
    else:
        output.print_plan(plan)
    if not plan.allowed:
        raise UserError(plan.refusal or "refused")


def run_planned(
    args: argparse.Namespace, plan: Plan, execute: Callable[[], Any], *, show_result: bool = True
) -> Any:
    """Dry run prints the plan; otherwise confirm, execute and print the result."""
    if args.dry_run:
        return print_dry_run(args, plan)
    output.confirm(plan, yes=args.yes)
    result = execute()
    if isinstance(result, Plan):
        if args.json:
            output.print_json({**result.to_dict(), "status": "done"})
        else:
            output.out.print(f"done: {result.action} {result.target}", markup=False)
        return None
    if show_result:
        show_object(result, args)
    return result


def read_new_passphrase() -> str:
    """BLOCKVAULT_PASSPHRASE, or asked twice on a terminal; never a command-line argument."""
    passphrase = os.environ.get("BLOCKVAULT_PASSPHRASE")
    if passphrase:
        return passphrase
    if not sys.stdin.isatty():
        raise UserError("--encrypt needs a passphrase: set BLOCKVAULT_PASSPHRASE")
    first = getpass.getpass("New vault passphrase: ")
    if not first or first != getpass.getpass("Repeat passphrase: "):
        raise UserError("passphrases are empty or do not match")
    return first
