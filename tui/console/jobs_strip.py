"""The jobs strip: the running jobs, each with a live bar, bytes done of total, rate, ETA,
the new/reused split and the bottleneck; below them only the last job that finished (the
jobs view, `J`, lists every one)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import ProgressBar, Static

from core.api import ProgressEvent, printable
from tui.console import fmt

OUTCOME_MARK = {"succeeded": "✓", "failed": "✗", "cancelled": "-"}


def transfer_line(event: ProgressEvent) -> str:
    """'11 MiB / 32 MiB': how far a job is, in bytes."""
    return f"{fmt.short_size(event.bytes_done)} / {fmt.short_size(event.bytes_total)}"


def detail_line(event: ProgressEvent) -> str:
    """'3.0 MiB/s · ETA 7s · 8 MiB new, 3 MiB reused · bottleneck reading · limited to
    20.0 MiB/s': rate and time left, what a backup sends against what the vault already had,
    the stage that holds it back, and its bandwidth limit (each part only once known)."""
    parts = [fmt.rate(event.rate), fmt.eta(event.eta)]
    if event.bytes_new or event.bytes_reused:
        split = (
            f"{fmt.short_size(event.bytes_new)} new, {fmt.short_size(event.bytes_reused)} reused"
        )
        if event.bytes_zero:
            split += f", {fmt.short_size(event.bytes_zero)} zero"
        parts.append(split)
    if event.bottleneck:
        parts.append(f"bottleneck {event.bottleneck}")
    if limited := event.limited:
        parts.append(limited)
    return " · ".join(parts)


class JobRow(Vertical):
    """`kind target · phase  [bar]  done / total`, then `rate · ETA · split · bottleneck`
    while it runs; one line with the outcome (or the error) after.

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
        with Horizontal(classes="job-line"):
            yield Static(classes="job-label")
            yield ProgressBar(total=100, show_eta=False, show_percentage=True, classes="job-bar")
            yield Static(classes="job-stats")
        yield Static(classes="job-detail")

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
        detail = ""
        if self.status == "running":
            stats = "starting"
            if event is not None:
                label = f"{label} · {event.phase}"
                total = max(event.bytes_total, 1)
                bar.update(total=total, progress=min(event.bytes_done, total))
                stats = transfer_line(event)
                detail = detail_line(event)
            if self.text:  # e.g. "cancelling"
                detail = f"{self.text} · {detail}" if detail else self.text
        else:
            stats = f"{OUTCOME_MARK.get(self.status, '')} {self.status}".strip()
            label = f"{label} · {self.text}" if self.text else label
            if self.status == "succeeded":
                bar.update(total=100, progress=100)
        self.query_one(".job-label", Static).update(Text(printable(label)))
        self.query_one(".job-stats", Static).update(Text(printable(stats)))
        line = self.query_one(".job-detail", Static)
        line.update(Text(printable(detail)))
        line.display = bool(detail)


class JobsStrip(VerticalScroll):
    """The running jobs, newest first, then the last one that finished."""

    BORDER_TITLE = "Jobs"
    can_focus = False

    def compose(self) -> ComposeResult:
        yield Static("no jobs yet · s snapshot · b backup · J every job", id="jobs-empty")

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
        self.border_subtitle = "c cancels a running job · J every job"
        return row

    def finish(self, job_id: str, status: str, text: str) -> None:
        """A job ended: its row shows the outcome, below the running ones, and replaces
        the one that finished before (it stays in the jobs view)."""
        row = self.row(job_id)
        if row is None:
            return
        row.finish(status, text)
        for old in self.query(JobRow):
            if old is not row and old.status != "running":
                old.remove()
        running = [r for r in self.query(JobRow) if r.status == "running"]
        if running and self.children.index(row) < self.children.index(running[-1]):
            self.move_child(row, after=running[-1])

    def running(self) -> list[str]:
        return [row.job_id for row in self.query(JobRow) if row.status == "running"]
