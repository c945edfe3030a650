"""gc and import over many chunks: bounded memory, condemned lists that always read back, and
listings that resume without remembering every key (issue 13, terabyte scale).

The vaults here are written directly in the vault format (docs/vault-format.md) with tiny
chunks, as bench/bench_scale.py does at a million chunks: what is measured is the memory
per chunk of gc and import, which does not depend on the chunks' sizes.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import blake3
import pytest

from core.api import Blockvault
from core.base.errors import StoreError
from core.repo import gc
from core.repo.gc import collect_garbage
from core.repo.manifest import Manifest
from core.repo.repository import Repository, chunk_key
from core.stores.base import ObjectInfo
from core.stores.local import LocalStore
from core.stores.retry import RetryingStore

CHUNK = 64 << 10


def chunk(i: int) -> tuple[str, bytes]:
    data = b"scale-" + i.to_bytes(8, "big")
    return blake3.blake3(data).hexdigest(), b"\x00" + data  # a raw envelope


def synthetic(
    root: Path, *, chunks: int, manifests: int, referenced: int, files: bool = True
) -> tuple[Repository, list[str]]:
    """A vault of `chunks` tiny chunks; `manifests` backups reference the first `referenced`
    of them (each backup the next slice, overlapping its neighbour by half). `files=False`:
    the manifests only (what import reads)."""
    store = LocalStore(root, sync_each_put=False)  # fast to make; one flush at the end
    vault = Repository.init(store, chunk_size=CHUNK)
    ids = []
    for i in range(chunks):
        chunk_id, blob = chunk(i)
        if files:
            store.put(chunk_key(chunk_id), blob)
        ids.append(chunk_id)
    step = referenced // manifests
    for m in range(manifests):
        names = ids[m * step : min(m * step + 2 * step, referenced)]
        if m == manifests - 1:
            names = ids[m * step : referenced]
        vault.write_manifest(
            Manifest(
                id=f"backup-{m:06x}",
                kind="backup",
                size=len(names) * CHUNK,
                chunk_size=CHUNK,
                chunks=list(names),
                digest=blake3.blake3("".join(names).encode()).hexdigest(),
                disk={"id": f"disk-{m:06x}", "name": f"disk{m}", "size": len(names) * CHUNK},
                name=f"disk{m}-0001",
                created_at=datetime.now(UTC),
            )
        )
    store.flush()
    return Repository.open(LocalStore(root)), ids


def peak_bytes(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def condemned_lists(root: Path) -> list[Path]:
    return sorted((root / "condemned").glob("*"))


def present(root: Path, ids: list[str]) -> list[bool]:
    return [(root / chunk_key(c)).is_file() for c in ids]


#: what gc holds besides its chunks: a store read's 1 MiB buffer, one manifest being parsed
FIXED_BYTES = 1536 << 10


@pytest.mark.slow
def test_gc_holds_a_digest_per_chunk_not_objects(tmp_path: Path) -> None:
    """6,000 chunks, 4,500 referenced by 10 manifests: the dry run and then gc condemn and
    delete the other 1,500, each peaking at under 250 bytes a chunk beyond a fixed 1.5 MiB
    (one 32-byte digest per referenced chunk; a hex id, its key and its listing record per
    chunk, as gc held before, cost 580 bytes a chunk in the dry run and 1,050 in gc), and
    every referenced chunk stays."""
    root = tmp_path / "vault"
    vault, ids = synthetic(root, chunks=6000, manifests=10, referenced=4500)
    bound = FIXED_BYTES + 6000 * 250
    found: list[gc.GcStats] = []
    peak = peak_bytes(lambda: found.append(collect_garbage(vault, grace_seconds=0, dry_run=True)))
    assert all(present(root, ids))  # a dry run changes nothing
    assert peak < bound, f"the dry run peaked at {peak / 6000:.0f} bytes per chunk"
    done: list[gc.GcStats] = []
    peak = peak_bytes(lambda: done.append(collect_garbage(vault, grace_seconds=0)))
    assert peak < bound, f"gc peaked at {peak / 6000:.0f} bytes per chunk"
    assert (found[0].deleted_chunks, found[0].condemned_chunks) == (1500, 1500)
    assert (done[0].deleted_chunks, done[0].condemned_chunks) == (1500, 1500)
    assert found[0].deleted_bytes == done[0].deleted_bytes
    assert all(present(root, ids[:4500])) and not any(present(root, ids[4500:]))


def test_condemning_more_than_a_list_holds_writes_several_that_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list of every unreferenced chunk of a big vault would pass the size a list may have
    and read back as damaged, so its chunks would never go: gc writes lists of at most
    CONDEMNED_PER_LIST ids (made small here), and a later run deletes them all."""
    monkeypatch.setattr(gc, "CONDEMNED_PER_LIST", 40)
    root = tmp_path / "vault"
    vault, ids = synthetic(root, chunks=300, manifests=3, referenced=180)
    first = collect_garbage(vault, grace_seconds=3600)  # condemn now, delete later
    lists = condemned_lists(root)
    assert first.condemned_chunks == 120 and first.deleted_chunks == 0
    assert len(lists) == 3
    named = [c for _, ids_ in vault.iter_condemned() for c in ids_]
    assert sorted(named) == sorted(ids[180:]) and not vault.damaged_condemned
    again = collect_garbage(vault, grace_seconds=3600)  # nothing new: nothing condemned twice
    assert again.condemned_chunks == 0 and len(condemned_lists(root)) == 3
    last = collect_garbage(vault, grace_seconds=0)
    assert last.deleted_chunks == 120 and condemned_lists(root) == []
    assert all(present(root, ids[:180])) and not any(present(root, ids[180:]))


def test_a_stray_file_among_the_chunks_is_never_condemned(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    vault, ids = synthetic(root, chunks=30, manifests=1, referenced=20)
    (root / "chunks" / "zz").mkdir()
    (root / "chunks" / "zz" / "notes.txt").write_text("an admin's file")
    stray = root / "chunks" / ids[25][:2] / ("0" * 64)  # a chunk name in the wrong folder
    stray.write_bytes(b"\x00x")
    stats = collect_garbage(vault, grace_seconds=0)
    assert stats.deleted_chunks == 10 and stats.chunks == 30
    assert (root / "chunks" / "zz" / "notes.txt").is_file() and stray.is_file()
    assert not vault.damaged_condemned


@pytest.mark.slow
def test_import_reads_one_manifest_at_a_time(tmp_path: Path) -> None:
    """`vault import` of 30 backups of 3,000 chunks each registers them all, and peaks at
    far less than their chunk lists together (90,000 ids: 11 MiB when all were read at
    once, 1.2 MiB one at a time)."""
    root = tmp_path / "vault"
    synthetic(root, chunks=45_000, manifests=30, referenced=45_000, files=False)
    bv = Blockvault.open(home=tmp_path / "home")
    try:
        bv.add_vault("big", path=str(root))
        rows: list[list[dict]] = []
        peak = peak_bytes(lambda: rows.append(bv.import_vault("big")))
        again = bv.import_vault("big")
        listed = bv.list_backups(include_deleted_disks=True)
    finally:
        bv.close()
    assert len(rows[0]) == 30 and {r["status"] for r in rows[0]} == {"available"}
    assert again == [] and len(listed) == 30
    assert peak < 4 << 20, f"import peaked at {peak / (1 << 20):.1f} MiB"


# -- listings that resume after a failure ---------------------------------------------------


class FailsOnce(LocalStore):
    """A LocalStore whose first listing fails (transiently) after `after` keys."""

    def __init__(self, root: Path, after: int, *, ordered: bool = True) -> None:
        super().__init__(root)
        self.after, self.failed = after, False
        self.ordered_listing = self.in_order = ordered

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        found = list(super().list(prefix))
        if not self.in_order:
            found.reverse()  # some other order, the same every time
        for n, info in enumerate(found):
            if n == self.after and not self.failed:
                self.failed = True
                raise StoreError("connection reset", transient=True)
            yield info


def keys_listed(store: RetryingStore) -> list[str]:
    return [info.key for info in store.list("k/")]


@pytest.mark.parametrize("ordered", [True, False])
def test_a_listing_restarted_midway_yields_every_key_once(tmp_path: Path, ordered: bool) -> None:
    inner = FailsOnce(tmp_path, after=37, ordered=ordered)
    keys = [f"k/{i % 7}/{i:04d}" for i in range(100)]
    for key in keys:
        inner.put(key, b"x")
    store = RetryingStore(inner, sleep=lambda _: None)
    listed = keys_listed(store)
    assert inner.failed and store.retries == 1
    assert sorted(listed) == sorted(keys) and len(listed) == len(set(listed))


def test_a_store_that_breaks_its_order_fails_rather_than_skipping(tmp_path: Path) -> None:
    """An ordered store resumes after its last key: one that listed out of order would lose
    the keys it had not reached, so the retry gives up with one clear line instead."""
    inner = FailsOnce(tmp_path, after=5, ordered=False)
    for i in range(10):
        inner.put(f"k/{i}", b"x")
    inner.ordered_listing = True  # claims an order its listing does not keep
    store = RetryingStore(inner, sleep=lambda _: None)
    with pytest.raises(StoreError, match="did not list in key order"):
        keys_listed(store)


def test_local_listing_is_in_key_order(tmp_path: Path) -> None:
    """'-' sorts before '/', and '/' before '0': a folder's keys come where its name plus
    '/' sorts, as S3 lists them."""
    store = LocalStore(tmp_path)
    keys = ["a-c", "a/b", "a/c/d", "a/c-e", "a0", "b", "chunks/ab/" + "a" * 64]
    for key in reversed(keys):
        store.put(key, json.dumps(key).encode())
    assert [info.key for info in store.list()] == sorted(keys)
    assert [info.key for info in store.list("a/")] == ["a/b", "a/c-e", "a/c/d"]
