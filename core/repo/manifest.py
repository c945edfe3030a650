"""The manifest of a backup or snapshot: a self-describing fixed index (Proxmox's shape).

A header (format, kind, source disk metadata, size, chunk size, whole-disk digest, parent,
stats) and one entry per chunk index: the chunk id, or None for an all-zero chunk. Stored
(version 2), a run of zero chunks is one integer, its length: a sparse terabyte disk's manifest
is as small as its data. Version 1 (every None written out) is still read. The
whole-disk digest is BLAKE3 over every chunk's content id in order (zero chunks included as
the id of their zero bytes), so it changes with any byte of the disk and is checked again,
from the bytes actually restored, at the end of every restore.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.base.errors import IntegrityError
from core.base.units import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES

FORMAT = "blockvault-manifest"
VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_CHUNKS = 1 << 24  # entries a manifest may hold (~128 MiB of index in memory): more is damage
CHUNK_ID = re.compile(r"^[0-9a-f]{64}$")
MAX_DISK_BYTES = 1 << 50  # 1 PiB: a manifest claiming more is damage, not a disk
MANIFEST_ID = re.compile(r"^[a-z]+-[0-9a-z]{4,32}$")


@dataclass
class Stats:
    """What a transfer did: bytes new to the vault, reused, zero (holes), stored after zstd."""

    bytes_new: int = 0
    bytes_reused: int = 0
    bytes_zero: int = 0
    bytes_stored: int = 0
    duration: float = 0.0


@dataclass
class Manifest:
    """One backup or snapshot, as stored in the vault (see module doc)."""

    id: str
    kind: str  # backup | snapshot
    size: int
    chunk_size: int
    chunks: list[str | None]
    digest: str
    disk: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    parent: str | None = None
    stats: Stats = field(default_factory=Stats)
    base: dict[str, Any] | None = None  # a backup holding the chunks not stored here
    warnings: list[str] = field(default_factory=list)  # e.g. the source changed while read
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    copy_of: str | None = None  # a replica: the backup (in another vault) it was copied from

    def chunk_length(self, index: int) -> int:
        """Bytes covered by chunk `index` (the last one may be short)."""
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def referenced(self) -> set[str]:
        """Distinct chunk ids this manifest needs."""
        return {c for c in self.chunks if c}

    def to_bytes(self) -> bytes:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "disk": self.disk,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "digest": self.digest,
            "parent": self.parent,
            "stats": asdict(self.stats),
            "base": self.base,
            "warnings": self.warnings,
            "chunks": encode_chunks(self.chunks),
        }
        if self.copy_of is not None:  # only replicas carry it: other manifests are unchanged
            body["copy_of"] = self.copy_of
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, expected_id: str) -> Manifest:
        """Parse and validate; anything malformed is an IntegrityError naming the manifest."""
        where = f"manifest {expected_id}"
        try:
            body = json.loads(data)
            if not isinstance(body, dict) or body.get("format") != FORMAT:
                raise ValueError("not a blockvault manifest")
            version = body.get("version")
            if version not in READABLE_VERSIONS:
                raise ValueError(f"unsupported manifest version {str(version)[:30]}")
            if body["id"] != expected_id:
                raise ValueError(f"it names itself {body['id']!r}")
            size, chunk_size = body["size"], body["chunk_size"]
            chunks = body["chunks"]
            if type(size) is not int or not 0 <= size <= MAX_DISK_BYTES:
                raise ValueError(f"size {str(size)[:30]} is out of range (0..{MAX_DISK_BYTES})")
            if type(chunk_size) is not int or not MIN_CHUNK_BYTES <= chunk_size <= MAX_CHUNK_BYTES:
                raise ValueError(f"chunk size {str(chunk_size)[:30]} is out of range")
            if not isinstance(chunks, list):
                raise ValueError("its chunk list is not a list")
            count = -(-size // chunk_size)
            if count > MAX_CHUNKS:
                raise ValueError(f"{count} chunks are more than a manifest holds ({MAX_CHUNKS})")
            chunks = decode_chunks(chunks, count, runs=version >= 2)
            raw_stats = body.get("stats") or {}
            if not isinstance(raw_stats, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in raw_stats.values()
            ):
                raise ValueError("bad stats")
            stats = Stats(**{k: v for k, v in raw_stats.items() if k in Stats.__dataclass_fields__})
            disk, base = body.get("disk") or {}, body.get("base")
            if not isinstance(disk, dict) or not isinstance(base, dict | None):
                raise ValueError("bad disk or base metadata")
            created = datetime.fromisoformat(body["created_at"])
            copy_of = body.get("copy_of")
            if copy_of is not None and not (type(copy_of) is str and MANIFEST_ID.match(copy_of)):
                raise ValueError(f"bad copy_of {str(copy_of)[:40]!r}")
            return cls(
                id=body["id"],
                kind=str(body["kind"]),
                size=size,
                chunk_size=chunk_size,
                chunks=chunks,
                digest=str(body["digest"]),
                disk=dict(disk),
                name=body.get("name"),
                parent=body.get("parent"),
                stats=stats,
                base=base,
                warnings=[str(w) for w in body.get("warnings") or [] if isinstance(w, str)],
                created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
                copy_of=copy_of,
            )
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise IntegrityError(f"{where} is damaged: {exc}") from None


def encode_chunks(chunks: list[str | None]) -> list[str | int]:
    """The stored chunk list: ids as they are, each run of zero chunks as its length."""
    out: list[str | int] = []
    for entry in chunks:
        if entry is not None:
            out.append(entry)
        elif out and type(out[-1]) is int:
            out[-1] += 1
        else:
            out.append(1)
    return out


def decode_chunks(stored: list[Any], count: int, *, runs: bool) -> list[str | None]:
    """One entry per chunk index from the stored list, checked entry by entry: a run may not
    reach past `count` (no list is grown beyond what the disk's size allows)."""
    chunks: list[str | None] = []
    for entry in stored:
        if type(entry) is str and CHUNK_ID.match(entry):
            chunks.append(entry)
        elif entry is None and not runs:
            chunks.append(None)
        elif runs and type(entry) is int and 0 < entry <= count - len(chunks):
            chunks.extend([None] * entry)
        else:
            raise ValueError(f"bad chunk entry {str(entry)[:80]!r}")
        if len(chunks) > count:
            break
    if len(chunks) != count:
        raise ValueError("chunk count does not match the size")
    return chunks
