"""Humane text for the console: sizes, relative ages, absolute stamps, rates and ETAs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import humanize
from rich.cells import cell_len, set_cell_size

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def size(value: int | None) -> str:
    """'16.0 MiB'; '-' when unknown."""
    if value is None:
        return "-"
    return humanize.naturalsize(value, binary=True, format="%.1f")


def short_size(value: int | None) -> str:
    """'32 MiB', '2.5 GiB': three significant digits, for narrow table columns."""
    if value is None:
        return "-"
    return humanize.naturalsize(value, binary=True, format="%.3g")


def middle(text: str, width: int) -> str:
    """'web1-data-20…-140512': a name too long for `width` cells loses its middle, so the
    start (the disk) and the end (the stamp that tells two backups apart) both show."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    keep = width - 1
    tail = max(keep * 2 // 5, 1)
    head = keep - tail
    return f"{set_cell_size(text, head)}…{_last_cells(text, tail)}"


def _last_cells(text: str, width: int) -> str:
    """The end of `text` that fits in `width` cells."""
    taken = ""
    for char in reversed(text):
        if cell_len(char + taken) > width:
            break
        taken = char + taken
    return taken


def short_age(stamp: str | None, now: datetime) -> str:
    """'5m ago', '3d ago' (k9s style) for table cells; 'never' without a stamp."""
    moment = parse_stamp(stamp)
    if moment is None:
        return "never"
    seconds = max(int((now - moment).total_seconds()), 0)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit} ago"
    return f"{seconds}s ago"


def short_until(stamp: str | None, now: datetime) -> str:
    """'in 14h', 'in 3d' for a time to come (a next run); 'due' once it has passed; '-' without."""
    moment = parse_stamp(stamp)
    if moment is None:
        return "-"
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "due"
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"in {seconds // length}{unit}"
    return f"in {seconds}s"


def parse_stamp(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age(stamp: str | None, now: datetime) -> str:
    """'3 minutes ago'; 'never' when there is no stamp."""
    moment = parse_stamp(stamp)
    if moment is None:
        return "never"
    return humanize.naturaltime(now - moment)


def absolute(stamp: str | None) -> str:
    """'2026-11-24 10:15:00 UTC', for the details panel."""
    moment = parse_stamp(stamp)
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def rate(bytes_per_second: float | None) -> str:
    if not bytes_per_second:
        return "-"
    return f"{size(int(bytes_per_second))}/s"


def eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    seconds = round(seconds)
    if seconds < 60:
        return f"ETA {seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"ETA {minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h{minutes:02d}m"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return humanize.naturaldelta(max(seconds, 1))
