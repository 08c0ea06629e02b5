"""Business-time and SLA arithmetic: due times from a policy, a calendar and instants passed in.

Pure: no database, no network, no clock.  Every instant is an aware datetime
and every result is an aware datetime in UTC.  The ``[[calendars]]`` and
``[[sla]]`` sections of inboxd.toml are turned into ``Calendar`` and
``SlaPolicy`` objects here, with the same one-line errors as ``inboxd.config``.

Durations are counted in business time: "4h" on a 09:00-18:00 calendar means
four open hours, and "2d" means 48 open hours (not two business days: on a
nine-hour calendar that is five and a third working days).  "48h" says the
same thing plainly.  "2 business days" (`BusinessDays`) is the other choice:
due at the same business time two working days later, calendar-aware
(Monday 10:00 -> Wednesday 10:00; Friday 17:00 -> Tuesday 17:00; holidays
and closed days skipped).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


from inboxd.config import ConfigError, Table, show
from inboxd.vocabulary import PRIORITIES

UTC = timezone.utc
ZERO = timedelta(0)
ONE_DAY = timedelta(days=1)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CALENDAR_KEYS = (
    "name", "timezone", "hours", "holidays", "holidays_subdiv", "extra_holidays",
    "working_days", "working_day_hours",
)
SLA_KEYS = ("name", "first_response", "next_response", "resolution", "warn_before", "calendar", "priority",
            "tier2_response", "tier3_response")
# The tiers that may have their own response limit after an escalation ([[sla]] tierN_response).
RESPONSE_TIERS = (2, 3)
NAME = re.compile(r"[a-z0-9_-]+")
RANGE = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
RANGES_HINT = 'expected time ranges such as "09:00-18:00" or "09:00-12:00,13:00-18:00"'
DEFAULT_DAY = "09:00-18:00"
DEFAULT_WARN_BEFORE = "15m"
# A calendar that finds no open minute in this many days is treated as broken,
# so that a mistake in the config cannot turn add() into an endless loop.
MAX_CLOSED_DAYS = 3660
# Per-calendar cache of open intervals by local date: a scheduler pass touches
# a few weeks around "now", so a few years of dates is plenty.
DAY_CACHE_SIZE = 4096

# "2 business days", "1 working day": an SLA target in whole working days.
BUSINESS_DAYS = re.compile(r"\s*(\d+)\s+(?:business|working)\s+days?\s*", re.IGNORECASE)

# Minutes since local midnight; (540, 1080) is 09:00-18:00 and 1440 is 24:00.
Ranges = tuple[tuple[int, int], ...]
Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class BusinessDays:
    """An SLA target of whole working days: due at the same business time that many working days later.

    Counted from the first open instant at or after the start (mail on a
    Saturday starts the clock on Monday morning), see ``Calendar.add_days``.
    """

    days: int


# What an SLA target may be: business time, or whole working days.
Target = timedelta | BusinessDays


@dataclass(frozen=True)
class Calendar:
    """When a team is at work: weekly hours in a time zone, minus holidays, plus make-up days.

    Which hours a local date gets, first match wins: a date in ``working_days``
    gets ``working_day_hours``; a date in ``extra_holidays`` is closed; a
    make-up working day published by the ``holidays`` package (China's 调休,
    e.g. Saturday 2026-10-10) gets ``working_day_hours``; a public holiday is
    closed; any other date gets the hours of its weekday.
    """

    name: str
    tz: ZoneInfo
    # Seven entries, Monday first; an empty entry is a closed day.
    hours: tuple[Ranges, ...]
    holiday_country: str | None = None
    holiday_subdiv: str | None = None
    extra_holidays: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()
    working_day_hours: Ranges = ((540, 1080),)

    def __post_init__(self) -> None:
        if len(self.hours) != 7:
            raise ValueError("Calendar.hours needs seven entries, Monday first")
        public = None
        if self.holiday_country:
            # Imported only for a calendar with public holidays: the package's tables cost every start 0.05 s.
            import holidays as holiday_tables

            public = holiday_tables.country_holidays(self.holiday_country, subdiv=self.holiday_subdiv)
        # Not dataclass fields: neither is part of equality, hashing or repr.
        object.__setattr__(self, "_public", public)
        object.__setattr__(self, "_day", lru_cache(maxsize=DAY_CACHE_SIZE)(self._open_intervals))
        always = (
            public is None and not self.extra_holidays and all(h == ((0, 1440),) for h in self.hours)
        )
        object.__setattr__(self, "_always", always)
        object.__setattr__(self, "_timeline", None)

    # --- Public arithmetic.

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` falls inside open hours (an interval's start is open, its end is not)."""
        at = _utc(at)
        return any(a <= at < b for a, b in self._day(self._local_date(at)))

    def add(self, start: datetime, duration: Target) -> datetime:
        """The instant at which ``duration`` of business time after ``start`` is used up.

        A zero duration returns ``start`` unchanged, even outside open hours.
        When the time runs out exactly at a closing time, that closing time is
        returned (Friday 17:00 + 1h = Friday 18:00, not Monday 09:00).  A
        negative duration counts backwards, see ``subtract``.  Whole working
        days (``BusinessDays``) are counted by ``add_days``.
        """
        if isinstance(duration, BusinessDays):
            return self.add_days(start, duration.days)
        start = _utc(start)
        if duration < ZERO:
            return self.subtract(start, -duration)
        if duration == ZERO or self._always:
            return start + duration
        found = self._line(start).add(start, duration)
        return found if found is not None else self._add_walk(start, duration)

    def _add_walk(self, start: datetime, duration: timedelta) -> datetime:
        """`add` of a positive duration by walking the dates (outside the timeline's span)."""
        remaining = duration
        for day in self._days_from(self._local_date(start), +1, start):
            for a, b in self._day(day):
                if b <= start:
                    continue
                begin = a if a > start else start
                available = b - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
        raise AssertionError("unreachable")  # _days_from raises when the calendar never opens

    def add_days(self, start: datetime, days: int) -> datetime:
        """The same business time ``days`` working days after ``start``.

        The clock starts at the first open instant at or after ``start``.  A
        working day is a local date with open hours (holidays and closed
        weekdays are skipped, make-up days count).  When that date is not open
        at the start's time of day (shorter hours, a lunch break), the due time
        is the last open instant before it that day, or the day's opening when
        it opens later.
        """
        begin = self._next_open(_utc(start))
        local = begin.astimezone(self.tz)
        clock = timedelta(hours=local.hour, minutes=local.minute, seconds=local.second)
        counted = 0
        for day in self._days_from(local.date(), +1, begin):
            if day == local.date() or not self._day(day):
                continue
            counted += 1
            if counted < days:
                continue
            intervals = self._day(day)
            midnight = datetime(day.year, day.month, day.day)
            wanted = (midnight + clock).replace(tzinfo=self.tz).astimezone(UTC)
            # The last open instant at or before the wanted time, else the day's opening.
            best = intervals[0][0]
            for a, b in intervals:
                if a <= wanted:
                    best = min(wanted, b)
            return best
        raise AssertionError("unreachable")

    def _next_open(self, at: datetime) -> datetime:
        """``at`` if the calendar is open then, else the next opening."""
        if self._always:
            return at
        for day in self._days_from(self._local_date(at), +1, at):
            for a, b in self._day(day):
                if b > at:
                    return a if a > at else at
        raise AssertionError("unreachable")

    def subtract(self, end: datetime, duration: timedelta) -> datetime:
        """The latest instant ``s`` with ``between(s, end) == duration``.

        Mirror of ``add``: one business hour before Monday 10:00 on a 09:00
        calendar is Monday 09:00, not the previous Friday 18:00.
        """
        end = _utc(end)
        if duration < ZERO:
            return self.add(end, -duration)
        if duration == ZERO or self._always:
            return end - duration
        remaining = duration
        for day in self._days_from(self._local_date(end), -1, end):
            for a, b in reversed(self._day(day)):
                if a >= end:
                    continue
                finish = b if b < end else end
                available = finish - a
                if remaining <= available:
                    return finish - remaining
                remaining -= available
        raise AssertionError("unreachable")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time inside [start, end); zero when ``end <= start``."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            return ZERO
        if self._always:
            return end - start
        found = self._line(start).between(start, end)
        return found if found is not None else self._between_walk(start, end)

    def _between_walk(self, start: datetime, end: datetime) -> timedelta:
        """`between` for start < end by walking the dates (outside the timeline's span)."""
        total = ZERO
        day, last = self._local_date(start), self._local_date(end)
        while day <= last:
            for a, b in self._day(day):
                low = a if a > start else start
                high = b if b < end else end
                if high > low:
                    total += high - low
            day += ONE_DAY
        return total

    # --- The per-date table everything above is built on.

    def _line(self, at: datetime) -> _Timeline:
        """The open intervals around ``at`` with their running totals (built once per span of dates)."""
        line = self._timeline  # type: ignore[attr-defined]
        if line is None or not line.covers(at):
            day = self._local_date(at)
            line = _Timeline(self, day - TIMELINE_BEFORE, day + TIMELINE_AFTER)
            object.__setattr__(self, "_timeline", line)
        return line

    def hours_on(self, day: date) -> Ranges:
        """The open ranges (minutes since local midnight) of a local date, after holidays."""
        if day in self.working_days:
            return self.working_day_hours
        if day in self.extra_holidays:
            return ()
        public = self._public  # type: ignore[attr-defined]
        if public is not None:
            # Looking the date up first makes the package compute that year, which
            # is also what fills in its make-up working days.
            if day in public:
                return ()
            if day in public.weekend_workdays:
                return self.working_day_hours
        return self.hours[day.weekday()]

    def _open_intervals(self, day: date) -> tuple[Interval, ...]:
        """The open intervals of a local date as UTC instants (cached per date)."""
        midnight = datetime(day.year, day.month, day.day)
        intervals = []
        for first, last in self.hours_on(day):
            # Local wall-clock times through zoneinfo, so that 09:00-18:00 is nine
            # hours on a DST change day too, and 00:00-24:00 is 23 or 25 hours.
            a = (midnight + timedelta(minutes=first)).replace(tzinfo=self.tz).astimezone(UTC)
            b = (midnight + timedelta(minutes=last)).replace(tzinfo=self.tz).astimezone(UTC)
            if b > a:
                intervals.append((a, b))
        return tuple(intervals)

    def _local_date(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    def _days_from(self, day: date, step: int, origin: datetime) -> Iterable[date]:
        """Local dates from ``day`` onwards (step +1) or backwards (-1), until the caller stops."""
        closed = 0
        delta = timedelta(days=step)
        while True:
            if self._day(day):
                closed = 0
            else:
                closed += 1
                if closed > MAX_CLOSED_DAYS:
                    raise ValueError(
                        f"calendar {self.name!r} has no open hours within {MAX_CLOSED_DAYS} days of {origin.isoformat()}"
                    )
            yield day
            day += delta


# The span of local dates a calendar's timeline holds around the first instant asked about: a
# bulk computation (every ticket's due times after an upgrade) stays inside it.
TIMELINE_BEFORE = timedelta(days=400)
TIMELINE_AFTER = timedelta(days=800)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class _Timeline:
    """A calendar's open intervals over a span of local dates as microseconds since the epoch, with
    the open time before each one, so that `add` and `between` are two binary searches.

    The same intervals as the per-date walk (`Calendar._day`), so the same results to the
    microsecond; a question reaching outside the span answers None and the walk does it.
    Computing every ticket's due times at once made the walk most of the work.
    """

    def __init__(self, calendar: Calendar, first: date, last: date):
        self.starts: list[int] = []
        self.ends: list[int] = []
        # before[i]: open microseconds from the span's start to starts[i]; upto[i]: to ends[i].
        self.before: list[int] = []
        self.upto: list[int] = []
        total, day = 0, first
        while day < last:
            for a, b in calendar._day(day):  # type: ignore[attr-defined]
                a_us, b_us = (a - _EPOCH) // _US, (b - _EPOCH) // _US
                self.starts.append(a_us)
                self.ends.append(b_us)
                self.before.append(total)
                total += b_us - a_us
                self.upto.append(total)
            day += ONE_DAY
        # Instants from the first local midnight up to the last one are inside the span.
        self.low = (datetime(first.year, first.month, first.day).replace(tzinfo=calendar.tz) - _EPOCH) // _US
        self.high = (datetime(last.year, last.month, last.day).replace(tzinfo=calendar.tz) - _EPOCH) // _US

    def covers(self, at: datetime) -> bool:
        return self.low <= (at - _EPOCH) // _US < self.high

    def _position(self, at_us: int) -> tuple[int, int] | None:
        """(index of the first interval ending after the instant, open microseconds before the instant)."""
        i = bisect_right(self.ends, at_us)
        if i == len(self.ends):
            return None
        return i, self.before[i] + max(0, at_us - self.starts[i])

    def add(self, start: datetime, duration: timedelta) -> datetime | None:
        """`Calendar.add` for a positive duration of business time, or None when outside the span."""
        s = (start - _EPOCH) // _US
        if not self.low <= s < self.high:
            return None
        found = self._position(s)
        if found is None:
            return None
        target = found[1] + duration // _US
        # The first interval in which the time runs out: ending on a closing time returns that closing time.
        j = bisect_left(self.upto, target)
        if j == len(self.upto):
            return None
        return _EPOCH + timedelta(microseconds=self.starts[j] + target - self.before[j])

    def between(self, start: datetime, end: datetime) -> timedelta | None:
        """`Calendar.between` for start < end, or None when outside the span."""
        s, e = (start - _EPOCH) // _US, (end - _EPOCH) // _US
        if not (self.low <= s < self.high and self.low <= e < self.high):
            return None
        a, b = self._position(s), self._position(e)
        if a is None or b is None:
            return None
        return timedelta(microseconds=b[1] - a[1])


ALWAYS = Calendar(name="24x7", tz=ZoneInfo("UTC"), hours=(((0, 1440),),) * 7)


@dataclass(frozen=True)
class SlaPolicy:
    """The promises made on a ticket, counted in business time of ``calendar``."""

    name: str
    first_response: Target | None
    next_response: Target | None
    resolution: Target | None
    warn_before: timedelta
    calendar: Calendar = field(default=ALWAYS)
    priorities: tuple[str, ...] = ()
    # After an escalation to tier N, its first agent reply is due within that
    # tier's limit of business time, as (tier, limit) pairs (see inboxd.desk.tiers).
    tier_response: tuple[tuple[int, Target], ...] = ()

    def tier_limit(self, tier: int) -> Target | None:
        """The response limit after an escalation to `tier`, if the policy sets one."""
        return dict(self.tier_response).get(tier)


# --- Due times with pauses (a ticket waiting on the customer stops the clock).

def due_time(
    start: datetime,
    target: Target,
    calendar: Calendar,
    pauses: Sequence[tuple[datetime, datetime | None]] = (),
    now: datetime | None = None,
) -> datetime | None:
    """When ``target`` business time after ``start`` is used up, not counting business time in ``pauses``.

    A pause is [a, b); b None means the ticket is still paused.  While paused
    the clock is stopped and there is no due time (None), unless the target was
    already used up before that pause began: a promise broken before the ticket
    went pending stays broken, with its due time in the past.  ``now``, when
    given, is checked against open pauses: one that starts after ``now`` is an
    error in the caller's data.  Pauses may overlap each other and ``start``.
    """
    start = _utc(start)
    if isinstance(target, BusinessDays):
        # Whole working days become the business time they span from the
        # start; a pause then holds the clock for the business time it takes.
        target = calendar.between(start, calendar.add_days(start, target.days))
    if now is not None:
        now = _utc(now)
        for a, b in pauses:
            if b is None and _utc(a) > now:
                raise ValueError(f"open pause starts at {a.isoformat()}, after now ({now.isoformat()})")
    cursor, remaining = start, target
    # Merged pauses are disjoint and sorted, so each one starts at or after the cursor.
    for a, b in _merge(pauses, start, None):
        if a > cursor:
            candidate = calendar.add(cursor, remaining)
            if candidate <= a:
                return candidate
            remaining -= calendar.between(cursor, a)
        if b is None:
            return None
        cursor = b
    return calendar.add(cursor, remaining)


def elapsed(
    start: datetime,
    end: datetime,
    calendar: Calendar,
    pauses: Sequence[tuple[datetime, datetime | None]] = (),
) -> timedelta:
    """Business time in [start, end) minus the business time spent paused (an open pause lasts until ``end``)."""
    start, end = _utc(start), _utc(end)
    total = calendar.between(start, end)
    for a, b in _merge(pauses, start, end):
        total -= calendar.between(a, b if b is not None else end)
    return total


def warn_time(due: datetime, policy: SlaPolicy) -> datetime:
    """When to warn: ``warn_before`` of business time before ``due`` (see ``Calendar.subtract``).

    Counted backwards in business time, not wall-clock time, so the agent gets
    ``warn_before`` of working time to act: with 15 minutes, a Monday 09:30 due
    time warns at 09:15, and a Monday 09:00 due time warns at Friday 17:45
    (the last open minutes before it), not at Monday 08:45 when nobody is in.
    """
    return policy.calendar.subtract(due, policy.warn_before)


def _merge(
    pauses: Sequence[tuple[datetime, datetime | None]], low: datetime, high: datetime | None,
) -> list[tuple[datetime, datetime | None]]:
    """Pauses clipped to [low, high), sorted and merged; an open pause swallows everything after it."""
    clipped: list[tuple[datetime, datetime | None]] = []
    for a, b in pauses:
        a = max(_utc(a), low)
        b = None if b is None else _utc(b)
        if high is not None:
            a = min(a, high)
            b = high if b is None else min(b, high)
        if b is None or b > a:
            clipped.append((a, b))
    clipped.sort(key=lambda pause: pause[0])
    merged: list[tuple[datetime, datetime | None]] = []
    for a, b in clipped:
        if merged:
            last_a, last_b = merged[-1]
            if last_b is None:
                break
            if a <= last_b:
                merged[-1] = (last_a, None if b is None else max(last_b, b))
                continue
        merged.append((a, b))
    return merged


# --- Durations for people.

_UNITS = {
    "en": (("day", "days"), ("hour", "hours"), ("minute", "minutes"), ("second", "seconds")),
    "zh": (("天", "天"), ("小时", "小时"), ("分钟", "分钟"), ("秒", "秒")),
    "zh-Hant": (("天", "天"), ("小時", "小時"), ("分鐘", "分鐘"), ("秒", "秒")),
}


_BUSINESS_HOURS = {"en": ("business hour", "business hours"), "zh": ("个工作小时", "个工作小时"),
                   "zh-Hant": ("個工作小時", "個工作小時")}
_WORKING_DAYS = {"en": ("business day", "business days"), "zh": ("个工作日", "个工作日"),
                 "zh-Hant": ("個工作天", "個工作天")}


def human(duration: Target, language: str = "en", *, business: bool = False) -> str:
    """A duration as people write it: "1 hour 30 minutes", "2 days"; zh: "1 小时 30 分钟", "2 天".

    Seconds are shown only when they are not zero; a negative duration gets a
    leading minus sign.  Unknown languages fall back to English.  Whole
    working days: "2 business days", "2 个工作日", "2 個工作天".  `business`
    (business time of a calendar with closed hours) counts in business hours,
    never days: "48h" there is "48 business hours" ("48 个工作小时"), since
    "2 days" would promise far sooner than the calendar keeps.
    """
    if isinstance(duration, BusinessDays):
        one, many = _WORKING_DAYS.get(language, _WORKING_DAYS["en"])
        return f"{duration.days} {one if duration.days == 1 else many}"
    units = _UNITS.get(language, _UNITS["en"])
    seconds = int(abs(duration).total_seconds())
    if business:
        units = (units[0], _BUSINESS_HOURS.get(language, _BUSINESS_HOURS["en"]), *units[2:])
        days, rest = 0, seconds
    else:
        days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{count} {one if count == 1 else many}"
        for count, (one, many) in zip((days, hours, minutes, secs), units)
        if count
    ]
    text = " ".join(parts) if parts else f"0 {units[2][1]}"
    return "-" + text if duration < ZERO and parts else text


# --- Configuration: [[calendars]] and [[sla]], called by inboxd.desk.policies.read_policies
# while inboxd.config reads the file.

def parse_calendars(raw: list[dict] | None, file_name: str) -> dict[str, Calendar]:
    """The ``[[calendars]]`` array as written (None when absent) -> calendars by name; ConfigError names the key."""
    calendars: dict[str, Calendar] = {}
    for table in Table(file_name, "", {"calendars": raw or []}, ("calendars",)).tables("calendars", CALENDAR_KEYS):
        name = table.name("name", NAME)
        if name == ALWAYS.name:
            table.fail("name", f"{show(name)} is reserved for the built-in always-open calendar")
        if name in calendars:
            table.fail("name", f"duplicate calendar name {show(name)}")
        hours_table = table.table("hours", DAYS)
        if hours_table.present:
            hours = tuple(_ranges(hours_table, day, "") for day in DAYS)
        else:
            # No hours at all means an office week: Monday to Friday, 09:00-18:00.
            hours = tuple(_parse_ranges(DEFAULT_DAY) if i < 5 else () for i in range(7))
        working_days = _dates(table, "working_days")
        if not any(hours) and not working_days:
            table.fail("hours", "the calendar is never open; give the hours of at least one day")
        country, subdiv = _holiday_codes(table)
        working_day_hours = _ranges(table, "working_day_hours", DEFAULT_DAY)
        if not working_day_hours:
            table.fail("working_day_hours", "must not be empty")
        calendars[name] = Calendar(
            name=name,
            tz=_zone(table),
            hours=hours,
            holiday_country=country,
            holiday_subdiv=subdiv,
            extra_holidays=_dates(table, "extra_holidays"),
            working_days=working_days,
            working_day_hours=working_day_hours,
        )
    return calendars


def parse_sla_policies(
    raw: list[dict] | None, calendars: dict[str, Calendar], file_name: str,
) -> dict[str, SlaPolicy]:
    """The ``[[sla]]`` array as written (None when absent) -> policies by name; ``calendars`` from ``parse_calendars``."""
    policies: dict[str, SlaPolicy] = {}
    owner: dict[str, tuple[str, str]] = {}
    for table in Table(file_name, "", {"sla": raw or []}, ("sla",)).tables("sla", SLA_KEYS):
        name = table.name("name", NAME)
        if name in policies:
            table.fail("name", f"duplicate sla name {show(name)}")
        targets = {key: _optional_duration(table, key) for key in ("first_response", "next_response", "resolution")}
        if not any(targets.values()):
            raise ConfigError(
                f"{file_name}: {table.path}: give at least one of first_response, next_response or resolution"
            )
        warn_before = table.duration("warn_before", DEFAULT_WARN_BEFORE)
        calendar = _calendar(table, calendars)
        priorities = table.strings("priority", ())
        for index, priority in enumerate(priorities):
            key = f"priority[{index}]"
            if priority not in PRIORITIES:
                options = ", ".join(show(p) for p in PRIORITIES)
                table.fail(key, f"must be one of {options}, got {show(priority)}")
            if priority in owner:
                other, where = owner[priority]
                table.fail(key, f"{show(priority)} already has a default policy, {show(other)} ({where})")
            owner[priority] = (name, table.path)
        policies[name] = SlaPolicy(
            name=name,
            first_response=targets["first_response"],
            next_response=targets["next_response"],
            resolution=targets["resolution"],
            warn_before=warn_before,
            calendar=calendar,
            priorities=priorities,
            tier_response=tuple((tier, limit) for tier in RESPONSE_TIERS
                                if (limit := _optional_duration(table, f"tier{tier}_response")) is not None),
        )
    return policies


def policy_for_priority(policies: Mapping[str, SlaPolicy], priority: str) -> SlaPolicy | None:
    """The policy that lists ``priority`` as one it is the default for, if any."""
    return next((p for p in policies.values() if priority in p.priorities), None)


def _zone(table: Table) -> ZoneInfo:
    value = table.string("timezone", "UTC")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        table.fail("timezone", f'unknown time zone {show(value)}; expected an IANA name such as "Asia/Shanghai"')


def _holiday_codes(table: Table) -> tuple[str | None, str | None]:
    country = table.string("holidays", "") or None
    subdiv = table.string("holidays_subdiv", "") or None
    if subdiv and not country:
        table.fail("holidays_subdiv", "needs holidays (a country code) as well")
    if country:
        import holidays as holiday_tables  # Only when configured, as in Calendar.

        try:
            holiday_tables.country_holidays(country)
        except NotImplementedError:
            table.fail("holidays", f"unknown holiday country {show(country)}; expected a code such as \"CN\" or \"US\"")
        try:
            holiday_tables.country_holidays(country, subdiv=subdiv)
        except NotImplementedError:
            table.fail("holidays_subdiv", f"unknown subdivision {show(subdiv)} of {show(country)}")
    return country, subdiv


def _ranges(table: Table, key: str, default: str) -> Ranges:
    value = table.string(key, default)
    try:
        return _parse_ranges(value)
    except ValueError as exc:
        table.fail(key, str(exc))


def _parse_ranges(text: str) -> Ranges:
    """ "09:00-12:00,13:00-18:00" -> ((540, 720), (780, 1080)); "" is a closed day."""
    if text.strip() == "":
        return ()
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        match = RANGE.fullmatch(part.strip())
        if not match:
            raise ValueError(f"{RANGES_HINT}, got {show(text)}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        first, last = h1 * 60 + m1, h2 * 60 + m2
        if h1 > 23 or m1 > 59 or m2 > 59 or last > 1440:
            raise ValueError(f"{part.strip()!s} is not a time range within 00:00-24:00")
        if last <= first:
            raise ValueError(f"{part.strip()} ends before it starts")
        if ranges and first < ranges[-1][1]:
            raise ValueError(f"{part.strip()} overlaps or comes before the range before it")
        ranges.append((first, last))
    return tuple(ranges)


def _dates(table: Table, key: str) -> frozenset[date]:
    values = table.get(key, [])
    if not isinstance(values, list):
        table.fail(key, f'expected a list of dates such as ["2026-12-31"], got {show(values)}')
    days: set[date] = set()
    for index, value in enumerate(values):
        # TOML has a date type too: extra_holidays = [2026-12-31] without quotes.
        if isinstance(value, date) and not isinstance(value, datetime):
            days.add(value)
            continue
        # fromisoformat() also takes "20261231"; only the written-out form is accepted.
        try:
            if not (isinstance(value, str) and len(value) == 10):
                raise ValueError(value)
            days.add(date.fromisoformat(value))
        except ValueError:
            table.fail(f"{key}[{index}]", f'expected a date such as "2026-12-31", got {show(value)}')
    return frozenset(days)


def _optional_duration(table: Table, key: str) -> Target | None:
    """A target: business time ("4h", "48h", "2d" = 48 business hours) or whole working days ("2 business days")."""
    if key not in table.data:
        return None
    raw = table.data[key]
    days = BUSINESS_DAYS.fullmatch(raw) if isinstance(raw, str) else None
    if days is not None:
        if int(days.group(1)) < 1:
            table.fail(key, f"must be at least 1 business day, got {show(raw)}")
        return BusinessDays(int(days.group(1)))
    value = table.duration(key, "0s")
    if value <= ZERO:
        table.fail(key, f"must be longer than zero, got {show(table.data[key])}")
    return value


def _calendar(table: Table, calendars: dict[str, Calendar]) -> Calendar:
    if "calendar" not in table.data:
        return ALWAYS
    name = table.string("calendar")
    if name == ALWAYS.name:
        return ALWAYS
    if name not in calendars:
        # A config has a handful of calendars at most, so naming them all helps most.
        known = ", ".join(show(n) for n in [*calendars, ALWAYS.name])
        table.fail("calendar", f"unknown calendar {show(name)}; the calendars are {known}")
    return calendars[name]


def _utc(at: datetime) -> datetime:
    """An aware datetime in UTC; naive datetimes are refused, since their zone is a guess."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {at.isoformat()}")
    return at.astimezone(UTC)
