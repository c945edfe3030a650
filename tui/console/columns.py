"""Fitting a pane's columns to the width it has, so no pane ever scrolls sideways.

A column is shown at its own width; a name column grows to its longest name while space
remains, and shrinks to its minimum (its names shortened in the middle) when it does not.
When even the minimums do not fit, the columns least needed go first (k9s does the same).
Pure functions: the panes call them on every resize and every new content.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.text import Text

PADDING = 2  # DataTable's cell_padding (1) on each side of every column
CHROME = 3  # a pane's round border (2) and its vertical scrollbar's stable gutter (1)
ESSENTIAL = 1  # columns with `drop` up to this are shown even if a name must be shortened


@dataclass(frozen=True)
class Column:
    """`width`: a fixed column's width, or a name column's narrowest; `drop`: 0 is never
    dropped, else the highest number goes first when the pane is narrow; `grows`: a name
    column, as wide as its longest cell while space remains."""

    label: str
    width: int
    drop: int = 0
    grows: bool = False

    @property
    def least(self) -> int:
        """The narrowest it may be: the header label is never cut."""
        return max(self.width, cell_len(self.label))


def cell_width(cell: Any) -> int:
    """Width in terminal cells of a str or Rich Text cell."""
    if isinstance(cell, Text):
        return cell.cell_len
    return cell_len(str(cell))


def natural_widths(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> list[int]:
    """Each column's width with nothing cut: a name column as wide as its longest cell."""
    widths = [column.least for column in columns]
    growing = [i for i, column in enumerate(columns) if column.grows]
    for cells in rows:
        for i in growing:
            widths[i] = max(widths[i], cell_width(cells[i]))
    return widths


def fit(columns: Sequence[Column], naturals: Sequence[int], space: int) -> list[int | None]:
    """The width of each column in `space` cells (padding included), None for a hidden one.

    Columns are taken in the order they are needed (`drop`). The essential ones (`drop` up
    to ESSENTIAL) are taken whenever they fit, the name shortened for them; the others only
    when the name (the growing column never dropped) still shows whole beside them. One
    that does not fit is left out, and a narrower one after it may still fit. The space left
    then goes to the growing columns, up to their natural width, the most needed first.
    """
    order = sorted(range(len(columns)), key=lambda i: columns[i].drop)
    widths: list[int | None] = [None] * len(columns)
    least = natural = 0  # the cells taken, with the name at its narrowest / whole
    for i in order:
        column = columns[i]
        need = column.least + PADDING
        whole = (naturals[i] if column.grows and column.drop == 0 else column.least) + PADDING
        essential = column.drop <= ESSENTIAL
        if column.drop == 0 or (least + need <= space and (essential or natural + whole <= space)):
            widths[i] = column.least
            least += need
            natural += whole
    for i in order:
        current = widths[i]
        if current is None or not columns[i].grows:
            continue
        extra = max(min(space - least, naturals[i] - current), 0)
        widths[i] = current + extra
        least += extra
    return widths


def pane_width(columns: Sequence[Column], widths: Sequence[int]) -> int:
    """The pane width that shows every column in `widths` (padding and border included)."""
    return sum(w + PADDING for w in widths) + CHROME


def least_pane_width(columns: Sequence[Column]) -> int:
    """The narrowest pane that shows the columns never dropped."""
    return pane_width(columns, [c.least for c in columns if c.drop == 0])


def share(total: int, wants: Sequence[int], least: Sequence[int]) -> list[int]:
    """Split `total` cells between side-by-side panes by what they hold: in proportion to
    the width each wants (so when all fit, each gets at least that), never under its least."""
    wanted = sum(wants) or 1
    shares = [max(total * want // wanted, low) for want, low in zip(wants, least, strict=True)]
    shares[-1] = max(total - sum(shares[:-1]), least[-1])  # the last takes what remains
    overflow = sum(shares) - total
    for i in range(len(shares) - 1):  # give back what the last one's minimum took
        take = min(overflow, shares[i] - least[i])
        if take > 0:
            shares[i] -= take
            overflow -= take
    return shares
