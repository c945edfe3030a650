"""The command line: `blockvault <noun> <verb>`, one module per noun."""

from tui.cli.main import main

__all__ = ["main"]
