"""`blockvault web` as a real process and Debian's headless Chromium driving it (Playwright for
Python, no browser download): for tests/test_web.py and scripts/web_screenshot.py.

Chromium is told to resolve no name and to make no background request: the only traffic is
to the console on 127.0.0.1, and the test checks that every request went there."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.cli import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: nothing but loopback: no DNS, no updates, no metrics, no safe browsing
CHROMIUM_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-sandbox",  # as root, as CI runs
]


def have_chromium() -> bool:
    return Path(CHROMIUM).exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain `text` (a home path: leftovers)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if text in line and cmdline.parent.name != str(os.getpid()):
                found.append(line)
    return found


@contextlib.contextmanager
def serving(home: Path, *, timeout: float = 60.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`blockvault --home HOME web --port FREE` until the block ends, then SIGTERM; yields
    the URL it printed and the process (whose exit code the caller may check)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--home", str(home), "web", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else ""
        if "http://" not in line:
            process.kill()
            raise AssertionError(f"blockvault web printed no URL: {line!r} {process.stderr.read()}")
        yield line[line.index("http://") :].split()[0], process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("blockvault web did not stop on SIGTERM") from None


class Page:
    """A Chromium tab on the console: keys in, and the terminal's text as the browser
    received it over the websocket (xterm.js paints a canvas: no text in the DOM)."""

    def __init__(self, page: object) -> None:
        self.page = page
        self.frames: list[bytes] = []
        self.requests: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", self._watch)

    def _watch(self, websocket: object) -> None:
        self.requests.append(websocket.url)
        websocket.on(
            "framereceived",
            lambda payload: self.frames.append(
                payload if isinstance(payload, bytes) else payload.encode()
            ),
        )

    def text(self) -> str:
        return b"".join(self.frames).decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Until `text` reached the browser's terminal."""
        deadline = time.monotonic() + timeout
        while text not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never reached the browser:\n{self.text()[-3000:]}")
            self.page.wait_for_timeout(100)

    def press(self, *keys: str) -> None:
        """Type into the terminal (its hidden textarea holds the keyboard focus)."""
        self.page.focus(".xterm-helper-textarea")
        for key in keys:
            self.page.keyboard.press(key)
            self.page.wait_for_timeout(50)


@contextlib.contextmanager
def browser(url: str, *, width: int = 1200, height: int = 760) -> Iterator[Page]:
    """Headless Chromium (Debian's) on `url`, closed when the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = chromium.new_page(viewport={"width": width, "height": height})
            page = Page(tab)
            tab.goto(url)
            yield page
        finally:
            chromium.close()
