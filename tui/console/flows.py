"""Action flows: plan (in a thread) -> confirmation modal -> start the job. Mixed into MainScreen.

Each flow is an async worker: façade calls run in threads, the modal is awaited with
`push_screen_wait`, and the started job runs in a thread worker that posts its progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Callable
from typing import Any

from textual import work

from core.api import BlockvaultError, Plan, PlanItem
from tui.console.chooser import DetailsModal, RestoreChooser
from tui.console.job_dialogs import CancelJobModal, QuitModal
from tui.console.jobs_strip import JobRow, JobsStrip
from tui.console.messages import JobFinished, JobProgress, JobStarted, PolicyRan
from tui.console.modals import (
    ChoiceModal,
    ConfirmationModal,
    DisksPickerModal,
    NameModal,
    PolicyFormModal,
)


def cli(*argv: str) -> str:
    return "blockvault " + " ".join(shlex.quote(a) for a in argv)


def finished(handle: Any, kind: str, target: str) -> JobFinished:
    """The message for a job handle that has run."""
    result = handle.result if isinstance(handle.result, dict) else {}
    error = None if handle.error is None or handle.status == "cancelled" else str(handle.error)
    return JobFinished(
        handle.id,
        kind,
        target,
        handle.status,
        error,
        result.get("summary", ""),
        result.get("id"),
    )


def run_plan(policy: dict[str, Any], due: list[dict[str, Any]]) -> Plan:
    """`policy run NAME --now --dry-run` as one plan: a backup of each covered disk, then the
    policy's retention as it applies after them."""
    entry = due[0] if due else {"backs_up": [], "retention": None}
    retention = Plan.from_dict(entry["retention"]) if entry["retention"] else None
    items = [PlanItem("create", "backup", "", f"of {disk}") for disk in entry["backs_up"]]
    items += list(retention.items) if retention else []
    refusal = None
    if not entry["backs_up"]:
        refusal = "it covers no disk yet (a applies it to disks)"
    return Plan(
        "run policy now",
        policy["name"],
        tuple(items),
        refusal=refusal,
        route=f"each backup into the policy's vault, then retention ({policy['retention']})",
        warnings=retention.warnings if retention else (),
        destructive=bool(retention and retention.of("delete")),
    )


class ActionFlows:
    """Needs: self.bv, self.handles, selected_disk(), selected_row(), focused_pane(),
    focused_object(), table(), load_inventory(), notify(), app."""

    bv: Any
    handles: dict[str, Any]
    #: how to start each running backup of this console again in the service (quit hands it)
    requests: dict[str, tuple[str, dict[str, Any], Plan]]

    # --- plumbing -----------------------------------------------------------------------

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A façade call off the UI thread."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def confirm(self, plan: Plan, command: str, label: str) -> bool:
        modal = ConfirmationModal(plan, command=command, confirm_label=label)
        return bool(await self.app.push_screen_wait(modal))  # type: ignore[attr-defined]

    async def ask_name(self, title: str, default: str, hint: str = "") -> str | None:
        return await self.app.push_screen_wait(NameModal(title, default=default, hint=hint))  # type: ignore[attr-defined]

    async def choose(
        self, title: str, choices: list[tuple[str, str]], body: str = ""
    ) -> str | None:
        """`y` gives the first answer after Cancel (the next dialog still asks, with a plan)."""
        yes = next((value for value, _ in choices if value != "cancel"), None)
        return await self.app.push_screen_wait(ChoiceModal(title, choices, body=body, yes=yes))  # type: ignore[attr-defined]

    def track(self, handle: Any, kind: str, target: str) -> None:
        """Show a started job in the strip and run it in a thread worker."""
        self.handles[handle.id] = handle
        self.query_one(JobsStrip).add_job(handle.id, kind, target)  # type: ignore[attr-defined]
        post = self.post_message  # type: ignore[attr-defined]
        handle.subscribe(lambda event: post(JobProgress(event)))
        self.run_job(handle, kind, target)

    @work(thread=True, group="jobs", exit_on_error=False)
    def run_job(self, handle: Any, kind: str, target: str) -> None:
        handle.run()  # records success, failure or cancellation in the job row itself
        self.post_message(finished(handle, kind, target))  # type: ignore[attr-defined]

    async def guarded(self, flow: Callable[[], Any]) -> None:
        try:
            await flow()
        except BlockvaultError as exc:
            self.notify(str(exc), severity="error", timeout=8)  # type: ignore[attr-defined]

    def need_disk(self) -> dict[str, Any] | None:
        disk = self.selected_disk()  # type: ignore[attr-defined]
        if disk is None:
            self.notify("select a disk first (a row under a server)", severity="warning")  # type: ignore[attr-defined]
        return disk

    def need_source(self) -> dict[str, Any] | None:
        """The snapshot or backup under the cursor of the focused pane."""
        pane = self.focused_pane()  # type: ignore[attr-defined]
        obj = self.focused_object()  # type: ignore[attr-defined]
        if pane in ("snapshots", "backups") and obj is not None:
            return obj
        self.notify(  # type: ignore[attr-defined]
            "select a snapshot or a backup first (tab moves to their panes)", severity="warning"
        )
        target = "snapshots" if self.table("snapshots").row_count else "backups"  # type: ignore[attr-defined]
        self.table(target).focus()  # type: ignore[attr-defined]
        return None

    # --- actions ------------------------------------------------------------------------

    def action_snapshot(self) -> None:
        if disk := self.need_disk():
            self.snapshot_flow(disk)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def snapshot_flow(self, disk: dict[str, Any]) -> None:
        async def flow() -> None:
            plan = await self.call(self.bv.plan_snapshot, disk["id"])
            if await self.confirm(plan, cli("snapshot", "create", disk["name"]), "Snapshot"):
                handle = await self.call(self.bv.start_snapshot, disk["id"], plan=plan)
                self.track(handle, "snapshot", disk["name"])

        await self.guarded(flow)

    def action_backup(self) -> None:
        if disk := self.need_disk():
            self.backup_flow(disk)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def backup_flow(self, disk: dict[str, Any]) -> None:
        async def flow() -> None:
            plan = await self.call(self.bv.plan_backup, disk["id"])  # the default vault
            if await self.confirm(plan, cli("backup", "create", disk["name"]), "Back up"):
                handle = await self.call(self.bv.start_backup, disk["id"], plan=plan)
                self.requests[handle.id] = ("backup", {"disk": disk["id"]}, plan)
                self.track(handle, "backup", disk["name"])

        await self.guarded(flow)

    def action_restore(self) -> None:
        """On a disk: the chooser of its ways back; on a snapshot or backup: restore it."""
        if self.focused_pane() == "disks":  # type: ignore[attr-defined]
            if disk := self.need_disk():
                self.chooser_flow(disk)
        elif source := self.need_source():
            self.restore_flow(source)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def chooser_flow(self, disk: dict[str, Any]) -> None:
        async def flow() -> None:
            routes = await self.call(self.bv.restore_routes, disk["id"])
            if not routes:
                said = f"disk {disk['name']} has no snapshot or backup to restore from"
                self.notify(said, severity="warning")  # type: ignore[attr-defined]
                return
            chooser = RestoreChooser(disk, routes, self.now())  # type: ignore[attr-defined]
            route = await self.app.push_screen_wait(chooser)  # type: ignore[attr-defined]
            if route is None:
                return
            if route["kind_of"] == "snapshot":
                await self._rollback(route)
            else:
                await self._restore_onto(route)

        await self.guarded(flow)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def restore_flow(self, source: dict[str, Any]) -> None:
        async def flow() -> None:
            if source.get("kind_of") == "snapshot":
                await self._rollback(source)
                return
            choices = [("cancel", "Cancel"), ("new", "Restore to a new disk…")]
            if not source.get("disk_deleted"):
                choices.insert(1, ("original", f"Restore onto {source['disk_name']} (overwrite)"))
            where = await self.choose(f"Restore backup {source['name']}", choices)
            if where == "original":
                await self._restore_onto(source)
            elif where == "new":
                await self._restore_to_new(source)

        await self.guarded(flow)

    async def _rollback(self, snapshot: dict[str, Any]) -> None:
        plan = await self.call(self.bv.plan_rollback, snapshot["id"])
        if await self.confirm(plan, cli("snapshot", "rollback", snapshot["name"]), "Roll back"):
            handle = await self.call(self.bv.start_rollback, snapshot["id"], plan=plan)
            self.track(handle, "rollback", snapshot["disk_name"])

    async def _restore_onto(self, backup: dict[str, Any]) -> None:
        plan = await self.call(self.bv.plan_restore, backup["id"], to_original=True)
        command = cli("backup", "restore", backup["name"], "--to-original")
        if await self.confirm(plan, command, "Restore"):
            handle = await self.call(
                self.bv.start_restore, backup["id"], to_original=True, plan=plan
            )
            self.track(handle, "restore", backup["disk_name"])

    async def _restore_to_new(self, backup: dict[str, Any]) -> None:
        name = await self.ask_name(
            f"New disk from backup {backup['name']}",
            f"{backup['disk_name']}-restored",
            "an unattached disk in the pool, at least the backup's size",
        )
        if not name:
            return
        plan = await self.call(self.bv.plan_restore, backup["id"], to_original=False, new_name=name)
        command = cli("backup", "restore", backup["name"], "--to-new", name)
        if await self.confirm(plan, command, "Create disk"):
            handle = await self.call(
                self.bv.start_restore, backup["id"], to_original=False, new_name=name, plan=plan
            )
            self.track(handle, "restore", name)

    def action_new_disk(self) -> None:
        if source := self.need_source():
            self.new_disk_flow(source)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def new_disk_flow(self, source: dict[str, Any]) -> None:
        async def flow() -> None:
            if source.get("kind_of") == "backup":
                await self._restore_to_new(source)
                return
            name = await self.ask_name(
                f"New disk from snapshot {source['name']}", f"{source['disk_name']}-copy"
            )
            if not name:
                return
            plan = await self.call(self.bv.plan_snapshot_to_disk, source["id"], name)
            if await self.confirm(
                plan, cli("snapshot", "to-disk", source["name"], name), "Create disk"
            ):
                handle = await self.call(
                    self.bv.start_snapshot_to_disk, source["id"], name, plan=plan
                )
                self.track(handle, "to-disk", name)

        await self.guarded(flow)

    def action_delete(self) -> None:
        obj = self.focused_object()  # type: ignore[attr-defined]
        if obj is None:
            self.notify("nothing selected to delete", severity="warning")  # type: ignore[attr-defined]
            return
        self.delete_flow(obj)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def delete_flow(self, obj: dict[str, Any]) -> None:
        bv = self.bv
        if obj.get("kind_of") == "snapshot":
            plan_fn, do_fn, noun = bv.plan_delete_snapshot, bv.delete_snapshot, "snapshot"
        elif obj.get("kind_of") == "backup":
            plan_fn, do_fn, noun = bv.plan_delete_backup, bv.delete_backup, "backup"
        elif obj.get("kind") == "disk":
            plan_fn, do_fn, noun = bv.plan_delete_disk, bv.delete_disk, "disk"
        elif obj.get("kind") == "policy":
            plan_fn, do_fn, noun = bv.plan_delete_policy, bv.delete_policy, "policy"
        else:
            plan_fn, do_fn, noun = bv.plan_delete_server, bv.delete_server, "server"

        async def flow() -> None:
            plan = await self.call(plan_fn, obj["id"] if noun != "server" else obj["name"])
            if await self.confirm(plan, cli(noun, "delete", obj["name"]), "Delete"):
                await self.call(do_fn, obj["id"] if noun != "server" else obj["name"], plan=plan)
                self.notify(f"deleted {noun} {obj['name']}")  # type: ignore[attr-defined]
                self.load_inventory()  # type: ignore[attr-defined]

        await self.guarded(flow)

    def action_undo(self) -> None:
        if disk := self.need_disk():
            self.undo_flow(disk)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def undo_flow(self, disk: dict[str, Any]) -> None:
        async def flow() -> None:
            plan = await self.call(self.bv.plan_undo, disk["id"])
            if await self.confirm(plan, cli("disk", "undo", disk["name"]), "Undo"):
                handle = await self.call(self.bv.start_undo, disk["id"], plan=plan)
                self.track(handle, "undo", disk["name"])

        await self.guarded(flow)

    def running_jobs(self, *, own: bool = False) -> dict[str, str]:
        """The jobs strip's running jobs (with `own`, only this console's), newest first:
        id -> 'backup db1-data · 42% · job-…'."""
        jobs = {}
        for row in self.query_one(JobsStrip).query(JobRow):  # type: ignore[attr-defined]
            if row.status != "running" or (own and row.job_id not in self.handles):
                continue
            done = ""
            if row.event is not None and row.event.bytes_total:
                done = f" · {100 * row.event.bytes_done // row.event.bytes_total}%"
            jobs[row.job_id] = f"{row.kind} {row.target}{done} · {row.job_id}"
        return jobs

    def action_cancel_job(self) -> None:
        running = self.running_jobs()
        if not running:
            self.notify("no running job to cancel", severity="warning")  # type: ignore[attr-defined]
            return
        self.cancel_flow(running)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def cancel_flow(self, running: dict[str, str]) -> None:
        async def flow() -> None:
            modal = CancelJobModal(running, lambda: list(self.running_jobs()))
            job_id = await self.app.push_screen_wait(modal)  # type: ignore[attr-defined]
            if job_id is None:
                return
            handle = self.handles.get(job_id)
            if handle is not None:
                handle.cancel()
            row = self.query_one(JobsStrip).row(job_id)  # type: ignore[attr-defined]
            if row is not None and row.status == "running":
                row.text = "cancelling"
                row.refresh_row()
            with contextlib.suppress(BlockvaultError):  # it ended meanwhile: its outcome shows
                await self.call(self.bv.cancel_job, job_id)

        await self.guarded(flow)

    def action_reinstall(self) -> None:
        row = self.selected_row()  # type: ignore[attr-defined]
        if row is None or (row.get("kind") == "disk" and not row.get("server")):
            self.notify("select a server (or one of its disks) first", severity="warning")  # type: ignore[attr-defined]
            return
        self.reinstall_flow(row["name"] if row.get("kind") == "server" else row["server"])

    @work(group="action", exclusive=True, exit_on_error=False)
    async def reinstall_flow(self, server: str) -> None:
        async def flow() -> None:
            system, backups = await self.call(self.bv.reinstall_sources, server)
            if not backups:
                self.notify(f"no backup of {system['name']} to reinstall from", severity="warning")  # type: ignore[attr-defined]
                return
            choices = [("cancel", "Cancel")] + [
                (b["id"], f"from backup {b['name']}") for b in backups[:5]
            ]
            image = await self.choose(
                f"Reinstall the OS of {server} (system disk {system['name']})", choices
            )
            if not image:
                return
            plan = await self.call(self.bv.plan_reinstall, server, image)
            name = next(b["name"] for b in backups if b["id"] == image)
            if await self.confirm(
                plan, cli("server", "reinstall", server, "--image", name), "Reinstall"
            ):
                handle = await self.call(self.bv.start_reinstall, server, image, plan=plan)
                self.track(handle, "reinstall", server)

        await self.guarded(flow)

    # --- details and quitting -----------------------------------------------------------

    def action_open_details(self) -> None:
        """Enter on a row: its every field in a dialog."""
        obj = self.focused_object()  # type: ignore[attr-defined]
        if obj is None:
            return
        self.app.push_screen(DetailsModal(obj, now=self.now()))  # type: ignore[attr-defined]

    def action_quit(self) -> None:
        """q: at once when no job of this console runs; else ask (as ctrl+c would)."""
        if not self.running_jobs(own=True):
            self.app.exit()  # type: ignore[attr-defined]
            return
        self.quit_flow()

    @work(group="action", exclusive=True, exit_on_error=False)
    async def quit_flow(self) -> None:
        async def flow() -> None:
            services = await self.call(self.bv.running_services)
            service = services[0]["host"] if services else None
            modal = QuitModal(
                self.running_jobs(own=True),
                lambda: list(self.running_jobs(own=True)),
                handable=set(self.requests),
                service=service,
            )
            answer = await self.app.push_screen_wait(modal)  # type: ignore[attr-defined]
            if answer is None:
                return
            self.stopping = True  # a policy run starts no further backup
            handing = [j for j in self.handles if j in self.requests] if answer == "hand" else []
            for handle in list(self.handles.values()):
                handle.cancel()
            if handing:
                said = await self.call(self.hand_to_service, handing)
                self.app.farewell.extend(said)  # type: ignore[attr-defined]
            self.app.exit()  # type: ignore[attr-defined]

        await self.guarded(flow)

    def hand_to_service(self, job_ids: list[str]) -> list[str]:
        """In a thread: each cancelled backup, once stopped, queued again for the service with
        the plan the user confirmed; one line per job for the terminal after the console."""
        said = []
        for job_id in job_ids:
            handle = self.handles.get(job_id)
            verb, arguments, plan = self.requests[job_id]
            if handle is not None:
                with contextlib.suppress(BlockvaultError):  # its end is read from its status
                    handle.wait(30)
                if handle.status == "succeeded":
                    said.append(f"{verb} {job_id} finished before quitting")
                    continue
            try:
                job = self.bv.submit_job(verb, arguments, plan=plan)
            except BlockvaultError as exc:
                said.append(f"{verb} {job_id} cancelled, not handed to the service: {exc}")
                continue
            said.append(
                f"{verb} {job_id} handed to the service as job {job['id']} "
                f"(`blockvault job show {job['id']}`)"
            )
        return said

    # --- policies -----------------------------------------------------------------------

    def need_policy(self) -> dict[str, Any] | None:
        policy = self.table("policies").selected()  # type: ignore[attr-defined]
        if policy is None:
            self.notify("no policy selected (n creates one)", severity="warning")  # type: ignore[attr-defined]
        return policy

    def action_new_policy(self) -> None:
        self.new_policy_flow()

    @work(group="action", exclusive=True, exit_on_error=False)
    async def new_policy_flow(self) -> None:
        bv = self.bv

        def submit(values: dict[str, Any]) -> dict[str, Any]:
            keep = values["keep"]
            if not any(keep.values()) and not values["keep_within"]:
                keep = {**keep, "keep_last": 7}  # as `policy create` without a rule
            return bv.create_policy(
                values["name"],
                schedule=bv.schedule_text(**{values["form"]: values["value"]}),
                keep=keep,
                keep_within=values["keep_within"],
                disks=[d["id"] for d in values["disks"]],
            )

        async def flow() -> None:
            disks = await self.call(bv.list_disks)
            created = await self.app.push_screen_wait(PolicyFormModal(disks, submit))  # type: ignore[attr-defined]
            if not created:
                return
            self.cursor_target = created["id"]
            self.notify(  # type: ignore[attr-defined]
                f"created policy {created['name']}: {created['runs']}, keeps {created['retention']}"
            )
            for warning in created.get("warnings", []):
                self.notify(warning, severity="warning", timeout=8)  # type: ignore[attr-defined]
            self.load_inventory()  # type: ignore[attr-defined]

        await self.guarded(flow)

    def action_apply_policy(self) -> None:
        if policy := self.need_policy():
            self.apply_policy_flow(policy)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def apply_policy_flow(self, policy: dict[str, Any]) -> None:
        async def flow() -> None:
            disks = await self.call(self.bv.list_disks)
            change = await self.app.push_screen_wait(DisksPickerModal(policy, disks))  # type: ignore[attr-defined]
            if not change:
                return
            added, removed = change
            if added:
                await self.call(self.bv.apply_policy, policy["id"], [d["id"] for d in added])
            if removed:
                await self.call(self.bv.unapply_policy, policy["id"], [d["id"] for d in removed])
            said = [
                f"{verb} {', '.join(d['name'] for d in group)}"
                for verb, group in (("applied to", added), ("unapplied from", removed))
                if group
            ]
            self.notify(f"policy {policy['name']} {'; '.join(said) or 'unchanged'}")  # type: ignore[attr-defined]
            self.load_inventory()  # type: ignore[attr-defined]

        await self.guarded(flow)

    def action_run_policy(self) -> None:
        if policy := self.need_policy():
            self.run_policy_flow(policy)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def run_policy_flow(self, policy: dict[str, Any]) -> None:
        async def flow() -> None:
            due = await self.call(self.bv.plan_policy_run, policy=policy["id"], force=True)
            plan = run_plan(policy, due)
            if await self.confirm(plan, cli("policy", "run", policy["name"], "--now"), "Run now"):
                self.run_policy_job(policy)

        await self.guarded(flow)

    @work(thread=True, group="jobs", exit_on_error=False)
    def run_policy_job(self, policy: dict[str, Any]) -> None:
        """The policy's backups one after the other, each a row of the jobs strip with live
        progress (as a backup started with b), then its retention; `PolicyRan` sums it up."""
        post = self.post_message  # type: ignore[attr-defined]
        running: list[tuple[Any, str]] = []

        def on_backup(handle: Any) -> None:  # in this thread, before the backup runs
            for previous, target in running:
                post(finished(previous, "backup", target))
            running.clear()
            try:
                target = self.bv.get_job(handle.id)["target_name"] or "?"
            except BlockvaultError:
                target = "?"
            post(JobStarted(handle.id, "backup", target, handle))
            handle.subscribe(lambda event: post(JobProgress(event)))
            running.append((handle, target))
            if getattr(self, "stopping", False):
                handle.cancel()  # the console is quitting: this one stops at its first chunk

        try:
            outcomes = self.bv.run_policy_now(policy["id"], on_backup=on_backup)
        except BlockvaultError as exc:
            outcomes = [{"policy": policy["name"], "status": "failed", "error": str(exc)}]
        for previous, target in running:
            post(finished(previous, "backup", target))
        post(PolicyRan(policy["name"], outcomes))

    def action_prune_policy(self) -> None:
        if policy := self.need_policy():
            self.prune_policy_flow(policy)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def prune_policy_flow(self, policy: dict[str, Any]) -> None:
        async def flow() -> None:
            plan = await self.call(self.bv.plan_retention, policy["id"])
            if not await self.confirm(plan, cli("policy", "prune", policy["name"]), "Prune"):
                return
            outcomes = await self.call(self.bv.prune_policy, policy["id"], plan=plan)
            expired = sum(1 for o in outcomes if o["status"] == "expired")
            failed = [o for o in outcomes if o["status"] == "failed"]
            text = f"policy {policy['name']}: {expired} backup(s) expired"
            if failed:
                text += f", {len(failed)} failed: {failed[0]['error']}"
            self.notify(text, severity="error" if failed else "information")  # type: ignore[attr-defined]
            self.load_inventory()  # type: ignore[attr-defined]

        await self.guarded(flow)

    # --- one file back: mount the selected backup ---------------------------------------

    def action_mount(self) -> None:
        obj = self.focused_object()  # type: ignore[attr-defined]
        if self.focused_pane() != "backups" or obj is None:  # type: ignore[attr-defined]
            self.notify("select a backup first (tab moves to the backups pane)", severity="warning")  # type: ignore[attr-defined]
            return
        self.mount_flow(obj)

    @work(group="action", exclusive=True, exit_on_error=False)
    async def mount_flow(self, backup: dict[str, Any]) -> None:
        """Mounted already: where; else mount it (read-only) and say where its files are."""

        async def flow() -> None:
            for mount in await self.call(self.bv.list_mounts):
                if mount["backup_id"] == backup["id"] and mount["alive"]:
                    where = mount["files"] or mount["image"]
                    self.notify(f"backup {backup['name']} is mounted at {where}", timeout=15)  # type: ignore[attr-defined]
                    return
            result = await self.call(self.bv.mount_backup, backup["id"])
            self.notify(  # type: ignore[attr-defined]
                f"{result['note']}\n{cli('backup', 'unmount', result['mountpoint'])} when done",
                timeout=20,
            )

        await self.guarded(flow)
