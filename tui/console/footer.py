"""The footer: this view's keys on the left, as many as fit whole; filter, help, the palette
and quit pinned on the right, so `/ ? ^p q` stay visible at 80 columns (lazygit keeps `?`)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import HorizontalGroup
from textual.widget import Widget
from textual.widgets import Footer

PINNED = ("filter", "help", "command_palette", "quit")  # in this order, on the right


class ConsoleFooter(Footer):
    """Textual's footer, compact, its keys for PINNED actions gathered in one group docked
    right (Textual docks only its palette key there); a key that would be cut is hidden."""

    def __init__(self) -> None:
        super().__init__(compact=True)

    def compose(self) -> ComposeResult:
        pinned: dict[str, Widget] = {}
        for widget in super().compose():
            action = getattr(widget, "action", None)
            if action in PINNED:
                widget.remove_class("-command-palette")  # docked with the others instead
                pinned[action] = widget
            else:
                yield widget
        if pinned:
            yield HorizontalGroup(*(pinned[a] for a in PINNED if a in pinned), id="pinned-keys")
        self.call_after_refresh(self.hide_cut_keys)

    def on_resize(self) -> None:
        self.call_after_refresh(self.hide_cut_keys)

    def hide_cut_keys(self) -> None:
        """Show the left keys, in order, while each fits whole beside the pinned ones (widths
        from what each key draws: the layout may not have run yet)."""
        pinned = self.query("#pinned-keys")
        room = self.size.width - (_drawn_width(pinned.first()) if pinned else 0)
        used = 0
        for key in self.children:
            if key.id != "pinned-keys":
                used += _drawn_width(key)
                key.display = used <= room


def _drawn_width(widget: Widget) -> int:
    """The cells a footer key (or a group of them) takes: its text, margins, padding, border."""
    if widget.children:
        inner = sum(_drawn_width(child) for child in widget.children)
    else:
        drawn = widget.render()
        inner = drawn.cell_len if isinstance(drawn, Text) else widget.outer_size.width
    return inner + widget.styles.gutter.width + widget.styles.margin.width
