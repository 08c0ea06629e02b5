"""Times as people read them (inboxd.localtime) and the list's DUE column: zones, midnight, DST, zh/en forms.

Pure: fixed instants, no clock, no server.  Expected values were worked out
by hand from the zones' rules (New York leaves DST at 02:00 EDT on
1 November 2026; Berlin enters it at 02:00 CET on 29 March 2026).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from inboxd.desk.views import format_table
from inboxd.localtime import format_local, utc_offset, weekday_name, zone_label

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("at, zone, language, expected", [
    # Across midnight: still 30 November in UTC, already 1 December in Beijing.
    (utc(2026, 11, 30, 16, 30), SHANGHAI, "zh", "12月1日 00:30"),
    (utc(2026, 11, 30, 16, 30), SHANGHAI, "en", "Tue 1 Dec, 00:30"),
    (utc(2026, 11, 30, 16, 30), UTC, "en", "Mon 30 Nov, 16:30"),
    # The other way: 1 December 03:00 UTC is still 30 November in New York.
    (utc(2026, 12, 1, 3, 0), NY, "en", "Mon 30 Nov, 22:00"),
    (utc(2026, 12, 1, 3, 0), NY, "zh", "11月30日 22:00"),
    # New York, 1 November 2026: 01:30 happens twice, first in EDT then in EST.
    (utc(2026, 11, 1, 5, 30), NY, "en", "Sun 1 Nov, 01:30"),
    (utc(2026, 11, 1, 6, 30), NY, "en", "Sun 1 Nov, 01:30"),
    (utc(2026, 11, 1, 7, 30), NY, "en", "Sun 1 Nov, 02:30"),
    # Berlin, 29 March 2026: 02:00-03:00 does not exist.
    (utc(2026, 3, 29, 0, 59), BERLIN, "zh", "3月29日 01:59"),
    (utc(2026, 3, 29, 1, 0), BERLIN, "zh", "3月29日 03:00"),
    (utc(2026, 3, 29, 1, 0), BERLIN, "en", "Sun 29 Mar, 03:00"),
])
def test_format_local(at, zone, language, expected):
    assert format_local(at, zone, language) == expected


def test_the_zone_marker_tells_the_two_0130s_apart():
    assert format_local(utc(2026, 11, 1, 5, 30), NY, "en", marker=True) == "Sun 1 Nov, 01:30 (EDT)"
    assert format_local(utc(2026, 11, 1, 6, 30), NY, "en", marker=True) == "Sun 1 Nov, 01:30 (EST)"
    assert format_local(utc(2026, 3, 29, 0, 59), BERLIN, "en", marker=True) == "Sun 29 Mar, 01:59 (CET)"
    assert format_local(utc(2026, 3, 29, 1, 0), BERLIN, "en", marker=True) == "Sun 29 Mar, 03:00 (CEST)"


def test_year_weekday_and_none():
    at = utc(2026, 11, 30, 16, 30)
    assert format_local(at, SHANGHAI, "zh", year=True) == "2026年12月1日 00:30"
    assert format_local(at, SHANGHAI, "en", year=True) == "Tue 1 Dec 2026, 00:30"
    assert format_local(at, SHANGHAI, "en", weekday=False) == "1 Dec, 00:30"
    assert format_local(None, SHANGHAI, "zh") == ""
    assert weekday_name(at, SHANGHAI, "zh") == "周二" and weekday_name(at, SHANGHAI, "zh-Hant") == "週二"
    assert weekday_name(at, UTC, "en") == "Mon"


@pytest.mark.parametrize("zone, language, expected", [
    ("Asia/Shanghai", "zh", "北京时间"),
    ("Asia/Shanghai", "zh-Hant", "北京時間"),
    ("Asia/Shanghai", "en", "China time"),          # not "CST", which is also US Central time
    ("Asia/Taipei", "zh-Hant", "台北時間"),
    ("Asia/Hong_Kong", "en", "Hong Kong time"),
    ("America/New_York", "en", "EST"),
    ("America/New_York", "zh", "纽约时间"),
    ("America/Chicago", "en", "UTC-6"),             # "CST" again
    ("Asia/Kolkata", "en", "UTC+5:30"),             # "IST": India, Ireland or Israel
    ("America/Sao_Paulo", "zh", "UTC-3"),           # tzdata has no letters for it
    ("Europe/London", "en", "GMT"),
    ("UTC", "zh", "UTC"),
])
def test_zone_label(zone, language, expected):
    assert zone_label(utc(2026, 12, 1, 12, 0), ZoneInfo(zone), language) == expected


def test_utc_offset():
    assert utc_offset(utc(2026, 1, 1).astimezone(ZoneInfo("Asia/Kathmandu"))) == "UTC+5:45"
    assert utc_offset(utc(2026, 1, 1)) == "UTC+0"


ROWS = [
    {"id": "T-1", "status": "open", "priority": "normal", "created_at": "2026-11-30T14:00:00Z", "assignee": "wang",
     "first_response_at": None, "first_response_due": "2026-11-30T18:00:00Z", "resolution_due": None,
     "mailboxes": ["support"], "requester": "ann@example.org", "subject": "Login fails"},
    {"id": "T-2", "status": "open", "priority": "high", "created_at": "2026-11-30T14:00:00Z", "assignee": None,
     "first_response_at": "2026-11-30T15:00:00Z", "first_response_due": "2026-11-30T18:00:00Z",
     "resolution_due": "2026-12-02T01:00:00Z", "mailboxes": ["support"], "requester": "ben@example.org",
     "subject": "Refund"},
]


def test_list_due_column_in_the_readers_zone():
    now = utc(2026, 11, 30, 15, 0)
    zh = format_table(ROWS, now, SHANGHAI, "zh").splitlines()
    assert "DUE (北京时间)" in zh[0]
    # T-1's first response; T-2 answered already, so its resolution.
    assert "12月1日 02:00" in zh[1] and "12月2日 09:00" in zh[2]
    en = format_table(ROWS, now, NY, "en").splitlines()
    assert "DUE (EST)" in en[0] and "Mon 30 Nov, 13:00" in en[1] and "Tue 1 Dec, 20:00" in en[2]
    assert "1h" in en[1]   # AGE does not depend on the zone
