"""Layer boundaries: import-linter's contracts (pyproject.toml) hold, and the engine imports
without Textual or a front in a fresh interpreter (Harlequin's hygiene test)."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import core

ROOT = Path(__file__).resolve().parents[1]


def core_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(core.__path__, "core.") if not m.ispkg)


@pytest.mark.slow
def test_core_never_imports_textual_or_tui() -> None:
    modules = core_modules()
    assert "core.api" in modules and "core.rules.lifecycle" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "", f"core imported: {done.stdout}"


def test_import_linter_contracts_hold() -> None:
    """Layers point down, fronts use the façade, bytes never open the catalog."""
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert tool, "import-linter is a test dependency: pip install -e '.[test]'"
    done = subprocess.run([tool, "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
