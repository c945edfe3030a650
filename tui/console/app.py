"""The console application: themes, the size guard, the palette; `run_console` is the entry.

`run_console` paints first and opens the catalog after: the app starts on a one-line screen
while a thread imports the façade and opens the catalog (SQLModel, the migration check and
reconcile: most of a second), then the main screen replaces it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, ComposeResult, SystemCommand
from textual.content import Content
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import Static

from core.api import BlockvaultError
from tui.console import actions, fmt
from tui.console.too_small import MIN_HEIGHT, MIN_WIDTH, TooSmallScreen

if TYPE_CHECKING:
    from core.api import Blockvault
    from tui.console.main_screen import MainScreen

DARK, LIGHT = "textual-dark", "textual-light"
ALERT_STYLE = {"overdue": "$warning", "failing": "$error"}


class BlockvaultApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "blockvault"
    COMMAND_PALETTE_BINDING = "ctrl+p"

    def __init__(
        self,
        bv: Blockvault | None,
        *,
        opener: Callable[[], Blockvault] | None = None,
        opening: str = "opening the catalog",
        read_only: bool = False,
        clock: Callable[[], datetime] = fmt.utc_now,
        theme: str = DARK,
        demo: bool = False,
    ) -> None:
        """On `bv`; or, without one, on what `opener` returns, called in a thread while
        the app shows `opening` (an error it raises ends the app: see `error`). `demo`: a
        throwaway demo, badged DEMO in the header so it is never taken for production."""
        super().__init__()
        self.bv = bv
        self.opener = opener
        self.opening = opening
        self.error: BlockvaultError | None = None
        self.read_only = read_only
        self.clock = clock
        self.initial_theme = theme
        self.demo = demo
        self.main: MainScreen | None = None
        self.alerts: dict[str, int] = {}  # overdue and failing disks, for the header
        self.badges: list[tuple[str, str]] = []  # (text, "warning"|"error"): vaults past alert
        self.keymap: dict[str, str] = {}  # config.toml's [keys]: action name -> keys
        self.farewell: list[str] = []  # printed after the console closes (jobs handed over)

    def format_title(self, title: str, sub_title: str) -> Content:
        """`DEMO blockvault · 2 overdue · 1 failing · vault offsite 85% — actor · catalog ·
        vaults`: the counts (only when not zero) and the vault badge in the theme's warning
        and error colours, and in words.

        A separator's leading space is a run of its own: a run of text that starts with a
        space loses it in SVG viewers (the screenshots read `blockvault—  admin`).
        """
        shown = [
            (f"{count} {name}", f"bold {ALERT_STYLE[name]}")
            for name, count in self.alerts.items()
            if count
        ]
        shown += [(text, f"bold ${variable}") for text, variable in self.badges]
        parts: list[Content | tuple[str, str]] = []
        if self.demo:
            parts += [("DEMO", "bold reverse $warning"), (" ", "")]
        parts.append(Content(self.TITLE))
        for text, style in shown:
            parts += [(" ", ""), ("· ", "dim"), (text, style)]
        if sub_title:
            parts += [(" ", ""), ("— ", "dim"), Content(sub_title).stylize("dim")]
        return Content.assemble(*parts)

    def export_screenshot(self, *, title: str | None = None, simplify: bool = False) -> str:
        """Textual's SVG, marked to keep its spaces: without `xml:space="preserve"` SVG
        viewers drop the leading spaces of every text run, so screenshots read
        `OVERWRITEdisk` and `^ppalette` and lose indents a terminal shows."""
        svg = super().export_screenshot(title=title, simplify=simplify)
        return svg.replace("<svg ", '<svg xml:space="preserve" ', 1)

    def compose(self) -> ComposeResult:
        if self.bv is None:  # the first paint, while the catalog opens
            yield Static(f"{self.TITLE} · {self.opening} …")

    def on_mount(self) -> None:
        self.theme = self.initial_theme
        if self.bv is None:
            self.run_worker(self._open, thread=True)
            self._guard_size(self.size.width, self.size.height)
        else:
            self._show(self.bv)

    def _open(self) -> None:
        """In a thread: the façade is imported and the catalog opened here."""
        assert self.opener is not None
        try:
            bv = self.opener()
        except BlockvaultError as exc:
            self.call_from_thread(self._fail, exc)
        else:
            self.call_from_thread(self._show, bv)

    def _fail(self, exc: BlockvaultError) -> None:
        self.error = exc
        self.exit(return_code=exc.exit_code)

    def _show(self, bv: Blockvault) -> None:
        from tui.console.main_screen import MainScreen  # its widgets: after the first paint

        self.bv = bv
        self.main = MainScreen(bv, read_only=self.read_only)
        self._load_keymap(bv)
        if isinstance(self.screen, TooSmallScreen):
            self.pop_screen()  # the guard goes back over the main screen
        self.push_screen(self.main)
        self._guard_size(self.size.width, self.size.height)

    def _load_keymap(self, bv: Blockvault) -> None:
        """config.toml's [keys] rebinds the actions' keys (Textual's keymap, by binding id)."""
        try:
            config = bv.keymap()
        except BlockvaultError as exc:
            self.notify(str(exc), title="config.toml [keys]", severity="error", markup=False)
            return
        keymap, unknown = actions.keymap_from(config)
        self.keymap = {name: keys for name, keys in config.items() if name not in unknown}
        self.set_keymap(keymap)
        if unknown:
            self.notify(
                f"no action named {', '.join(unknown)}; the actions are "
                f"{', '.join(a.id for a in actions.ACTIONS)}",
                title="config.toml [keys]",
                severity="warning",
                timeout=15,
                markup=False,
            )

    async def action_quit(self) -> None:
        """ctrl+q as q: asks first while jobs of this console run."""
        if self.main is not None and self.main.is_attached:
            self.main.action_quit()
        else:
            self.exit()

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
        if self.main is not None and screen is self.main:
            for action in actions.ACTIONS:
                if action.id == "palette" or not screen.check_action(action.id, ()):
                    continue
                yield SystemCommand(
                    action.palette_title,
                    f"{action.help} (key {actions.key_label(action, self.keymap)})",
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
    demo_dir = Path(tempfile.mkdtemp(prefix="blockvault-demo-")) if demo else None

    def open_catalog() -> Blockvault:
        if demo_dir is not None:
            from core.demo import build_demo

            return build_demo(demo_dir)
        from core.api import Blockvault

        return Blockvault.open(home=home, catalog_url=catalog, read_only=read_only)

    opening = f"building the demo in {demo_dir}" if demo_dir else "opening the catalog"
    app = BlockvaultApp(None, opener=open_catalog, opening=opening, read_only=read_only, demo=demo)
    try:
        app.run()
    finally:
        if app.bv is not None:
            app.bv.close()
        if demo_dir is not None:
            shutil.rmtree(demo_dir, ignore_errors=True)
    for line in app.farewell:
        sys.stderr.write(f"blockvault: {line}\n")
    if app.error is not None:
        sys.stderr.write(f"blockvault: error: {app.error}\n")
        return app.error.exit_code
    return 0
