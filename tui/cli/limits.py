"""`--limit-upload` / `--limit-download`: the options of the verbs that move data to or from a
vault (backup create, restore, copy, verify, drill), over config.toml's defaults."""

from __future__ import annotations

import argparse

from core.api import UserError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of --help)
if TYPE_CHECKING:
    from typing import Any

#: what a limit counts, for the help
_WIRE = "counted on the chunks as stored (compressed, encrypted), for the whole job"


def rate_arg(text: str) -> int:
    """Bytes per second ('20MiB', '50M', '512K'); 0 for '0', 'off', 'none' (no limit)."""
    from core.api import parse_rate  # only when a rate is given: --help does not load it

    try:
        return parse_rate(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def limits_parent(*, upload: bool, download: bool) -> argparse.ArgumentParser:
    """The limit options of a verb that sends (`upload`) and/or reads (`download`) chunks."""
    parent = argparse.ArgumentParser(add_help=False)
    if upload:
        parent.add_argument(
            "--limit-upload",
            type=rate_arg,
            metavar="RATE",
            help=f"send at most RATE per second to the vault (e.g. 20MiB; 0: no limit), {_WIRE}; "
            "default: limit_upload in config.toml",
        )
    if download:
        parent.add_argument(
            "--limit-download",
            type=rate_arg,
            metavar="RATE",
            help=f"read at most RATE per second from the vault (e.g. 50M; 0: no limit), {_WIRE}; "
            "default: limit_download in config.toml",
        )
    return parent


def limits_of(args: argparse.Namespace) -> dict[str, Any]:
    """The limits the command gave, as façade keywords (absent: config.toml's)."""
    return {
        key: getattr(args, key)
        for key in ("limit_upload", "limit_download")
        if getattr(args, key, None) is not None
    }
