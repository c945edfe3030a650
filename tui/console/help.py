"""The help screen, written from the action registry (so it can never disagree with the keys)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.console.actions import ACTIONS, CATEGORIES, key_label

NAVIGATION = (
    ("tab shift+tab", "move between the panes"),
    ("j k  up down", "move in a pane"),
    ("g G", "first / last row"),
    ("esc", "close a dialog, clear the filter, back from the policies view"),
)


def help_table(hidden: set[str], keymap: dict[str, str] | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for keys, what in NAVIGATION:
        table.add_row(keys, what)
    categories = list(dict.fromkeys((*CATEGORIES, *(action.category for action in ACTIONS))))
    for category in categories:
        shown = [a for a in ACTIONS if a.category == category and a.id not in hidden]
        if not shown:
            continue
        views = {a.view for a in shown}
        where = f"  (in the {views.pop()} view)" if len(views) == 1 and None not in views else ""
        table.add_row("", "")
        table.add_row(Text(category, style="underline"), Text(where.strip(), style="italic"))
        for action in shown:
            table.add_row(key_label(action, keymap), f"{action.label}: {action.help}")
    return table


def help_text(hidden: set[str], keymap: dict[str, str] | None = None) -> str:
    """The help table as plain text (what the screen shows)."""
    console = Console(width=200, file=io.StringIO())
    console.print(help_table(hidden, keymap))
    return console.file.getvalue()  # type: ignore[attr-defined]


class HelpScreen(ModalScreen[None]):
    """Every key; j and k (or the arrows, page keys, g and G) scroll it."""

    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
        Binding("j,down", "scroll('down')", "Down", show=False),
        Binding("k,up", "scroll('up')", "Up", show=False),
        Binding("g,home", "scroll('home')", "Top", show=False),
        Binding("G,end", "scroll('end')", "Bottom", show=False),
    ]

    def __init__(self, hidden: set[str], keymap: dict[str, str] | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.hidden = hidden
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Static(Text("blockvault keys (esc closes, j k scroll)", style="bold"))
            yield Static(help_table(self.hidden, self.keymap))

    def action_scroll(self, where: str) -> None:
        view = self.query_one("#help", VerticalScroll)
        {
            "down": view.scroll_down,
            "up": view.scroll_up,
            "home": view.scroll_home,
            "end": view.scroll_end,
        }[where](animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
