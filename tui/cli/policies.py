"""`blockvault policy`: automatic backups, with a schedule, a vault and retention."""

from __future__ import annotations

import argparse

from core.api import Blockvault, Plan, printable
from tui.cli import output
from tui.cli.common import (
    Nouns,
    add_noun,
    add_verb,
    confirm_parent,
    count_arg,
    json_parent,
    run_planned,
    show_list,
    show_object,
)

POLICY_COLUMNS = (
    "id",
    "name",
    "status",
    "schedule",
    "keep_last",
    "keep_days",
    "disks",
    "next_run_at",
)
POLICY_RUN_COLUMNS = ("policy", "disk", "backup", "status", "error")


def policy_create(bv: Blockvault, a: argparse.Namespace) -> None:
    show_object(
        bv.create_policy(
            a.name,
            schedule=a.schedule,
            vault=a.vault,
            keep_last=a.keep_last,
            keep_days=a.keep_days,
            disks=a.disk,
        ),
        a,
    )


def policy_delete(bv: Blockvault, a: argparse.Namespace) -> None:
    plan = bv.plan_delete_policy(a.policy)
    run_planned(a, plan, lambda p: bv.delete_policy(a.policy, plan=p))


def policy_run(bv: Blockvault, a: argparse.Namespace) -> None:
    """Run due policies; `--dry-run` shows what each would back up and its retention plan."""
    if a.dry_run:
        due = bv.plan_policy_run(policy=a.policy, force=a.now)
        if a.json:
            output.print_json(due)
        elif not due:
            output.out.print("nothing due", markup=False)
        for entry in [] if a.json else due:
            disks = ", ".join(entry["backs_up"]) or "no disk"
            line = f"policy {entry['policy']}: back up {disks}"
            output.out.print(printable(line), markup=False)
            output.print_plan(Plan.from_dict(entry["retention"]))
        return
    show_list(POLICY_RUN_COLUMNS, "nothing due")(bv.run_policies(policy=a.policy, force=a.now), a)


def add_to(nouns: Nouns) -> None:
    js, cf = json_parent(), confirm_parent()
    policy = add_noun(nouns, "policy", "automatic backups: schedule, vault and retention")
    p = add_verb(
        policy,
        "create",
        policy_create,
        parents=[js],
        help="create a backup policy",
    )
    p.add_argument("name")
    p.add_argument(
        "--schedule", default="0 2 * * *", help="cron expression (default: daily at 02:00 UTC)"
    )
    p.add_argument("--vault")
    p.add_argument("--keep-last", type=count_arg(1, 100_000, "--keep-last"), default=7)
    p.add_argument("--keep-days", type=count_arg(1, 36_500, "--keep-days"))
    p.add_argument("--disk", action="append", default=[], help="a disk to cover (repeatable)")
    add_verb(
        policy,
        "list",
        lambda bv, a: show_list(POLICY_COLUMNS, "no policies")(bv.list_policies(), a),
        parents=[js],
        help="list policies",
    )
    p = add_verb(
        policy,
        "show",
        lambda bv, a: show_object(bv.get_policy(a.policy), a),
        parents=[js],
        help="show a policy",
    )
    p.add_argument("policy")
    p = add_verb(
        policy,
        "delete",
        policy_delete,
        parents=[js, cf],
        help="delete a policy (its backups are kept)",
    )
    p.add_argument("policy")
    p = add_verb(
        policy,
        "run",
        policy_run,
        parents=[js],
        help="run due policies (for cron), then apply retention",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would run and expire")
    p.add_argument("policy", nargs="?")
    p.add_argument("--now", action="store_true", help="run even if not due")
