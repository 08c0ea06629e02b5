"""Per-ticket rollups of the report's status history: each ticket's status changes, kept in report_ticket.

A long report over a desk with a real history read every status event of
every ticket of the period (an "open" and a "solved" per resolved ticket,
an auto-close per closed one: ~360,000 rows and their JSON for a 90-day
report over 100,000 tickets) to rebuild each ticket's status intervals.  A
ticket's changes depend on its own events and creation only, not on the
period, the scope or the configuration, so they are stored once per ticket
(`fill`, the scheduler's nightly duty, in batches) and the report reads one
row per ticket (`status_changes`).  A row is used only when it is current:

- its `version` is the ticket's (every change of a ticket bumps it);
- no event that can change a status was written after its `watermark`
  (the newest event id when it was written), which holds even for a path
  that wrote a status event without bumping the version;
- its format is FORMAT and its creation instant is the ticket's.

A row also holds the ticket's count of agent messages (first-contact
resolution counts them per resolved ticket), used only while the ticket's
`message_count` is the row's too: the sender adds an outgoing message
without bumping the version, but every message added, filed or moved by a
merge changes the count, and none is ever deleted or changes its kind.

Any other ticket is read from its events, as without rollups; the figures
are the same either way (tests compare them).  The report never writes.

Instants are integers, microseconds since the epoch: the report's status
figures add and compare them without making a datetime per change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from inboxd.desk.history import status_after
from inboxd.store import reports as store
from inboxd.store import rollups as table
from inboxd.store.engine import reading, writing
from inboxd.store.reports import Scope

log = logging.getLogger(__name__)

# The format of a row's data: [FORMAT, created, message_count, agent messages, at, status, at, status, ...].
# A row of another format is not used (and the next fill rewrites it).
FORMAT = 2
# Tickets per fill transaction: a batch's write holds the store's write lock for a few milliseconds.
BATCH = 2000
# When more than this share of a report's tickets has no current row, their events are read with one
# query over the period (as without rollups) rather than by ticket id.
LIVE_SHARE = 0.25

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """An aware instant as microseconds since the epoch (exact: timedelta's own resolution)."""
    return (at - EPOCH) // MICROSECOND


def instant(us: int) -> datetime:
    """The aware UTC datetime of microseconds since the epoch (micros' inverse)."""
    return EPOCH + timedelta(microseconds=us)


def changes_from_events(created: int, events: Iterable[tuple[int, str, dict]]) -> list:
    """The status changes [at, status, at, status, ...] a ticket created at `created` makes of its events
    ((at, action, detail) in time order, instants in microseconds).

    It is inboxd.desk.history.status_intervals without the period's end: an event counts when it names a
    status (status_after) other than the current one and is not dated before the creation.  Whether an
    event counts depends only on those before it, so the changes before any end are a prefix of these.
    """
    out: list = []
    status = "new"
    for at, action, detail in events:
        after = status_after(action, detail)
        if after is None or after == status or at < created:
            continue
        out.append(at)
        out.append(after)
        status = after
    return out


def intervals(created: int, changes: Sequence, end: int) -> list[tuple[str, int, int]]:
    """The half-open status intervals (status, start, end) up to `end` from a ticket's changes: what
    status_intervals gives for the events before `end`, in microseconds (zero-length intervals dropped)."""
    out = []
    status, start = "new", created
    for i in range(0, len(changes), 2):
        at = changes[i]
        if at >= end:
            break
        if at > start:
            out.append((status, start, at))
        status, start = changes[i + 1], at
    if end > start:
        out.append((status, start, end))
    return out


def encode(created: int, messages: int, agent_messages: int, changes: Sequence) -> str:
    return json.dumps([FORMAT, created, messages, agent_messages, *changes], ensure_ascii=False)


def _events_by_ticket(rows: Iterable[tuple]) -> dict[int, list[tuple[int, str, dict]]]:
    """(ticket_id, at, action, detail) rows grouped per ticket, instants in microseconds, each distinct
    detail decoded once (a desk's status events repeat a few)."""
    details: dict[str, dict] = {}
    out: dict[int, list] = {}
    for pk, at, action, detail in rows:
        text = detail or "{}"
        decoded = details.get(text)
        if decoded is None:
            decoded = details[text] = json.loads(text)
        out.setdefault(pk, []).append((micros(at), action, decoded))
    return out


def _decode(texts: list[str]) -> list:
    """The JSON values of `texts`, None for one that is not JSON.  Decoded as one array: json.loads's own
    cost per call was half the time of decoding 100,000 short rows one by one."""
    try:
        values = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        values = None
    # A text that is not one JSON value (such as "1, 2") would shift the others: each is decoded alone then.
    if type(values) is not list or len(values) != len(texts):
        values = [_decode_one(text) for text in texts]
    return values


def _decode_one(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


# --- Reading (the report) ------------------------------------------------------------------------------

@dataclass
class Read:
    """What the report takes from the per-ticket rows and events (`status_changes`)."""

    changes: dict[int, list]        # Each ticket's status changes (tickets without any absent).
    agent_messages: dict[int, int]  # The agent messages of the tickets whose row counts them currently.
    rows_used: int                  # The tickets whose changes came from their row (for tests).


def status_changes(conn: Connection, scope: Scope, since: datetime, until: datetime, end: datetime,
                   tickets: Mapping[int, Any], ids: Sequence[int], watermarks: Sequence[int],
                   texts: Sequence[str]) -> Read:
    """The status changes of the tickets alive in [since, until) (`tickets`: id -> the report's ticket, with its
    `created_us` (its creation in microseconds) and `message_count`), from their current rows where stored,
    else from their events before `end`.  The tickets' stored rows of the ticket's version, as
    inboxd.store.reports.live_tickets reads them, come as three lists: their `ids`, `watermarks` and data
    (`texts`), rather than a tuple each (100,000 made, unpacked and freed)."""
    out: dict[int, list] = {}
    agents: dict[int, int] = {}
    current: set[int] = set()
    if ids:
        # The events written since the oldest watermark: nightly fills keep them to about a day's.  (The oldest
        # of every candidate row, not only of the well-formed ones: an older bound reads more events, but a
        # ticket's newest event after its own watermark is the same.)
        newer = table.newer_status_events(conn, min(watermarks))
        for pk, watermark, stored in zip(ids, watermarks, _decode(texts)):
            ticket = tickets.get(pk)
            if ticket is None:
                continue
            if (type(stored) is list and len(stored) >= 4 and stored[0] == FORMAT
                    and stored[1] == ticket.created_us and newer.get(pk, 0) <= watermark):
                current.add(pk)
                if len(stored) > 4:
                    out[pk] = stored[4:]
                if stored[2] == ticket.message_count:
                    agents[pk] = stored[3]
    if len(current) == len(tickets):
        return Read(out, agents, len(current))   # Every ticket's row was current (`current` holds only tickets').
    missing = [pk for pk in tickets if pk not in current]
    if len(missing) > LIVE_SHARE * len(tickets):
        rows = (row for row in store.live_status_events(conn, scope, since, until, end) if row[0] not in current)
    else:
        rows = store.status_events_of(conn, missing, end)
    for pk, events in _events_by_ticket(rows).items():
        ticket = tickets.get(pk)
        if ticket is not None:
            changes = changes_from_events(ticket.created_us, events)
            if changes:
                out[pk] = changes
    return Read(out, agents, len(current))


# --- Filling (the scheduler's nightly duty) ----------------------------------------------------------

def fill(engine: Engine, now: datetime, *, since: datetime, batch: int = BATCH) -> int:
    """Store the current row of every ticket a report from `since` on reads that has none (or a stale one);
    returns the rows written.

    Batches of `batch` tickets in id order: each is read in one read transaction (the newest event id
    first, then the tickets' versions, then their events, so an event written meanwhile is either seen or
    after the watermark) and written in one short write transaction.  Rows found current get the new
    watermark, which keeps the report's check for newer events to the events written since this fill."""
    first_id, written = 0, 0
    while True:
        with reading(engine) as conn:
            newest = table.newest_event(conn)
            tickets = table.tickets_from(conn, first_id, batch, since)
            if not tickets:
                return written
            ids = [pk for pk, _, _, _ in tickets]
            stored = table.ticket_rows(conn, ids)
            newer = (table.newer_status_events(conn, min(w for _, w, _ in stored.values()), ids[0], ids[-1])
                     if stored else {})
            keep, need = [], []
            for pk, version, messages, created_at in tickets:
                created = micros(created_at)
                row = stored.get(pk)
                if (row is not None and row[0] == version and newer.get(pk, 0) <= row[1]
                        and row[2].startswith(f"[{FORMAT}, {created}, {messages}, ")):
                    if row[1] < newest:
                        keep.append(pk)
                else:
                    need.append((pk, version, messages, created))
            wanted = [pk for pk, _, _, _ in need]
            events = _events_by_ticket(store.status_events_of(conn, wanted)) if need else {}
            agent_messages = store.agent_reply_counts(conn, wanted)
        rows = [{"ticket_id": pk, "version": version, "watermark": newest,
                 "data": encode(created, messages, agent_messages.get(pk, 0),
                                changes_from_events(created, events.get(pk, ()))),
                 "computed_at": now}
                for pk, version, messages, created in need]
        if rows or keep:
            with writing(engine) as conn:
                table.write_tickets(conn, rows)
                table.restamp_tickets(conn, keep, newest)
        written += len(rows)
        first_id = ids[-1] + 1


def forget(engine: Engine) -> int:
    """Drop every per-ticket row: safe, the reports read the tickets' events until the next fill."""
    with writing(engine) as conn:
        return table.forget_tickets(conn)
