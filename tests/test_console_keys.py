"""Keys that match their risk (issue 14, item 4), driven by Pilot on real demo homes: enter
goes ahead only on harmless plans, data with no other copy needs its name typed, y/n/esc and
the arrows mean the same in every dialog, q asks while jobs run, r on a disk offers its ways
back, enter opens a row's details, and config.toml's [keys] rebinds a key."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest

from core.api import Blockvault
from core.base.config import load_keys
from core.base.errors import UserError
from core.catalog.models import Disk, Job
from core.rules import lifecycle
from core.rules.lifecycle import DiskFacts
from core.stores.local import LocalStore
from tests.support.console import ACTOR, demo_copy, make_app, select_disk, settle, wait_for, write
from tui.console.chooser import FASTEST, DetailsModal, RestoreChooser
from tui.console.help import HelpScreen, help_text
from tui.console.job_dialogs import CancelJobModal, QuitModal
from tui.console.jobs_strip import JobsStrip
from tui.console.modals import ChoiceModal, ConfirmationModal

MiB = 1 << 20


@pytest.fixture
def bv(tmp_path: Path):  # type: ignore[no-untyped-def]
    service = demo_copy(tmp_path / "home")
    yield service
    service.close()


@pytest.fixture
def slow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A home whose backups take seconds: the smallest chunks, one worker, and each chunk's
    write to the (real) local vault 60 ms slower; one server with an 8 MiB disk, no policy."""
    home = tmp_path / "slow"
    home.mkdir()
    (home / "config.toml").write_text("[blockvault]\nchunk_size = 65536\nworkers = 1\n")
    put = LocalStore.put

    def slow_put(self: LocalStore, key: str, data: bytes, **options: bool) -> bool:
        if key.startswith("chunks/"):
            time.sleep(0.06)  # 128 chunks: about 8 s, so a loaded machine still sees it run
        return put(self, key, data, **options)

    monkeypatch.setattr(LocalStore, "put", slow_put)
    bv = Blockvault.open(home=home, actor=ACTOR)
    bv.create_server("web1")
    disk = bv.create_disk("big", 8 * MiB, server="web1")
    write(disk["path"], 0, os.urandom(8 * MiB))
    yield bv
    bv.close()


async def open_dialog(app, pilot, key: str, kind: type):  # type: ignore[no-untyped-def]
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, kind))
    return app.screen


def text_of(screen, selector: str) -> str:  # type: ignore[no-untyped-def]
    return str(screen.query_one(selector).render())


# --- enter, y, n, esc and the arrows -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.asyncio
async def test_enter_starts_a_backup_and_every_dialog_answers_y_n_esc_and_arrows(bv) -> None:
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        modal = await open_dialog(app, pilot, "b", ConfirmationModal)
        assert app.focused.id == "confirm", "a backup is harmless: enter goes ahead"
        await pilot.press("right")
        assert app.focused.id == "cancel"
        await pilot.press("left")
        assert app.focused.id == "confirm"
        await pilot.press("n")
        assert app.screen is app.main
        await open_dialog(app, pilot, "b", ConfirmationModal)
        await pilot.press("escape")
        assert app.screen is app.main and len(bv.list_backups(disk="db1-data")) == 3
        await open_dialog(app, pilot, "b", ConfirmationModal)
        await pilot.press("enter")
        await settle(app, pilot)
        assert len(bv.list_backups(disk="db1-data")) == 4
        assert modal.plan.action.startswith("backup")

        # a destructive plan (delete a snapshot: it has a backup) keeps Cancel focused
        await pilot.press("tab")
        await open_dialog(app, pilot, "d", ConfirmationModal)
        assert app.focused.id == "cancel"
        await pilot.press("right")
        assert app.focused.id == "confirm"
        await pilot.press("escape")

        # the restore choice: the same keys (y answers the first choice after Cancel)
        await pilot.press("tab")  # backups pane
        choice = await open_dialog(app, pilot, "r", ChoiceModal)
        assert app.focused.id == "choice-cancel"
        await pilot.press("down")
        assert app.focused.id == "choice-original"
        await pilot.press("up", "up")  # round the top to the last
        assert app.focused.id == "choice-new"
        await pilot.press("n")
        assert app.screen is app.main
        await open_dialog(app, pilot, "r", ChoiceModal)
        await pilot.press("escape")
        assert app.screen is app.main
        await open_dialog(app, pilot, "r", ChoiceModal)
        await pilot.press("y")
        modal = (
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal)) or app.screen
        )
        assert modal.command.endswith("--to-original") and app.focused.id == "confirm-name"
        await pilot.press("escape")
        await settle(app, pilot)
        assert choice.yes == "original"


@pytest.mark.slow
@pytest.mark.asyncio
async def test_deleting_a_disk_with_no_backup_needs_its_name_and_says_when_it_is_wrong(
    bv,
) -> None:
    bv.create_disk("scratch", MiB, server="web1")  # never backed up: the only copy of its data
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await select_disk(app, pilot, "scratch")
        modal = await open_dialog(app, pilot, "d", ConfirmationModal)
        assert modal.plan.confirm_text == "scratch"
        assert "has no backup" in text_of(modal, "#plan")
        assert app.focused.id == "confirm-name" and modal.query_one("#confirm").disabled
        await pilot.press(*"scratc", "enter")
        assert app.screen is modal
        assert text_of(modal, "#confirm-error") == (
            "✗ 'scratc' is not scratch: type scratch to confirm, esc cancels"
        )
        await pilot.press("y")  # typed into the name: y never deletes unseen
        assert app.screen is modal and "scratch" in {d["name"] for d in bv.list_disks()}
        await pilot.press("backspace", "h")
        assert text_of(modal, "#confirm-error") == ""
        await pilot.press("enter")
        await settle(app, pilot)
        assert "scratch" not in {d["name"] for d in bv.list_disks()}


# --- jobs: q, c and the service -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.asyncio
async def test_q_with_a_running_job_asks_and_c_lists_the_jobs_and_follows_them(
    slow_home,
) -> None:
    bv = slow_home
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await open_dialog(app, pilot, "b", ConfirmationModal)
        await pilot.press("enter")
        strip = app.main.query_one(JobsStrip)
        await wait_for(pilot, lambda: strip.running())
        job_id = strip.running()[0]

        quit_modal = await open_dialog(app, pilot, "q", QuitModal)
        assert app.focused.id == "stay"
        assert "backup big" in text_of(quit_modal, "#quit-jobs")
        assert not quit_modal.query_one("#hand").display  # no service runs
        await pilot.press("n")
        assert app.is_running and app.screen is app.main and strip.running() == [job_id]
        await open_dialog(app, pilot, "ctrl+q", QuitModal)  # ctrl+q asks the same
        await pilot.press("escape")
        assert app.is_running and strip.running() == [job_id]

        # c: the running jobs to pick from, "Keep running" focused; y cancels the only one
        cancel = await open_dialog(app, pilot, "c", CancelJobModal)
        assert app.focused.id == "keep" and list(cancel.jobs) == [job_id]
        assert cancel.query_one(f"#cancel-{job_id}").label.plain.startswith("backup big")
        await pilot.press("y")
        await settle(app, pilot)
        assert strip.row(job_id).status == "cancelled"

        # the dialog closes by itself once its job ended (here cancelled from another shell)
        write(bv.get_disk("big")["path"], 0, os.urandom(8 * MiB))  # nothing to reuse
        await open_dialog(app, pilot, "b", ConfirmationModal)
        await pilot.press("y")
        await wait_for(pilot, lambda: len(strip.running()) == 1)
        second = strip.running()[0]
        await open_dialog(app, pilot, "c", CancelJobModal)
        bv.cancel_job(second)  # as `blockvault job cancel`
        await wait_for(pilot, lambda: app.screen is app.main, timeout=15)
        await settle(app, pilot)
        assert strip.row(second).status == "cancelled"
        await pilot.press("q")  # nothing runs: q quits at once
        await pilot.pause()
    assert not app.is_running and bv.list_backups(disk="big") == []


@pytest.mark.slow
@pytest.mark.asyncio
async def test_q_hands_a_running_backup_to_the_service(slow_home) -> None:
    service_bv = Blockvault.open(home=slow_home.ctx.locations.data_dir, actor=ACTOR)
    service = service_bv.make_service(tick=0.2, log=lambda level, line: None)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    app = make_app(slow_home)
    try:
        await wait_for_service(slow_home)
        async with app.run_test() as pilot:
            await settle(app, pilot)
            await open_dialog(app, pilot, "b", ConfirmationModal)
            await pilot.press("enter")
            strip = app.main.query_one(JobsStrip)
            await wait_for(pilot, lambda: strip.running())
            own = strip.running()[0]
            modal = await open_dialog(app, pilot, "q", QuitModal)
            assert modal.query_one("#hand").display
            await pilot.press("y")  # hand over and quit
            await wait_for(pilot, lambda: not app.is_running, timeout=20)
        assert len(app.farewell) == 1 and "handed to the service as job" in app.farewell[0]
        handed = app.farewell[0].split("as job ")[1].split(" ")[0]
        followed = slow_home.follow_job(handed)
        followed.wait(30)
        assert slow_home.get_job(own)["status"] == "cancelled"
        assert slow_home.get_job(handed)["status"] == "succeeded"
        assert len(slow_home.list_backups(disk="big")) == 1
    finally:
        service.stop()
        thread.join(30)
        service_bv.close()


async def wait_for_service(bv: Blockvault) -> None:
    deadline = time.monotonic() + 10
    while not bv.running_services():
        assert time.monotonic() < deadline, "the service never beat"
        time.sleep(0.05)


# --- r on a disk, enter, help, keymap ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.asyncio
async def test_r_on_a_disk_opens_the_chooser_on_the_fastest_route(bv) -> None:
    restored = bv.start_restore("db1-data-monday", to_original=False, new_name="scratch")
    restored.run()  # a measured restore rate now stands for the vault
    with bv.ctx.catalog.session() as session:
        job = session.get(Job, restored.id)
        rate = job.bytes_total / (job.finished_at - job.started_at).total_seconds()
    routes = bv.restore_routes("db1-data")
    assert [r["name"] for r in routes][:1] == ["db1-data-wednesday"]  # newest first
    assert {r["name"] for r in routes} == {
        "db1-data-installed",
        "db1-data-before-upgrade",
        "db1-data-monday",
        "db1-data-tuesday",
        "db1-data-wednesday",
    }
    wednesday = bv.get_backup("db1-data-wednesday")
    backup = routes[0]
    assert backup["estimate_seconds"] == pytest.approx(
        (wednesday["size"] - wednesday["bytes_zero"]) / rate
    )
    # every way back takes about a second here: the newest of them is the one marked
    assert [r["fastest"] for r in routes] == [True, False, False, False, False]
    fastest = routes[0]
    app = make_app(bv)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        chooser = await open_dialog(app, pilot, "r", RestoreChooser)
        table = chooser.query_one("#routes")
        assert chooser.selected()["id"] == fastest["id"], "the cursor starts on the fastest"
        assert str(table.get_row(fastest["id"])[0]) == FASTEST
        assert text_of(chooser, "#fastest").startswith("fastest safe route: ")
        assert fastest["name"] in text_of(chooser, "#fastest")
        await pilot.press("enter")  # the row under the cursor: the newest backup
        modal = (
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal)) or app.screen
        )
        assert modal.command == "blockvault backup restore db1-data-wednesday --to-original"
        assert modal.plan.estimate_seconds == pytest.approx(backup["estimate_seconds"])
        assert app.focused.id == "confirm-name"
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is app.main


@pytest.mark.slow
@pytest.mark.asyncio
async def test_enter_opens_details_and_j_k_scroll_help(bv) -> None:
    app = make_app(bv)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        details = await open_dialog(app, pilot, "enter", DetailsModal)
        assert details.plain.startswith("disk db1-data ") and "path " in details.plain
        await pilot.press("escape")
        assert app.screen is app.main
        await pilot.press("tab")  # snapshots
        details = await open_dialog(app, pilot, "enter", DetailsModal)
        assert details.plain.startswith("snapshot db1-data-")
        await pilot.press("y")  # Close is its only button: y and enter close it too
        assert app.screen is app.main

        help_screen = await open_dialog(app, pilot, "question_mark", HelpScreen)
        view = help_screen.query_one("#help")
        assert view.scroll_y == 0 and view.max_scroll_y > 0
        await pilot.press("j", "j")
        assert view.scroll_y == 2
        await pilot.press("k")
        assert view.scroll_y == 1
        await pilot.press("G")
        assert view.scroll_y == view.max_scroll_y


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_keymap_in_config_toml_rebinds_a_key(bv) -> None:
    config = bv.ctx.locations.config_file
    before = config.read_text() if config.exists() else ""
    config.write_text(before + '\n[keys]\nsnapshot = "S"\ncancel_job = "x,c"\nsnapshoot = "z"\n')
    app = make_app(bv)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        assert any("no action named snapshoot" in n.message for n in app._notifications)
        await pilot.press("s")  # no longer the snapshot key
        await pilot.pause()
        assert app.screen is app.main
        modal = await open_dialog(app, pilot, "S", ConfirmationModal)
        assert modal.plan.action == "snapshot"
        await pilot.press("escape")
        help_screen = await open_dialog(app, pilot, "question_mark", HelpScreen)
        lines = help_text(set(), help_screen.keymap).splitlines()
        assert any(line.startswith("S ") and "Snapshot:" in line for line in lines)
        assert any(line.startswith("x c ") and "Cancel job:" in line for line in lines)
        await pilot.press("escape")
        footer = {b.binding.action: k for k, b in app.active_bindings.items()}
        assert footer["snapshot"] == "S"


def test_keys_table_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert load_keys(config) == {}
    config.write_text('[keys]\nsnapshot = "S"\nquit = "q, ctrl+x"\n')
    assert load_keys(config) == {"snapshot": "S", "quit": "q,ctrl+x"}
    config.write_text("[keys]\nsnapshot = 5\n")
    with pytest.raises(UserError, match=r"keys\.snapshot must be a key name"):
        load_keys(config)


def test_deleting_the_only_copy_of_a_disk_asks_for_its_name() -> None:
    """The rule behind the dialog (and the CLI's prompt): a pool disk without an available
    backup is the only copy of its data; a registered disk's file stays; a backed-up one has
    another copy."""
    from tests.test_lifecycle import DATA, backup

    alone = lifecycle.plan_disk_delete(DiskFacts(DATA), freed=0, snapshots=[], backups=[])
    assert alone.confirm_text == DATA.name and "has no backup" in alone.warnings[0]
    kept = lifecycle.plan_disk_delete(
        DiskFacts(DATA), freed=0, snapshots=[], backups=[backup(DATA, 1)]
    )
    registered = Disk(**{**DATA.model_dump(), "managed": False})
    outside = lifecycle.plan_disk_delete(DiskFacts(registered), freed=0, snapshots=[], backups=[])
    assert kept.confirm_text is None and outside.confirm_text is None


def test_the_readme_names_every_action_a_keymap_can_rebind() -> None:
    from tui.console.actions import ACTIONS

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    listed = readme.split("The action names:", 1)[1].split("\n\n", 1)[0]
    assert {a.id for a in ACTIONS} == set(re.findall(r"`(\w+)`", listed))
