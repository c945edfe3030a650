"""Write the figures table of docs/reliability.md from the fault ledger of the last test run.

Every test that injects a fault records it (tests/support/ledger.py); `pytest` sums them at
the end of the run, prints the table and fails when data was lost or silently corrupted.
This command copies that table into docs/reliability.md between its figures markers:

    .venv/bin/python -m pytest && .venv/bin/python scripts/reliability_figures.py
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import ledger  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
SABOTAGE_START, SABOTAGE_END = "<!-- sabotage:start -->", "<!-- sabotage:end -->"


def _replace(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only print; fail on any loss")
    args = parser.parse_args(argv)
    figures = ledger.read()
    if not figures.injected:
        print(
            f"no fault ledger in {ledger.ledger_dir()}: run the test suite first", file=sys.stderr
        )
        return 1
    table = ledger.table(figures)
    print(table)
    if figures.failed:
        for loss in figures.losses:
            print(f"DATA LOST OR SILENTLY CORRUPTED: {loss}", file=sys.stderr)
        return 1
    if args.check:
        return 0
    text = DOC.read_text()
    if START not in text or END not in text:
        print(f"{DOC} has no {START} ... {END} section", file=sys.stderr)
        return 1
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    made = f"_Generated {stamp} by `scripts/reliability_figures.py` from the suite's"
    text = _replace(text, START, END, f"{made} fault ledger._\n\n{table}")
    sabotage = ledger.ledger_dir() / "sabotage.md"
    if sabotage.exists() and SABOTAGE_START in text:
        report = sabotage.read_text().strip()
        text = _replace(text, SABOTAGE_START, SABOTAGE_END, f"{made} sabotage run._\n\n{report}")
    DOC.write_text(text)
    print(f"wrote the figures table into {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
