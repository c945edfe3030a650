"""GFS retention with restic's `forget` semantics: which of a policy's backups expire. Pure.

The caller passes one disk's automatic backups of one policy (it filters by policy, disk and
status) and `decide` says which to keep, and why, and which expire. The rules are restic's
`--keep-last/-hourly/-daily/-weekly/-monthly/-yearly/-within`, ORed together; pinned backups
and the newest backup are always kept. docs/retention.md has the semantics and worked examples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, tzinfo
from typing import Protocol

from core.base.errors import UserError
from core.base.times import as_utc

MAX_HOURS = 100 * 365 * 24  # a `--keep-within` duration is at most 100 years
COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")

# y and m are fixed lengths, not calendar arithmetic: a duration is a plain timedelta
UNIT_HOURS = {"y": 365 * 24, "m": 30 * 24, "w": 7 * 24, "d": 24, "h": 1}
_DURATION = re.compile(r"(?:[0-9]+[a-z])+", re.ASCII)
_PART = re.compile(r"([0-9]+)([a-z])", re.ASCII)
_DURATION_HELP = (
    "a number and a unit, e.g. 30d, 12h, 2y5m7d3h (y = 365 days, m = 30 days (months), "
    "w = 7 days, d = days, h = hours)"
)


class Dated(Protocol):
    """A backup as retention sees it: an id and when it was taken (naive means UTC)."""

    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


def parse_duration(text: str) -> timedelta:
    """A `--keep-within` duration in restic's notation: `2y5m7d3h`, `30d`, `12h`.

    Units: y = 365 days, m = 30 days (months, not minutes), w = 7 days, d = days, h = hours;
    in any order, each at most once. Positive and at most 100 years; else `UserError`."""
    compact = text.strip() if isinstance(text, str) else ""
    if not _DURATION.fullmatch(compact):
        raise UserError(f"invalid duration {text!r}: expected {_DURATION_HELP}")
    hours, seen = 0, set()
    for digits, unit in _PART.findall(compact):
        if unit not in UNIT_HOURS:
            raise UserError(f"invalid duration {text!r}: unknown unit {unit!r}; {_DURATION_HELP}")
        if unit in seen:
            raise UserError(f"invalid duration {text!r}: unit {unit!r} given twice")
        seen.add(unit)
        if len(digits.lstrip("0")) > 9:
            raise UserError(f"invalid duration {text!r}: at most 100 years")
        hours += int(digits) * UNIT_HOURS[unit]
    if hours > MAX_HOURS:
        raise UserError(f"invalid duration {text!r}: at most 100 years")
    if hours == 0:
        raise UserError(f"invalid duration {text!r}: must be longer than zero")
    return timedelta(hours=hours)


def format_duration(duration: timedelta) -> str:
    """`duration` in the units `parse_duration` reads back: years, days and hours (400 days is
    `1y35d`); a remainder under an hour (only set from code) shows as minutes and seconds."""
    seconds = int(duration.total_seconds())
    years, seconds = divmod(seconds, 365 * 86400)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [(years, "y"), (days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0h"


@dataclass(frozen=True)
class KeepRules:
    """restic's `--keep-*` options. None or 0 turns a rule off, as in restic."""

    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None
    within: timedelta | None = None

    def __post_init__(self) -> None:
        for name in COUNTS:
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise UserError(f"--keep-{name} must be a whole number, at least 0")
        if self.within is not None and self.within < timedelta(0):
            raise UserError("--keep-within must not be negative")

    def empty(self) -> bool:
        """True when no rule is set: then nothing expires (restic removes nothing either)."""
        return not any(getattr(self, field.name) for field in fields(self))

    def describe(self) -> str:
        """One line, e.g. `last 7, daily 14, weekly 8, within 2d`; `no rules` when empty."""
        parts = [f"{name} {getattr(self, name)}" for name in COUNTS if getattr(self, name)]
        if self.within:
            parts.append(f"within {format_duration(self.within)}")
        return ", ".join(parts) or "no rules"


@dataclass(frozen=True)
class Decision:
    """What retention does with each backup. `keep` maps an id to why it is kept (newest
    first): a rule (`last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`, `within`), restic's
    extra `oldest daily` (and so on, see `decide`), `pinned`, `newest`, or `no rules`.
    `expire` lists the ids that expire, newest first."""

    keep: dict[str, tuple[str, ...]]
    expire: tuple[str, ...]


BUCKETS: tuple[tuple[str, Callable[[datetime], Hashable]], ...] = (
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: t.isocalendar()[:2]),  # ISO year and week: Monday to Sunday
    ("monthly", lambda t: (t.year, t.month)),
    ("yearly", lambda t: t.year),
)


def decide(
    backups: Sequence[Dated],
    rules: KeepRules,
    *,
    tz: tzinfo,
    pinned: frozenset[str] = frozenset(),
) -> Decision:
    """Which of one disk's automatic backups of one policy to keep and which expire.

    restic's `forget`: backups are taken newest first (equal times ordered by id, so the
    answer does not depend on the order given); a backup is kept if any rule keeps it:

    - `last N`: the N newest backups;
    - `hourly/daily/weekly/monthly/yearly N`: walking newest to oldest, a backup whose bucket
      (local hour, date, ISO week, month, year in `tz`) differs from the previous backup's is
      the newest of a new bucket and is kept, until N buckets are kept: the newest backup of
      each of the N most recent buckets that have backups. When the backups run out with
      buckets left, the oldest backup is kept too (restic's `oldest daily snapshot`);
    - `within D`: every backup taken less than D before the newest backup (not before now:
      a disk whose backups stopped keeps its last D of them).

    Pinned ids are kept (ids not in `backups` are ignored) and the newest backup is kept. With
    no rules nothing expires. Rules never see the pins: pinning a backup keeps it and changes
    nothing else."""
    ordered = sorted(((as_utc(b.created_at), b.id) for b in backups), reverse=True)
    ids = [backup_id for _, backup_id in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError("decide: backup ids must be unique")
    reasons: dict[str, list[str]] = {backup_id: [] for backup_id in ids}
    if not ordered:
        return Decision({}, ())
    if rules.empty():
        for backup_id in ids:
            reasons[backup_id].append("no rules")
    else:
        for backup_id in ids[: rules.last or 0]:
            reasons[backup_id].append("last")
        for name, bucket in BUCKETS:
            _keep_buckets(ordered, getattr(rules, name) or 0, name, bucket, tz, reasons)
        if rules.within:
            cutoff = _before(ordered[0][0], rules.within)
            for moment, backup_id in ordered:
                if cutoff is None or moment > cutoff:
                    reasons[backup_id].append("within")
    for backup_id in ids:
        if backup_id in pinned:
            reasons[backup_id].append("pinned")
    reasons[ids[0]].append("newest")
    return Decision(
        keep={backup_id: tuple(why) for backup_id, why in reasons.items() if why},
        expire=tuple(backup_id for backup_id, why in reasons.items() if not why),
    )


def _keep_buckets(
    ordered: list[tuple[datetime, str]],
    count: int,
    name: str,
    bucket: Callable[[datetime], Hashable],
    tz: tzinfo,
    reasons: dict[str, list[str]],
) -> None:
    previous: Hashable = object()  # matches no bucket
    for index, (moment, backup_id) in enumerate(ordered):
        if count == 0:
            return
        key = bucket(moment.astimezone(tz))
        if key != previous:
            reasons[backup_id].append(name)
            previous, count = key, count - 1
        elif index == len(ordered) - 1:
            reasons[backup_id].append(f"oldest {name}")
            count -= 1


def _before(moment: datetime, span: timedelta) -> datetime | None:
    """`moment - span`, or None when that is before the year 1 (everything is within)."""
    try:
        return moment - span
    except OverflowError:
        return None
