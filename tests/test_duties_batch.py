"""The scheduler's batched alerts: the same rows as one at a time, each alert once.

Unassigned alerts and pending reminders are claimed, read and written a
batch at a time (`Duties._batches`).  These tests hold the batches to what
the one-at-a-time code did: the outbox row of a batched notification is
byte for byte the row `workflow.notify_agent` writes, the batch's reads give
what the per-ticket reads give, and across batches, passes and a concurrent
claimer each alert is queued once.  Both stores (`store_url`); tickets are
written straight into the tables (tests/test_duties_pg.py's `seed`).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, update

from inboxd.config import parse_settings
from inboxd.desk import duties as duties_module
from inboxd.desk import slaclock
from inboxd.desk.agentmail import Alert
from inboxd.desk.duties import Duties, _tickets
from inboxd.desk.workflow import load, notification, notify_agent
from inboxd.outbound import outbox
from inboxd.store import duties as store
from inboxd.store import slaclock as clock_store
from inboxd.store.engine import reading, writing
from inboxd.store.messages import last_customer_message
from inboxd.store.sql import t
from tests.test_duties_pg import NOW, seed


def make_settings(tmp_path: Path, url: str):
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    return parse_settings({
        "store": {"url": url},
        "mailboxes": [{"name": "support", "address": "support@example.com", "imap": imap}],
        "agents": [{"name": "alice", "email": "alice@example.com", "role": "agent", "display_name": "Alice A."},
                   {"name": "carol", "email": "carol@example.com", "role": "supervisor"}],
        "scheduler": {"digest_time": "23:59", "unassigned_after": "1d", "unassigned_after_urgent": "1d",
                      "pending_reminder": "2d", "autoclose_after": "30d"},
        "csat": {"enabled": False},
    }, tmp_path / "inboxd.toml")


def add_customer_mail(conn, pk: int, n: int, at, text: str) -> None:
    """Another customer message on ticket `pk`."""
    raw = f"mail {pk}.{n}".encode()
    sha = f"{pk * 1000 + n:064x}"
    conn.execute(insert(t.rawmessage).values(sha256=sha, size=len(raw), data=raw))
    conn.execute(insert(t.message).values(
        message_key=f"<m{pk}.{n}@example.org>", message_id=f"m{pk}.{n}@example.org", ticket_id=pk, direction="in",
        kind="customer", from_addr=f"customer{pk}@example.org", date=at, subject=f"question {pk}", text=text,
        reply_text=text, raw_sha256=sha, size=len(raw), created_at=at))


def outbox_rows(conn) -> list[dict]:
    o = t.outbox
    return [dict(row._mapping) for row in conn.execute(select(*(c for c in o.c if c.name != "id")).order_by(o.c.id))]


def test_a_batched_notification_is_the_row_notify_agent_writes(engine, tmp_path, monkeypatch):
    settings = make_settings(tmp_path, engine.url.render_as_string(hide_password=False))
    duties = Duties(engine, settings)
    # The Message-ID's random part, fixed so that the two rows can be compared byte for byte.
    monkeypatch.setattr(outbox, "unique_token", lambda: "0123456789abcdef")
    created = NOW - timedelta(days=2)
    with writing(engine) as conn:
        seed(conn, 1, status="new", created=created, assignee=None)
        seed(conn, 2, status="pending", created=created, assignee="alice")
        add_customer_mail(conn, 2, 1, created + timedelta(hours=1), "Any news?\nStill waiting.")
    for pk, agent_name, alert in (
            (1, "carol", Alert("unassigned", {"ticket": {"id": "T-1001", "priority": "normal"},
                                              "waited": timedelta(days=2)})),
            (2, "alice", Alert("pending", {"ticket": {"id": "T-1002"}, "waited": timedelta(days=2)}))):
        agent = settings.agent(agent_name)
        # Each in a transaction of its own, rolled back: the two rows have the same (unique) Message-ID.
        with writing(engine) as conn:
            ticket = _tickets(conn, [pk])[pk]
            last = store.last_customer_messages(conn, [pk]).get(pk)
            outbox.queue_many(conn, [notification(settings, duties.tags, ticket, agent, NOW, alert, last)])
            [batched] = outbox_rows(conn)
            conn.rollback()
        with writing(engine) as conn:
            notify_agent(conn, settings, duties.tags, ticket.ref, agent, NOW, headline=alert)
            [single] = outbox_rows(conn)
            conn.rollback()
        assert batched == single
        assert batched["kind"] == "notification" and batched["ticket_id"] == pk


def test_the_batch_reads_give_what_the_per_ticket_reads_give(engine):
    created = NOW - timedelta(days=2)
    with writing(engine) as conn:
        for pk in (1, 2, 3):
            seed(conn, pk, status="open", created=created, assignee=None if pk == 1 else "alice")
        # Ticket 2: a later mail, and two in one second (the later stored one is the last); ticket 3:
        # a mail with no Date, placed by when the store learned of it; ticket 4 has no customer mail.
        add_customer_mail(conn, 2, 1, created + timedelta(hours=2), "second")
        add_customer_mail(conn, 2, 2, created + timedelta(hours=3, microseconds=10), "third, first stored")
        add_customer_mail(conn, 2, 3, created + timedelta(hours=3), "third, stored last")
        add_customer_mail(conn, 3, 1, created + timedelta(hours=1), "dated")
        conn.execute(update(t.message).where(t.message.c.message_id == "m3.1@example.org")
                     .values(date=None, created_at=created + timedelta(hours=5)))
        seed(conn, 4, status="open", created=created)
        conn.execute(t.message.delete().where(t.message.c.ticket_id == 4))
    with reading(engine) as conn:
        many = store.last_customer_messages(conn, [1, 2, 3, 4, 5])
        assert set(many) == {1, 2, 3}
        for pk in (1, 2, 3, 4):
            assert many.get(pk) == last_customer_message(conn, pk)
        assert many[2].text == "third, stored last"
        tickets = _tickets(conn, [1, 2, 3, 4, 5])
        assert set(tickets) == {1, 2, 3, 4}
        assert all(tickets[pk] == load(conn, tickets[pk].ref) for pk in tickets)


def test_alerts_in_small_batches_go_once_across_passes_and_claimers(engine, tmp_path, monkeypatch):
    """Seven unassigned tickets and three pending ones in batches of two: one alert each, a second pass none."""
    monkeypatch.setattr(duties_module, "BATCH_ITEMS", 2)
    settings = make_settings(tmp_path, engine.url.render_as_string(hide_password=False))
    created = NOW - timedelta(days=3)
    with writing(engine) as conn:
        for pk in range(1, 8):
            seed(conn, pk, status="new", created=created + timedelta(minutes=pk), assignee=None)
        for pk in (11, 12, 13):
            seed(conn, pk, status="pending", created=created, assignee="alice")
            conn.execute(insert(t.event).values(
                ticket_id=pk, at=created + timedelta(hours=1), actor="alice", action="status",
                detail=json.dumps({"changes": {"status": {"before": "open", "after": "pending"}}})))
        # Another daemon has already alerted about ticket 3 and reminded about ticket 12's spell.
        store.claim(conn, "unassigned", "3", 3, NOW)
        store.claim(conn, "pending", store.pending_key(12, created + timedelta(hours=1)), 12, NOW)
    duties = Duties(engine, settings)
    done = duties.run_due(NOW)
    assert (done["unassigned"], done["pending"]) == (6, 2)

    def mails() -> list[tuple]:
        with reading(engine) as conn:
            rows = conn.execute(select(t.outbox.c.ticket_id, t.outbox.c.recipients, t.outbox.c.kind)
                                .order_by(t.outbox.c.ticket_id)).all()
        return [(pk, json.loads(to), kind) for pk, to, kind in rows]

    assert mails() == ([(pk, ["carol@example.com"], "notification") for pk in (1, 2, 4, 5, 6, 7)]
                       + [(pk, ["alice@example.com"], "notification") for pk in (11, 13)])
    with reading(engine) as conn:
        events = conn.execute(select(t.event.c.ticket_id, t.event.c.action, t.event.c.detail)
                              .where(t.event.c.actor == "inboxd", t.event.c.action != "created")
                              .order_by(t.event.c.ticket_id)).all()
    assert [(pk, action) for pk, action, _ in events] == (
        [(pk, "unassigned-alert") for pk in (1, 2, 4, 5, 6, 7)] + [(11, "pending-reminder"), (13, "pending-reminder")])
    assert json.loads(events[0][2]) == {"waited_seconds": int((NOW - created - timedelta(minutes=1)).total_seconds())}
    assert json.loads(events[-1][2]) == {"since": duties_module._show(created + timedelta(hours=1))}
    # Again, at the same instant and a day on: every alert is claimed.
    for later in (NOW, NOW + timedelta(days=1)):
        again = Duties(engine, settings).run_due(later)
        assert (again["unassigned"], again["pending"]) == (0, 0)
    assert len(mails()) == 8


def test_a_ticket_taken_since_the_scan_is_claimed_but_not_alerted(engine, tmp_path):
    settings = make_settings(tmp_path, engine.url.render_as_string(hide_password=False))
    created = NOW - timedelta(days=3)
    with writing(engine) as conn:
        seed(conn, 1, status="new", created=created, assignee=None)
        seed(conn, 2, status="new", created=created, assignee=None)
    duties = Duties(engine, settings)
    with reading(engine) as conn:
        items = duties.candidates_unassigned(conn, NOW)
    assert [pk for pk, _ in items] == [1, 2]
    with writing(engine) as conn:
        conn.execute(update(t.ticket).where(t.ticket.c.id == 2).values(assignee="alice"))
    with writing(engine) as conn:
        assert duties.handle_unassigned_batch(conn, items, NOW) == 2
    with reading(engine) as conn:
        assert conn.execute(select(t.outbox.c.ticket_id)).scalars().all() == [1]
        assert conn.execute(select(func.count()).select_from(t.duty).where(t.duty.c.duty == "unassigned")).scalar() == 2
    with writing(engine) as conn:
        assert duties.handle_unassigned_batch(conn, items, NOW) == 0


def test_stale_tickets_put_the_unresolved_first_and_limit_the_resolved(engine):
    created = NOW - timedelta(days=3)
    with writing(engine) as conn:
        for pk, status in ((1, "closed"), (2, "open"), (3, "solved"), (4, "pending"), (5, "closed"), (6, "new")):
            seed(conn, pk, status=status, created=created)
        # Ticket 6 is current; the others changed since their due times were computed.
        conn.execute(update(t.ticket).where(t.ticket.c.id != 6).values(version=t.ticket.c.version + 1))
    with reading(engine) as conn:
        assert clock_store.stale_tickets(conn) == [2, 4, 1, 3, 5]
        assert clock_store.stale_tickets(conn, resolved_limit=1) == [2, 4, 1]


def test_a_refresh_writes_the_due_times_only_when_they_change(engine, tmp_path):
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    settings = parse_settings({
        "store": {"url": engine.url.render_as_string(hide_password=False)},
        "mailboxes": [{"name": "support", "address": "support@example.com", "imap": imap}],
        "sla": [{"name": "fast", "first_response": "1h", "resolution": "5h",
                 "priority": ["low", "normal", "high", "urgent"]}],
    }, tmp_path / "inboxd.toml")
    created = NOW - timedelta(hours=2)
    with writing(engine) as conn:
        for pk in (1, 2, 3):
            seed(conn, pk, status="open", created=created)
        conn.execute(update(t.ticket).values(sla_policy=None, first_response_due=None, resolution_due=None,
                                             version=t.ticket.c.version + 1))

    def dues() -> dict[int, tuple]:
        with reading(engine) as conn:
            tk = t.ticket
            return {row[0]: tuple(row[1:]) for row in conn.execute(
                select(tk.c.id, tk.c.sla_policy, tk.c.first_response_due, tk.c.resolution_due, tk.c.sla_version,
                       tk.c.version).order_by(tk.c.id))}

    with writing(engine) as conn:
        assert slaclock.refresh_many(conn, [1, 2, 3], settings, settings.policies, NOW) == []
    first = dues()
    assert first[1] == ("fast", created + timedelta(hours=1), created + timedelta(hours=5), 2, 2)
    # Ticket 1 changes in a way the clock ignores (a tag), ticket 2 is made urgent by an hour earlier.
    with writing(engine) as conn:
        conn.execute(update(t.ticket).where(t.ticket.c.id == 1).values(tags='["x"]', version=3))
        conn.execute(update(t.ticket).where(t.ticket.c.id == 2).values(created_at=created - timedelta(hours=1),
                                                                       version=3))
        assert slaclock.refresh_many(conn, [1, 2], settings, settings.policies, NOW) == []
    second = dues()
    assert second[1] == first[1][:3] + (3, 3)
    assert second[2] == ("fast", created, created + timedelta(hours=4), 3, 3)
    assert second[3] == first[3]
    with reading(engine) as conn:
        assert clock_store.stale_tickets(conn) == []

