"""`blockvault config show`: every effective setting and where it came from (a flag, an
environment variable, config.toml, the default). Opens no catalog: it helps most when the
catalog or the config file is what is wrong. The keys are documented in docs/configuration.md."""

from __future__ import annotations

import argparse

from tui.cli.common import add_verb, json_parent, show_list, verbs_of

COLUMNS = ("key", "value", "source")


def config_show(args: argparse.Namespace, _build_parser: object) -> None:
    from core.api import Blockvault  # lazy, as in main.run

    rows = Blockvault.describe_config(home=args.home, catalog_url=args.catalog)
    show_list(COLUMNS, "no settings")(rows, args)


def add_to(noun: argparse.ArgumentParser) -> None:
    config = verbs_of(noun)
    p = add_verb(
        config,
        "show",
        lambda bv, a: None,  # never called: run_without_catalog below
        parents=[json_parent()],
        help="every effective setting with its source: flag, environment, config.toml or "
        "default (the keys: docs/configuration.md)",
    )
    p.set_defaults(run_without_catalog=config_show)
