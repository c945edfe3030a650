"""Every named sabotage in scripts/sabotage.py (one rule broken on purpose) fails its tests.

The script copies the repository, breaks one rule at a time and runs the tests that claim
it; this test runs the script so that CI runs it with the whole suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_sabotage_is_caught() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sabotage.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "every one caught" in result.stdout
