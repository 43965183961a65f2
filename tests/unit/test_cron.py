"""cloaca.cron: next fire times in IANA zones, DST transitions and catch-up."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from cloaca.cron import CronError, CronSchedule, due_ticks, tick_text


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def run(schedule: CronSchedule, start: datetime, count: int) -> list[datetime]:
    ticks = []
    moment = start
    for _ in range(count):
        moment = schedule.next_after(moment)
        ticks.append(moment)
    return ticks


def test_fixture_schedules_next_run_at() -> None:
    # The next_run_at values Cloacina 0.3.1 stored at 2026-12-03T20:26:36 UTC.
    created = utc(2026, 12, 3, 20, 26, 36)
    expected = {
        ("0 9 * * MON-FRI", "America/New_York"): utc(2026, 12, 4, 14),
        ("30 6 1 * *", "Europe/Berlin"): utc(2027, 1, 1, 5, 30),
        ("0 0 0 1 1 *", "Asia/Tokyo"): utc(2026, 12, 31, 15),
        ("15 3 * * SUN", "Australia/Sydney"): utc(2026, 12, 5, 16, 15),
        ("*/2 * * * * *", "UTC"): utc(2026, 12, 3, 20, 26, 38),
    }
    for (expression, zone), tick in expected.items():
        assert CronSchedule(expression, zone).next_after(created) == tick


def test_next_is_strictly_after_and_whole_seconds() -> None:
    schedule = CronSchedule("* * * * *", "UTC")
    assert schedule.next_after(utc(2026, 1, 1, 0, 0)) == utc(2026, 1, 1, 0, 1)
    moment = datetime(2026, 1, 1, 0, 0, 59, 999_999, tzinfo=UTC)
    assert schedule.next_after(moment) == utc(2026, 1, 1, 0, 1)
    assert tick_text(utc(2026, 12, 3, 20, 26, 38)) == "2026-12-03T20:26:38+00:00"


def test_a_day_of_every_minute_ticks() -> None:
    schedule = CronSchedule("* * * * *", "Europe/Berlin")
    ticks = run(schedule, utc(2026, 6, 1), 1440)
    assert ticks[0] == utc(2026, 6, 1, 0, 1)
    assert ticks[-1] == utc(2026, 6, 2)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(ticks))


def test_spring_forward_skips_the_missing_local_time() -> None:
    # America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    daily = CronSchedule("30 2 * * *", "America/New_York")
    ticks = run(daily, utc(2026, 3, 7), 3)
    assert ticks == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT; 8 March has no 02:30
        utc(2026, 3, 10, 6, 30),
    ]
    every_half_hour = CronSchedule("*/30 * * * *", "America/New_York")
    ticks = run(every_half_hour, utc(2026, 3, 8, 6, 0), 4)
    local = [t.astimezone(every_half_hour.zone).strftime("%H:%M %Z") for t in ticks]
    assert local == ["01:30 EST", "03:00 EDT", "03:30 EDT", "04:00 EDT"]
    assert ticks[1] - ticks[0] == timedelta(minutes=30)


def test_fall_back_fires_at_both_instants_of_a_repeated_time() -> None:
    # America/New_York, 2026-11-01: 02:00 EDT falls back to 01:00 EST.
    schedule = CronSchedule("*/30 * * * *", "America/New_York")
    ticks = run(schedule, utc(2026, 11, 1, 4, 50), 6)
    assert ticks == [utc(2026, 11, 1, 5, m) for m in (0, 30)] + [
        utc(2026, 11, 1, h, m) for h in (6, 7) for m in (0, 30)
    ]
    local = [t.astimezone(schedule.zone).strftime("%H:%M %Z") for t in ticks]
    assert local == [
        "01:00 EDT",
        "01:30 EDT",
        "01:00 EST",
        "01:30 EST",
        "02:00 EST",
        "02:30 EST",
    ]
    daily = CronSchedule("30 1 * * *", "America/New_York")
    assert run(daily, utc(2026, 11, 1), 3) == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 2, 6, 30),
    ]


def test_every_minute_through_a_dst_day_keeps_real_time_cadence() -> None:
    schedule = CronSchedule("* * * * *", "America/New_York")
    ticks = run(schedule, utc(2026, 11, 1, 4), 60 * 5)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(ticks))


def test_six_fields_have_a_leading_seconds_field() -> None:
    schedule = CronSchedule("*/15 30 9 * * *", "UTC")
    assert run(schedule, utc(2026, 1, 1), 5) == [
        utc(2026, 1, 1, 9, 30, 0),
        utc(2026, 1, 1, 9, 30, 15),
        utc(2026, 1, 1, 9, 30, 30),
        utc(2026, 1, 1, 9, 30, 45),
        utc(2026, 1, 2, 9, 30, 0),
    ]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("61 * * * *", "'61 * * * *'"),
        ("* * *", "'* * *'"),
        ("* * * * * * *", "'* * * * * * *'"),
        ("", "''"),
        ("R * * * *", "random"),
        ("0 0 * * FUNDAY", "'0 0 * * FUNDAY'"),
    ],
)
def test_invalid_expressions_name_the_value(expression: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="invalid cron expression") as info:
        CronSchedule(expression, "UTC")
    assert isinstance(info.value, CronError)
    assert fragment in str(info.value)


@pytest.mark.parametrize("zone", ["Mars/Base", "", " UTC", "../etc/passwd"])
def test_unknown_timezones_name_the_value(zone: str) -> None:
    with pytest.raises(CronError, match="unknown timezone") as info:
        CronSchedule("* * * * *", zone)
    assert repr(zone) in str(info.value)


def test_an_expression_that_never_fires_is_refused_when_asked() -> None:
    schedule = CronSchedule("0 0 30 2 *", "UTC")
    with pytest.raises(CronError, match="never fires"):
        schedule.next_after(utc(2026, 1, 1))


def test_catch_up_policies() -> None:
    schedule = CronSchedule("0 * * * *", "UTC")
    stored = utc(2026, 1, 1, 1)
    now = utc(2026, 1, 2, 1, 30)  # a day of downtime
    assert due_ticks(schedule, "skip", stored, now, 100) == [stored]
    assert due_ticks(schedule, "run_once", stored, now, 100) == [stored]
    every = due_ticks(schedule, "run_all", stored, now, 100)
    assert len(every) == 25
    assert every[0] == stored
    assert every[-1] == utc(2026, 1, 2, 1)
    assert due_ticks(schedule, "run_all", stored, now, 3) == [
        utc(2026, 1, 1, 1),
        utc(2026, 1, 1, 2),
        utc(2026, 1, 1, 3),
    ]
    assert due_ticks(schedule, "run_all", stored, now, 0) == [stored]
    assert due_ticks(schedule, "skip", now, stored, 100) == []
