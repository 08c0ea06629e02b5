"""The calendar's timeline (inboxd.desk.sla._Timeline) gives what walking the dates gives.

`Calendar.add` and `Calendar.between` answer from a table of open intervals
with running totals; `_add_walk` and `_between_walk` are the date-by-date
walk they replaced.  Random instants over calendars with lunch breaks,
holidays, make-up days and a DST zone must agree to the microsecond, inside
the table's span, across its edges and far outside it.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from inboxd.desk.sla import Calendar, parse_calendars

UTC = timezone.utc

CALENDARS = {
    "cn": {"timezone": "Asia/Shanghai", "holidays": "CN", "hours": {d: "09:00-12:00,13:00-18:00" for d in
                                                                     ("mon", "tue", "wed", "thu", "fri")}},
    "berlin": {"timezone": "Europe/Berlin", "holidays": "DE",
               "hours": {d: "08:00-17:30" for d in ("mon", "tue", "wed", "thu", "fri", "sat")}},
    "night": {"timezone": "America/New_York", "hours": {"mon": "00:00-24:00", "tue": "22:00-24:00",
                                                         "sun": "00:00-02:30"},
              "extra_holidays": ["2026-03-09"], "working_days": ["2026-03-14"]},
}


def calendar(name: str) -> Calendar:
    return parse_calendars([{"name": name, **CALENDARS[name]}], "inboxd.toml")[name]


def instants(rng: random.Random, count: int, spread_days: int) -> list[datetime]:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    return [base + timedelta(seconds=rng.randrange(-spread_days * 86400, spread_days * 86400),
                             microseconds=rng.choice((0, rng.randrange(1_000_000)))) for _ in range(count)]


@pytest.mark.parametrize("name", sorted(CALENDARS))
def test_add_matches_the_walk(name):
    cal, rng = calendar(name), random.Random(name)
    durations = [timedelta(minutes=1), timedelta(hours=4), timedelta(hours=8), timedelta(days=3),
                 timedelta(hours=9), timedelta(days=40), timedelta(seconds=1, microseconds=7)]
    for start in instants(rng, 600, 1500):
        for duration in rng.sample(durations, 3):
            assert cal.add(start, duration) == cal._add_walk(start, duration), (start, duration)


@pytest.mark.parametrize("name", sorted(CALENDARS))
def test_between_matches_the_walk(name):
    cal, rng = calendar(name), random.Random(name + "between")
    points = instants(rng, 1200, 1500)
    for start, end in zip(points[::2], points[1::2]):
        start, end = min(start, end), max(start, end)
        if start < end:
            assert cal.between(start, end) == cal._between_walk(start, end), (start, end)


def test_closing_time_and_boundaries_agree():
    """Time running out exactly at a closing time, and instants exactly on openings and closings."""
    cal = calendar("cn")
    day = datetime(2026, 3, 6, 1, 0, tzinfo=UTC)  # Friday 09:00 in Shanghai
    for start in (day, day + timedelta(hours=3), day + timedelta(hours=4), day + timedelta(hours=9),
                  day - timedelta(microseconds=1)):
        for duration in (timedelta(hours=1), timedelta(hours=3), timedelta(hours=8), timedelta(hours=5)):
            assert cal.add(start, duration) == cal._add_walk(start, duration)
            end = cal.add(start, duration)
            assert cal.between(start, end) == cal._between_walk(start, end)
    assert cal.add(day, timedelta(hours=8)) == datetime(2026, 3, 6, 10, 0, tzinfo=UTC)  # Friday 18:00 itself
