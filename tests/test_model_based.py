"""Model-based testing of the block pipeline (RELIABILITY G): hypothesis drives random
sequences of writes, backups, interrupted backups, deletions, garbage collections, verifies
and restores against one real vault directory, and checks them against a plain model: every
backup the vault lists restores to exactly the bytes the disk had when it was taken."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from core.base.errors import Cancelled
from core.base.progress import ProgressReporter
from core.engine import pipeline
from core.repo.gc import collect_garbage
from core.repo.repository import Repository
from core.stores.local import LocalStore

CHUNK = 4096
CHUNKS = 12
SIZE = CHUNKS * CHUNK - 100  # a short last chunk too

pytestmark = pytest.mark.slow  # 100 random sequences of up to 40 steps


class VaultMachine(RuleBasedStateMachine):
    backups = Bundle("backups")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="bv-model-"))
        self.vault = Repository.init(LocalStore(self.dir / "vault"), chunk_size=CHUNK)
        self.disk = self.dir / "disk.img"
        with open(self.disk, "wb") as handle:
            handle.truncate(SIZE)
        self.model: dict[str, bytes] = {}
        self.counter = 0
        self.parent: str | None = None

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _new_id(self) -> str:
        self.counter += 1
        return f"backup-m{self.counter:05d}"

    @rule(
        chunk=st.integers(0, CHUNKS - 1),
        length=st.integers(1, 2 * CHUNK),
        kind=st.sampled_from(["random", "zeros", "repeat"]),
    )
    def write(self, chunk: int, length: int, kind: str) -> None:
        offset = min(chunk * CHUNK + 7, SIZE - 1)
        length = min(length, SIZE - offset)
        data = {
            "random": os.urandom(length),
            "zeros": bytes(length),
            "repeat": (b"blockvault" * length)[:length],
        }[kind]
        with open(self.disk, "r+b") as handle:
            handle.seek(offset)
            handle.write(data)

    @rule(target=backups)
    def backup(self) -> str:
        backup_id = self._new_id()
        manifest = pipeline.backup_device(
            self.disk, self.vault, manifest_id=backup_id, disk_meta={}, parent_id=self.parent,
            workers=2,
        )  # fmt: skip
        self.model[backup_id] = self.disk.read_bytes()
        assert manifest.size == SIZE
        self.parent = backup_id
        return backup_id

    @rule(after=st.integers(0, CHUNKS))
    def interrupted_backup(self, after: int) -> None:
        """Cancelled after `after` chunks: nothing is listed, its chunks are reused later."""
        cancel = threading.Event()
        reporter = ProgressReporter("job", "backing up", SIZE)
        seen = [0]

        def count(_event: object) -> None:
            seen[0] += 1
            if seen[0] > after:
                cancel.set()

        reporter.subscribers.append(count)
        reporter.max_rate = 1e9  # an event per chunk
        try:
            pipeline.backup_device(
                self.disk, self.vault, manifest_id=self._new_id(), disk_meta={},
                reporter=reporter, cancel=cancel, workers=2,
            )  # fmt: skip
        except Cancelled:
            return
        # it finished before the cancel landed: then it is a real backup
        self.model[f"backup-m{self.counter:05d}"] = self.disk.read_bytes()

    @rule(backup_id=backups)
    def delete(self, backup_id: str) -> None:
        self.vault.trash_manifest(backup_id)
        self.model.pop(backup_id, None)
        if self.parent == backup_id:
            self.parent = None

    @rule()
    def gc(self) -> None:
        collect_garbage(self.vault, grace_seconds=0)

    @rule(backup_id=backups, compare=st.booleans())
    def restore(self, backup_id: str, compare: bool) -> None:
        if backup_id not in self.model:
            return
        target = self.dir / "restored.img"
        if compare:
            shutil.copyfile(self.disk, target)  # restore onto a disk that has moved on
        else:
            with open(target, "wb") as handle:
                handle.truncate(SIZE)
        manifest = self.vault.read_manifest(backup_id)
        pipeline.restore_device(manifest, self.vault, target, compare_existing=compare, workers=2)
        assert target.read_bytes() == self.model[backup_id]

    @rule(backup_id=backups)
    def verify(self, backup_id: str) -> None:
        if backup_id in self.model:
            report = pipeline.verify_backup(self.vault.read_manifest(backup_id), self.vault)
            assert report.ok, report.describe()

    @invariant()
    def listed_backups_are_the_model(self) -> None:
        assert set(self.vault.list_manifest_ids()) == set(self.model)


VaultMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_vault_model = VaultMachine.TestCase
