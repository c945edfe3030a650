"""The jobs strip: one line per recent job with a live bar, rate and ETA, and how to cancel."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import ProgressBar, Static

from core.api import ProgressEvent, printable
from tui.console import fmt

MAX_JOBS = 4


class JobRow(Horizontal):
    """`kind target · phase  [bar]  rate ETA` while running; the outcome (or the error) after.

    State lives in attributes and is drawn by `refresh_row`, so updates that arrive before the
    row is composed are not lost.
    """

    def __init__(self, job_id: str, kind: str, target: str) -> None:
        super().__init__(id=f"job-{job_id}", classes="job-row")
        self.job_id = job_id
        self.kind = kind
        self.target = target
        self.status = "running"
        self.external = False  # started by another process: followed through the catalog
        self.event: ProgressEvent | None = None
        self.text = ""

    def compose(self) -> ComposeResult:
        yield Static(classes="job-label")
        yield ProgressBar(total=100, show_eta=False, show_percentage=True, classes="job-bar")
        yield Static(classes="job-stats")

    def on_mount(self) -> None:
        self.call_after_refresh(self.refresh_row)  # children are mounted by then

    def progress(self, event: ProgressEvent) -> None:
        self.event = event
        self.refresh_row()

    def finish(self, status: str, text: str) -> None:
        self.status, self.text = status, text
        self.add_class(f"job-{status}")
        self.refresh_row()

    def refresh_row(self) -> None:
        if not self.is_mounted or not self.children:
            return
        event = self.event
        label = f"{self.kind} {self.target}"
        bar = self.query_one(ProgressBar)
        if self.status == "running":
            stats = "starting"
            if event is not None:
                label = f"{label} · {event.phase}"
                total = max(event.bytes_total, 1)
                bar.update(total=total, progress=min(event.bytes_done, total))
                stats = f"{fmt.rate(event.rate)} {fmt.eta(event.eta)}"
            stats = self.text or stats  # e.g. "cancelling"
        else:
            stats = self.status
            label = f"{label} · {self.text}" if self.text else label
            if self.status == "succeeded":
                bar.update(total=100, progress=100)
        self.query_one(".job-label", Static).update(Text(printable(label)))
        self.query_one(".job-stats", Static).update(Text(printable(stats)))


class JobsStrip(VerticalScroll):
    """Newest job first; only `MAX_JOBS` rows are kept."""

    BORDER_TITLE = "Jobs"
    can_focus = False

    def compose(self) -> ComposeResult:
        yield Static("no jobs yet · s snapshot · b backup", id="jobs-empty")

    def row(self, job_id: str) -> JobRow | None:
        for row in self.query(JobRow):
            if row.job_id == job_id:
                return row
        return None

    def add_job(self, job_id: str, kind: str, target: str) -> JobRow:
        existing = self.row(job_id)
        if existing is not None:  # first seen in the catalog, now followed from its handle
            existing.external = False
            return existing
        self.query("#jobs-empty").remove()
        row = JobRow(job_id, kind, target)
        rows = list(self.query(JobRow))
        if rows:
            self.mount(row, before=rows[0])
        else:
            self.mount(row)
        for old in rows[MAX_JOBS - 1 :]:
            if old.status != "running":
                old.remove()
        self.border_subtitle = "c cancels a running job"
        return row

    def running(self) -> list[str]:
        return [row.job_id for row in self.query(JobRow) if row.status == "running"]
