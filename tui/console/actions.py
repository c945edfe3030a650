"""The one action registry: keys, footer, help screen, command palette and read-only all read it."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class ConsoleAction:
    """One user action: `keys` is a Textual key list, the first key is the one displayed.

    `view` is the view it belongs to ("disks", "policies" or "vaults"; None: all). Outside its view an
    action is hidden (footer, palette) and its key passes to the action of the view shown, so
    one letter may mean one thing per view, as in k9s: `n` is a new disk or a new policy.
    """

    id: str
    keys: str
    label: str
    category: str
    help: str
    mutating: bool = False  # hidden in --read-only mode
    footer: bool = True
    key_display: str | None = None
    view: str | None = None

    @property
    def palette_title(self) -> str:
        return f"{self.category}: {self.label}"


# The footer shows them in this order (what fits); the help screen groups them by CATEGORIES.
ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "show_policies",
        "p",
        "Policies",
        "View",
        "Show the policies: schedules, retention, the disks they cover, last and next run",
        view="disks",
    ),
    ConsoleAction(
        "show_disks",
        "p",
        "Disks",
        "View",
        "Back to the disks, snapshots and backups (also esc)",
        view="policies",
    ),
    ConsoleAction(
        "show_vaults",
        "v",
        "Vaults",
        "View",
        "Show the vaults: usage against quota, alerts, object lock, replication, locked backups",
        view="disks",
    ),
    ConsoleAction(
        "leave_vaults",
        "v",
        "Disks",
        "View",
        "Back to the disks, snapshots and backups (also esc)",
        view="vaults",
    ),
    ConsoleAction(
        "snapshot",
        "s",
        "Snapshot",
        "Disk",
        "Take a snapshot of the selected disk",
        True,
        view="disks",
    ),
    ConsoleAction(
        "backup",
        "b",
        "Backup",
        "Disk",
        "Back up the selected disk into the default vault",
        True,
        view="disks",
    ),
    ConsoleAction(
        "restore",
        "r",
        "Restore",
        "Recovery",
        "On a disk: pick one of its snapshots or backups (the fastest safe route marked, with "
        "its time); on a snapshot or backup: restore it (onto its disk or to a new disk)",
        True,
        view="disks",
    ),
    ConsoleAction(
        "new_disk",
        "n",
        "New disk",
        "Recovery",
        "Create a new disk from the selected snapshot or backup",
        True,
        view="disks",
    ),
    ConsoleAction(
        "new_policy",
        "n",
        "New policy",
        "Policy",
        "Create a policy: its name, schedule, retention and the disks it covers",
        True,
        view="policies",
    ),
    ConsoleAction(
        "apply_policy",
        "a",
        "Apply",
        "Policy",
        "Choose the disks the selected policy covers (apply to some, unapply from others)",
        True,
        view="policies",
    ),
    ConsoleAction(
        "run_policy",
        "r",
        "Run now",
        "Policy",
        "Run the selected policy now: what it backs up and expires is shown first",
        True,
        view="policies",
    ),
    ConsoleAction(
        "prune_policy",
        "x",
        "Prune",
        "Policy",
        "Preview what the selected policy's retention expires now and the bytes freed, then prune",
        True,
        view="policies",
    ),
    ConsoleAction(
        "mount",
        "m",
        "Mount",
        "Recovery",
        "Mount the selected backup read-only to copy files out of it (its ext4 or XFS files; "
        "`blockvault backup unmount` when done)",
        footer=False,
        view="disks",
    ),
    ConsoleAction(
        "delete",
        "d",
        "Delete",
        "Object",
        "Delete the selected disk, snapshot, backup or policy (shows the plan first)",
        True,
    ),
    ConsoleAction(
        "undo",
        "u",
        "Undo",
        "Disk",
        "Put the selected disk back as it was before its last overwrite",
        True,
        view="disks",
    ),
    ConsoleAction(
        "cancel_job", "c", "Cancel job", "Jobs", "Pick a running job to cancel from a list", True
    ),
    ConsoleAction(
        "show_jobs",
        "J",
        "Jobs",
        "Jobs",
        "Show every recent job, of this console and of other processes, with its outcome",
        footer=False,
    ),
    ConsoleAction(
        "reinstall",
        "o",
        "Reinstall OS",
        "Server",
        "Reinstall the OS of the selected server from a backup of its system disk",
        True,
        footer=False,
        view="disks",
    ),
    ConsoleAction(
        "filter",
        "slash",
        "Filter",
        "View",
        "Filter disks, snapshots, backups and policies by name",
        key_display="/",
    ),
    ConsoleAction(
        "toggle_all",
        "a",
        "All",
        "View",
        "Show every backup, including retained backups of deleted disks",
        view="disks",
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
    ConsoleAction(
        "open_details",
        "enter",
        "Details",
        "View",
        "Every field of the selected row, whole",
        footer=False,
    ),
    ConsoleAction(
        "quit",
        "q",
        "Quit",
        "App",
        "Quit; while jobs of this console run, asks first (stay, hand backups to a running "
        "service, or cancel them)",
    ),
)

CATEGORIES = ("Disk", "Recovery", "Policy", "Object", "Jobs", "Server", "View", "App")
BY_ID = {action.id: action for action in ACTIONS}
MUTATING = frozenset(action.id for action in ACTIONS if action.mutating)
VIEWS = ("disks", "policies", "vaults")


def in_view(action_id: str, view: str) -> bool:
    """Whether an action applies in a view (actions outside the registry always do)."""
    action = BY_ID.get(action_id)
    return action is None or action.view in (None, view)


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


def key_label(action: ConsoleAction, keymap: dict[str, str] | None = None) -> str:
    """Every key of an action (as config.toml's [keys] rebinds it), readable: '/', 'F5 ctrl+r R'."""
    names = {"slash": "/", "question_mark": "?", "colon": ":"}
    keys = (keymap or {}).get(action.id, action.keys)
    return " ".join(
        names.get(k, k.upper() if k.startswith("f") and k[1:].isdigit() else k)
        for k in keys.split(",")
    )


def keymap_from(config: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """config.toml's [keys] (action name -> keys) as Textual's keymap (binding id -> keys),
    and the names that are no action (the console says so)."""
    known = {name: keys for name, keys in config.items() if name in BY_ID}
    return {f"blockvault.{name}": keys for name, keys in known.items()}, sorted(
        set(config) - set(known)
    )
