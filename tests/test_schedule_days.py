"""Policies across real days: the CLI run under libfaketime's `faketime` on successive days
(the whole program reads the system clock: schedules, backup times and retention), with a
day the host was down in between. Debian package faketime; CI installs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKETIME = shutil.which("faketime")
CONFIG = '[blockvault]\nchunk_size = 262144\ntimezone = "UTC"\n'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        FAKETIME is None, reason="faketime not installed (apt-get install faketime)"
    ),
]


def at(home: Path, when: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """`blockvault --home HOME ARGV... --json` with the clock at `when` (UTC)."""
    code = "import sys; from tui.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [FAKETIME, when, sys.executable, "-c", code, "--home", str(home), *argv, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "TZ": "UTC"},
    )


def ok(home: Path, when: str, *argv: str) -> object:
    done = at(home, when, *argv)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_daily_policy_on_successive_days_with_a_missed_day(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG)
    disk = ok(home, "2027-01-04 12:00:00", "disk", "create", "d1", "--size", "1M")
    ok(
        home,
        "2027-01-04 12:00:00",
        "policy",
        "create",
        "nightly",
        "--daily-at",
        "02:00",
        "--disk",
        "d1",
        "--keep-daily",
        "2",
    )

    def run(when: str) -> list[dict]:
        with open(disk["path"], "r+b") as handle:  # the disk changes every day
            handle.write(os.urandom(200_000))
        outcomes = ok(home, when, "policy", "run")

        return [o for o in outcomes if o.get("disk")]

    assert run("2027-01-04 23:00:00") == []  # created after the day's slot: nothing due
    assert len(run("2027-01-05 02:30:00")) == 1  # the slot of the 5th
    assert run("2027-01-05 09:00:00") == []  # that slot ran already
    assert len(run("2027-01-06 02:01:00")) == 1
    # the host was down on the 7th and 8th: the missed slots run once, at the next start
    assert len(run("2027-01-09 08:00:00")) == 1
    assert run("2027-01-09 08:10:00") == []
    listed = ok(home, "2027-01-09 08:20:00", "backup", "list", "--disk", "d1")
    days = sorted(b["created_at"][:10] for b in listed)
    assert days == ["2027-01-06", "2027-01-09"], "keep-daily 2 kept the two newest days"
    shown = ok(home, "2027-01-09 08:20:00", "policy", "show", "nightly")
    assert shown["next_run_at"].startswith("2027-01-10T02:00")
