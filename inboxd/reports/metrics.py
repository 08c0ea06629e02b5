"""Helpdesk metrics for a period, computed from the store: the numbers behind `inboxd report` and the weekly mail.

Everything here reads; nothing writes.  `compute_report` returns a plain dict
whose keys are documented in docs/report-keys.md (they are a contract: add
keys, never rename them).  `weekly_report` turns one report into the
text, HTML and charts of the mail supervisors get each week; the scheduler
queues it through the outbox.  Like the SLA code, every function takes `now` instead of reading a
clock, so tests use fixed instants.

Status history comes from the audit events: each ticket's status changes
(inboxd.reports.tickets, the same rule as inboxd.desk.history.status_intervals),
read from its per-ticket row when that is current, else from its events,
and turned into intervals in microseconds, which every status-based metric reuses.
"""

from __future__ import annotations

import base64
from bisect import bisect_left, bisect_right
import contextlib
import gc
import hashlib
import json
import math
import statistics
from collections import Counter, defaultdict
from itertools import accumulate
from operator import attrgetter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from inboxd.outbound.compose import InlineImage
from inboxd.config import Settings
from inboxd.store import reports as store
from inboxd.store.engine import reading
from inboxd.store.reports import Scope
from inboxd.reports import breakdowns
from inboxd.reports import tickets as per_ticket
from inboxd.reports.rollups import Rollups
from inboxd.desk.history import Interval
from inboxd.desk.csat import is_top, level_of, top_scores
from inboxd.desk.csat import label as csat_label
from inboxd.desk.sla import Calendar

SUPERVISOR_ROLES = ("supervisor", "admin")
RESOLVED = ("solved", "closed")
STATUS_ORDER = ("new", "open", "pending", "solved", "closed")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_PERIOD = timedelta(days=7)
# The backlog ratio compares today's open tickets with this many weeks of solving.
BACKLOG_WEEKS = 4
TOP_REASONS = 5
# First-response histogram buckets: (label, upper bound in hours); the last is open-ended.
FIRST_RESPONSE_BUCKETS = (("<1h", 1), ("1-4h", 4), ("4-8h", 8), ("8-24h", 24), ("1-3d", 72), (">3d", math.inf))
CSAT_TREND_WEEKS = 8
# The satisfaction trend inside a report is per local day up to this long a period, per week beyond.
CSAT_DAILY_UP_TO = timedelta(days=31)

# A status interval: (status, start, end), half-open.


# --- Status history -------------------------------------------------------------

def transitions(intervals: Sequence[Interval]) -> list[tuple[str, str, datetime]]:
    """(before, after, at) for each change of status between consecutive intervals."""
    return [(a[0], b[0], b[1]) for a, b in zip(intervals, intervals[1:]) if a[0] != b[0]]


def is_reopen(before: str, after: str) -> bool:
    return before in RESOLVED and after not in RESOLVED


def status_at(intervals: Sequence[Interval], at: datetime) -> str | None:
    for status, a, b in intervals:
        if a <= at < b:
            return status
    return None


# --- Small statistics -----------------------------------------------------------

def summary(seconds: Sequence[float]) -> dict:
    """count, median, mean and p90 (nearest rank) of durations in seconds; None when there are none."""
    if not seconds:
        return {"count": 0, "median": None, "mean": None, "p90": None}
    ordered = sorted(seconds)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {
        "count": len(ordered),
        "median": round(statistics.median(ordered), 1),
        "mean": round(statistics.fmean(ordered), 1),
        "p90": round(p90, 1),
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# --- Reading the store ------------------------------------------------------------

@dataclass(slots=True)
class _Ticket:
    pk: int
    mailbox: str
    tags: list[str]
    assignee: str | None
    # The instants in microseconds since the epoch (inboxd.reports.tickets.micros): the report compares and
    # subtracts them as integers, and makes a datetime only for a ticket whose SLA policy has a calendar.
    created_us: int
    first_response_us: int | None
    sla_policy: str | None
    requester: str = ""   # In lower case, as repeat complaints compare addresses.
    message_count: int = 0
    customer: str = ""    # The requester in the database's lower case, as a contact of its customer.
    merged_into: int | None = None
    # Set by _Reader.tickets: the status changes [at, status, at, status, ...] (inboxd.reports.tickets), instants
    # in microseconds, of which `_walk` makes the status intervals up to the period's end; the shared empty
    # tuple spares the tickets without any a list each.
    changes: list | tuple = ()


def _duration_us(start: int, end: int, calendar: Calendar | None) -> float:
    """Seconds from start to end (microseconds since the epoch), in the calendar's business time when there is
    one.  Without, the wall-clock seconds from the integers: timedelta.total_seconds() divides the same
    integer by 10**6, so it is the float the datetimes gave."""
    if calendar is None:
        return max(0.0, (end - start) / 1_000_000)
    return calendar.between(per_ticket.instant(start), per_ticket.instant(end)).total_seconds()


class _Reader:
    """The store's reads for one report (inboxd.store.reports), with the period and scope they share."""

    def __init__(self, conn: Connection, settings: Settings, scope: Scope, since: datetime, until: datetime,
                 now: datetime, rollups: bool = True):
        self.conn = conn
        # The event figures of complete days come from report_rollup (inboxd.reports.rollups) when stored.
        self.rollups = Rollups(conn, settings, now, enabled=rollups)
        self.settings, self.scope = settings, scope
        self.since, self.until, self.now = since, until, now
        self.end = min(until, now)
        # Set by tickets(): the agent messages the per-ticket rows count, how many rows were read, the tickets
        # created in the period, and those whose requester in Python's lower case is not the database's.
        self.agent_messages: dict[int, int] = {}
        self.created: list[_Ticket] = []
        self.unlike: list[int] = []
        self.rows_used = 0

    def tickets(self) -> dict[int, _Ticket]:
        """Tickets alive during the period, each with its status intervals up to the period's end."""
        # A desk has few distinct tag lists: each is decoded once, and the tickets with the same list share it
        # (nothing changes a ticket's list here), the empty list too.
        decoded: dict[str | None, list[str]] = {}
        enabled = self.rollups.enabled
        rows = store.live_tickets(self.conn, self.scope, self.since, self.until, with_rows=enabled)
        us = store.micros_converter(self.conn)
        # SQLite's lower() folds ASCII letters as Python's does, so an ASCII requester's lower case is the one the
        # database gave (one string for both, its hash computed once); any other is put in lower case here.
        # (PostgreSQL's lower() follows the database's locale.)
        same_lower = self.conn.dialect.name == "sqlite"
        first_us, stop_us = per_ticket.micros(self.since), per_ticket.micros(self.until)
        tickets: dict[int, _Ticket] = {}
        created = self.created = []
        unlike = self.unlike = []
        # The tickets and their stored rows in one pass over the rows as read (a pass over 100,000 rows costs as
        # much as what it does), the tickets created in the period listed as they come (in id order).  The
        # instants are integers unless the database could not count them (`micros_converter`).
        ids, watermarks, texts = [], [], []
        for row in rows:
            pk, at, first, requester, customer = row[0], row[4], row[5], row[7] or "", row[9]
            if at.__class__ is not int:
                at = us(at)
            if first is not None and first.__class__ is not int:
                first = us(first)
            if same_lower and requester.isascii():
                lowered = customer
            else:
                lowered = requester.lower()
                if lowered != customer:
                    unlike.append(pk)
            tags = decoded.get(row[2])
            if tags is None:
                text = row[2]
                tags = decoded[text] = json.loads(text) if text and text != "[]" else []
            ticket = tickets[pk] = _Ticket(pk, row[1], tags, row[3], at, first, row[6], lowered, row[8], customer,
                                           row[10])
            if first_us <= at < stop_us:
                created.append(ticket)
            if enabled and row[12] is not None:
                ids.append(pk)
                watermarks.append(row[11])
                texts.append(row[12])
        # Each ticket's status changes: from its per-ticket row (report_ticket) when current, else its events.
        read = per_ticket.status_changes(self.conn, self.scope, self.since, self.until, self.end, tickets, ids,
                                         watermarks, texts)
        self.rows_used, self.agent_messages = read.rows_used, read.agent_messages
        for pk, changes in read.changes.items():
            tickets[pk].changes = changes
        return tickets


# --- The report ---------------------------------------------------------------------

def compute_report(conn, settings: Settings, *, since: datetime | None = None, until: datetime | None = None,
                   mailbox: str | None = None, team: str | None = None, agent: str | None = None,
                   now: datetime, include_agents: bool, rollups: bool = True) -> dict:
    """Every metric of docs/report-keys.md for [since, until) (default: the 7 days up to now).

    `conn` is a SQLAlchemy connection from `inboxd.store.engine.reading`.  Durations are seconds, in business time where the ticket's
    SLA policy has a calendar.  The caller checks roles; `include_agents`
    adds the per-agent section.  `rollups=False` counts every figure live,
    ignoring the stored days of inboxd.reports.rollups (the figures are the same).
    """
    with _without_cycle_collection():
        return _compute_report(conn, settings, since, until, Scope(mailbox, team, agent), now, include_agents,
                               rollups)


@contextlib.contextmanager
def _without_cycle_collection():
    """Python's cycle collector paused while a report is computed.

    A report over 100,000 tickets makes a few million objects (rows, instants, intervals), none in a
    reference cycle, each freed by its reference count; the collector, started again and again by so many
    allocations, traversed the growing heap for nothing: 0.4 s of a 1.3 s 90-day report.  The collector's
    state is put back afterwards (a caller that paused it keeps it paused), and what it would have found
    meanwhile it finds on its next run."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _compute_report(conn, settings: Settings, since: datetime | None, until: datetime | None, scope: Scope,
                    now: datetime, include_agents: bool, rollups: bool) -> dict:
    mailbox, team, agent = scope.mailbox, scope.team, scope.agent
    until = until or now
    since = since or until - DEFAULT_PERIOD
    if since >= until:
        raise ValueError("the period is empty: --since must be before --until")
    reader = _Reader(conn, settings, scope, since, until, now, rollups)
    tz = settings.reports.timezone
    policies = settings.policies.sla
    tickets = reader.tickets()

    # Each SLA policy's calendar, looked up per ticket below (a ticket without a policy, with one the
    # configuration no longer has, or with one without a calendar, counts wall-clock time): only the policies
    # with a calendar are kept, so that one lookup answers for every ticket.
    calendars = {name: policy.calendar for name, policy in policies.items() if name and policy.calendar is not None}

    created = reader.created

    # The status figures, in one walk over every ticket's intervals (instants in microseconds).
    starts = _day_starts(since, until, tz)
    starts_us = [per_ticket.micros(s) for s in starts]
    history = _walk(tickets.values(), since, until, reader.end, _checkpoints(starts, until, reader.end), starts_us)
    solved, closed, reopened, resolved_us = history.solved, history.closed, history.reopened, history.resolved_us
    resolved = [tickets[pk] for pk in resolved_us]

    # Each ticket's times, computed once for the desk and its agent.
    # Without a calendar, the wall-clock seconds are computed in place (_duration_us's, without a call per ticket).
    first_of = {t.pk: (max(0.0, (t.first_response_us - t.created_us) / 1_000_000)
                       if (calendar := calendars.get(t.sla_policy)) is None
                       else _duration_us(t.created_us, t.first_response_us, calendar))
                for t in created if t.first_response_us is not None}
    resolution_of = {t.pk: (max(0.0, (resolved_us[t.pk] - t.created_us) / 1_000_000)
                            if (calendar := calendars.get(t.sla_policy)) is None
                            else _duration_us(t.created_us, resolved_us[t.pk], calendar))
                     for t in resolved}
    # Sorted once for the summary and the histogram (the summary sorts it again, at no cost now).
    first_response = sorted(first_of.values())
    resolution = list(resolution_of.values())
    status_seconds = history.seconds
    one_touch = _one_touch(reader, resolved_us)

    backlog = _backlog(reader)
    # The volume counts the tickets created per local day for the daily series as it goes.
    new = [0] * len(starts)
    volume = _volume(created, tz, starts_us, new)
    solved_before = _solved_count(reader, until - timedelta(weeks=BACKLOG_WEEKS), until)
    per_week = solved_before / BACKLOG_WEEKS

    report = {
        "period": {"since": _iso(since), "until": _iso(until), "now": _iso(now), "timezone": tz.key,
                   "mailbox": mailbox, "team": team, "agent": agent},
        "tickets": {
            "created": len(created),
            "solved": len(solved),
            "closed": len(closed),
            "resolved": len(resolved),
            "reopened": len(reopened),
            "backlog": backlog,
            "backlog_ratio": round(backlog / per_week, 2) if per_week else None,
        },
        "first_response": {**summary(first_response), "histogram": _histogram(first_response)},
        "resolution": summary(resolution),
        "first_contact_resolution": {"count": one_touch, "rate": _share(one_touch, len(resolved))},
        "reopen_rate": _share(len(reopened), len(resolved)),
        "sla": _sla(reader),
        "csat": _csat(reader, since, until, _label_language(settings, mailbox)),
        "volume": volume,
        "escalations": _escalations(reader),
        "time_in_status": {status: round(value / 3600, 2) for status, value in status_seconds.items()},
        "daily": _daily(new, history, starts, tz),
        **_desk_figures(reader, tickets, created, resolved, resolved_us, status_seconds),
    }
    if include_agents:
        report["agents"] = _agents(reader, created, resolved, first_of, resolution_of)
    return report


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _histogram(ordered: Sequence[float]) -> dict[str, int]:
    """How many of the durations (`ordered`: seconds, ascending) fall in each of FIRST_RESPONSE_BUCKETS."""
    labels = [label for label, _ in FIRST_RESPONSE_BUCKETS]
    uppers = [upper for _, upper in FIRST_RESPONSE_BUCKETS]
    # A value's bucket is the first whose upper bound is above its hours (value / 3600, the bounds in order).
    # The hours rise with the seconds, so the values below each bound are found by bisection on the sorted
    # values, their hours computed for the few probed only (not once for each of 100,000).
    below = [bisect_left(ordered, upper, key=_hours) for upper in uppers]
    return {label: below[i] - (below[i - 1] if i else 0) for i, label in enumerate(labels)}


def _hours(seconds: float) -> float:
    return seconds / 3600


def _one_touch(reader: _Reader, resolved: Mapping[int, int]) -> int:
    """How many of these tickets (`resolved`'s keys) have exactly one agent message: counted from their
    per-ticket rows where those count them currently, else by the store (a ticket without any is absent from
    its counts).  Counted with sets rather than a lookup per ticket."""
    known = reader.agent_messages
    ones = {pk for pk, count in known.items() if count == 1}
    missing = resolved.keys() - known.keys()
    rest = [pk for pk in resolved if pk in missing] if missing else []
    counted = store.agent_reply_counts(reader.conn, rest) if rest else {}
    return len(ones.intersection(resolved)) + sum(1 for pk in rest if counted.get(pk, 0) == 1)


def _backlog(reader: _Reader) -> int:
    return store.backlog(reader.conn, reader.scope)


def _solved_count(reader: _Reader, since: datetime, until: datetime) -> int:
    """Tickets that reached solved or closed from an unresolved status in [since, until)."""
    return len(reader.rollups.gather("resolved", since, until, reader.scope))


def _sla(reader: _Reader) -> dict:
    """Targets due in the period: met when done by the due time, breached when done
    later or not done by now, pending otherwise (not counted in the share)."""
    out = {}
    for name in ("first_response", "resolution"):
        rows = store.sla_targets(reader.conn, reader.scope, name, reader.since, reader.until)
        met = breached = pending = 0
        for due_at, done_at in rows:
            if done_at is not None and done_at <= due_at:
                met += 1
            elif done_at is not None or due_at <= reader.now:
                breached += 1
            else:
                pending += 1
        out[name] = {"met": met, "breached": breached, "pending": pending, "attainment": _share(met, met + breached)}
    out["breaches"] = out["first_response"]["breached"] + out["resolution"]["breached"]
    return out


def _desk_figures(reader: _Reader, tickets: dict[int, _Ticket], created: Sequence[_Ticket],
                  resolved: Sequence[_Ticket], resolved_us: dict[int, int], status_seconds: dict[str, float]) -> dict:
    """Repeat complaints, the figures by custom field and time per status as a share (inboxd.reports.breakdowns).

    `resolved_us` holds each resolved ticket's last resolution in the period, in microseconds: repeat
    complaints compare the instants as integers, without a datetime per resolved ticket and contact."""
    from inboxd.store import fields as store_fields

    conn, settings = reader.conn, reader.settings
    declared = settings.policies.fields
    customer_of = {t.pk: t.requester for t in resolved}   # `resolved`: the tickets of `resolved_us`, in its order.
    window = settings.reports.repeat_window
    repeated = _repeated(reader, tickets, customer_of, resolved_us, window)
    answers = [(pk, rating) for pk, rating in store.csat_ratings(conn, reader.scope, reader.since, reader.until)]
    # The fields' values count only for declared fields: without any, none is read.
    fields_of = (store_fields.values_for(conn, sorted({*tickets, *(pk for pk, _ in answers)})) if declared else {})
    # A good answer is one in the top two levels of the scale (inboxd.desk.csat.is_top).
    scale = settings.policies.csat.scale
    return {
        "repeat_complaints": breakdowns.repeat_complaints(
            resolved_us, customer_of, repeated, {t.pk: t.tags for t in resolved}, fields_of,
            [f.name for f in declared], window),
        "by_field": breakdowns.by_field({f.name: f.choices for f in declared}, fields_of, [t.pk for t in created],
                                        list(resolved_us), answers, good=lambda rating: is_top(scale, rating)),
        "time_in_status_share": breakdowns.shares(status_seconds),
    }


def _repeated(reader: _Reader, tickets: dict[int, _Ticket], customer_of: dict[int, str],
              resolved_us: dict[int, int], window: timedelta) -> set[int]:
    """The resolved tickets whose customer came back within `window` (inboxd.reports.breakdowns.repeated_tickets),
    instants in microseconds.

    Their contacts are every ticket, in any mailbox, of the resolved tickets' customers created after the
    first resolution (inboxd.store.reports.customer_tickets's rows).  A report over every mailbox has most of
    them among its tickets already, and reads only the others; and a resolved ticket whose customer has no
    ticket but itself among those cannot be a repeat's start, so only the customers with another ticket are
    matched (most customers of a desk write once)."""
    if not resolved_us:
        return set()
    first = min(resolved_us.values())
    window_us, now_us = window // per_ticket.MICROSECOND, per_ticket.micros(reader.now)
    customers = set(customer_of.values())
    micros = per_ticket.micros
    if reader.scope.clauses():
        contacts = [(pk, customer, micros(at), merged) for pk, customer, at, merged
                    in store.customer_tickets(reader.conn, sorted(customers), per_ticket.instant(first))]
        return breakdowns.repeated_tickets(resolved_us, customer_of, contacts, window_us, now_us)
    elsewhere = [(pk, customer, micros(at), merged) for pk, customer, at, merged
                 in store.customer_tickets_elsewhere(reader.conn, customers, per_ticket.instant(first),
                                                     reader.since, reader.until)]
    # How many tickets each customer has among the period's and those others (the period's created before the
    # first resolution too: more than the contacts, never fewer).  A resolved ticket is matched only when its
    # customer has one besides itself (itself: the only one, under the same address in either lower case).
    count = Counter(map(_CUSTOMER, tickets.values()))
    count.update(customer for _, customer, _, _ in elsewhere)
    # A ticket whose two lower cases agree (nearly all) needs a customer counted twice; one whose do not
    # (`reader.unlike`, as read) needs its Python lower case counted at all.
    again = {customer for customer, n in count.items() if n > 1}
    maybe = {pk: at for pk, at in resolved_us.items() if customer_of[pk] in again}
    for pk in reader.unlike:
        if pk in resolved_us and customer_of[pk] in count:
            maybe[pk] = resolved_us[pk]
    if not maybe:
        return set()
    wanted = {customer_of[pk] for pk in maybe}
    contacts = [c for c in elsewhere if c[1] in wanted]
    contacts += [(t.pk, t.customer, t.created_us, t.merged_into) for t in tickets.values()
                 if t.customer in wanted and t.created_us > first]
    return breakdowns.repeated_tickets(maybe, customer_of, contacts, window_us, now_us)


_CUSTOMER = attrgetter("customer")


def _label_language(settings: Settings, mailbox: str | None) -> str:
    """The language of the scale's labels in a report: the mailbox's, else the first mailbox's."""
    if mailbox is not None:
        return settings.mailbox(mailbox).language
    return settings.mailboxes[0].language if settings.mailboxes else "en"


def _csat(reader: _Reader, since: datetime, until: datetime, language: str) -> dict:
    """Satisfaction on the configured scale: every level (best first) with its count, the share in the top
    two levels, the mean score, and the trend per local day (per week for a long period)."""
    scale = reader.settings.policies.csat.scale
    sent, answered_of_sent = store.csat_sent(reader.conn, reader.scope, since, until)
    answers = store.csat_answers(reader.conn, reader.scope, since, until)
    counts = Counter(row[0] for row in answers)
    levels = [{"score": level.score, "label": csat_label(scale, level.score, language), "count": counts[level.score],
               "share": _share(counts[level.score], len(answers))} for level in scale]
    # A score the scale no longer has (the scale was changed) is still counted, with its stored label.
    stored = {row[0]: row[1] for row in answers}
    levels += [{"score": score, "label": stored[score] or "", "count": n, "share": _share(n, len(answers))}
               for score, n in sorted(counts.items(), reverse=True) if level_of(scale, score) is None]
    good = sum(1 for row in answers if is_top(scale, row[0]))
    return {
        "sent": sent,
        "responses": len(answers),
        "response_rate": _share(answered_of_sent, sent),
        "score": _share(good, len(answers)),
        "mean": round(statistics.fmean(counts.elements()), 2) if answers else None,
        "comments": store.csat_comments(reader.conn, reader.scope, since, until),
        "distribution": {str(e["score"]): {"label": e["label"], "count": e["count"]} for e in levels},
        "levels": levels,
        "trend": _csat_periods(answers, scale, since, until, reader.settings.reports.timezone),
    }


def _csat_periods(answers: Sequence, scale, since: datetime, until: datetime, tz: ZoneInfo) -> list[dict]:
    """Per local day (per Monday-started week for a period longer than CSAT_DAILY_UP_TO): responses, score, mean
    and the count of each level."""
    starts = _day_starts(since, until, tz)
    if until - since > CSAT_DAILY_UP_TO:
        starts = [s for i, s in enumerate(starts) if i == 0 or s.astimezone(tz).weekday() == 0]
    rows = [{"start": s.astimezone(tz).date().isoformat(), "responses": 0, "score": None, "mean": None,
             "counts": {str(level.score): 0 for level in scale}} for s in starts]
    scores: list[list[int]] = [[] for _ in starts]
    for rating, _label, at, _assignee in answers:
        index = max(i for i, s in enumerate(starts) if s <= at) if starts and at >= starts[0] else 0
        scores[index].append(rating)
    for row, mine in zip(rows, scores):
        row["responses"] = len(mine)
        row["score"] = _share(sum(1 for r in mine if is_top(scale, r)), len(mine))
        row["mean"] = round(statistics.fmean(mine), 2) if mine else None
        for r in mine:
            row["counts"][str(r)] = row["counts"].get(str(r), 0) + 1
    return rows


def _agent_csat(answers: Sequence, scale, name: str) -> dict:
    """One agent's satisfaction: the rated answers on tickets assigned to them."""
    mine = [row[0] for row in answers if row[3] == name]
    return {"responses": len(mine), "score": _share(sum(1 for r in mine if is_top(scale, r)), len(mine)),
            "mean": round(statistics.fmean(mine), 2) if mine else None}


_HOUR_US = 3600 * 10**6
_DAY_US = 24 * _HOUR_US
# 1970-01-01, the epoch's day, was a Thursday (weekday 3).
_EPOCH_WEEKDAY = 3


def _volume(created: Sequence[_Ticket], tz: ZoneInfo, starts_us: Sequence[int] = (),
            new: list[int] | None = None) -> dict:
    """The `volume` section: the tickets created (`created`) by mailbox, tag, local hour and weekday.  Given
    `new` (a count per local day, whose midnights are `starts_us`), each ticket is also counted on its day there,
    for the daily series: in the same pass rather than one more over 100,000 tickets."""
    by_mailbox = Counter(map(attrgetter("mailbox"), created))
    by_tag = Counter(tag for t in created for tag in t.tags)
    hours = [0] * 24
    days = [0] * 7
    # Each instant's local hour and weekday come from its UTC hour's offset, found once per UTC hour
    # (converting each of 100,000 instants was a tenth of the ticket figures' time), added to the instant in
    # microseconds.  An hour whose two ends have different offsets (a clock change inside it) is converted
    # instant by instant.  So is its day: the day whose midnight is the last not after the instant is found by
    # bisection once per UTC hour, instant by instant in an hour a midnight falls inside.
    seen: dict[int, tuple[int | None, int | None]] = {}
    for t in created:
        at = t.created_us
        key = at // _HOUR_US
        try:
            offset, day = seen[key]
        except KeyError:
            hour = per_ticket.instant(key * _HOUR_US)
            first = hour.astimezone(tz).utcoffset()
            last = per_ticket.instant(key * _HOUR_US + _HOUR_US - 1).astimezone(tz).utcoffset()
            offset = first // per_ticket.MICROSECOND if first == last else None
            day = bisect_right(starts_us, key * _HOUR_US) - 1
            if day != bisect_right(starts_us, key * _HOUR_US + _HOUR_US - 1) - 1:
                day = None
            seen[key] = offset, day
        if offset is not None:
            local = at + offset
            hours[local // _HOUR_US % 24] += 1
            days[(local // _DAY_US + _EPOCH_WEEKDAY) % 7] += 1
        else:
            local_at = per_ticket.instant(at).astimezone(tz)
            hours[local_at.hour] += 1
            days[local_at.weekday()] += 1
        if new is not None:
            new[day if day is not None else bisect_right(starts_us, at) - 1] += 1
    weekdays = dict(zip(WEEKDAYS, days))
    return {
        "by_mailbox": dict(sorted(by_mailbox.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_tag": dict(sorted(by_tag.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_hour": hours,
        "by_weekday": weekdays,
    }


def _escalations(reader: _Reader) -> dict:
    tally = reader.rollups.gather("escalations", reader.since, reader.until, reader.scope)
    targets, reasons = tally["targets"], tally["reasons"]
    triggers = {**dict.fromkeys(("manual", "sla", "tag", "rule"), 0), **tally["triggers"]}
    return {
        "count": tally["count"],
        "by_target": dict(sorted(targets.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_trigger": triggers,
        "top_reasons": [{"reason": r, "count": n}
                        for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]],
    }


@dataclass(slots=True)
class _History:
    """What the report takes from the tickets' status intervals (`_walk`), instants in microseconds."""

    seconds: dict[str, float]               # In each status inside [since, end), summed over tickets.
    resolved_days: list[int]                # The resolutions inside [since, until) per local day (_daily).
    solved: set[int]
    closed: set[int]
    reopened: set[int]
    resolved_us: dict[int, int]             # Each ticket's last resolution inside the period.
    backlog: list[int]                      # The backlog's differences per checkpoint (_daily adds them up).


def _walk(tickets: Iterable[_Ticket], since: datetime, until: datetime, end: datetime,
          checkpoints: Sequence[int], starts_us: Sequence[int]) -> _History:
    """One walk over every ticket's status intervals: the time in each status inside [since, end)
    (`time_in_status` in hours, and its handling statuses' shares, inboxd.reports.breakdowns.shares), the
    transitions inside [since, until) (solved, closed, resolved, reopened, and the resolutions per local day,
    whose midnights are `starts_us`), and for the daily backlog the checkpoints each unresolved interval covers.
    One walk instead of three: on 100,000 tickets the loops themselves were a fifth of the report.  (The
    resolutions are counted per day here rather than listed for _daily to count: 100,000 tuples made and
    walked again.)

    The intervals are those inboxd.reports.tickets.intervals makes of each ticket's creation and changes up
    to `end` (zero-length ones dropped), taken in order as they are made rather than built as a list first
    (400,000 tuples in a 90-day report, each made and freed for this walk alone)."""
    seconds = dict.fromkeys(STATUS_ORDER, 0.0)
    first, last, stop = per_ticket.micros(since), per_ticket.micros(end), per_ticket.micros(until)
    history = _History(seconds, [0] * len(starts_us), set(), set(), set(), {}, [0] * (len(checkpoints) + 1))
    backlog, per_day, resolved_us = history.backlog, history.resolved_days, history.resolved_us
    solved, closed, reopened = history.solved.add, history.closed.add, history.reopened.add
    for t in tickets:
        made = t.changes
        # The changes before `last`: those up to the first at or after it (intervals() stops there), usually all.
        n = len(made)
        if n and made[n - 2] >= last:
            n = next(k for k in range(0, n, 2) if made[k] >= last)
        before = None
        status, a = "new", t.created_us
        k = 0
        # The start of the current run of unresolved intervals: the backlog counts the checkpoints of a run at
        # once, as adjacent intervals' ranges of checkpoints add up to the run's (two bisections, not four, for
        # a ticket that went from new to open to solved).
        run = None
        while True:
            # The next interval [a, b) of `status`: up to the next change, else up to `last`.  So b <= last <=
            # stop, and an interval walked (b > a) starts before the period's end: only its start is compared
            # with the period's.
            b = made[k] if k < n else last
            if b > a:
                # Microseconds over 10**6, as timedelta.total_seconds() divides them: the same float.  (Every
                # status of STATUS_ORDER is in `seconds` already; another is added at its first interval.)
                low = a if a >= first else first
                if b > low:
                    try:
                        seconds[status] += (b - low) / 1_000_000
                    except KeyError:
                        seconds[status] = 0.0 + (b - low) / 1_000_000
                if status in RESOLVED:
                    if run is not None:
                        # The days whose checkpoint falls in the unresolved run [run, a): a range of checkpoints
                        # (they are in order), added up by _daily; asking `status_at` for every day of every
                        # ticket was a tenth of a 90-day report.
                        i, j = bisect_left(checkpoints, run), bisect_left(checkpoints, a)
                        if i < j:
                            backlog[i] += 1
                            backlog[j] -= 1
                        run = None
                    if before is not None and before != status and a >= first:
                        if status == "solved":
                            solved(t.pk)
                        elif status == "closed":
                            closed(t.pk)
                        if before not in RESOLVED:
                            resolved_us[t.pk] = a       # The last resolution in the period counts.
                            per_day[bisect_right(starts_us, a) - 1] += 1
                else:
                    if run is None:
                        run = a
                    # A change to an unresolved status is a reopening when it comes from a resolved one
                    # (is_reopen).
                    if before in RESOLVED and a >= first:
                        reopened(t.pk)
                before, end_of_last = status, b
            if k >= n:
                break
            # A change at the start of the current interval makes it zero-length: dropped, as intervals() does.
            status, a = made[k + 1], b
            k += 2
        if run is not None:
            i, j = bisect_left(checkpoints, run), bisect_left(checkpoints, end_of_last)
            if i < j:
                backlog[i] += 1
                backlog[j] -= 1
    return history


def _day_starts(since: datetime, until: datetime, tz: ZoneInfo) -> list[datetime]:
    """Local midnights from the day of `since` to the day before `until`, as UTC instants."""
    first = since.astimezone(tz).date()
    last = (until - timedelta(microseconds=1)).astimezone(tz).date()
    days = []
    day = first
    while day <= last:
        days.append(datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC))
        day += timedelta(days=1)
    return days


def _checkpoints(starts: Sequence[datetime], until: datetime, end: datetime) -> list[int]:
    """The instant each local day's backlog is taken at: the day's last microsecond (or `end`'s, for a day
    not over yet), in microseconds."""
    return [per_ticket.micros(min(s + timedelta(days=1), until, end) - timedelta(microseconds=1)) for s in starts]


def _daily(new: Sequence[int], history: _History, starts: Sequence[datetime], tz: ZoneInfo) -> list[dict]:
    """Per local day (`starts`: their midnights): tickets created (`new`, counted by _volume), tickets resolved
    and the backlog at the end of the day (or at `end` for a day not over yet), from the walk over the status
    intervals."""
    rows = [{"date": s.astimezone(tz).date().isoformat(), "created": 0, "resolved": 0, "backlog": 0} for s in starts]
    for row, count, made, done in zip(rows, accumulate(history.backlog), new, history.resolved_days):
        row["backlog"] = count
        row["created"] += made
        row["resolved"] += done
    return rows


def _agents(reader: _Reader, created: Sequence[_Ticket], resolved: Sequence[_Ticket], first_of: dict[int, float],
            resolution_of: dict[int, float]) -> dict[str, dict]:
    """Per agent: open tickets now, tickets resolved in the period, replies sent, and their times.

    Tickets count for their current assignee; replies for the agent who wrote them.
    """
    open_now = store.open_by_assignee(reader.conn, reader.scope)
    replies = Counter(reader.rollups.gather("replies", reader.since, reader.until, reader.scope))
    names = sorted({*open_now, *replies, *(t.assignee for t in resolved if t.assignee),
                    *(a.name for a in reader.settings.agents)} - {None})
    if reader.scope.agent is not None:
        names = [reader.scope.agent]
    answers = store.csat_answers(reader.conn, reader.scope, reader.since, reader.until)
    scale = reader.settings.policies.csat.scale
    # Each agent's first-response and resolution times, in the order of `created` and `resolved` as before.
    first_by, resolved_by = defaultdict(list), defaultdict(list)
    for t in created:
        seconds = first_of.get(t.pk)
        if seconds is not None:
            first_by[t.assignee].append(seconds)
    for t in resolved:
        resolved_by[t.assignee].append(resolution_of[t.pk])
    out = {}
    for name in names:
        mine = resolved_by.get(name, [])
        out[name] = {
            "open": open_now.get(name, 0),
            "resolved": len(mine),
            "replies": replies.get(name, 0),
            "first_response": summary(first_by.get(name, [])),
            "resolution": summary(mine),
            "csat": _agent_csat(answers, scale, name),
        }
    return out


# --- Trends for the weekly mail ----------------------------------------------------

def csat_trend(conn, settings: Settings, *, until: datetime, weeks: int = CSAT_TREND_WEEKS) -> list[dict]:
    """The CSAT score (share of the top two levels) of each of the `weeks` weeks before `until`, oldest first."""
    out = []
    for k in range(weeks, 0, -1):
        start, stop = until - timedelta(weeks=k), until - timedelta(weeks=k - 1)
        total, good = store.csat_week(conn, start, stop, top_scores(settings.policies.csat.scale))
        out.append({"week_start": start.date().isoformat(), "responses": total, "score": _share(good, total)})
    return out


# --- The weekly mail ----------------------------------------------------------------

def supervisors(settings: Settings) -> list:
    return [a for a in settings.agents if a.role in SUPERVISOR_ROLES]


@dataclass(frozen=True)
class WeeklyReport:
    """The weekly mail's content: the HTML shows the charts by cid:."""

    subject: str
    text: str
    html: str
    images: tuple[InlineImage, ...]


def weekly_report(engine: Engine, settings: Settings, now: datetime, *, since: datetime,
                  until: datetime, language: str = "en") -> WeeklyReport:
    """The weekly report for [since, until), with the per-agent section, rendered for the mail.

    The mail is multipart/alternative: text/plain, then multipart/related
    holding the HTML and its charts as PNG parts (see inboxd.outbound.compose).
    """
    return weekly_reports(engine, settings, now, since=since, until=until, languages=(language,))[language]


def weekly_reports(engine: Engine, settings: Settings, now: datetime, *, since: datetime, until: datetime,
                   languages: Sequence[str]) -> dict[str, WeeklyReport]:
    """The weekly report computed once and rendered in each of `languages` (its readers' own)."""
    with reading(engine) as conn:
        report = compute_report(conn, settings, since=since, until=until, now=now, include_agents=True)
        trend = csat_trend(conn, settings, until=until)
    out = {}
    for language in dict.fromkeys(languages):
        subject, text, html, images = render_report(settings, report, trend, language)
        out[language] = WeeklyReport(subject, text, html, tuple(InlineImage(cid, f"{name}.png", png)
                                                                for name, (cid, png) in images.items()))
    return out


def report_message_id(domain: str, recipient: str, since: datetime, until: datetime) -> str:
    """The report's Message-ID for one recipient and period, so queuing the same week twice
    gives the same id.  It is not of the form "inboxd.<ticket>.<token>@", so a reply to the
    report never threads onto a ticket."""
    digest = hashlib.sha256(f"{recipient.lower()}\0{_iso(since)}\0{_iso(until)}".encode()).hexdigest()
    return f"inboxd-report.{digest[:24]}@{domain}"


def render_report(settings: Settings, report: dict, trend: list[dict], language: str = "en"
                  ) -> tuple[str, str, str, dict[str, tuple[str, bytes]]]:
    """(subject, text, html, images) from templates/<language>/report/, the charts titled in
    `language` too; images are name -> (cid, PNG)."""
    from inboxd.reports import charts
    from inboxd.outbound.templates import Templates

    images = charts.report_charts(report, trend, language)
    report = _scale_labels_for(report, language)
    variables = mail_variables(report, trend, cids={name: cid for name, (cid, _) in images.items()},
                               labels={a.name: a.label for a in settings.agents})
    templates = Templates(settings.template_dirs)
    subject = " ".join(templates.render("report/subject.txt", variables, language=language).split())
    text = templates.render("report/body.txt", variables, language=language)
    html = templates.render("report/body.html", variables, language=language)
    return subject, text, html, images


def _scale_labels_for(report: dict, language: str) -> dict:
    """The report with the satisfaction labels (written in the mailbox's language) in a
    Traditional Chinese reader's script; other readers get it as it is."""
    from inboxd.desk.language import to_traditional

    if language != "zh-Hant" or "csat" not in report:
        return report
    csat = dict(report["csat"])
    csat["distribution"] = {k: {**v, "label": to_traditional(v["label"] or "")}
                            for k, v in csat.get("distribution", {}).items()}
    if "levels" in csat:
        csat["levels"] = [{**level, "label": to_traditional(level["label"] or "")} for level in csat["levels"]]
    return {**report, "csat": csat}


def embed_images(html: str, images: dict[str, tuple[str, bytes]]) -> str:
    """The HTML with each cid: reference replaced by a data: URI, for a standalone file."""
    for cid, png in images.values():
        html = html.replace(f"cid:{cid}", "data:image/png;base64," + base64.b64encode(png).decode("ascii"))
    return html


def mail_variables(report: dict, trend: list[dict], *, cids: dict[str, str],
                   labels: Mapping[str, str] | None = None) -> dict:
    """What the report templates see: the report itself plus ready-to-print strings.

    `labels` are the agents' display names by handle (`fmt.agents[name].label`);
    the report's own keys stay the handles, as in its JSON."""
    labels = labels or {}
    return {
        "report": report,
        "trend": trend,
        "cids": cids,
        "fmt": {
            "first_response": {k: hours(report["first_response"][k]) for k in ("median", "mean", "p90")},
            "resolution": {k: hours(report["resolution"][k]) for k in ("median", "mean", "p90")},
            "percent": {
                "fcr": percent(report["first_contact_resolution"]["rate"]),
                "reopen": percent(report["reopen_rate"]),
                "sla_first": percent(report["sla"]["first_response"]["attainment"]),
                "sla_resolution": percent(report["sla"]["resolution"]["attainment"]),
                "csat_score": percent(report["csat"]["score"]),
                "csat_rate": percent(report["csat"]["response_rate"]),
                "repeat": percent(report["repeat_complaints"]["rate"]),
            },
            # Repeat complaints by tag and field value, and time per status, as percentages.
            "repeat_by_tag": {tag: percent(r["rate"]) for tag, r in report["repeat_complaints"]["by_tag"].items()},
            "repeat_by_field": {name: {value: percent(r["rate"]) for value, r in values.items()}
                                for name, values in report["repeat_complaints"]["by_field"].items()},
            "status_share": {status: percent(share) for status, share in report["time_in_status_share"].items()},
            "field_csat": {name: {value: percent(e["csat_score"]) for value, e in values.items()}
                           for name, values in report["by_field"].items()},
            "agents": {name: {"label": labels.get(name, name),
                              "first": hours(a["first_response"]["median"]),
                              "resolution": hours(a["resolution"]["median"]),
                              "csat": percent(a["csat"]["score"])}
                       for name, a in report.get("agents", {}).items()},
            "since": report["period"]["since"][:10],
            "until": (datetime.fromisoformat(report["period"]["until"]) - timedelta(seconds=1)).date().isoformat(),
        },
    }


def hours(seconds: float | None) -> str:
    """A duration for a table cell: "-", "45m", "3.5h" or "2.1d"."""
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def parse_day(text: str, tz: ZoneInfo = ZoneInfo("UTC")) -> datetime:
    """A --since/--until value: a date (local midnight in `tz`) or an ISO 8601 instant (UTC if no zone)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since/--until: {text} is not a date such as 2026-11-23"
                         " or an instant such as 2026-11-23T09:00Z") from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
