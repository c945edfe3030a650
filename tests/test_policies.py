"""Backup policies through the CLI: schedules, apply/unapply, pins, GFS retention with the
bytes freed, slot claims, and `policy run`'s exit codes (0 all ok, 3 some failed, 1 none ran)
with a real S3 server stopped under it."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.cli import CLI
from tests.support.seaweed import find_weed, running_server
from tests.test_backup_reliability import run_job
from tests.test_backups_s3 import add_s3_vault

CONFIG = "[blockvault]\nchunk_size = 262144\ngc_grace_seconds = 0\n"


#: every test runs on SQLite and on PostgreSQL (tests/conftest.py: `catalog_backend`)
pytestmark = pytest.mark.usefixtures("catalog_backend")


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, CONFIG)


def data_disk(cli: CLI, name: str, server: str | None = None) -> dict:
    extra = ("--server", server) if server else ()
    disk = cli.ok("disk", "create", name, "--size", "1M", *extra)
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(300_000))
    return disk


def test_bad_schedule_and_retention_are_clear_errors(cli: CLI) -> None:
    assert "Bad minute" in cli.fails("policy", "create", "p1", "--schedule", "61 * * * *")
    assert "between 1 and" in cli.fails("policy", "create", "p1", "--keep-last", "0")
    assert "no disk or server named" in cli.fails("policy", "create", "p1", "--disk", "ghost")
    two = cli.fails("policy", "create", "p1", "--daily-at", "02:00", "--every", "6h")
    assert "one" in two
    assert cli.ok("policy", "list") == []


@pytest.mark.slow
def test_schedule_forms_are_stored_and_described(cli: CLI) -> None:
    forms = {
        "--daily-at": "02:00",
        "--weekly": "mon,thu@02:00",
        "--every-days": "3@02:00",
        "--every": "6h",
        "--schedule": "30 1 * * *",
    }
    for index, (flag, value) in enumerate(forms.items()):
        policy = cli.ok("policy", "create", f"p{index}", flag, value)
        assert policy["runs"] and policy["next_run_at"], policy
        assert cli.ok("policy", "show", f"p{index}")["schedule"] == policy["schedule"]


def test_a_policy_without_disks_warns_and_apply_covers_a_server(cli: CLI) -> None:
    result = cli("policy", "create", "nightly", "--json")
    assert result.code == 0 and "covers no disk" in result.err
    cli.ok("server", "create", "web1")
    data_disk(cli, "a", server="web1")
    data_disk(cli, "b", server="web1")
    data_disk(cli, "c")
    applied = cli.ok("policy", "apply", "nightly", "web1", "c")
    assert [d["name"] for d in applied["disks"]] == ["a", "b", "c"]
    left = cli.ok("policy", "unapply", "nightly", "b")
    assert [d["name"] for d in left["disks"]] == ["a", "c"]


def test_policy_run_backs_up_its_disks_and_applies_retention(cli: CLI) -> None:
    disk = data_disk(cli, "d1")
    policy = cli.ok("policy", "create", "nightly", "--disk", "d1", "--keep-last", "2")
    assert policy["disks"] == [{"id": disk["id"], "name": "d1"}] and policy["next_run_at"]
    for _ in range(3):
        outcome = cli.ok("policy", "run", "nightly", "--now")
        assert any(o["status"] == "succeeded" for o in outcome)
    kept = cli.ok("backup", "list", "--disk", "d1")
    assert len(kept) == 2 and all(b["policy_id"] == policy["id"] for b in kept)
    cli.ok("policy", "delete", "nightly", "--yes")
    assert len(cli.ok("backup", "list", "--disk", "d1")) == 2  # backups outlive the policy
    assert json.dumps(cli.ok("policy", "list")) == "[]"


@pytest.mark.slow
def test_pinned_and_manual_backups_never_expire(cli: CLI) -> None:
    disk = data_disk(cli, "d1")
    cli.ok("policy", "create", "hourly", "--disk", "d1", "--keep-last", "1")
    first = cli.ok("policy", "run", "hourly", "--now")[0]
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(300_000))
    manual = run_job(cli, "backup", "create", "d1")
    cli.ok("backup", "pin", first["backup"])
    for _ in range(2):
        with open(disk["path"], "r+b") as handle:  # each backup holds data of its own
            handle.write(os.urandom(300_000))
        cli.ok("policy", "run", "hourly", "--now")
    ids = {b["id"] for b in cli.ok("backup", "list", "--disk", "d1")}
    assert first["backup"] in ids, "a pinned backup is exempt"
    assert manual["id"] in ids, "only the policy's automatic backups expire"
    assert len(ids) == 3
    cli.ok("backup", "unpin", first["backup"])
    plan = cli.ok("policy", "prune", "hourly", "--dry-run")
    assert [i["id"] for i in plan["items"]] == [first["backup"]]
    assert plan["items"][0]["bytes"] > 0, "the bytes really freed"
    cli.ok("policy", "prune", "hourly", "--yes")
    assert first["backup"] not in {b["id"] for b in cli.ok("backup", "list", "--disk", "d1")}


def test_a_slot_runs_once_however_often_policy_run_is_called(cli: CLI) -> None:
    data_disk(cli, "d1")
    cli.ok("policy", "create", "often", "--disk", "d1", "--every", "1h")
    first = cli("policy", "run", "--json")
    second = cli("policy", "run", "--json")
    assert first.code == 0 and second.code == 0
    ran = [o for o in first.json() + second.json() if o.get("disk")]
    assert len(ran) <= 1, "the current slot ran at most once"


@pytest.mark.slow
@pytest.mark.s3
def test_policy_run_exit_codes_with_the_s3_server_stopped(
    cli: CLI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    weed = find_weed()
    if weed is None:
        pytest.skip("SeaweedFS weed binary not installed")
    data_disk(cli, "ok")
    lost = data_disk(cli, "lost")
    cli.ok("policy", "create", "mixed", "--disk", "ok", "--disk", "lost")
    Path(lost["path"]).unlink()  # this disk's backup fails
    result = cli("policy", "run", "mixed", "--now", "--json")
    assert result.code == 3, (result.out, result.err)
    with running_server(weed, tmp_path_factory.mktemp("s3-stopped")) as server:
        add_s3_vault(cli, server, "offsite")
        cli.ok("policy", "create", "offsite", "--vault", "offsite", "--disk", "ok")
        assert cli("policy", "run", "offsite", "--now", "--json").code == 0
        server.stop()
        result = cli("policy", "run", "offsite", "--now", "--json")
    assert result.code == 1, (result.out, result.err)
    failed = [o for o in result.json() if o["status"] == "failed"]
    assert failed and "Traceback" not in result.err
    # a backup that could not even start (the vault unreachable) is a failed job: the disk
    # is failing, and `blockvault status` says so with its Nagios CRITICAL exit code
    jobs = cli.ok("job", "list")
    assert jobs[0]["target_name"] == "ok" and jobs[0]["status"] == "failed", jobs[0]
    status = cli("status", "--json")
    assert status.code == 2, (status.out, status.err)
    disks = {d["disk"]: d for d in status.json()["disks"]}
    assert disks["ok"]["status"] == "failing", disks["ok"]
    assert "EndpointConnectionError" in disks["ok"]["detail"]
    assert disks["lost"]["status"] == "failing"
    text = cli("status")
    assert text.code == 2 and text.out.startswith("BLOCKVAULT CRITICAL - 2 failing")
    assert "  ok: failing since" in text.out


def test_two_runners_that_both_saw_a_slot_due_run_it_once(cli: CLI) -> None:
    """The race the slot claim exists for: two services compute the same due slot before
    either has claimed it; only the first to insert the slot's row runs it."""
    from core.api import Blockvault
    from core.ops import policies

    data_disk(cli, "d1")
    cli.ok("policy", "create", "often", "--disk", "d1", "--every", "1h")
    first, second = (Blockvault.open(home=cli.home) for _ in range(2))
    try:
        later = datetime.now(UTC) + timedelta(hours=2)
        seen = [policies.due_policies(bv.ctx, now=later) for bv in (first, second)]
        assert [slot for _, _, slot in seen[0]] == [slot for _, _, slot in seen[1]]
        ran = [
            policies.run_policy(bv.ctx, *due[0])
            for bv, due in zip((first, second), seen, strict=True)
        ]
    finally:
        first.close()
        second.close()
    assert [o["status"] for o in ran[0] if o.get("disk")] == ["succeeded"]
    assert ran[1] == [], "the second runner found the slot claimed"
    assert len(cli.ok("backup", "list", "--disk", "d1")) == 1


def test_drill_shorthands_become_schedules(cli: CLI) -> None:
    policy = cli.ok("policy", "create", "drilled", "--drill", "weekly")
    assert policy["drill"] == "sun at 04:00"
    assert "schedule" in cli.fails("policy", "create", "bad", "--drill", "fortnightly")
