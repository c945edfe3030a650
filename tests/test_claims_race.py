"""A disk has one owner at a time: four real CLI processes race for it, round after round.

The acceptance criterion of the claims issue: "50 rounds of four processes racing restore,
backup, rollback and delete on one disk: every round exactly one succeeds, the others exit
with 'disk X is busy (job J on host H)', and the disk equals one backup byte for byte."

The scenario: disk `db` (32 MiB), backup X of content A (random), backup Y of content B (a
partly used disk), snapshot S of B. Each round the disk is used first: 16 random bytes land
at the start of every chunk, as on a live disk, so whichever job wins has about a thousand
new chunks to store (the backup in the vault, restore and rollback in their safety snapshot)
and holds the disk for a second or so, far longer than the others need to reach their claim.
Then four OS processes race:

    backup restore X --to-original --yes --json     -> disk == A (backup X)
    backup create db --json                         -> disk unchanged == the new backup
    snapshot rollback S --yes --json                -> disk == B (backup Y, snapshot S)
    disk delete db --yes --json                     -> disk gone, its backups kept

They are forked from a launcher that has already imported `tui.cli.main` (and dry-run each
verb once on a home of its own, so lazy imports are paid too); each sleeps until one shared
start instant plus a few ms of seeded jitter, then runs `main(argv)` exactly as
`python -m tui.cli` would, with its own connection to the one real SQLite catalog file. The
delete plans slowest (it measures what it frees over every file of the pool), so it may start
up to DELETE_HEAD earlier: every verb wins some rounds. No mocks, nothing of the core patched:
only the claim (`Catalog.writer` + compare-and-set in core/jobs/claims.py) picks the winner.

After every round the catalog is inspected through the CLI and by reading the SQLite file:
no job left active, no job row from a loser, no half-made backup or snapshot, the disk
`available`, complete and unclaimed, and its bytes equal exactly the backup the winner implies
(a new backup is also restored to a scratch disk and compared). The winner's safety snapshot
is then deleted, so every round plans against the same pool. When the delete wins, the
scenario is built again (a new disk `db`, new backups and snapshot) for the next round.

`BLOCKVAULT_RACE_SEED` replays another jitter sequence; each round's stdout and stderr stay
in the test's `rounds/` folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import CLI
from tests.support.ledger import Ledger

KiB, MiB = 1 << 10, 1 << 20
DISK_SIZE = 64 * MiB
CHUNK = 64 * KiB  # ~1000 chunks: every job stores or writes ~1000 of them (about a second)
CONFIG = f"[blockvault]\nchunk_size = {CHUNK}\nmax_snapshots_per_disk = 256\n"
JITTER = 0.05  # seconds: each process starts within this much of the shared instant...
DELETE_HEAD = 0.08  # ...but the delete, slower to plan, may start up to this much earlier
REPO = Path(__file__).resolve().parent.parent
ACTIVE = ("queued", "running", "cancelling")
BUSY_FORMS = (
    re.compile(
        r"^blockvault: error: disk db is busy \(job (job-[0-9a-f]+) on host (\S+): ([a-z-]+)\)$"
    ),
    # a delete that finds the rollback reading a snapshot of db names that reader: the same job
    re.compile(
        r"^blockvault: error: a snapshot of disk db is being read by job (job-[0-9a-f]+) "
        r"on host (\S+) \(([a-z-]+)\)$"
    ),
)


def error_text(err: str) -> str:
    """stderr as its one text line: a --json error object (README "Exit codes") read back as
    `blockvault: error: MESSAGE`, so one form serves the refusals matched here."""
    lines = [line for line in err.splitlines() if line.strip()]
    if len(lines) != 1 or not lines[0].startswith('{"error"'):
        return err
    error = json.loads(lines[0])["error"]
    label = "" if error["kind"] in ("internal", "interrupted") else "error: "
    return f"blockvault: {label}{error['message']}\n"


def busy_owner(line: str) -> tuple[str, ...] | None:
    """(job, host, kind) of the job a refusal names, or None when it is not a refusal."""
    for form in BUSY_FORMS:
        if found := form.match(line):
            return found.groups()
    return None


# Imports the CLI and warms it up once, then per request (one JSON line on stdin) forks one
# process per command; each child points fd 0 at /dev/null and fd 1/2 at its own files, sleeps
# until the shared start instant (+ its jitter), runs main(argv) and exits with its code.
# Answers each request with one JSON line: every child's exit code and when it ended.
LAUNCHER = r"""
import contextlib, io, json, os, sys, time, traceback
from tui.cli.main import main

for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0, argv

def child(argv, out, err, start):
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for path, fd in ((out, 1), (err, 2)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(handle, fd)
        os.close(handle)
    time.sleep(max(0.0, start - time.time()))
    code = 1
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

for line in sys.stdin:
    request = json.loads(line)
    start = time.time() + request["lead"]
    pids = {}
    for name, command in request["commands"].items():
        pid = os.fork()
        if pid == 0:
            child(command["argv"], command["out"], command["err"], start + command["delay"])
        pids[pid] = name
    ended = {}
    while pids:
        pid, status = os.wait()
        ended[pids.pop(pid)] = {
            "code": os.waitstatus_to_exitcode(status), "at": round(time.time() - start, 3)
        }
    print(json.dumps(ended), flush=True)
"""


@dataclass
class Outcome:
    verb: str
    code: int
    at: float  # seconds from the shared start to its exit
    delay: float  # its jitter
    out: str
    err: str

    def describe(self) -> str:
        return (
            f"{self.verb}: exit {self.code} at {self.at:.3f} s "
            f"(+{self.delay * 1000:.0f} ms) {self.err.strip()!r}"
        )


class Launcher:
    """The pre-imported launcher process; `race` runs one round of forked CLI processes."""

    def __init__(self, home: Path, logs: Path, warmup: list[list[str]]) -> None:
        self.home, self.logs = home, logs
        logs.mkdir(parents=True, exist_ok=True)
        self.stderr = open(logs / "launcher.err", "w+")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, json.dumps(warmup)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def race(
        self, label: str, commands: dict[str, list[str]], delays: dict[str, float]
    ) -> dict[str, Outcome]:
        files = {
            name: (self.logs / f"{label}-{name}.out", self.logs / f"{label}-{name}.err")
            for name in commands
        }
        request = {
            "lead": 0.1,
            "commands": {
                name: {
                    "argv": ["--home", str(self.home), *argv],
                    "out": str(files[name][0]),
                    "err": str(files[name][1]),
                    "delay": delays[name],
                }
                for name, argv in commands.items()
            },
        }
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            self.stderr.seek(0)
            pytest.fail(f"the launcher died: {self.stderr.read()}")
        ended = json.loads(reply)
        return {
            name: Outcome(
                name,
                ended[name]["code"],
                ended[name]["at"],
                delays[name],
                files[name][0].read_text(),
                error_text(files[name][1].read_text()),
            )
            for name in commands
        }

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@dataclass
class Scenario:
    """One generation of disk db: backup X (content A), backup Y and snapshot S (content B)."""

    generation: int
    disk_id: str
    path: str
    x: str
    y: str
    s: str

    def commands(self) -> dict[str, list[str]]:
        return {
            "restore": ["backup", "restore", self.x, "--to-original", "--yes", "--json"],
            "backup": ["backup", "create", "db", "--json"],
            "rollback": ["snapshot", "rollback", self.s, "--yes", "--json"],
            "delete": ["disk", "delete", "db", "--yes", "--json"],
        }


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Race:
    cli: CLI
    launcher: Launcher
    contents: dict[str, bytes]
    rng: random.Random
    digests: dict[str, str] = field(default_factory=dict)
    wins: Counter = field(default_factory=Counter)
    margins: dict[str, list[float]] = field(default_factory=dict)  # winner end - last loser end
    ledger: Ledger | None = None  # each round is one fault (four processes, one disk)

    def __post_init__(self) -> None:
        self.digests = {k: hashlib.sha256(v).hexdigest() for k, v in self.contents.items()}

    def sql(self, query: str, *args: Any) -> list[tuple]:
        """Read the real catalog file (the CLI processes are all gone by now), or the real
        PostgreSQL database when the race runs there."""
        if url := os.environ.get("BLOCKVAULT_CATALOG"):
            import psycopg

            conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
            with psycopg.connect(conninfo) as database:
                rows = database.execute(query.replace("?", "%s"), args).fetchall()  # type: ignore[arg-type]
                return [tuple(row) for row in rows]
        connection = sqlite3.connect(self.cli.home / "catalog.sqlite", timeout=30)
        try:
            return connection.execute(query, args).fetchall()
        finally:
            connection.close()

    def count(self, table: str) -> int:
        return self.sql(f"SELECT count(*) FROM {table}")[0][0]

    def job(self, *argv: str) -> dict[str, Any]:
        """Run a job verb in-process; return its result (the last JSON line)."""
        result = self.cli(*argv, "--json")
        assert result.code == 0, f"{argv}: {result.err}"
        return json.loads(result.out.strip().splitlines()[-1])

    def write(self, path: str, content: str) -> None:
        with open(path, "r+b") as handle:
            handle.write(self.contents[content])

    def use(self, path: str) -> str:
        """Change the start of every chunk, as a running system would; returns the digest."""
        fd = os.open(path, os.O_WRONLY)
        try:
            for offset in range(0, DISK_SIZE, CHUNK):
                os.pwrite(fd, self.rng.randbytes(16), offset)
        finally:
            os.close(fd)
        os.sync()  # nothing of the test's own writes left to flush during the race
        return digest(path)

    def build(self, generation: int) -> Scenario:
        suffix = "" if generation == 0 else str(generation)
        x, y, s = f"X{suffix}", f"Y{suffix}", f"S{suffix}"
        disk = self.cli.ok("disk", "create", "db", "--size", str(DISK_SIZE))
        self.write(disk["path"], "A")
        assert self.job("backup", "create", "db", "--name", x)["status"] == "available"
        self.write(disk["path"], "B")
        assert self.job("backup", "create", "db", "--name", y)["status"] == "available"
        assert self.job("snapshot", "create", "db", "--name", s)["status"] == "available"
        assert digest(disk["path"]) == self.digests["B"]
        return Scenario(generation, disk["id"], disk["path"], x, y, s)

    def restored_digest(self, backup_id: str) -> str:
        """Restore a backup to a scratch disk and hash it (then delete the scratch disk)."""
        copy = self.job("backup", "restore", backup_id, "--to-new", "check")
        try:
            return digest(copy["path"])
        finally:
            self.cli.ok("disk", "delete", "check", "--yes")


def winner_result(outcome: Outcome) -> dict[str, Any]:
    """The winner printed JSON lines: progress events, then one result."""
    lines = [json.loads(line) for line in outcome.out.splitlines() if line.strip()]
    assert lines, f"{outcome.verb} succeeded without printing a result"
    *events, result = lines
    assert all(e.get("type") == "progress" for e in events), outcome.out
    return result


def gone_messages(verb: str, scenario: Scenario) -> set[str]:
    """What a loser may say when the delete won: the disk (and its snapshots) are gone. A
    rollback that read its snapshot just before the delete committed says so."""
    snapshot = f"blockvault: error: no snapshot named {scenario.s!r}"
    return {
        "backup": {"blockvault: error: no disk named 'db'"},
        "restore": {"blockvault: error: the original disk db was deleted; use --to-new NAME"},
        "rollback": {snapshot, f"{snapshot} (its disk was just deleted)"},
    }[verb]


@dataclass
class Verdict:
    """What a round did, worked out before the round's assertions (for the fault ledger)."""

    detected: bool  # exactly one winner; every loser said who owns the disk (or that it went)
    intact: bool  # the disk holds exactly what the winner implies; backups X and Y survive
    partial: bool  # a job, backup or snapshot left half-made
    silent: bool  # the winner reported success, yet the bytes are not what it implies
    now: str | None = None  # the disk's digest after the round
    restored: str | None = None  # a backup winner's new backup, restored and hashed
    jobs: int = 0  # job rows right after the race (before that restore adds its own)


def parsed(outcome: Outcome) -> dict[str, Any]:
    """`winner_result` without its assertions: the last JSON line, or {}."""
    try:
        lines = [json.loads(line) for line in outcome.out.splitlines() if line.strip()]
    except ValueError:
        return {}
    return lines[-1] if lines and isinstance(lines[-1], dict) else {}


def judge(
    race: Race, scenario: Scenario, outcomes: dict[str, Outcome], before: str, backups: int
) -> Verdict:
    crashed = any("Traceback" in o.err or "internal error" in o.err for o in outcomes.values())
    winners = [o for o in outcomes.values() if o.code == 0]
    half = bool(
        race.sql("SELECT id FROM jobs WHERE status IN (?, ?, ?)", *ACTIVE)
        or race.sql("SELECT id FROM backups WHERE status != 'available'")
        or race.sql("SELECT id FROM snapshots WHERE status != 'available'")
    )
    added = int(len(winners) == 1 and winners[0].verb == "backup")
    half = half or race.count("backups") != backups + added
    if len(winners) != 1:
        now = digest(scenario.path) if Path(scenario.path).exists() else None
        # nobody won: the disk must be as it was; two winners: no byte of it can be trusted
        return Verdict(False, not winners and now == before, half, False, now)
    win = winners[0]
    result = parsed(win)
    losers = [o for o in outcomes.values() if o is not win]
    if win.verb == "delete":
        told = all(o.out == "" and o.err.strip() in gone_messages(o.verb, scenario) for o in losers)
        kept = {b["name"] for b in race.cli.ok("backup", "list", "--all")}
        intact = {scenario.x, scenario.y} <= kept and not Path(scenario.path).parent.exists()
        return Verdict(not crashed and told, intact, half, False)
    rows = race.sql("SELECT kind, host FROM jobs WHERE id = ?", result.get("job_id"))
    owner = (result.get("job_id"), rows[0][1], rows[0][0]) if rows else None
    told = all(
        o.out == "" and owner is not None and busy_owner(o.err.strip()) == owner for o in losers
    )
    now = digest(scenario.path)
    jobs = race.count("jobs")
    restored = None
    if win.verb == "backup":
        restored = race.restored_digest(result["id"]) if result.get("id") else None
        intact = now == before and restored == before
    else:  # restore: == backup X (content A); rollback: == backup Y == snapshot S (content B)
        intact = now == race.digests["A" if win.verb == "restore" else "B"]
    return Verdict(not crashed and told, intact, half, not intact, now, restored, jobs)


def run_rounds(race: Race, rounds: int) -> None:
    scenario = race.build(0)
    for number in range(rounds):
        before = race.use(scenario.path)
        jobs_before, backups_before = race.count("jobs"), race.count("backups")
        snapshots_before = race.sql(
            "SELECT count(*) FROM snapshots WHERE disk_id = ?", scenario.disk_id
        )[0][0]
        head = race.rng.uniform(0, DELETE_HEAD)
        delays = {
            verb: race.rng.uniform(0, JITTER) + (0 if verb == "delete" else head)
            for verb in scenario.commands()
        }
        outcomes = race.launcher.race(f"r{number:02d}", scenario.commands(), delays)
        story = f"round {number} (scenario {scenario.generation}):\n  " + "\n  ".join(
            o.describe() for o in outcomes.values()
        )
        verdict = judge(race, scenario, outcomes, before, backups_before)
        if race.ledger is not None:
            won = [o.verb for o in outcomes.values() if o.code == 0]
            race.ledger.record(
                "concurrency",
                detected=verdict.detected,
                data_intact=verdict.intact,
                silent_corruption=verdict.silent,
                partial_visible=verdict.partial,
                note=f"round {number}: restore, backup, rollback and delete race for one "
                f"disk; won by {', '.join(won) or 'nobody'}",
            )

        # exactly one succeeds; nobody crashes
        for o in outcomes.values():
            assert "Traceback" not in o.err and "internal error" not in o.err, f"{story}\n{o.err}"
        winners = [o for o in outcomes.values() if o.code == 0]
        assert len(winners) == 1, story
        win = winners[0]
        race.wins[win.verb] += 1
        losers = [o for o in outcomes.values() if o is not win]
        if win.verb != "delete":
            race.margins.setdefault(win.verb, []).append(win.at - max(o.at for o in losers))
        result = winner_result(win)

        # the others exit non-zero with one clear line naming the owner (or the deletion),
        # print nothing on stdout, and leave no job row behind
        if win.verb == "delete":
            assert result["status"] == "done" and result["action"] == "delete disk", win.out
            for o in losers:
                assert o.code != 0 and o.out == "", story
                assert o.err.strip() in gone_messages(o.verb, scenario), story
            assert race.count("jobs") == jobs_before, story
        else:
            job_id = result["job_id"]
            ((kind, status, host),) = race.sql(
                "SELECT kind, status, host FROM jobs WHERE id = ?", job_id
            )
            assert (kind, status) == (win.verb, "succeeded"), story
            for o in losers:
                lines = [line for line in o.err.splitlines() if line.strip()]
                assert o.code != 0 and o.out == "" and len(lines) == 1, story
                assert busy_owner(lines[0]) == (job_id, host, kind), story
            # counted before judge() restored a new backup to check it (a job of its own)
            assert verdict.jobs == jobs_before + 1, story

        # the catalog: nothing active, nothing half-made, no extra backup row
        assert race.cli.ok("job", "list", "--active") == [], story
        assert race.sql("SELECT id FROM jobs WHERE status IN (?, ?, ?)", *ACTIVE) == [], story
        assert race.sql("SELECT id, status FROM backups WHERE status != 'available'") == []
        assert race.sql("SELECT id, status FROM snapshots WHERE status != 'available'") == []
        added = 1 if win.verb == "backup" else 0
        assert race.count("backups") == backups_before + added, story
        listed = race.cli.ok("backup", "list", "--all")
        assert len(listed) == backups_before + added, story
        assert all(b["status"] == "available" for b in listed), story

        if win.verb == "delete":
            assert race.cli.fails("disk", "show", "db") == "blockvault: error: no disk named 'db'"
            assert race.sql("SELECT id FROM disks") == [], story
            assert race.sql("SELECT id FROM snapshots WHERE disk_id = ?", scenario.disk_id) == []
            assert not Path(scenario.path).parent.exists(), story
            kept = {b["name"] for b in listed if b["disk_id"] == scenario.disk_id}
            assert {scenario.x, scenario.y} <= kept, story  # deleting a disk keeps its backups
            scenario = race.build(scenario.generation + 1)
            continue

        # the disk is free, complete, and equals exactly the backup the winner implies
        disk = race.cli.ok("disk", "show", "db")
        assert (disk["id"], disk["path"]) == (scenario.disk_id, scenario.path), story
        assert disk["status"] == "available" and not disk["restore_incomplete"], story
        ((claim,),) = race.sql("SELECT claim_job_id FROM disks WHERE id = ?", scenario.disk_id)
        assert claim is None, story
        snapshots = race.cli.ok("snapshot", "list", "--disk", "db")
        assert all(s["status"] == "available" for s in snapshots), story
        assert len(snapshots) == snapshots_before + (win.verb != "backup"), story
        now = verdict.now
        if win.verb in ("restore", "rollback"):
            # restore: == backup X; rollback: == backup Y == snapshot S
            assert now == race.digests["A" if win.verb == "restore" else "B"], story
            assert [s["name"] for s in snapshots if s["kind"] == "safety"] == [result["undo"]]
            # its safety snapshot goes (as its window would end), so the next delete plans
            # against the same pool
            race.cli.ok("snapshot", "delete", result["undo"], "--yes")
        else:
            assert now == before, story  # a backup never changes the disk...
            made = race.cli.ok("backup", "show", result["id"])
            assert made["status"] == "available" and made["disk_id"] == scenario.disk_id
            assert verdict.restored == before, story  # ...and equals it (restored by judge)


def partly_used(size: int) -> bytes:
    """Random data in one chunk of eight, zeros elsewhere: snapshot S stores ~128 chunks, so
    the pool `disk delete` walks (and FIEMAP-syncs, file by file) while planning stays small."""
    content = bytearray(size)
    for offset in range(0, size, 8 * CHUNK):
        content[offset : offset + CHUNK] = os.urandom(CHUNK)
    return bytes(content)


def warm_home(
    home: Path, capsys: pytest.CaptureFixture[str], catalog: str | None = None
) -> list[list[str]]:
    """A tiny home of its own, on which the launcher dry-runs each verb once before forking
    (with a catalog of its own too: `catalog`, when the race runs on PostgreSQL)."""
    cli = CLI.with_config(home, capsys, CONFIG)
    own = ["--catalog", catalog] if catalog else []
    disk = cli.ok(*own, "disk", "create", "w", "--size", "1M")
    with open(disk["path"], "r+b") as handle:
        handle.write(os.urandom(MiB))
    for argv in (
        ("backup", "create", "w", "--name", "wx"),
        ("snapshot", "create", "w", "--name", "ws"),
    ):
        assert cli(*own, *argv).code == 0
    return [
        ["--home", str(home), *own, *argv, "--dry-run", "--json"]
        for argv in (
            ["backup", "restore", "wx", "--to-original"],
            ["backup", "create", "w"],
            ["snapshot", "rollback", "ws"],
            ["disk", "delete", "w"],
        )
    ]


def race_rounds(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rounds: int,
    ledger: Ledger,
    warm_catalog: str | None = None,
) -> Race:
    seed = int(os.environ.get("BLOCKVAULT_RACE_SEED", "20240611"))
    rng = random.Random(seed)
    cli = CLI.with_config(tmp_path / "home", capsys, CONFIG)
    contents = {"A": os.urandom(DISK_SIZE), "B": partly_used(DISK_SIZE)}
    warmup = warm_home(tmp_path / "warm", capsys, warm_catalog)
    launcher = Launcher(cli.home, tmp_path / "rounds", warmup)
    race = Race(cli, launcher, contents, rng, ledger=ledger)
    began = time.monotonic()
    try:
        run_rounds(race, rounds)
    finally:
        launcher.close()
    with capsys.disabled():
        margins = ", ".join(
            f"{verb} {min(m):.2f}/{sorted(m)[len(m) // 2]:.2f} s"
            for verb, m in sorted(race.margins.items())
        )
        print(
            f"\n{rounds} rounds in {time.monotonic() - began:.1f} s (seed {seed}); "
            f"wins: {dict(sorted(race.wins.items()))}; the winner outlasted the last loser by "
            f"(min/median) {margins}"
        )
    shutil.rmtree(cli.home)  # ~32 MiB of new chunks per round; the logs stay
    return race


@pytest.mark.slow
def test_four_processes_race_for_one_disk_quick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_ledger: Ledger
) -> None:
    race = race_rounds(tmp_path, capsys, rounds=3, ledger=fault_ledger)
    assert sum(race.wins.values()) == 3


@pytest.mark.slow
def test_ten_rounds_of_four_processes_racing_on_a_postgresql_catalog(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fault_ledger: Ledger,
    pg_cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same race with the catalog on PostgreSQL: the claim row's lock (`Catalog.writer`)
    and compare-and-set pick exactly one winner there too (fewer rounds: the full run's time)."""
    monkeypatch.setenv("BLOCKVAULT_CATALOG", pg_cluster.create_database())
    race = race_rounds(
        tmp_path, capsys, rounds=10, ledger=fault_ledger, warm_catalog=pg_cluster.create_database()
    )
    assert sum(race.wins.values()) == 10


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fifty_rounds_of_four_processes_racing_for_one_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_ledger: Ledger
) -> None:
    race = race_rounds(tmp_path, capsys, rounds=50, ledger=fault_ledger)
    assert sum(race.wins.values()) == 50
