"""The jobs strip: one line per recent job with a live bar, rate and ETA, and how to cancel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import ProgressBar, Static

from core.progress import ProgressEvent
from tui import fmt

MAX_JOBS = 4


class JobRow(Horizontal):
    """`kind target  phase  [bar]  rate ETA` while running; the outcome (or the error) after."""

    def __init__(self, job_id: str, kind: str, target: str) -> None:
        super().__init__(id=f"job-{job_id}", classes="job-row")
        self.job_id = job_id
        self.kind = kind
        self.target = target
        self.status = "running"

    def compose(self) -> ComposeResult:
        yield Static(f"{self.kind} {self.target}", classes="job-label")
        yield ProgressBar(total=100, show_eta=False, show_percentage=True, classes="job-bar")
        yield Static("starting", classes="job-stats")

    def progress(self, event: ProgressEvent) -> None:
        bar = self.query_one(ProgressBar)
        bar.update(
            total=max(event.bytes_total, 1), progress=min(event.bytes_done, event.bytes_total)
        )
        self.query_one(".job-label", Static).update(f"{self.kind} {self.target} · {event.phase}")
        self.query_one(".job-stats", Static).update(f"{fmt.rate(event.rate)} {fmt.eta(event.eta)}")

    def finish(self, status: str, text: str) -> None:
        self.status = status
        self.add_class(f"job-{status}")
        bar = self.query_one(ProgressBar)
        if status == "succeeded":
            bar.update(total=100, progress=100)
        self.query_one(".job-stats", Static).update(status)
        label = f"{self.kind} {self.target}"
        self.query_one(".job-label", Static).update(f"{label} · {text}" if text else label)


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
        self.border_subtitle = "c cancels the newest running job"
        return row

    def running(self) -> list[str]:
        return [row.job_id for row in self.query(JobRow) if row.status == "running"]
