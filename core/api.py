"""The façade: the one module the console and the CLI import. Every user action is one method
of `Blockvault` (core/facade.py).

Methods return plain data (dicts from `core.catalog.views`), a `Plan`, or a `JobHandle`
whose progress can be subscribed to. Nothing here prints or imports a front.

Importing this module is cheap (the errors and `printable`, a few ms): `blockvault --help`,
`--version` and shell completion import it. `Blockvault` and the helpers below load on first
use (PEP 562 `__getattr__`): lazy, because the façade brings SQLModel and the catalog (0.6 s),
`Plan` and `ProgressEvent` dataclasses (15 ms), `human_size` and friends humanize (5 ms).
"""

from __future__ import annotations

from core import __version__
from core.base.errors import (
    EXIT_CODES,
    Aborted,
    BlockvaultError,
    Cancelled,
    Conflict,
    PartlyFailed,
    PlanChanged,
    UserError,
    exit_status,
    refused,
)
from core.base.text import printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of --help)
if TYPE_CHECKING:
    from typing import Any

    from core.base.progress import ProgressEvent
    from core.base.ratelimit import parse_rate
    from core.base.units import human_size, parse_count, parse_size
    from core.facade import Blockvault
    from core.rules.plans import Plan, PlanItem

__all__ = [
    "EXIT_CODES",
    "Aborted",
    "Blockvault",
    "BlockvaultError",
    "Cancelled",
    "Conflict",
    "PartlyFailed",
    "Plan",
    "PlanChanged",
    "PlanItem",
    "ProgressEvent",
    "UserError",
    "__version__",
    "exit_status",
    "human_size",
    "parse_count",
    "parse_rate",
    "parse_size",
    "printable",
    "refused",
]


def __getattr__(name: str) -> Any:
    """The names above that are not imported yet: imported now, once."""
    if name == "Blockvault":
        from core.facade import Blockvault as value
    elif name in ("Plan", "PlanItem"):
        from core.rules import plans as module

        value = getattr(module, name)
    elif name == "parse_rate":
        from core.base.ratelimit import parse_rate as value
    elif name == "ProgressEvent":
        from core.base.progress import ProgressEvent as value
    elif name in ("human_size", "parse_count", "parse_size"):
        from core.base import units as module

        value = getattr(module, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
