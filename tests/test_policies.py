"""Backup policies: schedule validation, retention rules, and a forced run end to end."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.catalog.models import Backup, Policy
from core.rules.retention import due, retention_victims
from tests.support.cli import CLI

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def backups(ages_days: list[float]) -> list[Backup]:
    return [
        Backup(
            id=f"bk-{i:06x}",
            name=f"b{i}",
            vault_id="v",
            disk_id="d",
            created_at=NOW - timedelta(days=age),
        )
        for i, age in enumerate(ages_days)
    ]


def test_keep_last_keeps_the_newest_n() -> None:
    victims = retention_victims(backups([0, 1, 2, 3, 4]), keep_last=2, keep_days=None, now=NOW)
    assert [v.name for v in victims] == ["b2", "b3", "b4"]


def test_keep_days_keeps_young_backups_even_beyond_keep_last() -> None:
    victims = retention_victims(backups([0, 1, 2, 10, 20]), keep_last=1, keep_days=5, now=NOW)
    assert [v.name for v in victims] == ["b3", "b4"]


def test_the_newest_backup_is_never_expired() -> None:
    assert retention_victims(backups([30]), keep_last=None, keep_days=1, now=NOW) == []
    assert retention_victims(backups([30, 40]), keep_last=None, keep_days=None, now=NOW) == []


def test_due_follows_the_cron_schedule() -> None:
    policy = Policy(
        id="pol-000001", name="p", schedule="0 2 * * *", created_at=NOW - timedelta(hours=1)
    )
    assert not due(policy, last_run=None, now=NOW)
    assert due(policy, last_run=None, now=NOW + timedelta(hours=15))


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI.with_config(tmp_path / "home", capsys, "[blockvault]\nchunk_size = 262144\n")


def test_bad_schedule_and_retention_are_clear_errors(cli: CLI) -> None:
    assert "invalid schedule" in cli.fails("policy", "create", "p1", "--schedule", "61 * * * *")
    assert "between 1 and" in cli.fails("policy", "create", "p1", "--keep-last", "0")
    assert "no disk named" in cli.fails("policy", "create", "p1", "--disk", "ghost")


def test_policy_run_backs_up_its_disks_and_applies_retention(cli: CLI) -> None:
    disk = cli.ok("disk", "create", "d1", "--size", "1M")
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(300_000))
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
