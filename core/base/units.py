"""Parsing and printing sizes and names: the user-facing vocabulary of the CLI."""

from __future__ import annotations

import re

import humanize

from core.base.errors import UserError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)?\s*$", re.IGNORECASE)
MAX_SIZE = 1 << 50  # 1 PiB: the largest disk blockvault takes (and a manifest may claim)
#: a chunk: 64 KiB..64 MiB in whole 4 KiB pages (smaller chunks cost more objects than they
#: save; larger ones more memory per worker)
MIN_CHUNK_BYTES, MAX_CHUNK_BYTES = 64 << 10, 64 << 20
_FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def parse_size(text: str) -> int:
    """Parse '10G', '512MiB', '4096' into bytes (binary units); refuse zero and negatives."""
    match = _SIZE.match(str(text))
    if not match:
        raise UserError(
            f"invalid size {text!r}: use a positive number with K, M, G or T (e.g. 10G)"
        )
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * _FACTORS[unit])
    if size <= 0:
        raise UserError(f"invalid size {text!r}: must be greater than zero")
    if size > MAX_SIZE:
        raise UserError(f"invalid size {text!r}: at most 1P (1 PiB)")
    return size


def parse_count(text: str, *, low: int, high: int, what: str) -> int:
    """A whole number in [low, high] for a count option (--keep-last, --limit)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"invalid {what} {str(text)[:40]!r}: a whole number") from None
    if not low <= value <= high:
        raise UserError(f"invalid {what} {str(text)[:40]!r}: between {low} and {high}")
    return value


def validate_name(name: str, *, kind: str) -> str:
    """Names are short, typeable and safe in paths: letters, digits, '.', '_', '-'."""
    if not _NAME.match(name or ""):
        raise UserError(
            f"invalid {kind} name {name!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def human_size(size: int | None) -> str:
    """'1.0 GiB' style, the way admins read disks."""
    if size is None:
        return "-"
    return humanize.naturalsize(size, binary=True, format="%.1f")
