"""The one action registry: keys, footer, help screen, command palette and read-only all read it."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class ConsoleAction:
    """One user action: `keys` is a Textual key list, the first key is the one displayed."""

    id: str
    keys: str
    label: str
    category: str
    help: str
    mutating: bool = False  # hidden in --read-only mode
    footer: bool = True
    key_display: str | None = None

    @property
    def palette_title(self) -> str:
        return f"{self.category}: {self.label}"


ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "snapshot", "s", "Snapshot", "Disk", "Take a snapshot of the selected disk", True
    ),
    ConsoleAction(
        "backup", "b", "Backup", "Disk", "Back up the selected disk into the default vault", True
    ),
    ConsoleAction(
        "restore",
        "r",
        "Restore",
        "Recovery",
        "Roll the disk back to the selected snapshot, or restore the selected backup "
        "(to its original disk or to a new disk)",
        True,
    ),
    ConsoleAction(
        "new_disk",
        "n",
        "New disk",
        "Recovery",
        "Create a new disk from the selected snapshot or backup",
        True,
    ),
    ConsoleAction(
        "delete",
        "d",
        "Delete",
        "Object",
        "Delete the selected disk, snapshot or backup (shows the plan first)",
        True,
    ),
    ConsoleAction(
        "undo",
        "u",
        "Undo",
        "Disk",
        "Put the selected disk back as it was before its last overwrite",
        True,
    ),
    ConsoleAction("cancel_job", "c", "Cancel job", "Jobs", "Cancel the newest running job", True),
    ConsoleAction(
        "reinstall",
        "o",
        "Reinstall OS",
        "Server",
        "Reinstall the OS of the selected server from a backup of its system disk",
        True,
        footer=False,
    ),
    ConsoleAction(
        "filter",
        "slash",
        "Filter",
        "View",
        "Filter disks, snapshots and backups by name",
        key_display="/",
    ),
    ConsoleAction(
        "toggle_all",
        "a",
        "All",
        "View",
        "Show every backup, including retained backups of deleted disks",
    ),
    ConsoleAction(
        "refresh",
        "f5,ctrl+r,R",
        "Refresh",
        "View",
        "Reload everything from the catalog",
        footer=False,
    ),
    ConsoleAction(
        "toggle_theme",
        "t",
        "Theme",
        "View",
        "Switch between the dark and the light theme",
        footer=False,
    ),
    ConsoleAction("help", "question_mark,f1", "Help", "App", "Show every key", key_display="?"),
    ConsoleAction(
        "palette",
        "colon",
        "Palette",
        "App",
        "Open the command palette (also ctrl+p)",
        footer=False,
        key_display=":",
    ),
    ConsoleAction("quit", "q", "Quit", "App", "Quit at once (running jobs are cancelled)"),
)

BY_ID = {action.id: action for action in ACTIONS}
MUTATING = frozenset(action.id for action in ACTIONS if action.mutating)


def bindings() -> list[Binding]:
    """Textual bindings for every registered action, each with an id and a tooltip."""
    return [
        Binding(
            action.keys,
            action.id,
            action.label,
            show=action.footer,
            key_display=action.key_display,
            tooltip=action.help,
            id=f"blockvault.{action.id}",
        )
        for action in ACTIONS
    ]


def key_label(action: ConsoleAction) -> str:
    """Every key of an action, readable: '/', 'F5 ctrl+r R'."""
    names = {"slash": "/", "question_mark": "?", "colon": ":"}
    return " ".join(
        names.get(k, k.upper() if k.startswith("f") and k[1:].isdigit() else k)
        for k in action.keys.split(",")
    )
