"""The main screen: the disks view (panes, details), the policies view or the vaults view,
the jobs strip.
It renders and starts workers, nothing else."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import DescendantFocus
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import ContentSwitcher, DataTable, Header, Input, Static
from textual.worker import Worker, WorkerState

from core.api import Blockvault, BlockvaultError, ProgressEvent, printable
from tui.console import actions, columns, panes
from tui.console.details import DetailsPanel
from tui.console.flows import ActionFlows
from tui.console.footer import ConsoleFooter
from tui.console.help import HelpScreen
from tui.console.jobs_strip import JobRow, JobsStrip
from tui.console.jobs_view import JobsScreen, outcome
from tui.console.messages import (
    ActiveJobs,
    Inventory,
    JobFinished,
    JobProgress,
    JobStarted,
    PolicyRan,
    Selection,
)
from tui.console.panes import PaneTable

JOB_POLL_SECONDS = 2.0
AGE_SECONDS = 1.0  # ages ("5s ago") and times to come ("in 3m") are redrawn this often
STATUS_EVERY = 15  # every 15th job poll (30 s) also reloads protection and policies: time
# alone turns a disk overdue


class MainScreen(ActionFlows, Screen):
    BINDINGS = [*actions.bindings(), Binding("escape", "clear_filter", "Clear filter", show=False)]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # a tall terminal: taller details

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every notification carries names from the catalog: shown, never interpreted."""
        super().notify(
            printable(message, newlines=True),
            title=printable(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def __init__(self, bv: Blockvault, *, read_only: bool = False) -> None:
        super().__init__(id="main")
        self.bv = bv
        self.read_only = read_only
        self.handles: dict[str, Any] = {}
        self.requests: dict[str, Any] = {}  # job id -> how the service could run it (quit)
        self.inventory: Inventory | None = None
        self.snapshots: list[dict[str, Any]] = []
        self.backups: list[dict[str, Any]] = []
        self.show_all = False
        self.filter_text = ""
        self.cursor_target: str | None = None  # an object a finished job made: show it
        self.view = "disks"  # or "policies", "vaults"
        self.polls = 0
        self.stopping = False
        self.right_wants = 0  # the widest the snapshots or backups pane wanted so far
        self.left_width = 0

    # --- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        yield Input(placeholder="filter by name (esc clears)", id="filter")
        with ContentSwitcher(initial="body", id="views"):
            with Horizontal(id="body"):
                with Vertical(id="left"):
                    yield PaneTable("Disks", id="disks")
                    yield DetailsPanel(id="details")
                with Vertical(id="right"):
                    yield PaneTable("Snapshots", id="snapshots")
                    yield PaneTable("Backups", id="backups")
            with Vertical(id="policies-view"):
                yield PaneTable("Policies", id="policies")
                yield DetailsPanel(id="policy-details")
            with Vertical(id="vaults-view"):
                yield PaneTable("Vaults", id="vaults")
                yield DetailsPanel(id="vault-details")
        yield JobsStrip(id="jobs")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.table("disks").set_columns(panes.DISK_COLUMNS)
        self.table("snapshots").set_columns(panes.SNAPSHOT_COLUMNS)
        self.table("backups").set_columns(panes.BACKUP_COLUMNS)
        self.table("policies").set_columns(panes.POLICY_COLUMNS)
        self.table("vaults").set_columns(panes.VAULT_COLUMNS)
        self.query_one("#filter").display = False
        self.query_one("#details", DetailsPanel).border_title = "Details"
        self.query_one("#policy-details", DetailsPanel).border_title = "Policy"
        self.query_one("#vault-details", DetailsPanel).border_title = "Vault"
        if self.read_only:
            self.query_one("#jobs-empty", Static).update("no jobs (read-only: nothing can start)")
        self.table("disks").focus()
        self.load_inventory()
        self.set_interval(JOB_POLL_SECONDS, self._poll)
        self.set_interval(AGE_SECONDS, self._tick)

    def on_resize(self) -> None:
        self._share_width()

    def _share_width(self) -> None:
        """The disks pane on the left, the snapshots and backups on the right: the width is
        split by what they hold (the right side never narrows again, so moving from disk to
        disk does not move the split)."""
        total = self.size.width
        if total <= 0:
            return
        disks = self.table("disks")
        right = [self.table("snapshots"), self.table("backups")]
        self.right_wants = max(self.right_wants, *(t.wants_width() for t in right))
        left, _ = columns.share(
            total,
            [disks.wants_width(), self.right_wants],
            [disks.least_width(), max(t.least_width() for t in right)],
        )
        if left != self.left_width:
            self.left_width = left
            self.query_one("#left").styles.width = left

    def _tick(self) -> None:
        """Redraw what depends on the clock: a table cell changes only when its text does."""
        if self.inventory is None:
            return
        self._render_disks()
        self._render_policies()
        self._render_selection()

    def table(self, name: str) -> PaneTable:
        return self.query_one(f"#{name}", PaneTable)

    def now(self):  # type: ignore[no-untyped-def]
        return self.app.clock()

    # --- selection ----------------------------------------------------------------------

    def selected_row(self) -> dict[str, Any] | None:
        """The selected row of the disks pane: a server header or a disk."""
        return self.table("disks").selected()

    def selected_disk(self) -> dict[str, Any] | None:
        row = self.selected_row()
        return row if row and row.get("kind") == "disk" else None

    def focused_pane(self) -> str:
        focused = self.focused
        if isinstance(focused, PaneTable) and focused.id:
            return focused.id
        return self._home_pane()

    def focused_object(self) -> dict[str, Any] | None:
        return self.table(self.focused_pane()).selected()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hidden: changes under --read-only, and the actions of the view not shown (their
        key then goes to the action of this view that has it)."""
        if self.read_only and action in actions.MUTATING:
            return False
        if self.view == "vaults" and action == "delete":
            return False  # `vault remove` is the command line's (its plan forgets backups)
        return actions.in_view(action, self.view)

    # --- loading (workers post, handlers render) ----------------------------------------

    @work(thread=True, exclusive=True, group="inventory", exit_on_error=False)
    def load_inventory(self) -> None:
        bv = self.bv
        status = bv.status()  # vaults included; nothing is created under --read-only
        counts: dict[str, int] = {}
        for snapshot in bv.list_snapshots():
            counts[snapshot["disk_id"]] = counts.get(snapshot["disk_id"], 0) + 1
        self.post_message(
            Inventory(
                disks=bv.list_disks(),
                snapshot_counts=counts,
                jobs=bv.list_jobs(active=True),
                status={**status, "servers_list": [s["name"] for s in bv.list_servers()]},
                protection=bv.protection_status(),
                policies=bv.list_policies(),
                vaults=bv.list_vaults(create_default=False),
            )
        )

    @work(thread=True, exclusive=True, group="selection", exit_on_error=False)
    def load_selection(self, disk_id: str | None, show_all: bool) -> None:
        bv = self.bv
        snapshots = bv.list_snapshots(disk=disk_id) if disk_id else []
        if show_all:
            backups = bv.list_backups(include_deleted_disks=True)
        else:
            backups = bv.list_backups(disk=disk_id) if disk_id else []
        self.post_message(Selection(disk_id, show_all, snapshots, backups))

    @on(Inventory)
    def _inventory(self, message: Inventory) -> None:
        self.inventory = message
        self._render_header(message.status)
        self._render_disks()
        self._render_policies()
        self._render_vaults()
        self._reload_selection()

    @on(Selection)
    def _selection(self, message: Selection) -> None:
        disk = self.selected_disk()
        if message.disk_id != (disk["id"] if disk else None) or message.show_all != self.show_all:
            return  # a stale answer: the cursor moved on while it was loading
        self.snapshots, self.backups = message.snapshots, message.backups
        self._render_selection()

    def _render_header(self, status: dict[str, Any]) -> None:
        vaults = ", ".join(f"{n} {s} ({c})" for n, s, c in status["vaults"]) or "none yet"
        backend = str(status["catalog"]).split(":", 1)[0].split("+", 1)[0]
        mode = " · READ-ONLY" if self.read_only else ""
        self.app.sub_title = (
            f"{status['actor']} · {backend} v{status['schema_version']} · vault {vaults}{mode}"
        )
        counts = (self.inventory.protection if self.inventory else {}).get("counts", {})
        alerts = {name: counts.get(name, 0) for name in ("overdue", "failing")}
        self.app.alerts = alerts  # type: ignore[attr-defined]
        badges = self._vault_badges(status.get("vaults_over_alert", []))
        self.app.badges = badges  # type: ignore[attr-defined]
        # the title changes with the counts, so the header redraws (app.format_title styles them)
        self.title = " · ".join(
            ["blockvault", *(f"{n} {k}" for k, n in alerts.items() if n), *(t for t, _ in badges)]
        )

    def _vault_badges(self, names: list[str]) -> list[tuple[str, str]]:
        """The header's badge for vaults past their alert threshold: 'vault offsite 85%'
        (one), '2 vaults over alert' (several); in the error colour once one is full."""
        if not names:
            return []
        vaults = {v["name"]: v for v in (self.inventory.vaults if self.inventory else [])}
        full = any((vaults.get(n, {}).get("percent_used") or 0) >= 100 for n in names)
        style = "error" if full else "warning"
        if len(names) == 1:
            percent = vaults.get(names[0], {}).get("percent_used")
            shown = f" {percent:.0f}%" if percent is not None else " over alert"
            return [(f"vault {names[0]}{shown}", style)]
        return [(f"{len(names)} vaults over alert", style)]

    def colors(self) -> dict[str, str]:
        """The theme's status colours, for table cells (Rich text cannot read theme variables)."""
        variables = self.app.theme_variables
        return {name: variables[name] for name in ("success", "warning", "error")}

    def _matches(self, *names: str | None) -> bool:
        needle = self.filter_text.lower()
        return not needle or any(needle in (n or "").lower() for n in names)

    def _render_disks(self) -> None:
        if self.inventory is None:
            return
        inv = self.inventory
        disks = [d for d in inv.disks if self._matches(d["name"], d["server"])]
        servers = [s for s in inv.status["servers_list"] if self._matches(s)]
        protection = {row["disk_id"]: row for row in inv.protection.get("disks", [])}
        rows = panes.disk_rows(
            disks, servers, self.now(), protection, self.colors(), inv.snapshot_counts
        )
        table = self.table("disks")
        before = table.selected()
        table.replace_rows(rows, len(inv.disks))
        if before is None or before["_key"] not in table.rows_by_key:  # first, or filtered out
            disks_at = [i for i, (_, obj, _) in enumerate(rows) if obj["kind"] == "disk"]
            table.move_cursor(row=disks_at[0] if disks_at else 0)  # a disk, not its server
        self._share_width()
        self._move_to_target()
        self._show_details()

    def _render_policies(self) -> None:
        if self.inventory is None:
            return
        every = self.inventory.policies
        shown = [p for p in every if self._matches(p["name"], *(d["name"] for d in p["disks"]))]
        table = self.table("policies")
        table.replace_rows(panes.policy_rows(shown, self.now(), self.colors()), len(every))
        self._move_to_target()
        self._show_details()

    def _render_vaults(self) -> None:
        if self.inventory is None:
            return
        every = self.inventory.vaults
        shown = [v for v in every if self._matches(v["name"])]
        self.table("vaults").replace_rows(panes.vault_rows(shown, self.colors()), len(every))
        self._show_details()

    def _reload_selection(self) -> None:
        disk = self.selected_disk()
        self.load_selection(disk["id"] if disk else None, self.show_all)

    def _render_selection(self) -> None:
        now = self.now()
        snaps = [s for s in self.snapshots if self._matches(s["name"], s["disk_name"])]
        backups = [b for b in self.backups if self._matches(b["name"], b["disk_name"])]
        self.table("snapshots").replace_rows(panes.snapshot_rows(snaps, now), len(self.snapshots))
        self.table("backups").replace_rows(panes.backup_rows(backups, now), len(self.backups))
        self.table("backups").border_title = "Backups (all)" if self.show_all else "Backups"
        self._share_width()
        self._move_to_target()
        self._show_details()

    def _move_to_target(self) -> None:
        """Put the cursor on the snapshot, backup or disk a job just made, once it is listed."""
        key = self.cursor_target
        if key is None:
            return
        for name in ("disks", "snapshots", "backups", "policies"):
            table = self.table(name)
            if key in table.rows_by_key:
                self.cursor_target = None
                table.move_cursor(row=table.get_row_index(key))
                return

    def _show_details(self) -> None:
        panel = {"policies": "#policy-details", "vaults": "#vault-details"}.get(
            self.view, "#details"
        )
        self.query_one(panel, DetailsPanel).show(self.focused_object(), now=self.now())

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "disks":
            self._reload_selection()
        self._show_details()

    @on(DescendantFocus)
    def _focus_moved(self) -> None:
        self._show_details()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """Any worker failure becomes a notification with its cause, never a crash."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(
                f"{event.worker.name}: {error}", title="error", severity="error", timeout=10
            )

    @on(DataTable.RowSelected)
    def _open_details(self) -> None:
        """enter on a row opens its details (flows.py); tab moves between the panes."""
        self.action_open_details()

    # --- jobs ---------------------------------------------------------------------------

    def _poll(self) -> None:
        strip = self.query_one(JobsStrip)
        followed = [r.job_id for r in strip.query(JobRow) if r.external and r.status == "running"]
        self.poll_jobs(followed)

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def poll_jobs(self, followed: list[str]) -> None:
        """The active jobs, and how the followed ones of other processes ended (their row)."""
        active = self.bv.list_jobs(active=True)
        running = {job["id"] for job in active}
        ended: dict[str, dict[str, Any] | None] = {}
        for job_id in followed:
            if job_id not in running:
                try:
                    ended[job_id] = self.bv.get_job(job_id)
                except BlockvaultError:
                    ended[job_id] = None  # gone from the catalog (pruned)
        self.post_message(ActiveJobs(active, ended))

    @on(ActiveJobs)
    def _active_jobs(self, message: ActiveJobs) -> None:
        """Show jobs of other processes (e.g. a cron backup) from their catalog rows."""
        strip = self.query_one(JobsStrip)
        active = {job["id"]: job for job in message.jobs if job["id"] not in self.handles}
        for job_id, job in active.items():
            row = strip.row(job_id)
            if row is None:
                row = strip.add_job(job_id, job["kind"], job["target_name"])
                row.external = True
            if not row.external:
                continue  # our own job: its progress comes straight from its handle
            row.progress(
                ProgressEvent(
                    job_id,
                    job["phase"] or job["status"],
                    job["bytes_done"],
                    job["bytes_total"],
                    rate=job["rate"] or 0.0,
                    eta=job["eta"],
                )
            )
        ended = [
            (job_id, job)
            for job_id, job in message.ended.items()
            if (row := strip.row(job_id)) is not None and row.external and row.status == "running"
        ]
        for job_id, job in ended:  # its real end state, from its row in the catalog
            if job is None:
                strip.finish(job_id, "ended", f"see blockvault job show {job_id}")
            else:
                strip.finish(job_id, job["status"], outcome(job))
        self.polls += 1
        if ended or self.polls % STATUS_EVERY == 0:
            self.load_inventory()

    @on(JobStarted)
    def _started(self, message: JobStarted) -> None:
        """A job a worker started (a policy's backup): its row, and its handle for c and q."""
        if message.handle is not None:
            self.handles[message.job_id] = message.handle
        self.query_one(JobsStrip).add_job(message.job_id, message.kind, message.target)

    @on(PolicyRan)
    def _policy_ran(self, message: PolicyRan) -> None:
        outcomes = message.outcomes
        backed = sum(1 for o in outcomes if "disk" in o and o["status"] == "succeeded")
        failed = [o for o in outcomes if o["status"] == "failed"]
        expired = sum(1 for o in outcomes if o["status"] == "expired")
        text = f"policy {message.policy} ran: {backed} backed up, {expired} expired"
        if failed:
            text += f", {len(failed)} failed ({failed[0].get('error')})"
        elif not outcomes:
            text = f"policy {message.policy}: nothing ran (another runner took its slot)"
        self.notify(text, severity="error" if failed else "information", timeout=8)
        self.load_inventory()

    @on(JobProgress)
    def _progress(self, message: JobProgress) -> None:
        row = self.query_one(JobsStrip).row(message.event.job_id)
        if row is not None and row.status == "running":
            row.progress(message.event)

    @on(JobFinished)
    def _finished(self, message: JobFinished) -> None:
        self.handles.pop(message.job_id, None)
        if message.status == "succeeded" and message.result_id:
            self.cursor_target = message.result_id
        self.query_one(JobsStrip).finish(
            message.job_id, message.status, message.error or message.summary
        )
        what = f"{message.kind} {message.target}"
        if message.status == "failed":
            self.notify(f"{what} failed: {message.error}", severity="error", timeout=10)
        elif message.status == "cancelled":
            self.notify(f"{what} cancelled", severity="warning")
        else:
            self.notify(f"{what} done{': ' + message.summary if message.summary else ''}")
        self.load_inventory()

    # --- view actions -------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.load_inventory()

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        self._reload_selection()

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._render_disks()
        self._render_policies()
        self._render_vaults()
        self._render_selection()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.table(self._home_pane()).focus()

    def action_clear_filter(self) -> None:
        """esc: clears the filter first, then goes back from the policies or vaults to the
        disks."""
        field = self.query_one("#filter", Input)
        if field.display:
            field.value = ""
            field.display = False
            self.table(self._home_pane()).focus()
        elif self.view in ("policies", "vaults"):
            self.action_show_disks()

    def _home_pane(self) -> str:
        return self.view if self.view in ("policies", "vaults") else "disks"

    def _switch(self, view: str) -> None:
        self.view = view
        self.query_one("#views", ContentSwitcher).current = (
            f"{view}-view" if view in ("policies", "vaults") else "body"
        )
        self.table(self._home_pane()).focus()
        self.refresh_bindings()  # the footer shows this view's keys
        self._show_details()

    def action_show_policies(self) -> None:
        self._switch("policies")

    def action_show_disks(self) -> None:
        self._switch("disks")

    def action_show_vaults(self) -> None:
        self._switch("vaults")

    def action_leave_vaults(self) -> None:
        self._switch("disks")

    def action_show_jobs(self) -> None:
        self.app.push_screen(JobsScreen(self.bv, self.now()))

    def action_help(self) -> None:
        hidden = set(actions.MUTATING) if self.read_only else set()
        self.app.push_screen(HelpScreen(hidden, self.app.keymap))  # type: ignore[attr-defined]

    def action_palette(self) -> None:
        self.app.action_command_palette()

    def action_toggle_theme(self) -> None:
        self.app.toggle_theme()
        self._render_disks()  # the status colours come from the theme
        self._render_policies()
        self._render_vaults()
