"""The console in a browser: `blockvault web` as a real process, Debian's headless Chromium
driving it. Take a snapshot with the keys an admin would press, find it with the CLI, and
leave no process behind. Only loopback traffic: every request the browser made is checked."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support.browser import browser, have_chromium, processes_mentioning, serving
from tests.support.cli import CLI
from tests.support.console import small_demo

needs_chromium = pytest.mark.skipif(
    not have_chromium(),
    reason="Debian's chromium is not installed (apt-get install chromium; CI installs it)",
)


def snapshots(cli: CLI, disk: str) -> list[str]:
    return [s["name"] for s in cli.ok("snapshot", "list", "--disk", disk)]


@pytest.mark.slow
@needs_chromium
def test_a_snapshot_taken_in_the_browser_is_in_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    small_demo(home).close()
    cli = CLI(home, capsys)
    before = snapshots(cli, "db1-data")
    with serving(home) as (url, server), browser(url) as page:
        assert url.startswith("http://127.0.0.1:")
        page.wait_for("db1-data-wednesday")  # rendered: the first disk's backups are listed
        page.press("s")
        page.wait_for("snapshot create db1-data")  # the plan, with its equivalent command
        page.press("y")
        deadline = time.monotonic() + 30
        while len(snapshots(cli, "db1-data")) == len(before):
            assert time.monotonic() < deadline, page.text()[-3000:]
            time.sleep(0.2)
        assert all(
            r.startswith(("http://127.0.0.1:", "ws://127.0.0.1:")) for r in page.requests
        ), page.requests
        # stopped while the tab is still open: its console quits with the server
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    assert not processes_mentioning(str(home))
    made = set(snapshots(cli, "db1-data")) - set(before)
    assert len(made) == 1, made


def test_web_refuses_a_non_loopback_address_without_allow_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = CLI(tmp_path / "home", capsys)
    line = cli.fails("web", "--host", "0.0.0.0")
    assert "no authentication" in line and "--allow-remote" in line
    assert "invalid --port 0" in cli.fails("web", "--port", "0")
    assert "no authentication" in cli("web", "--help").out
