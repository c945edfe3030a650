"""The scripting contract and results that say what happened (issue 14, items 1 and 2), through
the real CLI in a child process as a pipe or cron sees it: exit codes from one table, errors as
one JSON object with --json, whole rows when piped, TSV, usage at once without a terminal,
creates that name what they made, overwrites that say how to undo them and until when, dry runs
that say "would", human sizes, backups of deleted disks listed, S3 errors that name the vault
and the endpoint, and the bottleneck of a local vault named for what it is."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.base.config import DOCS, Settings, config_reference
from core.base.errors import (
    EXIT_CODES,
    Aborted,
    Busy,
    Conflict,
    NotFound,
    Retained,
    UserError,
    exit_status,
)
from tests.support.cli import CLI, REPO, run_cli

CONFIG = "[blockvault]\nchunk_size = 262144\ngc_grace_seconds = 0\nsafety_snapshot_hours = 2\n"
#: longer than a terminal's 80 columns once in a table row
LONG = "web1-data-with-a-name-long-enough-to-pass-eighty-columns-01"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def fill(path: str, size: int = 1 << 20) -> None:
    """Write `size` random bytes (neither deduplicated nor compressed) at a disk's start."""
    with open(path, "r+b") as disk:
        disk.write(os.urandom(size))


def json_error(err: str) -> dict:
    """stderr holds exactly one JSON object, the error."""
    [line] = err.strip().splitlines()
    return json.loads(line)["error"]


# --- quick: the tables the docs are made from -----------------------------------------------


def test_exit_code_table_maps_each_error_and_is_the_readme_table() -> None:
    assert exit_status(NotFound("no disk named 'x'")) == (10, "not-found")
    assert exit_status(Busy("disk d is busy")) == (11, "busy")
    assert exit_status(Retained("locked until 2030")) == (11, "busy")
    assert exit_status(Aborted("aborted")) == (12, "aborted")
    assert exit_status(Conflict("name taken")) == (1, "failure")
    assert exit_status(UserError("invalid size")) == (2, "usage")
    assert exit_status(ValueError("a bug")) == (70, "internal")
    readme = (REPO / "README.md").read_text()
    documented = re.findall(r"^\| (\d+) \| `([a-z-]+)` \|", readme, flags=re.MULTILINE)
    assert documented == [(str(code), kind) for code, kind, _ in EXIT_CODES]
    assert "[docs/configuration.md](docs/configuration.md)" in readme


def test_every_config_key_is_documented_and_the_docs_are_current() -> None:
    keys = set(Settings.__dataclass_fields__)
    assert keys <= set(DOCS), f"undocumented config.toml keys: {keys - set(DOCS)}"
    shown = (REPO / "docs" / "configuration.md").read_text()
    assert shown == config_reference(), "run scripts/export_config_docs.py"
    assert all(f"| `{key}` |" in shown for key in keys)


# --- a pipe, cron, ssh host blockvault --------------------------------------------------------


@pytest.mark.slow  # four child processes: about 5 s on an idle machine
def test_pipes_get_whole_rows_tsv_and_errors_as_json(cli: CLI) -> None:
    cli.ok("server", "create", "web1")
    made = cli.ok("disk", "create", LONG, "--size", "1M", "--server", "web1")

    piped = run_cli(cli.home, "disk", "list")
    assert piped.code == 0 and "\x1b" not in piped.out
    header, row = piped.out.splitlines()
    assert header.split()[:2] == ["ID", "NAME"] and len(row) > 80  # nothing cut at 80 columns
    assert row.split()[:3] == [made["id"], LONG, "web1"]  # the name whole, its row one line
    assert " 1.0 MiB " in row and row.split()[-2:] == [made["snapshot_strategy"], "-"]

    tsv = run_cli(cli.home, "disk", "list", "--format", "tsv")
    header, row = (line.split("\t") for line in tsv.out.splitlines())
    fields = dict(zip(header, row, strict=True))
    assert fields["name"] == LONG and fields["size"] == "1048576" and fields["server"] == "web1"

    missing = run_cli(cli.home, "disk", "show", "web9", "--json")
    assert (missing.code, missing.out) == (10, "")
    assert json_error(missing.err) == {
        "code": 10,
        "kind": "not-found",
        "message": "no disk named 'web9'",
    }

    nothing = cli("disk", "undo", LONG, "--yes")  # not a usage error
    assert nothing.code == 10 and f"nothing to undo on disk {LONG}" in nothing.err

    usage = cli("disk", "create", "x", "--size", "0", "--json")
    assert usage.code == 2 and json_error(usage.err)["kind"] == "usage"
    assert "invalid size '0'" in json_error(usage.err)["message"]

    bare = run_cli(cli.home, timeout=20)  # ssh host blockvault: no console without a terminal
    assert (bare.code, bare.out) == (2, "")
    assert bare.err.startswith("usage: blockvault") and "\x1b" not in bare.err
    assert "the console needs a terminal" in bare.err


# --- results that say what happened and what next --------------------------------------------


@pytest.mark.slow  # two child processes and a dozen commands in-process: about 6 s
def test_results_name_what_was_made_and_how_to_undo_it(
    cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.ok("server", "create", "web1")
    root = cli.ok("disk", "create", "web1-root", "--size", "1M", "--server", "web1")
    old = cli.ok("disk", "create", "old", "--size", "1M")
    fill(root["path"])
    fill(old["path"])
    assert cli("backup", "create", "old", "--json").code == 0
    cli("disk", "delete", "old", "--yes")

    made = run_cli(cli.home, "backup", "create", "web1-root")
    assert made.code == 0, made.err
    backup = next(b for b in cli.ok("backup", "list") if b["disk_name"] == "web1-root")
    first, summary = made.out.splitlines()
    assert first == (
        f"created backup {backup['name']} ({backup['id']}) of disk web1-root in vault local"
    )
    assert summary.startswith("backed up 1.0 MiB of 1.0 MiB")

    # JSON: progress lines then the result; a local vault's I/O is writing, not network
    again = cli("backup", "create", "web1-root", "--name", "second", "--json")
    events = [json.loads(line) for line in again.out.splitlines()]
    assert events[-1]["type"] == "result" and events[-1]["name"] == "second"
    stages = {e["bottleneck"] for e in events if e["type"] == "progress"} - {""}
    assert stages and stages <= {"reading", "hashing/compressing", "writing"}, stages

    cli("snapshot", "create", "web1-root", "--name", "before", "--json")
    fill(root["path"])
    started = datetime.now()
    rolled = run_cli(cli.home, "snapshot", "rollback", "before", "--yes")
    assert rolled.code == 0, rolled.err
    [line] = rolled.out.splitlines()
    match = re.fullmatch(
        r"rolled back web1-root to snapshot before; "
        r"`blockvault disk undo web1-root` puts it back until (\d\d:\d\d)( tomorrow)?",
        line,
    )
    assert match, line
    window = [started + timedelta(hours=2, minutes=m) for m in range(-1, 3)]  # 2 h, local
    assert match.group(1) in {moment.strftime("%H:%M") for moment in window}, line

    listed = cli("backup", "list")  # every backup, the deleted disk's marked
    assert re.search(r"\bold \(deleted\)", listed.out), listed.out
    assert [b["disk_deleted"] for b in cli.ok("backup", "list") if b["disk_name"] == "old"] == [
        True
    ]

    jobs = cli("job", "list", "--json")
    results = [job["result"] for job in json.loads(jobs.out)]
    assert all(r is None or isinstance(r, dict) for r in results) and any(results)

    server = cli("server", "show", "web1")
    assert "[{" not in server.out  # the disks as a table, not JSON
    after = server.out.split("disks:\n", 1)[1].splitlines()
    assert after[0].split() == ["ID", "NAME", "ROLE"]
    assert after[1].split() == [root["id"], "web1-root", "data"]

    old_backup = next(b for b in cli.ok("backup", "list") if b["disk_name"] == "old")
    cli("backup", "delete", old_backup["id"], "--yes")
    dry = cli("vault", "gc", "--dry-run")
    lines = dry.out.splitlines()
    assert lines[0] == "garbage-collect vault: local (dry run: nothing changed)", dry.out
    assert lines[1:] and all(line.startswith("  would ") for line in lines[1:]), dry.out
    assert "  would free 1.0 MiB" in lines

    monkeypatch.setenv("BLOCKVAULT_CATALOG", f"sqlite:///{cli.home}/catalog.sqlite")
    shown_config = cli("config", "show", "--json")
    sources = {row["key"]: (row["value"], row["source"]) for row in json.loads(shown_config.out)}
    config_file = str(cli.home / "config.toml")
    assert sources["chunk_size"] == ("262144", config_file)
    assert sources["max_snapshots_per_disk"] == ("256", "default")
    assert sources["home"] == (str(cli.home), "flag --home")
    assert sources["catalog"][1] == "env BLOCKVAULT_CATALOG"


# --- S3: the vault, the endpoint, the profile ------------------------------------------------


@pytest.mark.slow  # two child processes, the second retrying a refused connection: about 5 s
def test_s3_errors_name_the_vault_the_endpoint_and_the_profile(cli: CLI) -> None:
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    argv = ("vault", "add", "offsite", "--s3", "s3://bucket/bv", "--endpoint-url", endpoint)
    profile = run_cli(cli.home, *argv, env={"AWS_PROFILE": "nosuch"})
    assert profile.code == 10, profile.err
    assert profile.err == (
        "blockvault: error: vault offsite: AWS profile nosuch (from AWS_PROFILE) not found\n"
    )
    keys = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_PROFILE": None}
    refused = run_cli(cli.home, *argv, env=keys)
    assert refused.code == 1 and "Traceback" not in refused.err
    assert f"vault offsite (s3://bucket/bv at {endpoint})" in refused.err, refused.err


# --- a terminal: the confirmation declined ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_declined_confirmation_exits_aborted_in_a_terminal(cli: CLI) -> None:
    from tests.test_console_tmux import Tmux

    cli.ok("disk", "create", "d1", "--size", "1M")
    tmux = Tmux(f"bv-contract-{os.getpid()}")
    command = f"{sys.executable} -m tui.cli --home {cli.home} disk delete d1; echo rc=$?"
    tmux.run("new-session", "-d", "-s", tmux.session, "-x", "100", "-y", "20", "-c", str(REPO))
    try:
        tmux.literal(command)
        tmux.keys("Enter")
        # d1 has no backup: its name must be typed (issue 14 item 4), a wrong one aborts
        screen = tmux.wait_for("Type 'd1' to confirm:", timeout=30)
        assert "delete disk: d1" in screen and "DELETE    disk d1" in screen
        assert "has no backup" in screen
        tmux.literal("nope")
        tmux.keys("Enter")
        screen = tmux.wait_for("nothing changed", timeout=30)
        assert "blockvault: error: aborted, nothing changed" in screen
        assert "\nrc=12\n" in tmux.wait_for("\nrc=", timeout=10)  # not the command's own rc=$?
    finally:
        subprocess.run(["tmux", "kill-session", "-t", tmux.session], capture_output=True)
    assert [d["name"] for d in cli.ok("disk", "list")] == ["d1"]
