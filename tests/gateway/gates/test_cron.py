"""Freeze windows' cron expressions: each field's bounds and syntax, Sunday as 0 and 7, Vixie
cron's day-of-month OR day-of-week, and the last and next start across midnight, months and years."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kubegate.gateway.gates.cron import Cron, CronError

UTC = ZoneInfo("UTC")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("text", "problem"), [
    ("* * * *", "has 5 fields"),
    ("* * * * * *", "has 5 fields"),
    ("60 * * * *", "'60' is outside 0-59"),
    ("-1 * * * *", "'-1' is not a range"),
    ("1- * * * *", "'1-' is not a range"),
    ("* 24 * * *", "'24' is outside 0-23"),
    ("* * 0 * *", "'0' is outside 1-31"),
    ("* * 32 * *", "'32' is outside 1-31"),
    ("* * * 0 *", "'0' is outside 1-12"),
    ("* * * 13 *", "'13' is outside 1-12"),
    ("* * * * 8", "'8' is outside 0-7"),
    ("* * * * funday", "'funday' is not a number or name"),
    ("* x * * *", "'x' is not a number"),  # names only where a field has them
    ("* * * * mon-sun", "'mon-sun' is outside 0-7"),  # a range that runs backwards
    ("5-1 * * * *", "'5-1' is outside 0-59"),
    ("50-60 * * * *", "'50-60' is outside 0-59"),
    ("1-2-3 * * * *", "'2-3' is not a number"),
    ("*/0 * * * *", "bad step in '*/0'"),
    ("*/x * * * *", "bad step in '*/x'"),
    ("0 0 30 2 *", "'0 0 30 2 *'"),  # 30 February: every field allows it, no date has it
])
def test_each_bad_expression_names_its_field_value(text: str, problem: str) -> None:
    with pytest.raises(CronError) as e:
        Cron.parse(text)
    assert problem in str(e.value)


def test_field_bounds_are_inclusive() -> None:
    for text in ("0 0 1 1 0", "59 23 31 12 7", "0-59 0-23 1-31 1-12 0-7"):
        Cron.parse(text)
    assert Cron.parse("59 23 31 12 *").matches(at("2026-12-31T23:59"))
    assert Cron.parse("0 0 1 1 *").matches(at("2027-01-01T00:00"))


@pytest.mark.parametrize("sunday", ["0", "7", "sun", "SUN", "6-7", "0,3"])
def test_sunday_is_0_and_7_and_sun(sunday: str) -> None:
    cron = Cron.parse(f"0 12 * * {sunday}")
    assert cron.matches(at("2026-12-06T12:00"))  # a Sunday
    assert not cron.matches(at("2026-12-07T12:00"))  # Monday


def test_steps_lists_ranges_and_names() -> None:
    cron = Cron.parse("*/20 9-17/4 * jan,jun-aug mon-fri")
    assert cron.minutes == frozenset({0, 20, 40})
    assert cron.hours == frozenset({9, 13, 17})
    assert cron.months == frozenset({1, 6, 7, 8})
    assert cron.weekdays == frozenset({1, 2, 3, 4, 5})
    assert Cron.parse("10/15 * * * *").minutes == frozenset({10, 25, 40, 55})  # a start with a step: to the end
    assert Cron.parse("5 * * * *").minutes == frozenset({5})
    assert Cron.parse("*/1 * * * *").minutes == frozenset(range(60))
    assert Cron.parse("0 0 * * 7").weekdays == frozenset({0})  # one Sunday, not two


def test_day_of_month_and_weekday_both_set_match_either() -> None:
    # Vixie cron: "0 0 13 * fri" fires on every 13th AND on every Friday.
    cron = Cron.parse("0 0 13 * fri")
    assert cron.matches(at("2026-12-13T00:00"))  # a Sunday, the 13th
    assert cron.matches(at("2026-12-04T00:00"))  # a Friday, the 4th
    assert not cron.matches(at("2026-12-05T00:00"))  # Saturday the 5th
    # Either one left as *: both must match (the * matches every day).
    assert not Cron.parse("0 0 13 * *").matches(at("2026-12-04T00:00"))
    assert not Cron.parse("0 0 * * fri").matches(at("2026-12-13T00:00"))
    assert Cron.parse("0 0 * * fri").matches(at("2026-12-04T00:00"))
    # The month still has to match.
    assert not Cron.parse("0 0 13 jan fri").matches(at("2026-12-04T00:00"))


def test_matches_needs_the_hour_and_the_minute() -> None:
    cron = Cron.parse("30 18 * * *")
    assert cron.matches(at("2026-12-05T18:30"))
    assert not cron.matches(at("2026-12-05T18:31"))
    assert not cron.matches(at("2026-12-05T17:30"))


def test_last_start_is_within_the_window_or_none() -> None:
    nightly = Cron.parse("0 22 * * *")
    after_midnight = at("2026-12-06T01:30")
    assert nightly.last_start(after_midnight, timedelta(hours=4)) == at("2026-12-05T22:00")  # across midnight
    assert nightly.last_start(after_midnight, timedelta(hours=3, minutes=30)) is None  # exactly that long ago: over
    assert nightly.last_start(after_midnight, timedelta(hours=3, minutes=31)) == at("2026-12-05T22:00")
    assert nightly.last_start(at("2026-12-05T22:00"), timedelta(minutes=1)) == at("2026-12-05T22:00")  # its first minute
    assert nightly.last_start(at("2026-12-05T22:00:59"), timedelta(minutes=1)) == at("2026-12-05T22:00")
    assert nightly.last_start(at("2026-12-05T21:59:59"), timedelta(hours=1)) is None  # not started yet
    every_minute = Cron.parse("* * * * *")
    assert every_minute.last_start(at("2026-12-05T12:00:30"), timedelta(minutes=5)) == at("2026-12-05T12:00")
    assert every_minute.last_start(at("2026-12-05T12:00:00"), timedelta(minutes=5)) == at("2026-12-05T12:00")
    new_year = Cron.parse("0 0 1 1 *")
    assert new_year.last_start(at("2027-01-01T06:00"), timedelta(days=1)) == at("2027-01-01T00:00")
    assert new_year.last_start(at("2026-12-31T23:00"), timedelta(days=300)) is None


def test_next_start_is_after_now_within_the_horizon() -> None:
    nightly = Cron.parse("0 22 * * *")
    assert nightly.next_start(at("2026-12-05T22:30")) == at("2026-12-06T22:00")
    assert nightly.next_start(at("2026-12-05T21:59:30")) == at("2026-12-05T22:00")
    month_end = Cron.parse("0 0 31 * *")
    assert month_end.next_start(at("2026-11-15T00:00")) == at("2026-12-31T00:00")  # November has no 31st
    assert month_end.next_start(at("2026-11-15T00:00"), horizon=timedelta(days=46, minutes=1)) == at("2026-12-31T00:00")
    assert month_end.next_start(at("2026-11-15T00:00"), horizon=timedelta(days=46)) is None  # the horizon's end: out
    leap = Cron.parse("0 0 29 2 *")
    assert leap.next_start(at("2026-03-01T00:00"), horizon=timedelta(days=1200)) == at("2028-02-29T00:00")
    assert leap.next_start(at("2026-03-01T00:00")) is None  # beyond the default 400 days
