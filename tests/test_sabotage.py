"""Every named sabotage in scripts/sabotage.py (one rule broken on purpose) fails its tests.

The script copies the repository, breaks one rule at a time and runs the tests that claim
it; this test runs the script so that CI runs it with the whole suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ledger import Ledger, ledger_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_sabotage_is_caught(fault_ledger: Ledger) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sabotage.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=880,
    )
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    tail = result.stdout.strip().splitlines()[-1:]
    ledger_dir().mkdir(parents=True, exist_ok=True)
    (ledger_dir() / "sabotage.md").write_text("\n".join([*table, "", *tail]) + "\n")
    rows = [line.split("|")[1:3] for line in table if line.startswith("| ")]
    for name, outcome in rows[1:]:  # after the header
        if "control" not in name:
            fault_ledger.record("sabotage", detected=outcome.strip() == "CAUGHT", note=name.strip())
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "every one caught" in result.stdout
