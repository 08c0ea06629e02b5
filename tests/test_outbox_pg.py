"""The outbox on PostgreSQL (and SQLite): queueing, claims by compare-and-swap, leases, the budget, a real drain.

The claims are what lets several daemons share one store: every test that
races runs real threads on connections of their own, against the private
PostgreSQL cluster of the run (see the `pg_url` and `store_url` fixtures).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from inboxd.config import Settings, load_settings
from inboxd.outbound import outbox
from inboxd.outbound.sender import Sender, retry
from inboxd.store import outbox as store
from inboxd.store.engine import create_store_engine, migrate, reading, writing
from inboxd.store.sql import t
from inboxd.testing.smtp import SmtpSink

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _settings(tmp: Path, store_url: str, smtp_port: int = 1) -> Settings:
    """Settings for one mailbox whose mail goes to `smtp_port`; IMAP is never contacted."""
    (tmp / "pw").write_text("unused\n")
    config = tmp / "inboxd.toml"
    config.write_text(f"""
[store]
url = "{store_url}"
data_dir = "var"

[outbox]
lease = "5m"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"

[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "imap.example.invalid"
username = "support"
password_file = "pw"
""")
    return load_settings(config)


def _engine(url: str) -> Engine:
    engine = create_store_engine(url)
    migrate(engine)
    return engine


@pytest.fixture
def engines() -> list[Engine]:
    """Engines made by a test, disposed of after it."""
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


def _ticket(conn, ref: str = "T-1000", at: datetime = NOW) -> int:
    return conn.execute(insert(t.ticket).values(
        ref=ref, subject="Help", status="new", priority="normal", mailbox="support", requester="ann@example.org",
        requester_name="Ann", tags="[]", message_count=0, created_at=at, updated_at=at, tier=1, escalated=False,
        sla_version=0, version=1, history=False).returning(t.ticket.c.id)).scalar_one()


def _queue(conn, settings: Settings, n: int, *, at: datetime = NOW, ticket_pk: int | None = None,
           compose_at_send: bool = False) -> str:
    return outbox.queue(conn, kind="relay", mailbox=settings.mailbox("support"), ticket_pk=ticket_pk,
                        ref=f"T-{1000 + n}", to=[(f"Customer {n}", f"c{n}@example.org")],
                        subject=f"Re: [T-{1000 + n}] Question {n}", text=f"Answer {n}.\n", automatic=None,
                        message_id=f"inboxd.T-{1000 + n}.m{n}@example.com", now=at, sent_copy=False,
                        compose_at_send=compose_at_send)


def _rows(engine: Engine) -> list[tuple]:
    o = t.outbox
    with reading(engine) as conn:
        return [tuple(r) for r in conn.execute(select(o.c.id, o.c.status, o.c.attempts).order_by(o.c.id))]


# -- claims ------------------------------------------------------------------------------


def test_senders_claiming_at_once_claim_every_row_exactly_once(pg_url, tmp_path, engines):
    """Two daemons (two engines), two threads each, claim the same outbox again and again:
    every row goes to exactly one of them, and none is left behind."""
    settings = _settings(tmp_path, pg_url)
    engines += [_engine(pg_url), _engine(pg_url)]
    senders = [Sender(engines[n % 2], settings, clock=lambda: NOW) for n in range(4)]
    queued = 0
    busy = [0] * len(senders)
    for round_ in range(5):
        with writing(engines[0]) as conn:
            for _ in range(60):
                _queue(conn, settings, queued)
                queued += 1
        claims: list[list[int]] = [[] for _ in senders]
        start = threading.Barrier(len(senders))
        errors: list[BaseException] = []

        def claim_all(n: int) -> None:
            try:
                start.wait()
                while (item := senders[n].claim(NOW)) is not None:
                    claims[n].append(item.id)
            except BaseException as exc:  # Reported by the main thread.
                errors.append(exc)

        threads = [threading.Thread(target=claim_all, args=(n,)) for n in range(len(senders))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        claimed = [row_id for each in claims for row_id in each]
        assert len(claimed) == len(set(claimed)) == 60, f"round {round_}: {sorted(claimed)}"
        busy = [b + len(each) for b, each in zip(busy, claims)]
    assert sum(1 for b in busy if b) >= 2  # They did race.
    assert {(status, attempts) for _id, status, attempts in _rows(engines[0])} == {("sending", 1)}
    assert len(_rows(engines[0])) == queued


def test_two_transactions_claiming_the_same_row_never_both_get_it(pg_url, tmp_path, engines):
    """The compare-and-swap itself: the second claim waits for, or skips, the first one's row lock
    and then finds nothing due, instead of claiming the row a second time."""
    settings = _settings(tmp_path, pg_url)
    engines += [_engine(pg_url), _engine(pg_url)]
    with writing(engines[0]) as conn:
        _queue(conn, settings, 1)
    lease = settings.outbox.lease
    with engines[0].begin() as first:
        assert store.claim_next(first, NOW, lease).id == 1
        # Still uncommitted: the other daemon skips the locked row.
        with writing(engines[1]) as second:
            assert store.claim_next(second, NOW, lease) is None
    with writing(engines[1]) as second:
        assert store.claim_next(second, NOW, lease) is None
    assert _rows(engines[0]) == [(1, "sending", 1)]


def test_an_expired_claim_is_offered_again_and_the_old_claim_records_nothing(store_url, tmp_path, engines):
    settings = _settings(tmp_path, store_url)
    engines.append(_engine(store_url))
    engine = engines[0]
    lease = settings.outbox.lease
    with writing(engine) as conn:
        _queue(conn, settings, 1, at=NOW - timedelta(minutes=1))
        _queue(conn, settings, 2, at=NOW + timedelta(hours=1))  # Not due yet.
    with writing(engine) as conn:
        first = store.claim_next(conn, NOW, lease)
        assert (first.id, first.attempts, first.created_at) == (1, 1, NOW - timedelta(minutes=1))
        assert json.loads(first.recipients) == ["c1@example.org"]
        assert store.claim_next(conn, NOW, lease) is None
    with writing(engine) as conn:
        assert store.claim_next(conn, NOW + lease - timedelta(seconds=1), lease) is None
    with writing(engine) as conn:
        again = store.claim_next(conn, NOW + lease, lease)
        assert (again.id, again.attempts) == (1, 2)
    with writing(engine) as conn:
        # The first claimer comes back: its claim is no longer its own.
        assert not store.still_claimed(conn, 1, 1)
        assert not store.requeue(conn, 1, 1, NOW + lease, "421 try later")
        assert not store.mark_failed(conn, 1, 1, "550 no")
        assert store.still_claimed(conn, 1, 2)
        assert store.requeue(conn, 1, 2, NOW + 2 * lease, "421 try later")
    assert _rows(engine) == [(1, "queued", 2), (2, "queued", 0)]
    with writing(engine) as conn:
        assert store.claim_next(conn, NOW + 2 * lease - timedelta(seconds=1), lease) is None
        assert store.claim_next(conn, NOW + 2 * lease, lease).id == 1
        assert store.mark_failed(conn, 1, 3, "550 no such user")
    assert retry(engine, 1, NOW + 3 * lease)
    with reading(engine) as conn:
        row = conn.execute(select(t.outbox).where(t.outbox.c.id == 1)).one()
    assert (row.status, row.next_attempt_at, row.created_at, row.last_error) == (
        "queued", NOW + 3 * lease, NOW + 3 * lease, "550 no such user")


# -- queueing and what the budget and bounces ask ---------------------------------------


def test_queue_records_the_mail_on_its_ticket(store_url, tmp_path, engines):
    settings = _settings(tmp_path, store_url)
    engines.append(_engine(store_url))
    engine = engines[0]
    with writing(engine) as conn:
        pk = _ticket(conn)
        message_id = outbox.queue(
            conn, kind="ack", mailbox=settings.mailbox("support"), ticket_pk=pk, ref="T-1000",
            to=[("Ann", "Ann+help@Example.org")], subject="[T-1000] Help", text="We got it.\n",
            automatic="auto-replied", now=NOW, sent_copy=True, record_on_ticket="auto", compose_at_send=True)
        outbox.queue(conn, kind="relay", mailbox=settings.mailbox("support"), ticket_pk=pk, ref="T-1000",
                     to=[("Ann", "ann@example.org")], subject="Re: [T-1000] Help", text="Done.\n",
                     automatic=None, in_reply_to=message_id, now=NOW, sent_copy=False, record_on_ticket="agent")
    with reading(engine) as conn:
        ticket = outbox.load_ticket(conn, pk)
        assert (ticket.ref, ticket.requester, ticket.created_at) == ("T-1000", "ann@example.org",
                                                                     "2026-11-23 08:00:00.000000")
        parent, references = outbox.thread_ids(conn, pk)
        assert parent is None and references[0] == message_id and len(references) == 2
        o = t.outbox
        rows = conn.execute(select(o.c.kind, o.c.status, o.c.copy_status, o.c.ack_key, o.c.ack_domain,
                                   o.c.next_attempt_at, o.c.data == b"", o.c.spec.is_not(None)).order_by(o.c.id)).all()
        assert [tuple(r) for r in rows] == [
            ("ack", "queued", "none", "ann@example.org", "example.org", NOW, True, True),
            ("relay", "queued", "none", None, None, NOW, False, False)]
        m = t.message
        messages = conn.execute(select(m.c.kind, m.c.direction, m.c.date, m.c.html_only, m.c.to_addrs)
                                .where(m.c.ticket_id == pk).order_by(m.c.id)).all()
        assert [tuple(r)[:4] for r in messages] == [("auto", "out", NOW, False), ("agent", "out", NOW, False)]
        assert conn.execute(select(t.ticket.c.message_count)).scalar() == 2
        # Sent copies only where the mailbox has a Sent folder configured (this one has none).
        assert outbox.sent_to(conn, f"<{message_id}>") is None  # Queued: it cannot have bounced.


def test_sent_to_and_bouncing_since(store_url, tmp_path, engines):
    settings = _settings(tmp_path, store_url)
    engines.append(_engine(store_url))
    engine = engines[0]
    with writing(engine) as conn:
        sent_id = _queue(conn, settings, 1)
        _queue(conn, settings, 2)
        conn.execute(t.outbox.update().where(t.outbox.c.message_id == sent_id).values(status="sent"))
        conn.execute(insert(t.customer), [
            {"email": "gone@example.org", "name": "", "created_at": NOW, "bouncing": True,
             "bounced_at": NOW - timedelta(days=2)},
            {"email": "back@example.org", "name": "", "created_at": NOW, "bouncing": False,
             "bounced_at": NOW - timedelta(days=2)},
            {"email": "old@example.org", "name": "", "created_at": NOW, "bouncing": True,
             "bounced_at": NOW - timedelta(days=40)}])
    with reading(engine) as conn:
        assert outbox.sent_to(conn, f" <{sent_id}> ") == ("c1@example.org",)
        assert outbox.sent_to(conn, "inboxd.T-1002.m2@example.com") is None
        assert outbox.sent_to(conn, None) is None
        expiry = timedelta(days=30)
        assert outbox.bouncing_since(conn, "gone@example.org", NOW, expiry) == NOW - timedelta(days=2)
        assert outbox.bouncing_since(conn, "back@example.org", NOW, expiry) is None
        assert outbox.bouncing_since(conn, "old@example.org", NOW, expiry) is None


# -- the real sender ------------------------------------------------------------------------


def test_two_senders_draining_one_postgresql_store_send_each_mail_exactly_once(pg_url, tmp_path, smtp_sink,
                                                                              engines):
    settings = _settings(tmp_path, pg_url, smtp_sink.port)
    engines += [_engine(pg_url), _engine(pg_url)]
    with writing(engines[0]) as conn:
        queued = {_queue(conn, settings, n, at=NOW - timedelta(seconds=1), compose_at_send=n % 2 == 0)
                  for n in range(80)}
    senders = [Sender(engine, settings, clock=lambda: NOW) for engine in engines]
    reports = [None, None]
    start = threading.Barrier(2)

    def drain(n: int) -> None:
        start.wait()
        reports[n] = senders[n].drain()

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(r.sent for r in reports) == 80 and all(r.failed == r.retried == 0 for r in reports)
    assert not set(reports[0].sent_ids) & set(reports[1].sent_ids)
    received = [e.message()["Message-ID"].strip("<>") for e in smtp_sink.wait_for(80)]
    assert sorted(received) == sorted(queued)
    o = t.outbox
    with reading(engines[0]) as conn:
        assert conn.execute(select(o.c.status, o.c.attempts, o.c.sent_at, o.c.last_error).distinct()).all() == [
            ("sent", 1, NOW, "")]
        # Mail composed at send time keeps the bytes it was sent with.
        assert conn.execute(select(o.c.id).where(o.c.data == b"")).first() is None
    # Nothing is left to claim, by either.
    assert [s.drain().sent for s in senders] == [0, 0]
    assert len(smtp_sink.envelopes) == 80


def test_failures_on_postgresql_are_retried_or_recorded_on_the_ticket(pg_url, tmp_path, smtp_sink, engines):
    settings = _settings(tmp_path, pg_url, smtp_sink.port)
    engines.append(_engine(pg_url))
    engine = engines[0]
    with writing(engine) as conn:
        pk = _ticket(conn)
        _queue(conn, settings, 1, ticket_pk=pk, at=NOW - timedelta(seconds=1))
        _queue(conn, settings, 2, ticket_pk=pk, at=NOW - timedelta(seconds=1))
    smtp_sink.fail_next(451, "try again later")
    smtp_sink.fail_next(550, "no such user")
    report = Sender(engine, settings, clock=lambda: NOW).drain()
    assert (report.sent, report.retried, report.failed) == (0, 1, 1)
    o = t.outbox
    with reading(engine) as conn:
        rows = conn.execute(select(o.c.status, o.c.next_attempt_at > NOW, o.c.last_error).order_by(o.c.id)).all()
        assert [tuple(r) for r in rows] == [("queued", True, "451 try again later"),
                                            ("failed", False, "550 no such user")]
        event = conn.execute(select(t.event.c.ticket_id, t.event.c.at, t.event.c.action, t.event.c.detail)).one()
    assert event[:3] == (pk, NOW, "send-failed")
    assert json.loads(event.detail) == {"message_id": "inboxd.T-1002.m2@example.com", "to": ["c2@example.org"],
                                        "error": "550 no such user"}
    # The retried row is due after its back-off; then it goes.
    later = NOW + settings.outbox.retry_max * 2
    assert Sender(engine, settings, clock=lambda: later).drain().sent == 1
    assert [e.rcpt_tos for e in smtp_sink.envelopes] == [["c1@example.org"]]


def test_a_sender_whose_claim_ran_out_sends_nothing_on_postgresql(pg_url, tmp_path, engines):
    """The check before DATA: another daemon claimed the row after the lease, so it is theirs."""
    with SmtpSink() as sink:
        settings = _settings(tmp_path, pg_url, sink.port)
        engines += [_engine(pg_url), _engine(pg_url)]
        with writing(engines[0]) as conn:
            _queue(conn, settings, 1, at=NOW - timedelta(minutes=1))
        slow = Sender(engines[0], settings, clock=lambda: NOW)
        claimed = slow.claim(NOW)
        later = NOW + settings.outbox.lease + timedelta(seconds=1)
        assert Sender(engines[1], settings, clock=lambda: later).drain().sent == 1
        assert slow.send(claimed) == "lost"
        assert len(sink.wait_for(1)) == 1
    assert _rows(engines[0]) == [(1, "sent", 2)]


def test_due_rows_are_claimed_by_their_attempt_time_whether_queued_or_expired(store_url, tmp_path, engines):
    """The first due row goes first, be it queued or left sending past its lease (then by id)."""
    settings = _settings(tmp_path, store_url)
    engines.append(_engine(store_url))
    engine = engines[0]
    lease = settings.outbox.lease
    with writing(engine) as conn:
        _queue(conn, settings, 1, at=NOW - timedelta(minutes=3))  # Claimed below, then its sender dies.
        _queue(conn, settings, 2, at=NOW - timedelta(minutes=2))  # Claimed below, then its sender dies.
        _queue(conn, settings, 3, at=NOW - timedelta(minutes=4))  # Held back until NOW + lease.
        _queue(conn, settings, 4, at=NOW)
        _queue(conn, settings, 5, at=NOW - timedelta(minutes=2))  # The same time as row 2.
        conn.execute(t.outbox.update().where(t.outbox.c.id == 3).values(next_attempt_at=NOW + lease))
        assert [store.claim_next(conn, NOW, lease).id for _ in range(2)] == [1, 2]
    later = NOW + lease
    with writing(engine) as conn:
        order = [row.id for row in iter(lambda: store.claim_next(conn, later, lease), None)]
    # 1 (minute -3, expired), 2 and 5 (minute -2: expired and queued, by id), 4 (minute 0), 3 (due at `later`).
    assert order == [1, 2, 5, 4, 3]
