"""Run the real CLI in-process and capture what a user would see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tui.cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class CLI:
    """`cli("disk", "list", "--json")` runs `blockvault --home HOME disk list --json`."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    @classmethod
    def with_config(cls, home: Path, capsys: pytest.CaptureFixture[str], config: str) -> CLI:
        """A fresh home whose config.toml holds `config` (small chunks, short windows...)."""
        home.mkdir(parents=True)
        (home / "config.toml").write_text(config)
        return cls(home, capsys)

    def __call__(self, *argv: str) -> Result:
        self.capsys.readouterr()
        try:
            code = main(["--home", str(self.home), *argv])
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *argv: str) -> Any:
        """Run, assert success, return parsed JSON (adds --json)."""
        result = self(*argv, "--json")
        assert result.code == 0, f"{argv} failed: {result.err}"
        return result.json()

    def fails(self, *argv: str) -> str:
        """Run, assert a one-line error and non-zero exit; return stderr."""
        result = self(*argv)
        assert result.code != 0, f"{argv} unexpectedly succeeded: {result.out}"
        assert "Traceback" not in result.err
        lines = [line for line in result.err.strip().splitlines() if line]
        assert len(lines) == 1, result.err
        return lines[0]


REPO = Path(__file__).resolve().parents[2]


def spawn_cli(cli: CLI, *argv: str) -> subprocess.Popen[str]:
    """The real CLI in a child process (--json), for tests that kill it mid-way."""
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--home", str(cli.home), *argv, "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(
    home: Path,
    *argv: str,
    env: dict[str, str | None] | None = None,
    timeout: float = 60,
) -> Result:
    """The real CLI in a child process, as a script or a pipe sees it: stdin empty, stdout and
    stderr pipes (no terminal), `env` added to the environment (None: a variable removed)."""
    environment = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--home", str(home), *argv],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in environment.items() if v is not None},
    )
    return Result(done.returncode, done.stdout, done.stderr)
