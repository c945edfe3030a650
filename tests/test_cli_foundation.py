"""Servers and disks through the real CLI: JSON shapes, rules, and every bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import CLI


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(tmp_path / "home", capsys)


def test_disk_create_makes_sparse_image_with_full_json(cli: CLI) -> None:
    cli.ok("server", "create", "web1")
    disk = cli.ok(
        "disk", "create", "web1-root", "--size", "1G", "--server", "web1", "--role", "system"
    )
    for key in ("id", "name", "status", "size", "created_at", "path", "server", "role"):
        assert key in disk
    assert disk["id"].startswith("disk-") and disk["size"] == 1 << 30
    assert disk["server"] == "web1" and disk["role"] == "system" and disk["status"] == "available"
    st = os.stat(disk["path"])
    assert st.st_size == 1 << 30 and st.st_blocks == 0  # sparse
    assert Path(disk["path"]).is_relative_to(cli.home)
    listed = cli.ok("disk", "list")
    assert [d["name"] for d in listed] == ["web1-root"]
    assert cli.ok("disk", "show", disk["id"])["name"] == "web1-root"  # id or name


def test_one_system_disk_per_server(cli: CLI) -> None:
    cli.ok("server", "create", "db1")
    cli.ok("disk", "create", "db1-root", "--size", "10M", "--server", "db1", "--role", "system")
    err = cli.fails(
        "disk", "create", "db1-root2", "--size", "10M", "--server", "db1", "--role", "system"
    )
    assert "already has a system disk" in err
    cli.ok("disk", "create", "spare", "--size", "10M")
    assert "already has a system disk" in cli.fails(
        "disk", "attach", "spare", "--server", "db1", "--role", "system"
    )
    attached = cli.ok("disk", "attach", "spare", "--server", "db1")
    assert attached["server"] == "db1" and attached["role"] == "data"
    detached = cli.ok("disk", "detach", "spare")
    assert detached["server"] is None
    assert "not attached" in cli.fails("disk", "detach", "spare")


@pytest.mark.parametrize("size", ["10X", "-5G", "0", "abc", "", "0G"])
def test_bad_sizes_are_one_line_errors(cli: CLI, size: str) -> None:
    err = cli.fails("disk", "create", "d1", f"--size={size}")
    assert "size" in err


def test_unknown_and_duplicate_names(cli: CLI) -> None:
    assert "no disk named 'nope'" in cli.fails("disk", "show", "nope")
    assert "no server named 'ghost'" in cli.fails(
        "disk", "create", "d1", "--size", "1M", "--server", "ghost"
    )
    cli.ok("disk", "create", "d1", "--size", "1M")
    assert "already exists" in cli.fails("disk", "create", "d1", "--size", "1M")
    cli.ok("server", "create", "s1")
    assert "already exists" in cli.fails("server", "create", "s1")
    assert "invalid disk name" in cli.fails("disk", "create", "bad/name", "--size", "1M")
    assert "looks like an id" in cli.fails("disk", "create", "disk-abcdef", "--size", "1M")


def test_register_rejects_missing_paths_directories_and_char_devices(
    cli: CLI, tmp_path: Path
) -> None:
    assert "no such file" in cli.fails(
        "disk", "register", "r1", "--path", str(tmp_path / "missing.img")
    )
    assert "is a directory" in cli.fails("disk", "register", "r1", "--path", str(tmp_path))
    assert "not a regular file or block device" in cli.fails(
        "disk", "register", "r1", "--path", "/dev/null"
    )
    empty = tmp_path / "empty.img"
    empty.touch()
    assert "empty" in cli.fails("disk", "register", "r1", "--path", str(empty))


def test_register_reads_size_and_keeps_file_on_delete(cli: CLI, tmp_path: Path) -> None:
    image = tmp_path / "vm.img"
    image.write_bytes(os.urandom(3 * 4096 + 17))
    disk = cli.ok("disk", "register", "vm", "--path", str(image))
    assert disk["size"] == 3 * 4096 + 17 and disk["path"] == str(image)
    assert "already registered" in cli.fails("disk", "register", "vm2", "--path", str(image))
    cli.ok("disk", "delete", "vm", "--yes")
    assert image.exists()  # a registered file is the user's: only the catalog entry goes


def test_delete_disk_needs_confirmation_without_tty(cli: CLI) -> None:
    cli.ok("disk", "create", "d1", "--size", "1M")
    err = cli.fails("disk", "delete", "d1")
    assert "--yes" in err
    plan = cli.ok("disk", "delete", "d1", "--dry-run")
    assert plan["allowed"] and plan["items"][0]["op"] == "delete"
    assert cli.ok("disk", "list")  # dry run changed nothing
    disk_path = cli.ok("disk", "show", "d1")["path"]
    cli.ok("disk", "delete", "d1", "--yes")
    assert not Path(disk_path).exists()
    assert cli.ok("disk", "list") == []


def test_server_delete_refused_with_disks_unless_detach(cli: CLI) -> None:
    cli.ok("server", "create", "s1")
    cli.ok("disk", "create", "s1-root", "--size", "1M", "--server", "s1", "--role", "system")
    assert "still has disks" in cli.fails("server", "delete", "s1", "--yes")
    cli.ok("server", "delete", "s1", "--yes", "--detach-disks")
    disk = cli.ok("disk", "show", "s1-root")
    assert disk["server"] is None and disk["status"] == "available"
    assert cli.ok("server", "list") == []


def test_events_record_who_what_when(cli: CLI) -> None:
    cli.ok("server", "create", "s1")
    cli.ok("disk", "create", "d1", "--size", "1M", "--server", "s1")
    cli.ok("disk", "delete", "d1", "--yes")
    events = cli.ok("events")
    actions = [e["action"] for e in events]
    assert actions[:3] == ["disk.delete", "disk.create", "server.create"]
    assert all("@" in e["actor"] and e["created_at"] for e in events)


def test_job_commands_on_unknown_job(cli: CLI) -> None:
    assert cli.ok("job", "list") == []
    assert "no job named" in cli.fails("job", "show", "job-123456")


def test_unknown_catalog_url_is_a_clear_error(cli: CLI) -> None:
    result = cli("--catalog", "nosuchdb://x", "disk", "list")
    assert result.code != 0 and "catalog" in result.err and "Traceback" not in result.err


@pytest.mark.slow
def test_console_script_runs_as_a_process(tmp_path: Path) -> None:
    env = {**os.environ, "BLOCKVAULT_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "disk", "create", "x", "--size", "10X"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
