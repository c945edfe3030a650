"""Printing for the CLI: tables, JSON, plans, confirmations and progress bars (rich).

rich, humanize, datetime and json are imported by what prints with them (lazy: 35 ms that
`--help`, `--version` and completion never need, and `--json` needs only json); `out` and
`err`, the two rich consoles, are made on first use.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

from core.api import Conflict, UserError, printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of --help)
if TYPE_CHECKING:
    from typing import Any

    from rich.console import Console
    from rich.progress import Progress

    from core.api import Plan, ProgressEvent


@functools.cache
def console(*, stderr: bool = False) -> Console:
    """The rich console on stdout (`out`) or stderr (`err`)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def __getattr__(name: str) -> Any:
    """`output.out` and `output.err`, the two consoles, made when first used."""
    if name == "out":
        return console()
    if name == "err":
        return console(stderr=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SIZE_FIELDS = {
    "size",
    "allocated",
    "bytes_stored",
    "bytes_new",
    "disk_size",
    "logical_bytes",
    "stored_bytes",
    "unique_bytes",
    "usage_bytes",
    "quota_bytes",
    "growth_per_day",
    "estimate_bytes",
}


def print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in SIZE_FIELDS and isinstance(value, int | float):
        from core.api import human_size

        return human_size(int(value))
    if key.endswith("_at") and isinstance(value, str):
        from datetime import UTC, datetime

        import humanize

        try:
            moment = datetime.fromisoformat(value)
            return humanize.naturaltime(datetime.now(UTC) - moment)
        except ValueError:
            return printable(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return printable(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, empty: str) -> None:
    if not rows:
        console().print(empty)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column.upper().replace("_", " "))
    for row in rows:
        table.add_row(*(Text(_cell(c, row.get(c))) for c in columns))
    console().print(table)


def print_object(data: dict[str, Any]) -> None:
    width = max(len(k) for k in data) if data else 0
    for key, value in data.items():
        if isinstance(value, list | dict):
            import json

            value = json.dumps(value, default=str)
        shown = _cell(key, value)
        if key.endswith("_at") and isinstance(value, str):
            shown = f"{printable(value)} ({shown})"
        console().print(f"{printable(key):<{width}}  {shown}", markup=False)


def print_plan(plan: Plan) -> None:
    for line in plan.lines():
        console().print(printable(line), markup=False)


def confirm(plan: Plan, *, yes: bool) -> None:
    """Refuse a refused plan; otherwise ask (unless --yes). Never hang a script on a prompt."""
    if not plan.allowed:
        raise Conflict(plan.refusal or "refused")
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{plan.action} needs confirmation: run it in a terminal or pass --yes")
    print_plan(plan)
    if plan.confirm_text:
        answer = input(f"Type {printable(plan.confirm_text)!r} to confirm: ").strip()
        ok = answer == plan.confirm_text
    else:
        ok = input("Proceed? [y/N] ").strip().lower() in ("y", "yes")
    if not ok:
        raise UserError("aborted, nothing changed")


def progress_text(event: ProgressEvent) -> str:
    """The end of a progress line: what the job waits for or its phase and bottleneck, and
    its bandwidth limit ('backing up · network-bound · limited to 20.0 MiB/s')."""
    if event.message and not event.final:
        what = printable(event.message)
    elif event.bottleneck:
        what = f"{event.phase} · {event.bottleneck}-bound"
    else:
        what = event.phase
    return f"{what} · {event.limited}" if event.limited else what


class ProgressPrinter:
    """Progress subscriber: a rich bar on a terminal, JSON lines with --json, quiet otherwise."""

    def __init__(self, *, as_json: bool, description: str) -> None:
        self.as_json = as_json
        self.description = description
        self.progress: Progress | None = None
        self.task = None

    def __enter__(self) -> ProgressPrinter:
        if not self.as_json and console(stderr=True).is_terminal:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[phase]}"),
                console=console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=None, phase="")
        return self

    def __call__(self, event: ProgressEvent) -> None:
        if self.as_json:
            print_json(event.to_dict())
        elif self.progress is not None:
            self.progress.update(
                self.task,
                total=event.bytes_total or None,
                completed=event.bytes_done,
                phase=progress_text(event),
            )

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
