"""Schedules people write (core/rules/schedules.py): every form's slots, DST in Europe/Berlin,
missed slots coalescing into one due slot, round trips and refusals. The clock is injected:
every moment is an explicit datetime."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from cronsim import CronSim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.base.errors import UserError
from core.rules.schedules import (
    Schedule,
    due_slot,
    from_options,
    local_zone,
    parse_schedule,
    zone_named,
)

try:
    BERLIN = ZoneInfo("Europe/Berlin")
    ZONES = [
        BERLIN,
        ZoneInfo("UTC"),
        ZoneInfo("America/New_York"),
        ZoneInfo("Australia/Lord_Howe"),  # a 30-minute DST shift
        ZoneInfo("America/Santiago"),  # changes at midnight
        ZoneInfo("Pacific/Apia"),  # skipped 2011-12-30 entirely
    ]
except ZoneInfoNotFoundError:  # pragma: no cover - every CI image has tzdata
    pytest.skip("no IANA time zone data", allow_module_level=True)

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def slots(text: str, start: datetime, end: datetime, tz: tzinfo = BERLIN) -> list[datetime]:
    return list(parse_schedule(text).slots(start, end, tz))


# --- each form's slots, across both DST changes of 2024 in Berlin --------------------------
# 2024-03-31 02:00 CET -> 03:00 CEST (02:xx does not exist); 2024-10-27 03:00 CEST -> 02:00 CET
# (02:xx happens twice). CET is UTC+1, CEST UTC+2.


def test_daily_across_spring_forward_runs_after_the_gap() -> None:
    assert slots("daily 02:30", utc(2024, 3, 29), utc(2024, 4, 2)) == [
        utc(2024, 3, 29, 1, 30),
        utc(2024, 3, 30, 1, 30),
        utc(2024, 3, 31, 1, 0),  # 02:30 does not exist: the first instant after the gap, 03:00
        utc(2024, 4, 1, 0, 30),
    ]
    assert slots("daily 02:00", utc(2024, 3, 31), utc(2024, 3, 31, 12)) == [utc(2024, 3, 31, 1)]
    assert slots("daily 03:00", utc(2024, 3, 31), utc(2024, 3, 31, 12)) == [utc(2024, 3, 31, 1)]


def test_daily_across_fall_back_runs_once_at_the_first_occurrence() -> None:
    assert slots("daily 02:30", utc(2024, 10, 25), utc(2024, 10, 29)) == [
        utc(2024, 10, 25, 0, 30),
        utc(2024, 10, 26, 0, 30),
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST; not again at 02:30 CET
        utc(2024, 10, 28, 1, 30),
    ]


def test_weekly_across_spring_forward() -> None:
    assert slots("weekly sun 02:30", utc(2024, 3, 20), utc(2024, 4, 10)) == [
        utc(2024, 3, 24, 1, 30),
        utc(2024, 3, 31, 1, 0),
        utc(2024, 4, 7, 0, 30),
    ]
    assert slots("weekly mon,thu 02:00", utc(2024, 10, 20), utc(2024, 11, 1)) == [
        utc(2024, 10, 21, 0),  # Monday, CEST
        utc(2024, 10, 24, 0),  # Thursday, CEST
        utc(2024, 10, 28, 1),  # Monday, CET
        utc(2024, 10, 31, 1),
    ]


def test_every_days_counts_days_from_1970_in_the_zone() -> None:
    assert (date(2024, 3, 27) - date(1970, 1, 1)).days % 3 == 0
    assert slots("every-days 3 02:00", utc(2024, 3, 25), utc(2024, 4, 6)) == [
        utc(2024, 3, 27, 1),
        utc(2024, 3, 30, 1),
        utc(2024, 4, 2, 0),  # CEST now
        utc(2024, 4, 5, 0),
    ]
    assert slots("every-days 1 02:30", utc(2024, 3, 29), utc(2024, 4, 2)) == slots(
        "daily 02:30", utc(2024, 3, 29), utc(2024, 4, 2)
    )


def test_every_interval_ignores_the_zone_and_dst() -> None:
    expected = [utc(2024, 3, 30, 18), utc(2024, 3, 31, 0), utc(2024, 3, 31, 6)]
    expected += [utc(2024, 3, 31, 12)]
    assert slots("every 6h", utc(2024, 3, 30, 12), utc(2024, 3, 31, 12)) == expected
    assert slots("every 6h", utc(2024, 3, 30, 12), utc(2024, 3, 31, 12), UTC) == expected
    assert slots("every 30s", utc(2024, 1, 1), utc(2024, 1, 1, 0, 1, 30)) == [
        utc(2024, 1, 1, 0, 0, 30),
        utc(2024, 1, 1, 0, 1),
        utc(2024, 1, 1, 0, 1, 30),
    ]


def test_cron_is_read_in_the_zone() -> None:
    assert slots("30 2 * * *", utc(2024, 3, 29), utc(2024, 4, 2)) == slots(
        "daily 02:30", utc(2024, 3, 29), utc(2024, 4, 2)
    )
    assert slots("30 2 * * *", utc(2024, 10, 25), utc(2024, 10, 29)) == slots(
        "daily 02:30", utc(2024, 10, 25), utc(2024, 10, 29)
    )
    # hourly cron follows the clock (Debian cron): the repeated 02:00 runs twice
    assert slots("0 * * * *", utc(2024, 10, 26, 23, 30), utc(2024, 10, 27, 2)) == [
        utc(2024, 10, 27, 0),
        utc(2024, 10, 27, 1),
        utc(2024, 10, 27, 2),
    ]


def wall_matches(expression: str, wall: datetime) -> bool:
    """Whether a naive wall-clock minute matches a cron expression (cronsim, no zone)."""
    return next(CronSim(expression, wall - timedelta(seconds=1))) == wall


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("Europe/Berlin", utc(2024, 3, 31, 1)),
        ("Europe/Berlin", utc(2024, 10, 27, 1)),
        ("Australia/Lord_Howe", utc(2024, 4, 6, 15)),  # 02:00 -> 01:30
        ("Australia/Lord_Howe", utc(2024, 10, 5, 15, 30)),  # 02:00 -> 02:30
    ],
)
@pytest.mark.parametrize("expression", ["*/20 * * * *", "*/7 2 * * *", "0 * * * *"])
def test_cron_that_is_not_fixed_time_runs_at_every_instant_whose_clock_matches(
    zone: str, change: datetime, expression: str
) -> None:
    """A brute-force reference: every UTC minute whose local wall clock matches."""
    tz = ZoneInfo(zone)
    start, end = change - timedelta(hours=4), change + timedelta(hours=4)
    minutes = (start + timedelta(minutes=k) for k in range(1, 8 * 60 + 1))
    expected = [
        u for u in minutes if wall_matches(expression, u.astimezone(tz).replace(tzinfo=None))
    ]
    assert slots(expression, start, end, tz) == expected


def test_a_day_the_zone_skipped_has_no_slot() -> None:
    """Pacific/Apia went from 2011-12-29 23:59:59 (UTC-10) to 2011-12-31 00:00 (UTC+14)."""
    apia = ZoneInfo("Pacific/Apia")
    local = [
        s.astimezone(apia).replace(tzinfo=None)
        for s in slots("daily 02:00", utc(2011, 12, 28), utc(2012, 1, 1), apia)
    ]
    assert [d.isoformat() for d in local] == [
        "2011-12-28T02:00:00",
        "2011-12-29T02:00:00",
        "2011-12-31T02:00:00",
        "2012-01-01T02:00:00",
    ]
    assert slots("0 2 * * *", utc(2011, 12, 28), utc(2012, 1, 1), apia) == slots(
        "daily 02:00", utc(2011, 12, 28), utc(2012, 1, 1), apia
    )


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize(
    ("cron", "form"),
    [
        ("30 2 * * *", "daily 02:30"),
        ("0 2 * * 1,4", "weekly mon,thu 02:00"),
        ("0 0 * * 0", "weekly sun 00:00"),
    ],
)
def test_cron_and_the_written_forms_agree_for_a_whole_year(zone: str, cron: str, form: str) -> None:
    """Both read wall-clock times the same way, so a fixed-time cron expression and its
    written form give the same slots through both DST changes."""
    tz = ZoneInfo(zone)
    start, end = utc(2024, 1, 1), utc(2025, 1, 1)
    assert slots(cron, start, end, tz) == slots(form, start, end, tz)
    assert len(slots(form, start, end, tz)) >= 52


def test_results_are_aware_utc_with_whole_seconds_and_naive_moments_are_utc() -> None:
    schedule = parse_schedule("daily 02:00")
    slot = schedule.next_after(datetime(2024, 6, 1, 12, 0, 0, 123456), BERLIN)
    assert slot == utc(2024, 6, 2, 0) and slot.tzinfo is UTC and slot.microsecond == 0
    aware = datetime(2024, 6, 1, 14, tzinfo=BERLIN)
    assert schedule.next_after(aware, BERLIN) == slot


# --- next_after, last_at_or_before -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "slot", "following"),
    [
        ("daily 02:00", utc(2024, 6, 1, 0), utc(2024, 6, 2, 0)),
        ("weekly mon,thu 02:00", utc(2024, 6, 3, 0), utc(2024, 6, 6, 0)),
        ("every-days 3 02:00", utc(2024, 6, 1, 0), utc(2024, 6, 4, 0)),
        ("every 6h", utc(2024, 6, 1, 6), utc(2024, 6, 1, 12)),
        ("0 2 * * *", utc(2024, 6, 1, 0), utc(2024, 6, 2, 0)),
        ("*/15 * * * *", utc(2024, 6, 1, 0, 15), utc(2024, 6, 1, 0, 30)),
    ],
)
def test_next_after_is_strictly_after(text: str, slot: datetime, following: datetime) -> None:
    schedule = parse_schedule(text)
    assert schedule.next_after(slot - timedelta(microseconds=1), BERLIN) == slot
    assert schedule.next_after(slot, BERLIN) == following
    assert schedule.next_after(slot + timedelta(microseconds=1), BERLIN) == following
    assert schedule.last_at_or_before(slot, BERLIN) == slot
    assert schedule.last_at_or_before(following - timedelta(seconds=1), BERLIN) == slot
    assert list(schedule.slots(slot, following, BERLIN)) == [following]  # (start, end]


FORMS = [
    "daily 02:30",
    "daily 00:00",
    "daily 23:59",
    "weekly sun 02:15",
    "weekly mon,tue,wed,thu,fri 01:00",
    "every-days 3 02:30",
    "every-days 7 00:00",
    "every 5400s",
    "every 1s",
    "30 2 * * *",
    "*/20 * * * *",
    "0 0 29 2 *",
    "0 0,12 * * 0",
]
# moments near the 2024 DST changes of every zone in ZONES, and Apia's missing day
AROUND = [utc(2024, 3, 31), utc(2024, 10, 27), utc(2024, 3, 10), utc(2024, 11, 3)]
AROUND += [utc(2024, 4, 6, 12), utc(2024, 9, 7, 12), utc(2024, 4, 7), utc(2024, 9, 8)]
AROUND += [utc(2011, 12, 30)]


@PROPS
@given(
    st.sampled_from(FORMS),
    st.sampled_from(ZONES),
    st.sampled_from(AROUND),
    st.integers(-3 * 86400 * 10**6, 3 * 86400 * 10**6),
)
def test_next_and_last_bracket_every_moment(
    text: str, tz: tzinfo, around: datetime, offset_us: int
) -> None:
    """next_after(m) is the first slot after m and last_at_or_before(m) the newest at or before
    it: nothing lies between them, whatever the zone does at m."""
    schedule = parse_schedule(text)
    moment = around + timedelta(microseconds=offset_us)
    following = schedule.next_after(moment, tz)
    newest = schedule.last_at_or_before(moment, tz)
    assert newest is not None and newest <= moment < following
    assert schedule.next_after(newest, tz) == following
    assert schedule.last_at_or_before(following, tz) == following
    assert schedule.last_at_or_before(following - timedelta(microseconds=1), tz) == newest


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FORMS), st.sampled_from(ZONES), st.sampled_from(AROUND))
def test_slots_increase_and_agree_with_next_after(text: str, tz: tzinfo, around: datetime) -> None:
    schedule = parse_schedule(text)
    span = timedelta(minutes=10) if text == "every 1s" else timedelta(days=2)
    start, end = around - span, around + span
    found = list(schedule.slots(start, end, tz))
    assert found == sorted(set(found))
    assert all(start < slot <= end and slot.microsecond == 0 for slot in found)
    moment, walked = start, []
    while (moment := schedule.next_after(moment, tz)) <= end:
        walked.append(moment)
    assert walked == found


def test_last_at_or_before_gives_none_beyond_the_calendar() -> None:
    dawn = datetime(1, 1, 1, 0, 0, 30, tzinfo=UTC)
    for text in ["daily 02:00", "weekly mon 02:00", "every-days 3 02:00", "0 2 * * *"]:
        assert parse_schedule(text).last_at_or_before(dawn, UTC) is None
    assert parse_schedule("every 6h").last_at_or_before(dawn, UTC) == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_schedule("every 20s").last_at_or_before(dawn, UTC) == dawn - timedelta(seconds=10)


# --- due: missed slots run once ------------------------------------------------------------


def test_missed_slots_coalesce_into_the_newest() -> None:
    """The host was down Monday to Friday noon: the policy runs once, as Friday's slot."""
    schedule = parse_schedule("daily 02:00")
    since = utc(2024, 6, 3, 0)  # Monday's slot, claimed
    now = utc(2024, 6, 7, 10)  # Friday 12:00 in Berlin
    assert due_slot(schedule, since=since, now=now, tz=BERLIN) == utc(2024, 6, 7, 0)
    # once that slot is claimed nothing is due until Saturday's
    claimed = utc(2024, 6, 7, 0)
    assert due_slot(schedule, since=claimed, now=now, tz=BERLIN) is None
    assert due_slot(schedule, since=claimed, now=utc(2024, 6, 7, 23, 59), tz=BERLIN) is None
    assert due_slot(schedule, since=claimed, now=utc(2024, 6, 8, 0), tz=BERLIN) == utc(2024, 6, 8)


def test_due_slot_bounds_are_since_exclusive_now_inclusive() -> None:
    schedule = parse_schedule("every 6h")
    slot = utc(2024, 6, 1, 6)
    assert due_slot(schedule, since=slot - timedelta(seconds=1), now=slot, tz=UTC) == slot
    assert due_slot(schedule, since=slot, now=slot, tz=UTC) is None
    assert due_slot(schedule, since=slot, now=slot - timedelta(hours=1), tz=UTC) is None
    created = utc(2024, 6, 1, 5, 59)  # a policy made a minute before a slot
    assert due_slot(schedule, since=created, now=utc(2024, 6, 1, 6, 0, 1), tz=UTC) == slot


@pytest.mark.parametrize("text", FORMS)
def test_a_long_outage_gives_one_due_slot_the_newest(text: str) -> None:
    schedule = parse_schedule(text)
    since, now = utc(2023, 1, 1), utc(2024, 10, 27, 3, 17)
    slot = due_slot(schedule, since=since, now=now, tz=BERLIN)
    assert slot == schedule.last_at_or_before(now, BERLIN)
    assert slot is not None and since < slot <= now < schedule.next_after(slot, BERLIN)
    assert due_slot(schedule, since=slot, now=now, tz=BERLIN) is None


@PROPS
@given(st.integers(0, 10 * 86400), st.integers(1, 5 * 86400))
def test_every_6h_slots_are_the_same_whatever_since_is(since_s: int, span_s: int) -> None:
    """Slots sit on multiples of 6 h since the epoch, so two hosts (or a policy made at any
    moment) agree on every slot's identity."""
    schedule = from_options(every="6h")
    base = utc(2024, 3, 29)
    since = base + timedelta(seconds=since_s)
    now = since + timedelta(seconds=span_s)
    slot = due_slot(schedule, since=since, now=now, tz=BERLIN)
    on_grid = [base + timedelta(hours=6 * k) for k in range(80)]
    in_window = [s for s in on_grid if since < s <= now]
    assert slot == (in_window[-1] if in_window else None)
    assert list(schedule.slots(since, now, ZoneInfo("Asia/Kolkata"))) == in_window


# --- parsing, describing, round trips ------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "text", "described"),
    [
        ({"cron": "0 2 * * *"}, "0 2 * * *", "cron 0 2 * * *"),
        ({"daily_at": "02:00"}, "daily 02:00", "daily at 02:00"),
        ({"daily_at": "7:05"}, "daily 07:05", "daily at 07:05"),
        ({"weekly": "mon,thu@02:00"}, "weekly mon,thu 02:00", "mon, thu at 02:00"),
        ({"weekly": "Thursday,MON@02:00"}, "weekly mon,thu 02:00", "mon, thu at 02:00"),
        (
            {"weekly": "fri-mon@23:00"},
            "weekly mon,fri,sat,sun 23:00",
            "mon, fri, sat, sun at 23:00",
        ),
        ({"every_days": "3@02:00"}, "every-days 3 02:00", "every 3 days at 02:00"),
        ({"every_days": "1@00:00"}, "every-days 1 00:00", "every 1 day at 00:00"),
        ({"every": "6h"}, "every 21600s", "every 6 h"),
        ({"every": "30s"}, "every 30s", "every 30 s"),
        ({"every": "15m"}, "every 900s", "every 15 min"),
        ({"every": "2d"}, "every 172800s", "every 2 d"),
        ({"every": "1h30m"}, "every 5400s", "every 1 h 30 min"),
        ({"every": "366d"}, "every 31622400s", "every 366 d"),
    ],
)
def test_options_give_canonical_text_and_description(
    options: dict[str, str], text: str, described: str
) -> None:
    schedule = from_options(**options)
    assert schedule.text == text
    assert schedule.describe() == described
    assert parse_schedule(text) == schedule
    assert parse_schedule(described) == schedule
    assert Schedule(text) == schedule


@pytest.mark.parametrize(
    ("written", "text"),
    [
        ("0  2 * * *", "0 2 * * *"),
        ("cron 0 2 * * MON", "0 2 * * MON"),
        ("DAILY at 2:00", "daily 02:00"),
        ("daily@02:00", "daily 02:00"),
        ("weekly Mon, Thu 02:00", "weekly mon,thu 02:00"),
        ("weekly mon,thu@02:00", "weekly mon,thu 02:00"),
        ("mon-fri at 07:15", "weekly mon,tue,wed,thu,fri 07:15"),
        ("every-days 3@02:00", "every-days 3 02:00"),
        ("every 6 hours", "every 21600s"),
        ("every 1 h 30 min", "every 5400s"),
    ],
)
def test_written_forms_normalise(written: str, text: str) -> None:
    assert parse_schedule(written).text == text
    assert parse_schedule(text).text == text


def test_an_existing_catalog_cron_text_stays_as_it_is() -> None:
    schedule = parse_schedule("0 2 * * *")
    assert schedule.text == "0 2 * * *" and schedule.kind == "cron"
    assert schedule.describe() == "cron 0 2 * * *"


schedules_made = st.one_of(
    st.builds(
        lambda h, m: from_options(daily_at=f"{h:02d}:{m:02d}"),
        st.integers(0, 23),
        st.integers(0, 59),
    ),
    st.builds(
        lambda days, h: from_options(weekly=f"{','.join(days)}@{h:02d}:30"),
        st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1),
        st.integers(0, 23),
    ),
    st.builds(lambda n: from_options(every_days=f"{n}@02:00"), st.integers(1, 366)),
    st.builds(lambda s: from_options(every=f"{s}s"), st.integers(1, 366 * 86400)),
    st.builds(
        lambda m, h, dow: from_options(cron=f"{m} {h} * * {dow}"),
        st.integers(0, 59),
        st.integers(0, 23),
        st.sampled_from(["*", "1-5", "0", "MON,THU"]),
    ),
)


@PROPS
@given(schedules_made)
def test_canonical_and_described_text_parse_back_to_the_same_schedule(schedule: Schedule) -> None:
    assert parse_schedule(schedule.text) == schedule
    assert parse_schedule(schedule.text).text == schedule.text
    assert parse_schedule(schedule.describe()) == schedule


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty schedule"),
        ("   ", "empty schedule"),
        ("hourly", "unknown schedule 'hourly'"),
        ("0 2 * *", "unknown schedule"),
        ("61 2 * * *", "Bad minute"),
        ("0 2 31 2 *", "Bad day-of-month"),
        ("0 2 * * * *", "unknown schedule"),
        ("0 2 * * $", "not five fields"),
        ("daily 24:00", "time '24:00' is not HH:MM between 00:00 and 23:59"),
        ("daily 02:60", "is not HH:MM"),
        ("daily 2", "is not HH:MM"),
        ("daily", "is not HH:MM"),
        ("weekly 02:00", "no time"),
        ("weekly mo 02:00", "day 'mo' is not one of mon..sun"),
        ("weekly mon,,thu 02:00", "give day names with commas"),
        ("every-days 0 02:00", "from 1 to 366"),
        ("every-days 367 02:00", "from 1 to 366"),
        ("every-days x 02:00", "from 1 to 366"),
        ("every 0s", "not between 1 s and 366 d"),
        ("every 367d", "not between 1 s and 366 d"),
        ("every 6", "give a number and a unit"),
        ("every 6x", "give a number and a unit"),
        ("every 1h1h", "give a number and a unit"),
        ("every " + "9" * 100 + "s", "give a number and a unit"),
        ("daily 02:00\nrm -rf /", "is not HH:MM"),
        ("x" * 1000, "too long"),
    ],
)
def test_bad_schedules_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("*", r"\*")) as err:
        parse_schedule(text)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give a schedule: one of --cron, --daily-at, --weekly, --every-days, --every"),
        ({"daily_at": "02:00", "every": "6h"}, "give one schedule, not --daily-at and --every"),
        ({"cron": ""}, "--cron: cron expression '' is not five fields"),
        ({"daily_at": "25:00"}, "--daily-at: time '25:00' is not HH:MM"),
        ({"daily_at": "daily 02:00"}, "--daily-at: time 'daily 02:00'"),
        ({"weekly": "mon,thu"}, "--weekly 'mon,thu' has no time: give it as days@HH:MM"),
        ({"weekly": "funday@02:00"}, "--weekly: day 'funday' is not one of mon..sun"),
        ({"every_days": "3"}, "--every-days '3' has no time"),
        ({"every_days": "400@02:00"}, "--every-days '400' is not a whole number from 1 to 366"),
        ({"every": "1w"}, "--every: interval '1w': give a number and a unit"),
        ({"every": "0s"}, "--every: interval '0s' is not between 1 s and 366 d"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, str], message: str) -> None:
    with pytest.raises(UserError) as err:
        from_options(**options)
    assert str(err.value).startswith(message)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(
            st.sampled_from(
                [
                    *("*", "0", "2", "L", "W", "5L", "LW", "#", "/", "-", ",", "7", "60", "MON"),
                    *("daily", "weekly", "every", "every-days", "cron", "at", "@", "02:00", "3"),
                    *("mon", "6h", "1h30m", " ", "\t", "\u2003", "٣", "²", "x"),
                ]
            ),
            max_size=12,
        ).map("".join),
    )
)
def test_parse_schedule_only_ever_raises_user_error(text: str) -> None:
    try:
        schedule = parse_schedule(text)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert parse_schedule(schedule.text) == schedule
    schedule.next_after(utc(2024, 1, 1), BERLIN)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["cron", "daily_at", "weekly", "every_days", "every"]), st.text(max_size=40))
def test_from_options_only_ever_raises_user_error(option: str, value: str) -> None:
    try:
        from_options(**{option: value})
    except UserError as exc:
        assert "\n" not in str(exc)


# --- zones ---------------------------------------------------------------------------------


def test_zone_named() -> None:
    assert zone_named("Europe/Berlin") == BERLIN
    assert datetime(2024, 6, 1, tzinfo=zone_named("UTC")).utcoffset() == timedelta(0)
    for blank in (None, "", "local"):
        assert zone_named(blank) == local_zone()
    for bad in ("Mars/Olympus", "../etc/passwd", "/etc/localtime", "Europe", "x" * 500, "\0"):
        with pytest.raises(UserError, match="unknown time zone"):
            zone_named(bad)


def test_local_zone_reads_tz_then_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert local_zone() == BERLIN
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert local_zone() == BERLIN
    monkeypatch.setenv("TZ", "Not/A_Zone")
    fallback = local_zone()  # /etc/localtime, else UTC: never an error
    monkeypatch.delenv("TZ")
    assert fallback == local_zone()
    assert datetime(2024, 1, 1, tzinfo=fallback).utcoffset() is not None
