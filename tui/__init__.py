"""The user's terminal fronts: the Textual console (`tui.app`) and the command line (`tui.cli`)."""
