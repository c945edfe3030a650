"""The browsing panes: disks grouped by server (with their protection), snapshots and backups
of the selection, and the policies view's table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from core.api import printable
from tui.console import fmt
from tui.console.columns import Column, fit, least_pane_width, natural_widths, pane_width

MAX_ROWS = 500  # a pane never renders more rows than this; the title says how many exist
NO_SERVER = "(no server)"
Row = tuple[str, dict[str, Any], list[Any]]  # (key, the object, its cells)


class PaneTable(DataTable):
    """A row-cursor table with vim movement; rows keyed by the object id they show.

    Its columns fit its width (`columns.fit`): it never scrolls sideways. It keeps the rows
    it was given, so a resize re-fits them, and a refresh with the same rows only rewrites
    the cells that changed (an age ticking), leaving the cursor and the scroll alone.
    """

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, title: str, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.pane_title = title
        self.border_title = title
        self.rows_by_key: dict[str, dict[str, Any]] = {}
        self.spec: tuple[Column, ...] = ()
        self.content: list[Row] = []
        self.naturals: list[int] = []
        self.widths: list[int | None] | None = None  # as shown; None: not laid out yet

    def selected(self) -> dict[str, Any] | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # cursor outside the table while it is being rebuilt
            return None
        return self.rows_by_key.get(key or "")

    def set_columns(self, columns: Sequence[Column]) -> None:
        """The columns it may show; which ones, and how wide, follows its width."""
        self.spec = tuple(columns)
        self.naturals = natural_widths(self.spec, [])
        self._fit()

    def wants_width(self) -> int:
        """The pane width that shows every column and every name whole."""
        return pane_width(self.spec, self.naturals)

    def least_width(self) -> int:
        return least_pane_width(self.spec)

    def replace_rows(self, rows: list[Row], total: int) -> None:
        """Swap the content, keeping the cursor on the same object when it is still there."""
        self.content = rows[:MAX_ROWS]
        self.rows_by_key = {key: {**obj, "_key": key} for key, obj, _ in self.content}
        self.naturals = natural_widths(self.spec, [self._texts(c) for _, _, c in self.content])
        shown = len(self.content)
        self.border_subtitle = f"{shown} of {total}" if total > shown else str(total)
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _space(self) -> int:
        """The cells its columns may use: inside the border and the scrollbar's gutter."""
        return self.scrollable_content_region.width

    def _fit(self) -> None:
        widths = fit(self.spec, self.naturals, self._space())
        if widths != self.widths:
            self.widths = widths
            current = self.selected()
            self.clear(columns=True)
            for i, (column, width) in enumerate(zip(self.spec, widths, strict=True)):
                if width is not None:
                    self.add_column(column.label, width=width, key=str(i))
            self._add_rows(current.get("_key") if current else None)
            return
        self._update_rows()

    def _texts(self, cells: list[Any]) -> list[Text]:
        return [c if isinstance(c, Text) else Text(printable(str(c))) for c in cells]

    def _cells(self, cells: list[Any]) -> list[Text]:
        """The shown cells of a row, names shortened in the middle to their column's width."""
        assert self.widths is not None
        shown = []
        for column, width, text in zip(self.spec, self.widths, self._texts(cells), strict=True):
            if width is None:
                continue
            if column.grows and text.cell_len > width:
                text = Text(fmt.middle(text.plain, width), style=text.style)
            shown.append(text)
        return shown

    def _add_rows(self, keep_key: str | None) -> None:
        self.clear()
        for key, _, cells in self.content:
            self.add_row(*self._cells(cells), key=key)
        if keep_key in self.rows_by_key:
            self.move_cursor(row=self.get_row_index(keep_key))

    def _update_rows(self) -> None:
        """Rewrite only the cells that changed when the rows are the same ones, in order."""
        keys = [row.key.value for row in self.ordered_rows]
        if keys != [key for key, _, _ in self.content]:
            current = self.selected()
            self._add_rows(current.get("_key") if current else None)
            return
        columns = [column.key for column in self.ordered_columns]
        for key, _, cells in self.content:
            for column, new, old in zip(
                columns, self._cells(cells), self.get_row(key), strict=True
            ):
                if _look(new) != _look(old):
                    self.update_cell(key, column, new)

    def shown(self, key: str, label: str) -> str | None:
        """The text shown in row `key` under the column `label`; None when that column is
        not shown at this width."""
        if self.widths is None:
            return None
        for i, column in enumerate(self.spec):
            if column.label == label and self.widths[i] is not None:
                return str(self.get_cell(key, str(i)))
        return None

    def action_scroll_top(self) -> None:
        self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        self.move_cursor(row=max(self.row_count - 1, 0))


def _look(cell: Any) -> tuple[Any, ...]:
    """What a cell shows: its text, its style and its spans (Text's own == ignores style)."""
    if isinstance(cell, Text):
        return (cell.plain, str(cell.style), tuple(cell.spans))
    return (str(cell),)


def status_text(status: str) -> Text:
    """Status words stay words (colour is never the only signal)."""
    style = {
        "available": "",
        "in-use": "bold",
        "deleted-disk": "italic",
    }.get(status, "bold")
    if status.startswith("error"):
        style = "bold reverse"
    return Text(status, style=style)


# A protection status in words, coloured with the theme's own colours (app.theme_variables):
# the word is the signal, the colour repeats it (and goes under NO_COLOR).
PROTECTION_STYLE = {
    "protected": ("success", ""),
    "overdue": ("warning", "bold"),
    "failing": ("error", "bold"),
    "unprotected": ("", "italic"),
}


def protection_text(status: str | None, colors: dict[str, str]) -> Text:
    if not status:
        return Text("-")
    variable, style = PROTECTION_STYLE.get(status, ("", "bold"))
    return Text(status, style=f"{style} {colors.get(variable, '')}".strip())


def disk_rows(
    disks: list[dict[str, Any]],
    servers: list[str],
    now: datetime,
    protection: dict[str, dict[str, Any]] | None = None,
    colors: dict[str, str] | None = None,
    snapshot_counts: dict[str, int] | None = None,
) -> list[Row]:
    """Rows for the disks pane: one header row per server, then its disks with their
    protection (`protection`: protection_status()'s disks by disk id) and how many
    snapshots each has (`snapshot_counts`, by disk id)."""
    protection = protection or {}
    colors = colors or {}
    snapshot_counts = snapshot_counts or {}
    by_server: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for disk in disks:
        by_server.setdefault(disk["server"] or NO_SERVER, []).append(disk)
    rows = []
    for server in sorted(by_server, key=lambda s: (s == NO_SERVER, s)):
        members = by_server[server]
        header = {"kind": "server", "name": server, "id": server, "disks": members}
        rows.append(
            (
                f"server:{server}",
                header,
                [Text(f"▾ {server} ({len(members)})", style="bold")] + [""] * 8,
            )
        )
        for disk in members:
            covered = protection.get(disk["id"], {})
            rows.append(
                (
                    disk["id"],
                    {**disk, "kind": "disk", "protection": covered},
                    [
                        f"  {disk['name']}",
                        "sys" if disk["role"] == "system" else disk["role"],
                        status_text(disk["status"]),
                        protection_text(covered.get("status"), colors),
                        fmt.short_until(covered.get("next_run_at"), now),
                        fmt.short_age(disk["last_backup_at"], now),
                        fmt.short_size(disk["size"]),
                        fmt.short_size(disk["allocated"]),
                        str(snapshot_counts.get(disk["id"], 0)),
                    ],
                )
            )
    return rows


# Which columns a narrow pane drops first: the highest `drop` (the details panel below
# always says everything in full).
DISK_COLUMNS = (
    Column("Disk", 12, grows=True),
    Column("Role", 4, drop=6),
    Column("Status", 9, drop=4),
    Column("Protection", 11, drop=1),
    Column("Next", 6, drop=5),
    Column("Backup", 7, drop=2),
    Column("Size", 7, drop=3),
    Column("Alloc", 7, drop=8),
    Column("Snaps", 5, drop=7),
)
SNAPSHOT_COLUMNS = (
    Column("Snapshot", 12, grows=True),
    Column("Age", 7, drop=1),
    Column("Kind", 6, drop=3),
    Column("Stored", 8, drop=2),
    Column("Status", 9, drop=4),
)
BACKUP_COLUMNS = (
    Column("Backup", 12, grows=True),
    Column("Age", 7, drop=1),
    Column("Stored", 8, drop=2),
    Column("Size", 8, drop=4),
    Column("Vault", 6, drop=5, grows=True),
    Column("Disk", 8, drop=3, grows=True),
)


def snapshot_rows(snapshots: list[dict[str, Any]], now: datetime) -> list[Row]:
    return [
        (
            s["id"],
            {**s, "kind_of": "snapshot"},
            [
                s["name"],
                fmt.short_age(s["created_at"], now),
                s["kind"],
                fmt.short_size(s["bytes_stored"]),
                status_text(s["status"]),
            ],
        )
        for s in snapshots
    ]


def backup_rows(backups: list[dict[str, Any]], now: datetime) -> list[Row]:
    rows = []
    for b in backups:
        disk = Text(b["disk_name"] or "-")
        if b.get("disk_deleted"):
            disk = Text(f"{b['disk_name']} (deleted)", style="italic")
        rows.append(
            (
                b["id"],
                {**b, "kind_of": "backup"},
                [
                    b["name"],
                    fmt.short_age(b["completed_at"] or b["created_at"], now),
                    fmt.short_size(b["bytes_stored"]),
                    fmt.short_size(b["size"]),
                    b["vault"] or "-",
                    disk,
                ],
            )
        )
    return rows


POLICY_COLUMNS = (  # all of them fit at 80 columns; the panel below says everything in full
    Column("Policy", 11, grows=True),
    Column("Runs", 14, drop=1, grows=True),
    Column("Retention", 14, drop=3, grows=True),
    Column("Disks", 11, drop=2, grows=True),
    Column("Last run", 9, drop=1),
    Column("Next", 6, drop=1),
)

RUN_STYLE = {
    "succeeded": ("success", ""),
    "partial": ("warning", "bold"),
    "failed": ("error", "bold"),
}


def last_run_text(policy: dict[str, Any], now: datetime, colors: dict[str, str]) -> Text:
    """'3d ago' for a run that succeeded; the outcome in words when it did not."""
    stamp, status = policy.get("last_run_at"), policy.get("last_run_status")
    if not stamp:
        return Text("never", style="italic")
    age = fmt.short_age(stamp, now)
    if status in (None, "succeeded"):
        return Text(age)
    variable, style = RUN_STYLE.get(status, ("", "bold"))
    return Text(f"{status}", style=f"{style} {colors.get(variable, '')}".strip())


def policy_rows(policies: list[dict[str, Any]], now: datetime, colors: dict[str, str]) -> list[Row]:
    rows = []
    for p in policies:
        disks = ", ".join(d["name"] for d in p["disks"])
        rows.append(
            (
                p["id"],
                {**p, "kind": "policy"},
                [
                    p["name"] if p["status"] == "enabled" else f"{p['name']} (off)",
                    p["runs"],
                    p["retention"],
                    Text(printable(disks)) if disks else Text("none", style="italic"),
                    last_run_text(p, now, colors),
                    fmt.short_until(p["next_run_at"], now) if p["status"] == "enabled" else "-",
                ],
            )
        )
    return rows


VAULT_COLUMNS = (  # all of them fit at 80 columns; the panel below says everything in full
    Column("Vault", 10, grows=True),
    Column("Usage", 13, drop=1),
    Column("Quota", 8, drop=3),
    Column("Alert", 6, drop=2),
    Column("Lock", 10, drop=5),
    Column("Locked", 6, drop=4),
    Column("Replicas", 10, drop=6, grows=True),
)
BAR_WIDTH = 8


def usage_bar(percent: float) -> str:
    """'█████░░░ 62%': the usage against the quota, in blocks and in digits."""
    filled = min(BAR_WIDTH, max(0, round(percent / 100 * BAR_WIDTH)))
    return f"{'█' * filled}{'░' * (BAR_WIDTH - filled)} {percent:.0f}%"


def usage_text(vault: dict[str, Any], colors: dict[str, str]) -> Text:
    """A bar against the quota (in the warning colour past the alert, error when full), or
    the usage alone without a quota."""
    if vault.get("usage_bytes") is None:
        return Text("unmeasured", style="italic")
    percent = vault.get("percent_used")
    if percent is None:
        return Text(fmt.short_size(vault["usage_bytes"]))
    variable = "error" if percent >= 100 else "warning" if vault.get("over_alert") else ""
    return Text(usage_bar(percent), style=colors.get(variable, ""))


def alert_text(vault: dict[str, Any], colors: dict[str, str]) -> Text:
    """'OVER' past the threshold (the word is the signal), else the threshold ('80%')."""
    if not vault.get("quota_bytes"):
        return Text("-")
    if vault.get("over_alert"):
        return Text("OVER", style=f"bold {colors.get('warning', '')}".strip())
    alert_at = vault.get("alert_at")
    return Text(f"{alert_at:g}%" if alert_at is not None else "100%")


def replication_text(vault: dict[str, Any]) -> str:
    """'→ offsite' (a policy copies this vault's backups there), '← local' (copies come
    from there), else how many copies it holds ('3 copies'), or '-'."""
    if vault.get("replicates_to"):
        return "→ " + ", ".join(vault["replicates_to"])
    if vault.get("replicated_from"):
        return "← " + ", ".join(vault["replicated_from"])
    if vault.get("copies_held"):
        n = vault["copies_held"]
        return f"{n} cop{'ies' if n > 1 else 'y'}"
    return "-"


def vault_rows(vaults: list[dict[str, Any]], colors: dict[str, str]) -> list[Row]:
    rows = []
    for v in vaults:
        rows.append(
            (
                v["id"],
                {**v, "kind_of": "vault"},
                [
                    v["name"],
                    usage_text(v, colors),
                    fmt.short_size(v.get("quota_bytes")),
                    alert_text(v, colors),
                    v.get("object_lock") or "-",
                    str(v.get("locked_backups") or "-"),
                    replication_text(v),
                ],
            )
        )
    return rows
