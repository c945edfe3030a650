"""Write docs/configuration.md from core/base/config.py (every config.toml key and every
environment variable); tests/test_cli_contract.py fails when the file is out of date."""

from __future__ import annotations

from pathlib import Path

from core.base.config import config_reference

TARGET = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

if __name__ == "__main__":
    TARGET.write_text(config_reference())
    print(f"wrote {TARGET}")
