"""A vault: content-addressed chunks and manifests in any ObjectStore (local dir or S3).

Layout (docs/vault-format.md):
    config                      plaintext JSON: format, chunk size, compression, wrapped key
    chunks/<id[:2]>/<id>        one chunk: envelope(zstd or raw bytes)
    manifests/<backup-id>       envelope(JSON manifest), written create-only, last
    trash/<backup-id>           a deleted manifest, kept until GC is past its grace period
    sessions/<backup-id>        a running writer's heartbeat (GC defers while one is live)
    condemned/<stamp>-<rand>    chunk ids GC found unreferenced, deleted by a later pass
    locks/gc                    the single-writer lock of destructive operations (I9)
    retention/<backup-id>       a locked backup's date (`backup lock`, a policy's --lock-for)

Locked backups: a backup locked until a date is not deleted (its manifest is not trashed)
before then, whoever asks, and so GC keeps its chunks (they stay referenced). The date is
recorded in the vault (retention/, the vault is the truth, I7) after every object the
backup needs is retained; in a vault on S3 Object Lock the store itself also refuses: the
chunks and the manifest carry a retain-until date (new ones written with it, reused ones
extended, before the manifest: I3), so nobody holding the bucket's credentials deletes them.

An envelope is one flag byte then the payload: 0 raw, 1 zstd; 2 sealed (nonce + AES-GCM of
an inner envelope), bound to the object's key so swapped objects fail authentication.
Chunk ids are BLAKE3 of the plaintext chunk (keyed in encrypted vaults); every chunk read is
checked against its id before anyone uses it.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import blake3
import zstandard

from core.base.errors import IntegrityError, ObjectMissing, Retained, StoreError, UserError
from core.base.host import holder_gone, host_id
from core.base.text import printable
from core.base.units import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES
from core.repo import crypto
from core.repo.manifest import CHUNK_ID, Manifest
from core.stores.base import ObjectInfo, ObjectStore, lock_instant

FORMAT = "blockvault-vault"
VERSION = 1
RAW, ZSTD, SEALED = 0, 1, 2
SESSION_LEASE_SECONDS = 600.0
SESSION_HEARTBEAT_SECONDS = 30.0
SAMPLE_BYTES = 64 << 10
GC_LOCK_KEY = "locks/gc"
GC_LOCK_LEASE_SECONDS = 600.0
GC_WAIT_POLL_SECONDS = 0.5

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=True)
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    found = getattr(_local, "decompressor", None)
    if found is None:
        found = _local.decompressor = zstandard.ZstdDecompressor()
    return found


def _worth_compressing(data: bytes) -> bool:
    """A 64 KiB sample at the fastest level predicts whether the whole chunk shrinks;
    random or already-compressed data (most of a full disk) then skips zstd entirely."""
    if len(data) <= SAMPLE_BYTES * 4:
        return True
    for start in (0, len(data) // 2):  # a partly filled chunk often starts or ends with zeros
        sample = data[start : start + SAMPLE_BYTES]
        if len(_compressor(1).compress(sample)) < SAMPLE_BYTES * 0.97:
            return True
    return False


#: the settings that decide how data is written; bound to the key, remembered by the catalog
SETTINGS_KEYS = ("format", "version", "id", "chunk_size", "compression", "chunk_hash", "encryption")
CONFIG_MAX_BYTES = 64 << 10
CLOCK_PROBES = "locks/clock-"
MAX_GC_LEASE = 86400.0  # what a lock may declare (config's limit too): a bounded wait
#: a manifest or condemned list, stored or unpacked: ~1 M chunk entries (4 TiB of 4 MiB
#: chunks); a hostile one costs at most this much memory, a clear error beyond
MANIFEST_MAX_BYTES = 64 << 20
#: chunk ids per condemned list (~6.7 MB of JSON): far below MANIFEST_MAX_BYTES, so a gc
#: that condemns millions writes several lists, each of which reads back
CONDEMNED_PER_LIST = 100_000


def settings_of(config: dict) -> dict:
    """The settings of a vault config (what the catalog remembers and the MAC covers)."""
    return {key: config.get(key) for key in SETTINGS_KEYS}


def settings_mac(keys: crypto.Keys, config: dict) -> str:
    """HMAC-SHA256 of the settings under the vault's id key: editing them needs the key."""
    canonical = json.dumps(settings_of(config), sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(keys.id_key, b"blockvault-config:" + canonical, "sha256").hexdigest()


def parse_config(raw: bytes, *, where: str) -> dict:
    """A vault config, every field checked: type, range, known values. Damage is one line."""

    def bad(reason: str) -> IntegrityError:
        return IntegrityError(f"vault config at {where} is damaged: {reason}")

    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("not JSON") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise bad("not a blockvault vault")
    if config.get("version") != VERSION:
        raise bad(f"unsupported vault version {str(config.get('version'))[:20]!r}")
    size = config.get("chunk_size")
    if type(size) is not int or not MIN_CHUNK_BYTES <= size <= MAX_CHUNK_BYTES or size % 4096:
        raise bad(f"chunk size {str(size)[:30]!r} is not a multiple of 4 KiB in 64 KiB..64 MiB")
    level = config.get("compression", 3)
    if type(level) is not int or not -7 <= level <= 22:
        raise bad(f"unknown compression {str(level)[:30]!r} (a zstd level -7..22)")
    if config.get("chunk_hash", "blake3") != "blake3":
        raise bad(f"unknown chunk hash {str(config.get('chunk_hash'))[:30]!r}")
    encryption = config.get("encryption")
    if encryption is not None and not isinstance(encryption, dict):
        raise bad("its encryption entry is not an object")
    if not isinstance(config.get("id", ""), str):
        raise bad("its id is not a string")
    config.setdefault("compression", 3)
    config.setdefault("chunk_hash", "blake3")
    config.setdefault("encryption", None)
    return config


CATALOG_COPIES = "catalog/"  # one object per host: the catalog's description, for recovery
QUARANTINE = "quarantine/"  # chunks found damaged or missing: never reused
REPAIRED = "repaired/"  # chunks a later backup stored again, until `vault check` reports them
LOCKS = "retention/"  # retention/<backup-id>: the date a locked backup may be deleted after
RETAIN_WORKERS = 16  # retention extensions in flight (one HEAD, maybe one PUT, per object)


def when(moment: datetime) -> str:
    """A lock's date as a person reads it in a refusal: '2027-01-01 00:00:00 UTC'."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _safe_segment(text: str) -> str:
    """A host id as one key segment: letters, digits, '.', '_' and '-' only."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:100].lstrip(".")
    return cleaned or "host"


def chunk_key(chunk_id: str) -> str:
    return f"chunks/{chunk_id[:2]}/{chunk_id}"


@dataclass(frozen=True)
class VaultStats:
    """Real usage read from the store."""

    chunks: int
    stored_bytes: int
    manifests: int
    logical_bytes: int
    damaged_manifests: tuple[str, ...] = ()


@dataclass(frozen=True)
class EncodedChunk:
    """A chunk ready for upload, plus what it costs in the store."""

    chunk_id: str
    blob: bytes
    compressed: bool


class Repository:
    """Open with `Repository.open(store, passphrase=...)`; thread-safe for parallel chunk I/O."""

    def __init__(self, store: ObjectStore, config: dict, keys: crypto.Keys | None) -> None:
        self.store = store
        self.config = config
        self.keys = keys
        self.chunk_size = int(config["chunk_size"])
        self.compression = int(config.get("compression", 3))
        self.encrypted = keys is not None
        self.location = store.location
        self._passphrase_check: bytes | None = None
        #: how long a gc lock may be held; its holder stops deleting after half of it
        self.gc_lease = GC_LOCK_LEASE_SECONDS
        #: condemned lists found damaged (skipped by writers and gc alike: nothing in them
        #: is ever deleted); `vault check` reports them
        self.damaged_condemned: set[str] = set()
        #: a locked backup's writer (`with_retention`): what it writes is retained until then
        self.retain_until: datetime | None = None
        self._retained: set[str] = set()  # chunks this writer stored with that retention
        self._retained_lock = threading.Lock()
        #: quarantined chunks seen by the last `quarantined()`: one that S3 Object Lock keeps
        #: in chunks/ is neither reported present nor put create-only, but stored again
        self._sick: set[str] = set()

    # --- lifecycle ----------------------------------------------------------------------

    @staticmethod
    def exists(store: ObjectStore) -> bool:
        """True if the store already holds a vault."""
        return store.exists("config")

    @classmethod
    def init(
        cls,
        store: ObjectStore,
        *,
        chunk_size: int,
        passphrase: str | None = None,
        compression: int = 3,
    ) -> Repository:
        """Write a new vault's config (create-only: two hosts racing get one vault)."""
        if chunk_size < MIN_CHUNK_BYTES or chunk_size > MAX_CHUNK_BYTES or chunk_size % 4096:
            raise UserError("chunk size must be a multiple of 4 KiB between 64 KiB and 64 MiB")
        config: dict = {
            "format": FORMAT,
            "version": VERSION,
            "id": uuid.uuid4().hex,
            "chunk_size": chunk_size,
            "compression": compression,
            "chunk_hash": "blake3",
            "encryption": None,
        }
        keys = None
        if passphrase:
            keys, config["encryption"] = crypto.new_keys(passphrase)
            config["mac"] = settings_mac(keys, config)
        data = json.dumps(config, indent=1).encode()
        if not store.put("config", data, create_only=True):
            return cls.open(store, passphrase=passphrase)
        return cls(store, config, keys)

    @classmethod
    def open(
        cls,
        store: ObjectStore,
        *,
        passphrase: str | None = None,
        cache_dir: Path | None = None,
    ) -> Repository:
        """Read the config and unwrap the key; clear errors for empty stores and passphrases."""
        try:
            raw = store.get("config", max_bytes=CONFIG_MAX_BYTES)
        except ObjectMissing:
            raise UserError(f"no blockvault vault at {store.location}") from None
        config = parse_config(raw, where=store.location)
        keys = None
        if config["encryption"] is not None:
            if not passphrase:
                raise UserError(
                    f"vault at {store.location} is encrypted: set BLOCKVAULT_PASSPHRASE"
                )
            keys = crypto.unwrap_keys(config["encryption"], passphrase, vault=store.location)
            if not hmac.compare_digest(str(config.get("mac", "")), settings_mac(keys, config)):
                raise IntegrityError(
                    f"vault config at {store.location} was changed by someone without its key "
                    "(its settings fail authentication); refusing to use it"
                )
        vault = cls(store, config, keys)
        vault._passphrase_check = crypto.fingerprint(passphrase) if keys else None
        return vault

    def passphrase_matches(self, passphrase: str | None) -> bool:
        """True if this open vault was unlocked with `passphrase` (for reuse in-process)."""
        return self.keys is None or (
            passphrase is not None and crypto.fingerprint(passphrase) == self._passphrase_check
        )

    # --- envelopes ----------------------------------------------------------------------

    def _seal(self, inner: bytes, key: str) -> bytes:
        if self.keys is None:
            return inner
        return bytes([SEALED]) + self.keys.seal(inner, aad=key.encode())

    def _unseal(self, blob: bytes, key: str, what: str) -> bytes:
        if not blob:
            raise IntegrityError(f"{what} is empty")
        if self.keys is None:
            if blob[0] == SEALED:
                raise IntegrityError(f"{what} is encrypted but the vault is not")
            return blob
        if blob[0] != SEALED:
            raise IntegrityError(f"{what} is not encrypted in an encrypted vault")
        return self.keys.open(blob[1:], aad=key.encode(), what=what)

    def _pack(self, data: bytes, *, level: int | None = None) -> tuple[bytes, bool]:
        level = self.compression if level is None else level
        if level > 0 and _worth_compressing(data):
            packed = _compressor(level).compress(data)
            if len(packed) < len(data) - len(data) // 64:
                return bytes([ZSTD]) + packed, True
        return bytes([RAW]) + data, False

    @staticmethod
    def _unpack(inner: bytes, what: str, limit: int) -> bytes | memoryview:
        """The payload of an envelope; raw payloads come back as a view (no 4 MiB copy)."""
        if not inner:
            raise IntegrityError(f"{what} is empty")
        flag, body = inner[0], memoryview(inner)[1:]
        if flag == RAW:
            return body
        if flag == ZSTD:
            try:
                declared = zstandard.frame_content_size(body)
                if declared > limit:  # a damaged or hostile header: no huge allocation
                    raise IntegrityError(f"{what} claims more than {limit} bytes")
                if declared >= 0:
                    return _decompressor().decompress(body, max_output_size=limit)
                # size not declared: stream, never holding more than the limit (zstd bombs)
                with _decompressor().stream_reader(io.BytesIO(body)) as reader:
                    data = reader.read(limit + 1)
                if len(data) > limit:
                    raise IntegrityError(f"{what} decompresses to more than {limit} bytes")
                return data
            except (zstandard.ZstdError, MemoryError) as exc:
                raise IntegrityError(f"{what} does not decompress: {exc}") from None
        raise IntegrityError(f"{what} has an unknown encoding {flag}")

    # --- chunks -------------------------------------------------------------------------

    def chunk_id(self, data: bytes) -> str:
        """Content id: BLAKE3, keyed in encrypted vaults so ids leak nothing."""
        if self.keys is not None:
            return blake3.blake3(data, key=self.keys.id_key).hexdigest()
        return blake3.blake3(data).hexdigest()

    def encode_chunk(self, chunk_id: str, data: bytes) -> EncodedChunk:
        """Compress (and seal) a chunk, then check the result decodes to the same id (restic's
        lesson: corruption made before upload is the worst kind)."""
        inner, compressed = self._pack(data)
        blob = self._seal(inner, chunk_key(chunk_id))
        if compressed or self.keys is not None:
            self.decode_chunk(chunk_id, blob)
        return EncodedChunk(chunk_id, blob, compressed)

    def decode_chunk(self, chunk_id: str, blob: bytes) -> bytes | memoryview:
        """Open, decompress and verify one chunk; IntegrityError on any mismatch."""
        what = f"chunk {chunk_id[:16]}"
        data = self._unpack(self._unseal(blob, chunk_key(chunk_id), what), what, self.chunk_size)
        if self.chunk_id(data) != chunk_id:
            raise IntegrityError(f"{what} does not match its content id")
        return data

    def has_chunk(self, chunk_id: str) -> bool:
        return chunk_id not in self._sick and self.store.exists(chunk_key(chunk_id))

    def put_chunk(self, encoded: EncodedChunk) -> bool:
        """Upload; False if it was already there (a repeated PUT is harmless, I6). A locked
        backup's writer stores it retained, or extends the retention of the one there."""
        if encoded.chunk_id in self._sick:  # kept by Object Lock while damaged: replace it
            self.rewrite_chunk(encoded)
            return True
        created = self.store.put(
            chunk_key(encoded.chunk_id), encoded.blob, create_only=True, **self._retention()
        )
        self._note_retained(encoded.chunk_id)
        return created

    def rewrite_chunk(self, encoded: EncodedChunk) -> None:
        """Overwrite a chunk (fresh mtime): rescues one a GC pass has condemned."""
        self.store.put(chunk_key(encoded.chunk_id), encoded.blob, **self._retention())
        self._note_retained(encoded.chunk_id)

    # --- locks (retention) ---------------------------------------------------------------

    def with_retention(self, until: datetime | None) -> Repository:
        """This vault as a locked backup's writer: chunks and the manifest it writes are
        retained until `until`, and the chunks it reuses are extended to it before its
        manifest is written. A copy: the shared, cached vault is left as it is."""
        twin = copy.copy(self)
        twin.retain_until = lock_instant(until) if until is not None else None
        twin._retained = set()
        twin._retained_lock = threading.Lock()
        return twin

    def _retention(self) -> dict[str, datetime]:
        """The put arguments of this writer's retention, where the store enforces it."""
        if self.retain_until is None or not self.store.object_lock:
            return {}
        return {"retain_until": self.retain_until}

    def _note_retained(self, chunk_id: str) -> None:
        if self.retain_until is not None and self.store.object_lock:
            with self._retained_lock:
                self._retained.add(chunk_id)

    def _retain_chunks(self, chunk_ids: Iterable[str], until: datetime) -> None:
        """Extend every chunk's retention to `until` (Object Lock only; forward only). A
        chunk missing here is a backup that could not be restored: an IntegrityError."""
        ids = sorted(chunk_ids)
        if not ids or not self.store.object_lock:
            return

        def one(chunk_id: str) -> None:
            try:
                self.store.retain(chunk_key(chunk_id), until)
            except ObjectMissing:
                raise IntegrityError(f"chunk {chunk_id[:16]} is missing from the vault") from None

        with ThreadPoolExecutor(max_workers=min(RETAIN_WORKERS, len(ids))) as pool:
            for _ in pool.map(one, ids):
                pass

    def lock_of(self, manifest_id: str) -> datetime | None:
        """The date recorded for this backup's lock (past or future), or None."""
        key = f"{LOCKS}{manifest_id}"
        try:
            blob = self.store.get(key, max_bytes=4096)
            inner = self._unseal(blob, key, f"lock of {manifest_id}")
            body = json.loads(bytes(self._unpack(inner, key, 4096)))
            until = datetime.fromisoformat(str(body["until"])[:40])
        except ObjectMissing:
            return None
        except (IntegrityError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None  # damaged: the manifest's own retention still holds where there is one
        return until.replace(tzinfo=UTC) if until.tzinfo is None else until.astimezone(UTC)

    def locks(self) -> dict[str, datetime]:
        """Every backup lock recorded in the vault (past or future dates)."""
        found = {}
        for info in self.store.list(LOCKS):
            manifest_id = info.key[len(LOCKS) :]
            until = self.lock_of(manifest_id)
            if until is not None:
                found[manifest_id] = until
        return found

    def _write_lock(self, manifest_id: str, until: datetime) -> datetime:
        """Record the lock's date (never an earlier one than recorded); the date kept."""
        current = self.lock_of(manifest_id)
        if current is not None and current >= until:
            return current
        key = f"{LOCKS}{manifest_id}"
        body = json.dumps({"id": manifest_id, "until": until.isoformat()}).encode()
        inner, _ = self._pack(body, level=3)
        self.store.put(key, self._seal(inner, key))
        return until

    def lock(self, manifest_id: str, until: datetime) -> datetime:
        """Lock a committed backup until `until` (only ever later): every chunk it names, then
        its manifest, are retained that long where the store enforces it, then the date is
        recorded. Returns the date it is locked until."""
        until = lock_instant(until)
        current = self.lock_of(manifest_id)
        if current is not None and current > until:
            until = current
        manifest = self.read_manifest(manifest_id)
        if self.store.object_lock:
            self._retain_chunks(manifest.referenced(), until)
            try:
                self.store.retain(f"manifests/{manifest_id}", until)
            except ObjectMissing:
                raise IntegrityError(f"manifest {manifest_id} is missing from the vault") from None
        return self._write_lock(manifest_id, until)

    def locked_until(self, manifest_id: str) -> datetime | None:
        """The future date before which this backup may not be deleted (its lock record, or
        its manifest's own retention), or None when it is free."""
        found = [self.lock_of(manifest_id)]
        with contextlib.suppress(ObjectMissing):
            found.append(self.store.retained_until(f"manifests/{manifest_id}"))
        now = datetime.now(UTC)
        future = [u for u in found if u is not None and u > now]
        return max(future) if future else None

    def get_chunk(self, chunk_id: str) -> bytes | memoryview:
        """Fetch and verify a chunk; a missing one is an IntegrityError (data loss)."""
        try:
            blob = self.store.get(chunk_key(chunk_id))
        except ObjectMissing:
            raise IntegrityError(f"chunk {chunk_id[:16]} is missing from the vault") from None
        return self.decode_chunk(chunk_id, blob)

    # --- healing (I13) -------------------------------------------------------------------

    def quarantine_chunk(self, chunk_id: str) -> None:
        """A chunk found damaged or missing is never reused: its bytes (if any) move to
        `quarantine/<id>`, so the next backup of intact data stores it again."""
        key = chunk_key(chunk_id)
        try:
            blob = self.store.get(key, max_bytes=self.chunk_size + (1 << 20))
        except (ObjectMissing, StoreError):
            blob = b""
        self.store.put(f"{QUARANTINE}{chunk_id}", blob)
        self._sick.add(chunk_id)
        with contextlib.suppress(Retained):  # kept by Object Lock: the next backup replaces it
            self.store.delete(key)

    def quarantined(self) -> set[str]:
        """Chunk ids found damaged or missing and not stored again since."""
        found = {
            info.key[len(QUARANTINE) :]
            for info in self.store.list(QUARANTINE)
            if CHUNK_ID.match(info.key[len(QUARANTINE) :])
        }
        self._sick = set(found)
        return found

    def healed(self, chunk_id: str) -> None:
        """A good copy was stored again: the chunk leaves quarantine (`vault check` reports
        it as repaired)."""
        self.store.put(f"{REPAIRED}{chunk_id}", b"")
        self.store.delete(f"{QUARANTINE}{chunk_id}")
        self._sick.discard(chunk_id)

    def repaired(self, *, clear: bool) -> set[str]:
        """Chunks stored again since the last check (`clear`: the check has reported them)."""
        found = {
            info.key[len(REPAIRED) :]
            for info in self.store.list(REPAIRED)
            if CHUNK_ID.match(info.key[len(REPAIRED) :])
        }
        if clear:
            for chunk_id in found:
                self.store.delete(f"{REPAIRED}{chunk_id}")
        return found

    def holds_any_chunk(self) -> bool:
        """One listing call: is there any chunk in the vault yet?"""
        return next(iter(self.list_chunks()), None) is not None

    def list_chunks(self) -> Iterable[ObjectInfo]:
        return self.store.list("chunks/")

    def delete_chunk(self, chunk_id: str, *, lazily: bool = False) -> None:
        """Delete one chunk; `lazily`: durable at the next `store.flush()` (gc's batches)."""
        if lazily:
            self.store.delete_lazily(chunk_key(chunk_id))
        else:
            self.store.delete(chunk_key(chunk_id))

    # --- manifests ----------------------------------------------------------------------

    def write_manifest(self, manifest: Manifest) -> None:
        """Commit point: create-only; committing the same manifest twice is a no-op (I6).
        A locked backup's writer first extends the chunks it reused and records the lock,
        then writes the manifest retained: nothing it names can go before it does."""
        key = f"manifests/{manifest.id}"
        if self.retain_until is not None:
            with self._retained_lock:
                fresh = set(self._retained)
            self._retain_chunks(manifest.referenced() - fresh, self.retain_until)
            self._write_lock(manifest.id, self.retain_until)
        inner, _ = self._pack(manifest.to_bytes(), level=3)
        if not self.store.put(key, self._seal(inner, key), create_only=True, **self._retention()):
            existing = self.read_manifest(manifest.id)
            if existing.digest != manifest.digest:
                raise IntegrityError(f"manifest {manifest.id} already exists with other content")

    def write_catalog_copy(self, host: str, description: dict) -> None:
        """The catalog's own description (servers, disks, policies, vaults) of one host, kept
        in the vault (sealed where the vault is encrypted) so a new host can rebuild it."""
        key = f"{CATALOG_COPIES}{_safe_segment(host)}"
        inner, _ = self._pack(json.dumps(description, sort_keys=True).encode(), level=3)
        self.store.put(key, self._seal(inner, key))

    def catalog_copies(self) -> list[dict]:
        """Every host's catalog description that reads back whole; damaged ones are skipped."""
        found = []
        for info in self.store.list(CATALOG_COPIES):
            try:
                blob = self.store.get(info.key, max_bytes=MANIFEST_MAX_BYTES)
                inner = self._unseal(blob, info.key, info.key)
                body = json.loads(bytes(self._unpack(inner, info.key, MANIFEST_MAX_BYTES)))
            except (ObjectMissing, IntegrityError, ValueError, UnicodeDecodeError):
                continue
            if isinstance(body, dict):
                found.append(body)
        return found

    def read_manifest(self, manifest_id: str, *, trashed: bool = False) -> Manifest:
        key = f"{'trash' if trashed else 'manifests'}/{manifest_id}"
        what = f"manifest {manifest_id}"
        try:
            blob = self.store.get(key, max_bytes=MANIFEST_MAX_BYTES)
        except ObjectMissing:
            raise IntegrityError(f"{what} is missing from the vault") from None
        except StoreError as exc:
            if exc.transient:
                raise
            raise IntegrityError(f"{what} cannot be read: {exc}") from None
        data = bytes(self._unpack(self._unseal(blob, key, what), what, MANIFEST_MAX_BYTES))
        return Manifest.from_bytes(data, expected_id=manifest_id)

    def list_manifest_ids(self) -> list[str]:
        return sorted(info.key.split("/", 1)[1] for info in self.store.list("manifests/"))

    def manifests(self) -> list[Manifest]:
        return [self.read_manifest(mid) for mid in self.list_manifest_ids()]

    def iter_manifests(
        self, *, skip: Container[str] = frozenset()
    ) -> Iterator[tuple[str, Manifest | None, str | None]]:
        """Every manifest not in `skip`, one at a time (only one is in memory: a vault of a
        million chunks is read in the memory of its largest manifest), as (id, manifest,
        None) or, for a damaged one, (id, None, why); one deleted since the listing is
        skipped."""
        for manifest_id in self.list_manifest_ids():
            if manifest_id in skip:
                continue
            try:
                yield manifest_id, self.read_manifest(manifest_id), None
            except IntegrityError as exc:
                if not self.store.exists(f"manifests/{manifest_id}"):
                    continue  # deleted since the listing (another host's `backup delete`)
                yield manifest_id, None, str(exc)

    def trash_manifest(self, manifest_id: str) -> None:
        """Move a manifest to trash/ (re-sealed under its new key); GC empties the trash.
        A locked backup is refused (`Retained`, naming the date), whoever asks: the vault's
        record decides, not a catalog."""
        until = self.locked_until(manifest_id)
        if until is not None:
            raise Retained(
                f"backup {manifest_id} is locked until {when(until)}; it cannot be deleted "
                "before then",
                until=until,
            )
        self._trash_manifest(manifest_id)
        with contextlib.suppress(ObjectMissing, Retained):  # its lock has passed
            self.store.delete(f"{LOCKS}{manifest_id}")

    def _trash_manifest(self, manifest_id: str) -> None:
        key = f"manifests/{manifest_id}"
        trash_key = f"trash/{manifest_id}"
        try:
            manifest = self.read_manifest(manifest_id)
        except IntegrityError:
            if not self.store.exists(key):
                return
            # damaged: its bytes go to the trash as they are (gc empties it); its backup can
            # be deleted like any other, and only it is affected
            self.store.put(trash_key, self.store.get(key, max_bytes=MANIFEST_MAX_BYTES))
            self.store.delete(key)
            return
        inner, _ = self._pack(manifest.to_bytes(), level=3)
        self.store.put(trash_key, self._seal(inner, trash_key))
        self.store.delete(key)

    def readable_manifests(self) -> tuple[list[Manifest], dict[str, str]]:
        """Every manifest that reads back whole, and the damaged ones with why: one damaged
        manifest affects only its own backup."""
        good, damaged = [], {}
        for manifest_id, manifest, why in self.iter_manifests():
            if manifest is not None:
                good.append(manifest)
            else:
                damaged[manifest_id] = str(why)
        return good, damaged

    # --- accounting ---------------------------------------------------------------------

    def chunk_sizes(self) -> dict[str, int]:
        """Stored bytes per chunk id, from one listing."""
        return {info.key.rsplit("/", 1)[1]: info.size for info in self.list_chunks()}

    def unique_to(
        self, manifest_ids: list[str], *, kept_alike: tuple[str, ...] | list[str] = ()
    ) -> dict[str, set[str]]:
        """The chunks deleting these manifests frees, per manifest in the order given: each
        chunk no other readable manifest references, for the first of them naming it (none
        for a damaged one: what it references is unknown). `kept_alike`: manifests (among
        them) whose chunks a new manifest will reference again (a new backup of a disk
        repeats its newest backup's chunks)."""
        doomed = set(manifest_ids)
        readable = {m.id: m for m in self.readable_manifests()[0]}
        kept: set[str] = set()
        for other_id, other in readable.items():
            if other_id not in doomed or other_id in kept_alike:
                kept |= other.referenced()
        seen: set[str] = set()
        unique = {}
        for manifest_id in manifest_ids:
            found = readable.get(manifest_id)
            unique[manifest_id] = (found.referenced() if found else set()) - kept - seen
            seen |= unique[manifest_id]
        return unique

    def freed_by_deleting(
        self, manifest_ids: list[str], *, kept_alike: tuple[str, ...] | list[str] = ()
    ) -> dict[str, int]:
        """Stored bytes deleting these manifests frees (`unique_to`), per manifest."""
        unique = self.unique_to(manifest_ids, kept_alike=kept_alike)
        sizes = self.chunk_sizes() if any(unique.values()) else {}
        return {m: sum(sizes.get(c, 0) for c in chunks) for m, chunks in unique.items()}

    def unique_bytes(self, manifest_id: str) -> int:
        """Stored bytes only this manifest references: what deleting it frees after dedup."""
        return self.freed_by_deleting([manifest_id])[manifest_id]

    def stats(self) -> VaultStats:
        sizes = self.chunk_sizes()
        manifests, damaged = self.readable_manifests()
        return VaultStats(
            chunks=len(sizes),
            stored_bytes=sum(sizes.values()),
            manifests=len(manifests) + len(damaged),
            logical_bytes=sum(m.size for m in manifests),
            damaged_manifests=tuple(sorted(damaged)),
        )

    # --- writer sessions (see core.repo.gc) --------------------------------------------------

    def begin_session(
        self, session_id: str, *, on_wait: Callable[[str], None] | None = None
    ) -> WriterSession:
        """Announce a writer, then read what GC has condemned (the order GC relies on);
        `on_wait` hears what the writer waits for, if anything."""
        session = WriterSession(self, session_id)
        session.start(on_wait=on_wait)
        return session

    def gc_lock(self) -> tuple[ObjectInfo, str] | None:
        """The gc lock and its owner token (host:pid:...), or None when nobody holds it."""
        found = [i for i in self.store.list(GC_LOCK_KEY) if i.key == GC_LOCK_KEY]
        if not found:
            return None
        try:
            owner = str(json.loads(self.store.get(GC_LOCK_KEY, max_bytes=4096))["owner"])[:200]
        except ObjectMissing:
            return None
        except (StoreError, ValueError, KeyError, TypeError):
            owner = "?"  # unreadable: held by someone unknown until it lapses
        return found[0], owner

    def gc_lock_lease(self) -> float:
        """The lease the gc lock's holder declared (bounded), or 0 when it says none."""
        try:
            lease = json.loads(self.store.get(GC_LOCK_KEY, max_bytes=4096)).get("lease", 0)
        except (ObjectMissing, StoreError, ValueError, AttributeError):
            return 0.0
        return float(lease) if type(lease) in (int, float) and 0 < lease <= MAX_GC_LEASE else 0.0

    def store_clock(self) -> float:
        """The store's own time: the mtime it gives a probe object just written. Ages of
        sessions, locks and condemned lists are measured against it, never against this
        host's wall clock, so a clock an hour off can't make a live writer look dead."""
        key = f"{CLOCK_PROBES}{os.urandom(6).hex()}"
        self.store.put(key, b"")
        try:
            return max((info.mtime for info in self.store.list(key)), default=time.time())
        finally:
            self.store.delete(key)

    def live_sessions(self, *, now: float | None = None) -> list[str]:
        """Writers whose heartbeat is younger than the lease (by the store's clock) and whose
        process is not known to be gone: a writer killed on this host holds nothing up."""
        now = self.store_clock() if now is None else now
        return [
            info.key.split("/", 1)[1]
            for info in self.store.list("sessions/")
            if now - info.mtime < SESSION_LEASE_SECONDS and not self._session_gone(info.key)
        ]

    def _session_gone(self, key: str) -> bool:
        try:
            body = json.loads(self.store.get(key, max_bytes=4096))
            return holder_gone(f"{str(body['host'])[:100]}:{int(body['pid'])}")
        except ObjectMissing:
            return True
        except (StoreError, ValueError, KeyError, TypeError):
            return False  # unreadable: counts as live until its lease ends

    def condemned_lists(self) -> list[tuple[ObjectInfo, set[str]]]:
        """Every pending condemned list with the chunk ids it names."""
        return [(info, set(ids)) for info, ids in self.iter_condemned()]

    def iter_condemned(self) -> Iterator[tuple[ObjectInfo, list[str]]]:
        """Every pending condemned list with the chunk ids it names, one list at a time;
        damaged ones are skipped (and noted in `damaged_condemned`)."""
        for info in list(self.store.list("condemned/")):
            try:
                blob = self.store.get(info.key, max_bytes=MANIFEST_MAX_BYTES)
                sealed = self._unseal(blob, info.key, info.key)
                body = json.loads(bytes(self._unpack(sealed, info.key, MANIFEST_MAX_BYTES)))
                chunks = body["chunks"]
                if not isinstance(chunks, list) or not all(
                    isinstance(c, str) and CHUNK_ID.match(c) for c in chunks
                ):
                    raise ValueError("not a list of chunk ids")
            except ObjectMissing:
                continue
            except (IntegrityError, ValueError, KeyError, TypeError, UnicodeDecodeError):
                # damaged: writers and gc both skip it, so its chunks are never deleted
                self.damaged_condemned.add(info.key)
                continue
            except StoreError as exc:
                if exc.transient:
                    raise
                self.damaged_condemned.add(info.key)
                continue
            yield info, chunks

    def write_condemned(self, chunk_ids: Iterable[str]) -> str:
        """One condemned list (callers write at most CONDEMNED_PER_LIST ids in each)."""
        key = f"condemned/{int(time.time() * 1000):015d}-{os.urandom(4).hex()}"
        body = json.dumps({"chunks": sorted(chunk_ids)}).encode()
        inner, _ = self._pack(body, level=3)
        self.store.put(key, self._seal(inner, key), create_only=True)
        return key


class WriterSession:
    """A running backup or snapshot into a vault: a heartbeat object plus the condemned set."""

    def __init__(self, vault: Repository, session_id: str) -> None:
        self.vault = vault
        self.key = f"sessions/{session_id}"
        self.condemned: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        body = json.dumps({"pid": os.getpid(), "host": host_id(), "at": time.time()})
        self.vault.store.put(self.key, body.encode())

    def start(self, *, on_wait: Callable[[str], None] | None = None) -> None:
        self._beat()
        self._wait_for_gc(on_wait)  # after the beat: GC sees this writer, or it sees GC
        for _, ids in self.vault.condemned_lists():
            self.condemned |= ids
        self._thread = threading.Thread(target=self._run, daemon=True, name="vault-session")
        self._thread.start()

    def _wait_for_gc(self, on_wait: Callable[[str], None] | None) -> None:
        """A GC holding its lock may be deleting chunks this writer would reuse: wait until it
        is done, its holder is gone from this host, or one lease has passed on this host's
        own clock (a holder stops deleting after half its lease, whatever the lock's date
        says: a lock dated in the future costs one lease, not forever)."""
        started = time.monotonic()
        said = 0.0
        while True:
            held = self.vault.gc_lock()
            if held is None or holder_gone(held[1]):
                return
            # the longer of this host's lease and the holder's: it stops deleting within it
            lease = max(self.vault.gc_lease, self.vault.gc_lock_lease())
            left = started + lease - time.monotonic()
            if left <= 0:
                return
            if on_wait is not None and time.monotonic() - said >= 5:
                on_wait(
                    f"waiting for a garbage collection ({printable(held[1])}) to finish, "
                    f"at most {left:.0f} s more"
                )
                said = time.monotonic()
            self._beat()
            time.sleep(min(GC_WAIT_POLL_SECONDS, max(left, 0.01)))

    def _run(self) -> None:
        while not self._stop.wait(SESSION_HEARTBEAT_SECONDS):
            try:
                self._beat()
            except StoreError:
                continue

    def end(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(StoreError):  # a stale session only delays GC (its lease)
            self.vault.store.delete(self.key)
