"""The service (`blockvault service`) in real subprocesses: an `--every 2s` policy backs up a
real disk several times, SIGTERM cancels what runs and leaves nothing partial (exit 0); two
services on one catalog never run one slot twice; `--background` hands a job to the service
(or says in one line that none runs), follows it to its result and survives the CLI's death;
`service --once`; `service install --print`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC
from pathlib import Path

import pytest
from sqlmodel import select

from core.base.host import host_id
from core.catalog.db import Catalog
from core.catalog.models import Meta, PolicySlot
from tests.support.cli import CLI

#: every test runs on SQLite and on PostgreSQL (tests/conftest.py: `catalog_backend`)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("catalog_backend")]


def catalog_of(cli: CLI) -> Catalog:
    """The catalog the CLI and the services use: BLOCKVAULT_CATALOG, else the home's file."""
    return Catalog(os.environ.get("BLOCKVAULT_CATALOG") or f"sqlite:///{cli.home}/catalog.sqlite")


ROOT = Path(__file__).resolve().parents[1]
ENTRY = "import sys; from tui.cli.main import main; sys.exit(main(sys.argv[1:]))"
# the service child: each chunk written to a local vault takes PUT_DELAY longer, so that a big
# backup is still running when the test cancels it (the policy's small backups barely notice)
SERVICE_ENTRY = """
import sys, time
from core.stores.local import LocalStore
put = LocalStore.put
def slow_put(self, key, data, **options):
    if key.startswith("chunks/"):
        time.sleep(PUT_DELAY)
    return put(self, key, data, **options)
LocalStore.put = slow_put
from tui.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
PUT_DELAY = 0.02
CHUNK = 262144
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\nservice_jobs = 2\nworkers = 2\n"
NO_SERVICE = "no blockvault service is running for this catalog"
#: the host the `cli` fixture's disks live on: the service that runs their jobs is of it
HOST = host_id()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def data_disk(cli: CLI, name: str, *, size: str = "1M", data: int = 300_000) -> dict:
    disk = cli.ok("disk", "create", name, "--size", size)
    with open(disk["path"], "r+b") as handle:
        handle.write(random.randbytes(data))
    return disk


def big_disk(cli: CLI, name: str, *, mib: int = 96) -> dict:
    """A disk of distinct chunks: its backup takes about mib * 4 * PUT_DELAY / 2 s in the service."""
    disk = cli.ok("disk", "create", name, "--size", f"{mib + 32}M")
    block = random.randbytes(CHUNK)
    with open(disk["path"], "r+b") as handle:
        for index in range(mib * (1 << 20) // CHUNK):
            handle.write(index.to_bytes(8, "big") + block[8:])
    return disk


def blockvault(home: Path, *argv: str, host: str = HOST, entry: str = ENTRY) -> subprocess.Popen:
    env = {**os.environ, "BLOCKVAULT_HOST_ID": host}
    return subprocess.Popen(
        [sys.executable, "-c", entry, "--home", str(home), *argv],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


class ServiceProcess:
    """`blockvault service --tick 0.5` as a child process, its log lines collected."""

    def __init__(self, home: Path, host: str) -> None:
        entry = SERVICE_ENTRY.replace("PUT_DELAY", repr(PUT_DELAY))
        self.proc = blockvault(home, "service", "--tick", "0.5", host=host, entry=entry)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def log(self, what: str) -> list[str]:
        return [line for line in self.lines + self.errors if what in line]

    def wait_for(self, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.log(what):
            assert self.proc.poll() is None, f"service ended: {self.lines} {self.errors}"
            assert time.monotonic() < deadline, f"no {what!r} in {self.lines} {self.errors}"
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM; the exit code, which must come within `timeout` seconds."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def services():
    started: list[ServiceProcess] = []

    def start(home: Path, host: str = HOST, *, wait: bool = True) -> ServiceProcess:
        service = ServiceProcess(home, host)
        started.append(service)
        if wait:
            service.wait_for("started:")
        return service

    yield start
    for service in started:
        service.kill()


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def nothing_partial(cli: CLI) -> list[dict]:
    """No `creating` backup, no active job, one manifest per listed backup, each verifies."""
    listed = cli.ok("backup", "list", "--all")
    assert all(b["status"] == "available" for b in listed), listed
    assert cli.ok("job", "list", "--active") == []
    assert cli.ok("vault", "show")["manifests"] == len(listed)
    for backup in listed:
        result = cli("backup", "verify", backup["id"], "--json")
        assert result.code == 0, result.err
    return listed


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_an_every_2s_policy_runs_real_backups_and_sigterm_leaves_nothing_partial(
    cli: CLI, services
) -> None:
    data_disk(cli, "d1")
    big_disk(cli, "big", mib=256)  # backs up for 10 s in the service: still running at the end
    cli.ok("policy", "create", "fast", "--every", "2s", "--disk", "d1", "--keep-last", "50")
    service = services(cli.home)
    # a background backup running when SIGTERM comes: cancelled, nothing of it visible
    follower = blockvault(cli.home, "backup", "create", "big", "--background", "--json")
    first_line = follower.stdout.readline()
    assert first_line, follower.stderr.read()
    queued = json.loads(first_line)
    assert queued["type"] == "queued"
    wait_until(lambda: len(service.log("backup done:")) >= 3, 10, "three policy backups")
    assert service.log("slot claimed: policy fast")
    assert cli.ok("job", "show", queued["job_id"])["status"] == "running"
    started = time.monotonic()
    assert service.stop() == 0
    assert time.monotonic() - started < 5
    assert service.log("stopping: cancelling") and service.lines[-1].endswith("stopped")
    assert follower.wait(timeout=10) == 130, follower.stderr.read()
    assert cli.ok("job", "show", queued["job_id"])["status"] == "cancelled"

    listed = nothing_partial(cli)
    made = [b for b in listed if b["disk_name"] == "d1"]
    assert len(made) >= 3 and all(b["policy_id"] for b in made)
    assert not [b for b in listed if b["disk_name"] == "big"]
    # the service is gone: its heartbeat went with it
    assert NO_SERVICE in cli.fails("backup", "create", "d1", "--background")


def test_two_services_on_one_catalog_never_run_one_slot_twice(cli: CLI, services) -> None:
    data_disk(cli, "a")
    data_disk(cli, "b")
    policy = cli.ok(
        "policy",
        "create",
        "both",
        "--every",
        "2s",
        "--disk",
        "a",
        "--disk",
        "b",
        "--keep-last",
        "50",
    )
    # two services of the host the disks live on (two hosts would each back up their own)
    first, second = services(cli.home, wait=False), services(cli.home)
    first.wait_for("started:")
    assert len(cli.ok("service", "status")) == 2

    def slots() -> list[tuple]:
        catalog = catalog_of(cli)
        with catalog.session() as session:
            rows = session.exec(
                select(PolicySlot)
                .where(PolicySlot.policy_id == policy["id"], PolicySlot.kind == f"backup@{HOST}")
                .order_by(PolicySlot.slot_at)
            ).all()
        catalog.dispose()
        return [(row.slot_at, row.host, row.status) for row in rows]

    wait_until(lambda: len([s for s in slots() if s[2] == "succeeded"]) >= 3, 12, "three slots")
    assert first.stop() == 0 and second.stop() == 0

    claimed = slots()
    assert len({s[0] for s in claimed}) == len(claimed)
    assert {s[1] for s in claimed} == {HOST}
    claims_logged = first.log("slot claimed: policy both") + second.log("slot claimed: policy both")
    assert len(claims_logged) == len(claimed)

    # each slot backed up each disk once: the services' logs name the slot of every backup
    done = [
        line.split("backup done: ")[1].split()
        for line in first.log("backup done:") + second.log("backup done:")
    ]  # ["policy", "both", "slot", SLOT, "disk", DISK, "backup", ID]
    listed = {b["id"]: b["disk_name"] for b in nothing_partial(cli)}
    assert sorted(d[7] for d in done) == sorted(listed)
    per_slot: dict[str, list[str]] = {}
    for entry in done:
        assert listed[entry[7]] == entry[5]
        per_slot.setdefault(entry[3], []).append(entry[5])
    stamps = {s[0].astimezone(UTC).isoformat(): s for s in claimed}
    assert set(per_slot) <= set(stamps)
    for stamp, (_, _, status) in stamps.items():
        disks = sorted(per_slot.get(stamp, []))
        if status == "succeeded":
            assert disks == ["a", "b"], (stamp, disks)
        else:  # cut short by the stop: what ran, ran once
            assert len(set(disks)) == len(disks), (stamp, disks)


def test_background_without_a_service_says_so_in_one_line(cli: CLI) -> None:
    disk = data_disk(cli, "d1")
    for argv in (
        ("backup", "create", "d1", "--background"),
        ("vault", "gc", "--background"),
    ):
        assert NO_SERVICE in cli.fails(*argv)
    assert cli.ok("job", "list") == []
    assert cli("service", "status").code == 1
    # a service that died without a word is not running either
    catalog = catalog_of(cli)
    with catalog.session() as session:
        beat = {"host": "gone", "pid": 1, "beat_at": "2020-01-01T00:00:00+00:00"}
        session.add(Meta(key="service:gone:1", value=json.dumps(beat)))
        session.commit()
    catalog.dispose()
    assert NO_SERVICE in cli.fails("backup", "create", disk["id"], "--background")


def test_background_jobs_run_in_the_service_and_outlive_the_cli(cli: CLI, services) -> None:
    data_disk(cli, "d1")
    service = services(cli.home)

    # followed to the result, with the same JSON lines as in the foreground
    result = cli("backup", "create", "d1", "--background", "--json")
    assert result.code == 0, result.err
    events = lines(result.out)
    assert events[0]["type"] == "queued" and events[-1]["type"] == "result"
    assert events[-1]["status"] == "available" and events[-1]["disk_name"] == "d1"
    job_id = events[0]["job_id"]
    assert service.log(f"job succeeded: {job_id} backup d1")
    job = cli.ok("job", "show", job_id)
    assert job["status"] == "succeeded" and job["kind"] == "backup"
    assert len(cli.ok("job", "list")) == 1  # the request is the job, not a second row

    verified = lines(cli("backup", "verify", events[-1]["id"], "--background", "--json").out)
    assert verified[-1]["type"] == "result" and verified[-1]["ok"]

    # the CLI that asked is killed: the job still completes in the service
    follower = blockvault(cli.home, "backup", "create", "d1", "--background", "--json")
    queued = json.loads(follower.stdout.readline())
    follower.kill()
    follower.wait()
    done = wait_until(
        lambda: (job := cli.ok("job", "show", queued["job_id"]))["status"] == "succeeded" and job,
        15,
        "the orphaned background backup",
    )
    assert done["result"]["disk_name"] == "d1"  # an object, not a string of JSON
    assert len(cli.ok("backup", "list", "--disk", "d1")) == 2

    # `job cancel` from another shell cancels it in the service; the follower says so
    big_disk(cli, "big")
    follower = blockvault(cli.home, "backup", "create", "big", "--background")
    job_id = follower.stderr.readline().split()[-1]
    wait_until(lambda: cli.ok("job", "show", job_id)["status"] == "running", 10, "the claim")
    assert cli.ok("job", "cancel", job_id)["status"] == "cancelling"
    assert follower.wait(timeout=15) == 130
    assert "cancelled" in follower.stderr.read()
    assert cli.ok("job", "show", job_id)["status"] == "cancelled"
    service.wait_for(f"job cancelled: {job_id}")
    assert service.stop() == 0
    assert not [b for b in nothing_partial(cli) if b["disk_name"] == "big"]


def test_service_once_runs_what_is_due_and_exits(cli: CLI) -> None:
    data_disk(cli, "d1")
    cli.ok("policy", "create", "often", "--every", "1s", "--disk", "d1")
    time.sleep(1.1)  # a slot has come since the policy was made
    result = cli("service", "--once")
    assert result.code == 0, result.err
    assert "slot claimed: policy often" in result.out and "backup done" in result.out
    assert result.out.rstrip().endswith("stopped")
    assert len(cli.ok("backup", "list", "--disk", "d1")) == 1
    assert cli("service", "status").code == 1  # its heartbeat went with it


def test_service_install_print_shows_the_unit_for_this_home(cli: CLI) -> None:
    result = cli("service", "install", "--print")
    assert result.code == 0, result.err
    exec_start = [line for line in result.out.splitlines() if line.startswith("ExecStart=")]
    url = os.environ.get("BLOCKVAULT_CATALOG")  # a catalog elsewhere is named too
    catalog = f" --catalog {url}" if url else ""
    assert len(exec_start) == 1
    assert f"--home {cli.home.resolve()}{catalog} service" in exec_start[0]
    assert os.path.isabs(exec_start[0].removeprefix("ExecStart=").split()[0])
    for line in ("Restart=on-failure", "KillSignal=SIGTERM", "WantedBy=multi-user.target"):
        assert line in result.out
    user = cli("service", "install", "--user", "--print")
    assert "WantedBy=default.target" in user.out
