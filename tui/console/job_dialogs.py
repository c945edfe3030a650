"""Dialogs about running jobs: which one to cancel, and what happens to them on quit.

Both follow the jobs while open (`running()` is asked four times a second): a job that ends
leaves the list, and the cancel dialog closes once none is left, so no answer is ever given
about a job that has already finished.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Button, Label, Static

from core.api import printable
from tui.console.modals import Dialog

FOLLOW_SECONDS = 0.25


class CancelJobModal(Dialog):
    """One button per running job (`jobs`: id -> label), "Keep running" first and focused;
    returns the job id to cancel, or None. `y` cancels the focused job, or the only one."""

    def __init__(self, jobs: dict[str, str], running: Callable[[], list[str]]) -> None:
        super().__init__()
        self.jobs = dict(jobs)
        self.running = running

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text("Cancel which job?", style="bold"), id="dialog-title")
            yield Static(
                "It stops at the next chunk; nothing partial is kept visible.\n"
                "$ blockvault job cancel JOB",
                classes="command",
            )
            with Vertical(classes="choices"):
                yield Button("Keep running", id="keep", classes="choice")
                for job_id, label in self.jobs.items():
                    yield Button(Text(printable(label)), id=f"cancel-{job_id}", classes="choice")

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()
        self.set_interval(FOLLOW_SECONDS, self.follow)

    def follow(self) -> None:
        """Drop the jobs that ended; close once none is left."""
        still = set(self.running())
        for job_id in [j for j in self.jobs if j not in still]:
            del self.jobs[job_id]
            self.query(f"#cancel-{job_id}").remove()
            self.notify(f"job {job_id} ended meanwhile")
        if not self.jobs:
            self.dismiss(None)

    @on(Button.Pressed, "#keep")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, ".choice")
    def _chosen(self, event: Button.Pressed) -> None:
        if event.button.id and event.button.id.startswith("cancel-"):
            self.dismiss(event.button.id.removeprefix("cancel-"))

    def action_confirm(self) -> None:
        focused = self.focused.id if self.focused else ""
        if focused and focused.startswith("cancel-"):
            self.dismiss(focused.removeprefix("cancel-"))
        elif len(self.jobs) == 1:
            self.dismiss(next(iter(self.jobs)))


class QuitModal(Dialog):
    """Quit while jobs of this console run: "Stay" (focused), hand the backups to the running
    service (when one runs), or cancel them and quit. Returns "hand", "quit" or None; `y` quits
    the way the last button says. The list follows the jobs; when all ended, quitting cancels
    nothing, and the buttons say so."""

    def __init__(
        self,
        jobs: dict[str, str],
        running: Callable[[], list[str]],
        *,
        handable: set[str],
        service: str | None,
    ) -> None:
        super().__init__()
        self.jobs = dict(jobs)
        self.running = running
        self.handable = handable
        self.service = service

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text("Quit blockvault?", style="bold"), id="dialog-title")
            yield Static(id="quit-jobs")
            with Vertical(classes="choices"):
                yield Button("Stay (the jobs go on)", id="stay", classes="choice")
                yield Button("", id="hand", classes="choice")
                yield Button("", id="quit", classes="choice")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()
        self.show()
        self.set_interval(FOLLOW_SECONDS, self.follow)

    def show(self) -> None:
        """The running jobs and what each choice does to them."""
        lines = [f"{'·'} {label}" for label in self.jobs.values()]
        handing = [j for j in self.jobs if j in self.handable]
        if self.jobs:
            head = f"{len(self.jobs)} job(s) of this console still run:"
        else:
            head = "the jobs have ended: quitting cancels nothing"
        self.query_one("#quit-jobs", Static).update(
            Text(printable("\n".join([head, *lines]), newlines=True))
        )
        hand = self.query_one("#hand", Button)
        hand.display = bool(self.service and handing)
        rest = len(self.jobs) - len(handing)
        hand.label = Text(
            f"Hand {len(handing)} backup(s) to the service on {self.service} and quit "
            "(they start again there)" + (f"; cancel the other {rest}" if rest else "")
        )
        self.query_one("#quit", Button).label = (
            f"Cancel {len(self.jobs)} job(s) and quit" if self.jobs else "Quit"
        )

    def follow(self) -> None:
        still = set(self.running())
        ended = [j for j in self.jobs if j not in still]
        for job_id in ended:
            del self.jobs[job_id]
        if ended:
            self.show()

    @on(Button.Pressed, "#stay")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#hand")
    def _hand(self) -> None:
        self.dismiss("hand")

    @on(Button.Pressed, "#quit")
    def _quit(self) -> None:
        self.dismiss("quit")

    def action_confirm(self) -> None:
        self.dismiss("hand" if self.query_one("#hand", Button).display else "quit")
