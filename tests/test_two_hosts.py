"""Two hosts on one vault prefix: separate processes, each with its own host id, home, catalog
and disk pool, backing up into one S3 prefix (or one local directory) at the same time while
one of them collects garbage over and over; then each host rebuilds its catalog from the vault
in a fresh home and restores the other's backups byte for byte. And a gc lock left behind by a
killed gc of host A: host B waits at most its lease and says why, host A takes over at once.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.hosts import Gates, Host, Script, Step
from tests.support.ledger import Ledger
from tests.support.seaweed import S3Server

MiB = 1 << 20
CHUNK = 262144
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\ngc_grace_seconds = 0\nworkers = 2\n"


def vault_args(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[str]:
    """`vault add shared ...` arguments: one local directory or one S3 prefix for all hosts."""
    if kind == "local":
        return ["--path", str(tmp_path / "shared-vault")]
    server: S3Server = request.getfixturevalue("s3_server")
    return [
        "--s3", f"s3://{server.shared_bucket}/{server.fresh_prefix()}",
        "--endpoint-url", server.endpoint_url,
        "--region", server.region,
        "--addressing-style", "path",
    ]  # fmt: skip


def workload(disk: str, size: int, seed: int) -> list[list]:
    """A full backup, an incremental after changing two chunks, the first one deleted (two
    chunks of garbage for the gc), another incremental after changing a few bytes."""

    def backup(n: int) -> list:
        return ["backup", "create", disk, "--vault", "shared", "--name", f"{disk}-{n}", "--json"]

    return [
        ["@write", disk, 0, size * 2 // 3, seed],
        ["@write", disk, size - 5000, 999, seed + 1],
        backup(1),
        ["@write", disk, 5 * CHUNK + 17, CHUNK + 5000, seed + 2],  # chunks 5 and 6
        backup(2),
        ["backup", "delete", f"{disk}-1", "--yes"],
        ["@write", disk, 9 * CHUNK + 3, 4096, seed + 3],
        backup(3),
    ]


def made_backups(steps: list[Step]) -> dict[str, str]:
    """Backup id -> the sha256 of its disk when it was taken (after the last write before it)."""
    made, sha = {}, None
    for step in steps:
        sha = step.sha or sha
        if step.argv[:2] == ["backup", "create"]:
            assert step.code == 0, f"{step.argv}: {step.err}"
            made[step.result()["id"]] = sha
    return made


def deleted_ids(steps: list[Step]) -> set[str]:
    names = {
        s.result()["name"]: s.result()["id"] for s in steps if s.argv[:2] == ["backup", "create"]
    }
    gone = set()
    for step in steps:
        if step.argv[:2] == ["backup", "delete"]:
            assert step.code == 0, f"{step.argv}: {step.err}"
            gone.add(names[step.argv[2]])
    return gone


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_two_hosts_back_up_into_one_vault_while_one_collects_garbage(
    tmp_path: Path, request: pytest.FixtureRequest, fault_ledger: Ledger, kind: str
) -> None:
    """Host A (a pool disk) and host B (a registered file), both disks named `data`, add one
    empty vault at the same moment and back up into it at once while host A runs `vault gc`
    (grace 0) over and over. Then each host, in a fresh home, imports the vault, verifies
    every backup (after one more gc) and restores the other host's byte for byte; the gc
    deleted exactly the garbage of the deleted backups."""
    where = vault_args(kind, tmp_path, request)
    a = Host.make(tmp_path, "host-a", CONFIG)
    b = Host.make(tmp_path, "host-b", CONFIG)
    registered = tmp_path / "host-b-data.img"
    with open(registered, "wb") as handle:
        handle.truncate(3 * MiB)
    added, stop = tmp_path / "added", tmp_path / "stop-gc"
    gc_loop = a.script(
        [["@wait", str(added)], ["@until", str(stop), 0.25, "vault", "gc", "shared", "--json"]]
    )
    work_a = a.script(
        [
            ["vault", "add", "shared", *where],
            ["@touch", str(added)],
            ["disk", "create", "data", "--size", "4M"],
            *workload("data", 4 * MiB, 10),
        ]
    )
    work_b = b.script(
        [
            ["vault", "add", "shared", *where],  # at the same moment as host A
            ["disk", "register", "data", "--path", str(registered)],
            *workload("data", 3 * MiB, 20),
        ]
    )
    steps_a, steps_b = work_a.wait(), work_b.wait()
    stop.touch()
    _, *gcs = gc_loop.wait()

    assert all(s.code == 0 for s in steps_a[:3] + steps_b[:2]), [s.err for s in steps_a + steps_b]
    made = {"host-a": made_backups(steps_a), "host-b": made_backups(steps_b)}
    gone = deleted_ids(steps_a) | deleted_ids(steps_b)
    kept = {host: {i: s for i, s in ids.items() if i not in gone} for host, ids in made.items()}
    everything = set(kept["host-a"]) | set(kept["host-b"])
    # each host, in a fresh home, rebuilds its catalog from the vault, verifies every backup
    # and restores the other's; host A runs one more gc first
    scripts = {}
    for me, other in (("host-a", "host-b"), ("host-b", "host-a")):
        steps: list[list] = [["vault", "add", "shared", *where]]
        if me == "host-a":
            steps.append(["vault", "gc", "shared", "--json"])
        steps += [["vault", "import", "shared", "--json"], ["@verify-all"]]
        for n, backup in enumerate(kept[other]):
            steps += [
                ["backup", "restore", backup, "--to-new", f"copy-{n}", "--json"],
                ["@sha", f"copy-{n}"],
            ]
        fresh = Host.make(tmp_path, f"{me}-new", CONFIG, host_id=me)
        scripts[me] = fresh.script(steps)
    imported, verified, restored, final_gc = {}, {}, {}, None
    for me, other in (("host-a", "host-b"), ("host-b", "host-a")):
        done = scripts[me].wait()
        final_gc = final_gc or next((s for s in done if s.argv[:2] == ["vault", "gc"]), None)
        verbs = [step.argv[:2] for step in done]
        imported[me] = {row["id"] for row in done[verbs.index(["vault", "import"])].json()}
        for n, step in enumerate(done):
            if step.argv[:2] == ["backup", "verify"]:
                verified[f"{me}: {step.argv[2]}"] = step.code == 0 and step.result()["ok"]
            if step.argv[:2] == ["backup", "restore"]:
                backup, sha = step.argv[2], done[n + 1].sha
                restored[f"{me} <- {backup}"] = step.code == 0 and sha == kept[other][backup]

    assert final_gc is not None and final_gc.code == 0, final_gc
    results = [g.result() for g in gcs if g.code == 0] + [final_gc.result()]
    deferred = sum(r["deferred_chunks"] for r in results)
    deleted = sum(r["deleted_chunks"] for r in results)
    intact = len(verified) == 2 * len(everything) and all(verified.values())
    intact = intact and len(restored) == len(everything) and all(restored.values())
    fault_ledger.record(
        "concurrency",
        detected=deferred > 0,
        data_intact=intact,
        note=f"two hosts backing up into one {kind} vault, {len(gcs)} gc runs beside them",
    )
    assert all(g.code == 0 for g in gcs), [g.err for g in gcs if g.code]
    backups = [s for s in steps_a + steps_b if s.argv[:2] == ["backup", "create"]]
    overlaps = [g for g in gcs if any(g.start < s.end and s.start < g.end for s in backups)]
    assert overlaps, "no gc ran while a backup ran"
    assert len(everything) == 4 and imported["host-a"] == imported["host-b"] == everything
    assert len(verified) == 8 and all(verified.values()), verified
    assert len(restored) == 4 and all(restored.values()), restored
    # what the gc deleted is exactly the garbage: the two chunks each deleted backup alone held
    assert deleted == 2 * len(gone) == 4, results
    assert final_gc.result()["manifests"] == 4


# --- a gc lock left behind by a killed gc ---------------------------------------------------


def gc_to_kill(host: Host, tmp_path: Path, name: str) -> tuple[Script, Gates]:
    """`vault gc` on `host`, started when the file `name` appears, paused right after it
    took the lock (started early: the CLI's import is paid before the race, not in it)."""
    gates = Gates(tmp_path / name, [("locked", "list", "condemned/")])
    start = tmp_path / f"start-{name}"
    return host.script([["@wait", str(start)], ["vault", "gc", "shared"]], env=gates.env), gates


def kill_holding_the_lock(gc: Script, gates: Gates) -> int:
    (gates.dir.parent / f"start-{gates.dir.name}").touch()
    gates.reached("locked", child=gc.child)
    os.kill(gc.child.pid, signal.SIGKILL)
    gc.kill()
    return gc.child.pid


def wait_for(path: Path, script: Script, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert script.child.poll() is None, f"{script.host.name}: script ended early"
        assert time.monotonic() < deadline, f"{path.name} not made in {timeout} s"
        time.sleep(0.01)


def lock_owner(vault: Path) -> str | None:
    lock = vault / "locks" / "gc"
    return json.loads(lock.read_text())["owner"] if lock.exists() else None


@pytest.mark.slow
def test_a_gc_lock_left_by_a_dead_process_of_host_a(tmp_path: Path, fault_ledger: Ledger) -> None:
    """Host B (lease 4 s) cannot know whether host A's process is alive: its gc is refused
    with who holds the lock and when it lapses, its backup waits at most the holder's lease
    (8 s, declared in the lock; longer than B's own), saying so, then both go on. Host A
    itself sees its process is gone and takes the lock over at once, without waiting."""
    vault = tmp_path / "shared-vault"
    a = Host.make(tmp_path, "host-a", CONFIG + "gc_lock_lease_seconds = 8\n")
    b = Host.make(tmp_path, "host-b", CONFIG + "gc_lock_lease_seconds = 4\n")
    gc_1, gates_1 = gc_to_kill(a, tmp_path, "gc-1")
    gc_2, gates_2 = gc_to_kill(a, tmp_path, "gc-2")
    ready, killed_1, killed_2 = (tmp_path / name for name in ("ready", "killed-1", "killed-2"))

    def setup(disk: str, seed: int, then: Path) -> list[list]:
        return [
            ["vault", "add", "shared", "--path", str(vault)],
            ["disk", "create", disk, "--size", "2M"],
            ["@write", disk, 0, 2 * MiB, seed],
            ["backup", "create", disk, "--vault", "shared"],
            ["@touch", f"{ready}-{disk}"],
            ["@wait", str(then)],
        ]

    on_b = b.script(
        [
            *setup("db", 1, killed_1),
            ["vault", "gc", "shared"],
            ["@write", "db", MiB, 4096, 3],
            ["backup", "create", "db", "--vault", "shared", "--json"],
            ["vault", "gc", "shared", "--json"],
        ]
    )
    on_a = a.script(
        [
            *setup("web", 2, killed_2),
            ["@write", "web", MiB, 4096, 4],
            ["backup", "create", "web", "--vault", "shared", "--json"],
            ["vault", "gc", "shared", "--json"],
            ["vault", "import", "shared", "--json"],  # and B's backups: verify them all
            ["@verify-all"],
        ]
    )
    wait_for(Path(f"{ready}-db"), on_b)
    wait_for(Path(f"{ready}-web"), on_a)
    first = kill_holding_the_lock(gc_1, gates_1)
    assert (lock_owner(vault) or "").startswith(f"host-a:{first}:")
    killed_1.touch()
    *set_up, refused, _, waited, after = on_b.wait()
    lock_after_b = lock_owner(vault)

    pid = kill_holding_the_lock(gc_2, gates_2)
    assert (lock_owner(vault) or "").startswith(f"host-a:{pid}:")
    killed_2.touch()
    steps_a = on_a.wait()
    set_up += steps_a[:6]
    _, quick, took_over, imported, *verifies = steps_a[6:]
    lock_after_a = lock_owner(vault)
    verified = [s.code == 0 and s.result()["ok"] for s in verifies]
    fault_ledger.record(
        "concurrency",
        detected=refused.code != 0 and "host-a" in refused.err,
        data_intact=all(verified) and len(verified) == 4,
        note="gc lock left by a killed gc of host A, met by host B and by host A",
    )
    assert all(step.code == 0 for step in set_up), [step.err for step in set_up]
    # host B: refused with who and how long, waited at most its lease saying so, then went on
    assert refused.code != 0 and "Traceback" not in refused.err
    assert "holds this vault's lock" in refused.err and "lapses after 8 s" in refused.err
    assert f"garbage collection by host-a:{first}:" in refused.err, refused.err
    assert waited.code == 0 and waited.result()["status"] == "available", waited.err
    said = [m for m in waited.messages() if "waiting for a garbage collection" in m]
    assert said and f"host-a:{first}:" in said[0] and "at most 8 s more" in said[0], (
        waited.messages()
    )
    assert 7.5 < waited.end - waited.start < 8 + 5  # the holder's lease, and the backup
    assert after.code == 0 and lock_after_b is None, after.err
    # host A: its own dead process's lock is taken over at once, whatever its lease says
    assert quick.code == 0 and quick.end - quick.start < 10, quick.err
    assert not [m for m in quick.messages() if "waiting" in m], quick.messages()
    assert took_over.code == 0 and took_over.end - took_over.start < 10, took_over.err
    assert imported.code == 0 and len(imported.json()) == 2
    assert lock_after_a is None
    assert all(verified) and len(verified) == 4


@pytest.mark.slow
def test_a_writer_with_a_shorter_lease_loses_nothing_to_a_gc_still_deleting(
    tmp_path: Path, fault_ledger: Ledger
) -> None:
    """Host A (lease 600 s) is deleting condemned chunks; host B (lease 3 s) backs up the same
    bytes again, so it reuses, and rescues, exactly those chunks."""
    vault = tmp_path / "shared-vault"
    a = Host.make(tmp_path, "host-a", CONFIG)
    b = Host.make(tmp_path, "host-b", CONFIG + "gc_lock_lease_seconds = 3\n")
    setup = b.steps(
        [
            ["vault", "add", "shared", "--path", str(vault)],
            ["disk", "create", "db", "--size", "1M"],
            ["@write", "db", 0, MiB, 5],
            ["backup", "create", "db", "--vault", "shared", "--name", "db-1"],
            ["backup", "delete", "db-1", "--yes"],
            ["vault", "gc", "shared", "--grace", "3600", "--json"],  # condemns its 4 chunks
        ]
    )
    assert all(s.code == 0 for s in setup) and setup[-1].result()["condemned_chunks"] == 4
    gates = Gates(tmp_path / "gates", [("deleting", "delete", "chunks/")])
    gc = a.script(
        [["vault", "add", "shared", "--path", str(vault)], ["vault", "gc", "shared", "--json"]],
        env=gates.env,
    )
    rescued, collected = tmp_path / "rescued", tmp_path / "collected"
    writer = b.script(
        [
            ["@wait", str(gates.dir / "reached-deleting")],  # lock held, chunks listed
            ["backup", "create", "db", "--vault", "shared", "--json"],  # the same bytes again
            ["@touch", str(rescued)],
            ["@wait", str(collected)],
            ["@verify-all"],
        ]
    )
    gates.reached("deleting", child=gc.child)
    # B gives up waiting after its own lease and rescues; then A goes on deleting (a B that
    # waits for as long as A may delete is still waiting after this, and that is fine too)
    deadline = time.monotonic() + 3 + 12
    while not rescued.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    gates.go("deleting")
    _, gc_step = gc.wait()
    collected.touch()
    _, rescue, _, _, verify = writer.wait()
    intact = verify.code == 0 and verify.result()["ok"]
    fault_ledger.record(
        "concurrency",
        detected=gc_step.code != 0,
        data_intact=intact,
        note="a writer with a 3 s lease beside a gc with a 600 s lease, deleting",
    )
    assert rescue.code == 0 and any("waiting for a garbage" in m for m in rescue.messages())
    assert intact, f"{verify.err.strip()} (gc: {gc_step.out.strip()[-300:]})"
