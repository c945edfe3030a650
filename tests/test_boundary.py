"""The engine never imports the console: every core module imports without textual or tui."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import core

ROOT = Path(__file__).resolve().parents[1]


def core_modules() -> list[str]:
    return sorted(f"core.{m.name}" for m in pkgutil.walk_packages(core.__path__) if not m.ispkg) + [
        f"core.stores.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "core" / "stores")])
    ]


def test_core_never_imports_textual_or_tui() -> None:
    modules = core_modules()
    assert "core.service" in modules and "core.lifecycle" in modules
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


def test_fronts_reach_the_engine_through_the_facade_only() -> None:
    """tui/ may import core.service (the façade) and plain data types, nothing that does work."""
    allowed = {
        "core.service",
        "core.errors",
        "core.lifecycle",
        "core.progress",
        "core.units",
        "core.models",
        "core.demo",
    }
    offenders = []
    for path in (ROOT / "tui").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("from", "import") and words[1].startswith("core"):
                module = words[1]
                if module not in allowed:
                    offenders.append(f"{path.name}: {line.strip()}")
    assert offenders == []
