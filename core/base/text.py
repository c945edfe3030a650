"""Text that came from a vault or the catalog, made safe for a terminal (RELIABILITY I12).

A backup or disk name is input other people may have written: an ESC sequence in it could
clear the screen or forge a line. `printable` shows control and invisible characters as
escapes instead of sending them; both fronts pass every such string through it.
"""

from __future__ import annotations

import re

#: C0 and C1 controls (tab and newline too), DEL, zero-width and bidirectional overrides
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, newlines: bool = False) -> str:
    """`text` with every control or invisible character shown as an escape; with
    `newlines`, line breaks stay (for messages of several lines)."""
    if not newlines:
        return _UNSAFE.sub(_escape, str(text))
    return "\n".join(_UNSAFE.sub(_escape, line) for line in str(text).split("\n"))
