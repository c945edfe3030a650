"""Several admin hosts on one catalog and one vault (issue 13): separate processes, each with
its own host id, home and disk pool, sharing the catalog (one SQLite file, or a real
PostgreSQL database) and one local vault directory.

Each host sees the others' servers, disks, backups and jobs, with the host they belong to;
disk-level operations on another host's disk are refused with one line naming that host; a
backup made on one host restores into a new disk in another host's pool; and a host that
vanishes in the middle of a backup has its claim reclaimed by another host once the job's
lease runs out, its half-made backup never listed, and the backup made again when it returns.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.hosts import Gates, Host, Step

CHUNK = 65536
LEASE = 3
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\nworkers = 2\njob_lease_seconds = {LEASE}\n"
CATALOG_ENV = "BLOCKVAULT_CATALOG"

pytestmark = pytest.mark.slow


def shared_hosts(tmp_path: Path, backend: str, *names: str) -> list[Host]:
    """Hosts with their own home and pool, on one catalog: the session's PostgreSQL database
    the `catalog_backend` fixture chose, or one SQLite file none of the homes holds."""
    url = (
        os.environ[CATALOG_ENV]
        if backend == "postgresql"
        else f"sqlite:///{tmp_path}/shared.sqlite"
    )
    hosts = [Host.make(tmp_path, name, CONFIG) for name in names]
    for host in hosts:
        host.env[CATALOG_ENV] = url
    return hosts


def refused(step: Step, *words: str) -> str:
    """The one line a refused command printed (no traceback), checked for `words`."""
    assert step.code != 0, f"{step.argv} should have been refused: {step.out}"
    message = step.err.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, f"{step.argv}: {word!r} not in {message!r}"
    return message


def by_name(step: Step) -> dict[str, dict]:
    return {row["name"]: row for row in step.json()}


def test_hosts_share_a_catalog_and_a_vault_and_keep_to_their_own_disks(
    tmp_path: Path, catalog_backend: str
) -> None:
    alpha, beta = shared_hosts(tmp_path, catalog_backend, "alpha", "beta")
    made = alpha.steps(
        [
            ["vault", "add", "shared", "--path", str(tmp_path / "vault"), "--json"],
            ["server", "create", "web1", "--json"],
            ["disk", "create", "web1-data", "--size", "1MiB", "--server", "web1", "--json"],
            ["@write", "web1-data", 0, 700_000, 1],
            ["backup", "create", "web1-data", "--vault", "shared", "--name", "nightly", "--json"],
        ]
    )
    assert all(step.code == 0 for step in made), [s.err for s in made]
    source_sha = made[3].sha
    backup_id = made[4].result()["id"]

    seen = beta.steps(
        [
            ["server", "list", "--json"],
            ["disk", "list", "--json"],
            ["backup", "list", "--json"],
            ["job", "list", "--json"],
            ["snapshot", "create", "web1-data", "--json"],
            ["backup", "create", "web1-data", "--vault", "shared", "--json"],
            ["disk", "delete", "web1-data", "--yes", "--json"],
            ["backup", "restore", "nightly", "--to-original", "--yes", "--json"],
            ["disk", "create", "beta-disk", "--size", "1MiB", "--server", "web1", "--json"],
            ["backup", "restore", "nightly", "--to-new", "copy", "--json"],
            ["@sha", "copy"],
            ["disk", "list", "--json"],
        ]
    )
    servers, disks, backups, jobs = seen[0], seen[1], seen[2], seen[3]
    assert by_name(servers)["web1"]["host"] == "alpha"
    assert by_name(disks)["web1-data"]["host"] == "alpha"
    assert [b["id"] for b in backups.json()] == [backup_id]
    assert {(j["kind"], j["host"], j["status"]) for j in jobs.json()} == {
        ("backup", "alpha", "succeeded")
    }
    for step in seen[4:8]:
        refused(step, "web1-data", "lives on host alpha", "beta")
    refused(seen[8], "server web1 lives on host alpha")

    assert seen[9].code == 0, seen[9].err
    assert seen[10].sha == source_sha  # alpha's backup, restored byte for byte on beta
    copy = by_name(seen[11])["copy"]
    assert copy["host"] == "beta" and Path(copy["path"]).is_relative_to(beta.home)
    assert "beta-disk" not in by_name(seen[11])

    back = alpha.steps(
        [
            ["snapshot", "create", "copy", "--json"],
            ["@sha", "web1-data"],
            ["snapshot", "create", "web1-data", "--json"],
        ]
    )
    refused(back[0], "copy", "lives on host beta")
    assert back[1].sha == source_sha  # nothing beta tried touched alpha's disk
    assert back[2].code == 0, back[2].err

    # one policy over disks of both hosts: each host backs up its own, none is refused
    policy = ["policy", "create", "both", "--every", "1h", "--vault", "shared"]
    alpha_run = alpha.steps(
        [
            [*policy, "--disk", "web1-data", "--disk", "copy", "--json"],
            ["policy", "run", "--now", "both", "--json"],
        ]
    )
    beta_run = beta.steps([["policy", "run", "--now", "both", "--json"]])
    for host, run, disk in ((alpha, alpha_run[-1], "web1-data"), (beta, beta_run[-1], "copy")):
        assert run.code == 0, f"{host.name}: {run.out} {run.err}"
        ran = [(o["disk"], o["status"]) for o in run.json() if "disk" in o]
        assert ran == [(disk, "succeeded")], f"{host.name}: {run.out}"


def test_a_vanished_host_is_reclaimed_after_its_lease_and_nothing_partial_shows(
    tmp_path: Path, catalog_backend: str
) -> None:
    """Alpha is killed (SIGKILL, as a host that loses power) in the middle of a backup. Until
    the lease runs out beta sees alpha's job running and the disk busy; after it, beta's next
    command fails the job, naming alpha, releases the disk and drops the half-made backup
    row. When alpha comes back, the same backup runs again and verifies."""
    alpha, beta = shared_hosts(tmp_path, catalog_backend, "alpha", "beta")
    setup = alpha.steps(
        [
            ["vault", "add", "shared", "--path", str(tmp_path / "vault"), "--json"],
            ["disk", "create", "db", "--size", "2MiB", "--json"],
            ["@write", "db", 0, 2 << 20, 7],
        ]
    )
    assert all(step.code == 0 for step in setup), [s.err for s in setup]
    gates = Gates(tmp_path / "gates", [("middle", "put", "chunks/")])
    script = alpha.script(
        [["backup", "create", "db", "--vault", "shared", "--name", "db-1", "--json"]],
        env=gates.env,
    )
    gates.reached("middle", child=script.child)
    script.kill()  # alpha is gone between two chunks; its heartbeat stops with it
    killed_at = time.monotonic()

    early = beta.steps([["job", "list", "--json"], ["disk", "list", "--json"]])
    if time.monotonic() - killed_at < LEASE:  # a loaded machine may take longer than that
        assert [(j["host"], j["status"]) for j in early[0].json()] == [("alpha", "running")]
        assert by_name(early[1])["db"]["status"] == "backing-up"

    time.sleep(max(0.0, LEASE + 1.5 - (time.monotonic() - killed_at)))
    later = beta.steps(
        [["job", "list", "--json"], ["disk", "list", "--json"], ["backup", "list", "--json"]]
    )
    (job,) = later[0].json()
    assert job["status"] == "failed" and "host alpha stopped answering" in job["error"]
    assert by_name(later[1])["db"]["status"] == "available"
    assert later[2].json() == []  # the half-made backup is not listed anywhere

    again = alpha.steps(
        [
            ["backup", "create", "db", "--vault", "shared", "--name", "db-1", "--json"],
            ["@verify-all"],
        ]
    )
    assert again[0].code == 0, again[0].err
    verified = [json.loads(s.out.splitlines()[-1]) for s in again[1:]]
    assert len(verified) == 1 and all(s.code == 0 for s in again[1:]), [s.err for s in again]


def test_background_jobs_need_a_service_of_their_own_host(tmp_path: Path) -> None:
    """A service runs only its own host's handed jobs, so beta's `--background` is refused
    at once while only alpha's service runs, instead of waiting queued for ever."""
    alpha, beta = shared_hosts(tmp_path, "sqlite", "alpha", "beta")
    beta.steps([["vault", "add", "shared", "--path", str(tmp_path / "vault"), "--json"]])
    beta.steps([["disk", "create", "b1", "--size", "1MiB", "--json"]])
    service = alpha.spawn("service", "--tick", "0.5")
    try:
        deadline = time.monotonic() + 60
        while not alpha.run("service", "status", "--json").json():
            assert service.poll() is None, service.communicate()
            assert time.monotonic() < deadline, "alpha's service did not start"
            time.sleep(0.2)
        step = beta.run("backup", "create", "b1", "--vault", "shared", "--background")
        refused(step, "no blockvault service is running")
        assert beta.run("job", "list", "--json").json() == []  # nothing left queued
    finally:
        service.terminate()
        service.communicate(timeout=30)


def test_a_job_whose_lease_another_host_took_stops_writing_and_stays_failed(
    tmp_path: Path,
) -> None:
    """Fencing: once another host has failed a job's row (its lease ran out, as when its
    heartbeats could not reach the catalog), the job notices at its next beat and stops; it
    never turns its row back to `succeeded` nor makes its backup visible."""
    (alpha,) = shared_hosts(tmp_path, "sqlite", "alpha")
    setup = alpha.steps(
        [
            ["vault", "add", "shared", "--path", str(tmp_path / "vault"), "--json"],
            ["disk", "create", "db", "--size", "4MiB", "--json"],
            ["@write", "db", 0, 4 << 20, 11],
        ]
    )
    assert all(step.code == 0 for step in setup), [s.err for s in setup]
    backup = alpha.spawn(
        "backup", "create", "db", "--vault", "shared", "--limit-upload", "1MiB", "--json"
    )  # about 4 s of chunks
    catalog = sqlite3.connect(tmp_path / "shared.sqlite", timeout=30)
    deadline = time.monotonic() + 60
    while not catalog.execute("SELECT id FROM jobs WHERE status = 'running'").fetchall():
        assert backup.poll() is None, backup.communicate()
        assert time.monotonic() < deadline, "the backup never started"
        time.sleep(0.05)
    with catalog:  # what another host's reconcile does to a job whose lease ran out
        catalog.execute("UPDATE jobs SET status = 'failed', error = 'taken over by beta'")
    out, err = backup.communicate(timeout=60)
    assert backup.returncode != 0 and "lease ran out" in err, (out, err)
    assert catalog.execute("SELECT status, error FROM jobs").fetchall() == [
        ("failed", "taken over by beta")
    ]
    assert catalog.execute("SELECT status FROM backups").fetchall() == []
    catalog.close()
