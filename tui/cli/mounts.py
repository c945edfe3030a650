"""`blockvault backup mount|unmount|files|extract`: one file back without restoring the disk.

Verbs of the `backup` noun kept in their own module (main.py's MORE_VERBS adds them after
`tui.cli.backups`); each calls one façade method and prints one line a person reads.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from core.api import printable
from tui.cli import output
from tui.cli.common import add_verb, json_parent, show_list

if TYPE_CHECKING:
    from core.api import Blockvault

FILE_COLUMNS = ("mode", "size", "modified", "name")


def backup_mount(bv: Blockvault, a: argparse.Namespace) -> None:
    result = bv.mount_backup(a.backup, a.directory)
    if a.json:
        output.print_json(result)
        return
    output.out.print(printable(result["note"]), markup=False, soft_wrap=True)
    output.err.print(
        printable(f"`blockvault backup unmount {result['mountpoint']}` when done"),
        markup=False,
        soft_wrap=True,
    )


def backup_unmount(bv: Blockvault, a: argparse.Namespace) -> None:
    done = bv.unmount_backup(a.target)
    if a.json:
        output.print_json(done)
        return
    for item in done:
        output.out.print(printable(f"unmounted {item['mountpoint']}"), markup=False, soft_wrap=True)


def backup_files(bv: Blockvault, a: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = bv.backup_files(a.backup, a.path)
    if not a.json:
        rows = [
            {**r, "name": f"{r['name']} -> {r['target']}" if r["target"] else r["name"]}
            for r in rows
        ]
    show_list(FILE_COLUMNS, "empty directory")(rows, a)


def backup_extract(bv: Blockvault, a: argparse.Namespace) -> None:
    from core.api import human_size  # only once something was copied

    result = bv.extract_from_backup(a.backup, a.path, a.to)
    if a.json:
        output.print_json(result)
        return
    skipped = f", {result['skipped']} special files skipped" if result["skipped"] else ""
    output.out.print(
        printable(
            f"extracted {result['extracted']} to {result['to']}: {result['files']} files, "
            f"{human_size(result['bytes'])}{skipped}"
        ),
        markup=False,
        soft_wrap=True,
    )


def _verbs_of(noun: argparse.ArgumentParser) -> Any:
    """The verbs the noun's own module made (one subparsers action per noun)."""
    return next(a for a in noun._actions if isinstance(a, argparse._SubParsersAction))


def add_to(noun: argparse.ArgumentParser) -> None:
    js = json_parent()
    verbs = _verbs_of(noun)
    p = add_verb(
        verbs,
        "mount",
        backup_mount,
        parents=[js],
        help="show a backup read-only at DIR without restoring it: DIR/disk.img (FUSE, "
        "chunks fetched when read) and, for ext4 or XFS, its files at DIR/files",
    )
    p.add_argument("backup")
    p.add_argument("directory", metavar="DIR", help="an empty directory (made if missing)")
    p = add_verb(
        verbs,
        "unmount",
        backup_unmount,
        parents=[js],
        help="take a mount down and stop its server (by DIR, or every mount of a backup)",
    )
    p.add_argument("target", metavar="BACKUP|DIR")
    p = add_verb(
        verbs,
        "files",
        backup_files,
        parents=[js],
        help="list a directory inside a backup's ext4 or XFS filesystem",
    )
    p.add_argument("backup")
    p.add_argument("path", nargs="?", default="/", metavar="PATH")
    p = add_verb(
        verbs,
        "extract",
        backup_extract,
        parents=[js],
        help="copy a file or directory out of a backup's filesystem (no restore of the disk)",
    )
    p.add_argument("backup")
    p.add_argument("path", metavar="PATH")
    p.add_argument(
        "--to", required=True, metavar="DIR", help="where the copy goes (made if missing)"
    )
