"""Settings from the TOML config file; CLI flags and environment override it."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from core.base.errors import UserError
from core.base.host import HOST_ID_RULE, valid_host_id
from core.base.ratelimit import parse_rate
from core.base.units import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES

#: ranges a setting must fall in (a typo in config.toml is one clear line, not a traceback)
LIMITS: dict[str, tuple[float, float]] = {
    "max_snapshots_per_disk": (1, 100_000),
    "safety_snapshot_hours": (0, 24 * 365),
    "chunk_size": (MIN_CHUNK_BYTES, MAX_CHUNK_BYTES),
    "workers": (1, 64),
    "gc_grace_seconds": (0, 10 * 365 * 86400),
    "gc_lock_lease_seconds": (1, 86400),
    "service_jobs": (1, 32),
    "job_lease_seconds": (2, 86400),
}


def _fits(kind: str, value: object) -> bool:
    """The field's declared type (annotations are strings here): bool, int, float or str."""
    if kind == "bool" or isinstance(value, bool):
        return kind == "bool" and isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float)
    return isinstance(value, str)


def default_workers() -> int:
    """Chunks in flight: twice the cores, at least 8, at most 16. Transfers wait on the
    network or the disk far more than on the CPU: on 2 cores a 1 GiB restore from SeaweedFS
    took 7.1 s with 4 and 4.8 s with 8 (bench/bench_speed.py); past 16 only contention."""
    return min(16, max(8, 2 * (os.cpu_count() or 2)))


@dataclass(frozen=True)
class Settings:
    """Tunables an admin may set in config.toml under [blockvault]."""

    max_snapshots_per_disk: int = 256
    safety_snapshot_hours: float = 24.0
    chunk_size: int = 4 << 20
    workers: int = field(default_factory=lambda: default_workers())
    gc_grace_seconds: float = 6 * 3600
    gc_lock_lease_seconds: float = 600.0  # a gc stops deleting after half of it
    default_vault: str = "local"
    timezone: str = ""  # schedules' zone, e.g. "Europe/Berlin"; empty: the host's local zone
    notify_command: str = ""  # run with one JSON event on stdin for each alert
    service_jobs: int = 2  # jobs the service runs at a time
    gc_window: str = ""  # a schedule ("daily 03:00", "0 3 * * sun"): the service runs vault gc
    #: on reflink filesystems, keep a clone of each disk as of its last backup per vault and
    #: back up from a fresh clone, reading only the chunks whose extents changed; false: read
    #: the whole disk itself, as without tracking (core/engine/tracking.py)
    change_tracking: bool = True
    #: this host's name in a catalog or vault shared by several hosts (BLOCKVAULT_HOST_ID
    #: overrides it; empty: the hostname). Its servers and disks are recorded under it
    host_id: str = ""
    #: a job whose heartbeat (every second) stopped this long ago is taken for dead by any
    #: host: its claims are released and its partial work discarded or marked
    job_lease_seconds: float = 30.0
    #: bandwidth limits of every job that moves data to / from a vault ("20MiB", "50M";
    #: empty: none), unless its command says otherwise (`--limit-upload`, `--limit-download`)
    limit_upload: str = ""
    limit_download: str = ""

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Read `path` if it exists; unknown keys and bad types are user errors."""
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text()).get("blockvault", {})
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise UserError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
        for key, value in data.items():
            if not _fits(known[key], value):
                raise UserError(
                    f"{path}: setting {key} = {str(value)[:40]!r} is not a valid {known[key]}"
                )
            low, high = LIMITS.get(key, (None, None))
            if low is not None and not low <= value <= high:
                raise UserError(f"{path}: setting {key} must be between {low} and {high}")
        if len(data.get("gc_window", "")) > 200:
            raise UserError(f"{path}: setting gc_window is longer than 200 characters")
        if "host_id" in data and not valid_host_id(data["host_id"]):
            raise UserError(f"{path}: setting host_id {HOST_ID_RULE}")
        for key in ("limit_upload", "limit_download"):
            try:
                parse_rate(data.get(key) or 0)
            except UserError as exc:
                raise UserError(f"{path}: setting {key}: {exc}") from None
        if "chunk_size" in data and data["chunk_size"] % 4096:
            raise UserError(f"{path}: setting chunk_size must be a multiple of 4096")
        return cls(**data)


def load_keys(path: Path) -> dict[str, str]:
    """The console's key map from config.toml's [keys] table: action name -> keys, e.g.
    `snapshot = "S"` or `quit = "q,ctrl+x"` (Textual key names, comma-separated). The console
    checks the action names; here only the shape is."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text()).get("keys", {})
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f'{path}: [keys] must be a table of action = "key"')
    for action, keys in data.items():
        if not isinstance(keys, str) or not keys.strip() or len(keys) > 100:
            raise UserError(f'{path}: keys.{action} must be a key name such as "S" or "f2"')
    return {action: keys.replace(" ", "") for action, keys in data.items()}
