"""The jobs view (`J`): every recent job from the catalog, this console's and any other
process's, with its outcome; the jobs strip keeps only the running ones and the last."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from core.api import Blockvault, printable
from tui.console import fmt
from tui.console.columns import Column
from tui.console.panes import PaneTable, Row

LIMIT = 200  # the newest jobs shown; `blockvault job list` has them all
JOB_COLUMNS = (
    Column("Job", 10, drop=4),
    Column("Kind", 8, drop=2),
    Column("Target", 10, grows=True),
    Column("Status", 10),
    Column("Started", 7, drop=1),
    Column("Took", 6, drop=3),
    Column("Outcome", 10, drop=5, grows=True),
)
STATUS_STYLE = {"failed": "bold", "cancelled": "italic", "running": "bold", "cancelling": "bold"}


def outcome(job: dict[str, Any]) -> str:
    """The error of a failed job, else the summary its result carries ('' when none)."""
    if job.get("error"):
        return str(job["error"])
    result = job.get("result")
    if isinstance(result, str):  # a catalog row's JSON text
        try:
            result = json.loads(result)
        except ValueError:
            return ""
    return str(result.get("summary", "")) if isinstance(result, dict) else ""


def took(job: dict[str, Any], now: datetime) -> str:
    """How long it ran ('12s', '3m04s'), up to now while it runs."""
    start = fmt.parse_stamp(job.get("started_at"))
    if start is None:
        return "-"
    end = fmt.parse_stamp(job.get("finished_at")) or now
    return fmt.eta((end - start).total_seconds()).removeprefix("ETA ")


def job_rows(jobs: list[dict[str, Any]], now: datetime) -> list[Row]:
    return [
        (
            job["id"],
            {**job, "kind_of": "job"},
            [
                job["id"],
                job["kind"],
                job["target_name"] or "-",
                Text(job["status"], style=STATUS_STYLE.get(job["status"], "")),
                fmt.short_age(job["created_at"], now),
                took(job, now),
                outcome(job),
            ],
        )
        for job in jobs
    ]


@dataclass
class JobsLoaded(Message):
    jobs: list[dict[str, Any]]


class JobsScreen(ModalScreen[None]):
    """The newest jobs, newest first; the selected one's outcome in full below."""

    BINDINGS = [
        Binding("escape,q,J", "dismiss", "Close"),
        Binding("R,f5", "reload", "Reload", show=False),
    ]

    def __init__(self, bv: Blockvault, now: datetime) -> None:
        super().__init__(classes="dialog-screen")
        self.bv = bv
        self.now = now

    def compose(self) -> ComposeResult:
        with Vertical(id="jobs-view", classes="dialog"):
            yield PaneTable("Jobs", id="jobs-table")
            yield Static(id="job-outcome")

    def on_mount(self) -> None:
        table = self.query_one(PaneTable)
        table.set_columns(JOB_COLUMNS)
        table.border_subtitle = "loading"
        table.focus()
        self.query_one("#jobs-view").border_subtitle = "esc closes · R reloads"
        self.load()

    @work(thread=True, exclusive=True, group="jobs-view", exit_on_error=False)
    def load(self) -> None:
        self.post_message(JobsLoaded(self.bv.list_jobs(limit=LIMIT)))

    @on(JobsLoaded)
    def _loaded(self, message: JobsLoaded) -> None:
        self.query_one(PaneTable).replace_rows(job_rows(message.jobs, self.now), len(message.jobs))
        self._show_outcome()

    @on(DataTable.RowHighlighted)
    def _show_outcome(self) -> None:
        job = self.query_one(PaneTable).selected()
        text = "no jobs yet" if job is None else f"{job['id']}: {outcome(job) or job['status']}"
        self.query_one("#job-outcome", Static).update(Text(printable(text)))

    def action_reload(self) -> None:
        self.load()
