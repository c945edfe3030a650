"""Bandwidth limits as an admin uses them: `--limit-upload` / `--limit-download` and config.toml's
defaults hold a real backup and restore to the limit (a lower bound on their own duration: the
feature is a rate limit), the data comes back byte for byte, and the progress says the limit.

The disks hold random bytes: the limit counts the chunks as stored (compressed), so data that
compresses would move faster than the limit on the disk's side."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from core.api import UserError, parse_rate
from core.base.ratelimit import Bandwidth, Throttle, TokenBucket
from core.ops import bandwidth
from core.stores.local import LocalStore
from core.stores.throttle import throttled
from tests.support.cli import CLI, REPO
from tests.support.seaweed import S3Server
from tests.test_backups_s3 import add_s3_vault

MiB = 1 << 20
SIZE = 6 * MiB  # at 3 MiB/s: 2 s of transfer
RATE = 3 * MiB
#: the least a transfer of SIZE may take at RATE: the bucket starts empty and saves at most
#: 0.1 s of idle time, so 10% covers it and clock granularity
LEAST = 0.9 * SIZE / RATE
CONFIG = "[blockvault]\nchunk_size = 262144\n"


def sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def random_disk(cli: CLI, name: str) -> str:
    """A disk full of incompressible bytes (every chunk travels at full size)."""
    path = cli.ok("disk", "create", name, "--size", str(SIZE))["path"]
    Path(path).write_bytes(os.urandom(SIZE))
    return path


def json_lines(cli: CLI, *argv: str) -> tuple[list[dict], dict, float]:
    """Progress events, the result, and the wall time of the command (in-process: no start-up)."""
    started = time.monotonic()
    result = cli(*argv, "--json")
    took = time.monotonic() - started
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines() if line.strip()]
    return lines[:-1], lines[-1], took


def on_a_terminal(home: Path, *argv: str) -> str:
    """`blockvault ARGV` on a real pseudo-terminal 200 columns wide: what the admin saw."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--home", str(home), *argv],
        cwd=REPO,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"},
    )
    os.close(follower)
    seen = bytearray()
    try:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            seen += data
    finally:
        os.close(leader)
        assert process.wait(timeout=60) == 0, seen.decode(errors="replace")[-2000:]
    return seen.decode(errors="replace")


@pytest.mark.slow
def test_local_backup_and_copy_are_held_to_the_upload_limit_and_the_line_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = CLI.with_config(tmp_path / "home", capsys, CONFIG)
    path = random_disk(cli, "web1-data")
    screen = on_a_terminal(cli.home, "backup", "create", "web1-data", "--limit-upload", "3MiB")
    assert "limited to 3.0 MiB/s" in screen  # the progress line, while it ran
    backup = cli.ok("backup", "list", "--disk", "web1-data")[0]
    assert backup["bytes_stored"] >= SIZE  # random bytes: nothing compressed away
    assert backup["duration"] >= LEAST, backup["duration"]
    # a copy into another vault: the upload limit given, no download limit configured
    cli.ok("vault", "add", "second", "--path", str(cli.home / "second"))
    argv = ("backup", "copy", backup["id"], "--to-vault", "second", "--limit-upload", "3MiB")
    events, copied, took = json_lines(cli, *argv)
    assert {(e["limit_upload"], e["limit_download"]) for e in events} == {(RATE, None)}
    assert took >= LEAST, took
    _, restored, _ = json_lines(cli, "backup", "restore", copied["id"], "--to-new", "copy")
    assert sha(restored["path"]) == sha(path)


@pytest.mark.slow
@pytest.mark.s3
def test_s3_backup_and_restore_hold_the_configured_and_given_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3_server: S3Server
) -> None:
    cli = CLI.with_config(
        tmp_path / "home", capsys, CONFIG + 'limit_upload = "3MiB"\nlimit_download = "1M"\n'
    )
    add_s3_vault(cli, s3_server)
    path = random_disk(cli, "db1-data")
    # config.toml's upload limit, with no option given
    events, backup, _ = json_lines(cli, "backup", "create", "db1-data", "--vault", "s3")
    assert {e["limit_upload"] for e in events} == {RATE}
    assert {e["limit_download"] for e in events} == {None}  # a backup only sends
    assert backup["duration"] >= LEAST, backup["duration"]
    # the option over config.toml's 1 MiB/s download limit
    argv = ("backup", "restore", backup["id"], "--to-new", "db1-copy", "--limit-download", "3M")
    events, restored, took = json_lines(cli, *argv)
    assert {(e["limit_upload"], e["limit_download"]) for e in events} == {(None, RATE)}
    assert took >= LEAST, took
    assert sha(restored["path"]) == sha(path)
    # `0` lifts config.toml's limit for one command
    events, _, _ = json_lines(cli, "backup", "verify", backup["id"], "--limit-download", "0")
    assert {e["limit_download"] for e in events} == {None}


def test_rates_are_read_as_sizes_per_second_and_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert parse_rate("20MiB") == parse_rate("20M") == parse_rate("20MiB/s") == 20 * MiB
    assert parse_rate("512K") == 512 << 10
    assert parse_rate("0") == parse_rate("off") == 0
    for wrong in ("fast", "-1M", "1"):
        with pytest.raises(UserError):
            parse_rate(wrong)
    cli = CLI.with_config(tmp_path / "home", capsys, CONFIG)
    assert "invalid rate 'fast'" in cli.fails("backup", "create", "d1", "--limit-upload", "fast")
    (cli.home / "config.toml").write_text(CONFIG + 'limit_download = "2Q"\n')
    assert "setting limit_download: invalid rate '2Q'" in cli.fails("disk", "list")


def test_a_heartbeat_never_queues_behind_the_jobs_chunks_but_is_paid_for(tmp_path: Path) -> None:
    """A writer's session heartbeat waiting behind minutes of queued chunks would let GC take a
    busy writer for a dead one: control objects are counted without waiting, data waits."""
    throttle = Throttle(Bandwidth(upload=2 * MiB))
    throttle.upload = TokenBucket(2 * MiB, clock=lambda: 0.0)  # no refill: waits are exact
    store = throttled(LocalStore(tmp_path / "vault"), throttle, paced=bandwidth.is_data)
    store.put("chunks/ab/ab01", os.urandom(256 << 10))  # 1/8 s of the limit
    assert throttle.waited == pytest.approx(0.125)
    store.put("sessions/bk-1", os.urandom(128 << 10))  # counted, not waited for
    assert throttle.waited == pytest.approx(0.125)
    store.put("chunks/ab/ab02", os.urandom(128 << 10))  # waits for the session's bytes too
    assert throttle.waited == pytest.approx(0.125 + 0.25)
    assert store.get("sessions/bk-1")  # reads pass: this throttle limits uploads only
    assert throttle.waited == pytest.approx(0.375)
