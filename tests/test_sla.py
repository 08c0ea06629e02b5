"""Tests for inboxd.desk.sla: business-time arithmetic, pauses, warnings, human durations and config errors.

Every instant is fixed; nothing here reads the clock.  The Chinese holidays
come from the ``holidays`` package, whose 2026 table says: National Day
closes 2026-10-01..10-07 and Sunday 2026-09-20 and Saturday 2026-10-10 are
make-up working days.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from inboxd.config import ConfigError
from inboxd.desk.sla import (
    ALWAYS, Calendar, SlaPolicy, due_time, elapsed, human, parse_calendars, parse_sla_policies,
    policy_for_priority, warn_time,
)

UTC = timezone.utc
WEEKDAYS = {day: "09:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")}
EVERY_DAY = {day: "09:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
H = timedelta(hours=1)
M = timedelta(minutes=1)


def calendar(**keys) -> Calendar:
    return parse_calendars([{"name": "t", **keys}], "inboxd.toml")["t"]


def at(text: str, zone: str = "UTC") -> datetime:
    """A wall-clock time in a zone, e.g. at("2026-03-06 17:00", "Asia/Shanghai")."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


OFFICE = calendar(hours=WEEKDAYS)
CN = calendar(timezone="Asia/Shanghai", hours=WEEKDAYS, holidays="CN")


# --- Weekends, closing times, starts outside hours.

def test_add_skips_the_weekend() -> None:
    # 2026-03-06 is a Friday: two hours left on Friday, two more on Monday.
    due = OFFICE.add(utc("2026-03-06 16:00"), 4 * H)
    assert due == utc("2026-03-09 11:00")
    assert due.tzinfo == UTC
    assert OFFICE.between(utc("2026-03-06 16:00"), due) == 4 * H


def test_start_outside_hours_counts_from_the_next_opening() -> None:
    assert OFFICE.add(utc("2026-03-06 20:00"), H) == utc("2026-03-09 10:00")
    assert OFFICE.add(utc("2026-03-07 12:00"), H) == utc("2026-03-09 10:00")
    assert OFFICE.add(utc("2026-03-09 07:30"), 30 * M) == utc("2026-03-09 09:30")


def test_time_running_out_at_closing_is_the_closing_time() -> None:
    assert OFFICE.add(utc("2026-03-06 17:00"), H) == utc("2026-03-06 18:00")
    # One more second is Monday.
    assert OFFICE.add(utc("2026-03-06 17:00"), H + timedelta(seconds=1)) == utc("2026-03-09 09:00:01")


def test_zero_duration_and_empty_ranges() -> None:
    saturday = utc("2026-03-07 12:00")
    assert OFFICE.add(saturday, timedelta(0)) == saturday
    assert OFFICE.between(saturday, saturday) == timedelta(0)
    assert OFFICE.between(utc("2026-03-09 12:00"), utc("2026-03-09 10:00")) == timedelta(0)
    assert OFFICE.between(utc("2026-03-06 18:00"), utc("2026-03-09 09:00")) == timedelta(0)


def test_is_open_edges() -> None:
    assert OFFICE.is_open(utc("2026-03-09 09:00"))
    assert OFFICE.is_open(utc("2026-03-09 17:59:59"))
    assert not OFFICE.is_open(utc("2026-03-09 18:00"))
    assert not OFFICE.is_open(utc("2026-03-07 12:00"))


def test_long_spans_count_whole_weeks() -> None:
    start = utc("2026-03-02 09:00")  # a Monday
    assert OFFICE.add(start, 45 * H * 10) == utc("2026-05-08 18:00")  # ten weeks of 45 hours
    assert OFFICE.between(start, utc("2026-05-11 09:00")) == 450 * H


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        OFFICE.add(datetime(2026, 3, 9, 9), H)


# --- Holidays and make-up working days (China, 2026).

def test_national_day_is_closed_according_to_the_holidays_package() -> None:
    for day in range(1, 8):
        assert not CN.is_open(at(f"2026-10-0{day} 12:00", "Asia/Shanghai")), day
    assert CN.is_open(at("2026-10-08 12:00", "Asia/Shanghai"))


def test_add_across_national_day() -> None:
    # Wednesday 2026-09-30 17:00 in Shanghai: one hour that day, then closed until Thursday 10-08.
    due = CN.add(at("2026-09-30 17:00", "Asia/Shanghai"), 2 * H)
    assert due == at("2026-10-08 10:00", "Asia/Shanghai")
    assert due == utc("2026-10-08 02:00")
    assert CN.between(at("2026-09-30 09:00", "Asia/Shanghai"), at("2026-10-09 18:00", "Asia/Shanghai")) == 27 * H


def test_make_up_working_days_from_the_package_are_open() -> None:
    # Saturday 2026-10-10 is a working day in China (it pays for 10-07).
    assert CN.add(at("2026-10-09 17:00", "Asia/Shanghai"), 2 * H) == at("2026-10-10 10:00", "Asia/Shanghai")
    assert CN.is_open(at("2026-09-20 10:00", "Asia/Shanghai"))  # a Sunday
    assert not CN.is_open(at("2026-10-11 10:00", "Asia/Shanghai"))  # an ordinary Sunday


def test_explicit_working_days_and_extra_holidays() -> None:
    cal = calendar(
        timezone="Asia/Shanghai", hours=WEEKDAYS, holidays="CN",
        working_days=["2026-10-11", "2026-10-05"], working_day_hours="10:00-16:00",
        extra_holidays=["2026-12-31", "2026-10-10"],
    )
    shanghai = "Asia/Shanghai"
    # An explicit working day wins over a weekend and over a public holiday.
    assert cal.add(at("2026-10-09 17:00", shanghai), 2 * H) == at("2026-10-11 11:00", shanghai)
    assert cal.between(at("2026-10-05 00:00", shanghai), at("2026-10-06 00:00", shanghai)) == 6 * H
    # An explicit holiday wins over the package's make-up day and over a weekday.
    assert not cal.is_open(at("2026-10-10 12:00", shanghai))
    assert cal.add(at("2026-12-30 17:00", shanghai), 2 * H) == at("2027-01-04 10:00", shanghai)


# --- Lunch breaks.

def test_lunch_break_is_not_business_time() -> None:
    cal = calendar(hours={"mon": "09:00-12:00,13:00-18:00", "tue": "09:00-12:00,13:00-18:00"})
    monday = "2026-03-09"
    assert cal.add(utc(f"{monday} 11:00"), 2 * H) == utc(f"{monday} 14:00")
    assert cal.add(utc(f"{monday} 11:00"), H) == utc(f"{monday} 12:00")
    assert cal.add(utc(f"{monday} 12:30"), 30 * M) == utc(f"{monday} 13:30")
    assert cal.between(utc(f"{monday} 11:00"), utc(f"{monday} 14:00")) == 2 * H
    assert not cal.is_open(utc(f"{monday} 12:30"))
    # Eight hours a day: Monday 17:00 + 2h is Tuesday 10:00.
    assert cal.add(utc(f"{monday} 17:00"), 2 * H) == utc("2026-03-10 10:00")


# --- Daylight saving time.

def test_new_york_business_day_is_nine_hours_across_dst_changes() -> None:
    ny = calendar(timezone="America/New_York", hours=EVERY_DAY)
    zone = "America/New_York"
    for day in ("2026-03-08", "2026-11-01"):  # spring forward, fall back (both Sundays)
        next_day = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
        assert ny.between(at(f"{day} 00:00", zone), at(f"{next_day} 00:00", zone)) == 9 * H, day
    # Saturday 17:00 EST + 2h is Sunday 10:00 EDT: 14:00 UTC, not 15:00.
    due = ny.add(at("2026-03-07 17:00", zone), 2 * H)
    assert due == at("2026-03-08 10:00", zone) == utc("2026-03-08 14:00")
    # And back in November: Saturday 17:00 EDT + 2h is Sunday 10:00 EST, 15:00 UTC.
    assert ny.add(at("2026-10-31 17:00", zone), 2 * H) == utc("2026-11-01 15:00")


def test_all_day_hours_follow_the_wall_clock_on_dst_days() -> None:
    ny = calendar(timezone="America/New_York", hours={"sun": "00:00-24:00"})
    zone = "America/New_York"
    assert ny.between(at("2026-03-08 00:00", zone), at("2026-03-09 00:00", zone)) == 23 * H
    assert ny.between(at("2026-11-01 00:00", zone), at("2026-11-02 00:00", zone)) == 25 * H


def test_shanghai_has_no_dst() -> None:
    sh = calendar(timezone="Asia/Shanghai", hours=EVERY_DAY)
    for day in ("2026-01-15", "2026-03-08", "2026-07-01", "2026-11-01"):
        assert sh.add(utc(f"{day} 00:00"), timedelta(seconds=1)) == utc(f"{day} 01:00:01"), day
        assert sh.between(utc(f"{day} 00:00"), utc(f"{day} 12:00")) == 9 * H, day


# --- The 24x7 calendar.

def test_always_is_plain_arithmetic() -> None:
    start = utc("2026-03-07 23:30")
    assert ALWAYS.name == "24x7"
    assert ALWAYS.add(start, 100 * H) == start + 100 * H
    assert ALWAYS.between(start, start + 100 * H) == 100 * H
    assert ALWAYS.subtract(start, 3 * H) == start - 3 * H
    assert ALWAYS.is_open(start)
    shanghai = start.astimezone(ZoneInfo("Asia/Shanghai"))
    assert ALWAYS.add(shanghai, H).tzinfo == UTC


# --- Pauses (the ticket waits on the customer).

def test_pause_in_the_middle_pushes_due_by_the_paused_business_time() -> None:
    start = utc("2026-03-09 09:00")
    assert due_time(start, 4 * H, OFFICE) == utc("2026-03-09 13:00")
    pause = (utc("2026-03-09 10:00"), utc("2026-03-09 11:30"))
    assert due_time(start, 4 * H, OFFICE, [pause]) == utc("2026-03-09 14:30")


def test_pause_over_night_pushes_only_by_its_business_hours() -> None:
    start = utc("2026-03-09 09:00")
    # Monday 17:00 to Tuesday 10:00 is two business hours.
    pause = (utc("2026-03-09 17:00"), utc("2026-03-10 10:00"))
    due = due_time(start, 9 * H, OFFICE, [pause])
    assert due == utc("2026-03-10 11:00")
    assert elapsed(start, due, OFFICE, [pause]) == 9 * H


def test_pause_after_due_changes_nothing_and_pause_before_start_is_clipped() -> None:
    start = utc("2026-03-09 09:00")
    later = (utc("2026-03-09 15:00"), utc("2026-03-09 16:00"))
    assert due_time(start, 4 * H, OFFICE, [later]) == utc("2026-03-09 13:00")
    earlier = (utc("2026-03-06 10:00"), utc("2026-03-09 10:00"))
    assert due_time(start, 4 * H, OFFICE, [earlier]) == utc("2026-03-09 14:00")


def test_overlapping_pauses_count_once() -> None:
    start = utc("2026-03-09 09:00")
    pauses = [(utc("2026-03-09 11:00"), utc("2026-03-09 12:00")), (utc("2026-03-09 10:00"), utc("2026-03-09 11:30"))]
    assert due_time(start, 4 * H, OFFICE, pauses) == utc("2026-03-09 15:00")


def test_open_pause_has_no_due_time() -> None:
    start = utc("2026-03-09 09:00")
    now = utc("2026-03-09 12:00")
    closed = (utc("2026-03-09 09:30"), utc("2026-03-09 10:00"))
    open_pause = (utc("2026-03-09 11:00"), None)
    assert due_time(start, 4 * H, OFFICE, [closed, open_pause], now=now) is None
    # Once the customer answers, the clock runs again from there.
    reopened = (utc("2026-03-09 11:00"), utc("2026-03-10 09:00"))
    assert due_time(start, 4 * H, OFFICE, [closed, reopened]) == utc("2026-03-10 11:30")


def test_promise_broken_before_an_open_pause_stays_broken() -> None:
    start = utc("2026-03-09 09:00")
    open_pause = (utc("2026-03-09 15:00"), None)
    assert due_time(start, 4 * H, OFFICE, [open_pause]) == utc("2026-03-09 13:00")


def test_open_pause_after_now_is_refused() -> None:
    with pytest.raises(ValueError, match="after now"):
        due_time(utc("2026-03-09 09:00"), H, OFFICE, [(utc("2026-03-09 15:00"), None)], now=utc("2026-03-09 12:00"))


def test_elapsed_with_overlapping_pauses() -> None:
    start, end = utc("2026-03-09 09:00"), utc("2026-03-09 18:00")
    pauses = [
        (utc("2026-03-09 10:00"), utc("2026-03-09 12:00")),
        (utc("2026-03-09 11:00"), utc("2026-03-09 13:00")),
        (utc("2026-03-06 12:00"), utc("2026-03-09 09:30")),  # starts before the range
        (utc("2026-03-09 16:00"), None),  # still paused at the end
    ]
    assert elapsed(start, end, OFFICE, pauses) == 9 * H - 30 * M - 3 * H - 2 * H
    assert elapsed(start, end, OFFICE) == 9 * H
    assert elapsed(end, start, OFFICE, pauses) == timedelta(0)


# --- Warnings.

def test_warn_time_counts_back_in_business_time() -> None:
    policy = SlaPolicy("p", 4 * H, None, None, 15 * M, OFFICE, ())
    assert warn_time(utc("2026-03-09 09:30"), policy) == utc("2026-03-09 09:15")
    # Due at opening: warn at the last open quarter hour before it.
    assert warn_time(utc("2026-03-09 09:00"), policy) == utc("2026-03-06 17:45")
    lunch = calendar(hours={"mon": "09:00-12:00,13:00-18:00"})
    assert warn_time(utc("2026-03-09 13:10"), SlaPolicy("p", H, None, None, 15 * M, lunch)) == utc("2026-03-09 11:55")
    assert OFFICE.add(utc("2026-03-09 10:00"), -H) == utc("2026-03-09 09:00")


# --- Human durations.

@pytest.mark.parametrize("duration, en, zh", [
    (4 * H, "4 hours", "4 小时"),
    (30 * M, "30 minutes", "30 分钟"),
    (timedelta(days=2), "2 days", "2 天"),
    (H + 30 * M, "1 hour 30 minutes", "1 小时 30 分钟"),
    (M, "1 minute", "1 分钟"),
    (timedelta(seconds=90), "1 minute 30 seconds", "1 分钟 30 秒"),
    (timedelta(days=1, hours=2), "1 day 2 hours", "1 天 2 小时"),
    (timedelta(0), "0 minutes", "0 分钟"),
    (-2 * H, "-2 hours", "-2 小时"),
])
def test_human(duration: timedelta, en: str, zh: str) -> None:
    assert human(duration) == en
    assert human(duration, "zh") == zh


# --- Configuration.

def test_parse_the_documented_example() -> None:
    calendars = parse_calendars([{
        "name": "cn", "timezone": "Asia/Shanghai", "hours": WEEKDAYS, "holidays": "CN",
        "extra_holidays": ["2026-12-31"], "working_days": ["2026-10-11"], "working_day_hours": "09:00-18:00",
    }], "inboxd.toml")
    policies = parse_sla_policies([
        {"name": "standard", "first_response": "4h", "next_response": "8h", "resolution": "2d",
         "warn_before": "30m", "calendar": "cn", "priority": ["normal", "low"]},
        {"name": "urgent", "first_response": "1h30m", "priority": ["urgent"]},
    ], calendars, "inboxd.toml")
    standard, urgent = policies["standard"], policies["urgent"]
    assert standard == SlaPolicy(
        "standard", 4 * H, 8 * H, timedelta(days=2), 30 * M, calendars["cn"], ("normal", "low"),
    )
    assert standard.calendar.tz == ZoneInfo("Asia/Shanghai")
    assert urgent.calendar is ALWAYS and urgent.warn_before == 15 * M and urgent.resolution is None
    assert urgent.first_response == 90 * M
    assert policy_for_priority(policies, "low") is standard
    assert policy_for_priority(policies, "high") is None
    assert parse_calendars(None, "inboxd.toml") == {} and parse_sla_policies(None, {}, "inboxd.toml") == {}


def test_calendar_defaults_to_an_office_week_in_utc() -> None:
    cal = calendar()
    assert cal.tz == ZoneInfo("UTC")
    assert cal.add(utc("2026-03-06 17:00"), 2 * H) == utc("2026-03-09 10:00")


@pytest.mark.parametrize("entry, message", [
    ({"hour": {}}, 'calendars[0].hour: unknown key "hour"; did you mean "hours"?'),
    ({"hours": {"monday": "09:00-18:00"}}, 'calendars[0].hours.monday: unknown key "monday"; did you mean "mon"?'),
    ({"hours": {"mon": "9-18"}},
     'calendars[0].hours.mon: expected time ranges such as "09:00-18:00" or "09:00-12:00,13:00-18:00", got "9-18"'),
    ({"hours": {"mon": "18:00-09:00"}}, "calendars[0].hours.mon: 18:00-09:00 ends before it starts"),
    ({"hours": {"mon": "09:00-25:00"}}, "calendars[0].hours.mon: 09:00-25:00 is not a time range within 00:00-24:00"),
    ({"hours": {"mon": "13:00-18:00,09:00-14:00"}},
     "calendars[0].hours.mon: 09:00-14:00 overlaps or comes before the range before it"),
    ({"hours": {}}, "calendars[0].hours: the calendar is never open; give the hours of at least one day"),
    ({"timezone": "Mars/Olympus"},
     'calendars[0].timezone: unknown time zone "Mars/Olympus"; expected an IANA name such as "Asia/Shanghai"'),
    ({"holidays": "XX"}, 'calendars[0].holidays: unknown holiday country "XX"; expected a code such as "CN" or "US"'),
    ({"holidays": "US", "holidays_subdiv": "ZZ"}, 'calendars[0].holidays_subdiv: unknown subdivision "ZZ" of "US"'),
    ({"holidays_subdiv": "NY"}, "calendars[0].holidays_subdiv: needs holidays (a country code) as well"),
    ({"extra_holidays": ["2026-13-01"]},
     'calendars[0].extra_holidays[0]: expected a date such as "2026-12-31", got "2026-13-01"'),
    ({"working_days": ["2026-10-11", 20261011]},
     'calendars[0].working_days[1]: expected a date such as "2026-12-31", got 20261011'),
    ({"working_day_hours": ""}, "calendars[0].working_day_hours: must not be empty"),
    ({"name": "24x7"}, 'calendars[0].name: "24x7" is reserved for the built-in always-open calendar'),
    ({"name": "Office Hours"}, 'calendars[0].name: must match [a-z0-9_-]+ (lower case, no spaces), got "Office Hours"'),
])
def test_calendar_errors(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_calendars([{"name": "t", **entry}], "inboxd.toml")
    assert str(caught.value) == f"inboxd.toml: {message}"


def test_duplicate_calendar_and_not_a_list() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_calendars([{"name": "a"}, {"name": "a"}], "inboxd.toml")
    assert str(caught.value) == 'inboxd.toml: calendars[1].name: duplicate calendar name "a"'
    with pytest.raises(ConfigError) as caught:
        parse_calendars({"name": "a"}, "inboxd.toml")  # type: ignore[arg-type]
    assert str(caught.value) == "inboxd.toml: calendars: expected an array of tables ([[calendars]]), got a table"


@pytest.mark.parametrize("entries, message", [
    ([{"name": "standard", "first_response": "4 hours"}],
     'sla[0].first_response: expected a duration such as "90s", "15m", "4h" or "2d", got "4 hours"'),
    ([{"name": "standard", "first_response": "0s"}], 'sla[0].first_response: must be longer than zero, got "0s"'),
    ([{"name": "standard"}], "sla[0]: give at least one of first_response, next_response or resolution"),
    ([{"name": "standard", "first_response": "4h", "calendar": "cm"}],
     'sla[0].calendar: unknown calendar "cm"; the calendars are "cn", "24x7"'),
    ([{"name": "standard", "first_response": "4h", "calender": "cn"}],
     'sla[0].calender: unknown key "calender"; did you mean "calendar"?'),
    ([{"name": "standard", "first_response": "4h", "priority": ["normal", "critical"]}],
     'sla[0].priority[1]: must be one of "low", "normal", "high", "urgent", got "critical"'),
    ([{"name": "a", "first_response": "4h", "priority": ["normal"]},
      {"name": "b", "first_response": "1h", "priority": ["high", "normal"]}],
     'sla[1].priority[1]: "normal" already has a default policy, "a" (sla[0])'),
    ([{"name": "a", "resolution": "2d"}, {"name": "a", "resolution": "1d"}], 'sla[1].name: duplicate sla name "a"'),
    ([{"name": "a", "resolution": "2d", "warn_before": "soon"}],
     'sla[0].warn_before: expected a duration such as "90s", "15m", "4h" or "2d", got "soon"'),
])
def test_sla_errors(entries: list, message: str) -> None:
    calendars = parse_calendars([{"name": "cn", "timezone": "Asia/Shanghai"}], "inboxd.toml")
    with pytest.raises(ConfigError) as caught:
        parse_sla_policies(entries, calendars, "inboxd.toml")
    assert str(caught.value) == f"inboxd.toml: {message}"


def test_sla_may_name_the_built_in_calendar() -> None:
    policies = parse_sla_policies([{"name": "p", "first_response": "1h", "calendar": "24x7"}], {}, "inboxd.toml")
    assert policies["p"].calendar is ALWAYS


# --- Property: between() undoes add(), and subtract() undoes it too.

@pytest.mark.parametrize("cal", [
    OFFICE, CN, ALWAYS,
    calendar(timezone="America/New_York", hours={"mon": "09:00-12:00,13:00-18:00", "sat": "00:00-24:00",
                                                  "sun": "08:00-10:00"}, holidays="US"),
], ids=["office", "cn", "24x7", "new-york"])
def test_between_undoes_add_for_random_spans(cal: Calendar) -> None:
    rng = random.Random(20260308)
    base = utc("2026-01-01 00:00")
    for _ in range(2000):
        start = base + timedelta(seconds=rng.randrange(365 * 86400), microseconds=rng.randrange(10**6))
        duration = timedelta(seconds=rng.randrange(1, 30 * 86400))
        due = cal.add(start, duration)
        assert due >= start
        assert cal.between(start, due) == duration, (start, duration, due)
        if due > start and not cal.is_open(due - timedelta(microseconds=1)):
            pytest.fail(f"{due} is not the first instant the time runs out ({start} + {duration})")
        back = cal.subtract(due, duration)
        assert back >= start and cal.between(back, due) == duration, (start, duration, back)


def test_a_calendar_that_never_opens_again_raises_instead_of_looping() -> None:
    once = calendar(hours={}, working_days=["2026-10-11"])
    assert once.add(utc("2026-10-10 00:00"), H) == utc("2026-10-11 10:00")
    with pytest.raises(ValueError, match="no open hours within 3660 days"):
        once.add(utc("2026-10-12 00:00"), H)
