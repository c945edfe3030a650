"""A throwaway PostgreSQL cluster for the suite: Debian's binaries, initdb into a temporary
folder, pg_ctl on a free loopback port (its unix socket in that folder), trust auth for the
loopback only, stopped and removed at the end. Each test gets a database of its own.

initdb and postgres refuse to run as root: as root the cluster runs as the `postgres` user
(Debian's package makes it); as anyone else, as that user.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: where Debian's postgresql package puts the server binaries (newest version first)
BIN_GLOB = "/usr/lib/postgresql/*/bin"
ENV_BIN = "BLOCKVAULT_PG_BIN"  # another folder holding initdb, pg_ctl and postgres
#: fast and unsafe: a cluster that lives for one test run never needs to survive a crash
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


def find_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    candidates = [os.environ.get(ENV_BIN, "")]
    candidates += sorted(glob.glob(BIN_GLOB), key=_version_key, reverse=True)
    if found := shutil.which("pg_ctl"):
        candidates.append(str(Path(found).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    return None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def run_as() -> pwd.struct_passwd | None:
    """The user the cluster runs as: `postgres` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def unavailable() -> str | None:
    """Why no cluster can be started here (a skip reason), or None."""
    if find_bin() is None:
        return (
            "PostgreSQL server binaries not found (apt-get install postgresql, or set "
            f"{ENV_BIN} to the folder holding initdb and pg_ctl)"
        )
    if os.geteuid() == 0 and run_as() is None:
        return "running as root and no `postgres` user to run the PostgreSQL cluster as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Cluster:
    """A running cluster: `url(db)` for SQLAlchemy, `create_database()` for a fresh one."""

    root: Path
    port: int
    bin: Path
    user: pwd.struct_passwd | None
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, *statements: str, database: str = "postgres") -> None:
        """Run statements outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        ) as connection:
            for statement in statements:
                connection.execute(statement)  # type: ignore[arg-type]

    def create_database(self, prefix: str = "bv") -> str:
        """A new, empty database (a copy of template1); its SQLAlchemy URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([str(self.bin / "pg_ctl"), "-D", str(self.data), *args], self.user, check)


def _run(
    argv: list[str], user: pwd.struct_passwd | None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
        env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
        check=False,
        **ids,  # type: ignore[arg-type]
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    """initdb + pg_ctl start; on exit pg_ctl stop (immediate) and the folder removed."""
    binaries = find_bin()
    assert binaries is not None, unavailable()
    user = run_as()
    root = Path(tempfile.mkdtemp(prefix="blockvault-pg-"))  # not under pytest's 0700 tmp
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = Cluster(root, free_port(), binaries, user)
    _run(
        [
            str(binaries / "initdb"),
            "-D",
            str(cluster.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ],
        user,
    )
    # trust, but only on the socket in our folder and the loopback (initdb's default hba)
    options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-c port={cluster.port}",
            f"-c unix_socket_directories={root}",
            *(f"-c {key}={value}" for key, value in SETTINGS.items()),
        ]
    )
    try:
        cluster.pg_ctl("start", "-w", "-t", "60", "-l", str(root / "server.log"), "-o", options)
        yield cluster
    finally:
        cluster.pg_ctl("stop", "-m", "immediate", "-w", check=False)
        shutil.rmtree(root, ignore_errors=True)
