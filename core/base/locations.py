"""Where blockvault keeps things: platformdirs by default, everything under BLOCKVAULT_HOME if set."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "blockvault"


@dataclass(frozen=True)
class Locations:
    """All paths in one place; `home` set means config, catalog, pool and vault live under it."""

    config_dir: Path
    data_dir: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None) -> Locations:
        """Flag > BLOCKVAULT_HOME > platformdirs (XDG)."""
        home = home or os.environ.get("BLOCKVAULT_HOME")
        if home:
            root = Path(home).expanduser().resolve()
            return cls(config_dir=root, data_dir=root)
        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP)),
            data_dir=Path(platformdirs.user_data_dir(APP)),
        )

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def catalog_file(self) -> Path:
        return self.data_dir / "catalog.sqlite"

    @property
    def pool_dir(self) -> Path:
        return self.data_dir / "pool"

    @property
    def scratch_dir(self) -> Path:
        """The pool's scratch area: restore drills write here, nothing else lives here."""
        return self.pool_dir / ".scratch"

    @property
    def default_vault_dir(self) -> Path:
        return self.data_dir / "vault"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def ensure(self) -> None:
        """Create the directories with owner-only permissions."""
        for path in (self.config_dir, self.data_dir, self.pool_dir, self.cache_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
