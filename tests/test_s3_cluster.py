"""Issue 13, an S3 cluster: SeaweedFS as a real cluster on loopback (a master with replication
001, three volume servers, a filer, the S3 gateway; tests/support/seaweed_cluster.py).

A volume server SIGKILLed in the middle of a backup or a restore: the job completes (the
other copy of each volume is there) or fails with one clear line, and a second run completes
(resuming); the backup verifies and restores byte for byte, with the volume server still
down. Three hosts (separate processes, each with its own host id, home, catalog and pool)
back up into one vault at once while one of them runs `vault gc` over and over, and a volume
server dies and comes back beside them: every backup each host lists verifies and restores
byte for byte, and a fresh catalog imported from the vault holds every kept backup.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.hosts import Host, Step, sha_of
from tests.support.ledger import Ledger
from tests.support.seaweed import aws_environment
from tests.support.seaweed_cluster import VOLUMES, S3Cluster

pytestmark = [pytest.mark.slow, pytest.mark.s3]

MiB = 1 << 20
BIG_CHUNK = 1 << 20
BIG_CONFIG = f"[blockvault]\nchunk_size = {BIG_CHUNK}\ngc_grace_seconds = 0\nworkers = 2\n"
#: large enough that the transfer takes a few seconds on loopback (~40 MiB/s): the kill lands
#: in its middle
BIG = 96 * MiB
KILL_AT = 16 * MiB
JOB_TIMEOUT = 150


@pytest.fixture
def cluster(s3_cluster: S3Cluster) -> Iterator[S3Cluster]:
    """The session's cluster, its keys in the AWS environment (hosts made now inherit them);
    every volume server running again afterwards."""
    with aws_environment(s3_cluster):
        yield s3_cluster
    for i in range(VOLUMES):
        s3_cluster.restart_volume(i)


def test_the_clusters_client_signs_with_the_clusters_keys(cluster: S3Cluster) -> None:
    """`cluster.client()` lists the bucket even when boto3's default session already holds
    other keys, as it does in the full suite, where earlier tests' `boto3.client()` calls
    fixed it on the `weed mini` keys: the gateway refused those with InvalidAccessKeyId at
    the three-host test's first listing."""
    saved = boto3.DEFAULT_SESSION
    boto3.setup_default_session(
        aws_access_key_id="BVTESTNOTTHISCLUSTER",
        aws_secret_access_key="not-this-clusters-secret",
        region_name=cluster.region,
    )
    try:
        listing = cluster.client().list_objects_v2(Bucket=cluster.shared_bucket, MaxKeys=1)
    finally:
        boto3.DEFAULT_SESSION = saved
    assert listing["ResponseMetadata"]["HTTPStatusCode"] == 200


def vault_args(cluster: S3Cluster) -> list[str]:
    return [
        "--s3", f"s3://{cluster.shared_bucket}/{cluster.fresh_prefix()}",
        "--endpoint-url", cluster.endpoint_url,
        "--region", cluster.region,
        "--addressing-style", "path",
    ]  # fmt: skip


def one_clear_line(err: str) -> bool:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return len(lines) == 1 and "Traceback" not in err


def run_killing_a_volume(host: Host, cluster: S3Cluster, *argv: str) -> tuple[Step, int, dict]:
    """Run a job verb with --json in a child; SIGKILL the volume server holding the most
    files at the first progress line past KILL_AT. Returns the run, the server killed and
    the progress line at which it died."""
    victim = cluster.busiest_volume()
    child = host.spawn(*argv, "--json")
    started, at = time.monotonic(), {}
    try:
        for line in child.stdout:  # type: ignore[union-attr]
            event = json.loads(line) if line.startswith("{") else {}
            if not at and event.get("type") == "progress" and event["bytes_done"] >= KILL_AT:
                cluster.kill_volume(victim)
                at = event
                break
        out, err = child.communicate(timeout=JOB_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert at, f"{argv}: no progress past {KILL_AT} before the end"
    return Step(list(argv), child.returncode, out, err, started, time.monotonic()), victim, at


def job_result(step: Step) -> dict:
    assert step.code == 0, f"{step.argv}: {step.err.strip()}"
    return step.result()


def make_big_disk(tmp_path: Path, cluster: S3Cluster, seed: int) -> tuple[Host, str]:
    host = Host.make(tmp_path, "host", BIG_CONFIG)
    steps = host.steps(
        [
            ["vault", "add", "v", *vault_args(cluster)],
            ["disk", "create", "d", "--size", f"{BIG // MiB}M"],
            ["@write", "d", 0, BIG, seed],
        ]
    )
    assert all(s.code == 0 for s in steps), [s.err for s in steps]
    return host, steps[-1].sha or ""


def verified(host: Host, backup: str) -> bool:
    step = host.run("backup", "verify", backup, "--json", timeout=JOB_TIMEOUT)
    return step.code == 0 and step.result()["ok"]


def test_a_volume_server_killed_during_a_backup(
    tmp_path: Path, cluster: S3Cluster, fault_ledger: Ledger
) -> None:
    """SIGKILL of the busiest volume server a sixth of the way into a 96 MiB backup (1 MiB
    chunks): the backup completes or fails with one clear line and a second run completes,
    reusing what the first stored; it verifies and restores byte for byte while the volume
    server is still down."""
    host, disk_sha = make_big_disk(tmp_path, cluster, seed=131)
    first, victim, at = run_killing_a_volume(host, cluster, "backup", "create", "d", "--vault", "v")
    assert not cluster.volume(victim).alive
    clear = first.code == 0 or one_clear_line(first.err)
    listed_after_failure = [] if first.code == 0 else host.ok("backup", "list", "--all").json()
    if first.code == 0:
        done = first.result()
    else:
        again = host.run("backup", "create", "d", "--vault", "v", "--json", timeout=JOB_TIMEOUT)
        done = job_result(again)
        assert done["bytes_reused"] > 0, done  # resumed: the first run's chunks were kept
    ok = verified(host, done["id"])
    restore = host.run(
        "backup", "restore", done["id"], "--to-new", "copy", "--json", timeout=JOB_TIMEOUT
    )
    intact = restore.code == 0 and sha_of(restore.result()["path"]) == disk_sha
    fault_ledger.record(
        "kill",
        detected=clear,
        data_intact=ok and intact,
        silent_corruption=ok and restore.code == 0 and not intact,
        partial_visible=listed_after_failure != [],
        note=f"a volume server SIGKILLed at {at['bytes_done'] // MiB} MiB of a 96 MiB backup "
        f"into a SeaweedFS cluster (replication 001); first run exit {first.code}",
    )
    assert clear, f"not one clear line: {first.err}"
    assert at["bytes_done"] < BIG
    assert listed_after_failure == []
    assert ok, "backup verify failed with a volume server down"
    assert restore.code == 0, restore.err
    assert intact


def test_a_volume_server_killed_during_a_restore(
    tmp_path: Path, cluster: S3Cluster, fault_ledger: Ledger
) -> None:
    """A 96 MiB backup made on the whole cluster; SIGKILL of the busiest volume server a sixth
    of the way into its restore: the restore completes or fails with one clear line and a
    second run completes it; the disk is byte for byte the backup, which still verifies."""
    host, disk_sha = make_big_disk(tmp_path, cluster, seed=137)
    backup = job_result(
        host.run("backup", "create", "d", "--vault", "v", "--json", timeout=JOB_TIMEOUT)
    )
    argv = ("backup", "restore", backup["id"], "--to-new", "copy")
    first, victim, at = run_killing_a_volume(host, cluster, *argv)
    assert not cluster.volume(victim).alive
    clear = first.code == 0 or one_clear_line(first.err)
    half = None if first.code == 0 else host.ok("disk", "show", "copy").json()
    done = (
        first.result()
        if first.code == 0
        else job_result(host.run(*argv, "--json", timeout=JOB_TIMEOUT))
    )
    intact = sha_of(done["path"]) == disk_sha
    ok = verified(host, backup["id"])
    fault_ledger.record(
        "kill",
        detected=clear,
        data_intact=ok and intact,
        silent_corruption=not intact,
        partial_visible=half is not None and half["status"] == "available",
        note=f"a volume server SIGKILLed at {at['bytes_done'] // MiB} MiB of a 96 MiB restore "
        f"from a SeaweedFS cluster (replication 001); first run exit {first.code}",
    )
    assert clear, f"not one clear line: {first.err}"
    assert at["bytes_done"] < BIG
    if half is not None:
        assert half["restore_incomplete"] and half["status"] != "available", half
    assert intact
    assert ok, "backup verify failed with a volume server down"


# --- three hosts, one vault, gc beside them, a volume server lost and back ------------------

CHUNK = 262144
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\ngc_grace_seconds = 0\nworkers = 2\n"
HOSTS = ("host-a", "host-b", "host-c")


def workload(name: str, size: int, seed: int, turns: int) -> list[list]:
    """A full backup, then `turns` times: change a few chunks, back up; the first backup is
    deleted after the second (its own chunks become garbage for the gc running beside)."""
    steps: list[list] = [["@write", "data", 0, size, seed]]
    for n in range(turns + 1):
        if n:
            offset = (seed * 7 + n * 5) % (size // CHUNK - 2) * CHUNK + 17
            steps.append(["@write", "data", offset, CHUNK + 5000, seed + n])
        steps.append(
            ["backup", "create", "data", "--vault", "shared", "--name", f"{name}-{n}", "--json"]
        )
        if n == 1:
            steps.append(["backup", "delete", f"{name}-0", "--yes"])
    return steps


def made_backups(steps: list[Step]) -> dict[str, str]:
    """Backup id -> the sha256 of its disk when it was taken."""
    made, sha = {}, None
    for step in steps:
        sha = step.sha or sha
        if step.argv[:2] == ["backup", "create"]:
            assert step.code == 0, f"{step.argv}: {step.err}"
            made[step.result()["id"]] = sha
    return made


def manifests(client: Any, where: list[str]) -> int:
    bucket, prefix = where[1].removeprefix("s3://").split("/", 1)
    listing = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/manifests/")
    return listing.get("KeyCount", 0)


def test_three_hosts_back_up_into_one_vault_while_gc_runs_and_a_volume_server_dies(
    tmp_path: Path, cluster: S3Cluster, fault_ledger: Ledger
) -> None:
    """Hosts A, B and C (separate processes, own host id, home, catalog and pool) each back up
    a disk of their own into one vault on the cluster five times, deleting their first backup
    after the second, while host A runs `vault gc` (grace 0) over and over; the busiest volume
    server is SIGKILLed once three backups are in the vault, and restarted 2 s later. Every
    backup reports success; every backup each host lists verifies and restores byte for
    byte; a fresh home importing the vault finds exactly the kept backups of all three, and
    they verify; the gc loop never failed."""
    where = vault_args(cluster)
    hosts = {name: Host.make(tmp_path, name, CONFIG) for name in HOSTS}
    added, stop = tmp_path / "added", tmp_path / "stop-gc"
    gc_loop = hosts["host-a"].script(
        [["@wait", str(added)], ["@until", str(stop), 0.2, "vault", "gc", "shared", "--json"]]
    )
    size = 6 * MiB
    scripts = {}
    for n, (name, host) in enumerate(hosts.items()):
        steps = [
            ["vault", "add", "shared", *where],
            ["disk", "create", "data", "--size", f"{size // MiB}M"],
        ]
        if n == 0:
            steps.append(["@touch", str(added)])
        scripts[name] = host.script(steps + workload(name, size, 100 * (n + 1), turns=4))
    # the busiest volume server dies while they run, and comes back
    deadline, client = time.monotonic() + 60, cluster.client()
    while manifests(client, where) < 3:
        assert time.monotonic() < deadline, "three backups not made in 60 s"
        time.sleep(0.05)
    victim = cluster.busiest_volume()
    cluster.kill_volume(victim)
    running_at_kill = [name for name, script in scripts.items() if script.child.poll() is None]
    time.sleep(2.0)
    cluster.restart_volume(victim)
    done = {name: script.wait(timeout=JOB_TIMEOUT) for name, script in scripts.items()}
    stop.touch()
    _, *gcs = gc_loop.wait(timeout=JOB_TIMEOUT)
    failed = {
        name: [(s.argv, s.err.strip()) for s in steps if s.code]
        for name, steps in done.items()
        if any(s.code for s in steps)
    }
    if failed:
        fault_ledger.record(
            "network", detected=True, note="three hosts on a cluster vault: a job failed"
        )
    assert not failed, failed
    made = {name: made_backups(steps) for name, steps in done.items()}
    kept = {name: dict(list(ids.items())[1:]) for name, ids in made.items()}
    everything = {b for ids in kept.values() for b in ids}

    # each host lists its backups, verifies them all and restores each (A after one more gc)
    checks = {}
    for name, host in hosts.items():
        steps: list[list] = [["vault", "gc", "shared", "--json"]] if name == "host-a" else []
        steps += [["backup", "list", "--json"], ["@verify-all"]]
        for n, backup in enumerate(kept[name]):
            steps += [
                ["backup", "restore", backup, "--to-new", f"copy-{n}", "--json"],
                ["@sha", f"copy-{n}"],
            ]
        checks[name] = host.script(steps)
    listed, verified, restored = {}, {}, {}
    for name in HOSTS:
        steps = checks[name].wait(timeout=JOB_TIMEOUT)
        for n, step in enumerate(steps):
            if step.argv[:2] == ["vault", "gc"]:
                gcs.append(step)
            if step.argv[:2] == ["backup", "list"]:
                listed[name] = {row["id"] for row in step.json()}
            if step.argv[:2] == ["backup", "verify"]:
                verified[step.argv[2]] = step.code == 0 and step.result()["ok"]
            if step.argv[:2] == ["backup", "restore"]:
                backup, sha = step.argv[2], steps[n + 1].sha
                restored[backup] = step.code == 0 and sha == kept[name][backup]
    # a fresh home finds every kept backup of all three in the vault, and they verify
    fresh = Host.make(tmp_path, "fresh", CONFIG, host_id="host-a")
    imported = fresh.steps(
        [["vault", "add", "shared", *where], ["vault", "import", "shared", "--json"],
         ["@verify-all"]],
        timeout=JOB_TIMEOUT,
    )  # fmt: skip
    in_vault = {row["id"] for row in imported[1].json()}
    verified_fresh = {s.argv[2]: s.code == 0 and s.result()["ok"] for s in imported[2:]}

    intact = all(verified.values()) and all(restored.values()) and in_vault == everything
    intact = intact and all(verified_fresh.values()) and len(verified_fresh) == len(everything)
    fault_ledger.record(
        "network",
        detected=True,
        data_intact=intact,
        note=f"three hosts backing up into one SeaweedFS cluster vault, {len(gcs)} gc runs "
        f"beside them, a volume server SIGKILLed and restarted while {running_at_kill} ran",
    )
    assert running_at_kill, "every host had finished before the volume server died"
    assert all(g.code == 0 for g in gcs), [g.err for g in gcs if g.code]
    backups = [s for steps in done.values() for s in steps if s.argv[:2] == ["backup", "create"]]
    overlaps = [g for g in gcs if any(g.start < s.end and s.start < g.end for s in backups)]
    assert overlaps, "no gc ran while a backup ran"
    # what the gcs deleted is exactly the garbage: the two chunks each first backup alone held
    assert sum(g.result()["deleted_chunks"] for g in gcs) == 2 * len(HOSTS)
    assert len(everything) == 3 * 4
    assert listed == {name: set(ids) for name, ids in kept.items()}, listed
    assert len(verified) == len(everything) and all(verified.values()), verified
    assert len(restored) == len(everything) and all(restored.values()), restored
    assert in_vault == everything, (sorted(in_vault), sorted(everything))
    assert len(verified_fresh) == len(everything) and all(verified_fresh.values())
