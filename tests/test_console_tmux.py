"""End to end in a real terminal: tmux runs `blockvault`, keys go in with send-keys, the screen
comes back with capture-pane. Snapshot a disk, write to it, roll back, check the bytes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.console import digest, small_demo, write

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed"),
]


class Tmux:
    def __init__(self, session: str) -> None:
        self.session = session

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", self.session, key)
            time.sleep(0.05)

    def literal(self, text: str) -> None:
        self.run("send-keys", "-t", self.session, "-l", text)
        time.sleep(0.05)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")


@pytest.fixture
def tmux(tmp_path: Path):  # type: ignore[no-untyped-def]
    session = f"bv-e2e-{os.getpid()}"
    yield Tmux(session)
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_snapshot_write_rollback_in_a_real_terminal(tmp_path: Path, tmux: Tmux) -> None:
    home = tmp_path / "home"
    small_demo(home).close()
    blockvault = Path(sys.executable).with_name("blockvault")
    command = (
        f"{blockvault} --home {home}"
        if blockvault.exists()
        else f"{sys.executable} -m tui.cli --home {home}"
    )
    tmux.run(
        "new-session",
        "-d",
        "-s",
        tmux.session,
        "-x",
        "80",
        "-y",
        "24",
        "-e",
        "TERM=xterm-256color",
        "-c",
        str(Path(__file__).parent.parent),
        command,
    )
    tmux.wait_for("db1-data-wednesday")  # browsing: the first disk's backups are listed
    from core.api import Blockvault

    bv = Blockvault.open(home=home)
    path = bv.get_disk("db1-data")["path"]
    tmux.keys("s")
    tmux.wait_for("$ blockvault snapshot create db1-data")
    tmux.keys("y")
    tmux.wait_for("snapshot db1-data done")  # the notification
    snapped = digest(path)
    newest = bv.list_snapshots(disk="db1-data")[0]["name"]
    # the pane has reloaded: the cursor can land on it (busy CI); at 80 columns the name is
    # shortened in the middle, its stamp (what tells it apart) shows
    tmux.wait_for(newest[-6:])
    write(path, 4096, os.urandom(64 * 1024))
    assert digest(path) != snapped
    tmux.keys("Tab", "r")  # the cursor is already on the new snapshot
    tmux.wait_for("Type db1-data to confirm")
    tmux.literal("db1-data")
    tmux.keys("Enter")
    screen = tmux.wait_for("rollback db1-data done")  # the notification
    assert "failed" not in screen
    assert digest(path) == snapped
    tmux.keys("q")
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and tmux.session in subprocess.run(["tmux", "ls"], capture_output=True, text=True).stdout
    ):
        time.sleep(0.1)
    bv.close()
