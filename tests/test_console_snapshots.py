"""Looks of the console (pytest-textual-snapshot) on a frozen demo: ids, times, actor, paths
shown from the home directory (`~/blockvault/...`), and the core's clock frozen with the
console's (next runs, overdue disks).

Regenerate after an intended change with `pytest tests/test_console_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input

from core.api import Blockvault
from core.base.progress import ProgressEvent
from tests.support.console import (
    ACTOR,
    frozen_core_clock,
    frozen_demo,
    make_app,
    settle,
    wait_for,
)
from tui.console.chooser import RestoreChooser
from tui.console.help import HelpScreen
from tui.console.jobs_strip import JobsStrip
from tui.console.modals import ChoiceModal, ConfirmationModal, NameModal, PolicyFormModal

SIZE = (100, 30)
MiB = 1 << 20


@pytest.fixture(scope="module")
def frozen_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo in a home directory of its own ($HOME while the module runs): the details
    panel shows its paths as `~/blockvault/...`, the same wherever the test runs, and no other
    test session can rebuild it under our feet (a fixed /tmp path once made shots of another
    session's half-built catalog)."""
    user_home = tmp_path_factory.mktemp("user")
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("HOME", str(user_home))
        with pytest.MonkeyPatch.context() as monkeypatch:  # counter ids while it is built
            frozen_demo(monkeypatch, user_home / "blockvault").close()
        yield user_home / "blockvault"


@pytest.fixture
def app(frozen_home):  # type: ignore[no-untyped-def]
    with frozen_core_clock():
        bv = Blockvault.open(home=frozen_home, actor=ACTOR)
        yield make_app(bv)
        bv.close()


# The main screen at the three sizes the layout is made for: no pane scrolls sideways, the
# columns and the split between the panes follow the width.


def test_main_screen(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=(120, 40), run_before=ready)


@pytest.mark.slow
def test_main_screen_80x24(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


@pytest.mark.slow
def test_main_screen_200x50(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=(200, 50), run_before=ready)


@pytest.mark.slow
def test_restore_confirmation(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)
        app.main.table("backups").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal))
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        # the name field's cursor blinks on or off depending on when the shot is taken
        app.screen.query_one("#confirm-name", Input).cursor_blink = False
        await pilot.press(*"db1", "enter")  # a wrong name: the dialog says so
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


@pytest.mark.slow
def test_restore_chooser(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)
        await pilot.press("r")  # on a disk: its ways back, the fastest safe one marked
        await wait_for(pilot, lambda: isinstance(app.screen, RestoreChooser))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


@pytest.mark.slow
def test_delete_confirmation(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


@pytest.mark.slow
def test_help_screen(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


async def show_transfer(app, pilot) -> None:  # type: ignore[no-untyped-def]
    """A backup in progress, from fixed progress events (a live one would never look the same),
    below it the last job that finished (the one before it went to the jobs view)."""
    strip = app.main.query_one(JobsStrip)
    strip.add_job("job-000009", "snapshot", "db1-data")
    strip.add_job("job-00000a", "restore", "db1-root")
    strip.add_job("job-00000b", "backup", "db1-data")
    await pilot.pause()
    strip.finish("job-000009", "succeeded", "")
    strip.finish("job-00000a", "succeeded", "")
    strip.row("job-00000b").progress(
        ProgressEvent(
            "job-00000b",
            "backing up",
            11 * MiB,
            32 * MiB,
            bytes_new=8 * MiB,
            bytes_reused=3 * MiB,
            rate=3 * MiB,
            eta=7.0,
            bottleneck="reading",
        )
    )
    await pilot.pause()


@pytest.mark.slow
def test_transfer_in_progress(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    """At 80 columns: the strip's two lines per running job fit."""

    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)
        await show_transfer(app, pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


@pytest.mark.slow
def test_restore_choice(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)
        app.main.table("backups").focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


@pytest.mark.slow
def test_new_disk_name(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(app, pilot)
        app.main.table("snapshots").focus()
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NameModal))
        # a blinking cursor is on or off depending on when the shot is taken: hold it on
        app.screen.query_one("#name", Input).cursor_blink = False
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


async def show_policies(app, pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(app, pilot)
    await pilot.press("p")
    await settle(app, pilot)


@pytest.mark.slow
def test_policies_view(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    """Two policies (web-weekly has run, nightly is overdue on db1-data: the header counts it)."""
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: show_policies(app, pilot))


@pytest.mark.slow
def test_policies_view_80x24(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        app, terminal_size=(80, 24), run_before=lambda pilot: show_policies(app, pilot)
    )


@pytest.mark.slow
def test_new_policy_form(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await show_policies(app, pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, PolicyFormModal))
        form = app.screen
        for field in form.query(Input):
            field.cursor_blink = False
        await pilot.press(*"offsite")
        form.query_one("#schedule-form").value = "weekly"
        await pilot.pause()
        form.query_one("#schedule-value").value = "sun@03:00"
        form.query_one("#keep-weekly").value = "8"
        form.query_one("#policy-disks").select("disk-000004")
        form.query_one("#policy-name").focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


@pytest.mark.slow
def test_run_policy_confirmation(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
        await show_policies(app, pilot)
        await pilot.press("j", "r")  # web-weekly
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


async def show_vaults(app, pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(app, pilot)
    await pilot.press("v", "j")  # offsite: past its alert threshold
    await settle(app, pilot)


@pytest.mark.slow
def test_vaults_view(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    """Usage bars against quotas; offsite is past its alert threshold (the header's badge)."""
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: show_vaults(app, pilot))


@pytest.mark.slow
def test_vaults_view_80x24(snap_compare, app) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        app, terminal_size=(80, 24), run_before=lambda pilot: show_vaults(app, pilot)
    )
