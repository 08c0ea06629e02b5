"""The report's shortcuts of round 7 give what the longer ways gave.

- `live_tickets` has the database count each ticket's two instants in microseconds since the epoch (SQLite's
  stored text, PostgreSQL's timestamp): they are what inboxd.reports.tickets.micros makes of the instants the
  column type reads, for instants at the edges of a second, before 1970, far ahead, and (SQLite) stored text
  of another shape, which comes as text and is parsed as before.
- The volume counts the tickets created per local day for the daily series (the day found once per UTC hour)
  as bisecting each instant on the local midnights did, in zones whose midnights are not on a UTC hour; the
  histogram of first-response times, bisecting the sorted values, counts as placing each value did.
- Repeat complaints add the few repeated tickets to the "again" sets apart: the section is the one of
  touching every set in one loop per ticket, for random tickets, tags, fields and repeats.
- The report takes each ticket's requester in Python's lower case from the database's lower case when the
  two must agree, and lists the tickets whose two lower cases differ (non-ASCII requesters): the lists are
  those of comparing the two for every ticket.
"""

from __future__ import annotations

import json
import random
from bisect import bisect_right
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update

from inboxd.reports import breakdowns, metrics, tickets
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


@pytest.mark.parametrize("old_sqlite", [False, True])
def test_the_database_counts_the_instants_as_micros_does(engine, monkeypatch, old_sqlite):
    if old_sqlite:
        # An SQLite without unixepoch(): the instants come as text, parsed in Python.
        if engine.dialect.name != "sqlite":
            pytest.skip("SQLite's fallback")
        monkeypatch.setattr(store, "_UNIXEPOCH", (999, 0, 0))
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
    else:
        assert kinds == {str}


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


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Asia/Kathmandu", "Pacific/Chatham", "Australia/Lord_Howe",
                                  "America/St_Johns", "America/Santiago"])
def test_the_volume_counts_each_ticket_on_the_day_bisection_finds(zone):
    """The daily series' created tickets, counted by `_volume` once per UTC hour (instant by instant in an hour a
    local midnight falls inside), are those of bisecting every instant on the day's midnights."""
    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    since = datetime(2026, 1, 1, 5, 17, tzinfo=UTC)
    until = since + timedelta(days=366)
    starts = metrics._day_starts(since, until, tz)
    starts_us = [tickets.micros(s) for s in starts]
    instants = [since + timedelta(seconds=rng.randrange(366 * 86400), microseconds=rng.randrange(10**6))
                for _ in range(4000)]
    # Every minute around each local midnight and each clock change, too.
    for s in starts:
        instants += [s + timedelta(minutes=m) for m in range(-70, 70, 7) if since <= s + timedelta(minutes=m) < until]
    made = [metrics._Ticket(pk, "support", [], None, tickets.micros(at), None, None)
            for pk, at in enumerate(instants, 1)]
    new = [0] * len(starts)
    volume = metrics._volume(made, tz, starts_us, new)
    expected = [0] * len(starts)
    for t in made:
        expected[bisect_right(starts_us, t.created_us) - 1] += 1
    assert new == expected
    assert volume == metrics._volume(made, tz)


def test_the_histogram_bisects_the_sorted_values_as_each_value_was_placed():
    rng = random.Random(4)
    values = [rng.choice((0.0, 3600.0, 3599.999999, 4 * 3600.0, 8 * 3600 - 1e-9, 86400.0, 72 * 3600.0, 1e9,
                          rng.uniform(0, 5 * 86400))) for _ in range(3000)]
    labels = [label for label, _ in metrics.FIRST_RESPONSE_BUCKETS]
    uppers = [upper for _, upper in metrics.FIRST_RESPONSE_BUCKETS]
    expected = Counter(bisect_right(uppers, value / 3600) for value in values)
    assert metrics._histogram(sorted(values)) == {label: expected[i] for i, label in enumerate(labels)}
    assert metrics._histogram([]) == dict.fromkeys(labels, 0)


def reference_repeat_complaints(resolved, customer_of, repeated, tags_of, fields_of, field_names, window):
    """breakdowns.repeat_complaints as before round 7: every set touched in one loop per resolved ticket."""
    from collections import defaultdict

    everyone, again = set(), set()
    tag_customers, tag_again = defaultdict(set), defaultdict(set)
    value_customers = {name: defaultdict(set) for name in field_names}
    value_again = {name: defaultdict(set) for name in field_names}
    for pk in resolved:
        customer = customer_of.get(pk)
        if not customer:
            continue
        hit = pk in repeated
        everyone.add(customer)
        for tag in tags_of.get(pk, ()):
            tag_customers[tag].add(customer)
            if hit:
                tag_again[tag].add(customer)
        for name, value in fields_of.get(pk, {}).items():
            if name in value_customers:
                value_customers[name][value].add(customer)
                if hit:
                    value_again[name][value].add(customer)
        if hit:
            again.add(customer)
    rate = breakdowns._rate
    by_tag = {tag: rate(tag_customers[tag], tag_again[tag])
              for tag in sorted(tag_customers, key=lambda x: (-len(tag_customers[x]), x))}
    by_field = {name: {value: rate(values[value], value_again[name][value])
                       for value in sorted(values, key=lambda v: (-len(values[v]), v))}
                for name, values in value_customers.items()}
    return {"window_days": round(window / timedelta(days=1), 2), **rate(everyone, again),
            "by_field": by_field, "by_tag": by_tag}


@pytest.mark.parametrize("seed_", range(6))
def test_repeat_complaints_count_as_one_loop_per_ticket_did(seed_):
    rng = random.Random(seed_)
    resolved = rng.sample(range(1, 400), 250)
    customer_of = {pk: rng.choice(("", "a@x", "b@x", "c@x", "d@x", "ä@x")) for pk in resolved if rng.random() < 0.95}
    repeated = {pk for pk in resolved if rng.random() < 0.3}
    tags_of = {pk: rng.sample(["a", "b", "发票", "z"], rng.randrange(4)) for pk in resolved if rng.random() < 0.9}
    names = ["kind", "region"]
    fields_of = ({pk: {name: rng.choice(("x", "y", "售后")) for name in rng.sample(names + ["undeclared"], 2)}
                  for pk in resolved if rng.random() < 0.8} if seed_ % 3 else {})
    window = timedelta(days=rng.choice((3, 7, 2.5)))
    got = breakdowns.repeat_complaints(resolved, customer_of, repeated, tags_of, fields_of, names, window)
    assert got == reference_repeat_complaints(resolved, customer_of, repeated, tags_of, fields_of, names, window)
    assert json.dumps(got) == json.dumps(reference_repeat_complaints(resolved, customer_of, repeated, tags_of,
                                                                     fields_of, names, window))


def test_the_driver_s_rows_of_the_live_tickets_are_sqlalchemy_s(engine):
    """`live_tickets` returns the driver's tuples: the values SQLAlchemy's Rows hold (no column has a result
    processor), with and without the per-ticket rows, on both databases."""
    seed(engine, random.Random(12), tickets=50)
    tickets.fill(engine, NOW, since=NOW - timedelta(days=60))
    since = NOW - timedelta(days=20)
    with reading(engine) as conn:
        for with_rows in (False, True):
            got = store.live_tickets(conn, Scope(), since, NOW, with_rows=with_rows)
            rows = conn.execute(store.live_tickets_query(conn, Scope(), since, NOW, with_rows)).all()
            assert [tuple(row) for row in got] == [tuple(row) for row in rows]
            assert all(type(row) is tuple for row in got)
            assert len(got) > 10 and (not with_rows or any(row[12] is not None for row in got))
