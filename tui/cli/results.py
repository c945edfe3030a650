"""The lines a finished command prints as text: what it created or overwrote, by name and id,
and what to do next (the undo command and until when). JSON output carries the same fields."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from core.api import human_size, printable


def when(iso_time: str) -> str:
    """A moment in local time as an admin reads it: '14:05', '14:05 tomorrow', or a date."""
    moment = datetime.fromisoformat(iso_time).astimezone()
    today = datetime.now().astimezone().date()
    if moment.date() == today:
        return f"{moment:%H:%M}"
    if moment.date() == today + timedelta(days=1):
        return f"{moment:%H:%M} tomorrow"
    return f"{moment:%Y-%m-%d %H:%M}"


def undo_hint(disk: str, until: str | None) -> str:
    """How to put an overwritten disk back, and until when."""
    window = f" until {when(until)}" if until else ""
    return f"`blockvault disk undo {disk}` puts it back{window}"


def created(kind: str, data: dict[str, Any], detail: str = "") -> str:
    """'created disk web1-data (disk-1a2b3c)' with an optional detail after it."""
    return printable(f"created {kind} {data.get('name')} ({data.get('id')}){detail}")


def job_lines(kind: str, result: dict[str, Any]) -> list[str] | None:
    """What a finished job of `kind` did, in lines; None: print its result object as is."""
    if kind in ("backup", "copy") and "id" in result:
        what = "backup" if kind == "backup" else f"copy of {result.get('copy_of')}"
        lines = [
            created(
                what, result, f" of disk {result.get('disk_name')} in vault {result.get('vault')}"
            )
        ]
        return lines + ([printable(result["summary"])] if result.get("summary") else [])
    if kind == "snapshot":
        stored = human_size(result.get("bytes_stored") or 0)
        return [
            created("snapshot", result, f" of disk {result.get('disk_name')} ({stored} stored)")
        ]
    if kind == "to-disk":
        return [created("disk", result, f" from snapshot {result.get('snapshot_id')}")]
    if kind == "rollback":
        disk = result.get("rolled_back") or result.get("disk_name")
        return [
            printable(f"rolled back {disk} to snapshot {result.get('name')}; ")
            + printable(undo_hint(str(disk), result.get("undo_until")))
        ]
    if kind == "restore":
        moved = (
            f"fetched {human_size(result.get('bytes_fetched') or 0)}, wrote "
            f"{human_size(result.get('bytes_written') or 0)}, unchanged "
            f"{human_size(result.get('bytes_skipped') or 0)}"
        )
        backup = result.get("backup_name") or result.get("backup_id")
        if not result.get("undo"):
            return [created("disk", result, f" from backup {backup}"), moved]
        return [
            printable(f"restored backup {backup} onto {result.get('name')}; ")
            + printable(undo_hint(str(result.get("name")), result.get("undo_until"))),
            moved,
        ]
    if kind == "reinstall":
        disk = result.get("disk_name")
        return [
            printable(f"wrote the OS image onto {disk} of server {result.get('name')}; ")
            + printable(undo_hint(str(disk), result.get("undo_until")))
        ]
    if kind == "undo":
        return [
            printable(
                f"undid the last overwrite of {result.get('name')}: it is back as it was "
                f"(safety snapshot {result.get('undone_to')}, now used up)"
            )
        ]
    return None
