"""CLI nouns that move data: vault, backup, snapshot, policy (filled in as the engine lands)."""

from __future__ import annotations

import argparse


def add_nouns(nouns: argparse._SubParsersAction, verb, js, cf) -> None:  # type: ignore[no-untyped-def]
    """Register the transfer nouns on the top-level parser."""
