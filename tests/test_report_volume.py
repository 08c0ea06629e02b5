"""The report's volume by local hour and weekday (inboxd.reports.metrics._volume) finds each instant's
offset once per UTC hour; it must give what converting every instant to the time zone gives, also
around clock changes, in zones whose offsets are not whole hours and whose DST step is half an hour.
And the report, which pauses Python's cycle collector while it computes, leaves it as it found it."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from inboxd.reports.metrics import WEEKDAYS, _Ticket, _volume
from inboxd.reports.tickets import micros


def tickets_at(instants):
    return [_Ticket(pk, "support", [], None, micros(at), None, None) for pk, at in enumerate(instants, 1)]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Europe/Berlin", "Pacific/Chatham",
                                  "Australia/Lord_Howe", "Asia/Kathmandu", "America/St_Johns"])
def test_the_local_hours_and_weekdays_are_those_of_each_instant(zone):
    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # A year of random instants, and every minute around each clock change of the year.
    instants = [start + timedelta(seconds=rng.randrange(366 * 86400), microseconds=rng.randrange(10**6))
                for _ in range(3000)]
    hour = start
    while hour < start + timedelta(days=366):
        if (hour.astimezone(tz).utcoffset() != (hour + timedelta(hours=1)).astimezone(tz).utcoffset()):
            instants += [hour - timedelta(hours=1) + timedelta(minutes=m) for m in range(0, 180)]
        hour += timedelta(hours=1)
    volume = _volume(tickets_at(instants), tz)
    local = [at.astimezone(tz) for at in instants]
    hours = Counter(at.hour for at in local)
    assert volume["by_hour"] == [hours[h] for h in range(24)]
    days = Counter(WEEKDAYS[at.weekday()] for at in local)
    assert volume["by_weekday"] == {day: days[day] for day in WEEKDAYS}
    assert sum(volume["by_hour"]) == len(instants)


def test_the_report_leaves_the_cycle_collector_as_it_found_it():
    import gc

    from inboxd.reports.metrics import _without_cycle_collection

    assert gc.isenabled()
    with _without_cycle_collection():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with _without_cycle_collection():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
