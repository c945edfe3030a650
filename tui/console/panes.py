"""The browsing panes: disks grouped by server (with their protection), snapshots and backups
of the selection, and the policies view's table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from core.api import printable
from tui.console import fmt

MAX_ROWS = 500  # a pane never renders more rows than this; the title says how many exist
NO_SERVER = "(no server)"


class PaneTable(DataTable):
    """A row-cursor table with vim movement; rows keyed by the object id they show."""

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

    def selected(self) -> dict[str, Any] | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # cursor outside the table while it is being rebuilt
            return None
        return self.rows_by_key.get(key or "")

    def set_columns(self, columns: tuple[tuple[str, int], ...]) -> None:
        """Fixed widths: the layout never jumps as rows come and go."""
        for label, width in columns:
            self.add_column(label, width=width)

    def replace_rows(self, rows: list[tuple[str, dict[str, Any], list[Any]]], total: int) -> None:
        """Swap the content, keeping the cursor on the same object when it is still there."""
        current = self.selected()
        current_key = current.get("_key") if current else None
        self.clear()
        self.rows_by_key = {}
        for key, obj, cells in rows[:MAX_ROWS]:
            self.rows_by_key[key] = {**obj, "_key": key}
            self.add_row(*(Text(printable(c)) if isinstance(c, str) else c for c in cells), key=key)
        shown = min(len(rows), MAX_ROWS)
        self.border_subtitle = f"{shown} of {total}" if total > shown else str(total)
        if current_key in self.rows_by_key:
            self.move_cursor(row=self.get_row_index(current_key))

    def action_scroll_top(self) -> None:
        self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        self.move_cursor(row=max(self.row_count - 1, 0))


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
):
    """Rows for the disks pane: one header row per server, then its disks with their
    protection (`protection`: protection_status()'s disks by disk id)."""
    protection = protection or {}
    colors = colors or {}
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
                        disk["snapshot_strategy"],
                    ],
                )
            )
    return rows


DISK_COLUMNS = (
    ("Disk", 14),
    ("Role", 4),
    ("Status", 9),
    ("Protection", 11),
    ("Next", 6),
    ("Backup", 7),
    ("Size", 7),
    ("Alloc", 7),
    ("Snaps", 7),
)
SNAPSHOT_COLUMNS = (("Snapshot", 24), ("Age", 7), ("Kind", 6), ("Stored", 8), ("Status", 9))
BACKUP_COLUMNS = (
    ("Backup", 24),
    ("Age", 7),
    ("Stored", 8),
    ("Size", 8),
    ("Vault", 6),
    ("Disk", 22),
)


def snapshot_rows(snapshots: list[dict[str, Any]], now: datetime):
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


def backup_rows(backups: list[dict[str, Any]], now: datetime):
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
    ("Policy", 11),
    ("Runs", 14),
    ("Retention", 14),
    ("Disks", 11),
    ("Last run", 9),
    ("Next", 6),
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


def policy_rows(policies: list[dict[str, Any]], now: datetime, colors: dict[str, str]):
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


VAULT_COLUMNS = (  # 80 columns: the panel below says everything in full
    ("Vault", 10),
    ("Usage", 13),
    ("Quota", 8),
    ("Alert", 6),
    ("Lock", 10),
    ("Locked", 6),
    ("Replicas", 10),
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


def vault_rows(vaults: list[dict[str, Any]], colors: dict[str, str]):
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
