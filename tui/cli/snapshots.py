"""`blockvault snapshot`: fast local snapshots stored with the disk; rollback and to-disk."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tui.cli.common import (
    add_verb,
    confirm_parent,
    json_parent,
    run_job,
    run_planned,
    run_planned_job,
    show_list,
    show_object,
    verbs_of,
)

if TYPE_CHECKING:
    from core.api import Blockvault

SNAPSHOT_COLUMNS = (
    "id",
    "name",
    "disk_name",
    "kind",
    "strategy",
    "size",
    "bytes_stored",
    "status",
    "created_at",
)


def snapshot_rollback(bv: Blockvault, a: argparse.Namespace) -> None:
    run_planned_job(
        a,
        bv.plan_rollback(a.snapshot, force=a.force),
        lambda p: bv.start_rollback(a.snapshot, force=a.force, plan=p),
        description="rollback",
    )


def snapshot_to_disk(bv: Blockvault, a: argparse.Namespace) -> None:
    plan = bv.plan_snapshot_to_disk(a.snapshot, a.new_name)
    a.yes = True  # a new disk overwrites nothing: no question to ask
    run_planned_job(
        a,
        plan,
        lambda p: bv.start_snapshot_to_disk(a.snapshot, a.new_name, plan=p),
        description="to-disk",
    )


def add_to(noun: argparse.ArgumentParser) -> None:
    js, cf = json_parent(), confirm_parent()
    snap = verbs_of(noun)
    p = add_verb(
        snap,
        "create",
        lambda bv, a: run_job(bv.start_snapshot(a.disk, name=a.name), a, f"snapshot {a.disk}"),
        parents=[js],
        help="snapshot a disk",
    )
    p.add_argument("disk")
    p.add_argument("--name")
    p = add_verb(
        snap,
        "list",
        lambda bv, a: show_list(SNAPSHOT_COLUMNS, "no snapshots")(
            bv.list_snapshots(disk=a.disk), a
        ),
        parents=[js],
        help="list snapshots",
    )
    p.add_argument("--disk")
    p = add_verb(
        snap,
        "show",
        lambda bv, a: show_object(bv.get_snapshot(a.snapshot), a),
        parents=[js],
        help="show a snapshot",
    )
    p.add_argument("snapshot")
    p = add_verb(
        snap,
        "delete",
        lambda bv, a: run_planned(
            a, bv.plan_delete_snapshot(a.snapshot), lambda p: bv.delete_snapshot(a.snapshot, plan=p)
        ),
        parents=[js, cf],
        help="delete a snapshot",
    )
    p.add_argument("snapshot")
    p = add_verb(
        snap,
        "rollback",
        snapshot_rollback,
        parents=[js, cf],
        help="roll its disk back to this snapshot",
    )
    p.add_argument("snapshot")
    p.add_argument("--force", action="store_true")
    p = add_verb(
        snap, "to-disk", snapshot_to_disk, parents=[js, cf], help="make a new disk from a snapshot"
    )
    p.add_argument("snapshot")
    p.add_argument("new_name")
