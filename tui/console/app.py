"""The console application: themes, the size guard, the palette; `run_console` is the entry."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from pathlib import Path

from textual.app import App, SystemCommand
from textual.content import Content
from textual.events import Resize
from textual.screen import Screen

from core.api import Blockvault, BlockvaultError
from core.demo import build_demo
from tui.console import actions, fmt
from tui.console.main_screen import MainScreen
from tui.console.too_small import MIN_HEIGHT, MIN_WIDTH, TooSmallScreen

DARK, LIGHT = "textual-dark", "textual-light"
ALERT_STYLE = {"overdue": "$warning", "failing": "$error"}


class BlockvaultApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "blockvault"
    COMMAND_PALETTE_BINDING = "ctrl+p"

    def __init__(
        self,
        bv: Blockvault,
        *,
        read_only: bool = False,
        clock: Callable[[], datetime] = fmt.utc_now,
        theme: str = DARK,
    ) -> None:
        super().__init__()
        self.bv = bv
        self.read_only = read_only
        self.clock = clock
        self.initial_theme = theme
        self.main: MainScreen | None = None
        self.alerts: dict[str, int] = {}  # overdue and failing disks, for the header

    def format_title(self, title: str, sub_title: str) -> Content:
        """`blockvault · 2 overdue · 1 failing — actor · catalog · vaults`: the counts (only
        when not zero) in the theme's warning and error colours, and in words."""
        shown = [
            (f"{count} {name}", f"bold {ALERT_STYLE[name]}")
            for name, count in self.alerts.items()
            if count
        ]
        parts: list[Content | tuple[str, str]] = [Content(self.TITLE)]
        for text, style in shown:
            parts += [(" · ", "dim"), (text, style)]
        if sub_title:
            parts += [(" — ", "dim"), Content(sub_title).stylize("dim")]
        return Content.assemble(*parts)

    def on_mount(self) -> None:
        self.theme = self.initial_theme
        self.main = MainScreen(self.bv, read_only=self.read_only)
        self.push_screen(self.main)
        self._guard_size(self.size.width, self.size.height)

    def on_resize(self, event: Resize) -> None:
        self._guard_size(event.size.width, event.size.height)

    def _guard_size(self, width: int, height: int) -> None:
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        showing = isinstance(self.screen, TooSmallScreen)
        if small and not showing:
            self.push_screen(TooSmallScreen())
        elif small and showing:
            self.screen.show(width, height)  # type: ignore[attr-defined]
        elif not small and showing:
            self.pop_screen()

    def toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every registered action, named `Category: Action`, offered when it applies."""
        if isinstance(screen, MainScreen):
            for action in actions.ACTIONS:
                if action.id == "palette" or not screen.check_action(action.id, ()):
                    continue
                yield SystemCommand(
                    action.palette_title,
                    f"{action.help} (key {actions.key_label(action)})",
                    partial(self.call_later, screen.run_action, action.id),
                )
        yield from super().get_system_commands(screen)


def run_console(
    *,
    home: str | None = None,
    catalog: str | None = None,
    demo: bool = False,
    read_only: bool = False,
) -> int:
    """`blockvault` with no noun: open the console (on a throwaway demo with `demo`)."""
    demo_dir: Path | None = None
    try:
        if demo:
            demo_dir = Path(tempfile.mkdtemp(prefix="blockvault-demo-"))
            sys.stderr.write(f"blockvault: building the demo in {demo_dir} ...\n")
            bv = build_demo(demo_dir)
        else:
            bv = Blockvault.open(home=home, catalog_url=catalog, read_only=read_only)
    except BlockvaultError as exc:
        sys.stderr.write(f"blockvault: error: {exc}\n")
        return exc.exit_code
    try:
        BlockvaultApp(bv, read_only=read_only).run()
    finally:
        bv.close()
        if demo_dir is not None:
            shutil.rmtree(demo_dir, ignore_errors=True)
    return 0
