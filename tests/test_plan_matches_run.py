"""The plan shown is the change made: for every destructive verb, `--dry-run --json` and then
the real run, through the real CLI, and three checks on what really happened:

1. the same decision: a refused dry run means the run fails with the same one-line refusal,
   exits non-zero and changes nothing (catalog, audit log, bytes); an allowed one means it runs;
2. every create/overwrite/delete item of the plan has its audit event about that object (by
   id or name; objects the plan cannot name yet, like a safety snapshot, by a creation event
   of their kind), and no other object of a kind the verb touches appears or disappears;
3. the plan's `bytes_freed` ("frees X") is what the run really freed: the vault's stored bytes
   after `vault gc --grace 0` for backups and retention, the pool's allocated bytes for disks
   and snapshots on the chunk store, and the loop filesystem's free space (statvfs) for
   reflink clones, whose shared extents no per-file sum can account for.

Every check of a step is collected before failing, so one run names every disagreement.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.api import Blockvault
from tests.support.cli import CLI, Result
from tests.support.loopfs import MountError, free_bytes, loop_mount, unavailable

KiB, MiB = 1 << 10, 1 << 20
CHUNK = 256 * KiB
BLOCK = 4096  # the filesystem block: the most a per-file allocation may round by
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\ngc_grace_seconds = 0\n"
GC = ("vault", "gc", "--grace", "0")

# how each kind of object a plan item names is listed (read through the façade: one open
# catalog per look instead of a CLI process each, so a step costs a fraction of a second)
LISTS: dict[str, Callable[[Blockvault], list[dict]]] = {
    "server": lambda bv: bv.list_servers(),
    "disk": lambda bv: bv.list_disks(),
    "snapshot": lambda bv: bv.list_snapshots(),
    "backup": lambda bv: bv.list_backups(include_deleted_disks=True),
    "vault": lambda bv: bv.list_vaults(),
    "policy": lambda bv: bv.list_policies(),
}
DELETION_VERBS = ("delete", "forget", "remove")
# what a plan calls an object whose name is chosen only when it is made: a new backup
# (lifecycle.plan_backup) and the safety snapshot before an overwrite (safety_snapshot_item)
PLACEHOLDER_NAMES = ("", "safety snapshot")


# --- data --------------------------------------------------------------------------------


def write(path: str | Path, offset: int, size: int, *, seed: int) -> None:
    """`size` bytes of incompressible data at `offset` (random per seed, so chunks differ)."""
    import random

    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(random.Random(seed).randbytes(size))


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def job(cli: CLI, *argv: str) -> dict:
    """Run a job verb with --json and return its result line."""
    result = cli(*argv, "--json")
    assert result.code == 0, f"{argv}: {result.err}"
    return json.loads(result.out.strip().splitlines()[-1])


def one_line(text: str) -> str:
    """The one error line of stderr; with --json, the message of its one JSON object."""
    lines = [line for line in text.strip().splitlines() if line]
    if len(lines) != 1:
        return text
    if lines[0].startswith("{"):
        return f"blockvault: error: {json.loads(lines[0])['error']['message']}"
    return lines[0]


# --- what really happened: catalog, audit log, bytes -------------------------------------


@contextlib.contextmanager
def facade(cli: CLI) -> Iterator[Blockvault]:
    bv = Blockvault.open(home=cli.home)
    try:
        yield bv
    finally:
        bv.close()


def look(cli: CLI) -> tuple[dict[str, dict[str, str]], int]:
    """kind -> {id: name} of every object the catalog lists, and the newest audit event's id."""
    with facade(cli) as bv:
        objects = {kind: {r["id"]: r["name"] for r in rows(bv)} for kind, rows in LISTS.items()}
        newest = bv.events(limit=1)
    return objects, newest[0]["id"] if newest else 0


def events_since(cli: CLI, mark: int) -> list[dict]:
    with facade(cli) as bv:
        return [e for e in bv.events(limit=10_000) if e["id"] > mark][::-1]


def verb_of(event: dict) -> str:
    return event["action"].split(".")[1] if "." in event["action"] else event["action"]


def is_creation(event: dict) -> bool:
    return verb_of(event) == "create"


def is_deletion(event: dict) -> bool:
    return verb_of(event) in DELETION_VERBS


def placeholder(item: dict) -> bool:
    """An object the plan cannot name yet (its name is chosen when it is made)."""
    return not item["id"] and item["name"] in PLACEHOLDER_NAMES


def about(event: dict, item: dict) -> bool:
    return event["object_kind"] == item["kind"] and (
        (item["id"] and event["object_id"] == item["id"])
        or (item["name"] and event["object_name"] == item["name"])
    )


class TreeMeter:
    """The files under a folder and the bytes each takes: allocated (st_blocks * 512) in the
    pool, stored size in a vault (what `vault show` counts as stored_bytes).

    A step that only deletes frees the drop of the total; a step that also creates or
    overwrites (a safety snapshot, a rewritten image) frees what the files that went took."""

    def __init__(self, root: Path, *, allocated: bool = True) -> None:
        self.root = root
        self.allocated = allocated
        self.before: dict[str, int] = {}

    def read(self) -> dict[str, int]:
        if not self.root.exists():
            return {}
        found = {}
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                path = Path(folder) / name
                st = path.lstat()
                found[str(path)] = st.st_blocks * 512 if self.allocated else st.st_size
        return found

    def begin(self) -> None:
        self.before = self.read()

    def end(self, *, only_deletes: bool) -> tuple[int, int]:
        """(bytes freed, files touched)."""
        after = self.read()
        gone = self.before.keys() - after.keys()
        changed = {p for p in self.before.keys() & after.keys() if self.before[p] != after[p]}
        touched = len(gone) + len(after.keys() - self.before.keys()) + len(changed)
        if only_deletes:
            return sum(self.before.values()) - sum(after.values()), touched
        return sum(self.before[p] for p in gone), touched


class FreeSpaceMeter:
    """The free space of the filesystem holding the pool: reflink clones share extents, so
    only the filesystem knows what an unlink gave back. XFS frees unlinked extents in the
    background: read until the value holds still."""

    def __init__(self, mount: Path, pool: Path) -> None:
        self.mount = mount
        self.tree = TreeMeter(pool)
        self.free = 0

    def begin(self) -> None:
        self.tree.begin()
        self.free = self.settled()

    def settled(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        last, steady = free_bytes(self.mount), 0
        while steady < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
            now = free_bytes(self.mount)
            steady = steady + 1 if now == last else 0
            last = now
        return last

    def end(self, *, only_deletes: bool) -> tuple[int, int]:
        _, touched = self.tree.end(only_deletes=only_deletes)
        return self.settled() - self.free, touched


Meter = TreeMeter | FreeSpaceMeter


# --- one step: dry run, real run, checks --------------------------------------------------


@dataclass
class Step:
    """One verb to check. `argv` gets `--dry-run` for the plan and `--yes` for the run unless
    `dry_argv` / `run_argv` say otherwise (verbs without those flags)."""

    argv: tuple[str, ...]
    meter: Meter | None = None
    settle: tuple[str, ...] | None = None  # run before each measurement (vault gc --grace 0)
    # allocation measured two ways (FIEMAP extents in the plan, st_blocks or statvfs here) may
    # round differently: then at most one filesystem block per file touched; else exact
    rounding: bool = False
    dry_argv: tuple[str, ...] | None = None
    run_argv: tuple[str, ...] | None = None
    plan_of: Callable[[Any], dict] = lambda shown: shown


@dataclass
class Outcome:
    plan: dict
    dry: Result
    run: Result
    freed: int | None


def play(cli: CLI, step: Step, problems: list[str]) -> Outcome:
    label = " ".join(step.argv)

    def problem(text: str) -> None:
        problems.append(f"{label}: {text}")

    if step.settle:
        job(cli, *step.settle)
    before, mark = look(cli)
    if step.meter:
        step.meter.begin()

    dry = cli(*(step.dry_argv or (*step.argv, "--dry-run")), "--json")
    assert "Traceback" not in dry.err, dry.err
    plan = step.plan_of(json.loads(dry.out))
    items = plan["items"]
    if look(cli) != (before, mark):
        problem("the dry run changed something (catalog or audit log)")

    run = cli(*(step.run_argv or (*step.argv, "--yes")), "--json")
    assert "Traceback" not in run.err, run.err
    after, _ = look(cli)
    events = events_since(cli, mark)

    # (1) the same decision
    if plan["refusal"]:
        expected = f"blockvault: error: {plan['refusal']}"
        if dry.code == 0:
            problem("the dry run is refused but exits 0")
        if one_line(dry.err) != expected:
            problem(f"dry run says {dry.err.strip()!r}, not its refusal {expected!r}")
        if run.code == 0:
            problem(f"the dry run refused ({plan['refusal']}) but the run succeeded")
        elif one_line(run.err) != expected:
            problem(f"the run failed with {run.err.strip()!r}, the dry run with {expected!r}")
        if after != before:
            problem(f"a refused run changed the catalog: {before} -> {after}")
        if events:
            problem(f"a refused run wrote events: {[e['action'] for e in events]}")
    else:
        if dry.code != 0:
            problem(f"an allowed dry run exits {dry.code}: {dry.err.strip()}")
        if run.code != 0:
            problem(f"the dry run allowed it, the run failed: {run.err.strip()}")
        check_items(plan, before, after, events, problem)
        last = json.loads(run.out.strip().splitlines()[-1]) if run.code == 0 else {}
        if isinstance(last, dict) and "items" in last:  # a plan-returning verb shows what it ran
            ran = [(i["op"], i["kind"], i["id"], i["name"]) for i in last["items"]]
            if ran != [(i["op"], i["kind"], i["id"], i["name"]) for i in items]:
                problem(f"ran plan {ran} differs from the dry run's {items}")

    # (3) what it frees
    freed = None
    if step.meter:
        if step.settle:
            job(cli, *step.settle)
        only_deletes = all(i["op"] in ("delete", "keep", "detach") for i in items)
        freed, touched = step.meter.end(only_deletes=only_deletes)
        if plan["refusal"] and touched:
            problem(f"a refused run changed {touched} file(s) it measures")
        slack = BLOCK * touched if step.rounding else 0
        expected = 0 if plan["refusal"] else plan["bytes_freed"]
        at_most = any(w.startswith("frees at most this") for w in plan.get("warnings", ()))
        if at_most and 0 <= freed <= expected:
            pass  # the plan said so: what the safety snapshot keeps is freed when it expires
        elif abs(freed - expected) > slack:
            problem(
                f"plan frees {expected} B but the run freed {freed} B "
                f"(difference {freed - expected:+d} B, allowed ±{slack} B)"
            )
    return Outcome(plan, dry, run, freed)


def check_items(
    plan: dict,
    before: dict[str, dict[str, str]],
    after: dict[str, dict[str, str]],
    events: list[dict],
    problem: Callable[[str], None],
) -> None:
    """(2): each changing item has its event; nothing else of its kind came or went."""
    items = plan["items"]
    creations = [e for e in events if is_creation(e)]
    for item in items:
        what = f"{item['op']} {item['kind']} {item['name'] or '(new)'} {item['id']}".rstrip()
        if item["op"] == "delete":
            if not any(is_deletion(e) and about(e, item) for e in events):
                problem(f"plan item '{what}' has no deletion event")
        elif item["op"] == "overwrite":
            if not any(about(e, item) and not is_deletion(e) for e in events):
                problem(
                    f"plan item '{what}' has no event about that {item['kind']} "
                    f"(events: {[(e['action'], e['object_kind'], e['object_name']) for e in events]})"
                )
        elif item["op"] == "create":
            kin = [e for e in creations if e["object_kind"] == item["kind"]]
            match = next((e for e in kin if placeholder(item) or about(e, item)), None)
            if match is None:
                problem(f"plan item '{what}' has no creation event")
            else:
                creations.remove(match)
        elif item["op"] == "detach" and not any(
            about(e, item) and e["action"].endswith(".detach") for e in events
        ):
            problem(f"plan item '{what}' has no detach event")
        elif item["op"] in ("keep", "detach") and item["id"] not in after.get(item["kind"], {}):
            problem(f"plan item '{what}' is gone after the run")
    for extra in creations:
        problem(f"created {extra['object_kind']} {extra['object_name']} that the plan did not show")
    planned_deletes = {i["id"] for i in items if i["op"] == "delete"}
    for event in events:
        if is_deletion(event) and event["object_id"] not in planned_deletes:
            problem(
                f"deleted {event['object_kind']} {event['object_name']} ({event['action']}) "
                "that the plan did not show"
            )
    for kind in LISTS:
        gone = before[kind].keys() - after[kind].keys()
        planned = {i["id"] for i in items if i["op"] == "delete" and i["kind"] == kind}
        if gone != planned:
            names = sorted(before[kind][g] for g in gone)
            problem(f"{kind}s gone after the run: {names}; the plan deletes {sorted(planned)}")
        new = {after[kind][n] for n in after[kind].keys() - before[kind].keys()}
        made = [i for i in items if i["op"] == "create" and i["kind"] == kind]
        if len(new) != len(made):
            problem(f"{kind}s new after the run: {sorted(new)}; the plan creates {len(made)}")
        for item in made:
            if not placeholder(item) and item["name"] not in new:
                problem(f"the plan creates {kind} {item['name']}; the catalog has no new one")


# --- scenarios: each yields the steps it checks and gets their outcomes back ---------------

Scenario = Generator[Step, Outcome, None]


@dataclass
class Env:
    cli: CLI
    tmp: Path

    @property
    def pool(self) -> Path:
        return self.cli.home / "pool"

    def vault_dir(self, name: str = "local") -> Path:
        location = next(v for v in self.cli.ok("vault", "list") if v["name"] == name)["location"]
        return Path(location)


def pool_meter(env: Env) -> TreeMeter:
    return TreeMeter(env.pool)


def vault_meter(env: Env, name: str = "local") -> TreeMeter:
    return TreeMeter(env.vault_dir(name) / "chunks", allocated=False)


def disk(env: Env, name: str, size: int, *, seed: int, **extra: str) -> dict:
    flags = [x for k, v in extra.items() for x in (f"--{k}", v)]
    made = env.cli.ok("disk", "create", name, "--size", str(size), *flags)
    write(made["path"], 0, size, seed=seed)
    return made


def scenario_disk_delete(env: Env) -> Scenario:
    """Its image and its two snapshots go (shared chunks counted once); its backup stays, and
    another disk's snapshot is untouched."""
    cli = env.cli
    d1 = disk(env, "d1", 4 * MiB, seed=1)
    job(cli, "snapshot", "create", "d1", "--name", "s1")
    write(d1["path"], MiB, MiB, seed=2)
    job(cli, "snapshot", "create", "d1", "--name", "s2")
    job(cli, "backup", "create", "d1", "--name", "b1")
    disk(env, "other", MiB, seed=3)
    job(cli, "snapshot", "create", "other", "--name", "other-s1")
    outcome = yield Step(("disk", "delete", "d1"), meter=pool_meter(env), rounding=True)
    ops = sorted((i["op"], i["kind"], i["name"]) for i in outcome.plan["items"])
    assert ops == [
        ("delete", "disk", "d1"),
        ("delete", "snapshot", "s1"),
        ("delete", "snapshot", "s2"),
        ("keep", "backup", "b1"),
    ]
    assert outcome.plan["bytes_freed"] > 4 * MiB  # the image and the snapshots' chunks


def scenario_snapshot_delete_chunks(env: Env) -> Scenario:
    """sA and sB share all but two chunks: deleting sA frees only its two, sB then the rest."""
    cli = env.cli
    d1 = disk(env, "d1", 4 * MiB, seed=4)
    assert d1["snapshot_strategy"] == "chunks"
    sa = job(cli, "snapshot", "create", "d1", "--name", "sA")
    write(d1["path"], 2 * CHUNK, 2 * CHUNK, seed=5)
    job(cli, "snapshot", "create", "d1", "--name", "sB")
    first = yield Step(("snapshot", "delete", "sA"), meter=pool_meter(env))
    assert 2 * CHUNK <= first.plan["bytes_freed"] < sa["bytes_stored"] // 2  # its unique chunks
    second = yield Step(("snapshot", "delete", "sB"), meter=pool_meter(env))
    assert second.plan["bytes_freed"] >= 4 * MiB  # sB's every chunk, shared with nobody now
    store = Path(d1["path"]).parent / "snapshots" / "store" / "chunks"
    assert not [p for p in store.rglob("*") if p.is_file()]


def scenario_backup_delete(env: Env) -> Scenario:
    """bA and bB share all but two chunks: after `vault gc --grace 0` deleting bA freed its two
    chunks, and deleting bB everything."""
    cli = env.cli
    d1 = disk(env, "d1", 2 * MiB, seed=6)
    job(cli, "backup", "create", "d1", "--name", "bA")
    write(d1["path"], 0, 2 * CHUNK, seed=7)
    job(cli, "backup", "create", "d1", "--name", "bB")
    meter = vault_meter(env)
    first = yield Step(("backup", "delete", "bA"), meter=meter, settle=GC)
    assert 0 < first.plan["bytes_freed"] < cli.ok("vault", "show")["stored_bytes"]
    yield Step(("backup", "delete", "bB"), meter=meter, settle=GC)
    assert cli.ok("vault", "show")["stored_bytes"] == 0


def scenario_snapshot_rollback(env: Env) -> Scenario:
    cli = env.cli
    d1 = disk(env, "d1", 2 * MiB, seed=8)
    wanted = digest(d1["path"])
    job(cli, "snapshot", "create", "d1", "--name", "s1")
    write(d1["path"], CHUNK, 100_000, seed=9)
    yield Step(("snapshot", "rollback", "s1"), meter=pool_meter(env))
    assert digest(d1["path"]) == wanted


def scenario_disk_undo(env: Env) -> Scenario:
    """Undo after a rollback: the disk comes back and its safety snapshot goes, with the one
    chunk it held."""
    cli = env.cli
    d1 = disk(env, "d1", 2 * MiB, seed=10)
    job(cli, "snapshot", "create", "d1", "--name", "s1")
    write(d1["path"], CHUNK, 100_000, seed=11)
    changed = digest(d1["path"])
    job(cli, "snapshot", "rollback", "s1", "--yes")
    outcome = yield Step(("disk", "undo", "d1"), meter=pool_meter(env))
    assert digest(d1["path"]) == changed
    safety = [i for i in outcome.plan["items"] if i["op"] == "delete"]
    assert [i["kind"] for i in safety] == ["snapshot"] and safety[0]["id"]


def scenario_restore_to_original(env: Env) -> Scenario:
    cli = env.cli
    d1 = disk(env, "d1", 2 * MiB, seed=12)
    wanted = digest(d1["path"])
    b1 = job(cli, "backup", "create", "d1", "--name", "b1")
    write(d1["path"], 3 * CHUNK, 50_000, seed=13)
    yield Step(("backup", "restore", b1["id"], "--to-original"), meter=pool_meter(env))
    assert digest(d1["path"]) == wanted


def scenario_restore_to_new(env: Env) -> Scenario:
    cli = env.cli
    d1 = disk(env, "d1", 2 * MiB, seed=14)
    job(cli, "backup", "create", "d1", "--name", "b1")
    outcome = yield Step(("backup", "restore", "b1", "--to-new", "d1-copy"), meter=pool_meter(env))
    made = cli.ok("disk", "show", "d1-copy")
    assert outcome.plan["items"][0]["bytes"] == made["size"] == 2 * MiB
    assert digest(made["path"]) == digest(d1["path"])


def scenario_restore_to_new_existing_is_refused(env: Env) -> Scenario:
    """Regression: --to-new onto a disk that exists is refused by the dry run and by the run;
    the existing disk keeps every byte."""
    cli = env.cli
    disk(env, "d1", MiB, seed=15)
    job(cli, "backup", "create", "d1", "--name", "b1")
    d2 = disk(env, "d2", 2 * MiB, seed=16)
    kept = (digest(d2["path"]), os.stat(d2["path"]).st_blocks)
    outcome = yield Step(("backup", "restore", "b1", "--to-new", "d2"), meter=pool_meter(env))
    assert "already exists" in (outcome.plan["refusal"] or "")
    assert outcome.run.code != 0
    assert (digest(d2["path"]), os.stat(d2["path"]).st_blocks) == kept


def scenario_backup_create_incremental(env: Env) -> Scenario:
    """Regression: the dry run of an incremental does not claim to send the whole disk."""
    cli = env.cli
    d1 = disk(env, "d1", 4 * MiB, seed=17)
    job(cli, "backup", "create", "d1", "--name", "b1")
    write(d1["path"], 5 * CHUNK, 1000, seed=18)
    outcome = yield Step(
        ("backup", "create", "d1"),
        meter=vault_meter(env),
        run_argv=("backup", "create", "d1", "--name", "b2"),
    )
    (item,) = outcome.plan["items"]
    assert outcome.plan["route"].startswith("incremental from b1")
    sent = json.loads(outcome.run.out.strip().splitlines()[-1])["bytes_new"]
    assert sent <= CHUNK
    assert item["bytes"] < 4 * MiB and item["bytes"] <= sent, item


def system_server(env: Env) -> dict:
    """web1: system disk root (2 MiB, snapshot root-s1, then one chunk changed) and data disk
    data (1 MiB, snapshot data-s1)."""
    cli = env.cli
    cli.ok("server", "create", "web1")
    root = disk(env, "root", 2 * MiB, seed=19, server="web1", role="system")
    disk(env, "data", MiB, seed=20, server="web1", role="data")
    job(cli, "snapshot", "create", "root", "--name", "root-s1")
    job(cli, "snapshot", "create", "data", "--name", "data-s1")
    write(root["path"], 0, CHUNK, seed=21)
    return root


def scenario_server_reinstall_image(env: Env) -> Scenario:
    """A safety snapshot, the image over the system disk, then root-s1 deleted (with the one
    chunk only it held); data-s1 kept."""
    root = system_server(env)
    image = env.tmp / "debian.img"
    image.write_bytes(b"OSIMAGE!" * (600_000 // 8))
    outcome = yield Step(
        ("server", "reinstall", "web1", "--image", str(image)), meter=pool_meter(env)
    )
    doomed = [i["name"] for i in outcome.plan["items"] if i["op"] == "delete"]
    assert doomed == ["root-s1"]
    assert any("frees at most" in w for w in outcome.plan["warnings"])
    assert Path(root["path"]).read_bytes()[: image.stat().st_size] == image.read_bytes()


def scenario_server_os_changed(env: Env) -> Scenario:
    """root-s1 (the system disk's only snapshot, all its chunks) goes now; data-s1 stays."""
    system_server(env)
    outcome = yield Step(("server", "os-changed", "web1"), meter=pool_meter(env))
    assert [i["name"] for i in outcome.plan["items"] if i["op"] == "delete"] == ["root-s1"]


def scenario_server_delete(env: Env) -> Scenario:
    """Refused while it has disks; with --detach-disks the server goes and its disks stay."""
    system_server(env)
    refused = yield Step(("server", "delete", "web1"), meter=pool_meter(env))
    assert refused.plan["refusal"] and refused.run.code != 0
    yield Step(("server", "delete", "web1", "--detach-disks"), meter=pool_meter(env))
    assert [d["server"] for d in env.cli.ok("disk", "list")] == [None, None]


def scenario_vault_remove(env: Env) -> Scenario:
    """Refused while V holds a backup, by the dry run and the run; --force forgets the vault
    and its backup and frees nothing: the data stays in the store."""
    cli = env.cli
    cli.ok("vault", "add", "second", "--path", str(env.tmp / "v2"))
    disk(env, "d1", MiB, seed=22)
    job(cli, "backup", "create", "d1", "--vault", "second", "--name", "b1")
    meter = vault_meter(env, "second")
    refused = yield Step(("vault", "remove", "second"), meter=meter)
    assert "holds 1 backup" in (refused.plan["refusal"] or "") and refused.run.code != 0
    yield Step(("vault", "remove", "second", "--force"), meter=meter)
    assert "second" not in {v["name"] for v in cli.ok("vault", "list")}


def scenario_policy_delete(env: Env) -> Scenario:
    cli = env.cli
    disk(env, "d1", MiB, seed=23)
    cli.ok("policy", "create", "nightly", "--disk", "d1", "--keep-last", "1")
    cli.ok("policy", "run", "nightly", "--now")
    yield Step(("policy", "delete", "nightly"), meter=vault_meter(env), settle=GC)
    assert len(cli.ok("backup", "list")) == 1  # its backup is kept


def retention_plan(shown: list[dict]) -> dict:
    """`policy run --dry-run --json` as one plan: a new backup of each disk it backs up, then
    its retention items."""
    (entry,) = shown
    retention = entry["retention"]
    backups = [
        {"op": "create", "kind": "backup", "id": "", "name": "", "bytes": 0, "when": "now"}
        for _ in entry["backs_up"]
    ]
    return {**retention, "items": backups + retention["items"]}


def keep_last(cli: CLI, policy: str, count: int) -> None:
    """Lower a policy's keep-last on its row: the CLI has no `policy edit`, and a policy
    created with keep-last 1 would never hold three backups (each run applies retention)."""
    from sqlmodel import select

    from core.catalog.models import Policy

    with facade(cli) as bv, bv.ctx.catalog.writer() as session:
        row = session.exec(select(Policy).where(Policy.name == policy)).one()
        row.keep_last = count
        session.add(row)
        session.commit()


def scenario_policy_run_retention(env: Env) -> Scenario:
    """keep-last 1 and three policy backups, one chunk changed before each: what the dry run
    says retention expires (and frees) is what `policy run --now` then expires (and gc frees)."""
    cli = env.cli
    d1 = disk(env, "d1", 2 * MiB, seed=24)
    cli.ok("policy", "create", "nightly", "--disk", "d1", "--keep-last", "3")
    for index in range(3):
        write(d1["path"], index * CHUNK, 1000, seed=25 + index)
        cli.ok("policy", "run", "nightly", "--now")
    assert len(cli.ok("backup", "list")) == 3
    keep_last(cli, "nightly", 1)
    assert cli.ok("policy", "show", "nightly")["keep_last"] == 1
    outcome = yield Step(
        ("policy", "run", "nightly", "--now"),
        meter=vault_meter(env),
        settle=GC,
        dry_argv=("policy", "run", "nightly", "--now", "--dry-run"),
        run_argv=("policy", "run", "nightly", "--now"),
        plan_of=retention_plan,
    )
    ran = outcome.run.json()
    assert all(r["status"] in ("succeeded", "expired") for r in ran), ran
    assert len(cli.ok("backup", "list")) == 1  # keep-last 1


SCENARIOS = [
    scenario_disk_delete,
    scenario_snapshot_delete_chunks,
    scenario_backup_delete,
    scenario_snapshot_rollback,
    scenario_restore_to_original,
    scenario_restore_to_new,
    scenario_restore_to_new_existing_is_refused,
    scenario_disk_undo,
    scenario_backup_create_incremental,
    scenario_server_reinstall_image,
    scenario_server_os_changed,
    scenario_server_delete,
    scenario_vault_remove,
    scenario_policy_delete,
    scenario_policy_run_retention,
]
# out of the quick run (`-m "not slow"`): over ~2 s each on 2 busy cores (two gc rounds per step;
# four policy runs), and the ones over half a second, which keeps the quick run under 50 s
SLOW = (
    scenario_backup_delete,
    scenario_policy_run_retention,
    scenario_disk_delete,
    scenario_snapshot_delete_chunks,
    scenario_restore_to_original,
    scenario_restore_to_new,
    scenario_backup_create_incremental,
    scenario_server_reinstall_image,
    scenario_server_delete,
    scenario_disk_undo,
    scenario_policy_delete,
    scenario_server_os_changed,
    scenario_vault_remove,
)


def drive(cli: CLI, scenario: Scenario) -> None:
    """Play every step of a scenario; fail once, naming every disagreement found."""
    problems: list[str] = []
    try:
        step = next(scenario)
        while True:
            step = scenario.send(play(cli, step, problems))
    except StopIteration:
        pass
    assert not problems, "the plan disagrees with the run:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(
            s,
            id=s.__name__.removeprefix("scenario_"),
            marks=[pytest.mark.slow] if s in SLOW else [],
        )
        for s in SCENARIOS
    ],
)
def test_plan_matches_run(
    scenario: Callable[[Env], Scenario], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = CLI.with_config(tmp_path / "home", capsys, CONFIG)
    drive(cli, scenario(Env(cli, tmp_path)))


# --- reflink clones on XFS ---------------------------------------------------------------


@pytest.fixture
def xfs_pool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Env, Path]]:
    """A home whose pool (only) lives on a fresh loop-mounted XFS with reflink: the catalog
    and the vault stay off it, so the free space there moves only with the pool."""
    reason = unavailable("xfs")
    if reason:
        pytest.skip(f"xfs loop mount: {reason}")
    try:
        with loop_mount(tmp_path / "xfs", "xfs", 512 * MiB) as mount:
            cli = CLI.with_config(tmp_path / "home", capsys, CONFIG)
            (mount / "pool").mkdir()
            (cli.home / "pool").symlink_to(mount / "pool")
            yield Env(cli, tmp_path), mount
    except MountError as exc:
        pytest.skip(f"xfs loop mount: {exc}")


def scenario_snapshot_delete_reflink(env: Env, mount: Path) -> Scenario:
    """s1 and s2 are clones of d1 with 4 of its 16 MiB rewritten between them: deleting s1
    gives back those 4 MiB only s1 still holds, deleting s2 then gives back nothing (d1 shares
    every extent of it)."""
    cli = env.cli
    d1 = disk(env, "d1", 16 * MiB, seed=30)
    assert d1["snapshot_strategy"] == "reflink"
    job(cli, "snapshot", "create", "d1", "--name", "s1")
    write(d1["path"], 4 * MiB, 4 * MiB, seed=31)
    job(cli, "snapshot", "create", "d1", "--name", "s2")
    first = yield Step(
        ("snapshot", "delete", "s1"), meter=FreeSpaceMeter(mount, env.pool), rounding=True
    )
    assert abs(first.plan["bytes_freed"] - 4 * MiB) <= BLOCK
    second = yield Step(
        ("snapshot", "delete", "s2"), meter=FreeSpaceMeter(mount, env.pool), rounding=True
    )
    assert second.plan["bytes_freed"] <= BLOCK


@pytest.mark.root
@pytest.mark.slow  # a loop-mounted XFS, and free space read until XFS has freed in the background
def test_plan_matches_run_reflink_snapshot_delete(xfs_pool: tuple[Env, Path]) -> None:
    env, mount = xfs_pool
    drive(env.cli, scenario_snapshot_delete_reflink(env, mount))
