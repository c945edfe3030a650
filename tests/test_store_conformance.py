"""One conformance suite every object store passes (restic's backend/test/suite.go), plus
fault tests for the S3 path through a fault-injecting proxy in front of real SeaweedFS.

Stores under test: LocalStore; S3Store on SeaweedFS (wrapped in RetryingStore, as
`open_store` returns it); and the same behind a FaultProxy that keeps injecting 503s,
resets, lost acknowledgements and flipped response bytes — every test must still pass.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.base.errors import ObjectMissing, StoreError, UserError
from core.stores.base import ObjectInfo, ObjectStore
from core.stores.factory import open_store, parse_s3_url
from core.stores.local import TEMP_PREFIX, InvalidKey, LocalStore
from core.stores.retry import RetryEvent, RetryingStore
from core.stores.s3 import S3Store
from tests.support.faultproxy import FaultProxy, Rule
from tests.support.ledger import Ledger
from tests.support.seaweed import S3Server
from tests.test_backup_reliability import caught as raised

MiB = 1 << 20
LOCK_BUCKET = "conformance-object-lock"


def _chaos(proxy: FaultProxy) -> None:
    """Background faults on a schedule, about one request in eight (`seen` offsets make the
    first ones come early, so even short tests meet some).
    """
    proxy.add(Rule("error", None, every=23, seen=21))
    proxy.add(Rule("error", None, status=500, code="InternalError", every=41, seen=36))
    proxy.add(Rule("reset", None, every=31, seen=27))
    proxy.add(Rule("drop_response", None, every=37, seen=32))
    proxy.add(Rule("corrupt_response", None, method="GET", exclude="list-type=", every=9, seen=7))


def record_injected(
    ledger: Ledger,
    proxy: FaultProxy,
    noticed: int,
    *,
    intact: bool,
    silent: bool = False,
    note: str = "",
) -> None:
    """One fault-ledger entry per fault the proxy injected. A flipped response byte is a
    corruption (in transit), the rest network faults. `noticed` is how many the client saw
    (its retries); any shortfall is charged to the flipped bytes first, the faults that
    could go unseen."""
    faults = sorted(proxy.injected.elements(), key=lambda kind: kind != "corrupt_response")
    missed = max(0, len(faults) - noticed)
    for n, kind in enumerate(faults):
        ledger.record(
            "corrupt" if kind == "corrupt_response" else "network",
            detected=n >= missed,
            data_intact=intact,
            silent_corruption=silent,
            note=f"{kind}: {note}" if note else kind,
        )


@pytest.fixture(
    params=[
        "local",
        pytest.param("s3", marks=pytest.mark.slow),
        pytest.param("s3-faulty", marks=pytest.mark.slow),
        pytest.param("s3-object-lock", marks=pytest.mark.slow),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "vault")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    prefix = server.fresh_prefix()
    if request.param == "s3":
        s3 = server.store(server.shared_bucket, prefix)
        yield s3
        s3.close()
        return
    if request.param == "s3-object-lock":  # a versioned bucket: deletes go version by version
        s3 = server.store(LOCK_BUCKET, prefix, object_lock="governance")
        s3.inner.ensure_object_lock()  # made once, with Object Lock; then only checked
        yield s3
        s3.close()
        return
    ledger: Ledger = request.getfixturevalue("fault_ledger")
    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        _chaos(proxy)
        # more attempts than the default 5: 16 threads share one fault schedule, so one
        # operation can meet several faults in a row far more often than in real life
        s3 = server.store(
            server.shared_bucket, prefix, endpoint_url=proxy.endpoint_url, attempts=10
        )
        failed_before = request.session.testsfailed
        yield s3
        s3.close()
        # the test's own checks (every round trip byte for byte, every listing) ran before
        # this teardown: pytest counts a failed call before tearing the test down
        passed = request.session.testsfailed == failed_before
        record_injected(
            ledger,
            proxy,
            s3.retries,
            intact=passed,
            silent=not passed and s3.retries < sum(proxy.injected.values()),
            note=f"background chaos under {request.node.name}",
        )
        assert sum(proxy.injected.values()) > 0 or proxy.requests < 2


def listing(store: ObjectStore, prefix: str = "") -> dict[str, int]:
    found: dict[str, int] = {}
    for info in store.list(prefix):
        assert isinstance(info, ObjectInfo)
        assert info.key not in found, f"{info.key} listed twice"
        found[info.key] = info.size
    return found


# -- conformance ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 5 * MiB])
def test_round_trip(store: ObjectStore, size: int) -> None:
    data = os.urandom(size)
    assert store.put(f"obj/{size}", data) is True
    assert store.get(f"obj/{size}") == data
    assert store.exists(f"obj/{size}")
    assert listing(store, "obj/") == {f"obj/{size}": size}


def test_overwrite_replaces(store: ObjectStore) -> None:
    store.put("k", b"first")
    store.put("k", b"second, longer")
    assert store.get("k") == b"second, longer"
    assert listing(store) == {"k": 14}


def test_create_only_never_overwrites(store: ObjectStore) -> None:
    assert store.put("m/manifest", b"original", create_only=True) is True
    assert store.put("m/manifest", b"intruder", create_only=True) is False
    assert store.get("m/manifest") == b"original"
    store.put("plain", b"x")
    assert store.put("plain", b"y", create_only=True) is False
    assert store.get("plain") == b"x"


def test_missing_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        store.get("no/such/key")
    assert not store.exists("no/such/key")
    assert listing(store, "no/") == {}


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.delete("never/there")
    store.put("d/x", b"1")
    store.delete("d/x")
    store.delete("d/x")
    assert not store.exists("d/x")
    with pytest.raises(ObjectMissing):
        store.get("d/x")
    assert listing(store) == {}


def test_list_by_prefix_with_sizes_and_mtimes(store: ObjectStore) -> None:
    before = time.time()
    objects = {"a/1": b"1", "a/2": b"22", "a/sub/3": b"333", "ab/4": b"4444", "b/5": b""}
    for key, data in objects.items():
        store.put(key, data)
    everything = {k: len(v) for k, v in objects.items()}
    assert listing(store) == everything
    assert listing(store, "a/") == {"a/1": 1, "a/2": 2, "a/sub/3": 3}
    assert listing(store, "a") == {"a/1": 1, "a/2": 2, "a/sub/3": 3, "ab/4": 4}
    assert listing(store, "a/sub/") == {"a/sub/3": 3}
    assert listing(store, "b/5") == {"b/5": 0}
    assert listing(store, "c") == {}
    for info in store.list():
        assert before - 120 < info.mtime < time.time() + 120  # server clock = ours, on loopback


def test_a_prefix_is_not_an_object(store: ObjectStore) -> None:
    store.put("dir/child", b"1")
    with pytest.raises(ObjectMissing):
        store.get("dir")
    assert not store.exists("dir")
    store.delete("dir")
    assert store.get("dir/child") == b"1"
    assert listing(store) == {"dir/child": 1}


@pytest.mark.slow
def test_many_keys_paginate(store: ObjectStore) -> None:
    """More keys than one S3 list page (1000)."""
    keys = [f"many/{i % 7}/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put(k, k.encode()), keys))
    found = listing(store, "many/")
    assert sorted(found) == sorted(keys)
    assert all(size == len(key) for key, size in found.items())
    assert len(listing(store, "many/3/")) == len([k for k in keys if k.startswith("many/3/")])


@pytest.mark.slow
def test_concurrent_puts_and_gets(store: ObjectStore) -> None:
    def worker(n: int) -> None:
        for i in range(12):
            key = f"conc/{n}/{i}"
            data = secrets.token_bytes(1000 + n * 31 + i)
            store.put(key, data)
            assert store.get(key) == data
            assert store.exists(key)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(worker, range(16)))
    assert len(listing(store, "conc/")) == 16 * 12


@pytest.mark.slow
def test_concurrent_create_only_has_one_winner(store: ObjectStore, fault_ledger: Ledger) -> None:
    # 8 writers: SeaweedFS serialises conditional PUTs on one key with 1 s lock back-offs
    payloads = [f"writer {n}".encode() for n in range(8)]
    barrier = threading.Barrier(8)

    def attempt(data: bytes) -> bool:
        barrier.wait()
        return store.put("race/manifest", data, create_only=True)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, payloads))
    stored = store.get("race/manifest")
    winners = [payload for payload, won in zip(payloads, results, strict=True) if won]
    fault_ledger.record(
        "concurrency",
        detected=len(winners) == 1,  # seven writers were told the key was taken
        data_intact=winners == [stored],
        silent_corruption=len(winners) > 1,  # a writer told "written" whose bytes are gone
        note="8 create-only PUTs of one key at once",
    )
    assert results.count(True) == 1, results
    assert stored == payloads[results.index(True)]


ODD_KEYS = [
    "with space/and+plus",
    "unicode/ünïcødé-€-日本",
    "query/a=b&c?d#e",
    "percent/%20%2F%zz",
    "punct/~tilde;semi,comma:colon@at!bang$dollar'quote(paren)[br]{brace}*star",
    "dots/..a/.b/c..",
    ".hidden/.x",
    "dash-_under/UPPER.lower",
]


def test_odd_but_legal_keys(store: ObjectStore) -> None:
    for n, key in enumerate(ODD_KEYS):
        store.put(key, f"{n}".encode())
    for n, key in enumerate(ODD_KEYS):
        assert store.get(key) == f"{n}".encode(), key
        assert store.exists(key)
    assert listing(store) == {k: len(str(n)) for n, k in enumerate(ODD_KEYS)}
    assert listing(store, "unicode/ü") == {ODD_KEYS[1]: 1}
    for key in ODD_KEYS:
        store.delete(key)
    assert listing(store) == {}


INVALID_KEYS = ["", "/abs", "a//b", "../escape", "a/../../b", "a/./b", "trailing/", "nul\x00"]
QUICK_INVALID_KEYS = {"", "../escape", "nul\x00"}  # the rest run with the slow tests


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(k, marks=() if k in QUICK_INVALID_KEYS else pytest.mark.slow)
        for k in INVALID_KEYS
    ],
)
def test_invalid_keys_rejected(store: ObjectStore, key: str, fault_ledger: Ledger) -> None:
    operations = {
        "put": lambda: store.put(key, b"x"),
        "create-only put": lambda: store.put(key, b"x", create_only=True),
        "get": lambda: store.get(key),
        "exists": lambda: store.exists(key),
        "delete": lambda: store.delete(key),
    }
    errors = {name: raised(InvalidKey, op) for name, op in operations.items()}
    listed = raised(InvalidKey, lambda: list(store.list("../")))
    nothing_stored = listing(store) == {}
    for name, error in [*errors.items(), ("list ../", listed)]:
        fault_ledger.record(
            "hostile",
            detected=isinstance(error, InvalidKey),
            data_intact=nothing_stored,
            note=f"{name} of the key {key!r}",
        )
    for error in errors.values():
        assert isinstance(error, InvalidKey)
        assert isinstance(error, ValueError) and isinstance(error, StoreError)
    assert isinstance(listed, InvalidKey)


# -- LocalStore specifics -----------------------------------------------------------------


def test_local_leaves_no_temp_files_and_hides_strays(tmp_path: Path, fault_ledger: Ledger) -> None:
    store = LocalStore(tmp_path)
    store.put("x/y", b"data")
    store.put("x/y", b"more", create_only=True)
    store.put("x/y", b"again")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["y"]
    (tmp_path / "x" / f"{TEMP_PREFIX}crashed").write_bytes(b"half")  # left by a crash
    listed = listing(store)
    named = raised(InvalidKey, lambda: store.put(f"x/{TEMP_PREFIX}crashed", b""))
    fault_ledger.record(
        "kill",
        detected=listed == {"x/y": 5} and isinstance(named, InvalidKey),  # hidden, not a key
        data_intact=store.get("x/y") == b"again",
        note="a half-written temp file left by a crash beside an object",
    )
    assert listed == {"x/y": 5}
    assert isinstance(named, InvalidKey)


def test_local_keys_stay_inside_root(tmp_path: Path, fault_ledger: Ledger) -> None:
    store = LocalStore(tmp_path / "vault")
    (tmp_path / "secret").write_bytes(b"outside")
    read = raised(InvalidKey, lambda: store.get("../secret"))
    written = raised(InvalidKey, lambda: store.put("../secret", b"overwritten"))
    outside = (tmp_path / "secret").read_bytes()
    for error, note in ((read, "get ../secret"), (written, "put ../secret")):
        fault_ledger.record(
            "hostile",
            detected=isinstance(error, InvalidKey),
            data_intact=outside == b"outside",
            note=note,
        )
    assert isinstance(read, InvalidKey)
    assert isinstance(written, InvalidKey)
    assert outside == b"outside"


def test_local_os_errors_are_store_errors(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("file", b"x")
    with pytest.raises(StoreError) as caught:
        store.put("file/below", b"y")  # a path component is a file
    assert not caught.value.transient
    assert listing(store) == {"file": 1}


# -- S3 faults through the proxy -------------------------------------------------------------


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", s3_server.port)) as p:
        yield p


@pytest.fixture
def faulty(s3_server: S3Server, proxy: FaultProxy) -> Iterator[RetryingStore]:
    """RetryingStore(S3Store) through the proxy, with quick backoff."""
    store = s3_server.store(
        s3_server.shared_bucket, s3_server.fresh_prefix(), endpoint_url=proxy.endpoint_url
    )
    assert isinstance(store, RetryingStore)
    yield store
    store.close()


def exception_texts(exc: BaseException) -> list[str]:
    """The message, repr and traceback of an exception and of every chained cause."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        texts += [str(cause), repr(cause), getattr(cause, "response", "").__repr__()]
        cause = cause.__cause__ or cause.__context__
    return texts


def holds_secret(exc: BaseException, *secrets_: str) -> bool:
    return any(secret in text for text in exception_texts(exc) for secret in secrets_)


def assert_no_secret(exc: BaseException, *secrets_: str) -> None:
    """Neither the message, repr, traceback nor any chained cause holds a secret."""
    texts = exception_texts(exc)
    for secret in secrets_:
        for text in texts:
            assert secret not in text


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SlowDown"), pytest.param(500, "InternalError", marks=pytest.mark.slow)],
)
def test_server_errors_are_retried(
    faulty: RetryingStore, proxy: FaultProxy, status: int, code: str, fault_ledger: Ledger
) -> None:
    proxy.error(status, code, count=3)
    stored = faulty.put("k", b"value")
    proxy.error(status, code, count=2, method="GET")
    got = faulty.get("k")
    proxy.error(status, code, count=1, method="HEAD")
    there = faulty.exists("k")
    record_injected(
        fault_ledger,
        proxy,
        faulty.retries,
        intact=stored is True and got == b"value" and there,
        silent=got != b"value",
        note=f"{status} {code} on PUT, GET and HEAD",
    )
    assert stored is True
    assert got == b"value"
    assert there
    assert proxy.injected["error"] == 6 and faulty.retries == 6


def test_resets_are_retried(faulty: RetryingStore, proxy: FaultProxy, fault_ledger: Ledger) -> None:
    proxy.reset(count=2)
    faulty.put("k", b"v")
    proxy.reset(count=2, method="GET")
    got = faulty.get("k")
    proxy.reset(method="DELETE")
    faulty.delete("k")
    gone = not faulty.exists("k")
    record_injected(
        fault_ledger,
        proxy,
        faulty.retries,
        intact=got == b"v" and gone,
        silent=got != b"v",
        note="connections reset on PUT, GET and DELETE",
    )
    assert got == b"v"
    assert gone
    assert proxy.injected["reset"] == 5


@pytest.mark.slow
def test_stalled_request_times_out_and_is_retried(
    s3_server: S3Server, proxy: FaultProxy, fault_ledger: Ledger
) -> None:
    store = s3_server.store(
        s3_server.shared_bucket,
        s3_server.fresh_prefix(),
        endpoint_url=proxy.endpoint_url,
        read_timeout=0.3,
    )
    store.put("k", b"v")
    proxy.stall(1.0, method="GET")
    started = time.monotonic()
    got = store.get("k")
    seconds = time.monotonic() - started
    record_injected(
        fault_ledger,
        proxy,
        store.retries,
        intact=got == b"v",
        silent=got != b"v",
        note=f"a GET stalled 1 s against a 0.3 s read timeout (answered in {seconds:.2f} s)",
    )
    assert got == b"v"
    assert seconds < 1.0
    assert proxy.injected["stall"] == 1 and store.retries == 1


@pytest.mark.slow
def test_lost_ack_on_create_only_put_is_success(
    faulty: RetryingStore, proxy: FaultProxy, fault_ledger: Ledger
) -> None:
    proxy.drop_response(method="PUT")
    stored = faulty.put("manifests/bk-1", b"manifest", create_only=True)
    got = faulty.get("manifests/bk-1")
    record_injected(
        fault_ledger,
        proxy,
        faulty.retries,
        intact=stored is True and got == b"manifest",
        silent=stored is not True,  # written, yet reported as someone else's
        note="the answer to a create-only PUT lost",
    )
    assert stored is True
    assert got == b"manifest"
    assert proxy.injected["drop_response"] == 1
    # the server did complete the first PUT: the retry was answered "412 exists"
    assert [status for m, _, status in proxy.log if m == "PUT"] == ["drop_response", "412"]


@pytest.mark.slow
def test_lost_ack_does_not_hide_someone_elses_object(
    faulty: RetryingStore, proxy: FaultProxy, fault_ledger: Ledger
) -> None:
    faulty.put("manifests/bk-2", b"theirs")
    proxy.reset(method="PUT")  # our attempt fails before reaching the server
    ours = faulty.put("manifests/bk-2", b"ours", create_only=True)
    got = faulty.get("manifests/bk-2")
    record_injected(
        fault_ledger,
        proxy,
        faulty.retries,
        intact=ours is False and got == b"theirs",
        silent=ours is True,  # told "written" while the key holds someone else's bytes
        note="a create-only PUT reset, retried onto an existing key",
    )
    assert ours is False
    assert got == b"theirs"


def test_lost_ack_on_plain_put_and_delete(
    faulty: RetryingStore, proxy: FaultProxy, fault_ledger: Ledger
) -> None:
    proxy.drop_response(method="PUT")
    stored = faulty.put("k", b"v")
    got = faulty.get("k")
    proxy.drop_response(method="DELETE")
    faulty.delete("k")
    gone = not faulty.exists("k")
    record_injected(
        fault_ledger,
        proxy,
        faulty.retries,
        intact=stored is True and got == b"v" and gone,
        silent=got != b"v",
        note="the answers to a PUT and a DELETE lost",
    )
    assert stored is True
    assert got == b"v"
    assert gone


def test_flipped_response_byte_is_detected_and_refetched(
    faulty: RetryingStore, proxy: FaultProxy, fault_ledger: Ledger
) -> None:
    data = os.urandom(MiB)
    faulty.put("chunk", data)
    proxy.corrupt_response()
    got = faulty.get("chunk")
    record_injected(
        fault_ledger,
        proxy,
        faulty.retries,
        intact=got == data,
        silent=got != data,
        note="one byte of a 1 MiB GET flipped in transit",
    )
    assert got == data
    assert proxy.injected["corrupt_response"] == 1 and faulty.retries == 1


@pytest.mark.slow
def test_flipped_byte_without_retries_is_a_transient_error(
    s3_server: S3Server, proxy: FaultProxy, fault_ledger: Ledger
) -> None:
    raw = s3_server.store(
        s3_server.shared_bucket,
        s3_server.fresh_prefix(),
        endpoint_url=proxy.endpoint_url,
        retry=False,
    )
    raw.put("chunk", b"payload" * 100)
    proxy.corrupt_response()
    got: list[bytes] = []
    error = raised(StoreError, lambda: got.append(raw.get("chunk")))
    fault_ledger.record(
        "corrupt",
        detected=error is not None and "CRC32 mismatch" in str(error),
        data_intact=got in ([], [b"payload" * 100]),
        silent_corruption=got not in ([], [b"payload" * 100]),
        note="one byte of a GET flipped in transit, no retries",
    )
    assert isinstance(error, StoreError) and "CRC32 mismatch" in str(error)
    assert error.transient


@pytest.mark.slow
def test_listing_survives_faults_midway(
    faulty: RetryingStore, proxy: FaultProxy, fault_ledger: Ledger
) -> None:
    keys = [f"l/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: faulty.put(k, b"x"), keys))
    proxy.add(Rule("reset", 1, method="GET", path="list-type=", every=2))  # page 2 of 2
    listed = sorted(listing(faulty, "l/"))
    record_injected(
        fault_ledger,
        proxy,
        faulty.retries,
        intact=listed == keys,
        silent=listed != keys,  # a listing short of keys would let gc or import miss them
        note="the second page of a listing reset",
    )
    assert listed == keys
    assert proxy.injected["reset"] == 1


@pytest.mark.slow
def test_attempts_are_bounded(s3_server: S3Server, proxy: FaultProxy, fault_ledger: Ledger) -> None:
    store = RetryingStore(
        S3Store(
            s3_server.shared_bucket,
            s3_server.fresh_prefix(),
            endpoint_url=proxy.endpoint_url,
            region=s3_server.region,
        ),
        attempts=4,
        base_delay=0.01,
        max_delay=0.05,
    )
    proxy.error(count=None)  # a server that never recovers
    started = time.monotonic()
    put_error = raised(StoreError, lambda: store.put("k", b"v"))
    put_requests = proxy.requests
    errors = proxy.injected["error"]
    proxy.clear()
    proxy.reset(count=None)
    get_error = raised(StoreError, lambda: store.get("k"))
    get_requests = proxy.requests
    get_resets = proxy.injected["reset"]
    list_error = raised(StoreError, lambda: list(store.list()))
    seconds = time.monotonic() - started
    resets = proxy.injected["reset"]
    # nothing is stored here: what counts is that every call gave up with an error, in time
    for count, error, note in (
        (errors, put_error, "503 for ever on PUT"),
        (get_resets, get_error, "reset for ever on GET"),
        (resets - get_resets, list_error, "reset for ever on LIST"),
    ):
        for _ in range(count):
            fault_ledger.record(
                "network",
                detected=error is not None and seconds < 10,
                note=f"{note}: gave up after {seconds:.1f} s",
            )
    fault_ledger.secrets(
        scanned=1, hits=int(put_error is not None and holds_secret(put_error, s3_server.secret_key))
    )
    assert isinstance(put_error, StoreError) and "gave up after 4 attempts" in str(put_error)
    assert put_error.transient
    assert put_requests == 4
    assert get_error is not None
    assert get_requests == 8
    assert list_error is not None
    assert seconds < 10
    assert_no_secret(put_error, s3_server.secret_key)


def test_fallback_when_conditional_put_is_not_implemented(
    s3_server: S3Server, proxy: FaultProxy, fault_ledger: Ledger
) -> None:
    """A service answering If-None-Match with 501 gets head-then-put instead."""
    store = s3_server.store(
        s3_server.shared_bucket, s3_server.fresh_prefix(), endpoint_url=proxy.endpoint_url
    )
    proxy.error(501, "NotImplemented", method="PUT")
    first = store.put("m", b"first", create_only=True)
    second = store.put("m", b"second", create_only=True)
    got = store.get("m")
    fell_back = [m for m, _, _ in proxy.log][:3] == ["PUT", "HEAD", "PUT"]
    record_injected(
        fault_ledger,
        proxy,
        int(fell_back),  # noticed: it fell back to HEAD then PUT (no retry)
        intact=first is True and second is False and got == b"first",
        silent=second is True or got != b"first",
        note="a service answering conditional PUTs with 501",
    )
    assert first is True
    assert second is False
    assert got == b"first"
    assert fell_back
    assert store.retries == 0


@pytest.mark.slow
def test_when_supported_checksums_through_the_proxy(
    s3_server: S3Server, proxy: FaultProxy, fault_ledger: Ledger
) -> None:
    """boto3's default flexible checksums (aws-chunked bodies, CRC headers) also work."""
    store = s3_server.store(
        s3_server.shared_bucket,
        s3_server.fresh_prefix(),
        endpoint_url=proxy.endpoint_url,
        request_checksum="when_supported",
    )
    data = os.urandom(5 * MiB)
    assert store.put("big", data, create_only=True) is True
    assert store.put("big", b"other", create_only=True) is False
    proxy.corrupt_response()
    got = store.get("big")
    proxy.drop_response(method="PUT")
    small = store.put("small", b"s", create_only=True)
    small_got = store.get("small")
    record_injected(
        fault_ledger,
        proxy,
        store.retries,
        intact=got == data and small is True and small_got == b"s",
        silent=got != data,
        note="flexible checksums: a flipped GET byte, a lost PUT answer",
    )
    assert got == data
    assert small is True
    assert small_got == b"s"
    assert proxy.injected == {"corrupt_response": 1, "drop_response": 1}


def test_wrong_secret_is_not_retried_and_not_leaked(
    s3_server: S3Server, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, fault_ledger: Ledger
) -> None:
    sentinel = "SENTINEL-" + secrets.token_hex(12)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", sentinel)
    store = s3_server.store(
        s3_server.shared_bucket, s3_server.fresh_prefix(), endpoint_url=proxy.endpoint_url
    )
    for op in (lambda: store.put("k", b"v"), store.list, lambda: store.get("k")):
        with pytest.raises(StoreError) as caught:
            result = op()
            if isinstance(result, Iterator):
                list(result)
        fault_ledger.secrets(
            scanned=1, hits=int(holds_secret(caught.value, sentinel, s3_server.secret_key))
        )
        assert not caught.value.transient
        assert "access denied" in str(caught.value) and "check credentials" in str(caught.value)
        assert "s3://" in str(caught.value)
        assert_no_secret(caught.value, sentinel, s3_server.secret_key)
    assert proxy.requests == 3  # one request each: nothing retried
    assert store.retries == 0


@pytest.mark.slow
def test_unknown_access_key_and_missing_credentials(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, fault_ledger: Ledger
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN")
    store = s3_server.store(s3_server.shared_bucket, "x")
    with pytest.raises(StoreError, match="access denied") as caught:
        store.exists("k")
    fault_ledger.secrets(scanned=1, hits=int(holds_secret(caught.value, s3_server.secret_key)))
    assert not caught.value.transient
    assert_no_secret(caught.value, s3_server.secret_key)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = s3_server.store(s3_server.shared_bucket, "x")
    with pytest.raises(StoreError, match="no usable AWS credentials") as caught:
        store.get("k")
    assert not caught.value.transient


@pytest.mark.slow
def test_secret_never_in_any_store_exception(
    s3_server: S3Server, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, fault_ledger: Ledger
) -> None:
    """Every failure path we can provoke, checked against the live secret."""
    secret = s3_server.secret_key
    store = s3_server.store(
        s3_server.shared_bucket,
        s3_server.fresh_prefix(),
        endpoint_url=proxy.endpoint_url,
        attempts=2,
    )
    missing_bucket = s3_server.store("no-such-bucket-" + secrets.token_hex(3), "p")
    failures: list[Callable[[], object]] = [
        lambda: store.get("absent"),
        lambda: missing_bucket.get("k"),
        lambda: missing_bucket.put("k", b"v"),
        lambda: list(missing_bucket.list()),
    ]
    injected = [
        ("network", "503 for ever", lambda: proxy.error(count=None)),
        ("network", "reset for ever", lambda: proxy.reset(count=None)),
        ("network", "403 AccessDenied", lambda: proxy.error(403, "AccessDenied")),
        (
            "corrupt",
            "every GET byte-flipped in transit",
            lambda: proxy.corrupt_response(count=None),
        ),
    ]
    for _, _, fault in injected:
        failures.append(lambda fault=fault: (proxy.clear(), fault(), store.get("present")))
    proxy.clear()
    store.put("present", b"v")
    errors = [raised(StoreError, failure) for failure in failures]
    proxy.clear()
    fault_ledger.secrets(
        scanned=len(errors), hits=sum(e is not None and holds_secret(e, secret) for e in errors)
    )
    present = store.get("present") == b"v"  # what was stored before them all is still whole
    for (kind, note, _), error in zip(injected, errors[-len(injected) :], strict=True):
        fault_ledger.record(
            kind,
            detected=isinstance(error, StoreError),
            data_intact=present,
            note=f"{note}: a GET ends in an error",
        )
    seen = 0
    for error in errors:
        assert isinstance(error, StoreError)
        assert_no_secret(error, secret)
        seen += 1
    assert present
    assert seen == len(failures)
    with pytest.raises(StoreError) as missing:
        missing_bucket.get("k")
    assert "does not exist" in str(missing.value) and not missing.value.transient


# -- RetryingStore logic (a scripted inner store; no network) -----------------------------


class Flaky(LocalStore):
    """A LocalStore whose next operations fail as scripted."""

    def __init__(self, root: Path, script: list[StoreError]) -> None:
        super().__init__(root)
        self.script = script
        self.calls = 0

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        self.calls += 1
        if self.script:
            raise self.script.pop(0)
        return super().get(key, max_bytes=max_bytes)


def test_retry_only_transient_and_reports(tmp_path: Path, fault_ledger: Ledger) -> None:
    events: list[RetryEvent] = []
    delays: list[float] = []
    inner = Flaky(tmp_path, [StoreError("busy", transient=True)] * 2)
    inner.put("k", b"v")
    store = RetryingStore(
        inner, base_delay=1.0, max_delay=1.5, on_retry=events.append, sleep=delays.append
    )
    got = store.get("k")
    for n in range(2):
        fault_ledger.record(
            "network",
            detected=len(events) > n,  # reported through on_retry, then retried
            data_intact=got == b"v",
            silent_corruption=got != b"v",
            note="a scripted transient store error",
        )
    assert got == b"v"
    assert [e.attempt for e in events] == [1, 2] and inner.calls == 3
    assert all(0 <= d <= 1.5 for d in delays) and len(delays) == 2
    inner.script = [StoreError("denied")]
    denied = raised(StoreError, lambda: store.get("k"))
    fault_ledger.record(
        "network",
        detected=denied is not None and "denied" in str(denied) and inner.calls == 4,
        data_intact=LocalStore.get(inner, "k") == b"v",  # (not counted as a call)
        note="a scripted permanent store error (not retried)",
    )
    assert denied is not None and "denied" in str(denied)
    assert inner.calls == 4  # not retried
    with pytest.raises(ObjectMissing):
        store.get("absent")


# -- factory -----------------------------------------------------------------------------


def test_parse_s3_url(fault_ledger: Ledger) -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    for bad in ["bucket/x", "http://bucket/x", "s3://", "s3:///x", "s3://b", "s3://bu/../x"]:
        with pytest.raises(UserError):
            parse_s3_url(bad)
    with pytest.raises(UserError) as refused:
        parse_s3_url("s3://AKID:topsecret@bucket/x")
    fault_ledger.secrets(scanned=1, hits=int("topsecret" in str(refused.value)))
    assert "topsecret" not in str(refused.value)


def test_open_store(tmp_path: Path, s3_server: S3Server) -> None:
    local = open_store({"kind": "local", "path": str(tmp_path / "v")})
    assert isinstance(local, RetryingStore) and isinstance(local.inner, LocalStore)
    local.put("a", b"1")
    assert local.location == str(tmp_path / "v")
    spec = {
        "kind": "s3",
        "bucket": s3_server.shared_bucket,
        "prefix": "factory",
        "region": s3_server.region,
        "endpoint_url": s3_server.endpoint_url,
        "profile": None,
        "addressing_style": "path",
        "request_checksum": "when_supported",
    }
    s3 = open_store(spec)
    assert s3.location == f"s3://{s3_server.shared_bucket}/factory"
    s3.put("a", b"1", create_only=True)
    assert s3.get("a") == b"1"
    for bad in ({"kind": "ftp"}, {**spec, "addressing_style": "diagonal"}, {"kind": "local"}):
        with pytest.raises(UserError):
            open_store(bad)
    with pytest.raises(UserError, match="profile"):
        open_store({**spec, "profile": "no-such-profile"})


def test_bad_s3_settings_are_user_errors_without_secrets(fault_ledger: Ledger) -> None:
    with pytest.raises(UserError) as refused:
        S3Store("bucket", endpoint_url="not a url://AKID:topsecret@host")
    fault_ledger.secrets(scanned=1, hits=int("topsecret" in str(refused.value)))
    assert "topsecret" not in str(refused.value)
    with pytest.raises(UserError, match="region"):
        S3Store("bucket", region="bad region!")
    with pytest.raises(UserError, match="request checksum"):
        S3Store("bucket", request_checksum="always")


@pytest.mark.slow
def test_ensure_bucket(s3_server: S3Server) -> None:
    name = "ensure-" + secrets.token_hex(4)
    store = S3Store(name, "p", endpoint_url=s3_server.endpoint_url, region=s3_server.region)
    assert store.ensure_bucket() is True
    assert store.ensure_bucket() is False
    store.put("k", b"v")
    assert store.location == f"s3://{name}/p"
