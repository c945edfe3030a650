"""`vault check`: the structure of a vault, and a sample (or all) of its data read back.

As restic's `check [--read-data-subset]`: every manifest must read back whole, every chunk a
manifest names must exist, and a fraction of the distinct chunks is fetched and verified.
What is found missing or damaged is quarantined (never reused: the next backup of intact data
stores it again); the report says, by backup, what is lost and what was repaired since.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from core.base.errors import IntegrityError
from core.base.progress import ProgressReporter
from core.engine.pipeline import run_bounded
from core.repo.repository import Repository


@dataclass
class CheckReport:
    """What `vault check` found; `ok` only when nothing is lost."""

    manifests: int = 0
    damaged_manifests: dict[str, str] = field(default_factory=dict)
    chunks_referenced: int = 0
    chunks_read: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    lost_by_backup: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.damaged_manifests or self.missing or self.damaged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "manifests": self.manifests,
            "damaged_manifests": sorted(self.damaged_manifests),
            "chunks_referenced": self.chunks_referenced,
            "chunks_read": self.chunks_read,
            "missing_chunks": len(self.missing),
            "damaged_chunks": len(self.damaged),
            "repaired_chunks": len(self.repaired),
            "lost_by_backup": self.lost_by_backup,
        }

    def describe(self) -> str:
        """One line: what is lost, by backup, and what was repaired."""
        if self.ok:
            return (
                f"vault ok: {self.manifests} manifests, {self.chunks_referenced} chunks, "
                f"{self.chunks_read} read back, {len(self.repaired)} repaired by backups since "
                "the last check"
            )
        parts = [f"{backup} ({n} chunks)" for backup, n in sorted(self.lost_by_backup.items())]
        parts += [f"{m} (manifest damaged)" for m in sorted(self.damaged_manifests)]
        return (
            f"vault damaged: {len(self.missing)} chunks missing, {len(self.damaged)} damaged "
            f"(quarantined: the next backup of intact data stores them again); "
            f"lost in: {', '.join(parts)}"
        )


def check_vault(
    repo: Repository,
    *,
    read_fraction: float,
    reporter: ProgressReporter | None = None,
    cancel: threading.Event | None = None,
    workers: int = 4,
    seed: int | None = None,
) -> CheckReport:
    """Check structure, then read back `read_fraction` (0..1) of the distinct chunks."""
    report = CheckReport()
    manifests, report.damaged_manifests = repo.readable_manifests()
    report.manifests = len(manifests) + len(report.damaged_manifests)
    users: dict[str, list[str]] = {}
    for manifest in manifests:
        for chunk_id in manifest.referenced():
            users.setdefault(chunk_id, []).append(manifest.id)
    report.chunks_referenced = len(users)
    present = {info.key.rsplit("/", 1)[1] for info in repo.list_chunks()}
    report.missing = sorted(c for c in users if c not in present)
    report.repaired = sorted(repo.repaired(clear=True))
    for chunk_id in report.missing:
        repo.quarantine_chunk(chunk_id)
    candidates = sorted(c for c in users if c in present)
    picked = random.Random(seed).sample(candidates, round(len(candidates) * read_fraction))
    if reporter is not None:
        reporter.bytes_total = len(picked)
    lock = threading.Lock()

    def read(chunk_id: str) -> None:
        try:
            repo.get_chunk(chunk_id)
        except IntegrityError:
            repo.quarantine_chunk(chunk_id)
            with lock:
                report.damaged.append(chunk_id)
        with lock:
            report.chunks_read += 1
        if reporter is not None:
            reporter.add(done=1)

    run_bounded(picked, read, workers=workers, cancel=cancel)
    report.damaged.sort()
    for chunk_id in [*report.missing, *report.damaged]:
        for backup in users[chunk_id]:
            report.lost_by_backup[backup] = report.lost_by_backup.get(backup, 0) + 1
    return report
