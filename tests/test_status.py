"""Protection status (issue 10, items 5 and 6): each disk protected, overdue, failing or
unprotected, with an injected clock for the core and the real CLI for `blockvault status`
(Nagios exit codes 0/1/2), the Prometheus textfile, the disk.overdue / disk.failing alerts
raised once per disk per spell through a real notify_command, and `events --follow`."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.api import Blockvault
from core.ops import protection
from tests.support.cli import CLI

REPO = Path(__file__).resolve().parents[1]


# --- setup ----------------------------------------------------------------------------------


@pytest.fixture
def notified(tmp_path: Path) -> Path:
    """Where the notify command appends each JSON event it reads on stdin, one a line."""
    return tmp_path / "notified.jsonl"


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], notified: Path) -> CLI:
    target = shlex.quote(str(notified))
    command = json.dumps(f"sh -c 'cat >> {target}; echo >> {target}'")  # a TOML basic string
    config = f'[blockvault]\nchunk_size = 262144\ntimezone = "UTC"\nnotify_command = {command}\n'
    return CLI.with_config(tmp_path / "home", capsys, config)


@pytest.fixture
def bv(cli: CLI) -> Iterator[Blockvault]:
    opened = Blockvault.open(home=cli.home)
    yield opened
    opened.close()


def alerts_in(notified: Path) -> list[dict[str, Any]]:
    if not notified.exists():
        return []
    return [json.loads(line) for line in notified.read_text().splitlines() if line]


def data_disk(cli: CLI, name: str) -> dict:
    disk = cli.ok("disk", "create", name, "--size", "1M")
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(300_000))
    return disk


def by_disk(report: dict) -> dict[str, dict]:
    return {d["disk"]: d for d in report["disks"]}


def backdate_policy(cli: CLI, name: str, hours: float) -> None:
    """Make the policy `hours` older, as if it had been created then (the real catalog)."""
    with sqlite3.connect(cli.home / "catalog.sqlite") as db:
        (created,) = db.execute(
            "SELECT created_at FROM policies WHERE name = ?", (name,)
        ).fetchone()
        older = datetime.fromisoformat(created) - timedelta(hours=hours)
        db.execute(
            "UPDATE policies SET created_at = ? WHERE name = ?",
            (older.strftime("%Y-%m-%d %H:%M:%S.%f"), name),
        )


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- the core, with an injected clock ---------------------------------------------------------


def test_unprotected_then_protected_after_a_policy_run(cli: CLI, bv: Blockvault) -> None:
    data_disk(cli, "d1")
    row = by_disk(protection.status(bv.ctx))["d1"]
    assert row["status"] == "unprotected" and row["policies"] == []
    assert row["last_success_at"] is None and row["next_run_at"] is None
    cli.ok("policy", "create", "hourly", "--every", "1h", "--disk", "d1")
    report = protection.status(bv.ctx)
    assert by_disk(report)["d1"]["status"] == "protected"  # nothing was due yet
    cli.ok("policy", "run", "hourly", "--now")
    report = protection.status(bv.ctx)
    row = by_disk(report)["d1"]
    assert row["status"] == "protected" and row["policies"] == ["hourly"]
    assert row["last_success_at"] and row["last_bytes_stored"] > 0 and row["last_duration"] > 0
    assert moment(row["next_run_at"]) > moment(report["at"])
    assert report["counts"] == {"protected": 1, "overdue": 0, "failing": 0, "unprotected": 0}
    vault = report["vaults"][0]
    assert vault["vault"] == "local" and vault["backups"] == 1
    assert vault["stored_bytes"] == row["last_bytes_stored"]
    assert vault["last_success_at"] == row["last_success_at"]


def test_overdue_once_a_slot_passes_its_grace_with_no_backup(cli: CLI, bv: Blockvault) -> None:
    data_disk(cli, "d1")
    cli.ok("policy", "create", "hourly", "--every", "1h", "--disk", "d1")
    cli.ok("policy", "run", "hourly", "--now")
    first_slot = moment(by_disk(protection.status(bv.ctx))["d1"]["next_run_at"])

    def at(when: datetime) -> dict:
        return by_disk(protection.status(bv.ctx, now=when))["d1"]

    assert at(first_slot + timedelta(seconds=10))["status"] == "protected", "within the grace"
    late = at(first_slot + timedelta(minutes=7))  # grace: a tenth of the period
    assert late["status"] == "overdue" and "policy hourly" in late["detail"]
    assert moment(late["since"]) == first_slot
    later = at(first_slot + timedelta(hours=5, minutes=7))
    assert later["status"] == "overdue"
    assert later["since"] == late["since"], "one spell: it began at the first slot missed"
    assert moment(later["next_run_at"]) == first_slot + timedelta(hours=6)


def test_failing_when_the_newest_backup_failed(cli: CLI, bv: Blockvault, notified: Path) -> None:
    data_disk(cli, "ok")
    lost = data_disk(cli, "lost")
    cli.ok("policy", "create", "hourly", "--every", "1h", "--disk", "ok", "--disk", "lost")
    cli.ok("policy", "run", "hourly", "--now")
    Path(lost["path"]).unlink()
    assert cli("policy", "run", "hourly", "--now", "--json").code == 3
    report = protection.status(bv.ctx)
    row = by_disk(report)["lost"]
    assert row["status"] == "failing" and "is missing" in row["detail"]
    assert row["last_success_at"], "the earlier backup is still its last success"
    assert by_disk(report)["ok"]["status"] == "protected"
    # failing outranks overdue: a slot passing changes neither the status nor the spell
    later = by_disk(protection.status(bv.ctx, now=datetime.now(UTC) + timedelta(hours=3)))
    assert later["lost"]["status"] == "failing" and later["lost"]["since"] == row["since"]
    assert later["ok"]["status"] == "overdue"
    # the failed job alerted once, through the notify command
    assert [(a["action"], a["object_name"]) for a in alerts_in(notified)] == [
        ("job.failed", "lost")
    ]


def test_overdue_and_failing_alerts_are_raised_once_per_spell(
    cli: CLI, bv: Blockvault, notified: Path
) -> None:
    data_disk(cli, "d1")
    cli.ok("policy", "create", "hourly", "--every", "1h", "--disk", "d1")
    cli.ok("policy", "run", "hourly", "--now")
    first_slot = moment(by_disk(protection.status(bv.ctx))["d1"]["next_run_at"])
    late = first_slot + timedelta(minutes=7)
    raised = protection.raise_overdue_alerts(bv.ctx, now=late)
    assert [(e["action"], e["object_name"]) for e in raised] == [("disk.overdue", "d1")]
    assert raised[0]["since"] == by_disk(protection.status(bv.ctx, now=late))["d1"]["since"]
    # the service ticking, cron calling status, slots passing: the same spell, no new alert
    for when in (late, late + timedelta(seconds=30), late + timedelta(hours=4)):
        assert protection.raise_overdue_alerts(bv.ctx, now=when) == []
    assert [a["action"] for a in alerts_in(notified)] == ["disk.overdue"]
    # protected again: the spell is forgotten, and the next one alerts again
    assert protection.raise_overdue_alerts(bv.ctx) == []
    assert len(protection.raise_overdue_alerts(bv.ctx, now=late)) == 1
    events = [e for e in bv.events(limit=100) if e["action"] == "disk.overdue"]
    assert len(events) == 2 == len(alerts_in(notified)), "every alert is in events"
    assert all(e["object_name"] == "d1" and "policy hourly" in e["detail"] for e in events)


@pytest.mark.slow
def test_two_processes_raise_one_alert_between_them(cli: CLI, notified: Path) -> None:
    data_disk(cli, "d1")
    cli.ok("policy", "create", "hourly", "--every", "1h", "--disk", "d1")
    backdate_policy(cli, "hourly", hours=3)
    opened = [Blockvault.open(home=cli.home) for _ in range(4)]
    start = threading.Barrier(len(opened))
    raised: list[dict] = []

    def tick(bv: Blockvault) -> None:
        start.wait()
        raised.extend(bv.raise_protection_alerts())

    threads = [threading.Thread(target=tick, args=(bv,)) for bv in opened]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for bv in opened:
        bv.close()
    assert [e["action"] for e in raised] == ["disk.overdue"]
    assert [a["action"] for a in alerts_in(notified)] == ["disk.overdue"]


# --- the command line -------------------------------------------------------------------------


@pytest.mark.slow
def test_status_exit_codes_ok_warning_critical(cli: CLI, notified: Path) -> None:
    assert cli("status").code == 0
    data_disk(cli, "loose")
    result = cli("status")
    assert result.code == 0, "an unprotected disk is listed, not counted"
    assert result.out.splitlines()[0] == "BLOCKVAULT OK - 1 unprotected"
    assert "  loose: unprotected: no policy covers it" in result.out

    data_disk(cli, "late")
    cli.ok("policy", "create", "hourly", "--every", "1h", "--disk", "late")
    backdate_policy(cli, "hourly", hours=3)  # its slots passed with no backup
    result = cli("status")
    assert result.code == 1, result.out
    lines = result.out.splitlines()
    assert lines[0] == "BLOCKVAULT WARNING - 1 overdue, 1 unprotected"
    assert re.match(r"  late: overdue since \S+: policy hourly: no backup since", lines[1])
    assert [a["action"] for a in alerts_in(notified)] == ["disk.overdue"]
    assert cli("status").code == 1 and len(alerts_in(notified)) == 1, "once per spell"

    broken = data_disk(cli, "broken")
    cli.ok("policy", "apply", "hourly", "broken")
    Path(broken["path"]).unlink()
    assert cli("policy", "run", "--json").code == 3  # the missed slot runs once: late is saved
    report = cli("status", "--json")
    assert report.code == 2
    data = report.json()
    assert data["state"] == "CRITICAL" and data["exit_code"] == 2
    assert data["counts"] == {"protected": 1, "overdue": 0, "failing": 1, "unprotected": 1}
    assert [(a["action"], a["object_name"]) for a in data["alerts"]] == [("disk.failing", "broken")]
    assert [(a["action"], a["object_name"]) for a in alerts_in(notified)] == [
        ("disk.overdue", "late"),
        ("job.failed", "broken"),
        ("disk.failing", "broken"),
    ]
    text = cli("status")
    assert text.code == 2 and text.out.startswith("BLOCKVAULT CRITICAL - 1 failing, 1 protected")
    assert "  broken: failing since" in text.out and "is missing" in text.out
    for column in ("DISK", "STATUS", "POLICIES", "NEXT RUN", "LAST PROVEN"):
        assert column in text.out
    assert cli("status", "-q").out == "" and len(alerts_in(notified)) == 3
    # every alert is in `events`
    actions = [(e["action"], e["object_name"]) for e in cli.ok("events", "--limit", "200")]
    assert ("disk.overdue", "late") in actions and ("disk.failing", "broken") in actions
    assert ("job.backup.failed", "broken") in actions


@pytest.mark.slow
def test_status_read_only_raises_no_alert_and_changes_nothing(cli: CLI, notified: Path) -> None:
    data_disk(cli, "late")
    cli.ok("policy", "create", "hourly", "--every", "1h", "--disk", "late")
    backdate_policy(cli, "hourly", hours=3)
    catalog = cli.home / "catalog.sqlite"
    with sqlite3.connect(catalog) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = catalog.read_bytes()
    result = cli("--read-only", "status", "--json")
    assert result.code == 1 and result.json()["alerts"] == []
    assert catalog.read_bytes() == before and alerts_in(notified) == []
    assert cli("status").code == 1 and len(alerts_in(notified)) == 1


def test_status_help_documents_the_exit_codes(cli: CLI) -> None:
    result = cli("status", "--help")
    assert result.code == 0
    for line in ("0  OK", "1  WARNING", "2  CRITICAL", "blockvault_disk_status", "one-hot"):
        assert line in result.out


# --- the Prometheus textfile ------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A small parser of the text exposition format: every sample's family has HELP and TYPE
    lines before it; label values unescaped (backslash, quote, newline)."""
    assert text.endswith("\n")
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    helped, typed = set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind == "gauge"
            typed.add(name)
            families.setdefault(name, [])
        else:
            match = SAMPLE.match(line)
            assert match, line
            name, body, value = match.groups()
            assert name in helped and name in typed, name
            labels = {}
            if body:
                pairs = LABEL.findall(body)
                assert ",".join(f'{k}="{v}"' for k, v in pairs) == body, body
                labels = {
                    k: re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], v)
                    for k, v in pairs
                }
            families[name].append((labels, float(value)))
    return families


def one(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    found = [v for got, v in samples if all(got.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (labels, samples)
    return found[0]


@pytest.mark.slow
def test_prometheus_textfile(cli: CLI, tmp_path: Path) -> None:
    cli.ok("server", "create", "web1")
    disk = cli.ok("disk", "create", "d1", "--size", "1M", "--server", "web1")
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(300_000))
    data_disk(cli, "loose")
    cli.ok("policy", "create", "hourly", "--every", "1h", "--disk", "d1")
    cli.ok("policy", "run", "hourly", "--now")
    target = tmp_path / "textfile" / "blockvault.prom"
    target.parent.mkdir()
    result = cli("status", "--prometheus", str(target), "--json")
    assert result.code == 0
    report = result.json()
    assert not (target.parent / "blockvault.prom.tmp").exists()
    assert target.stat().st_mode & 0o777 == 0o644
    metrics = parse_exposition(target.read_text())
    d1 = by_disk(report)["d1"]
    status = metrics["blockvault_disk_status"]
    assert len(status) == 8, "one-hot: every status of every disk"
    assert one(status, disk="d1", server="web1", status="protected") == 1
    assert one(status, disk="d1", server="web1", status="failing") == 0
    assert one(status, disk="loose", server="", status="unprotected") == 1
    assert one(
        metrics["blockvault_disk_last_success_timestamp_seconds"], disk="d1"
    ) == pytest.approx(moment(d1["last_success_at"]).timestamp())
    assert one(metrics["blockvault_disk_last_backup_duration_seconds"], disk="d1") == (
        pytest.approx(d1["last_duration"])
    )
    assert one(metrics["blockvault_disk_last_backup_bytes"], disk="d1") == d1["last_bytes_stored"]
    assert d1["last_bytes_stored"] > 0
    # values a disk does not have yet are absent, not zero
    assert all(
        labels["disk"] == "d1"
        for labels, _ in metrics["blockvault_disk_last_success_timestamp_seconds"]
    )
    assert metrics["blockvault_disk_last_proven_restore_timestamp_seconds"] == []
    vault = report["vaults"][0]
    assert one(metrics["blockvault_vault_stored_bytes"], vault="local") == vault["stored_bytes"]
    assert one(
        metrics["blockvault_vault_last_success_timestamp_seconds"], vault="local"
    ) == pytest.approx(moment(vault["last_success_at"]).timestamp())
    assert one(metrics["blockvault_disks"], status="unprotected") == 1
    assert one(metrics["blockvault_status_timestamp_seconds"]) == pytest.approx(
        moment(report["at"]).timestamp()
    )
    # an unwritable place is one line, not a traceback
    assert "cannot write" in cli.fails("status", "--prometheus", str(tmp_path / "no" / "x.prom"))


def test_prometheus_label_values_are_escaped() -> None:
    odd = 'a\\b "quoted"\nnext'
    report = {
        "at": "2026-01-02T03:04:05+00:00",
        "counts": {"protected": 0, "overdue": 0, "failing": 1, "unprotected": 0},
        "disks": [
            {
                "disk": odd,
                "server": None,
                "status": "failing",
                "last_success_at": None,
                "last_duration": None,
                "last_bytes_stored": None,
                "last_proven_restore_at": "2026-01-01T00:00:00+00:00",
            }
        ],
        "vaults": [{"vault": odd, "stored_bytes": 7, "last_success_at": None}],
    }
    text = protection.prometheus_text(report)
    assert '{disk="a\\\\b \\"quoted\\"\\nnext",server="",status="failing"} 1' in text
    assert "\nnext" not in text
    metrics = parse_exposition(text)
    assert one(metrics["blockvault_disk_status"], disk=odd, status="failing") == 1
    assert one(metrics["blockvault_vault_stored_bytes"], vault=odd) == 7
    assert one(
        metrics["blockvault_disk_last_proven_restore_timestamp_seconds"], disk=odd
    ) == pytest.approx(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    assert metrics["blockvault_vault_last_success_timestamp_seconds"] == []


# --- events --follow ----------------------------------------------------------------------


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str], wanted: Any, timeout: float = 20.0) -> list[dict]:
    seen: list[dict] = []
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while datetime.now(UTC) < deadline:
        try:
            seen.append(json.loads(lines.get(timeout=0.2)))
        except queue.Empty:
            continue
        if wanted(seen[-1]):
            return seen
    raise AssertionError(f"not streamed within {timeout} s: {seen}")


@pytest.mark.slow
def test_events_follow_streams_events_from_another_process(cli: CLI) -> None:
    data_disk(cli, "old")
    code = "import sys; from tui.cli.main import main; sys.exit(main(sys.argv[1:]))"
    follower = subprocess.Popen(
        [sys.executable, "-c", code, "--home", str(cli.home), "events", "--follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        lines = _lines(follower)
        # history first, oldest first
        history = _until(lines, lambda e: e["object_name"] == "old")
        assert [e["id"] for e in history] == sorted(e["id"] for e in history)
        data_disk(cli, "fresh")  # recorded by this process while the other one follows
        streamed = _until(lines, lambda e: e["object_name"] == "fresh")
        assert streamed[-1]["action"] == "disk.create"
        ids = [e["id"] for e in history + streamed]
        assert ids == sorted(set(ids)), "each event once, in order"
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=60) == 0, follower.stderr.read() if follower.stderr else ""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_events_follow_prints_plain_lines(
    cli: CLI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_disk(cli, "d1")
    from tui.cli import jobs

    def interrupt(_seconds: float) -> None:  # the first wait for new events: Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs.time, "sleep", interrupt)
    result = cli("events", "--follow", "--limit", "1")
    assert result.code == 0
    [line] = result.out.splitlines()
    assert "  disk.create  disk d1  size 1048576" in line
