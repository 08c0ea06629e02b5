"""The report read from per-ticket rows (inboxd.reports.tickets, report_ticket) equals the report read live.

The randomized stores of tests/test_report_rollups.py (status changes
written the ways the desk writes them, resolutions, reopenings, merges,
auto-closes) get extra histories: changes in the same instant, an event
dated before its ticket's creation, a merge.  Rows are then filled, some
made stale in each way a row can be (the ticket changed after its row, a
status event written without a new version, another format, another
creation instant), and the report must equal the live one, in several time
zones, periods and scopes, on SQLite and PostgreSQL.  That the report reads
the current rows, and only those, is shown by altering rows.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from inboxd.desk.history import status_intervals
from inboxd.reports import tickets
from inboxd.store.engine import reading, writing
from inboxd.store.sql import t

from tests.test_report_rollups import NOW, STATUS_DETAILS, report, seed, settings_for


def extra_history(engine, rng: random.Random) -> None:
    """Edge cases the desk can write: two changes in one instant, an event before the ticket's creation,
    a merge into another ticket, an auto-close."""
    with writing(engine) as conn:
        rows = conn.execute(select(t.ticket.c.id, t.ticket.c.created_at)).all()
        for pk, created in rng.sample(rows, len(rows) // 3):
            at = created + timedelta(seconds=rng.randrange(60, 20 * 86400))
            if at >= NOW:
                continue
            choice = rng.randrange(4)
            if choice == 0:
                events = [("status", rng.choice(STATUS_DETAILS)), ("status", rng.choice(STATUS_DETAILS))]
            elif choice == 1:
                at = created - timedelta(minutes=5)
                events = [("status", {"status_before": "new", "status_after": "pending"})]
            elif choice == 2:
                events = [("merge", {"into": "T-1001"})]
            else:
                events = [("autoclose", {})]
            for action, detail in events:
                conn.execute(insert(t.event).values(ticket_id=pk, at=at, actor="inboxd", action=action,
                                                    detail=json.dumps(detail)))


def stored_rows(engine) -> dict[int, tuple]:
    c = t.report_ticket.c
    with reading(engine) as conn:
        return {pk: (version, watermark, data)
                for pk, version, watermark, data in conn.execute(select(c.ticket_id, c.version, c.watermark, c.data))}


def make_stale(engine, rng: random.Random, count: int) -> list[int]:
    """Make `count` tickets' rows stale, each in one of the ways a row can be; their ids."""
    with writing(engine) as conn:
        pks = sorted(rng.sample(list(conn.execute(select(t.report_ticket.c.ticket_id)).scalars()), count))
        for i, pk in enumerate(pks):
            way = i % 6
            at = NOW - timedelta(days=rng.randrange(1, 15), minutes=rng.randrange(600))
            if way in (0, 1):
                # A status event (a reopening, back-dated), with (0) or without (1) a new version of the ticket.
                conn.execute(insert(t.event).values(
                    ticket_id=pk, at=at, actor="bob", action="status",
                    detail=json.dumps({"changes": {"status": {"before": "solved", "after": "open"}}})))
                if way == 0:
                    conn.execute(update(t.ticket).where(t.ticket.c.id == pk)
                                 .values(version=t.ticket.c.version + 1, updated_at=NOW))
            elif way == 2:
                # A row of another format (a newer inboxd's, say).
                conn.execute(update(t.report_ticket).where(t.report_ticket.c.ticket_id == pk)
                             .values(data=json.dumps([tickets.FORMAT + 1, 0])))
            elif way == 5:
                # A row that is not JSON at all (a damaged store): the other rows are still read.
                conn.execute(update(t.report_ticket).where(t.report_ticket.c.ticket_id == pk).values(data="[1, {"))
            elif way == 4:
                # A status event that appears below the row's watermark, with a new version: what a PostgreSQL
                # transaction that took its event id before the fill and committed after it leaves.
                low = conn.execute(select(t.event.c.id).where(t.event.c.ticket_id == pk)
                                   .order_by(t.event.c.id).limit(1)).scalar_one()
                conn.execute(update(t.event).where(t.event.c.id == low).values(
                    action="status", at=at, detail=json.dumps({"status_before": "new", "status_after": "pending"})))
                conn.execute(update(t.ticket).where(t.ticket.c.id == pk).values(version=t.ticket.c.version + 1))
            else:
                # The ticket's creation instant corrected (an import), its version bumped.
                created = conn.execute(select(t.ticket.c.created_at).where(t.ticket.c.id == pk)).scalar_one()
                conn.execute(update(t.ticket).where(t.ticket.c.id == pk)
                             .values(created_at=created - timedelta(hours=3), version=t.ticket.c.version + 1))
    return pks


def rows_used(engine, settings, since, **scope) -> int:
    from inboxd.reports.metrics import _Reader
    from inboxd.store.reports import Scope

    with reading(engine) as conn:
        reader = _Reader(conn, settings, Scope(**scope), since, NOW, NOW)
        reader.tickets()
        return reader.rows_used


@pytest.mark.parametrize("seed_, timezone", [(21, "UTC"), (22, "Asia/Shanghai"), (23, "America/New_York"),
                                             (24, "Pacific/Chatham")])
def test_the_report_from_ticket_rows_equals_the_live_one(engine, tmp_path, monkeypatch, seed_, timezone):
    rng = random.Random(seed_)
    seed(engine, rng, tickets=80)
    extra_history(engine, rng)
    settings = settings_for(tmp_path, timezone)
    since = NOW - timedelta(days=30, hours=7, minutes=13)
    periods = [(since, NOW), (NOW - timedelta(days=7), NOW), (since, NOW - timedelta(days=9, hours=2))]

    def both(start, until, **scope):
        with reading(engine) as conn:
            from inboxd.reports.metrics import compute_report
            return [compute_report(conn, settings, since=start, until=until, now=NOW, include_agents=True,
                                   rollups=use, **scope) for use in (True, False)]

    assert tickets.fill(engine, NOW, since=since - timedelta(weeks=4)) > 0
    assert rows_used(engine, settings, since) > 40
    for start, until in periods:
        rolled, live = both(start, until)
        assert rolled == live
    assert live["tickets"]["resolved"] > 0 and live["tickets"]["reopened"] > 0
    rolled, live = both(since, NOW, mailbox="support")
    assert rolled == live
    # Stale rows, a few (their tickets' events read by id) and many (read with the period's query).
    for count, share in ((12, tickets.LIVE_SHARE), (12, 0.0)):
        monkeypatch.setattr(tickets, "LIVE_SHARE", share)
        stale = make_stale(engine, rng, count)
        used = rows_used(engine, settings, since)
        for start, until in periods:
            rolled, live = both(start, until)
            assert rolled == live
        # The stale rows are not read; the next fill rewrites exactly them, after which they are read again.
        assert tickets.fill(engine, NOW, since=since - timedelta(weeks=4)) == count
        assert rows_used(engine, settings, since) >= used + 1
        assert both(since, NOW)[0] == both(since, NOW)[1]
        assert all(stored_rows(engine)[pk][2].startswith(f"[{tickets.FORMAT}, ") for pk in stale)


def test_the_report_reads_only_current_rows(engine, tmp_path):
    rng = random.Random(31)
    seed(engine, rng, tickets=40)
    settings = settings_for(tmp_path, "UTC")
    since = NOW - timedelta(days=30)
    live = report(engine, settings, since, use=False)
    assert tickets.fill(engine, NOW, since=since) > 0
    assert report(engine, settings, since) == live
    # Rewrite every row so its ticket is "closed" from its creation on: the report reads the rows.
    c = t.report_ticket.c
    with writing(engine) as conn:
        for pk, data in conn.execute(select(c.ticket_id, c.data)).all():
            stored = json.loads(data)
            conn.execute(update(t.report_ticket).where(c.ticket_id == pk)
                         .values(data=json.dumps([*stored[:4], stored[1] + 1, "closed"])))
    altered = report(engine, settings, since)
    assert altered["time_in_status"]["open"] == 0 and altered != live
    assert report(engine, settings, since, use=False) == live
    # A status event written after the rows, without a new version: that ticket's row is not used.
    with writing(engine) as conn:
        pk = conn.execute(select(t.ticket.c.id).where(t.ticket.c.created_at >= since).limit(1)).scalar_one()
        conn.execute(insert(t.event).values(ticket_id=pk, at=NOW - timedelta(hours=1), actor="bob", action="status",
                                            detail=json.dumps({"status_before": "closed", "status_after": "open"})))
    assert report(engine, settings, since)["time_in_status"]["open"] > 0
    # Emptied, the table loses nothing: the report reads every ticket's events.
    tickets.forget(engine)
    assert report(engine, settings, since) == report(engine, settings, since, use=False)


def test_a_second_fill_writes_nothing_and_moves_the_watermarks(engine, tmp_path):
    seed(engine, random.Random(41), tickets=30)
    since = NOW - timedelta(days=60)
    written = tickets.fill(engine, NOW, since=since, batch=7)
    assert written == len(stored_rows(engine)) > 20
    with writing(engine) as conn:
        conn.execute(insert(t.event).values(ticket_id=1, at=NOW, actor="x", action="note", detail="{}"))
        newest = conn.execute(select(t.event.c.id).order_by(t.event.c.id.desc()).limit(1)).scalar_one()
    assert tickets.fill(engine, NOW, since=since, batch=7) == 0
    assert {w for _, w, _ in stored_rows(engine).values()} == {newest}


def test_the_scheduler_fills_the_ticket_rows_at_night(engine, tmp_path):
    from inboxd.desk.duties import Duties

    seed(engine, random.Random(42), tickets=20)
    settings = settings_for(tmp_path, "Asia/Shanghai")
    duties = Duties(engine, settings)
    duties.run_due(datetime(2026, 11, 20, 10, tzinfo=UTC))       # 18:00 in Shanghai: not at night
    assert stored_rows(engine) == {}
    duties.run_due(datetime(2026, 11, 20, 18, 30, tzinfo=UTC))   # 02:30 in Shanghai
    assert len(stored_rows(engine)) == 20
    since = NOW - timedelta(days=30)
    assert rows_used(engine, settings, since) > 0
    assert report(engine, settings, since) == report(engine, settings, since, use=False)


def _instant(rng: random.Random, base: datetime) -> datetime:
    return base + timedelta(seconds=rng.randrange(-3600, 5 * 86400), microseconds=rng.choice((0, rng.randrange(10 ** 6))))


@pytest.mark.parametrize("seed_", range(5))
def test_changes_and_intervals_are_status_intervals_in_microseconds(seed_):
    """Pure: for random events (same instants, before the creation, repeated statuses) and any end, the
    intervals rebuilt from a ticket's stored changes are status_intervals of its events before that end."""
    rng = random.Random(seed_)
    details = [*STATUS_DETAILS, {}, {"into": "T-1"}, {"status_after": "new"}]
    actions = ["status", "merge", "autoclose", "note", "created"]
    for _ in range(300):
        created = _instant(rng, NOW)
        events = sorted(((_instant(rng, created), rng.choice(actions), rng.choice(details))
                         for _ in range(rng.randrange(8))), key=lambda e: e[0])
        if events and rng.random() < 0.3:
            events.insert(rng.randrange(len(events)), (events[0][0], "status", rng.choice(STATUS_DETAILS)))
            events.sort(key=lambda e: e[0])
        as_us = [(tickets.micros(at), action, detail) for at, action, detail in events]
        changes = tickets.changes_from_events(tickets.micros(created), as_us)
        for end in [_instant(rng, created) for _ in range(4)] + [created]:
            expected = status_intervals(created, [e for e in events if e[0] < end], end)
            got = tickets.intervals(tickets.micros(created), changes, tickets.micros(end))
            assert [(s, tickets.instant(a), tickets.instant(b)) for s, a, b in got] == expected


def test_a_message_added_without_a_new_version_is_counted(engine, tmp_path):
    """The sender adds an agent's outgoing message without bumping the ticket's version: the row's count of
    agent messages (first-contact resolution) is then not used, its status changes still are."""
    from inboxd.store.outbox import add_outgoing_message

    seed(engine, random.Random(51), tickets=40)
    settings = settings_for(tmp_path, "UTC")
    since = NOW - timedelta(days=30)
    assert tickets.fill(engine, NOW, since=NOW - timedelta(days=60)) == 40
    before = report(engine, settings, since)
    assert before == report(engine, settings, since, use=False)
    assert before["first_contact_resolution"]["count"] == 0 < before["tickets"]["resolved"]
    with writing(engine) as conn:
        for pk in range(1, 41):
            add_outgoing_message(conn, pk, message_key=f"k{pk}", message_id=f"r{pk}@example.com", kind="agent",
                                 sender="support@example.com", to_addrs="[]", subject="Re: q", text="done",
                                 in_reply_to="[]", data=f"reply {pk}".encode(), now=NOW - timedelta(minutes=1))
    after = report(engine, settings, since)
    assert after == report(engine, settings, since, use=False)
    assert after["first_contact_resolution"]["count"] == before["tickets"]["resolved"]
    assert rows_used(engine, settings, since) > 20
    # The next fill counts the messages again, and the rows are read for them too.
    assert tickets.fill(engine, NOW, since=NOW - timedelta(days=60)) == 40
    assert report(engine, settings, since) == after
