"""`blockvault web`: the console in a browser, served by textual-serve.

Each browser tab gets its own console process (`python -m tui.console`, with this command's
--home, --catalog, --demo and --read-only), driven over a websocket. There is no login: whoever
reaches the address has the console, with the rights of the user who started it. So it
listens on loopback unless `--allow-remote` says otherwise (then behind an SSH tunnel or an
authenticating proxy). The page loads nothing from outside this server.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.api import UserError, printable

DESCRIPTION = """\
Serve the console to a browser: open the URL it prints. Every tab runs its own console, as
the user who started `blockvault web`.

There is no authentication: anyone who can open the URL controls blockvault (snapshots,
restores, deletes). It listens on 127.0.0.1 only; reach it from elsewhere with an SSH tunnel
(ssh -L 8000:127.0.0.1:8000 HOST). --host with any other address is refused unless
--allow-remote is given as well."""

#: textual-serve's default port
DEFAULT_PORT = 8000
#: how long a stopping server waits for its consoles to quit (then they are sent SIGTERM)
SHUTDOWN_SECONDS = 5.0
#: what `--host` may be without --allow-remote
LOOPBACK_NAMES = ("localhost",)


def add_to(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to listen on ({DEFAULT_PORT})"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1); a non-loopback one needs --allow-remote",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="listen on a non-loopback --host although the console has no authentication",
    )
    p.set_defaults(run_without_catalog=serve)


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def console_command(args: argparse.Namespace) -> str:
    """The shell command textual-serve runs per browser session: this Python, the console,
    this command's global options. `exec`: the console is the server's own child, stopped
    with it."""
    argv = [sys.executable, "-m", "tui.console"]
    if args.home:
        argv += ["--home", str(Path(args.home).absolute())]
    if args.catalog:
        argv += ["--catalog", args.catalog]
    argv += ["--demo"] * bool(args.demo) + ["--read-only"] * bool(args.read_only)
    return "exec " + shlex.join(argv)


def check_address(args: argparse.Namespace) -> None:
    """A port in range; a non-loopback host only with --allow-remote (and a loud warning)."""
    if not 1 <= args.port <= 65535:
        raise UserError(f"invalid --port {args.port}: between 1 and 65535")
    if is_loopback(args.host):
        return
    if not args.allow_remote:
        raise UserError(
            f"refusing to serve the console on {args.host}: it has no authentication, so "
            "anyone who reaches it controls blockvault; use an SSH tunnel to 127.0.0.1, or "
            "add --allow-remote if this network is yours alone"
        )
    sys.stderr.write(
        f"blockvault: WARNING: serving the console on {printable(args.host)} WITHOUT "
        "AUTHENTICATION: anyone who reaches this address controls blockvault\n"
    )


def serve(args: argparse.Namespace, build_parser: Callable[[], argparse.ArgumentParser]) -> int:
    """Serve until Ctrl-C or SIGTERM; then stop every console this server started."""
    check_address(args)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}"
    server = _server(console_command(args), args.host, args.port, url)
    try:
        server.serve()
    except OSError as exc:  # the port is taken, the address is not this host's
        raise UserError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    finally:
        _stop_children()
    return 0


def _server(command: str, host: str, port: int, url: str) -> Any:
    """A textual-serve Server that prints one line, not its banner, and serves its page
    without the web font it would fetch from outside (the terminal's font stack follows)."""
    import asyncio
    import logging

    import aiohttp_jinja2
    import jinja2
    from aiohttp import web
    from textual_serve.server import Server  # aiohttp and friends: only to serve

    sessions: set[asyncio.Task[Any] | None] = set()

    class ConsoleServer(Server):
        def serve(self, debug: bool = False) -> None:
            """textual-serve's, with the URL printed once the port is bound (not before)."""
            logging.basicConfig(level=logging.WARNING, format="blockvault web: %(message)s")
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.request_exit)
            web.run_app(
                self._make_app(),
                host=self.host,
                port=self.port,
                handle_signals=False,
                loop=loop,
                print=lambda _banner: print(
                    f"blockvault web: the console on {url} (no authentication; Ctrl-C stops)",
                    flush=True,
                ),
            )

        async def on_startup(self, app: web.Application) -> None:
            """Quiet: textual-serve prints a banner here."""

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            """A browser session: its console runs as long as this task."""
            task = asyncio.current_task()
            sessions.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                sessions.discard(task)

        async def on_shutdown(self, app: web.Application) -> None:
            """Close every session (each tells its console to quit and waits for it) while
            the loop still runs: no console outlives the server."""
            for task in list(sessions):
                task.cancel()
            if sessions:
                await asyncio.wait(list(sessions), timeout=SHUTDOWN_SECONDS)

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            page = (Path(self.templates_path) / "app_index.html").read_text()
            page = re.sub(r"<link[^>]*fonts\.googleapis\.com[^>]*>", "", page)
            aiohttp_jinja2.setup(app, loader=jinja2.DictLoader({"app_index.html": page}))
            return app

    return ConsoleServer(command, host=host, port=port, title="blockvault", public_url=url)


def _stop_children() -> None:
    """SIGTERM any console still running (a tab whose websocket never closed)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me:  # the parent pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(stat.parent.name), signal.SIGTERM)
