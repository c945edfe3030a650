"""Schedules people write, and which slot of one is due. Pure: no I/O and no clock reads,
every function takes the moments it needs (`local_zone` alone reads $TZ and /etc/localtime).

Forms (`parse_schedule` takes the canonical text, the `describe()` text, and a plain 5-field
cron expression; `from_options` takes the command-line options):

| option                    | canonical text          | describe()             |
|---------------------------|-------------------------|------------------------|
| `--cron "0 2 * * *"`      | `0 2 * * *`             | `cron 0 2 * * *`       |
| `--daily-at 02:00`        | `daily 02:00`           | `daily at 02:00`       |
| `--weekly mon,thu@02:00`  | `weekly mon,thu 02:00`  | `mon, thu at 02:00`    |
| `--every-days 3@02:00`    | `every-days 3 02:00`    | `every 3 days at 02:00` |
| `--every 6h`              | `every 21600s`          | `every 6 h`            |

Daily, weekly and every-days times are wall-clock times in the schedule's zone: a time that
does not exist (spring forward) runs at the first instant after the gap, an ambiguous one
(fall back) runs once, at its first occurrence. Every-days N runs on the days whose number
since 1970-01-01 (in that zone) is a multiple of N, so its days do not depend on when the
policy was made (a day the zone skipped entirely has no slot). `every P` runs at the
multiples of P seconds since the Unix epoch, whatever the zone, so two hosts agree on every
slot. Cron fields are matched against the zone's wall clock by cronsim, with Debian cron's
rules for DST: a fixed-time expression (minute and hour not starting with `*`) maps its
times like the forms above, so `30 2 * * *` equals `daily 02:30`; any other expression
follows the clock, so `0 * * * *` runs twice in a repeated hour and not in a skipped one.
(cronsim's own zone handling is not used: it skips slots after half-hour DST changes.)

Every result is an aware UTC datetime with whole seconds; naive moments given are taken as
UTC (the catalog stores naive UTC).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from core.base.errors import UserError
from core.base.times import as_utc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DAY = date(1970, 1, 1)
MIN_INTERVAL = 1  # seconds, for tests
MAX_INTERVAL = 366 * 86400
MAX_EVERY_DAYS = 366
MAX_TEXT = 200  # longer text is refused before any parsing
CRON_YEARS = 50  # cronsim gives up after 50 years without a slot
FOLD_MARGIN = timedelta(hours=3)  # longer than any repeated stretch of wall-clock time
OFFSET_STEP = timedelta(hours=6)  # shorter than the time between two offset changes
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FORMS = (
    'give a cron expression ("0 2 * * *"), "daily 02:00", "weekly mon,thu 02:00", '
    '"every-days 3 02:00" or "every 6h"'
)
WEEKLY_EXAMPLE = "days@HH:MM, e.g. mon,thu@02:00"
EVERY_DAYS_EXAMPLE = "N@HH:MM, e.g. 3@02:00"
_UNITS = {
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
}
_CRON_FIELD = re.compile(r"[0-9A-Za-z*,/#-]+")


# --- moments -------------------------------------------------------------------------------


def _wall(day: date, at: time, tz: tzinfo) -> datetime:
    """The UTC instant of wall-clock `at` on `day` in `tz`: an ambiguous time at its first
    occurrence, a nonexistent one at the first instant after the gap."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # in a gap: the two folds map it with the offsets either side of the transition
    low, high = sorted((first, naive.replace(tzinfo=tz, fold=1).astimezone(UTC)))
    after = high.astimezone(tz).utcoffset()
    if low.astimezone(tz).utcoffset() == after:
        return high  # a tzinfo without PEP 495 folds: no better answer
    return _first_second(low, high, lambda t: t.astimezone(tz).utcoffset() == after)


def _on_day(day: date, at: time, tz: tzinfo) -> datetime | None:
    """`_wall`, or None on a day the zone skipped entirely (Pacific/Apia, 2011-12-30)."""
    slot = _wall(day, at, tz)
    if slot.astimezone(tz).date() != day and _wall(day, time(), tz).astimezone(tz).date() != day:
        return None
    return slot


def _naive_wall(moment: datetime, tz: tzinfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None, microsecond=0)


def _offset(moment: datetime, tz: tzinfo) -> timedelta:
    return moment.astimezone(tz).utcoffset() or timedelta(0)


def _first_second(low: datetime, high: datetime, changed: Callable[[datetime], bool]) -> datetime:
    """The first whole second in (low, high] where `changed` holds, given it holds at `high`
    and not at `low` (one offset change between them)."""
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if changed(low + timedelta(seconds=mid)):
            hi = mid
        else:
            lo = mid
    return low + timedelta(seconds=hi)


def _change_after(
    start: datetime, stop: datetime, tz: tzinfo, offset: timedelta
) -> datetime | None:
    """The first instant in (start, stop] whose offset is not `offset` (that of `start`)."""
    here = start
    while here < stop:
        there = min(here + OFFSET_STEP, stop)
        if _offset(there, tz) != offset:
            return _first_second(here, there, lambda t: _offset(t, tz) != offset)
        here = there
    return None


def _change_before(
    start: datetime, stop: datetime, tz: tzinfo, offset: timedelta
) -> datetime | None:
    """Where the stretch of `offset` that ends at `stop` began, if that is after `start`;
    None if the offset is `offset` all through [start, stop]."""
    here = stop
    while here > start:
        there = max(here - OFFSET_STEP, start)
        if _offset(there, tz) != offset:
            return _first_second(there, here, lambda t: _offset(t, tz) == offset)
        here = there
    return None


def _day_number(day: date) -> int:
    return (day - EPOCH_DAY).days


# --- zones ---------------------------------------------------------------------------------


def _zone(key: str) -> tzinfo | None:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _utc_zone() -> tzinfo:
    return _zone("UTC") or UTC


def local_zone() -> tzinfo:
    """The host's zone: $TZ if set and valid, else /etc/localtime, else UTC."""
    env = os.environ.get("TZ", "").removeprefix(":")
    if env:
        zone = _zone(env)
        if zone is None and os.path.isabs(env):
            try:
                with open(env, "rb") as handle:
                    zone = ZoneInfo.from_file(handle, key=env)
            except (OSError, ValueError):
                zone = None
        if zone is not None:
            return zone
    target = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in target:
        zone = _zone(target.split("/zoneinfo/", 1)[1])
        if zone is not None:
            return zone
    try:
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return _utc_zone()


def zone_named(name: str | None) -> tzinfo:
    """The zone a config names ("Europe/Berlin", "UTC"); None, "" or "local": the host's."""
    if name is None or not name.strip() or name.strip().lower() == "local":
        return local_zone()
    key = name.strip()
    if key.upper() == "UTC":
        return _utc_zone()
    zone = _zone(key) if len(key) <= 100 else None
    if zone is None:
        raise UserError(
            f"unknown time zone {_show(name)}: give an IANA name such as Europe/Berlin, or UTC"
        )
    return zone


# --- the forms -----------------------------------------------------------------------------


def _show(value: str) -> str:
    """A user's value quoted on one line, cut when long."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


class _Rule:
    kind = ""

    def canonical(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime | None:
        raise NotImplementedError

    def last_at_or_before(self, moment: datetime, tz: tzinfo) -> datetime | None:
        raise NotImplementedError

    def iter_after(self, moment: datetime, tz: tzinfo) -> Iterator[datetime]:
        current = self.next_after(moment, tz)
        while current is not None:
            yield current
            current = self.next_after(current, tz)


@dataclass(frozen=True)
class _Every(_Rule):
    seconds: int
    kind = "every"

    def canonical(self) -> str:
        return f"every {self.seconds}s"

    def describe(self) -> str:
        parts, rest = [], self.seconds
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            if rest >= size:
                parts.append(f"{rest // size} {unit}")
                rest %= size
        return "every " + " ".join(parts)

    def _index(self, moment: datetime) -> int:
        """Which interval since the epoch `moment` falls in (exact integer arithmetic)."""
        return ((moment - EPOCH) // timedelta(microseconds=1)) // (self.seconds * 1_000_000)

    def _slot(self, index: int) -> datetime | None:
        try:
            return EPOCH + timedelta(seconds=index * self.seconds)
        except OverflowError:
            return None

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime | None:
        return self._slot(self._index(moment) + 1)

    def last_at_or_before(self, moment: datetime, tz: tzinfo) -> datetime | None:
        return self._slot(self._index(moment))


@dataclass(frozen=True)
class _AtTime(_Rule):
    """A wall-clock time on the days a subclass picks."""

    at: time

    def _on_or_after(self, day: date) -> date:
        raise NotImplementedError

    def _on_or_before(self, day: date) -> date:
        raise NotImplementedError

    @property
    def hhmm(self) -> str:
        return self.at.strftime("%H:%M")

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime | None:
        try:
            day = self._on_or_after(moment.astimezone(tz).date() - timedelta(days=1))
            while (slot := _on_day(day, self.at, tz)) is None or slot <= moment:
                day = self._on_or_after(day + timedelta(days=1))
        except OverflowError:
            return None
        return slot

    def last_at_or_before(self, moment: datetime, tz: tzinfo) -> datetime | None:
        try:
            day = self._on_or_before(moment.astimezone(tz).date() + timedelta(days=1))
            while (slot := _on_day(day, self.at, tz)) is None or slot > moment:
                day = self._on_or_before(day - timedelta(days=1))
        except OverflowError:
            return None
        return slot


@dataclass(frozen=True)
class _Daily(_AtTime):
    kind = "daily"

    def canonical(self) -> str:
        return f"daily {self.hhmm}"

    def describe(self) -> str:
        return f"daily at {self.hhmm}"

    def _on_or_after(self, day: date) -> date:
        return day

    def _on_or_before(self, day: date) -> date:
        return day


@dataclass(frozen=True)
class _Weekly(_AtTime):
    days: frozenset[int] = frozenset()  # 0 = monday
    kind = "weekly"

    def _names(self) -> list[str]:
        return [DAY_NAMES[d] for d in sorted(self.days)]

    def canonical(self) -> str:
        return f"weekly {','.join(self._names())} {self.hhmm}"

    def describe(self) -> str:
        return f"{', '.join(self._names())} at {self.hhmm}"

    def _on_or_after(self, day: date) -> date:
        while day.weekday() not in self.days:
            day += timedelta(days=1)
        return day

    def _on_or_before(self, day: date) -> date:
        while day.weekday() not in self.days:
            day -= timedelta(days=1)
        return day


@dataclass(frozen=True)
class _EveryDays(_AtTime):
    days: int = 1
    kind = "every-days"

    def canonical(self) -> str:
        return f"every-days {self.days} {self.hhmm}"

    def describe(self) -> str:
        return f"every {self.days} {'day' if self.days == 1 else 'days'} at {self.hhmm}"

    def _on_or_after(self, day: date) -> date:
        return day + timedelta(days=-_day_number(day) % self.days)

    def _on_or_before(self, day: date) -> date:
        return day - timedelta(days=_day_number(day) % self.days)


@dataclass(frozen=True)
class _Cron(_Rule):
    """cronsim only matches wall-clock times (naive datetimes); this class maps them to
    instants. Like Debian cron, a fixed-time expression (minute and hour not starting with
    `*`) maps each match as the written forms do (ambiguous: first occurrence; nonexistent:
    the first instant after the gap; the same instant once); any other expression follows
    the clock: every instant whose wall-clock time matches, so a repeated hour runs twice and
    a skipped one not at all."""

    expression: str  # the five fields, one space apart
    kind = "cron"

    def canonical(self) -> str:
        return self.expression

    def describe(self) -> str:
        return f"cron {self.expression}"

    @property
    def fixed_time(self) -> bool:
        minute, hour = self.expression.split()[:2]
        return not minute.startswith("*") and not hour.startswith("*")

    def iter_after(self, moment: datetime, tz: tzinfo) -> Iterator[datetime]:
        try:
            if self.fixed_time:
                yield from self._fixed_after(moment, tz)
            else:
                yield from self._clock_after(moment, tz)
        except OverflowError:  # the end of the calendar
            return

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime | None:
        return next(self.iter_after(moment, tz), None)

    def last_at_or_before(self, moment: datetime, tz: tzinfo) -> datetime | None:
        try:
            if self.fixed_time:
                return self._fixed_last(moment, tz)
            return self._clock_last(moment, tz)
        except OverflowError:
            return None

    def _fixed_after(self, moment: datetime, tz: tzinfo) -> Iterator[datetime]:
        # wall-clock matches map to instants in the same order, so the first one after
        # `moment` follows the wall clock at `moment` (in its repeated hour, a few earlier)
        last = moment
        for match in CronSim(self.expression, _naive_wall(moment, tz)):
            slot = _on_day(match.date(), match.time(), tz)
            if slot is not None and slot > last:
                yield slot
                last = slot

    def _fixed_last(self, moment: datetime, tz: tzinfo) -> datetime | None:
        start = _naive_wall(moment, tz) + FOLD_MARGIN + timedelta(seconds=1)
        for match in CronSim(self.expression, start, reverse=True):
            slot = _on_day(match.date(), match.time(), tz)
            if slot is not None and slot <= moment:
                return slot
        return None

    def _clock_after(self, moment: datetime, tz: tzinfo) -> Iterator[datetime]:
        # between two offset changes the wall clock is UTC plus one offset: match there, and
        # start again with the new offset when a match lies beyond a change
        after = moment
        while True:
            first = after.replace(microsecond=0) + timedelta(seconds=1)  # the earliest slot
            offset = _offset(first, tz)
            wall = (first + offset).replace(tzinfo=None) - timedelta(seconds=1)
            for match in CronSim(self.expression, wall):
                slot = (match - offset).replace(tzinfo=UTC)
                change = _change_after(first, slot, tz, offset)
                if change is not None:
                    after = change - timedelta(seconds=1)
                    break
                yield slot
                first = slot
            else:
                return  # no match in cronsim's 50 years

    def _clock_last(self, moment: datetime, tz: tzinfo) -> datetime | None:
        last = moment.replace(microsecond=0)  # the latest possible slot
        while True:
            offset = _offset(last, tz)
            wall = (last + offset).replace(tzinfo=None) + timedelta(seconds=1)
            match = next(CronSim(self.expression, wall, reverse=True), None)
            if match is None:
                return None
            slot = (match - offset).replace(tzinfo=UTC)
            began = _change_before(slot, last, tz, offset)
            if began is None:
                return slot
            last = began - timedelta(seconds=1)


# --- parsing -------------------------------------------------------------------------------


def _parse_time(value: str) -> time:
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", value.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise UserError(f"time {_show(value)} is not HH:MM between 00:00 and 23:59")
    return time(int(match[1]), int(match[2]))


def _parse_day(value: str) -> int:
    name = value.strip().lower()
    if name in DAY_NAMES:
        return DAY_NAMES.index(name)
    if name in FULL_DAY_NAMES:
        return FULL_DAY_NAMES.index(name)
    raise UserError(f"day {_show(value)} is not one of mon..sun (or monday..sunday)")


def _parse_days(value: str) -> frozenset[int]:
    """ "mon,thu", "Monday, Thursday", "mon-fri" (a range may wrap: "sat-mon")."""
    days: set[int] = set()
    for item in value.split(","):
        if not item.strip():
            raise UserError(f"days {_show(value)}: give day names with commas, e.g. mon,thu")
        if "-" in item:
            first, _, last = item.partition("-")
            start, end = _parse_day(first), _parse_day(last)
            days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
        else:
            days.add(_parse_day(item))
    return frozenset(days)


def _parse_count(value: str, what: str, low: int, high: int) -> int:
    digits = value.strip()
    if not re.fullmatch(r"[0-9]{1,12}", digits) or not low <= int(digits) <= high:
        raise UserError(f"{what} {_show(value)} is not a whole number from {low} to {high}")
    return int(digits)


def _parse_interval(value: str) -> int:
    """Seconds in "6h", "30s", "15m", "2d", "1h30m", "1 h 30 min"."""
    text = value.strip().lower()
    hint = f"interval {_show(value)}: give a number and a unit, e.g. 30s, 15m, 6h, 2d or 1h30m"
    if not re.fullmatch(r"(?:\s*[0-9]+\s*[a-z]+)+", text):
        raise UserError(hint)
    seconds, seen = 0, set()
    for number, unit in re.findall(r"([0-9]+)\s*([a-z]+)", text):
        size = _UNITS.get(unit)
        if size is None or size in seen or len(number) > 12:
            raise UserError(hint)
        seen.add(size)
        seconds += int(number) * size
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise UserError(f"interval {_show(value)} is not between 1 s and 366 d")
    return seconds


def _split_time(value: str, what: str, example: str) -> tuple[str, time]:
    """ "X@02:00", "X at 02:00" or "X 02:00" → (X, 02:00)."""
    text = value.strip()
    for sep in ("@", " at ", " "):
        head, found, tail = text.rpartition(sep)
        if found and head.strip():
            return head.strip(), _parse_time(tail)
    raise UserError(f"{what} {_show(value)} has no time: give it as {example}")


def _parse_cron(text: str) -> _Cron:
    fields_ = text.split()
    if len(fields_) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields_):
        raise UserError(
            f"cron expression {_show(text)} is not five fields (minute hour day month weekday)"
        )
    expression = " ".join(fields_)
    try:
        sim = CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
        next(sim)
    except CronSimError as exc:
        raise UserError(f"cron expression {_show(text)}: {exc}") from None
    except StopIteration:
        raise UserError(
            f"cron expression {_show(text)} never runs (no slot in {CRON_YEARS} years)"
        ) from None
    except Exception as exc:  # a third-party parser reading user text: never a traceback
        raise UserError(f"cron expression {_show(text)} is not valid ({exc})") from None
    return _Cron(expression)


def _parse_rule(text: str) -> _Rule:
    if len(text) > MAX_TEXT:
        raise UserError(f"schedule {_show(text)} is too long ({len(text)} characters)")
    words = text.split()
    if not words:
        raise UserError(f"empty schedule: {FORMS}")
    normal = " ".join(words)
    low = normal.lower()
    head, _, rest = low.partition(" ")
    if head == "cron":
        return _parse_cron(normal.partition(" ")[2])  # the fields as written
    if head == "daily":
        body = rest.removeprefix("at ").removeprefix("@")
        return _Daily(_parse_time(body))
    if head.startswith("daily@"):
        return _Daily(_parse_time(low.removeprefix("daily@")))
    if head == "weekly":
        days, at = _split_time(rest, "weekly", WEEKLY_EXAMPLE)
        return _Weekly(at, _parse_days(days))
    if head == "every-days":
        count, at = _split_time(rest, "every-days", EVERY_DAYS_EXAMPLE)
        return _EveryDays(at, _parse_count(count, "every-days", 1, MAX_EVERY_DAYS))
    if head == "every":
        match = re.fullmatch(r"([0-9]+) days? at (.+)", rest)
        if match:
            count = _parse_count(match[1], "every-days", 1, MAX_EVERY_DAYS)
            return _EveryDays(_parse_time(match[2]), count)
        return _Every(_parse_interval(rest))
    if "at" in low.split()[1:]:  # the describe() form of weekly: "mon, thu at 02:00"
        days, at = _split_time(low, "weekly", WEEKLY_EXAMPLE)
        return _Weekly(at, _parse_days(days))
    if len(words) == 5:
        return _parse_cron(normal)
    raise UserError(f"unknown schedule {_show(text)}: {FORMS}")


# --- the schedule --------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """One parsed schedule; `text` is its canonical form (what the catalog stores)."""

    text: str
    _rule: _Rule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rule = _parse_rule(self.text)
        object.__setattr__(self, "text", rule.canonical())
        object.__setattr__(self, "_rule", rule)

    @property
    def kind(self) -> str:
        """ "cron", "daily", "weekly", "every-days" or "every"."""
        return self._rule.kind

    def describe(self) -> str:
        """For people: "daily at 02:00", "mon, thu at 02:00", "every 6 h", "cron 0 2 * * *"
        (parse_schedule takes it back)."""
        return self._rule.describe()

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime:
        """The first slot strictly after `moment` (UTC)."""
        moment = as_utc(moment)
        slot = self._rule.next_after(moment, tz)
        if slot is None:
            raise UserError(f"schedule {_show(self.text)} has no slot after {moment:%Y-%m-%d}")
        return slot

    def last_at_or_before(self, moment: datetime, tz: tzinfo) -> datetime | None:
        """The newest slot at or before `moment` (UTC); None if there is none (a cron
        expression is searched back 50 years)."""
        return self._rule.last_at_or_before(as_utc(moment), tz)

    def slots(self, start: datetime, end: datetime, tz: tzinfo) -> Iterator[datetime]:
        """Every slot in (start, end], oldest first (UTC)."""
        end = as_utc(end)
        for slot in self._rule.iter_after(as_utc(start), tz):
            if slot > end:
                return
            yield slot


def parse_schedule(text: str) -> Schedule:
    """A schedule from its canonical text, its describe() text or a 5-field cron expression;
    UserError (one line) for anything else."""
    if not isinstance(text, str):
        raise UserError(f"schedule {text!r} is not text")
    return Schedule(text)


OPTIONS = ("cron", "daily_at", "weekly", "every_days", "every")


def from_options(
    *,
    cron: str | None = None,
    daily_at: str | None = None,
    weekly: str | None = None,
    every_days: str | None = None,
    every: str | None = None,
) -> Schedule:
    """The schedule of exactly one command-line option: --cron "0 2 * * *", --daily-at 02:00,
    --weekly mon,thu@02:00, --every-days 3@02:00, --every 6h."""
    given = {
        name: value
        for name, value in zip(OPTIONS, (cron, daily_at, weekly, every_days, every), strict=True)
        if value is not None
    }
    flags = {name: "--" + name.replace("_", "-") for name in OPTIONS}
    if len(given) != 1:
        if given:
            raise UserError(f"give one schedule, not {' and '.join(flags[n] for n in given)}")
        raise UserError(f"give a schedule: one of {', '.join(flags.values())}")
    ((name, value),) = given.items()
    try:
        if len(value) > MAX_TEXT:
            raise UserError(f"{_show(value)} is too long")
        if name == "cron":
            rule: _Rule = _parse_cron(value)
        elif name == "daily_at":
            rule = _Daily(_parse_time(value))
        elif name == "weekly":
            days, at = _split_time(value, "--weekly", WEEKLY_EXAMPLE)
            rule = _Weekly(at, _parse_days(days))
        elif name == "every_days":
            count, at = _split_time(value, "--every-days", EVERY_DAYS_EXAMPLE)
            rule = _EveryDays(at, _parse_count(count, "--every-days", 1, MAX_EVERY_DAYS))
        else:
            rule = _Every(_parse_interval(value))
    except UserError as exc:
        said = str(exc)
        raise UserError(
            said if said.startswith(flags[name]) else f"{flags[name]}: {said}"
        ) from None
    return Schedule(rule.canonical())


def due_slot(schedule: Schedule, *, since: datetime, now: datetime, tz: tzinfo) -> datetime | None:
    """The newest slot in (since, now], or None: a policy whose last claimed slot (or its
    creation) is `since` runs once for every slot it missed, with the newest as its identity."""
    since, now = as_utc(since), as_utc(now)
    if now <= since:
        return None
    rule = schedule._rule
    first = rule.next_after(since, tz)
    if first is None or first > now:
        return None
    newest = rule.last_at_or_before(now, tz)
    return newest if newest is not None and newest >= first else first
