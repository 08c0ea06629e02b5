"""The report's shortcuts of round 6 give what the longer ways gave.

- The status walk (`metrics._walk`) takes each ticket's intervals as it makes them from the ticket's
  changes; for random histories and periods its figures are those of walking the intervals that
  inboxd.reports.tickets.intervals builds (the code before, kept here as the reference).
- A whole-desk report takes its customers' tickets from the tickets it read and asks the store only
  for the others (`customer_tickets_elsewhere`): together they are `customer_tickets`'s rows, on
  stores with tickets created after the period, updated before they were created, merged, and
  requesters in mixed and non-ASCII case, on SQLite and PostgreSQL.
- Its repeat complaints, matched only for customers with another ticket, equal those matched the
  way the code before did (every customer's tickets from `customer_tickets`, as datetimes).
- The per-ticket rows' check for newer status events reads them by the event table's primary key (SQLite).
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update

from inboxd.reports import breakdowns, metrics, tickets
from inboxd.store import reports as store
from inboxd.store import rollups
from inboxd.store.engine import reading, writing
from inboxd.store.reports import Scope
from inboxd.store.sql import t

from tests.test_report_rollups import NOW, report, seed, settings_for

STATUSES = ("new", "open", "pending", "solved", "closed")


def reference_walk(tickets_, since, until, end, checkpoints, starts_us):
    """The walk of the code before round 6, over the intervals built first (and, as before round 7, the
    transitions listed, the resolutions then counted per day by bisection)."""
    seconds = dict.fromkeys(metrics.STATUS_ORDER, 0.0)
    first, last, stop = tickets.micros(since), tickets.micros(end), tickets.micros(until)
    history = metrics._History(seconds, [0] * len(starts_us), set(), set(), set(), {},
                               [0] * (len(checkpoints) + 1))
    changes = []
    for ticket in tickets_:
        before = None
        for status, a, b in tickets.intervals(ticket.created_us, ticket.changes, last):
            low, high = max(a, first), min(b, last)
            if high > low:
                seconds[status] = seconds.get(status, 0.0) + (high - low) / 1_000_000
            if status not in metrics.RESOLVED:
                i, j = bisect_left(checkpoints, a), bisect_left(checkpoints, b)
                if i < j:
                    history.backlog[i] += 1
                    history.backlog[j] -= 1
            if before is not None and before != status and first <= a < stop:
                changes.append((before, status, a))
                if status == "solved":
                    history.solved.add(ticket.pk)
                elif status == "closed":
                    history.closed.add(ticket.pk)
                if status in metrics.RESOLVED and before not in metrics.RESOLVED:
                    history.resolved_us[ticket.pk] = a
                if metrics.is_reopen(before, status):
                    history.reopened.add(ticket.pk)
            before = status
    for before, after, at in changes:
        if after in metrics.RESOLVED and before not in metrics.RESOLVED:
            history.resolved_days[bisect_right(starts_us, at) - 1] += 1
    return history


@pytest.mark.parametrize("seed_", range(8))
def test_the_walk_over_changes_equals_the_walk_over_built_intervals(seed_):
    rng = random.Random(seed_)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    since = base + timedelta(days=rng.randrange(0, 5), seconds=rng.randrange(86400))
    until = since + timedelta(days=rng.randrange(1, 20), seconds=rng.randrange(86400))
    end = min(until, since + timedelta(days=rng.randrange(0, 25)))
    starts = metrics._day_starts(since, until, metrics.ZoneInfo("Europe/Berlin"))
    checkpoints = metrics._checkpoints(starts, until, end)
    made = []
    for pk in range(1, 300):
        created = tickets.micros(base) + rng.randrange(30 * 86400) * 10**6
        changes, at = [], created
        for _ in range(rng.choice((0, 0, 1, 2, 3, 4, 6))):
            # Changes in the same instant as the one before (or as the creation), and random statuses.
            at += rng.choice((0, 0, rng.randrange(1, 5 * 86400 * 10**6)))
            changes += [at, rng.choice(STATUSES + ("archived",))]   # A status the report does not know, too.
        ticket = metrics._Ticket(pk, "support", [], None, created, None, None)
        ticket.changes = changes or ()
        made.append(ticket)
    starts_us = [tickets.micros(s) for s in starts]
    assert (metrics._walk(made, since, until, end, checkpoints, starts_us)
            == reference_walk(made, since, until, end, checkpoints, starts_us))


def odd_tickets(engine) -> None:
    """What a desk may also hold: requesters in mixed and non-ASCII case, a ticket updated before it was
    created (a Date header from the future), tickets created after the period, a merge."""
    with writing(engine) as conn:
        ticket = t.ticket
        conn.execute(update(ticket).where(ticket.c.id % 5 == 0).values(requester="C3@Example.ORG"))
        conn.execute(update(ticket).where(ticket.c.id % 7 == 0).values(requester="Ärger@Example.org"))
        conn.execute(update(ticket).where(ticket.c.id % 11 == 0).values(requester="ärger@example.org"))
        conn.execute(update(ticket).where(ticket.c.id == 4).values(
            status="closed", created_at=NOW - timedelta(days=3), updated_at=NOW - timedelta(days=40)))
        conn.execute(update(ticket).where(ticket.c.id.in_([6, 9])).values(
            created_at=NOW + timedelta(hours=2), updated_at=NOW + timedelta(hours=3)))
        conn.execute(update(ticket).where(ticket.c.id == 10).values(merged_into=3))


@pytest.mark.parametrize("chunk", [store.CHUNK, 2])
def test_the_desk_s_tickets_and_the_others_are_the_customers_tickets(engine, monkeypatch, chunk):
    monkeypatch.setattr(store, "CHUNK", chunk)
    seed(engine, random.Random(11))
    odd_tickets(engine)
    since, until = NOW - timedelta(days=20), NOW - timedelta(days=1)
    with reading(engine) as conn:
        us = store.micros_converter(conn)
        live = [(row[0], row[9], us(row[4]), row[10]) for row in store.live_tickets(conn, Scope(), since, until)]
        customers = sorted({customer for _, customer, _, _ in live}
                           | {"c3@example.org", "ärger@example.org", "nobody@x"})
        for after in (since, since + timedelta(days=5), until - timedelta(hours=3)):
            expected = sorted(store.customer_tickets(conn, customers, after))
            first = tickets.micros(after)
            mine = [row for row in live if row[2] > first and row[1] in customers]
            others = store.customer_tickets_elsewhere(conn, set(customers), after, since, until)
            got = sorted([*others, *((pk, customer, tickets.instant(us), merged) for pk, customer, us, merged in mine)])
            assert got == expected
            assert others, "the store has tickets outside the period"


def reference_repeated(reader, tickets_, customer_of, resolved_us, window):
    """Repeat complaints' matching as the code before round 6 did it: every customer's tickets from the
    store, instants as datetimes."""
    resolved_at = {pk: tickets.instant(us) for pk, us in resolved_us.items()}
    first = min(resolved_at.values(), default=reader.end)
    contacts = [breakdowns.Contact(*row)
                for row in store.customer_tickets(reader.conn, sorted(set(customer_of.values())), first)]
    return breakdowns.repeated_tickets(resolved_at, customer_of, contacts, window, reader.now)


@pytest.mark.parametrize("seed_, timezone", [(5, "UTC"), (6, "Asia/Shanghai")])
def test_repeat_complaints_equal_those_matched_over_every_customer_s_tickets(engine, tmp_path, monkeypatch,
                                                                              seed_, timezone):
    seed(engine, random.Random(seed_), tickets=120)
    odd_tickets(engine)
    settings = settings_for(tmp_path, timezone)
    for since in (NOW - timedelta(days=30, hours=7), NOW - timedelta(days=6)):
        for scope in ({}, {"mailbox": "support"}):
            got = report(engine, settings, since, use=False, **scope)
            with monkeypatch.context() as patched:
                patched.setattr(metrics, "_repeated", reference_repeated)
                expected = report(engine, settings, since, use=False, **scope)
            assert got == expected
            assert got["repeat_complaints"]["repeated"] > 0


def test_the_rows_check_reads_the_newer_events_by_primary_key(engine):
    """SQLite, asked directly for the tickets with a status event after a watermark, walked the whole partial
    status index; the report's check reads the events after the watermark by primary key."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner: PostgreSQL chooses by its statistics")
    seed(engine, random.Random(3))
    statements = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        with reading(engine) as conn:
            newest = conn.execute(select(func.max(t.event.c.id))).scalar_one()
            assert rollups.newer_status_events(conn, newest - 5) == {
                pk: newest_id for pk, newest_id in conn.execute(
                    select(t.event.c.ticket_id, func.max(t.event.c.id))
                    .where(t.event.c.id > newest - 5, store.may_change_status())
                    .group_by(t.event.c.ticket_id))}
            statement, parameters = statements[-2]
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                                         parameters))
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert "INTEGER PRIMARY KEY" in plan, plan
    assert "ix_event_status_change" not in plan, plan
