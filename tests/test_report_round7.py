"""The report's shortcuts of round 7 give what the longer ways gave.

- `live_tickets` has the database count each ticket's two instants in microseconds since the epoch (SQLite's
  stored text, PostgreSQL's timestamp): they are what inboxd.reports.tickets.micros makes of the instants the
  column type reads, for instants at the edges of a second, before 1970, far ahead, and (SQLite) stored text
  of another shape, which comes as text and is parsed as before.
- The report takes each ticket's requester in Python's lower case from the database's lower case when the
  two must agree, and lists the tickets whose two lower cases differ (non-ASCII requesters): the lists are
  those of comparing the two for every ticket.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update

from inboxd.reports import metrics, tickets
from inboxd.store import reports as store
from inboxd.store.engine import reading, writing
from inboxd.store.reports import Scope
from inboxd.store.sql import t

from tests.test_report_rollups import NOW, seed, settings_for

INSTANTS = [
    datetime(2026, 3, 1, tzinfo=UTC),
    datetime(2026, 3, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 1, 23, 59, 59, 999500, tzinfo=UTC),
    datetime(2026, 3, 1, 23, 59, 59, 499, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    datetime(1960, 1, 1, 12, tzinfo=UTC),
    datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


def test_the_database_counts_the_instants_as_micros_does(engine):
    seed(engine, random.Random(7), tickets=40)
    rng = random.Random(8)
    with writing(engine) as conn:
        ticket = t.ticket
        for pk, at in enumerate(INSTANTS, 1):
            first = rng.choice((None, at + timedelta(microseconds=rng.randrange(10**7)), INSTANTS[-pk]))
            conn.execute(update(ticket).where(ticket.c.id == pk).values(
                created_at=at, first_response_at=first, updated_at=NOW, status="open"))
        if engine.dialect.name == "sqlite":
            # Stored text of another shape than SQLAlchemy writes: no fraction, a "T", a short fraction.
            conn.execute(text("UPDATE ticket SET created_at = '2026-03-02 10:00:00' WHERE id = 20"))
            conn.execute(text("UPDATE ticket SET created_at = '2026-03-02T10:00:00.250000' WHERE id = 21"))
            conn.execute(text("UPDATE ticket SET first_response_at = '2026-03-02 11:00:00.5' WHERE id = 22"))
    since, until = datetime(1950, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    with reading(engine) as conn:
        us = store.micros_converter(conn)
        got = {row[0]: (us(row[4]), None if row[5] is None else us(row[5]))
               for row in store.live_tickets(conn, Scope(), since, until)}
        kinds = {type(row[4]) for row in store.live_tickets(conn, Scope(), since, until)}
        ticket = t.ticket
        expected = {pk: (tickets.micros(created), None if first is None else tickets.micros(first))
                    for pk, created, first in conn.execute(
                        select(ticket.c.id, ticket.c.created_at, ticket.c.first_response_at))}
    assert got == expected
    assert len(got) == 40
    if engine.dialect.name != "sqlite":
        assert kinds == {int}
    elif engine.dialect.dbapi.sqlite_version_info >= store._UNIXEPOCH:
        assert kinds == {int, str}   # The text of another length comes as text.


def test_the_requesters_lower_cases_are_those_compared_for_every_ticket(engine, tmp_path):
    from tests.test_report_round6 import odd_tickets

    seed(engine, random.Random(9), tickets=80)
    odd_tickets(engine)
    with writing(engine) as conn:
        ticket = t.ticket
        conn.execute(update(ticket).where(ticket.c.id % 13 == 0).values(requester="KELVIN@Example.org"))
        conn.execute(update(ticket).where(ticket.c.id % 17 == 0).values(requester="İst@example.org"))
    settings = settings_for(tmp_path, "UTC")
    with reading(engine) as conn:
        reader = metrics._Reader(conn, settings, Scope(), NOW - timedelta(days=60), NOW, NOW)
        read = reader.tickets()
        rows = {row[0]: row for row in store.live_tickets(conn, Scope(), NOW - timedelta(days=60), NOW)}
    assert read.keys() == rows.keys()
    for pk, ticket in read.items():
        assert ticket.requester == rows[pk][7].lower()
        assert ticket.customer == rows[pk][9]
    assert reader.unlike == [pk for pk in rows if rows[pk][7].lower() != rows[pk][9]]
    assert reader.unlike, "the store has non-ASCII requesters"
    assert reader.created == [ticket for ticket in read.values()
                              if tickets.micros(NOW - timedelta(days=60)) <= ticket.created_us < tickets.micros(NOW)]
