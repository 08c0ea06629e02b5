"""Per-day rollups of the report's event figures: each complete local day counted once, kept in report_rollup.

A long report (the 90-day one) spent most of its time counting the same
events again: the agents' replies, the escalations and the resolutions
behind the backlog ratio.  Those figures come from the audit events only,
which are append-only, so a day's share never changes once the day is over.
`fill` stores each complete day's share (the scheduler's daily duty and the
weekly report call it); `gather` answers a period from the stored days plus
the two partial days at its edges, counted live.  Any doubt falls back to
counting the whole period live, which gives the same figures:

- a day is used only when every day between the first and last complete day
  of the period has its row (of this fingerprint);
- a row is stale when an event written after it (a larger id than its
  watermark) is dated before the day's end; `fill` recounts such days;
- rows are keyed by a fingerprint of what changes a day's share (the
  reporting time zone, which places the days, and ROLLUP_VERSION, the
  format), so a configuration change makes the old rows unused (and `fill`
  drops them).

Only the whole-desk report uses rollups: a report for one mailbox, team or
agent selects tickets by their current values, which change.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from inboxd.config import Settings
from inboxd.desk.history import status_after
from inboxd.reports import tickets
from inboxd.store import reports as store
from inboxd.store import rollups as table
from inboxd.store.engine import reading, writing
from inboxd.store.reports import Scope

log = logging.getLogger(__name__)

ROLLUP_VERSION = 1
RESOLVED = ("solved", "closed")
ESCALATION_TRIGGERS = ("manual", "sla", "tag", "rule")
# A day is rolled up only this long after it ended: a transaction still open
# at the day's end (its events dated in the day) has committed by then.
SETTLE = timedelta(hours=1)
# How far back the scheduler's daily duty keeps days rolled up.
FILL_DAYS = 100


def fingerprint(settings: Settings) -> str:
    """What a day's share depends on besides the events: the time zone that places the days, and the format."""
    key = json.dumps({"version": ROLLUP_VERSION, "timezone": settings.reports.timezone.key}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def complete_days(since: datetime, until: datetime, now: datetime, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """(start, end) as UTC instants of the local days wholly inside [since, until) that ended SETTLE before now."""
    limit = min(until, now - SETTLE)
    day = since.astimezone(tz).date()
    out = []
    while True:
        start = _midnight(day, tz)
        end = _midnight(day + timedelta(days=1), tz)
        if end > limit:
            return out
        if start >= since:
            out.append((start, end))
        day += timedelta(days=1)


def _midnight(day, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


# --- The figures: each computed live for any range, stored as JSON, and added up ------------

def escalation_tally(details: Iterable[str | None]) -> dict:
    """The escalations' count, targets, triggers and reasons (Counters) from their detail JSON."""
    targets, reasons, triggers = Counter(), Counter(), Counter()
    count = 0
    for detail in details:
        parsed = json.loads(detail or "{}")
        count += 1
        targets[str(parsed.get("to", ""))] += 1
        triggers[_trigger(parsed)] += 1
        reason = " ".join(str(parsed.get("reason", "")).split())
        if reason:
            reasons[reason] += 1
    return {"count": count, "targets": targets, "triggers": triggers, "reasons": reasons}


def _trigger(detail: dict) -> str:
    """What triggered an escalation: recorded since tiers (inboxd.desk.escalation); before
    them only the SLA duties and agents escalated, and the duties' reasons say "SLA breached"."""
    if detail.get("trigger"):
        return str(detail["trigger"])
    return "sla" if "SLA breached" in str(detail.get("reason", "")) else "manual"


def resolved_tickets(rows: Iterable) -> set[int]:
    """The tickets of (ticket_id, action, detail) rows that reached solved or closed from an unresolved status."""
    done = set()
    for pk, action, detail in rows:
        parsed = json.loads(detail or "{}")
        before = parsed.get("status_before") or ((parsed.get("changes") or {}).get("status") or {}).get("before")
        if status_after(action, parsed) in RESOLVED and before not in RESOLVED:
            done.add(pk)
    return done


@dataclass(frozen=True)
class Kind:
    """One rolled-up figure: how to count it live over [since, until) for a scope, and how to store and add it up."""

    live: Callable[[Connection, Scope, datetime, datetime], Any]
    dump: Callable[[Any], Any]
    load: Callable[[Any], Any]
    add: Callable[[list], Any]


def _add_tallies(parts: list[dict]) -> dict:
    out = {"count": 0, "targets": Counter(), "triggers": Counter(), "reasons": Counter()}
    for part in parts:
        out["count"] += part["count"]
        for key in ("targets", "triggers", "reasons"):
            out[key].update(part[key])
    return out


KINDS: dict[str, Kind] = {
    "replies": Kind(
        live=lambda conn, scope, a, b: Counter(store.reply_counts(conn, scope, a, b)),
        dump=dict, load=Counter, add=lambda parts: sum(parts, Counter())),
    "escalations": Kind(
        live=lambda conn, scope, a, b: escalation_tally(store.escalation_details(conn, scope, a, b)),
        dump=lambda v: {**v, **{k: dict(v[k]) for k in ("targets", "triggers", "reasons")}},
        load=lambda v: {**v, **{k: Counter(v[k]) for k in ("targets", "triggers", "reasons")}},
        add=_add_tallies),
    "resolved": Kind(
        live=lambda conn, scope, a, b: resolved_tickets(store.status_events_between(conn, scope, a, b)),
        dump=sorted, load=set, add=lambda parts: set().union(*parts)),
}


# What each figure of a day without events is, as stored.
EMPTY = {kind: json.dumps(k.dump(k.add([])), ensure_ascii=False, sort_keys=True)
         for kind, k in KINDS.items()}


# --- Reading ----------------------------------------------------------------------------------

@dataclass
class Rollups:
    """The stored days one report reads (through its connection); `enabled=False` counts everything live."""

    conn: Connection
    settings: Settings
    now: datetime
    enabled: bool = True
    used: list[str] = field(default_factory=list)       # The kinds answered from stored days (for tests).
    _fresh: dict[int, datetime | None] = field(default_factory=dict)

    def gather(self, kind: str, since: datetime, until: datetime, scope: Scope) -> Any:
        """The figure `kind` over [since, until) for `scope`: stored days plus live edges, else all live."""
        k = KINDS[kind]
        days = complete_days(since, until, self.now, self.settings.reports.timezone) if self.enabled else []
        if not days or scope != Scope():
            return k.live(self.conn, scope, since, until)
        rows = table.read(self.conn, fingerprint(self.settings), [kind], days[0][0], days[-1][0])
        if len(rows) != len(days) or any((kind, start) not in rows for start, _ in days):
            return k.live(self.conn, scope, since, until)
        for start, end in days:
            watermark = rows[(kind, start)][1]
            if watermark not in self._fresh:
                self._fresh[watermark] = table.earliest_event_after(self.conn, watermark)
            later = self._fresh[watermark]
            if later is not None and later < end:
                return k.live(self.conn, scope, since, until)
        parts = [k.load(json.loads(rows[(kind, start)][0])) for start, _ in days]
        if since < days[0][0]:
            parts.append(k.live(self.conn, scope, since, days[0][0]))
        if days[-1][1] < until:
            parts.append(k.live(self.conn, scope, days[-1][1], until))
        self.used.append(kind)
        return k.add(parts)


# --- Filling ----------------------------------------------------------------------------------

def fill(engine: Engine, settings: Settings, *, since: datetime, until: datetime, now: datetime) -> int:
    """Store every complete day of [since, until) not stored yet or stale; returns the days (re)counted.

    One transaction per day with events, so the store's write lock is never
    held for long; the days before the first event share one."""
    fp = fingerprint(settings)
    days = complete_days(since, until, now, settings.reports.timezone)
    if not days:
        return 0
    with writing(engine) as conn:
        table.forget_others(conn, fp)
    with reading(engine) as conn:
        newest = table.newest_event(conn)
        rows = table.read(conn, fp, list(KINDS), days[0][0], days[-1][0])
        later = {w: table.earliest_event_after(conn, w) for w in {w for _, w in rows.values()}}
    counted = 0
    current = []
    stale_days = []
    for start, end in days:
        stale = [kind for kind in KINDS
                 if (kind, start) not in rows
                 or (later[rows[(kind, start)][1]] is not None and later[rows[(kind, start)][1]] < end)]
        current += [(kind, start) for kind in KINDS if kind not in stale and rows[(kind, start)][1] < newest]
        if stale:
            stale_days.append((start, end, stale))
    if stale_days:
        # The days before the first event (all of them on a new store, the years before a desk began)
        # have nothing to count: their empty figures are written together, in one transaction, in
        # which the first event's date is read, so an event written meanwhile is either seen or newer
        # than the watermark.
        with writing(engine) as conn:
            watermark = table.newest_event(conn)
            first = table.earliest_event_since(conn, stale_days[0][0])
            for start, end, stale in stale_days:
                if first is not None and end > first:
                    break
                for kind in stale:
                    table.write(conn, fp, kind, start, EMPTY[kind], watermark, now)
                counted += 1
        stale_days = stale_days[counted:]
    for start, end, stale in stale_days:
        with writing(engine) as conn:
            # The watermark is read before counting: an event written meanwhile is then newer than it,
            # and if it is dated inside the day the next check recounts the day.
            watermark = table.newest_event(conn)
            for kind in stale:
                k = KINDS[kind]
                data = json.dumps(k.dump(k.live(conn, Scope(), start, end)), ensure_ascii=False, sort_keys=True)
                table.write(conn, fp, kind, start, data, watermark, now)
        counted += 1
    if current:
        # The rows found current stay so up to `newest`: stamping them with it keeps the report's
        # check (the earliest event after each watermark) to the events written since this fill.
        with writing(engine) as conn:
            table.restamp(conn, fp, current, newest)
    return counted


def fill_recent(engine: Engine, settings: Settings, now: datetime, days: int = FILL_DAYS) -> int:
    """Keep the last `days` days rolled up."""
    return fill(engine, settings, since=now - timedelta(days=days), until=now, now=now)


# The scheduler rolls the days up at night in the reporting time zone, once a night per process:
# the first night after an upgrade counts FILL_DAYS days (seconds on a busy desk), the others one.
NIGHT = (time(1, 0), time(6, 0))
_filled: dict[tuple[int, str], date] = {}


def fill_nightly(engine: Engine, settings: Settings, now: datetime) -> int:
    """The scheduler's duty (inboxd.desk.duties): `fill_recent` and the per-ticket rows
    (inboxd.reports.tickets.fill) once a night; the days (re)counted.

    A failure is logged and left for the next night: the reports then count those days live."""
    local = now.astimezone(settings.reports.timezone)
    key = (id(engine), fingerprint(settings))
    if not NIGHT[0] <= local.time() < NIGHT[1] or _filled.get(key) == local.date():
        return 0
    try:
        counted = fill_recent(engine, settings, now)
    except Exception:
        log.warning("rolling up the report's days failed; the reports count them live", exc_info=True)
        return 0
    # The per-ticket rows (inboxd.reports.tickets) of the tickets a report of the same days reads.
    try:
        tickets.fill(engine, now, since=now - timedelta(days=FILL_DAYS))
    except Exception:
        log.warning("rolling up the report's tickets failed; the reports read their events", exc_info=True)
    _filled[key] = local.date()
    return counted
