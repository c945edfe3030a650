"""Separate hosts on one machine: OS processes with their own host id, home, catalog and pool.

`Host` runs the real CLI in a child process with `BLOCKVAULT_HOST_ID` and `BLOCKVAULT_HOME`
of its own. Importing the CLI costs about a second, so a host can also run a whole script of
commands in one child (`Host.script`): this module's `__main__` imports it once, runs each step
in-process and prints one JSON line per step.

Steps are CLI argument lists, or:
    ["@write", DISK, OFFSET, LENGTH, SEED]   random bytes into a disk's image; prints its sha256
    ["@sha", DISK]                           the sha256 of a disk's image
    ["@until", STOP_FILE, PAUSE, *ARGV]      run ARGV every PAUSE seconds until STOP_FILE exists
    ["@verify-all"]                          `backup verify --json` of every backup listed
    ["@touch", PATH] / ["@wait", PATH]       make a file / wait (at most a minute) until it exists
    ["@gates", DIR]                          gate the steps after this one (see below)

Gates (`BLOCKVAULT_TEST_GATES=DIR` for the whole child, or from a "@gates" step on): every
object-store call of the child is traced to DIR/trace.jsonl with the child's own `time.time()`
(a faked clock shows there) and its monotonic clock; DIR/gates.json lists `{"name", "op", "key"}` in order, and the child
pauses at the first call matching the next gate (op equal, key starting with "key"): it writes
DIR/reached-NAME and goes on when DIR/go-NAME exists. The test moves a clock, kills the child
or lets another host act at exactly that point.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.stores.retry import RetryingStore
from tui.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
GATES_ENV = "BLOCKVAULT_TEST_GATES"
GATE_TIMEOUT = 60.0


# --- results ------------------------------------------------------------------------------


@dataclass
class Step:
    """One command a host ran: its arguments, exit code and output."""

    argv: list[Any]
    code: int
    out: str = ""
    err: str = ""
    start: float = 0.0
    end: float = 0.0
    sha: str | None = None

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.out.splitlines() if line.startswith("{")]

    def json(self) -> Any:
        """The whole output as JSON (a list or object), else its last JSON line."""
        try:
            return json.loads(self.out)
        except ValueError:
            return self.lines()[-1]

    def result(self) -> dict:
        """The final `{"type": "result", ...}` line of a job run with --json."""
        found = [line for line in self.lines() if line.get("type") == "result"]
        assert found, f"{self.argv}: no result (code {self.code}): {self.err.strip()}"
        return found[-1]

    def messages(self) -> list[str]:
        """What the job said while it ran (its progress lines' messages)."""
        return [line["message"] for line in self.lines() if line.get("message")]


def _parse(out: str) -> list[Step]:
    return [Step(**json.loads(line)) for line in out.splitlines() if line.strip()]


# --- hosts --------------------------------------------------------------------------------


@dataclass
class Host:
    """One admin host: a host id and a home of its own (config, catalog, pool)."""

    name: str
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, root: Path, name: str, config: str, *, host_id: str | None = None) -> Host:
        home = root / name
        home.mkdir(parents=True)
        (home / "config.toml").write_text(config)
        env = {**os.environ, "BLOCKVAULT_HOST_ID": host_id or name, "BLOCKVAULT_HOME": str(home)}
        env.pop(GATES_ENV, None)
        return cls(host_id or name, home, env)

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def spawn(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """The CLI in a child process (stdout and stderr piped)."""
        return subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "--home", str(self.home), *argv],
            cwd=ROOT,
            env=self._env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> Step:
        child = self.spawn(*argv, env=env)
        started = time.monotonic()
        out, err = child.communicate(timeout=timeout)
        return Step(list(argv), child.returncode, out, err, started, time.monotonic())

    def ok(self, *argv: str, env: dict[str, str] | None = None) -> Step:
        step = self.run(*argv, "--json", env=env)
        assert step.code == 0, f"{self.name}: {argv} failed: {step.err.strip()}"
        return step

    def script(self, steps: Iterable[list[Any]], *, env: dict[str, str] | None = None) -> Script:
        """Run `steps` one after the other in one child process; `.wait()` returns them."""
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.support.hosts", json.dumps(list(steps))],
            cwd=ROOT,
            env=self._env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Script(self, child)

    def steps(self, steps: Iterable[list[Any]], *, timeout: float = 120) -> list[Step]:
        return self.script(steps).wait(timeout)


@dataclass
class Script:
    host: Host
    child: subprocess.Popen[str]

    def wait(self, timeout: float = 120) -> list[Step]:
        out, err = self.child.communicate(timeout=timeout)
        assert self.child.returncode == 0, f"{self.host.name}: script died: {err[-3000:]}"
        return _parse(out)

    def kill(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
        self.child.communicate()


# --- gates: pause a child at one object-store call ------------------------------------------


class Gates:
    """The test's side of a gates directory."""

    def __init__(self, directory: Path, gates: list[tuple[str, str, str]]) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        body = [{"name": n, "op": op, "key": key} for n, op, key in gates]
        (directory / "gates.json").write_text(json.dumps(body))

    @property
    def env(self) -> dict[str, str]:
        return {GATES_ENV: str(self.dir)}

    def reached(
        self, name: str, timeout: float = 60, child: subprocess.Popen | None = None
    ) -> dict:
        """Wait until the child pauses at gate `name`; what it saw there (its clock)."""
        path = self.dir / f"reached-{name}"
        deadline = time.monotonic() + timeout
        while not path.exists():
            if child is not None and child.poll() is not None:
                raise AssertionError(f"child ended before gate {name}: {child.communicate()}")
            assert time.monotonic() < deadline, f"gate {name} not reached in {timeout} s"
            time.sleep(0.01)
        time.sleep(0.01)  # written in one call; let it land
        return json.loads(path.read_text() or "{}")

    def go(self, name: str) -> None:
        (self.dir / f"go-{name}").touch()

    def trace(self) -> list[dict]:
        path = self.dir / "trace.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _install_gates(directory: Path) -> None:
    """Wrap every RetryingStore call of this process (both backends go through it)."""
    gates = json.loads((directory / "gates.json").read_text())
    state = {"next": 0}
    lock = threading.Lock()
    trace = open(directory / "trace.jsonl", "a")  # noqa: SIM115 - lives as long as the process

    pause = threading.Event()  # never set: its wait is the pause (time.sleep fails under
    # libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC: its clock_nanosleep says EINVAL)

    def hook(op: str, key: str) -> None:
        now, mono = time.time(), time.monotonic()
        with lock:
            trace.write(json.dumps({"op": op, "key": key, "t": now, "m": mono}) + "\n")
            trace.flush()
            gate = gates[state["next"]] if state["next"] < len(gates) else None
            if gate is None or gate["op"] != op or not key.startswith(gate["key"]):
                return
            state["next"] += 1
        name = gate["name"]
        (directory / f"reached-{name}").write_text(json.dumps({"t": now, "m": mono, "key": key}))
        deadline = time.monotonic() + GATE_TIMEOUT
        while not (directory / f"go-{name}").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"gate {name}: nobody said go in {GATE_TIMEOUT} s")
            pause.wait(0.01)

    def wrap(method: str, op: str) -> None:
        original = getattr(RetryingStore, method)

        def gated(self: Any, key: str = "", *args: Any, **kwargs: Any) -> Any:
            hook(op, key)
            return original(self, key, *args, **kwargs)

        setattr(RetryingStore, method, gated)

    for op in ("put", "get", "exists", "delete", "list"):
        wrap(op, op)
    wrap("delete_lazily", "delete")  # gc's deletes: a gate on "delete" stops them too


# --- the child's side ----------------------------------------------------------------------


def _cli(argv: list[str]) -> Step:
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["--home", os.environ["BLOCKVAULT_HOME"], *argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Step(argv, code, out.getvalue(), err.getvalue(), started, time.monotonic())


_paths: dict[str, str] = {}


def _disk_path(name: str) -> str:
    if name not in _paths:
        step = _cli(["disk", "show", name, "--json"])
        if step.code != 0:
            raise RuntimeError(f"disk show {name}: {step.err}")
        _paths[name] = step.json()["path"]
    return _paths[name]


def sha_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _step(argv: list[Any]) -> Iterable[Step]:
    started = time.monotonic()
    if argv[0] == "@write":
        _, disk, offset, length, seed = argv
        path = _disk_path(disk)
        with open(path, "r+b") as handle:
            handle.seek(offset)
            handle.write(random.Random(seed).randbytes(length))
        yield Step(argv, 0, start=started, end=time.monotonic(), sha=sha_of(path))
    elif argv[0] == "@sha":
        path = _disk_path(argv[1])
        yield Step(argv, 0, start=started, end=time.monotonic(), sha=sha_of(path))
    elif argv[0] == "@until":
        stop, pause = Path(argv[1]), float(argv[2])
        while True:
            yield _cli(argv[3:])
            if stop.exists():
                return
            threading.Event().wait(pause)  # not time.sleep: see _install_gates
    elif argv[0] == "@touch":
        Path(argv[1]).touch()
        yield Step(argv, 0, start=started, end=time.monotonic())
    elif argv[0] == "@wait":
        deadline = started + GATE_TIMEOUT
        while not Path(argv[1]).exists() and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        yield Step(argv, 0 if Path(argv[1]).exists() else 1, start=started, end=time.monotonic())
    elif argv[0] == "@gates":
        _install_gates(Path(argv[1]))
        yield Step(argv, 0, start=started, end=time.monotonic())
    elif argv[0] == "@verify-all":
        for row in _cli(["backup", "list", "--all", "--json"]).json():
            yield _cli(["backup", "verify", row["id"], "--json"])
    else:
        yield _cli([str(a) for a in argv])


def _drive(steps: list[list[Any]]) -> None:
    gates = os.environ.get(GATES_ENV)
    if gates:
        _install_gates(Path(gates))
    for argv in steps:
        for step in _step(argv):
            sys.stdout.write(json.dumps(step.__dict__) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    _drive(json.loads(sys.argv[1]))
