"""Helpers for the console tests: small real demo homes, frozen ids and times, waiting on workers."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import importlib
import itertools
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import core.base.ids
from core.api import Blockvault
from core.demo import DEMO_CHUNK_SIZE, build_demo
from tui.console.app import BlockvaultApp

ACTOR = "admin@demo-host"
FROZEN_NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SCALE = 0.125  # 2-4 MiB disks


def small_demo(home: Path) -> Blockvault:
    return build_demo(home, scale=SCALE, actor=ACTOR)


_template: Path | None = None


def demo_copy(home: Path) -> Blockvault:
    """A fresh copy of one small demo built once per test session (copying beats rebuilding)."""
    global _template
    if _template is None:
        _template = Path(tempfile.mkdtemp(prefix="blockvault-demo-template-")) / "home"
        atexit.register(shutil.rmtree, _template.parent, True)
        small_demo(_template).close()
    shutil.copytree(_template, home)
    with sqlite3.connect(home / "catalog.sqlite") as db:  # the catalog keeps absolute paths
        for table, column in (("disks", "path"), ("vaults", "location")):
            db.execute(
                f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                (str(_template), str(home)),
            )
    return Blockvault.open(home=home, actor=ACTOR)


class _CountingSecrets:
    """Stand-in for `secrets` in core.base.ids: ids 000001, 000002, ... so screenshots are stable."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)

    def token_hex(self, nbytes: int) -> str:
        return f"{next(self.counter):0{2 * nbytes}x}"


# Where the core reads the wall clock for what the console shows: schedules' next runs,
# protection status, the names of automatic backups, vaults' forecasts and locked backups.
CLOCK_MODULES = (
    "core.ops.policies",
    "core.ops.protection",
    "core.catalog.names",
    "core.ops.capacity",
)


@contextlib.contextmanager
def frozen_core_clock(moment: datetime = FROZEN_NOW) -> Iterator[None]:
    """The core's `datetime.now()` is `moment` meanwhile (as the console's clock is): a next
    run, an overdue disk or a backup's default name comes out the same on every run."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return moment.astimezone(tz) if tz else moment.replace(tzinfo=None)

    modules = [importlib.import_module(name) for name in CLOCK_MODULES]
    saved = [module.datetime for module in modules]  # type: ignore[attr-defined]
    for module in modules:
        module.datetime = Frozen  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.datetime = original  # type: ignore[attr-defined]


def write_frozen_config(home: Path) -> None:
    """The demo's config, with schedules read in UTC whatever the host's zone."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[blockvault]\nchunk_size = {DEMO_CHUNK_SIZE}\ntimezone = "UTC"\n'
    )


def frozen_demo(monkeypatch, home: Path) -> Blockvault:  # type: ignore[no-untyped-def]
    """A demo at `home` with counter ids and fixed timestamps (for snapshot tests); open the
    console on it under `frozen_core_clock()`."""
    shutil.rmtree(home, ignore_errors=True)
    monkeypatch.setattr(core.base.ids, "secrets", _CountingSecrets())
    write_frozen_config(home)
    with frozen_core_clock(BUILT_AT):
        bv = small_demo(home)
    bv.close()
    freeze_times(home / "catalog.sqlite")
    return Blockvault.open(home=home, actor=ACTOR)


BUILT_AT = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)  # names the policy run's backups


def freeze_times(catalog: Path) -> None:
    """Rewrite every timestamp to a fixed moment (97 minutes apart in insertion order).

    Policies were made at the start; a policy's run (its slot) just before its first backup.
    """
    base = "2026-11-20 08:00:00"
    with sqlite3.connect(catalog) as db:
        for table, columns in {
            "servers": ("created_at",),
            "disks": ("created_at",),
            "snapshots": ("created_at",),
            "backups": ("created_at", "completed_at"),
            "vaults": ("created_at",),
        }.items():
            sets = ", ".join(
                f"{c} = datetime('{base}', '+' || (rowid * 97) || ' minutes')" for c in columns
            )
            db.execute(f"UPDATE {table} SET {sets}")
        db.execute(f"UPDATE policies SET created_at = '{base}'")
        db.execute(
            "UPDATE policy_slots SET"
            " slot_at = (SELECT datetime(min(created_at), '-1 minutes') FROM backups"
            "            WHERE backups.policy_id = policy_slots.policy_id),"
            " finished_at = (SELECT max(completed_at) FROM backups"
            "                WHERE backups.policy_id = policy_slots.policy_id)"
        )
        db.execute("UPDATE policy_slots SET claimed_at = slot_at")
        db.execute("DELETE FROM jobs")


def make_app(bv: Blockvault, **kwargs) -> BlockvaultApp:  # type: ignore[no-untyped-def]
    return BlockvaultApp(bv, clock=lambda: FROZEN_NOW, **kwargs)


async def settle(app: BlockvaultApp, pilot, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until loads and jobs are done (not flows: they may be waiting on a dialog)."""

    def busy() -> list:  # type: ignore[type-arg]
        on_main = app.screen is app.main  # else a flow may be waiting for the dialog shown
        return [w for w in app.workers if w.is_running and (w.group != "action" or on_main)]

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        if not busy():
            await pilot.pause()  # let the handlers of what they posted run
            if not busy():
                return
    raise TimeoutError(f"workers still running: {[w.name for w in app.workers if w.is_running]}")


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


async def wait_for(pilot, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Pause until `predicate()` holds (e.g. a dialog is on screen)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await pilot.pause(0.02)


async def select_disk(app: BlockvaultApp, pilot, name: str) -> None:  # type: ignore[no-untyped-def]
    """Put the disks pane's cursor on `name` and wait for its snapshots and backups."""
    screen = app.main
    table = screen.table("disks")
    key = next(k for k, row in table.rows_by_key.items() if row.get("name") == name)
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    await settle(app, pilot)
