"""GFS retention (core/rules/gfs.py): `decide` against a deliberately simple reference, its
properties, the worked examples of docs/retention.md, and `parse_duration`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.base.errors import UserError
from core.catalog.models import Backup
from core.rules.gfs import Decision, KeepRules, decide, parse_duration

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BERLIN = ZoneInfo("Europe/Berlin")
# zones whose bucket keys never run backwards (a DST change moves the clock by a whole hour,
# on the hour, so a local hour, date, week... is one stretch of time): the reference's
# group-by and restic's walk agree there
ZONES = [
    UTC,
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=13)),
    BERLIN,
    ZoneInfo("America/New_York"),
    ZoneInfo("Australia/Lord_Howe"),  # half-hour DST
]


@dataclass(frozen=True)
class B:
    id: str
    created_at: datetime


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the reference: for each rule, group by bucket, newest per bucket, N newest buckets ---

KEYS = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar())[:2],
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def reference(backups, rules: KeepRules, tz, pinned=frozenset()) -> Decision:
    order = sorted(backups, key=lambda b: (utc(b.created_at), b.id), reverse=True)
    why: dict[str, list[str]] = {b.id: [] for b in order}
    if not order:
        return Decision({}, ())
    if rules.empty():
        for b in order:
            why[b.id].append("no rules")
    else:
        for b in order[: rules.last or 0]:
            why[b.id].append("last")
        for name, key in KEYS.items():
            count = getattr(rules, name) or 0
            if not count:
                continue
            buckets = defaultdict(list)
            for b in order:
                buckets[key(utc(b.created_at).astimezone(tz))].append(b)
            for bucket in sorted(buckets, reverse=True)[:count]:
                why[buckets[bucket][0].id].append(name)
            oldest = order[-1]
            if len(buckets) < count and name not in why[oldest.id]:
                why[oldest.id].append(f"oldest {name}")
        if rules.within:
            newest = utc(order[0].created_at)
            for b in order:
                if newest - utc(b.created_at) < rules.within:
                    why[b.id].append("within")
    for b in order:
        if b.id in pinned:
            why[b.id].append("pinned")
    why[order[0].id].append("newest")
    return Decision(
        {i: tuple(w) for i, w in why.items() if w}, tuple(i for i, w in why.items() if not w)
    )


# --- strategies ---

BASE = datetime(2020, 12, 24, tzinfo=UTC)  # 1-3 Jan 2021 are in ISO week 53 of 2020
# a backup is a step on a grid (few steps: equal times come often), half of them 7 µs late
# (same second, different times); the grid spans 3 hours to 6 years
SCALES = [60, 1800, 3 * 3600, 3 * 86400, 11 * 86400]
SHAPES = [
    lambda t: t,
    lambda t: t.replace(tzinfo=None),  # naive: UTC
    lambda t: t.astimezone(timezone(timedelta(hours=-3))),
    lambda t: t.astimezone(BERLIN),  # same-zone datetimes compare by wall clock in Python
]
POINTS = st.lists(st.tuples(st.integers(0, 400), st.integers(0, len(SHAPES) - 1)), max_size=30)


@st.composite
def backup_lists(draw):
    scale = draw(st.sampled_from(SCALES))
    found = [
        B(
            f"bk-{n:04x}",
            SHAPES[shape](BASE + timedelta(seconds=step // 2 * scale, microseconds=step % 2 * 7)),
        )
        for n, (step, shape) in enumerate(draw(POINTS))
    ]
    return draw(st.permutations(found))


COUNT = st.one_of(st.none(), st.integers(0, 8))
WITHIN = st.one_of(st.none(), st.integers(0, 24 * 500).map(lambda h: timedelta(hours=h)))
RULES = st.builds(
    KeepRules,
    last=COUNT,
    hourly=COUNT,
    daily=COUNT,
    weekly=COUNT,
    monthly=COUNT,
    yearly=COUNT,
    within=WITHIN,
)


def pins(draw, backups):
    chosen = draw(st.lists(st.sampled_from([b.id for b in backups]))) if backups else []
    return frozenset([*chosen, "bk-elsewhere"])


@PROPERTY
@given(backup_lists(), RULES, st.sampled_from(ZONES), st.data())
def test_decide_matches_the_reference(backups, rules, tz, data):
    pinned = pins(data.draw, backups)
    got = decide(backups, rules, tz=tz, pinned=pinned)
    want = reference(backups, rules, tz, pinned)
    assert got == want
    assert list(got.keep) == list(want.keep)  # newest first


@PROPERTY
@given(backup_lists(), RULES, st.sampled_from(ZONES), st.data())
def test_every_backup_is_kept_or_expires_and_the_newest_and_pinned_stay(backups, rules, tz, data):
    pinned = pins(data.draw, backups)
    got = decide(backups, rules, tz=tz, pinned=pinned)
    ids = {b.id for b in backups}
    assert set(got.keep) | set(got.expire) == ids
    assert not set(got.keep) & set(got.expire)
    assert len(got.expire) == len(set(got.expire))
    assert pinned & ids <= set(got.keep)
    if backups:
        newest = max(backups, key=lambda b: (utc(b.created_at), b.id))
        assert "newest" in got.keep[newest.id]
    times = {b.id: utc(b.created_at) for b in backups}
    assert [times[i] for i in got.expire] == sorted((times[i] for i in got.expire), reverse=True)
    if rules.empty():
        assert got.expire == ()


@PROPERTY
@given(backup_lists(), RULES, RULES, st.sampled_from(ZONES))
def test_adding_a_rule_never_expires_more(backups, rules, extra, tz):
    if rules.empty():
        rules = replace(rules, last=1)

    def more(a, b):
        return b if a is None else a if b is None else max(a, b)

    wider = KeepRules(**{k: more(getattr(rules, k), getattr(extra, k)) for k in KEYS_ALL})
    assert set(decide(backups, wider, tz=tz).expire) <= set(decide(backups, rules, tz=tz).expire)


KEYS_ALL = ("last", "hourly", "daily", "weekly", "monthly", "yearly", "within")


@PROPERTY
@given(backup_lists(), RULES, st.sampled_from(ZONES), st.data())
def test_a_pin_keeps_its_backup_and_changes_nothing_else(backups, rules, tz, data):
    pinned = pins(data.draw, backups)
    plain = decide(backups, rules, tz=tz)
    with_pins = decide(list(reversed(backups)), rules, tz=tz, pinned=pinned)
    assert with_pins.expire == tuple(i for i in plain.expire if i not in pinned)


# --- worked examples (docs/retention.md) ---


def test_example_1_thirty_dailies_keep_daily_7_weekly_4():
    backups = [B(f"04-{d:02d}", at(f"2025-04-{d:02d} 02:00")) for d in range(1, 31)]
    got = decide(backups, KeepRules(daily=7, weekly=4), tz=UTC)
    assert got.keep == {
        "04-30": ("daily", "weekly", "newest"),  # Wednesday, ISO week 18
        "04-29": ("daily",),
        "04-28": ("daily",),
        "04-27": ("daily", "weekly"),  # Sunday, last day of week 17
        "04-26": ("daily",),
        "04-25": ("daily",),
        "04-24": ("daily",),
        "04-20": ("weekly",),  # Sunday of week 16
        "04-13": ("weekly",),  # Sunday of week 15
    }
    days = (23, 22, 21, 19, 18, 17, 16, 15, 14, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
    assert got.expire == tuple(f"04-{d:02d}" for d in days)
    assert len(got.expire) == 21


RESTIC_EXAMPLE = [  # restic's own doc example: weekdays, a second backup on Fridays
    ("60e5c031", "2025-04-21 11:00"),
    ("1dccffe9", "2025-04-22 11:00"),
    ("90a5c949", "2025-04-23 11:00"),
    ("79580708", "2025-04-24 11:00"),
    ("8a603ddf", "2025-04-25 11:00"),
    ("ae33bf10", "2025-04-25 23:00"),
    ("fb8b1418", "2025-04-28 11:00"),
    ("1db188b4", "2025-04-29 11:00"),
    ("7baa4f28", "2025-05-01 11:00"),
    ("05c48af3", "2025-05-02 11:00"),
    ("ad72e262", "2025-05-02 23:00"),
]


def test_example_2_restics_missed_wednesday_keep_daily_5():
    backups = [B(i, at(t)) for i, t in RESTIC_EXAMPLE]
    got = decide(backups, KeepRules(daily=5), tz=UTC)
    # restic keeps Friday's 23:00 backup, the newest of that day (its doc's table prints
    # that time under the id of the 11:00 one, 8a603ddf)
    assert got.keep == {
        "ad72e262": ("daily", "newest"),
        "7baa4f28": ("daily",),
        "1db188b4": ("daily",),
        "fb8b1418": ("daily",),
        "ae33bf10": ("daily",),
    }
    assert got.expire == ("05c48af3", "8a603ddf", "79580708", "90a5c949", "1dccffe9", "60e5c031")


def test_example_3_keep_within_counts_back_from_the_newest_backup_not_from_now():
    # every 12 hours from 1 to 10 March, then the disk was detached: no backup since
    backups = [
        B(f"bk-{n:02d}", at("2025-03-01 00:00") + timedelta(hours=12 * n)) for n in range(19)
    ]
    got = decide(backups, KeepRules(within=parse_duration("2d")), tz=UTC)
    assert backups[-1].created_at == at("2025-03-10 00:00")
    assert list(got.keep) == ["bk-18", "bk-17", "bk-16", "bk-15"]  # 10 Mar 00:00 .. 8 Mar 12:00
    assert got.keep["bk-18"] == ("within", "newest")
    assert "bk-14" in got.expire  # 8 Mar 00:00 is exactly 2d before the newest: not within
    assert len(got.expire) == 15


def test_example_4_a_young_policy_keeps_its_oldest_backup_and_pins():
    # a new policy, three weeks of dailies across a month's end; keep-monthly 6
    backups = [B(f"d{n:02d}", at("2025-05-20 03:00") + timedelta(days=n)) for n in range(21)]
    got = decide(backups, KeepRules(last=2, monthly=6), tz=UTC, pinned=frozenset({"d05"}))
    assert got.keep == {
        "d20": ("last", "monthly", "newest"),  # 9 June
        "d19": ("last",),
        "d11": ("monthly",),  # 31 May, newest of May
        "d05": ("pinned",),
        "d00": ("oldest monthly",),  # 20 May: only 2 of 6 months have backups
    }
    assert len(got.expire) == 16


def test_buckets_are_read_in_the_given_zone():
    # 23:30 UTC on 31 March is 1 April in Berlin (CEST, UTC+2); 20:00 UTC is still March
    backups = [B("late", at("2025-03-31 23:30")), B("earlier", at("2025-03-31 20:00"))]
    in_utc = decide(backups, KeepRules(monthly=2), tz=UTC)
    in_berlin = decide(backups, KeepRules(monthly=2), tz=BERLIN)
    assert in_utc.keep == {"late": ("monthly", "newest"), "earlier": ("oldest monthly",)}
    assert in_berlin.keep == {"late": ("monthly", "newest"), "earlier": ("monthly",)}


def test_the_repeated_hour_of_a_dst_change_is_one_bucket():
    # Berlin, 26 Oct 2025: 02:30 CEST (00:30 UTC) and 02:30 CET (01:30 UTC) are both hour 2
    backups = [B("cest", at("2025-10-26 00:30")), B("cet", at("2025-10-26 01:30"))]
    got = decide(backups, KeepRules(hourly=1), tz=BERLIN)
    assert got.expire == ("cest",)


def test_a_local_hour_that_comes_back_after_a_clock_change_is_a_new_bucket_as_in_restic():
    # Chatham Islands, 6 Apr 2025: 03:45 +13:45 becomes 02:45 +12:45, so the local hour 3
    # is 03:00-03:45 before the change and again 03:00-03:59 an hour later
    chatham = ZoneInfo("Pacific/Chatham")
    first = B("first", datetime(2025, 4, 6, 3, 10, tzinfo=chatham))
    second = B("second", datetime(2025, 4, 6, 2, 50, fold=1, tzinfo=chatham))
    third = B("third", datetime(2025, 4, 6, 3, 20, fold=1, tzinfo=chatham))
    assert [b.created_at.astimezone(chatham).hour for b in (first, second, third)] == [3, 2, 3]
    got = decide([first, second, third], KeepRules(hourly=3), tz=chatham)
    assert got.keep == {
        "third": ("hourly", "newest"),
        "second": ("hourly",),
        "first": ("hourly",),
    }


def test_empty_rules_expire_nothing_and_no_backups_decide_nothing():
    backups = [B("a", at("2025-01-01 00:00")), B("b", at("2025-01-02 00:00"))]
    assert decide(backups, KeepRules(last=0), tz=UTC, pinned=frozenset({"a"})) == Decision(
        {"b": ("no rules", "newest"), "a": ("no rules", "pinned")}, ()
    )
    assert decide([], KeepRules(daily=3), tz=UTC) == Decision({}, ())


def test_equal_times_are_ordered_by_id_whatever_the_input_order():
    moment = at("2025-06-01 12:00")
    backups = [B("bk-b", moment), B("bk-c", moment.replace(tzinfo=None)), B("bk-a", moment)]
    for order in (backups, backups[::-1]):
        got = decide(order, KeepRules(last=1), tz=UTC)
        assert got.keep == {"bk-c": ("last", "newest")}
        assert got.expire == ("bk-b", "bk-a")


def test_catalog_backups_are_dated_and_naive_times_are_utc():
    rows = [
        Backup(
            id="bk-1", name="one", vault_id="v", disk_id="d", created_at=datetime(2025, 1, 1, 6)
        ),
        Backup(
            id="bk-2", name="two", vault_id="v", disk_id="d", created_at=datetime(2025, 1, 1, 18)
        ),
    ]
    # 06:00 and 18:00 UTC: one day in UTC, 14:00 on 1 Jan and 02:00 on 2 Jan at UTC+8
    assert decide(rows, KeepRules(daily=2), tz=UTC).keep["bk-1"] == ("oldest daily",)
    plus_8 = timezone(timedelta(hours=8))
    assert decide(rows, KeepRules(daily=2), tz=plus_8).keep["bk-1"] == ("daily",)


def test_duplicate_ids_are_a_bug():
    with pytest.raises(ValueError):
        decide([B("a", at("2025-01-01 00:00"))] * 2, KeepRules(last=1), tz=UTC)


# --- KeepRules and parse_duration ---


def test_describe_and_empty():
    rules = KeepRules(last=7, daily=14, weekly=8, within=parse_duration("2d"))
    assert rules.describe() == "last 7, daily 14, weekly 8, within 2d"
    assert (
        KeepRules(hourly=24, monthly=12, yearly=3).describe() == "hourly 24, monthly 12, yearly 3"
    )
    assert KeepRules(within=parse_duration("1y5m")).describe() == "within 1y150d"
    assert KeepRules(within=timedelta(hours=36)).describe() == "within 1d12h"
    assert KeepRules().empty() and KeepRules().describe() == "no rules"
    assert KeepRules(last=0, within=timedelta(0)).empty()
    assert not KeepRules(yearly=1).empty()


@pytest.mark.parametrize("bad", [{"last": -1}, {"daily": 2.5}, {"weekly": True}])
def test_keep_rules_refuse_bad_counts(bad):
    with pytest.raises(UserError):
        KeepRules(**bad)
    with pytest.raises(UserError):
        KeepRules(within=timedelta(hours=-1))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(days=14)),
        ("1m", timedelta(days=30)),
        ("1y", timedelta(days=365)),
        ("2y5m7d3h", timedelta(days=2 * 365 + 5 * 30 + 7, hours=3)),
        ("3h2y", timedelta(days=730, hours=3)),
        (" 7d ", timedelta(days=7)),
        ("100y", timedelta(days=36500)),
        ("0y36500d", timedelta(days=36500)),
    ],
)
def test_parse_duration(text, want):
    assert parse_duration(text) == want


@pytest.mark.parametrize(
    "text",
    ["", "  ", "30", "d", "7 d", "1.5d", "-1d", "1d2d", "3M", "90min", "5x", "0d", "0h0d", "100y1h",
     "36501d", "99999999999999999999999y", "٣d", "7d,", None],
)  # fmt: skip
def test_parse_duration_refuses(text):
    with pytest.raises(UserError):
        parse_duration(text)


@given(st.text(max_size=12))
@settings(max_examples=200, deadline=None)
def test_parse_duration_only_raises_user_errors(text):
    try:
        duration = parse_duration(text)
    except UserError:
        return
    assert timedelta(0) < duration <= timedelta(days=36500)


def test_weeks_are_iso_weeks_monday_to_sunday_across_new_year():
    # Thursday 31 Dec 2020 and Sunday 3 Jan 2021 are both in ISO week 53 of 2020
    backups = [
        B("mon-28-dec", at("2020-12-28 09:00")),
        B("thu-31-dec", at("2020-12-31 09:00")),
        B("sun-3-jan", at("2021-01-03 09:00")),
        B("mon-4-jan", at("2021-01-04 09:00")),
    ]
    got = decide(backups, KeepRules(weekly=2), tz=UTC)
    assert got.keep == {"mon-4-jan": ("weekly", "newest"), "sun-3-jan": ("weekly",)}
    assert got.expire == ("thu-31-dec", "mon-28-dec")
