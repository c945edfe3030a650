"""Model-based testing of the block pipeline (RELIABILITY G): hypothesis drives random
sequences of writes, backups, cancelled backups, backups and garbage collections killed with
SIGKILL in a child process, damage to stored chunks and manifests, deletions, garbage
collections, verifies and restores against one real vault directory, and checks them against
a plain model. Every backup the vault lists restores to exactly the bytes the disk had when it
was taken, unless the model damaged an object it needs: then verify names the damage and
restore refuses, never returning wrong bytes; the next backup of the intact data stores the
damaged chunk again. Every injected fault goes to the fault ledger (tests/support/ledger.py),
recorded from what the checks found before they are asserted.

The model knows each backup's bytes, hence its chunk ids and each chunk's plaintext; which
chunks it damaged (and which a verify named); which manifests it damaged. It reads stored
chunks with its own envelope decoder (tests/support/model_faults.py), so a referenced chunk
gone or changed without the model's doing (a gc that forgot a manifest) fails at once.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core.base.errors import Cancelled, IntegrityError
from core.base.progress import ProgressReporter
from core.engine import pipeline
from core.repo.gc import collect_garbage
from core.repo.manifest import Manifest
from core.repo.repository import MANIFEST_MAX_BYTES, Repository
from core.stores.local import LocalStore
from tests.support import model_faults
from tests.support.ledger import Ledger

CHUNK = 64 * 1024
CHUNKS = 12
SIZE = CHUNKS * CHUNK - 100  # a short last chunk too
#: a writer or gc left waiting on a dead gc's lock would wait its whole lease (600 s)
NOT_BLOCKED_SECONDS = 4.0
PICK = st.integers(0, 255)  # which backup (or object): taken modulo how many there are
LEDGER = Ledger("tests/test_model_based.py::VaultMachine")

pytestmark = pytest.mark.slow  # 30 random sequences of up to 30 steps: 15-70 s on 2 cores


def chunk_ids(data: bytes) -> list[str | None]:
    """The model's own chunking: BLAKE3 of each chunk, None for an all-zero one."""
    ids: list[str | None] = []
    for start in range(0, len(data), CHUNK):
        piece = data[start : start + CHUNK]
        ids.append(None if piece == bytes(len(piece)) else blake3.blake3(piece).hexdigest())
    return ids


@dataclass
class Check:
    """One backup restored and verified against the model's expectation."""

    backup_id: str
    expect_good: bool
    restored: str = ""  # exact | refused | wrong
    verified_ok: bool = False
    manifest_refused: bool = False
    named: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)  # damaged chunks it references
    text: str = ""

    @property
    def silent(self) -> bool:
        """Wrong bytes without an error, or a damaged backup that verified clean."""
        return self.restored == "wrong" or (not self.expect_good and self.verified_ok)

    @property
    def named_damage(self) -> bool:
        """A damaged backup: verify named every damaged chunk (or refused the manifest) and
        restore refused or wrote exactly the right bytes."""
        if self.expect_good or self.silent:
            return False
        return self.manifest_refused or (self.lost <= self.named and bool(self.lost))

    @property
    def passed(self) -> bool:
        if self.expect_good:
            return self.restored == "exact" and self.verified_ok
        return self.named_damage

    def __str__(self) -> str:
        want = "good" if self.expect_good else f"damaged (lost {sorted(c[:8] for c in self.lost)})"
        return (
            f"{self.backup_id}: expected {want}; restore {self.restored}, verify "
            f"{'ok' if self.verified_ok else 'not ok'}, named {sorted(c[:8] for c in self.named)}"
            f"{', manifest refused' if self.manifest_refused else ''} {self.text[:300]}"
        )


class VaultMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="bv-model-"))
        try:
            self.vault = Repository.init(LocalStore(self.dir / "vault"), chunk_size=CHUNK)
        except BaseException:  # no machine, so no teardown: leave nothing behind
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        #: a gc lock not taken over from a dead holder blocks for this long, not 600 s
        self.vault.gc_lease = 3 * NOT_BLOCKED_SECONDS
        self.disk = self.dir / "disk.img"
        noise = random.Random(0)  # the same bytes on every run: failures replay
        with open(self.disk, "wb") as handle:  # data in the first half, holes after
            for index in range(CHUNKS // 2):
                handle.write(noise.randbytes(CHUNK) if index % 2 else (b"bv" * CHUNK)[:CHUNK])
            handle.truncate(SIZE)
        #: every listed backup -> the disk's bytes when it was taken, and its chunk ids
        self.model: dict[str, bytes] = {}
        self.refs: dict[str, set[str]] = {}
        #: every chunk the vault may hold -> its plaintext, and a disk image holding it
        self.content: dict[str, bytes] = {}
        self.source: dict[str, bytes] = {}
        #: chunks the model damaged that are not stored whole again yet
        self.damaged: set[str] = set()
        #: of those, the ones a verify named (quarantined: the next backup stores them again)
        self.named: set[str] = set()
        #: listed backups whose manifest the model damaged
        self.bad_manifests: set[str] = set()
        #: named chunks the last backup held but did not store whole again (must stay empty)
        self.unhealed: set[str] = set()
        self.counter = 0
        self.parent: str | None = None

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the model ----------------------------------------------------------------------

    def _pick(self, pick: int) -> str | None:
        """One of the listed backups (a drawn number, so the draws never depend on state)."""
        listed = sorted(self.model)
        return listed[pick % len(listed)] if listed else None

    def _new_id(self) -> str:
        self.counter += 1
        return f"backup-m{self.counter:05d}"

    def _see(self, data: bytes) -> list[str | None]:
        """Remember the plaintext of every chunk of a disk image a job read."""
        ids = chunk_ids(data)
        for index, chunk_id in enumerate(ids):
            if chunk_id is not None:
                self.content.setdefault(chunk_id, data[index * CHUNK : (index + 1) * CHUNK])
                self.source.setdefault(chunk_id, data)
        return ids

    def _chunk_path(self, chunk_id: str) -> Path:
        return self.dir / "vault" / "chunks" / chunk_id[:2] / chunk_id

    def _stored_chunks(self) -> set[str]:
        return {path.name for path in (self.dir / "vault" / "chunks").glob("*/*")} & set(
            self.content
        )

    def _intact(self, chunk_id: str) -> bool:
        """What the chunk's file really holds, read by the model's own decoder."""
        try:
            blob = self._chunk_path(chunk_id).read_bytes()
        except FileNotFoundError:
            return False
        return model_faults.decode_stored(blob, CHUNK) == self.content[chunk_id]

    def _settle(self) -> None:
        """A damaged chunk whose file is whole again (a later writer stored it) is healed."""
        self.damaged = {c for c in self.damaged if not self._intact(c)}
        self.named &= self.damaged

    def _expect_good(self, backup_id: str) -> bool:
        return backup_id not in self.bad_manifests and not self.refs[backup_id] & self.damaged

    def _adopt(self, backup_id: str, data: bytes, manifest: Manifest) -> None:
        ids = chunk_ids(data)
        assert manifest.size == SIZE and manifest.chunk_size == CHUNK
        assert manifest.chunks == ids, "the manifest does not name the chunks of the disk"
        self.model[backup_id] = data
        self.refs[backup_id] = {c for c in ids if c}

    def _backup(self) -> str:
        """A backup of the disk as it is now. The damaged chunks a verify named that it holds
        must be stored whole again (I13): those that were not are left in `unhealed`."""
        backup_id = self._new_id()
        data = self.disk.read_bytes()
        holds = {c for c in self._see(data) if c}
        manifest = pipeline.backup_device(
            self.disk, self.vault, manifest_id=backup_id, disk_meta={}, parent_id=self.parent,
            workers=2,
        )  # fmt: skip
        self._adopt(backup_id, data, manifest)
        self.parent = backup_id
        self.unhealed = {c for c in holds & self.named if not self._intact(c)}
        self._settle()
        return backup_id

    # --- real checks: restore to a file and compare bytes, verify ----------------------

    def _restore(self, backup_id: str, *, compare: bool = False) -> tuple[str, str]:
        target = self.dir / "restored.img"
        if compare:
            shutil.copyfile(self.disk, target)  # restore onto a disk that has moved on
        else:
            target.unlink(missing_ok=True)
            with open(target, "wb") as handle:
                handle.truncate(SIZE)
        try:
            manifest = self.vault.read_manifest(backup_id)
            pipeline.restore_device(
                manifest, self.vault, target, compare_existing=compare, workers=2
            )
        except IntegrityError as exc:
            return "refused", str(exc)
        if target.read_bytes() == self.model[backup_id]:
            return "exact", ""
        return "wrong", "restore returned other bytes and no error"

    def _check(self, backup_id: str, *, restore_first: bool = True, compare: bool = False) -> Check:
        self._settle()
        check = Check(
            backup_id,
            expect_good=self._expect_good(backup_id),
            lost=self.refs[backup_id] & self.damaged,
        )

        def restore() -> None:
            check.restored, text = self._restore(backup_id, compare=compare)
            check.text += text

        def verify() -> None:
            try:
                manifest = self.vault.read_manifest(backup_id)
            except IntegrityError as exc:
                check.manifest_refused, check.text = True, check.text + str(exc)
                return
            report = pipeline.verify_backup(manifest, self.vault, workers=2)
            check.verified_ok = report.ok
            check.named = {d["chunk_id"] for d in report.damaged if "chunk_id" in d}
            if not report.ok:
                check.text += " " + report.describe()
            self.named |= check.named & self.damaged

        for step in (restore, verify) if restore_first else (verify, restore):
            step()
        return check

    def _check_all(self, *, restore_first: bool) -> list[Check]:
        return [self._check(b, restore_first=restore_first) for b in sorted(self.model)]

    # --- rules --------------------------------------------------------------------------

    @rule(
        chunk=st.integers(0, CHUNKS - 1),
        length=st.integers(1, 2 * CHUNK),
        kind=st.sampled_from(["random", "zeros", "repeat"]),
        seed=st.integers(0, 1 << 32),
    )
    def write(self, chunk: int, length: int, kind: str, seed: int) -> None:
        offset = min(chunk * CHUNK + 7, SIZE - 1)
        length = min(length, SIZE - offset)
        data = {
            "random": random.Random(seed).randbytes(length),
            "zeros": bytes(length),
            "repeat": (b"blockvault" * length)[:length],
        }[kind]
        with open(self.disk, "r+b") as handle:
            handle.seek(offset)
            handle.write(data)

    @rule()
    def backup(self) -> None:
        self._backup()
        assert not self.unhealed, (
            f"chunks named damaged were not stored again by a backup of their data: "
            f"{sorted(c[:16] for c in self.unhealed)}"
        )

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
        backup_id = self._new_id()
        data = self.disk.read_bytes()
        self._see(data)
        try:
            manifest = pipeline.backup_device(
                self.disk, self.vault, manifest_id=backup_id, disk_meta={},
                reporter=reporter, cancel=cancel, workers=2,
            )  # fmt: skip
        except Cancelled:
            return
        # it finished before the cancel landed: then it is a real backup
        self._adopt(backup_id, data, manifest)
        self._settle()

    @rule(pick=PICK)
    def delete(self, pick: int) -> None:
        """Any backup may be deleted, a damaged one too."""
        backup_id = self._pick(pick)
        if backup_id is None:
            return
        self._delete(backup_id)

    def _delete(self, backup_id: str) -> None:
        self.vault.trash_manifest(backup_id)
        del self.model[backup_id], self.refs[backup_id]
        self.bad_manifests.discard(backup_id)
        if self.parent == backup_id:
            self.parent = None

    @rule()
    def gc(self) -> None:
        problem = self._gc()
        assert problem is None, problem

    def _gc(self) -> str | None:
        """A gc; what went wrong, if anything. While a damaged manifest is listed it must stop
        before deleting anything: which chunks that backup needs is unknown."""
        try:
            collect_garbage(self.vault, grace_seconds=0)
        except IntegrityError as exc:
            if self.bad_manifests and "gc stopped before deleting anything" in str(exc):
                return None
            return f"gc failed: {exc}"
        if self.bad_manifests:
            return f"gc ran although the manifests of {sorted(self.bad_manifests)} are damaged"
        return None

    @rule(pick=PICK, compare=st.booleans())
    def restore(self, pick: int, compare: bool) -> None:
        backup_id = self._pick(pick)
        if backup_id is None:
            return
        self._settle()
        restored, text = self._restore(backup_id, compare=compare)
        if self._expect_good(backup_id):
            assert restored == "exact", f"{backup_id}: {restored} {text}"
        else:  # damaged: refused, or (onto a disk already holding them) exact; never wrong
            assert restored != "wrong", f"SILENT CORRUPTION: {backup_id} {text}"

    @rule(pick=PICK)
    def verify(self, pick: int) -> None:
        backup_id = self._pick(pick)
        if backup_id is None:
            return
        check = self._check(backup_id, restore_first=False)
        assert check.passed, str(check)

    # --- kill -9 ------------------------------------------------------------------------

    @rule(
        job=st.sampled_from(["backup", "gc"]),
        after_steps=st.one_of(st.integers(0, 2 * CHUNKS + 6), st.none()),
        delay_ms=st.integers(0, 30),
        then=st.sampled_from(["backup", "gc"]),
    )
    def kill(self, job: str, after_steps: int | None, delay_ms: int, then: str) -> None:
        """A backup or gc in a child process, SIGKILLed at its (after_steps+1)-th store step (a
        put or delete begun, a put's temp file about to be published) or after delay_ms:
        nothing half-done is listed (one killed past its commit point is whole and restores
        exactly), every listed backup restores, the next backup resumes (stores exactly the
        chunks the vault lacks) and the next gc and backup take over the dead gc's lock at
        once."""
        delay = delay_ms / (1000 if job == "backup" else 5000)  # a gc takes a few ms here
        where = f"after {after_steps} store steps" if after_steps is not None else f"{delay:.4f} s"
        if job == "backup":
            self._kill_backup(after_steps, delay, where)
        else:
            self._kill_gc(after_steps, delay, where, then)

    def _kill_backup(self, after_steps: int | None, delay: float, where: str) -> None:
        killed_id = self._new_id()
        data = self.disk.read_bytes()
        self._see(data)
        parent = self.parent

        def job() -> None:  # one worker when killed at a step: the same steps on every run
            pipeline.backup_device(
                self.disk, self.vault, manifest_id=killed_id, disk_meta={}, parent_id=parent,
                workers=1 if after_steps is not None else 2,
            )  # fmt: skip

        run = model_faults.run_killed(job, self.vault.store, after_steps=after_steps, delay=delay)
        assert run.error is None, f"the backup failed in its child:\n{run.error}"
        listed = set(self.vault.list_manifest_ids())
        event(f"kill backup: {'killed' if run.killed else 'finished first'}")
        partial_visible = False
        if killed_id in listed:  # it reached its commit point: then it must be whole
            try:
                manifest = self.vault.read_manifest(killed_id)
                whole = manifest.chunks == chunk_ids(data)
            except IntegrityError:
                whole = False
            if whole:
                self._adopt(killed_id, data, manifest)
                self.parent = killed_id
                restored, _ = self._restore(killed_id)
                whole = restored == "exact" or not self._expect_good(killed_id)
            partial_visible = not whole
        if not run.killed:  # it finished before the kill landed: no fault was injected
            assert killed_id in listed and not partial_visible
            return
        checks = self._check_all(restore_first=True)
        # the next backup resumes: it stores exactly the chunks the vault does not hold
        before = self._stored_chunks()
        resumed, why = False, ""
        try:
            resumed_id = self._backup()
            added = self._stored_chunks() - before
            check = self._check(resumed_id)
            checks.append(check)
            wanted = self.refs[resumed_id] - before
            resumed = check.passed and added == wanted and not self.unhealed
            why = "" if resumed else f"{check}; stored {len(added)} chunks of {len(wanted)}"
        except Exception as exc:
            why = f"the next backup failed: {exc!r}"
        intact = all(c.passed for c in checks if c.expect_good)
        silent = any(c.silent for c in checks)
        LEDGER.record(
            "kill",
            detected=not partial_visible and resumed,
            data_intact=intact,
            silent_corruption=silent,
            partial_visible=partial_visible,
            note=f"backup killed {where}"
            + (" (after its commit point)" if killed_id in listed else ""),
        )
        assert not partial_visible, f"the killed backup {killed_id} is listed but not whole"
        assert intact and not silent, "\n".join(str(c) for c in checks if not c.passed)
        assert resumed, why

    def _kill_gc(self, after_steps: int | None, delay: float, where: str, then: str) -> None:
        run = model_faults.run_killed(
            lambda: collect_garbage(self.vault, grace_seconds=0),
            self.vault.store,
            after_steps=after_steps,
            delay=delay,
        )
        if run.error is not None:  # only a damaged manifest stops a gc
            assert self.bad_manifests and "gc stopped before deleting anything" in run.error, (
                run.error
            )
        event(f"kill gc: {'killed' if run.killed else 'finished first'}")
        if not run.killed:
            return
        lock_left = self.vault.gc_lock() is not None
        checks = self._check_all(restore_first=False)
        # then a backup (a writer waits for a live gc only) and a gc, in either order
        problems = []
        for step in (then, "gc" if then == "backup" else "backup"):
            started = time.monotonic()
            try:
                if step == "backup":
                    checks.append(self._check(self._backup()))
                    if self.unhealed:
                        problems.append(f"named chunks not stored again: {self.unhealed}")
                elif problem := self._gc():
                    problems.append(problem)
            except Exception as exc:  # a Conflict: the dead holder's lock was not taken over
                problems.append(f"{step} after the killed gc: {exc!r}")
            waited = time.monotonic() - started
            if waited > NOT_BLOCKED_SECONDS:
                problems.append(f"{step} after the killed gc was blocked {waited:.1f} s")
        if self.vault.gc_lock() is not None:
            problems.append("the dead gc's lock is still there after a gc")
        taken_over = not problems
        intact = all(c.passed for c in checks if c.expect_good)
        silent = any(c.silent for c in checks)
        LEDGER.record(
            "kill",
            detected=taken_over,
            data_intact=intact,
            silent_corruption=silent,
            note=f"gc killed {where}{' holding its lock' if lock_left else ''}",
        )
        assert intact and not silent, "\n".join(str(c) for c in checks if not c.passed)
        assert taken_over, "; ".join(problems)

    # --- damage -------------------------------------------------------------------------

    @rule(
        what=st.sampled_from(["flip", "truncate", "delete"]),
        pick=PICK,
        position=st.integers(0, 1 << 20),
        xor=st.integers(1, 255),
        restore_first=st.booleans(),
        heal_now=st.booleans(),
    )
    def corrupt_chunk(
        self, what: str, pick: int, position: int, xor: int, restore_first: bool, heal_now: bool
    ) -> None:
        """Damage one stored chunk (one a backup needs, or an orphan a killed or cancelled
        backup left): verify must name it and restore refuse it in every backup that needs
        it, the others restore exactly; backing its data up again stores it whole again."""
        self._settle()
        readable_refs = [r for b, r in self.refs.items() if b not in self.bad_manifests]
        needed = set().union(*readable_refs)
        stored = sorted(self._stored_chunks() - self.damaged)
        if what == "delete":  # deleting a chunk no readable manifest names is what gc does
            stored = [c for c in stored if c in needed]
        if not stored:
            return
        victim = stored[pick % len(stored)]
        path = self._chunk_path(victim)
        if what == "delete":
            path.unlink()
            detail = "deleted"
        elif what == "truncate":
            detail = f"truncated to {model_faults.truncate(path, position)} bytes"
        else:  # a flip the envelope shrugs off (a zstd header bit) is no damage: the next one
            for attempt in range(64):
                offset = model_faults.flip_byte(path, position + attempt, xor)
                if not self._intact(victim):
                    break
                model_faults.flip_byte(path, position + attempt, xor)  # undo
            else:
                return
            detail = f"byte {offset} flipped"
        assert not self._intact(victim)
        self.damaged.add(victim)
        users = {b for b, refs in self.refs.items() if victim in refs}
        readable = users - self.bad_manifests
        checks = self._check_all(restore_first=restore_first)
        detected: bool | None = False
        unhealed: set[str] = set()
        broke = ""
        try:
            if readable:
                detected = all(c.named_damage for c in checks if c.backup_id in readable)
            else:  # nothing reads it: it shows when a backup of its data reuses it
                detail += ", an orphan"
                first = self._back_up_source(victim)
                if victim in self.refs[first] & self.damaged:  # reused unread
                    checks.append(self._check(first))
                    detected = checks[-1].named_damage
                    detail += " reused by the next backup, whose verify named it"
                else:  # condemned: the writer rescuing it rewrote it whole, nothing read it
                    detected = None
                    detail += " rewritten whole by the next backup before anything read it"
            if heal_now or not readable:  # the intact data backed up again heals it
                healer = self._back_up_source(victim)
                unhealed = self.unhealed
                checks.append(self._check(healer))
                for backup_id in sorted(users - self.bad_manifests):
                    checks.append(self._check(backup_id))  # good again once the chunk is
        except Exception as exc:  # recorded, then raised
            broke = f"; then: {exc!r}"[:500]
        intact = all(c.passed for c in checks if c.expect_good)
        silent = any(c.silent for c in checks)
        healed = victim not in self.damaged and not unhealed
        event(f"corrupt: {what}{'' if readable else ' (orphan)'}")
        LEDGER.record(
            "corrupt",
            detected=bool(detected),
            data_intact=intact,
            silent_corruption=silent,
            note=f"chunk {detail}, needed by {len(users)} backups"
            + (", healed by the next backup" if healed else "")
            + broke,
        )
        failed = [c for c in checks if not c.passed]
        assert not broke, broke
        assert not silent, "SILENT CORRUPTION:\n" + "\n".join(str(c) for c in failed)
        assert intact, "a backup the model expects good is not:\n" + "\n".join(map(str, failed))
        assert detected is not False, "the damage was not named:\n" + "\n".join(map(str, checks))
        assert not failed, "\n".join(str(c) for c in failed)
        if heal_now or not readable:
            assert healed, f"chunk {victim[:16]} was not stored again by a backup of its data"

    def _back_up_source(self, chunk_id: str) -> str:
        """Put a disk image holding the chunk back on the disk, and back it up."""
        self.disk.write_bytes(self.source[chunk_id])
        return self._backup()

    @rule(
        pick=PICK,
        position=st.integers(0, 1 << 16),
        xor=st.integers(1, 255),
        restore_first=st.booleans(),
        delete_it=st.booleans(),
    )
    def corrupt_manifest(
        self, pick: int, position: int, xor: int, restore_first: bool, delete_it: bool
    ) -> None:
        """Flip a byte of a backup's manifest: reading it fails naming the backup (verify and
        restore refuse), gc stops before deleting anything, the other backups restore; the
        damaged backup can be deleted, and gc runs again."""
        self._settle()
        candidates = sorted(set(self.model) - self.bad_manifests)
        if not candidates:
            return
        victim = candidates[pick % len(candidates)]
        path = self.dir / "vault" / "manifests" / victim
        original = model_faults.decode_stored(path.read_bytes(), MANIFEST_MAX_BYTES)
        assert original is not None
        for attempt in range(64):  # a flip the envelope shrugs off is no damage
            offset = model_faults.flip_byte(path, position + attempt, xor)
            if model_faults.decode_stored(path.read_bytes(), MANIFEST_MAX_BYTES) != original:
                break
            model_faults.flip_byte(path, position + attempt, xor)
        else:
            return
        self.bad_manifests.add(victim)
        checks = self._check_all(restore_first=restore_first)
        mine = next(c for c in checks if c.backup_id == victim)
        detected = mine.manifest_refused
        note = f"manifest byte {offset} flipped"
        if delete_it:  # a damaged backup can be deleted; then gc runs again
            self._delete(victim)
            problem = self._gc()
            if problem is not None:
                note += f"; after deleting it: {problem}"
                detected = False
            checks = [c for c in checks if c.backup_id != victim]
            checks += self._check_all(restore_first=restore_first)
            note += "; deleted, gc ran"
        intact = all(c.passed for c in checks if c.expect_good)
        silent = any(c.silent for c in checks)
        event("corrupt: manifest")
        LEDGER.record(
            "corrupt", detected=detected, data_intact=intact, silent_corruption=silent, note=note
        )
        failed = [c for c in checks if not c.passed]
        assert not silent, "SILENT CORRUPTION:\n" + "\n".join(str(c) for c in failed)
        assert detected and not failed, note + "\n" + "\n".join(str(c) for c in failed)

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def listed_backups_are_the_model(self) -> None:
        assert set(self.vault.list_manifest_ids()) == set(self.model)

    @invariant()
    def every_chunk_a_listed_backup_needs_is_whole(self) -> None:
        """Read by the model's own decoder: nothing the model did not damage went missing."""
        needed = set().union(*self.refs.values()) if self.refs else set()
        gone = sorted(c[:16] for c in needed - self.damaged if not self._intact(c))
        assert not gone, f"chunks lost without a fault: {gone}"


VaultMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    report_multiple_bugs=False,  # shrink one failure (a step costs up to ~100 ms)
    suppress_health_check=[HealthCheck.too_slow],
)
test_vault_model = VaultMachine.TestCase
