"""A real SeaweedFS cluster for tests: one master, three volume servers, a filer, the S3 gateway.

Each part is its own `weed` process on free 127.0.0.1 ports (HTTP and HTTP + 10000 for gRPC),
with its data and log under one work directory. The master's default replication is 001 (one
extra copy on another server of the same rack: all three volume servers are on the default
rack), so any one volume server may die and every object written before still has a copy.
`kill_volume(i)` SIGKILLs volume server i; `restart_volume(i)` starts it again on its own port
and directory. The S3 gateway takes one identity with keys generated per run (a 0600 file),
handed to boto3 through the AWS_* environment while `running_cluster` lasts, like
tests/support/seaweed.py does for `weed mini`; `S3Cluster.client()` passes them explicitly.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.stores.s3 import S3Store
from tests.support.seaweed import (
    GRPC_OFFSET,
    REGION,
    SHARED_BUCKET,
    S3Server,
    _answers,
    _write_identity,
    aws_environment,
    free_port_pairs,
)

VOLUMES = 3
REPLICATION = "001"


@dataclass
class Part:
    """One `weed` process of the cluster: how to start it again, its log, its process."""

    name: str
    args: list[str]
    log_path: Path
    cwd: Path
    #: seconds between SIGTERM and SIGKILL at the end (the filer ignores SIGTERM for ~5 s, and
    #: its throwaway store needs no clean shutdown)
    grace: float = 5.0
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye to the master, no flush."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = ["(no log)"]
        return f"--- {self.name} ({self.log_path.name}) ---\n" + "\n".join(text)


@dataclass
class S3Cluster(S3Server):
    """The S3 gateway's endpoint and keys (what `S3Server` offers), plus the cluster's parts."""

    parts: dict[str, Part] = field(default_factory=dict)
    master_url: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def client(self, endpoint_url: str | None = None) -> Any:
        """A boto3 S3 client that signs with the cluster's own keys, whatever the process's
        AWS environment or boto3's default session holds.

        Not `boto3.client()`: its default session resolves keys once per process and keeps
        them, so after any earlier S3 test it signs with the session's `weed mini` keys, which
        this gateway refuses with InvalidAccessKeyId (the three-host test's failure in CI).
        """
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=endpoint_url or self.endpoint_url)

    def volume(self, i: int) -> Part:
        return self.parts[f"volume{i}"]

    def kill_volume(self, i: int) -> None:
        self.volume(i).kill()

    def restart_volume(self, i: int, *, timeout: float = 30.0) -> None:
        """Start volume server i again (if it is down) and wait until the master counts it
        (and every other one running)."""
        part = self.volume(i)
        if not part.alive:
            part.start(self.env)
        alive = sum(self.volume(n).alive for n in range(VOLUMES))
        self.wait_for_volume_servers(alive, timeout=timeout)

    def files_per_volume_server(self) -> list[int]:
        """How many files each volume server holds (index i: volume server i), by the master."""
        with urllib.request.urlopen(f"{self.master_url}/vol/status", timeout=5) as answer:
            status = json.load(answer)
        held: dict[str, int] = {}
        for dc in (status.get("Volumes") or {}).get("DataCenters", {}).values():
            for rack in dc.values():
                for node, volumes in rack.items():
                    held[node] = sum(v.get("FileCount", 0) for v in volumes or [])
        return [held.get(self._address(i), 0) for i in range(VOLUMES)]

    def busiest_volume(self) -> int:
        """The volume server holding the most files: the one whose death hurts most."""
        files = self.files_per_volume_server()
        return files.index(max(files))

    def _address(self, i: int) -> str:
        port = next(a for a in self.volume(i).args if a.startswith("-port="))
        return f"127.0.0.1:{port.split('=', 1)[1]}"

    def volume_servers(self) -> int:
        """How many volume servers the master knows to be alive."""
        with urllib.request.urlopen(f"{self.master_url}/dir/status", timeout=2) as answer:
            topology = json.load(answer)["Topology"]
        return sum(
            len(rack.get("DataNodes") or [])
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
        )

    def wait_for_volume_servers(self, count: int, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        seen: int | str = "?"
        while True:
            self._check_parts()
            with contextlib.suppress(OSError, ValueError, KeyError):
                seen = self.volume_servers()
                if seen == count:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the master sees {seen} volume servers, not {count}\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _check_parts(self) -> None:
        for part in self.parts.values():
            if part.process is not None and part.process.poll() is not None:
                if part.name.startswith("volume") and part.process.returncode < 0:
                    continue  # killed by a test
                raise RuntimeError(
                    f"weed {part.name} exited with {part.process.returncode}\n{self.log_tail()}"
                )

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(part.log_tail(lines) for part in self.parts.values())

    def stop(self) -> None:
        """SIGTERM the gateway and the filer (which wait for the master to go), then the rest."""
        front = [self.parts[name] for name in ("s3", "filer") if name in self.parts]
        back = [part for part in self.parts.values() if part not in front]
        for group in (front, back):
            for part in group:
                if part.alive:
                    part.process.terminate()  # type: ignore[union-attr]
            for part in group:
                part.stop()


def start_cluster(weed: str, workdir: Path, *, timeout: float = 90.0) -> S3Cluster:
    """Start every part in `workdir`; return once an object can be put, read and deleted.

    Raises RuntimeError with every part's log tail if one dies or the cluster is not ready
    within `timeout`; what did start is stopped first.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    access_key = "BVTEST" + secrets.token_hex(7).upper()
    secret_key = secrets.token_urlsafe(30)
    identity = workdir / "s3-identity.json"
    _write_identity(identity, access_key, secret_key)
    master, filer, s3, *volumes = free_port_pairs(3 + VOLUMES)
    mserver = f"127.0.0.1:{master}"

    def grpc(port: int) -> str:
        return f"-port.grpc={port + GRPC_OFFSET}"

    def directory(name: str) -> Path:
        path = workdir / name
        path.mkdir(exist_ok=True)
        return path

    specs: list[tuple[str, list[str]]] = [
        (
            "master",
            [
                "master", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={master}", grpc(master),
                f"-mdir={directory('master')}", "-peers=none", "-telemetry=false",
                f"-defaultReplication={REPLICATION}",
                # small volumes: a few GiB of tests never fill three servers' slots
                "-volumeSizeLimitMB=64",
            ],
        ),
        *(
            (
                f"volume{i}",
                [
                    "volume", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={port}", grpc(port),
                    f"-dir={directory(f'volume{i}')}", f"-master={mserver}", "-max=300",
                    "-dataCenter=dc1", "-rack=rack1",  # 001: a copy on another server, same rack
                    "-preStopSeconds=0", "-minFreeSpace=256MiB",
                ],
            )
            for i, port in enumerate(volumes)
        ),
        (
            "filer",
            [
                "filer", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={filer}", grpc(filer),
                f"-master={mserver}", f"-defaultStoreDir={directory('filer')}",
                f"-localSocket={workdir / 'filer.sock'}",
                # one collection for every bucket: one set of volumes, not one per bucket
                "-collection=bv",
            ],
        ),
        (
            "s3",
            [
                "s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={s3}", grpc(s3),
                f"-filer=127.0.0.1:{filer}", f"-config={identity}",
                f"-localSocket={workdir / 's3.sock'}",
                "-autoCreateBucket=false", "-port.iceberg=0", "-port.lance=0",
            ],
        ),
    ]  # fmt: skip
    # The servers must not pick up a developer's AWS settings (they fall back to AWS_* keys).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    parts = {
        name: Part(name, [weed, *args], workdir / f"{name}.log", workdir) for name, args in specs
    }
    parts["filer"].grace = 0.5
    cluster = S3Cluster(
        endpoint_url=f"http://127.0.0.1:{s3}",
        access_key=access_key,
        secret_key=secret_key,
        region=REGION,
        process=None,  # type: ignore[arg-type] - set when the gateway starts
        log_path=workdir / "s3.log",
        workdir=workdir,
        parts=parts,
        master_url=f"http://127.0.0.1:{master}",
        env=env,
    )
    deadline = time.monotonic() + timeout
    try:
        parts["master"].start(env)
        _wait(cluster, deadline, lambda: _answers(f"{cluster.master_url}/cluster/status"))
        for i in range(VOLUMES):
            cluster.volume(i).start(env)
        cluster.wait_for_volume_servers(VOLUMES, timeout=max(1.0, deadline - time.monotonic()))
        parts["filer"].start(env)
        _wait(cluster, deadline, lambda: _answers(f"http://127.0.0.1:{filer}/"))
        parts["s3"].start(env)
        cluster.process = parts["s3"].process  # type: ignore[assignment]
        _wait(cluster, deadline, lambda: _answers(cluster.endpoint_url))
        # The gateway answers before writes go through: wait for a real round trip.
        with aws_environment(cluster):
            probe = S3Store(SHARED_BUCKET, endpoint_url=cluster.endpoint_url, region=REGION)
            error: Exception | None = None

            def round_trip() -> bool:
                nonlocal error
                try:
                    probe.ensure_bucket()
                    probe.put("startup-probe", b"ok")
                    ok = probe.get("startup-probe") == b"ok"
                    probe.delete("startup-probe")
                    return ok
                except Exception as exc:
                    error = exc
                    return False

            _wait(cluster, deadline, round_trip, lambda: error)
            probe.close()
        _check_replication(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait(cluster: S3Cluster, deadline: float, ready, last_error=lambda: None) -> None:  # type: ignore[no-untyped-def]
    while not ready():
        cluster._check_parts()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"SeaweedFS cluster not ready in time (last error: {last_error()!r})\n"
                + cluster.log_tail()
            )
        time.sleep(0.1)


def _check_replication(cluster: S3Cluster) -> None:
    """Every volume the probe's write grew has replica placement 001 and two copies."""
    with urllib.request.urlopen(f"{cluster.master_url}/vol/status", timeout=5) as answer:
        status = json.load(answer)
    placements: dict[int, list[str]] = {}
    for dc in (status.get("Volumes") or {}).get("DataCenters", {}).values():
        for rack in dc.values():
            for node, volumes in rack.items():
                for volume in volumes or []:
                    placement = volume.get("ReplicaPlacement") or {}
                    assert placement.get("node") == 1, f"volume {volume} not 001"
                    placements.setdefault(volume["Id"], []).append(node)
    if not placements or any(len(nodes) != 2 for nodes in placements.values()):
        raise RuntimeError(f"volumes not replicated twice: {placements}\n{cluster.log_tail()}")


@contextlib.contextmanager
def running_cluster(
    weed: str, workdir: Path, *, timeout: float = 90.0, export_keys: bool = True
) -> Iterator[S3Cluster]:
    """Start the cluster, export its keys through the AWS environment, stop it all on exit.

    With `export_keys=False` the keys stay out of os.environ (the session's `weed mini` has
    its own there): a test enters `aws_environment(cluster)` itself.
    """
    cluster = start_cluster(weed, workdir, timeout=timeout)
    try:
        with aws_environment(cluster) if export_keys else contextlib.nullcontext():
            yield cluster
    finally:
        cluster.stop()
