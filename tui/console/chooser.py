"""`r` on a disk: every way back for it (its snapshots and backups, newest first), each with
its route and estimated time, the fastest safe one marked and under the cursor; and the full
details of a row (enter on any pane)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Label, Static

from core.api import printable
from tui.console import fmt
from tui.console.details import fields_of
from tui.console.modals import Dialog

FASTEST = "★"


def short_duration(seconds: float) -> str:
    """'~1s', '~4m', '~2h10m': a time cell."""
    whole = max(math.ceil(seconds), 1)
    if whole < 60:
        return f"~{whole}s"
    if whole < 3600:
        return f"~{math.ceil(whole / 60)}m"
    hours, minutes = divmod(math.ceil(whole / 60), 60)
    return f"~{hours}h{minutes:02d}m"


def route_summary(route: dict[str, Any]) -> str:
    """'rollback to snapshot X: reflink clone (constant time), about 1 s'."""
    how = "rollback to snapshot" if route["kind_of"] == "snapshot" else "restore of backup"
    return f"{how} {route['name']}: {route['route']}, about {short_duration(route['estimate_seconds']).lstrip('~')}"


class RestoreChooser(Dialog):
    """Returns the chosen route (a snapshot or backup row of `restore_routes`), or None.

    Enter (or `y`, or Restore) takes the row under the cursor; the next dialog is that
    route's plan, with the disk's name to type, as for any overwrite."""

    DEFAULT_CSS = """
    RestoreChooser #routes {
        height: auto;
        max-height: 12;
    }
    """

    def __init__(self, disk: dict[str, Any], routes: list[dict[str, Any]], now: datetime) -> None:
        super().__init__()
        self.disk = disk
        self.routes = routes
        self.now = now
        self.fastest = next((r for r in routes if r["fastest"]), None)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog chooser"):
            yield Label(
                Text(printable(f"Restore disk {self.disk['name']} from…"), style="bold"),
                id="dialog-title",
            )
            best = (
                f"fastest safe route: {route_summary(self.fastest)}"
                if self.fastest
                else "no route can run now (see why in the list)"
            )
            yield Static(Text(printable(best)), id="fastest")
            yield DataTable(id="routes", cursor_type="row", zebra_stripes=False)
            yield Static("", id="route-note", classes="command")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Restore…", id="restore", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#dialog").styles.width = 100  # wider than other dialogs, where it fits
        table = self.query_one("#routes", DataTable)
        table.add_columns("", "from", "taken", "time", "how")
        for route in self.routes:
            mark = FASTEST if route["fastest"] else ("refused" if route["refusal"] else "")
            table.add_row(
                mark,
                Text(printable(route["name"])),
                fmt.short_age(route["created_at"], self.now),
                short_duration(route["estimate_seconds"]),
                Text(printable(route["how"])),
                key=route["id"],
            )
        if self.fastest is not None:
            table.move_cursor(row=self.routes.index(self.fastest))
        table.focus()
        self._note(table.cursor_row)

    def selected(self) -> dict[str, Any] | None:
        if not self.routes:
            return None
        return self.routes[self.query_one("#routes", DataTable).cursor_row]

    def _note(self, row: int) -> None:
        if not self.routes:
            return
        route = self.routes[row]
        text = route_summary(route)
        if route["refusal"]:
            text = f"refused: {route['refusal']}"
        self.query_one("#route-note", Static).update(Text(printable(text)))

    @on(DataTable.RowHighlighted, "#routes")
    def _moved(self, event: DataTable.RowHighlighted) -> None:
        self._note(event.cursor_row)

    @on(DataTable.RowSelected, "#routes")
    @on(Button.Pressed, "#restore")
    def action_confirm(self) -> None:
        route = self.selected()
        if route is not None:
            self.dismiss(route)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class DetailsModal(Dialog):
    """Enter on a row: every field of it, whole (the panel beside the panes cuts long ones)."""

    def __init__(self, obj: dict[str, Any], *, now: datetime) -> None:
        super().__init__()
        self.obj = obj
        self.pairs = fields_of(obj, now=now)

    def compose(self) -> ComposeResult:
        name = self.obj.get("name", "")
        kind = self.obj.get("kind_of") or self.obj.get("kind") or ""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True, min_width=10)
        grid.add_column(overflow="fold")
        for label, value in self.pairs:
            grid.add_row(label, Text(printable(value)))
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(printable(f"{kind} {name}".strip()), style="bold"), id="dialog-title")
            with VerticalScroll(id="details-box"):
                yield Static(grid, id="details-full")
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close", variant="primary")

    @property
    def plain(self) -> str:
        return "\n".join(f"{label} {value}" for label, value in self.pairs)

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed, "#close")
    def action_confirm(self) -> None:
        self.dismiss(None)
