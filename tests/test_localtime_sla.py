"""SLA targets as people mean them: "2 business days" versus "48h"/"2d" (48 business hours), across weekends and holidays.

Pure (inboxd.desk.sla); every expected instant was worked out by hand on the
calendar named in the test.  China's 2026 National Day holiday runs Thursday
1 October to Wednesday 7 October, with Saturday 10 October a make-up
working day (调休), as the `holidays` package publishes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from inboxd.config import ConfigError
from inboxd.desk.sla import BusinessDays, due_time, human, parse_calendars, parse_sla_policies

CN = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")


def calendar(**keys):
    return parse_calendars([{"name": "t", **keys}], "inboxd.toml")["t"]


WEEK = calendar(timezone="Asia/Shanghai", holidays="CN")       # Mon-Fri 09:00-18:00, China's holidays


def cn(*args: int) -> datetime:
    return datetime(*args, tzinfo=CN)


@pytest.mark.parametrize("start, days, due", [
    (cn(2026, 11, 30, 10, 0), 2, cn(2026, 12, 2, 10, 0)),      # Monday -> Wednesday, same time
    (cn(2026, 12, 4, 17, 0), 2, cn(2026, 12, 8, 17, 0)),       # Friday -> Tuesday over the weekend
    (cn(2026, 12, 5, 12, 0), 2, cn(2026, 12, 9, 9, 0)),        # Saturday: the clock starts Monday 09:00
    (cn(2026, 11, 30, 20, 0), 2, cn(2026, 12, 3, 9, 0)),       # Monday evening: starts Tuesday 09:00
    (cn(2026, 11, 30, 18, 0), 1, cn(2026, 12, 2, 9, 0)),       # at closing time: starts Tuesday 09:00
    (cn(2026, 9, 30, 10, 0), 2, cn(2026, 10, 9, 10, 0)),       # over National Day: Thu 8 and Fri 9 Oct
    (cn(2026, 9, 30, 10, 0), 3, cn(2026, 10, 10, 10, 0)),      # the make-up Saturday counts
])
def test_business_days_on_a_chinese_calendar(start, days, due):
    assert WEEK.add(start, BusinessDays(days)) == due
    assert WEEK.add_days(start, days) == due


def test_48_business_hours_is_not_two_business_days():
    start = cn(2026, 11, 30, 10, 0)
    # Nine open hours a day: 8 on Monday, 9 each Tuesday-Friday (44), then 4 on the next Monday.
    assert WEEK.add(start, timedelta(hours=48)) == cn(2026, 12, 7, 13, 0)
    assert WEEK.add(start, BusinessDays(2)) == cn(2026, 12, 2, 10, 0)


def test_hours_that_differ_from_day_to_day():
    lunch = calendar(timezone="Asia/Shanghai", hours={d: "09:00-12:00,13:00-18:00"
                                                      for d in ("mon", "tue", "wed", "thu", "fri")})
    assert lunch.add(cn(2026, 11, 30, 12, 30), BusinessDays(2)) == cn(2026, 12, 2, 13, 0)   # lunch: from 13:00
    assert lunch.add(cn(2026, 11, 30, 11, 0), BusinessDays(2)) == cn(2026, 12, 2, 11, 0)
    short_friday = calendar(timezone="Asia/Shanghai", hours={"mon": "09:00-18:00", "tue": "09:00-18:00",
                                                             "wed": "09:00-18:00", "thu": "09:00-18:00",
                                                             "fri": "09:00-12:00"})
    # Wednesday 17:00 + 2 days is Friday, which closes at noon: due at its closing.
    assert short_friday.add(cn(2026, 12, 2, 17, 0), BusinessDays(2)) == cn(2026, 12, 4, 12, 0)


def test_business_days_across_the_end_of_dst():
    ny = calendar(timezone="America/New_York", hours={d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")})
    start = datetime(2026, 10, 30, 10, 0, tzinfo=NY)               # Friday, EDT (14:00 UTC)
    due = ny.add(start, BusinessDays(1))
    assert due == datetime(2026, 11, 2, 10, 0, tzinfo=NY)          # Monday 10:00 EST
    assert due.utcoffset() == timedelta(0) and due.hour == 15        # 15:00 UTC, not 14:00


def test_a_pause_holds_a_business_days_clock_for_its_business_time():
    start = cn(2026, 11, 30, 10, 0)
    pause = (cn(2026, 11, 30, 11, 0), cn(2026, 11, 30, 12, 0))
    assert due_time(start, BusinessDays(2), WEEK) == cn(2026, 12, 2, 10, 0)
    assert due_time(start, BusinessDays(2), WEEK, [pause]) == cn(2026, 12, 2, 11, 0)


def policy(**targets):
    calendars = {"t": WEEK}
    return parse_sla_policies([{"name": "p", "calendar": "t", **targets}], calendars, "inboxd.toml")["p"]


def test_parsing_the_choices():
    p = policy(first_response="1 business day", resolution="2 Business Days", next_response="48h")
    assert p.first_response == BusinessDays(1) and p.resolution == BusinessDays(2)
    assert p.next_response == timedelta(hours=48) == policy(first_response="2d").first_response
    assert policy(first_response="4h", tier2_response="1 working day").tier_limit(2) == BusinessDays(1)
    with pytest.raises(ConfigError, match=r"^inboxd.toml: sla\[0\].first_response: must be at least 1 business day"):
        policy(first_response="0 business days")
    with pytest.raises(ConfigError, match=r"^inboxd.toml: sla\[0\].resolution: expected a duration"):
        policy(resolution="2 business weeks")


def test_human_says_which():
    assert human(BusinessDays(2)) == "2 business days" and human(BusinessDays(1)) == "1 business day"
    assert human(BusinessDays(2), "zh") == "2 个工作日" and human(BusinessDays(2), "zh-Hant") == "2 個工作天"
    assert human(timedelta(hours=48)) == "2 days"
