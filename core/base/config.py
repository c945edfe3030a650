"""Settings from the TOML config file (`[blockvault]` in config.toml), each documented in
`DOCS` (docs/configuration.md is generated from it: scripts/export_config_docs.py), and
`describe`: every effective setting with where it came from (`blockvault config show`)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from core.base.errors import UserError
from core.base.host import HOST_ID_RULE, valid_host_id
from core.base.locations import Locations
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


#: what each setting does, for docs/configuration.md and `config show` (one line each)
DOCS: dict[str, str] = {
    "max_snapshots_per_disk": "snapshots a disk may hold (user and safety ones); a snapshot "
    "past it is refused until one is deleted",
    "safety_snapshot_hours": "how long the safety snapshot taken before an overwrite (restore "
    "onto a disk, rollback, reinstall) is kept: the `disk undo` window",
    "chunk_size": "bytes per chunk of a new vault (a multiple of 4096, 64 KiB to 64 MiB); a "
    "vault keeps the size it was made with",
    "workers": "chunks in flight at a time in a backup, restore or verify (default: twice the "
    "cores, 8 to 16)",
    "gc_grace_seconds": "unreferenced chunks younger than this are kept by `vault gc` (a "
    "backup being written may still reference them)",
    "gc_lock_lease_seconds": "how long a vault's gc lock holds without being renewed; a gc "
    "stops deleting after half of it",
    "default_vault": "the vault used when a command names none",
    "timezone": 'the zone schedules are read in, e.g. "Europe/Berlin"; empty: the host\'s',
    "notify_command": "run for each alert with one JSON event on stdin (e.g. a mail or chat "
    "hook); empty: alerts only go to the event log",
    "service_jobs": "jobs `blockvault service` runs at a time",
    "gc_window": 'a schedule ("daily 03:00", "0 3 * * sun") in which the service runs `vault '
    "gc` on every vault; empty: never by itself",
    "change_tracking": "on reflink filesystems, keep a clone of each disk as of its last backup "
    "and read only the chunks that changed; false: read the whole disk each time",
    "host_id": "this host's name in a catalog or vault shared by several hosts; its servers "
    "and disks are recorded under it (BLOCKVAULT_HOST_ID overrides it; empty: the hostname)",
    "job_lease_seconds": "a job whose heartbeat (every second) stopped this long ago is taken "
    "for dead by any host: its claims are released, its partial work discarded or marked",
    "limit_upload": 'bandwidth limit of every job writing to a vault ("20MiB", "50M"; empty or '
    '"0": none), unless its command gives `--limit-upload`',
    "limit_download": 'bandwidth limit of every job reading from a vault ("20MiB"; empty or "0": '
    "none), unless its command gives `--limit-download`",
}

#: settings an environment variable overrides (config show names it as the source)
ENV_OVERRIDES = {"host_id": "BLOCKVAULT_HOST_ID"}

#: environment variables blockvault reads, for docs/configuration.md and `config show`
ENVIRONMENT: dict[str, str] = {
    "BLOCKVAULT_HOME": "keep config, catalog, pool and the default vault under this directory "
    "(as --home)",
    "BLOCKVAULT_CATALOG": "the catalog's SQLAlchemy URL, e.g. postgresql://... (as --catalog)",
    "BLOCKVAULT_PASSPHRASE": "the passphrase of encrypted vaults (never a command-line option)",
    "BLOCKVAULT_PASSPHRASE_<VAULT>": "one vault's own passphrase, taken first "
    "(BLOCKVAULT_PASSPHRASE_OFFSITE for vault offsite)",
    "BLOCKVAULT_HOST_ID": "this host's name in jobs, claims, servers and disks (overrides "
    "`host_id`; default: the hostname)",
    "AWS_PROFILE": "the AWS profile of S3 vaults added without --profile (the standard AWS "
    "chain: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ~/.aws, instance roles)",
    "TZ": "the host's zone, used for schedules when `timezone` is empty",
    "NO_COLOR": "no colours in the console or the CLI",
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
        return cls(**read_file(path))


def read_file(path: Path) -> dict[str, object]:
    """The settings `path` sets (none if it does not exist), each checked: unknown keys, bad
    types and values out of range are user errors naming the file and the key."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text()).get("blockvault", {})
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    known = {f.name: f.type for f in fields(Settings)}
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
    return data


def describe(
    locations: Locations, *, home_source: str, catalog: str, catalog_source: str
) -> list[dict[str, str]]:
    """Every effective setting, its value and where it came from: a flag, an environment
    variable, the config file (its path) or the default."""
    path = locations.config_file
    rows = [
        {"key": "home", "value": str(locations.data_dir), "source": home_source},
        {
            "key": "config_file",
            "value": str(path),
            "source": "exists" if path.exists() else "absent",
        },
        {"key": "catalog", "value": catalog, "source": catalog_source},
    ]
    given = read_file(path)
    effective = Settings(**given)
    for item in fields(Settings):
        value = getattr(effective, item.name)
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        source = str(path) if item.name in given else "default"
        variable = ENV_OVERRIDES.get(item.name)
        if variable and os.environ.get(variable):
            shown, source = os.environ[variable], f"env {variable}"
        rows.append({"key": item.name, "value": shown, "source": source})
    return rows


def _number(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:,}"


def config_reference() -> str:
    """docs/configuration.md: every config.toml key (type, default, range, what it does) and
    every environment variable, from `Settings`, `LIMITS`, `DOCS` and `ENVIRONMENT`."""
    defaults = Settings()
    lines = [
        "# Configuration",
        "",
        "<!-- generated by scripts/export_config_docs.py from core/base/config.py: edit there -->",
        "",
        "Precedence: a command-line flag, then an environment variable, then `config.toml`, then",
        "the default. `blockvault config show` prints every effective setting and where it came",
        "from. `config.toml` lives in the config directory (`~/.config/blockvault/config.toml`, or",
        "`$BLOCKVAULT_HOME/config.toml`); its settings go under `[blockvault]`:",
        "",
        "```toml",
        "[blockvault]",
        "safety_snapshot_hours = 48",
        'gc_window = "daily 03:00"',
        "```",
        "",
        "An unknown key, a value of the wrong type or out of range is refused in one line naming",
        "the file and the key.",
        "",
        "## config.toml keys",
        "",
        "| key | type | default | range | what it does |",
        "|---|---|---|---|---|",
    ]
    for item in fields(Settings):
        default = getattr(defaults, item.name)
        if item.name == "workers":
            default = "2 x cores (8..16)"
        elif isinstance(default, bool):
            default = str(default).lower()
        elif isinstance(default, str):
            default = f'"{default}"'
        low, high = LIMITS.get(item.name, (None, None))
        span = f"{_number(low)}..{_number(high)}" if low is not None else ""
        lines.append(
            f"| `{item.name}` | {item.type} | {default} | {span} | {DOCS.get(item.name, '')} |"
        )
    lines += ["", "## Environment variables", "", "| variable | what it does |", "|---|---|"]
    lines += [f"| `{name}` | {text} |" for name, text in ENVIRONMENT.items()]
    return "\n".join(lines) + "\n"


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
