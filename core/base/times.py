"""Moments in UTC: the catalog stores naive UTC (SQLite drops the zone), so every comparison
goes through `as_utc` (two datetimes of one zone compare by wall clock, wrong across DST)."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """An aware UTC moment; a naive one is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
