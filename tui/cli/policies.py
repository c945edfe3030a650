"""`blockvault policy`: automatic backups with a schedule, a vault, GFS retention and drills."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from core.api import printable
from tui.cli import output
from tui.cli.common import (
    add_verb,
    confirm_parent,
    count_arg,
    json_parent,
    run_planned,
    show_created,
    show_list,
    show_object,
    verbs_of,
)

if TYPE_CHECKING:
    from core.api import Blockvault

POLICY_COLUMNS = ("name", "status", "runs", "retention", "disks", "last_run_status", "next_run_at")
POLICY_RUN_COLUMNS = ("policy", "disk", "backup", "status", "error")
KEEPS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
SCHEDULE_FORMS = ("schedule", "daily_at", "weekly", "every_days", "every")


def _schedule(bv: Blockvault, a: argparse.Namespace) -> str:
    """One of the schedule options (two are one clear error), daily at 02:00 by default."""
    given = {form: getattr(a, form) for form in SCHEDULE_FORMS if getattr(a, form)}
    if not given:
        return bv.schedule_text(daily_at="02:00")
    return bv.schedule_text(
        cron=a.schedule,
        daily_at=a.daily_at,
        weekly=a.weekly,
        every_days=a.every_days,
        every=a.every,
    )


def policy_create(bv: Blockvault, a: argparse.Namespace) -> None:
    keep = {f"keep_{k}": getattr(a, f"keep_{k}") for k in KEEPS}
    if not any(keep.values()) and not a.keep_within and not a.keep_days:
        keep["keep_last"] = 7  # the default when no rule is given
    within = a.keep_within or (f"{a.keep_days}d" if a.keep_days else None)
    view = bv.create_policy(
        a.name,
        schedule=_schedule(bv, a),
        vault=a.vault,
        keep=keep,
        keep_within=within,
        drill=a.drill,
        disks=a.disk,
        replicate_to=a.replicate_to,
        lock_for=a.lock_for,
    )
    for warning in view.get("warnings", []):
        output.err.print(printable(f"warning: {warning}"), markup=False)
    show_created("policy", view, a)


def policy_delete(bv: Blockvault, a: argparse.Namespace) -> None:
    plan = bv.plan_delete_policy(a.policy)
    run_planned(a, plan, lambda p: bv.delete_policy(a.policy, plan=p))


def policy_prune(bv: Blockvault, a: argparse.Namespace) -> None:
    plan = bv.plan_retention(a.policy)
    outcomes = run_planned(a, plan, lambda p: bv.prune_policy(a.policy, plan=p), show_result=False)
    if outcomes is not None:
        show_list(("policy", "backup", "status", "error"), "nothing to expire")(outcomes, a)


def policy_run(bv: Blockvault, a: argparse.Namespace) -> int:
    """Run due policies; `--dry-run` shows what each would back up and its retention plan.
    Exit 0: every due backup succeeded; 3: some failed; 1: none could run."""
    if a.dry_run:
        from core.api import Plan  # loaded already by the façade's plan_policy_run

        due = bv.plan_policy_run(policy=a.policy, force=a.now)
        if a.json:
            output.print_json(due)
        elif not due:
            output.out.print("nothing due", markup=False)
        for entry in [] if a.json else due:
            disks = ", ".join(entry["backs_up"]) or "no disk"
            line = f"policy {entry['policy']} (slot {entry['slot']}): back up {disks}"
            output.out.print(printable(line), markup=False)
            output.print_plan(Plan.from_dict(entry["retention"]), dry_run=True)
        return 0
    outcomes = bv.run_policies(policy=a.policy, force=a.now)
    show_list(POLICY_RUN_COLUMNS, "nothing due")(outcomes, a)
    code = bv.policy_exit_code(outcomes)
    if code and not a.json:
        failed = sum(1 for o in outcomes if o["status"] == "failed")
        output.err.print(f"blockvault: {failed} of {len(outcomes)} steps failed", markup=False)
    return code


def add_to(noun: argparse.ArgumentParser) -> None:
    js, cf = json_parent(), confirm_parent()
    policy = verbs_of(noun)
    p = add_verb(policy, "create", policy_create, parents=[js], help="create a backup policy")
    p.add_argument("name")
    when = p.add_argument_group("schedule (one of; default: daily at 02:00)")
    when.add_argument(
        "--schedule", "--cron", dest="schedule", metavar="CRON", help="cron expression"
    )
    when.add_argument("--daily-at", metavar="HH:MM")
    when.add_argument("--weekly", metavar="DAYS@HH:MM", help="e.g. mon,thu@02:00")
    when.add_argument("--every-days", metavar="N@HH:MM", help="e.g. 3@02:00")
    when.add_argument("--every", metavar="DURATION", help="e.g. 6h, 30m, 10s")
    p.add_argument("--vault")
    p.add_argument(
        "--replicate-to",
        metavar="VAULT",
        help="copy each backup the policy makes into this vault too (only missing chunks sent)",
    )
    p.add_argument(
        "--lock-for",
        metavar="DURATION",
        help="lock each backup it makes this long (e.g. 30d): no delete, expiry or gc before",
    )
    keep = p.add_argument_group("retention (restic's rules, their union; default --keep-last 7)")
    for k in KEEPS:
        keep.add_argument(f"--keep-{k}", type=count_arg(1, 100_000, f"--keep-{k}"), metavar="N")
    keep.add_argument("--keep-within", metavar="DURATION", help="e.g. 30d, 1y2m")
    keep.add_argument(
        "--keep-days", type=count_arg(1, 36_500, "--keep-days"), help=argparse.SUPPRESS
    )
    p.add_argument(
        "--drill", metavar="SCHEDULE", help="restore drills: daily, weekly, monthly or a schedule"
    )
    p.add_argument(
        "--disk", action="append", default=[], help="a disk or server to cover (repeatable)"
    )
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
    for verb, call, text in (
        ("apply", "apply_policy", "cover disks, or every disk of a server"),
        ("unapply", "unapply_policy", "stop covering disks or a server's disks"),
    ):
        p = add_verb(
            policy,
            verb,
            lambda bv, a, call=call: show_object(getattr(bv, call)(a.policy, a.target), a),
            parents=[js],
            help=text,
        )
        p.add_argument("policy")
        p.add_argument("target", nargs="+", metavar="DISK|SERVER")
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
        "prune",
        policy_prune,
        parents=[js, cf],
        help="apply the policy's retention now (--dry-run: the plan and the bytes freed)",
    )
    p.add_argument("policy")
    p = add_verb(
        policy,
        "run",
        policy_run,
        parents=[js],
        help="run what is due now, then retention (exit 0 ok, 3 some failed, 1 none ran)",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would run and expire")
    p.add_argument("policy", nargs="?")
    p.add_argument("--now", action="store_true", help="run even if not due")
