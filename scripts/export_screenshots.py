"""Regenerate screenshots/*.svg headless from a throwaway demo: `python scripts/export_screenshots.py`.

Main screen, a restore confirmation, a transfer in progress, the policies view, the vaults view
and the help screen, at 100x30. The core's clock is frozen with the console's, so next runs, the
overdue disk and the vaults' forecasts come out the same every time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.api import Blockvault  # noqa: E402
from core.base.progress import ProgressEvent  # noqa: E402
from core.demo import build_demo  # noqa: E402
from tests.support.console import (  # noqa: E402
    BUILT_AT,
    FROZEN_NOW,
    freeze_times,
    frozen_core_clock,
    write_frozen_config,
)
from tui.console.app import BlockvaultApp  # noqa: E402
from tui.console.chooser import RestoreChooser  # noqa: E402
from tui.console.help import HelpScreen  # noqa: E402
from tui.console.jobs_strip import JobsStrip  # noqa: E402
from tui.console.modals import ChoiceModal, ConfirmationModal  # noqa: E402

SIZE = (100, 30)
OUT = ROOT / "screenshots"
MiB = 1 << 20


async def until(pilot, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("the console never got there")
        await pilot.pause(0.02)


async def idle(app: BlockvaultApp, pilot) -> None:  # type: ignore[no-untyped-def]
    await until(pilot, lambda: not [w for w in app.workers if w.is_running and w.group != "action"])
    await pilot.pause(0.1)


async def shoot(home: Path) -> list[Path]:
    write_frozen_config(home)
    with frozen_core_clock(BUILT_AT):
        build_demo(home, actor="admin@bastion").close()
    # Spread the demo's timestamps over a few days so ages read like a real site's.
    freeze_times(home / "catalog.sqlite")
    with frozen_core_clock(FROZEN_NOW):
        return await _shoot(home)


async def _shoot(home: Path) -> list[Path]:
    bv = Blockvault.open(home=home, actor="admin@bastion")
    app = BlockvaultApp(bv, clock=lambda: FROZEN_NOW)
    saved = []

    def save(name: str) -> None:
        saved.append(Path(app.save_screenshot(f"{name}.svg", path=str(OUT))))

    async with app.run_test(size=SIZE) as pilot:
        await idle(app, pilot)
        save("main")

        app.main.table("backups").focus()
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ChoiceModal))
        await pilot.press("tab", "enter")  # onto the original disk
        await until(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        await pilot.pause(0.1)
        save("restore-confirmation")
        await pilot.press("escape")
        await idle(app, pilot)

        app.main.table("disks").focus()
        await pilot.press("r")  # on a disk: its ways back, the fastest safe one marked
        await until(pilot, lambda: isinstance(app.screen, RestoreChooser))
        await pilot.pause(0.1)
        save("restore-chooser")
        await pilot.press("escape")
        await idle(app, pilot)

        # A transfer in progress, drawn from progress events as the engine emits them.
        strip = app.main.query_one(JobsStrip)
        strip.add_job("job-1f2e3d", "snapshot", "db1-data")
        strip.add_job("job-4a5b6c", "backup", "db1-data")
        await pilot.pause()
        strip.finish("job-1f2e3d", "succeeded", "")
        strip.row("job-4a5b6c").progress(
            ProgressEvent(
                "job-4a5b6c",
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
        await pilot.pause(0.1)
        save("transfer-in-progress")

        await pilot.press("p")  # the policies view
        await idle(app, pilot)
        save("policies")

        await pilot.press("escape", "v", "j")  # the vaults view, on the one past its alert
        await idle(app, pilot)
        save("vaults")
        await pilot.press("escape")
        await idle(app, pilot)

        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.1)
        save("help")
    bv.close()
    return saved


def main() -> int:
    OUT.mkdir(exist_ok=True)
    # the demo under a home directory of its own: the details panel shows `~/blockvault/...`,
    # the same on every run
    user_home = Path(tempfile.mkdtemp(prefix="blockvault-screenshots-"))
    os.environ["HOME"] = str(user_home)
    home = user_home / "blockvault"
    try:
        for path in asyncio.run(shoot(home)):
            print(path.relative_to(ROOT))
    finally:
        shutil.rmtree(user_home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
