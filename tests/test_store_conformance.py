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
from tests.support.seaweed import S3Server

MiB = 1 << 20


def _chaos(proxy: FaultProxy) -> None:
    """Background faults on a schedule, about one request in eight (`seen` offsets make the
    first ones come early, so even short tests meet some).
    """
    proxy.add(Rule("error", None, every=23, seen=21))
    proxy.add(Rule("error", None, status=500, code="InternalError", every=41, seen=36))
    proxy.add(Rule("reset", None, every=31, seen=27))
    proxy.add(Rule("drop_response", None, every=37, seen=32))
    proxy.add(Rule("corrupt_response", None, method="GET", exclude="list-type=", every=9, seen=7))


@pytest.fixture(params=["local", "s3", pytest.param("s3-faulty", marks=pytest.mark.slow)])
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
    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        _chaos(proxy)
        # more attempts than the default 5: 16 threads share one fault schedule, so one
        # operation can meet several faults in a row far more often than in real life
        s3 = server.store(
            server.shared_bucket, prefix, endpoint_url=proxy.endpoint_url, attempts=10
        )
        yield s3
        s3.close()
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
def test_concurrent_create_only_has_one_winner(store: ObjectStore) -> None:
    # 8 writers: SeaweedFS serialises conditional PUTs on one key with 1 s lock back-offs
    payloads = [f"writer {n}".encode() for n in range(8)]
    barrier = threading.Barrier(8)

    def attempt(data: bytes) -> bool:
        barrier.wait()
        return store.put("race/manifest", data, create_only=True)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, payloads))
    assert results.count(True) == 1, results
    assert store.get("race/manifest") == payloads[results.index(True)]


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
def test_invalid_keys_rejected(store: ObjectStore, key: str) -> None:
    for op in (
        lambda: store.put(key, b"x"),
        lambda: store.put(key, b"x", create_only=True),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ):
        with pytest.raises(InvalidKey) as caught:
            op()
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, StoreError)
    with pytest.raises(InvalidKey):
        list(store.list("../"))


# -- LocalStore specifics -----------------------------------------------------------------


def test_local_leaves_no_temp_files_and_hides_strays(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("x/y", b"data")
    store.put("x/y", b"more", create_only=True)
    store.put("x/y", b"again")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["y"]
    (tmp_path / "x" / f"{TEMP_PREFIX}crashed").write_bytes(b"half")  # left by a crash
    assert listing(store) == {"x/y": 5}
    with pytest.raises(InvalidKey):
        store.put(f"x/{TEMP_PREFIX}crashed", b"")


def test_local_keys_stay_inside_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "vault")
    (tmp_path / "secret").write_bytes(b"outside")
    with pytest.raises(InvalidKey):
        store.get("../secret")
    with pytest.raises(InvalidKey):
        store.put("../secret", b"overwritten")
    assert (tmp_path / "secret").read_bytes() == b"outside"


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


def assert_no_secret(exc: BaseException, *secrets_: str) -> None:
    """Neither the message, repr, traceback nor any chained cause holds a secret."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        texts += [str(cause), repr(cause), getattr(cause, "response", "").__repr__()]
        cause = cause.__cause__ or cause.__context__
    for secret in secrets_:
        for text in texts:
            assert secret not in text


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SlowDown"), pytest.param(500, "InternalError", marks=pytest.mark.slow)],
)
def test_server_errors_are_retried(
    faulty: RetryingStore, proxy: FaultProxy, status: int, code: str
) -> None:
    proxy.error(status, code, count=3)
    assert faulty.put("k", b"value") is True
    proxy.error(status, code, count=2, method="GET")
    assert faulty.get("k") == b"value"
    proxy.error(status, code, count=1, method="HEAD")
    assert faulty.exists("k")
    assert proxy.injected["error"] == 6 and faulty.retries == 6


def test_resets_are_retried(faulty: RetryingStore, proxy: FaultProxy) -> None:
    proxy.reset(count=2)
    faulty.put("k", b"v")
    proxy.reset(count=2, method="GET")
    assert faulty.get("k") == b"v"
    proxy.reset(method="DELETE")
    faulty.delete("k")
    assert not faulty.exists("k")
    assert proxy.injected["reset"] == 5


@pytest.mark.slow
def test_stalled_request_times_out_and_is_retried(s3_server: S3Server, proxy: FaultProxy) -> None:
    store = s3_server.store(
        s3_server.shared_bucket,
        s3_server.fresh_prefix(),
        endpoint_url=proxy.endpoint_url,
        read_timeout=0.3,
    )
    store.put("k", b"v")
    proxy.stall(1.0, method="GET")
    started = time.monotonic()
    assert store.get("k") == b"v"
    assert time.monotonic() - started < 1.0
    assert proxy.injected["stall"] == 1 and store.retries == 1


@pytest.mark.slow
def test_lost_ack_on_create_only_put_is_success(faulty: RetryingStore, proxy: FaultProxy) -> None:
    proxy.drop_response(method="PUT")
    assert faulty.put("manifests/bk-1", b"manifest", create_only=True) is True
    assert faulty.get("manifests/bk-1") == b"manifest"
    assert proxy.injected["drop_response"] == 1
    # the server did complete the first PUT: the retry was answered "412 exists"
    assert [status for m, _, status in proxy.log if m == "PUT"] == ["drop_response", "412"]


@pytest.mark.slow
def test_lost_ack_does_not_hide_someone_elses_object(
    faulty: RetryingStore, proxy: FaultProxy
) -> None:
    faulty.put("manifests/bk-2", b"theirs")
    proxy.reset(method="PUT")  # our attempt fails before reaching the server
    assert faulty.put("manifests/bk-2", b"ours", create_only=True) is False
    assert faulty.get("manifests/bk-2") == b"theirs"


def test_lost_ack_on_plain_put_and_delete(faulty: RetryingStore, proxy: FaultProxy) -> None:
    proxy.drop_response(method="PUT")
    assert faulty.put("k", b"v") is True
    proxy.drop_response(method="DELETE")
    faulty.delete("k")
    assert not faulty.exists("k")


def test_flipped_response_byte_is_detected_and_refetched(
    faulty: RetryingStore, proxy: FaultProxy
) -> None:
    data = os.urandom(MiB)
    faulty.put("chunk", data)
    proxy.corrupt_response()
    assert faulty.get("chunk") == data
    assert proxy.injected["corrupt_response"] == 1 and faulty.retries == 1


@pytest.mark.slow
def test_flipped_byte_without_retries_is_a_transient_error(
    s3_server: S3Server, proxy: FaultProxy
) -> None:
    raw = s3_server.store(
        s3_server.shared_bucket,
        s3_server.fresh_prefix(),
        endpoint_url=proxy.endpoint_url,
        retry=False,
    )
    raw.put("chunk", b"payload" * 100)
    proxy.corrupt_response()
    with pytest.raises(StoreError, match="CRC32 mismatch") as caught:
        raw.get("chunk")
    assert caught.value.transient


@pytest.mark.slow
def test_listing_survives_faults_midway(faulty: RetryingStore, proxy: FaultProxy) -> None:
    keys = [f"l/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: faulty.put(k, b"x"), keys))
    proxy.add(Rule("reset", 1, method="GET", path="list-type=", every=2))  # page 2 of 2
    assert sorted(listing(faulty, "l/")) == keys
    assert proxy.injected["reset"] == 1


@pytest.mark.slow
def test_attempts_are_bounded(s3_server: S3Server, proxy: FaultProxy) -> None:
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
    with pytest.raises(StoreError, match="gave up after 4 attempts") as caught:
        store.put("k", b"v")
    assert caught.value.transient
    assert proxy.requests == 4
    proxy.clear()
    proxy.reset(count=None)
    with pytest.raises(StoreError):
        store.get("k")
    assert proxy.requests == 8
    with pytest.raises(StoreError):
        list(store.list())
    assert time.monotonic() - started < 10
    assert_no_secret(caught.value, s3_server.secret_key)


def test_fallback_when_conditional_put_is_not_implemented(
    s3_server: S3Server, proxy: FaultProxy
) -> None:
    """A service answering If-None-Match with 501 gets head-then-put instead."""
    store = s3_server.store(
        s3_server.shared_bucket, s3_server.fresh_prefix(), endpoint_url=proxy.endpoint_url
    )
    proxy.error(501, "NotImplemented", method="PUT")
    assert store.put("m", b"first", create_only=True) is True
    assert store.put("m", b"second", create_only=True) is False
    assert store.get("m") == b"first"
    assert [m for m, _, _ in proxy.log][:3] == ["PUT", "HEAD", "PUT"]
    assert store.retries == 0


@pytest.mark.slow
def test_when_supported_checksums_through_the_proxy(s3_server: S3Server, proxy: FaultProxy) -> None:
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
    assert store.get("big") == data
    proxy.drop_response(method="PUT")
    assert store.put("small", b"s", create_only=True) is True
    assert proxy.injected == {"corrupt_response": 1, "drop_response": 1}


def test_wrong_secret_is_not_retried_and_not_leaked(
    s3_server: S3Server, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
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
        assert not caught.value.transient
        assert "access denied" in str(caught.value) and "check credentials" in str(caught.value)
        assert "s3://" in str(caught.value)
        assert_no_secret(caught.value, sentinel, s3_server.secret_key)
    assert proxy.requests == 3  # one request each: nothing retried
    assert store.retries == 0


@pytest.mark.slow
def test_unknown_access_key_and_missing_credentials(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN")
    store = s3_server.store(s3_server.shared_bucket, "x")
    with pytest.raises(StoreError, match="access denied") as caught:
        store.exists("k")
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
    s3_server: S3Server, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
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
    for fault in (
        lambda: proxy.error(count=None),
        lambda: proxy.reset(count=None),
        lambda: proxy.error(403, "AccessDenied"),
        lambda: proxy.corrupt_response(count=None),
    ):
        failures.append(lambda fault=fault: (proxy.clear(), fault(), store.get("present")))
    proxy.clear()
    store.put("present", b"v")
    seen = 0
    for failure in failures:
        with pytest.raises(StoreError) as caught:
            failure()
        assert_no_secret(caught.value, secret)
        seen += 1
    proxy.clear()
    assert seen == len(failures)
    with pytest.raises(StoreError) as caught:
        missing_bucket.get("k")
    assert "does not exist" in str(caught.value) and not caught.value.transient


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


def test_retry_only_transient_and_reports(tmp_path: Path) -> None:
    events: list[RetryEvent] = []
    delays: list[float] = []
    inner = Flaky(tmp_path, [StoreError("busy", transient=True)] * 2)
    inner.put("k", b"v")
    store = RetryingStore(
        inner, base_delay=1.0, max_delay=1.5, on_retry=events.append, sleep=delays.append
    )
    assert store.get("k") == b"v"
    assert [e.attempt for e in events] == [1, 2] and inner.calls == 3
    assert all(0 <= d <= 1.5 for d in delays) and len(delays) == 2
    inner.script = [StoreError("denied")]
    with pytest.raises(StoreError, match="denied"):
        store.get("k")
    assert inner.calls == 4  # not retried
    with pytest.raises(ObjectMissing):
        store.get("absent")


# -- factory -----------------------------------------------------------------------------


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    for bad in ["bucket/x", "http://bucket/x", "s3://", "s3:///x", "s3://b", "s3://bu/../x"]:
        with pytest.raises(UserError):
            parse_s3_url(bad)
    with pytest.raises(UserError) as caught:
        parse_s3_url("s3://AKID:topsecret@bucket/x")
    assert "topsecret" not in str(caught.value)


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


def test_bad_s3_settings_are_user_errors_without_secrets() -> None:
    with pytest.raises(UserError) as caught:
        S3Store("bucket", endpoint_url="not a url://AKID:topsecret@host")
    assert "topsecret" not in str(caught.value)
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
