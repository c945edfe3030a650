"""The details panel: every field of the selected server, disk, snapshot, backup, policy or
vault."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from core.api import printable
from tui.console import fmt


def shown_path(path: str | None) -> str:
    """A path as it is; `~/…` only when it really is under the user's home directory
    (blockvault's own home, BLOCKVAULT_HOME, may be anywhere: a demo's is under /tmp)."""
    if not path:
        return "-"
    user_home = os.path.expanduser("~").rstrip("/")
    if user_home and path.startswith(user_home + "/"):
        return "~/" + path[len(user_home) + 1 :]
    return path


def fields_of(obj: dict[str, Any] | None, *, now: datetime) -> list[tuple[str, str]]:
    """(label, value) pairs for the panel; absolute timestamps here, relative ones in the panes."""
    if obj is None:
        return [("", "nothing selected")]
    if obj.get("kind") == "server":
        disks = obj.get("disks", [])
        roles = ", ".join(f"{d['name']} ({d['role']})" for d in disks) or "none"
        return [("server", obj["name"]), ("disks", roles)]
    if obj.get("kind") == "disk":
        return [
            ("disk", f"{obj['name']}  {obj['id']}"),
            ("server", f"{obj['server'] or '-'}  role {obj['role']}"),
            ("size", f"{fmt.size(obj['size'])}, {fmt.size(obj['allocated'])} allocated"),
            (
                "status",
                f"{obj['status']}  snapshots by {obj['snapshot_strategy']}, "
                f"created {fmt.absolute(obj['created_at'])}",
            ),
            (
                "backup",
                f"{fmt.absolute(obj['last_backup_at'])} ({fmt.age(obj['last_backup_at'], now)})",
            ),
            ("protection", _protection(obj.get("protection") or {})),
            ("path", shown_path(obj["path"])),
        ]
    if obj.get("kind") == "policy":
        return _policy_fields(obj, now)
    if obj.get("kind_of") == "vault":
        return _vault_fields(obj)
    if obj.get("kind_of") == "snapshot":
        expires = f", expires {fmt.absolute(obj['expires_at'])}" if obj.get("expires_at") else ""
        return [
            ("snapshot", f"{obj['name']}  {obj['id']}"),
            ("of disk", f"{obj['disk_name']} ({obj['server'] or 'no server'}, {obj['role']})"),
            ("size", f"{fmt.size(obj['size'])}, {fmt.size(obj['bytes_stored'])} stored"),
            ("status", f"{obj['status']}  {obj['kind']}{expires}"),
            ("strategy", obj["strategy"]),
            ("created", fmt.absolute(obj["created_at"])),
        ]
    if obj.get("kind_of") == "backup":
        deleted = " - disk deleted, backup retained" if obj.get("disk_deleted") else ""
        return [
            ("backup", f"{obj['name']}  {obj['id']}"),
            (
                "of disk",
                f"{obj['disk_name']} ({obj['server'] or 'no server'}, {obj['role']}){deleted}",
            ),
            (
                "size",
                f"{fmt.size(obj['size'])}: {fmt.size(obj['bytes_new'])} new, "
                f"{fmt.size(obj['bytes_reused'])} reused, {fmt.size(obj['bytes_zero'])} zero",
            ),
            ("stored", f"{fmt.size(obj['bytes_stored'])} in vault {obj['vault']}"),
            ("status", obj["status"]),
            ("completed", fmt.absolute(obj["completed_at"])),
        ]
    return [("", str(obj.get("name", "")))]


def _protection(row: dict[str, Any]) -> str:
    """'overdue: policy nightly: no backup since ...; next run ...' (why, then when next)."""
    if not row:
        return "-"
    status = row["status"]
    if row.get("detail") and status != "unprotected":
        status = f"{status}: {row['detail']}"
    elif row.get("policies"):
        status = f"{status} by {', '.join(row['policies'])}"
    if row.get("next_run_at"):
        status = f"{status}; next run {fmt.absolute(row['next_run_at'])}"
    return status


def _policy_fields(policy: dict[str, Any], now: datetime) -> list[tuple[str, str]]:
    last = "never"
    if policy.get("last_run_at"):
        last = (
            f"{fmt.absolute(policy['last_run_at'])} ({fmt.age(policy['last_run_at'], now)}), "
            f"{policy.get('last_run_status') or '-'}"
        )
    disks = ", ".join(d["name"] for d in policy["disks"]) or "none yet (a applies it)"
    return [
        ("policy", f"{policy['name']}  {policy['id']}  {policy['status']}"),
        ("runs", f"{policy['runs']}  ({policy['schedule']})"),
        ("keeps", f"{policy['retention']} (only its own backups expire)"),
        ("disks", disks),
        ("last run", last),
        ("next run", fmt.absolute(policy.get("next_run_at"))),
        ("drills", policy.get("drill") or "none"),
        ("created", fmt.absolute(policy.get("created_at"))),
    ]


def _vault_fields(vault: dict[str, Any]) -> list[tuple[str, str]]:
    measured = f", measured {fmt.absolute(vault['usage_at'])}" if vault.get("usage_at") else ""
    locked = "none"
    if vault.get("locked_backups"):
        n = vault["locked_backups"]
        locked = (
            f"{n} backup{'s' * (n > 1)}, the first free "
            f"{fmt.absolute(vault.get('locked_until_min'))}"
        )
    lock = vault.get("object_lock")
    mode = f"S3 Object Lock, {lock} mode" if lock else "none (locks recorded by blockvault)"
    return [
        ("vault", f"{vault['name']}  {vault['id']}  {vault['kind']}"),
        ("location", shown_path(vault.get("location"))),
        ("usage", f"{vault.get('capacity') or '-'}{measured}"),
        ("forecast", vault.get("forecast") or "-"),
        ("backups", _vault_backups(vault)),
        ("lock mode", mode),
        ("locked", locked),
        ("replicas", _replication(vault)),
    ]


def _vault_backups(vault: dict[str, Any]) -> str:
    text = f"{vault.get('backups', 0)}, {fmt.size(vault.get('stored_bytes'))} stored"
    if vault.get("dedup_ratio"):
        text += f" of {fmt.size(vault.get('logical_bytes'))} (dedup {vault['dedup_ratio']:g}x)"
    return text


def _replication(vault: dict[str, Any]) -> str:
    parts = []
    if vault.get("replicates_to"):
        parts.append(f"copied to {', '.join(vault['replicates_to'])} by policy")
    if vault.get("replicated_from"):
        parts.append(f"receives copies from {', '.join(vault['replicated_from'])}")
    if vault.get("copied_out"):
        parts.append(f"{vault['copied_out']} of its backups have copies")
    if vault.get("copies_held"):
        n = vault["copies_held"]
        parts.append(f"holds {n} cop{'ies' if n > 1 else 'y'}")
    return "; ".join(parts) or "none"


class DetailsPanel(VerticalScroll):
    """Shows `fields_of(...)` as a two-column grid; `plain` keeps the same as text.

    A long value wraps between words (never cut in the middle of one); what does not fit
    the panel's height scrolls.
    """

    can_focus = False
    plain = ""

    def compose(self) -> ComposeResult:
        yield Static(classes="details-text")

    def show(self, obj: dict[str, Any] | None, *, now: datetime) -> None:
        pairs = fields_of(obj, now=now)
        self.plain = "\n".join(f"{label} {value}" for label, value in pairs)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True, min_width=10)
        grid.add_column(overflow="fold")  # words wrap; only a word wider than the line folds
        for label, value in pairs:
            grid.add_row(label, Text(printable(value)))
        for text in self.query(".details-text").results(Static):  # none before it mounts
            text.update(grid)
