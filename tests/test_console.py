"""The console driven by Textual's Pilot on a small real demo: every action and its dialog."""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from textual.command import CommandPalette

from core.api import Blockvault
from core.base.progress import ProgressEvent
from core.stores.local import LocalStore
from tests.support.console import (
    ACTOR,
    demo_copy,
    digest,
    make_app,
    select_disk,
    settle,
    wait_for,
    write,
)
from tui.console import main_screen
from tui.console.actions import ACTIONS, MUTATING
from tui.console.app import BlockvaultApp
from tui.console.fmt import parse_stamp
from tui.console.help import HelpScreen, help_text
from tui.console.job_dialogs import CancelJobModal
from tui.console.jobs_strip import JobsStrip
from tui.console.jobs_view import JobsScreen
from tui.console.messages import JobProgress, PolicyRan
from tui.console.modals import (
    ChoiceModal,
    ConfirmationModal,
    DisksPickerModal,
    NameModal,
    PolicyFormModal,
)
from tui.console.panes import PaneTable
from tui.console.too_small import TooSmallScreen

MiB = 1 << 20
pytestmark = pytest.mark.asyncio


@pytest.fixture
def bv(tmp_path: Path):  # type: ignore[no-untyped-def]
    service = demo_copy(tmp_path / "home")
    yield service
    service.close()


def names(rows: list[dict]) -> set[str]:
    return {r["name"] for r in rows}


async def open_dialog(app, pilot, key: str, kind: type):  # type: ignore[no-untyped-def]
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, kind))
    return app.screen


async def type_text(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press(*text)


@pytest.mark.slow
async def test_main_screen_browses_servers_disks_snapshots_backups(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        screen = app.main
        disks = screen.table("disks")
        rows = {row["name"]: row for row in disks.rows_by_key.values()}
        assert {"db1", "web1", "db1-data", "db1-root", "web1-data", "web1-root"} <= set(rows)
        assert "db1-scratch" not in rows  # deleted
        assert rows["db1-root"]["role"] == "system" and rows["db1"]["kind"] == "server"
        assert ACTOR in app.sub_title and "vault local" in app.sub_title
        # the cursor starts on the first disk; its snapshots and backups are shown
        assert screen.selected_disk()["name"] == "db1-data"
        assert names(screen.snapshots) == {"db1-data-installed", "db1-data-before-upgrade"}
        assert names(screen.backups) == {
            "db1-data-monday",
            "db1-data-tuesday",
            "db1-data-wednesday",
        }
        await pilot.press("j")  # vim keys move; the panes follow
        await settle(app, pilot)
        assert screen.selected_disk()["name"] == "db1-root"
        assert names(screen.snapshots) == {"db1-root-installed"}
        await pilot.press("G")
        await settle(app, pilot)
        assert screen.selected_disk()["name"] == "web1-root"
        await pilot.press("tab")
        assert screen.focused_pane() == "snapshots"
        assert "web1-root-installed" in screen.query_one("#details").plain


@pytest.mark.slow
async def test_snapshot_asks_first_and_enter_goes_ahead(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        before = names(bv.list_snapshots(disk="db1-data"))
        modal = await open_dialog(app, pilot, "s", ConfirmationModal)
        assert (
            modal.plan.action == "snapshot"
            and modal.command == "blockvault snapshot create db1-data"
        )
        assert app.focused.id == "confirm"  # harmless: the go-ahead has the focus
        await pilot.press("escape")
        await settle(app, pilot)
        assert names(bv.list_snapshots(disk="db1-data")) == before
        await open_dialog(app, pilot, "s", ConfirmationModal)
        await pilot.press("y")
        await settle(app, pilot)
        after = bv.list_snapshots(disk="db1-data")
        assert len(after) == len(before) + 1
        new = next(s for s in after if s["name"] not in before)
        assert app.main.table("snapshots").selected()["id"] == new["id"]  # the cursor follows
        strip = app.main.query_one(JobsStrip)
        assert [row.status for row in strip.query("JobRow")] == ["succeeded"]


@pytest.mark.slow
async def test_backup_runs_as_a_job_with_progress(bv) -> None:
    seen: list[JobProgress] = []
    app = make_app(bv)
    async with app.run_test(
        message_hook=lambda m: seen.append(m) if isinstance(m, JobProgress) else None
    ) as pilot:
        await settle(app, pilot)
        modal = await open_dialog(app, pilot, "b", ConfirmationModal)
        assert modal.command == "blockvault backup create db1-data"
        await pilot.press("y")
        await settle(app, pilot)
        assert len(bv.list_backups(disk="db1-data")) == 4
        assert seen and seen[-1].event.job_id
        row = app.main.query_one(JobsStrip).query_one("JobRow")
        assert row.status == "succeeded"


@pytest.mark.slow
async def test_rollback_needs_the_disk_name_then_undo_puts_it_back(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        disk = bv.get_disk("db1-data")
        await open_dialog(app, pilot, "s", ConfirmationModal)
        await pilot.press("y")
        await settle(app, pilot)
        snapped = digest(disk["path"])
        write(disk["path"], MiB, os.urandom(MiB))
        changed = digest(disk["path"])
        await pilot.press("tab")  # snapshots pane: the cursor is on the new snapshot
        await settle(app, pilot)
        modal = await open_dialog(app, pilot, "r", ConfirmationModal)
        assert modal.plan.confirm_text == "db1-data" and modal.command.startswith(
            "blockvault snapshot rollback db1-data-"
        )
        assert [i.op for i in modal.plan.items] == ["create", "overwrite", "keep"]
        await pilot.press("y", "enter")  # neither confirms: the name must be typed
        assert app.screen is modal and modal.query_one("#confirm").disabled
        await pilot.press("backspace")
        await type_text(pilot, "db1-data")
        assert not modal.query_one("#confirm").disabled
        await pilot.press("enter")
        await settle(app, pilot)
        assert digest(disk["path"]) == snapped
        modal = await open_dialog(app, pilot, "u", ConfirmationModal)
        assert (
            modal.plan.action == "undo last overwrite"
            and modal.command == "blockvault disk undo db1-data"
        )
        await type_text(pilot, "db1-data")
        await pilot.press("enter")
        await settle(app, pilot)
        assert digest(disk["path"]) == changed


@pytest.mark.slow
async def test_restore_backup_to_a_new_disk_and_onto_the_original(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        disk = bv.get_disk("db1-data")
        original = digest(disk["path"])  # the newest backup holds exactly this
        app.main.table("backups").focus()
        choice = await open_dialog(app, pilot, "r", ChoiceModal)
        assert app.focused.id == "choice-cancel"
        await pilot.press("tab", "tab", "enter")  # "Restore to a new disk…"
        name = await wait_for(pilot, lambda: isinstance(app.screen, NameModal)) or app.screen
        assert name.query_one("#name").value == "db1-data-restored"
        await pilot.press("enter")
        modal = (
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal)) or app.screen
        )
        assert (
            modal.command
            == "blockvault backup restore db1-data-wednesday --to-new db1-data-restored"
        )
        assert modal.plan.route and modal.plan.estimate_seconds is not None
        await pilot.press("y")
        await settle(app, pilot)
        assert digest(bv.get_disk("db1-data-restored")["path"]) == original
        assert choice is not None
        assert app.main.selected_disk()["name"] == "db1-data-restored"  # the cursor follows

        write(disk["path"], 0, os.urandom(MiB))
        await select_disk(app, pilot, "db1-data")
        app.main.table("backups").focus()
        await open_dialog(app, pilot, "r", ChoiceModal)
        await pilot.press("tab", "enter")  # onto db1-data (overwrite)
        modal = (
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal)) or app.screen
        )
        assert modal.plan.confirm_text == "db1-data"
        assert modal.command == "blockvault backup restore db1-data-wednesday --to-original"
        await type_text(pilot, "db1-data")
        await pilot.press("enter")
        await settle(app, pilot)
        assert digest(disk["path"]) == original


@pytest.mark.slow
async def test_new_disk_from_a_snapshot(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press("tab")
        await open_dialog(app, pilot, "n", NameModal)
        await pilot.press("enter")
        modal = (
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal)) or app.screen
        )
        assert modal.command == "blockvault snapshot to-disk db1-data-before-upgrade db1-data-copy"
        assert not modal.plan.destructive
        await pilot.press("y")
        await settle(app, pilot)
        assert bv.get_disk("db1-data-copy")["status"] == "available"
        rows = {r["name"] for r in app.main.table("disks").rows_by_key.values()}
        assert "db1-data-copy" in rows and "(no server)" in rows


@pytest.mark.slow
async def test_delete_snapshot_backup_and_disk_show_their_plans(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press("tab")
        modal = await open_dialog(app, pilot, "d", ConfirmationModal)
        assert modal.plan.action == "delete snapshot" and app.focused.id == "cancel"
        await pilot.press("enter")
        await settle(app, pilot)
        assert len(bv.list_snapshots(disk="db1-data")) == 2
        await open_dialog(app, pilot, "d", ConfirmationModal)
        await pilot.press("y")
        await settle(app, pilot)
        assert names(bv.list_snapshots(disk="db1-data")) == {"db1-data-installed"}

        await pilot.press("tab")  # backups pane
        modal = await open_dialog(app, pilot, "d", ConfirmationModal)
        assert modal.plan.action == "delete backup"
        assert modal.command == "blockvault backup delete db1-data-wednesday"
        assert "frees" in str(modal.query_one("#plan").render())
        await pilot.press("y")
        await settle(app, pilot)
        assert "db1-data-wednesday" not in names(bv.list_backups(disk="db1-data"))

        await pilot.press("tab")  # disks pane
        modal = await open_dialog(app, pilot, "d", ConfirmationModal)
        assert modal.plan.action == "delete disk"
        assert {(i.op, i.kind) for i in modal.plan.items} >= {
            ("delete", "disk"),
            ("keep", "backup"),
        }
        await pilot.press("y")
        await settle(app, pilot)
        assert "db1-data" not in names(bv.list_disks())
        await pilot.press("a")  # show all: the retained backups of deleted disks
        await settle(app, pilot)
        shown = names(app.main.backups)
        assert {"db1-data-monday", "db1-scratch-final"} <= shown


@pytest.mark.slow
async def test_cancel_a_running_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main_screen, "JOB_POLL_SECONDS", 0.3)  # follow other processes' jobs faster
    home = tmp_path / "slow"
    home.mkdir()
    # the smallest chunks, one worker, and each chunk's write to the (real) local vault made
    # 20 ms slower: the backup takes about ten seconds, its cancellation one chunk
    (home / "config.toml").write_text("[blockvault]\nchunk_size = 65536\nworkers = 1\n")
    put = LocalStore.put

    def slow_put(self: LocalStore, key: str, data: bytes, **options: bool) -> bool:
        if key.startswith("chunks/"):
            time.sleep(0.02)
        return put(self, key, data, **options)

    monkeypatch.setattr(LocalStore, "put", slow_put)
    bv = Blockvault.open(home=home, actor=ACTOR)
    bv.create_server("web1")
    disk = bv.create_disk("big", 32 * MiB, server="web1")
    write(disk["path"], 0, os.urandom(32 * MiB))
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await open_dialog(app, pilot, "b", ConfirmationModal)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.main.query_one(JobsStrip).running())
        choice = await open_dialog(app, pilot, "c", CancelJobModal)
        running = app.main.query_one(JobsStrip).running()
        assert app.focused.id == "keep" and list(choice.jobs) == running
        await pilot.press("tab")
        assert app.focused.id == f"cancel-{running[0]}"
        await pilot.press("enter")
        await settle(app, pilot)
        strip = app.main.query_one(JobsStrip)
        assert strip.query_one("JobRow").status == "cancelled"
        assert bv.list_backups(disk="big") == []
        assert bv.list_jobs(limit=1)[0]["status"] == "cancelled"

        # a job started elsewhere (here: straight through the façade) shows up from the catalog
        other = bv.start_backup("big").start()
        await wait_for(pilot, lambda: strip.row(other.id) is not None, timeout=10)
        assert strip.row(other.id).external
        other.cancel()
        other._done.wait(10)
        # its real end state, from its row in the catalog (not "ended")
        await wait_for(pilot, lambda: strip.row(other.id).status == "cancelled", timeout=10)
        await wait_for(pilot, lambda: [r.job_id for r in strip.query("JobRow")] == [other.id])
    bv.close()


@pytest.mark.slow
async def test_reinstall_os_from_a_backup(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await select_disk(app, pilot, "web1")  # the server row
        await open_dialog(app, pilot, "o", ChoiceModal)
        assert app.focused.id == "choice-cancel"
        await pilot.press("tab", "enter")  # newest backup of web1-root
        modal = (
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal)) or app.screen
        )
        assert modal.plan.confirm_text == "web1-root"
        newest = bv.reinstall_sources("web1")[1][0]["name"]  # the web-weekly policy's backup
        assert newest.startswith("web1-root-") and newest != "web1-root-tuesday"
        assert modal.command == f"blockvault server reinstall web1 --image {newest}"
        assert {i.name for i in modal.plan.of("delete", "snapshot")} == {"web1-root-installed"}
        await type_text(pilot, "web1-root")
        await pilot.press("enter")
        await settle(app, pilot)
        kinds = [s["kind"] for s in bv.list_snapshots(disk="web1-root")]
        assert kinds == ["safety"], "the old system stays undoable; its snapshots went"
        assert len(bv.list_snapshots(disk="web1-data")) == 2


@pytest.mark.slow
async def test_a_failed_job_notifies_with_its_cause_and_keeps_the_error(bv) -> None:
    os.unlink(bv.get_disk("db1-root")["path"])
    app = make_app(bv)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        await select_disk(app, pilot, "db1-root")
        await open_dialog(app, pilot, "b", ConfirmationModal)
        await pilot.press("y")
        await settle(app, pilot)
        row = app.main.query_one(JobsStrip).query_one("JobRow")
        assert row.status == "failed"
        assert "failed" in str(row.query_one(".job-stats").render())
        assert "is missing" in str(row.query_one(".job-label").render())  # the cause stays
        assert any(n.severity == "error" and "failed" in n.message for n in app._notifications)


@pytest.mark.slow
async def test_filter_help_palette_theme_and_refresh(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press("slash")
        await type_text(pilot, "web1")
        await settle(app, pilot)
        shown = {r["name"] for r in app.main.table("disks").rows_by_key.values()}
        assert shown == {"web1", "web1-data", "web1-root"}
        await pilot.press("escape")
        await settle(app, pilot)
        assert len(app.main.table("disks").rows_by_key) == 6

        await open_dialog(app, pilot, "question_mark", HelpScreen)
        text = help_text(set())
        for action in ACTIONS:
            assert action.label in text and action.help in text
        await pilot.press("escape")
        assert app.screen is app.main

        await open_dialog(app, pilot, "colon", CommandPalette)
        titles = {c.title for c in app.get_system_commands(app.main)}
        assert {
            "Disk: Snapshot",
            "Recovery: Restore",
            "Server: Reinstall OS",
            "View: Filter",
        } <= titles
        await type_text(pilot, "Disk: Snapshot")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        await pilot.press("escape")

        assert app.theme == "textual-dark"
        await pilot.press("t")
        assert app.theme == "textual-light"
        await pilot.press("f5")
        await settle(app, pilot)


@pytest.mark.slow
async def test_read_only_hides_every_destructive_action(bv) -> None:
    app = make_app(bv, read_only=True)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        screen = app.main
        for action in MUTATING:
            assert screen.check_action(action, ()) is False
        shown = {b.binding.action for b in app.active_bindings.values()}
        assert not shown & MUTATING and "filter" in shown
        titles = {c.title for c in app.get_system_commands(screen)}
        assert "Disk: Snapshot" not in titles and "View: Filter" in titles
        await pilot.press("s", "d", "r")
        await settle(app, pilot)
        assert app.screen is screen and "READ-ONLY" in app.sub_title


@pytest.mark.slow
async def test_too_small_terminal_shows_a_notice_and_q_quits(bv) -> None:
    app = make_app(bv)
    async with app.run_test(size=(70, 20)) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, TooSmallScreen)
        assert "70x20" in str(app.screen.query_one("#too-small").render())
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert app.screen is app.main
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


@pytest.mark.slow
async def test_no_color_is_honoured(bv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        assert app.no_color


async def test_progress_messages_replace_queued_older_ones() -> None:
    def event(done: int, final: bool = False) -> ProgressEvent:
        return ProgressEvent("job-1", "backing up", done, 100, final=final)

    older, newer = JobProgress(event(10)), JobProgress(event(20))
    assert older.can_replace(newer)
    assert not JobProgress(event(10, final=True)).can_replace(newer)
    other = JobProgress(ProgressEvent("job-2", "backing up", 5, 100))
    assert not older.can_replace(other)


@pytest.mark.slow
async def test_an_engine_error_in_a_dialog_flow_is_a_notification_not_a_crash(bv) -> None:
    vault = Path(bv.list_vaults()[0]["location"])
    shutil.rmtree(vault)  # the vault vanished under us: planning a backup delete must fail
    app = make_app(bv)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        app.main.table("backups").focus()
        await pilot.press("d")
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications))
        assert app.screen is app.main and app.is_running


# --- policies and protection -----------------------------------------------------------------


def footer_actions(app) -> set[str]:  # type: ignore[no-untyped-def]
    return {b.binding.action for b in app.active_bindings.values()}


@pytest.mark.slow
async def test_policies_view_protection_column_and_header_counts(
    bv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main_screen, "STATUS_EVERY", 1)  # every job poll reloads protection
    # a failed backup of a covered disk makes it failing (the demo's nightly covers db1-data)
    os.unlink(bv.get_disk("db1-data")["path"])
    handle = bv.start_backup("db1-data")
    handle.run()
    assert handle.status == "failed"
    app = make_app(bv)
    async with app.run_test(size=(120, 40)) as pilot:  # wide enough for the Next column
        await settle(app, pilot)
        screen = app.main
        rows = {r["name"]: r for r in screen.table("disks").rows_by_key.values()}
        assert rows["db1-data"]["protection"]["status"] == "failing"
        assert rows["db1-root"]["protection"]["status"] == "unprotected"
        assert rows["web1-root"]["protection"]["status"] == "protected"
        disks = screen.table("disks")
        assert disks.shown(rows["db1-data"]["id"], "Protection") == "failing"
        assert disks.shown(rows["db1-data"]["id"], "Next").startswith("in ")
        assert app.alerts == {"overdue": 0, "failing": 1}
        title = app.format_title(app.title, app.sub_title).plain
        assert title.startswith("blockvault · 1 failing · vault offsite 86% — ")
        assert "overdue" not in title
        assert "failing: last backup failed" in screen.query_one("#details").plain

        # the periodic refresh follows changes made elsewhere (here: the CLI's `policy apply`)
        bv.apply_policy("nightly", ["db1-root"])
        table = screen.table("disks")
        root = rows["db1-root"]["id"]
        await wait_for(pilot, lambda: table.shown(root, "Protection") == "protected", timeout=15)

        assert "show_policies" in footer_actions(app) and "new_policy" not in footer_actions(app)
        await pilot.press("p")
        await settle(app, pilot)
        assert screen.view == "policies" and app.focused.id == "policies"
        shown = footer_actions(app)
        assert {"new_policy", "apply_policy", "run_policy", "prune_policy", "delete"} <= shown
        assert not {"snapshot", "backup", "restore", "new_disk", "toggle_all"} & shown
        policies = {p["name"]: p for p in screen.table("policies").rows_by_key.values()}
        assert set(policies) == {"nightly", "web-weekly"}
        assert [d["name"] for d in policies["web-weekly"]["disks"]] == ["web1-data", "web1-root"]
        assert policies["web-weekly"]["last_run_status"] == "succeeded"
        details = screen.query_one("#policy-details").plain
        assert "nightly" in details and "daily at 02:00" in details
        titles = {c.title for c in app.get_system_commands(screen)}
        assert "Policy: Run now" in titles and "Disk: Snapshot" not in titles
        await pilot.press("escape")  # back to the disks
        assert screen.view == "disks" and app.focused.id == "disks"


@pytest.mark.slow
async def test_vaults_view_usage_alert_badge_and_back(bv) -> None:
    """`v`: each vault's usage bar against its quota, the alert, object lock, locked backups
    and replication; the header's badge names the vault past its threshold, and clears when
    its quota is raised."""
    app = make_app(bv)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.main
        title = app.format_title(app.title, app.sub_title).plain
        assert "vault offsite 86%" in title
        assert "show_vaults" in footer_actions(app)
        await pilot.press("v")
        await settle(app, pilot)
        assert screen.view == "vaults" and app.focused.id == "vaults"
        table = screen.table("vaults")
        vaults = {v["name"]: v for v in table.rows_by_key.values()}
        assert set(vaults) == {"local", "offsite"}
        cells = [str(c) for c in table.get_row(vaults["offsite"]["id"])]
        assert cells[1] == "███████░ 86%" and cells[3] == "OVER" and cells[6] == "← local"
        local = [str(c) for c in table.get_row(vaults["local"]["id"])]
        assert local[4:] == ["-", "1", "→ offsite"]  # no S3 lock; 1 locked backup; nightly
        assert [str(c) for c in table.get_row(vaults["local"]["id"])][1:4:2] == [
            "█████░░░ 62%",
            "80%",
        ]
        assert "delete" not in footer_actions(app)  # `vault remove` is the command line's
        await pilot.press("j")  # offsite
        details = screen.query_one("#vault-details").plain
        assert "offsite" in details and "(86%), alert at 80%" in details
        assert "lock mode none" in details and "forecast full in" in details
        assert "receives copies from local" in details and "holds 1 copy" in details
        await pilot.press("k")  # local
        details = screen.query_one("#vault-details").plain
        assert "locked 1 backup, the first free 2027-01-01 00:00:00 UTC" in details

        bv.set_vault("offsite", quota="1G")  # elsewhere (the CLI): the badge goes
        await pilot.press("R")
        await wait_for(pilot, lambda: not app.badges)
        assert "vault offsite" not in app.format_title(app.title, app.sub_title).plain
        await pilot.press("v")  # back to the disks
        assert screen.view == "disks" and app.focused.id == "disks"
        await pilot.press("v", "escape")  # esc too
        assert screen.view == "disks"


@pytest.mark.slow
async def test_new_policy_form_shows_errors_inline_and_creates(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        form = await open_dialog(app, pilot, "n", PolicyFormModal)
        assert app.focused.id == "policy-name"
        await pilot.press("enter")  # no name yet
        assert app.screen is form
        assert "give the policy a name" in str(form.query_one("#form-error").render())
        await type_text(pilot, "hourly")
        form.query_one("#schedule-form").value = "every"
        await pilot.pause()
        assert form.query_one("#schedule-value").value == "6h"  # the form's example
        form.query_one("#schedule-value").value = "6 parsecs"
        await pilot.press("enter")
        await wait_for(pilot, lambda: str(form.query_one("#form-error").render()).strip())
        assert app.screen is form, "a bad schedule keeps the form open"
        assert "✗" in str(form.query_one("#form-error").render())
        assert "hourly" not in names(bv.list_policies())
        form.query_one("#schedule-value").value = "1h"
        form.query_one("#keep-last").value = "2"
        form.query_one("#keep-within").value = "2d"
        form.query_one("#policy-disks").select(bv.get_disk("db1-data")["id"])
        await pilot.pause()
        command = str(form.query_one("#command").render())
        assert command == (
            "$ blockvault policy create hourly --every 1h --keep-last 2 --keep-within 2d"
            " --disk db1-data"
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.main)
        await settle(app, pilot)
        created = bv.get_policy("hourly")
        assert created["schedule"] == "every 3600s" and created["keep_last"] == 2
        assert [d["name"] for d in created["disks"]] == ["db1-data"]
        assert app.main.table("policies").selected()["name"] == "hourly"  # the cursor follows


@pytest.mark.slow
async def test_policy_apply_run_now_prune_and_delete(bv) -> None:
    seen: list[PolicyRan] = []
    app = make_app(bv)
    async with app.run_test(
        message_hook=lambda m: seen.append(m) if isinstance(m, PolicyRan) else None
    ) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        form = await open_dialog(app, pilot, "n", PolicyFormModal)
        await type_text(pilot, "hourly")
        form.query_one("#schedule-form").value = "every"
        form.query_one("#keep-last").value = "1"
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.main)
        await settle(app, pilot)
        assert bv.get_policy("hourly")["disks"] == []

        # apply: the disks it covers are picked from a list (space checks one)
        picker = await open_dialog(app, pilot, "a", DisksPickerModal)
        assert app.focused.id == "policy-disks"
        await pilot.press("space")  # the first disk: db1-data
        assert "$ blockvault policy apply hourly db1-data" in str(
            picker.query_one("#command").render()
        )
        await pilot.press("tab", "tab", "enter")  # Cancel, Apply
        await settle(app, pilot)
        assert [d["name"] for d in bv.get_policy("hourly")["disks"]] == ["db1-data"]

        # run now: the plan first, then the backup as a job with its row in the strip
        path = bv.get_disk("db1-data")["path"]
        write(path, 0, os.urandom(MiB))  # data only this run's backup will hold
        before = names(bv.list_backups(disk="db1-data"))
        modal = await open_dialog(app, pilot, "r", ConfirmationModal)
        assert modal.command == "blockvault policy run hourly --now"
        assert [(i.op, i.kind, i.name) for i in modal.plan.items] == [
            ("create", "backup", "of db1-data")
        ]
        assert app.focused.id == "confirm"  # backups only: harmless, enter goes ahead
        await pilot.press("y")
        await settle(app, pilot)
        first = [b for b in bv.list_backups(disk="db1-data") if b["name"] not in before]
        assert len(first) == 1
        rows = list(app.main.query_one(JobsStrip).query("JobRow"))
        assert [(r.kind, r.target, r.status) for r in rows] == [("backup", "db1-data", "succeeded")]
        assert seen and seen[-1].outcomes[0]["status"] == "succeeded"
        policy = app.main.table("policies").selected()
        assert policy["name"] == "hourly" and policy["last_run_status"] == "succeeded"

        # prune preview: a pinned backup outlives keep-last 1; once unpinned it expires
        bv.pin_backup(first[0]["id"])
        write(path, 0, os.urandom(MiB))
        await open_dialog(app, pilot, "r", ConfirmationModal)
        await pilot.press("y")
        await settle(app, pilot)
        assert len(bv.list_backups(disk="db1-data")) == len(before) + 2
        bv.pin_backup(first[0]["id"], pinned=False)
        modal = await open_dialog(app, pilot, "x", ConfirmationModal)
        assert modal.command == "blockvault policy prune hourly"
        assert [(i.op, i.name) for i in modal.plan.items] == [("delete", first[0]["name"])]
        assert modal.plan.bytes_freed >= MiB  # the data only it held
        assert "frees     1.0 MiB" in str(modal.query_one("#plan").render())
        assert app.focused.id == "cancel"
        await pilot.press("y")
        await settle(app, pilot)
        assert first[0]["name"] not in names(bv.list_backups(disk="db1-data"))

        # delete: the plan, Cancel focused; the backups it made stay
        modal = await open_dialog(app, pilot, "d", ConfirmationModal)
        assert modal.plan.action == "delete policy" and app.focused.id == "cancel"
        assert modal.command == "blockvault policy delete hourly"
        await pilot.press("y")
        await settle(app, pilot)
        assert "hourly" not in names(bv.list_policies())
        assert len(bv.list_backups(disk="db1-data")) == len(before) + 1


# --- layout: widths, names, the jobs strip, ages ----------------------------------------------


def no_sideways_scrolling(app) -> list[str]:  # type: ignore[no-untyped-def]
    """The panes whose columns are wider than the pane (they would scroll sideways)."""
    return [
        f"{table.id}: {table.virtual_size.width} > {table.scrollable_content_region.width}"
        for table in app.main.query(PaneTable)
        if table.region.width  # the view shown
        and (
            table.virtual_size.width > table.scrollable_content_region.width
            or table.show_horizontal_scrollbar
        )
    ]


@pytest.mark.slow
async def test_columns_fit_every_width_and_long_names_keep_their_ends(bv) -> None:
    """Two snapshots a minute apart stay told apart at 80 columns (their names lose the
    middle, not the end); wider, the names show whole; no pane scrolls sideways."""
    for stamp in ("20261124-140512", "20261124-140612"):
        bv.start_snapshot("db1-data", name=f"db1-data-{stamp}").run()
    app = make_app(bv)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        table = app.main.table("snapshots")
        shown = sorted(table.shown(k, "Snapshot") for k in table.rows_by_key)
        new = [s for s in shown if s.startswith("db1-data-2026")]
        assert len(new) == 2 and new[0] != new[1] and all("…" in s for s in new), shown
        assert {s[-6:] for s in new} == {"140512", "140612"} and new[0].startswith("db1-data-")
        assert table.shown(next(iter(table.rows_by_key)), "Age") is not None  # essential
        assert no_sideways_scrolling(app) == []
        for view in ("p", "v"):  # the policies and the vaults views too
            await pilot.press(view)
            await settle(app, pilot)
            assert app.main.view != "disks" and no_sideways_scrolling(app) == []
            await pilot.press("escape")
        for size in ((120, 40), (200, 50)):
            await pilot.resize_terminal(*size)
            await settle(app, pilot)
            await pilot.pause(0.1)
            assert no_sideways_scrolling(app) == [], size
        names = {table.shown(k, "Snapshot") for k in table.rows_by_key}
        assert {"db1-data-20261124-140512", "db1-data-20261124-140612"} <= names
        disks = app.main.table("disks")
        db1_data = bv.get_disk("db1-data")["id"]
        assert disks.shown(db1_data, "Snaps") == "4"  # a count, not the strategy
        # the split follows what the panes hold: the disks pane (nine columns) is the wider,
        # yet the snapshots pane shows every column
        assert all(table.shown(k, "Status") for k in table.rows_by_key)
        assert disks.size.width > table.size.width


@pytest.mark.slow
async def test_footer_keeps_help_and_quit_at_80_columns_and_the_demo_says_so(bv) -> None:
    app = make_app(bv, demo=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        pinned = app.main.query_one("#pinned-keys")
        keys = {key.action: key for key in pinned.children}
        assert list(keys) == ["filter", "help", "command_palette", "quit"]
        for key in keys.values():  # whole, on the screen
            assert key.region.width > 0 and key.region.right <= 80
        assert str(keys["help"].render()) == "? Help" and str(keys["quit"].render()) == "q Quit"
        footer = pinned.parent
        cut = [k for k in footer.children if k is not pinned and k.display]
        assert cut and all(k.region.right <= pinned.region.x for k in cut)  # none cut
        title = app.format_title(app.title, app.sub_title).plain
        assert title.startswith("DEMO blockvault · ") and " — admin@demo-host · " in title


@pytest.mark.slow
async def test_ages_redraw_as_time_passes(bv) -> None:
    disk = bv.get_disk("db1-data")
    backed_up = parse_stamp(disk["last_backup_at"])
    now = [backed_up + timedelta(seconds=5)]
    app = BlockvaultApp(bv, clock=lambda: now[0])
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        disks = app.main.table("disks")
        assert disks.shown(disk["id"], "Backup") == "5s ago"
        now[0] += timedelta(minutes=2)  # nothing reloads: only the clock moves
        await wait_for(pilot, lambda: disks.shown(disk["id"], "Backup") == "2m ago", timeout=5)
        assert "(2 minutes ago)" in app.main.query_one("#details").plain


MiB_EVENT = dict(bytes_new=8 * MiB, bytes_reused=3 * MiB, rate=3 * MiB, eta=7.0)


@pytest.mark.slow
async def test_jobs_strip_shows_the_transfer_and_only_the_last_finished_job(bv) -> None:
    """Running jobs show bytes done of total, rate, ETA, new/reused and the bottleneck; of
    the finished ones only the last stays (J lists every job of the catalog)."""
    app = make_app(bv)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        strip = app.main.query_one(JobsStrip)
        for job_id in ("job-a", "job-b", "job-c"):
            strip.add_job(job_id, "backup", "db1-data")
        await pilot.pause()
        event = ProgressEvent(
            "job-c", "backing up", 11 * MiB, 32 * MiB, bottleneck="reading", **MiB_EVENT
        )
        app.main.post_message(JobProgress(event))
        await pilot.pause()
        row = strip.row("job-c")
        assert str(row.query_one(".job-stats").render()) == "11 MiB / 32 MiB"
        detail = str(row.query_one(".job-detail").render())
        assert detail == "3.0 MiB/s · ETA 7s · 8 MiB new, 3 MiB reused · bottleneck reading"
        assert row.query_one(".job-detail").region.right <= 80  # the line fits at 80 columns

        strip.finish("job-a", "succeeded", "a done")
        strip.finish("job-b", "failed", "b broke")
        await wait_for(pilot, lambda: len(strip.query("JobRow")) == 2)
        assert [(r.job_id, r.status) for r in strip.query("JobRow")] == [
            ("job-c", "running"),
            ("job-b", "failed"),
        ]

        bv.start_snapshot("db1-data").run()  # a job in the catalog
        screen = await open_dialog(app, pilot, "J", JobsScreen)
        table = screen.query_one(PaneTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        jobs = bv.list_jobs()
        assert list(table.rows_by_key) == [j["id"] for j in jobs]
        assert table.shown(jobs[0]["id"], "Status") == "succeeded"
        shown = str(screen.query_one("#job-outcome").render())  # the selected job's outcome
        assert shown.startswith(f"{jobs[0]['id']}: ") and shown != f"{jobs[0]['id']}: "
        await pilot.press("escape")
        assert app.screen is app.main
