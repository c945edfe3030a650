"""`python -m tui.console`: the console itself, whether or not stdin is a terminal.

`blockvault web` runs this for each browser session (textual-serve talks to it over pipes,
where bare `blockvault` would refuse: without a terminal it prints its usage)."""

import argparse
import sys

from tui.console.app import run_console

parser = argparse.ArgumentParser(prog="python -m tui.console", description=__doc__)
parser.add_argument("--home")
parser.add_argument("--catalog")
parser.add_argument("--demo", action="store_true")
parser.add_argument("--read-only", action="store_true")
args = parser.parse_args()
sys.exit(
    run_console(home=args.home, catalog=args.catalog, demo=args.demo, read_only=args.read_only)
)
