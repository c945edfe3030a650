"""The fault ledger: every test that injects a fault records what happened, so the suite's
own results give docs/reliability.md its figures table and the run fails when data was lost
or corrupted silently, whatever the individual test asserted.

One JSON line per injected fault, appended to `<dir>/<pid>.jsonl` where <dir> is
$BLOCKVAULT_LEDGER_DIR (set by conftest for the session, inherited by subprocesses) or
`.reliability/` at the top of the checkout.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = "BLOCKVAULT_LEDGER_DIR"

#: the classes of fault, in the order the table lists them
CLASSES = (
    "kill",  # kill -9 or cancel mid-job
    "corrupt",  # bytes of a stored object changed, truncated, removed or swapped
    "hostile",  # a crafted vault, catalog or input
    "network",  # S3 errors, resets, lost acks, a server stopped
    "disk-full",  # ENOSPC on the pool or the vault
    "clock",  # the wall clock moved under a running job
    "concurrency",  # another process or host working on the same vault or catalog
    "sabotage",  # a deliberate break of the code, which the suite must catch
)


def ledger_dir() -> Path:
    return Path(os.environ.get(ENV) or ROOT / ".reliability")


@dataclass
class Fault:
    """One injected fault and what followed it."""

    test: str
    kind: str
    #: the system noticed: an error, a refused restore, a verify naming the damage
    detected: bool
    #: every backup that was reported good still restores byte for byte
    data_intact: bool = True
    #: a restore or verify returned wrong bytes and said nothing
    silent_corruption: bool = False
    #: a backup that never reached its commit point was listed
    partial_visible: bool = False
    note: str = ""


@dataclass
class Extra:
    """Findings that are not faults: secret scans and catalog rebuilds."""

    test: str
    secret_hits: int = 0
    secrets_scanned: int = 0
    rebuilds: int = 0
    rebuilds_ok: int = 0


def _append(entry: dict) -> None:
    directory = ledger_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{os.getpid()}.jsonl", "a") as handle:
        handle.write(json.dumps(entry) + "\n")


class Ledger:
    """What a test hands the fixture `ledger`: record() per fault, plus scans and rebuilds."""

    def __init__(self, test: str) -> None:
        self.test = test

    def record(
        self,
        kind: str,
        *,
        detected: bool,
        data_intact: bool = True,
        silent_corruption: bool = False,
        partial_visible: bool = False,
        note: str = "",
    ) -> None:
        if kind not in CLASSES:
            raise ValueError(f"unknown fault class {kind!r}; one of {CLASSES}")
        fault = Fault(
            self.test, kind, detected, data_intact, silent_corruption, partial_visible, note
        )
        _append({"type": "fault", **fault.__dict__})

    def secrets(self, *, scanned: int, hits: int) -> None:
        """`scanned` outputs or files searched for a secret, `hits` of them held it."""
        _append(
            {
                "type": "extra",
                **Extra(self.test, secret_hits=hits, secrets_scanned=scanned).__dict__,
            }
        )

    def rebuild(self, *, ok: bool) -> None:
        """A catalog rebuilt from a vault, `ok` when it matched what was there before."""
        entry = Extra(self.test, rebuilds=1, rebuilds_ok=int(ok))
        _append({"type": "extra", **entry.__dict__})


@dataclass
class Figures:
    tests: set[str] = field(default_factory=set)
    by_class: Counter = field(default_factory=Counter)
    detected_by_class: Counter = field(default_factory=Counter)
    survived: int = 0
    data_lost: int = 0
    silent_corruptions: int = 0
    partial_visible: int = 0
    secrets_scanned: int = 0
    secret_hits: int = 0
    rebuilds: int = 0
    rebuilds_ok: int = 0
    losses: list[str] = field(default_factory=list)

    @property
    def injected(self) -> int:
        return sum(self.by_class.values())

    @property
    def failed(self) -> bool:
        return bool(self.data_lost or self.silent_corruptions)


def read(directory: Path | None = None) -> Figures:
    """Sum every ledger file of the run."""
    figures = Figures()
    for path in sorted((directory or ledger_dir()).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            figures.tests.add(entry["test"])
            if entry["type"] == "fault":
                kind = entry["kind"]
                figures.by_class[kind] += 1
                figures.detected_by_class[kind] += bool(entry["detected"])
                lost = not entry["data_intact"]
                figures.data_lost += lost
                figures.silent_corruptions += bool(entry["silent_corruption"])
                figures.partial_visible += bool(entry["partial_visible"])
                figures.survived += not lost and not entry["silent_corruption"]
                if lost or entry["silent_corruption"]:
                    figures.losses.append(f"{entry['test']}: {kind} {entry['note']}".strip())
            else:
                figures.secrets_scanned += entry["secrets_scanned"]
                figures.secret_hits += entry["secret_hits"]
                figures.rebuilds += entry["rebuilds"]
                figures.rebuilds_ok += entry["rebuilds_ok"]
    return figures


def table(figures: Figures) -> str:
    """The markdown table docs/reliability.md shows."""
    rows = [
        ("tests that injected faults", str(len(figures.tests))),
        ("faults injected", str(figures.injected)),
    ]
    for kind in CLASSES:
        if figures.by_class[kind]:
            rows.append((f"of class {kind}", str(figures.by_class[kind])))
    rows += [
        ("survived (every good backup intact)", f"{figures.survived} of {figures.injected}"),
        ("data lost", str(figures.data_lost)),
        ("silent corruptions", str(figures.silent_corruptions)),
    ]
    corrupt = figures.by_class["corrupt"]
    if corrupt:
        rate = figures.detected_by_class["corrupt"] / corrupt
        rows.append(
            (
                "corruption detection rate",
                f"{rate:.1%} ({figures.detected_by_class['corrupt']} of {corrupt})",
            )
        )
    sabotage = figures.by_class["sabotage"]
    if sabotage:
        rows.append(("sabotages caught", f"{figures.detected_by_class['sabotage']} of {sabotage}"))
    rows += [
        ("partial backups visible", str(figures.partial_visible)),
        ("secret-leak hits", f"{figures.secret_hits} in {figures.secrets_scanned} outputs scanned"),
        ("catalog rebuilds matching", f"{figures.rebuilds_ok} of {figures.rebuilds}"),
    ]
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)
