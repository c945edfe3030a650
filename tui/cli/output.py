"""Printing for the CLI: tables, JSON, plans, confirmations and progress bars (rich).

rich, humanize, datetime and json are imported by what prints with them (lazy: 35 ms that
`--help`, `--version` and completion never need, and `--json` needs only json); `out` and
`err`, the two rich consoles, are made on first use.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

from core.api import Aborted, UserError, printable, refused

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of --help)
if TYPE_CHECKING:
    from typing import Any

    from rich.console import Console
    from rich.progress import Progress

    from core.api import Plan, ProgressEvent


@functools.cache
def console(*, stderr: bool = False) -> Console:
    """The rich console on stdout (`out`) or stderr (`err`). Lines are never wrapped by rich
    (`soft_wrap`): a pipe gets each line whole, a terminal wraps it itself."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def __getattr__(name: str) -> Any:
    """`output.out` and `output.err`, the two consoles, made when first used."""
    if name == "out":
        return console()
    if name == "err":
        return console(stderr=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: fields holding a byte count that do not say so in their name (`bytes_*` and `*_bytes` do)
SIZE_FIELDS = {"size", "allocated", "disk_size", "growth_per_day"}


def is_size(key: str) -> bool:
    """Whether a field holds bytes: printed in IEC units (`4.0 MiB`) as text, bytes in JSON."""
    return key in SIZE_FIELDS or key.startswith("bytes_") or key.endswith("_bytes")


def print_json(data: Any) -> None:
    """One line of JSON; a list is written item by item (the same bytes as one dumps), so
    100,000 backups never make one 60 MB string."""
    import json

    write = sys.stdout.write
    if isinstance(data, list):
        write("[")
        for n, item in enumerate(data):
            write(", " + json.dumps(item, default=str) if n else json.dumps(item, default=str))
        write("]\n")
    else:
        write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def print_error(code: int, kind: str, message: str, *, as_json: bool) -> None:
    """An error as one line on stderr: `blockvault: error: ...`, or with --json one object
    `{"error": {"code", "kind", "message"}}` (README "Exit codes")."""
    if as_json:
        import json

        error = {"code": code, "kind": kind, "message": message}
        sys.stderr.write(json.dumps({"error": error}, ensure_ascii=False) + "\n")
    else:
        label = "" if kind in ("internal", "interrupted") else "error: "  # says it itself
        sys.stderr.write(f"blockvault: {label}{printable(message, newlines=True)}\n")
    sys.stderr.flush()


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if is_size(key) and isinstance(value, int | float) and not isinstance(value, bool):
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
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return printable(", ".join(str(v) for v in value)) or "-"
    if isinstance(value, list | dict):
        import json

        return printable(json.dumps(value, default=str))
    return printable(value)


def _raw(value: Any) -> str:
    """A value as a TSV field: bytes and ISO times as they are, no tab or newline inside."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        import json

        value = json.dumps(value, default=str)
    return printable(str(value)).replace("\t", " ")


def _header(column: str) -> str:
    return column.upper().replace("_", " ")


#: beyond this many rows a table is printed plain on a terminal too: rich lays out every
#: cell of a table at once (a `backup list` of 100,000 backups took 10 minutes and 1.4 GB)
PLAIN_TABLE_ROWS = 1000


def print_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, empty: str, fmt: str = "table"
) -> None:
    """Rows as a table: aligned plain text with every row whole when piped; on a terminal a
    rich table, one line a row (plain beyond PLAIN_TABLE_ROWS rows); `fmt="tsv"`: a header
    line, then tab-separated raw values."""
    if fmt == "tsv":
        lines = ["\t".join(columns)]
        lines += ["\t".join(_raw(row.get(c)) for c in columns) for row in rows]
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        return
    if not rows:
        console().print(empty, markup=False)
        return
    made = functools.lru_cache(maxsize=8192)(_cell)  # repeated sizes and times: made once
    cells = [[made(c, row.get(c)) for c in columns] for row in rows]
    if not console().is_terminal or len(rows) > PLAIN_TABLE_ROWS:
        print_plain_table([_header(c) for c in columns], cells)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(_header(column), no_wrap=True, overflow="ellipsis")
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    console().print(table)


def print_plain_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = ""
) -> None:
    """Columns padded to their widest cell, two spaces apart, nothing cut or wrapped: what
    `grep`, `awk` and `cut` see when a table is piped."""
    from rich.cells import cell_len

    widths = [max(cell_len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell + " " * (width - cell_len(cell)) for cell, width in zip(cells, widths, strict=True)
        )
        return (indent + "  ".join(padded)).rstrip()

    sys.stdout.write("".join(line(row) + "\n" for row in [header, *rows]))
    sys.stdout.flush()


def print_object(data: dict[str, Any], *, fmt: str = "table") -> None:
    """One object: `key  value` lines (sizes in IEC units, times with their age); a list of
    objects in it (a server's disks) follows as a table of its own."""
    tables = {
        k: v
        for k, v in data.items()
        if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)
    }
    if fmt == "tsv":
        lines = ["key\tvalue", *(f"{printable(k)}\t{_raw(v)}" for k, v in data.items())]
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        return
    width = max(len(k) for k in data) if data else 0
    for key, value in data.items():
        if key in tables:
            continue
        shown = _cell(key, value)
        if key.endswith("_at") and isinstance(value, str):
            shown = f"{printable(value)} ({shown})"
        console().print(f"{printable(key):<{width}}  {shown}", markup=False)
    for key, rows in tables.items():
        console().print(f"{printable(key)}:", markup=False)
        columns = list(dict.fromkeys(c for row in rows for c in row))
        cells = [[_cell(c, row.get(c)) for c in columns] for row in rows]
        print_plain_table([_header(c) for c in columns], cells, indent="  ")


def print_plan(plan: Plan, *, dry_run: bool = False) -> None:
    """A plan's lines; a dry run's say what it "would" do."""
    for line in plan.lines(dry_run=dry_run):
        console().print(printable(line), markup=False)


def confirm(plan: Plan, *, yes: bool) -> None:
    """Refuse a refused plan; otherwise ask (unless --yes). Never hang a script on a prompt."""
    if not plan.allowed:
        raise refused(plan.refusal or "refused")
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
        raise Aborted("aborted, nothing changed")


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
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TextColumn("{task.fields[rate]}"),  # MiB/s: rich's own speed is in MB/s
                TimeRemainingColumn(),
                TextColumn("{task.fields[phase]}"),
                console=console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=None, phase="", rate="")
        return self

    def __call__(self, event: ProgressEvent) -> None:
        if self.as_json:
            print_json(event.to_dict())
        elif self.progress is not None:
            from core.api import human_size

            self.progress.update(
                self.task,
                total=event.bytes_total or None,
                completed=event.bytes_done,
                rate=f"{human_size(int(event.rate))}/s" if event.rate else "",
                phase=progress_text(event),
            )

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
