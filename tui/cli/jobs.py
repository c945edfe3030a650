"""`blockvault job` (transfers and other long operations) and `blockvault events` (audit log)."""

from __future__ import annotations

from tui.cli.common import (
    Nouns,
    add_noun,
    add_verb,
    confirm_parent,
    count_arg,
    json_parent,
    show_list,
    show_object,
)

JOB_COLUMNS = (
    "id",
    "kind",
    "target_name",
    "status",
    "phase",
    "bytes_done",
    "bytes_total",
    "created_at",
    "error",
)
EVENT_COLUMNS = (
    "created_at",
    "actor",
    "action",
    "object_kind",
    "object_name",
    "object_id",
    "detail",
)


def add_to(nouns: Nouns) -> None:
    js, cf = json_parent(), confirm_parent()
    job = add_noun(nouns, "job", "transfers and other long operations")
    p = add_verb(
        job,
        "list",
        lambda bv, a: show_list(JOB_COLUMNS, "no jobs")(bv.list_jobs(active=a.active), a),
        parents=[js],
        help="list jobs",
    )
    p.add_argument("--active", action="store_true", help="only queued and running jobs")
    p = add_verb(
        job,
        "show",
        lambda bv, a: show_object(bv.get_job(a.job), a),
        parents=[js],
        help="show a job",
    )
    p.add_argument("job")
    p = add_verb(
        job,
        "cancel",
        lambda bv, a: show_object(bv.cancel_job(a.job), a),
        parents=[js, cf],
        help="cancel a running job",
    )
    p.add_argument("job")

    # events: a noun without verbs
    p = nouns.add_parser("events", parents=[js], help="audit log: who did what, when")
    p.set_defaults(
        handler=lambda bv, a: show_list(EVENT_COLUMNS, "no events")(
            bv.events(limit=a.limit, object_ref=a.object), a
        )
    )
    p.add_argument("--limit", type=count_arg(1, 100_000, "--limit"), default=50)
    p.add_argument("--object", help="only events about this id or name")
