"""The scheduled duties on both stores: what is due, and each duty done once per target.

Every test runs on SQLite and on PostgreSQL (the `store_url` fixture), on
tickets written straight into the tables with SQLAlchemy Core, at instants
the test passes: nothing waits for the wall clock.  The claims matter most
on PostgreSQL, where two daemons' duties run side by side with no store-wide
write lock: there two engines run every duty at once over the same due
tickets, and each warning, escalation and survey must be queued once.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from inboxd.config import parse_settings
from inboxd.desk import slaclock
from inboxd.desk.duties import Duties
from inboxd.store import duties as store
from inboxd.store.engine import create_store_engine, reading, writing
from inboxd.store.sql import t

# A Tuesday, after the morning digest and not the weekly report's day.
NOW = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)


def make_settings(tmp_path: Path, url: str):
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    return parse_settings({
        "store": {"url": url},
        "mailboxes": [{"name": "support", "address": "support@example.com", "imap": imap}],
        "agents": [{"name": "alice", "email": "alice@example.com", "role": "agent"},
                   {"name": "carol", "email": "carol@example.com", "role": "supervisor"}],
        "sla": [{"name": "fast", "first_response": "1h", "resolution": "5h", "warn_before": "30m"}],
        "scheduler": {"digest_time": "23:59"},
        "csat": {"enabled": True, "delay": "1d", "min_interval": "1h"},
    }, tmp_path / "inboxd.toml")


def seed(conn, pk: int, *, status: str = "open", created: datetime, assignee: str | None = "alice",
         fr_due: datetime | None = None, res_due: datetime | None = None, first_response: datetime | None = None,
         solved: datetime | None = None, closed: datetime | None = None, priority: str = "normal",
         updated: datetime | None = None, requester: str | None = None, history: bool = False) -> None:
    """A ticket whose due times are current (sla_version = version), its creation event and one customer mail."""
    conn.execute(insert(t.ticket).values(
        id=pk, ref=f"T-{1000 + pk}", subject=f"question {pk}", status=status, priority=priority,
        mailbox="support", requester=requester or f"customer{pk}@example.org", requester_name=f"Customer {pk}",
        assignee=assignee, tags="[]", message_count=1, created_at=created, updated_at=updated or created,
        first_response_at=first_response, solved_at=solved, closed_at=closed, sla_policy="fast",
        first_response_due=fr_due, resolution_due=res_due, sla_version=1, version=1, history=history))
    conn.execute(insert(t.event).values(ticket_id=pk, at=created, actor="inboxd", action="created",
                                        detail=json.dumps({"mailbox": "support"})))
    raw = f"mail {pk}".encode()
    sha = f"{pk:064x}"
    conn.execute(insert(t.rawmessage).values(sha256=sha, size=len(raw), data=raw))
    conn.execute(insert(t.message).values(
        message_key=f"<m{pk}@example.org>", message_id=f"m{pk}@example.org", ticket_id=pk, direction="in",
        kind="customer", from_addr=f"customer{pk}@example.org", date=created, subject=f"question {pk}",
        text="Where is my order?", reply_text="Where is my order?", raw_sha256=sha, size=len(raw),
        created_at=created))


# -- the claims and the scans ------------------------------------------------------------------


def test_a_claim_is_taken_once(engine):
    with writing(engine) as conn:
        seed(conn, 1, created=NOW - timedelta(hours=2))
    with writing(engine) as conn:
        assert store.claim(conn, "breach", "1:first_response:x", 1, NOW)
        assert not store.claim(conn, "breach", "1:first_response:x", 1, NOW)
        assert store.claim(conn, "warning", "1:first_response:x", 1, NOW)
        assert store.claim(conn, "weekly", "2026-W49", None, NOW)
    with writing(engine) as conn:
        assert not store.claim(conn, "weekly", "2026-W49", None, NOW + timedelta(days=1))
    with reading(engine) as conn:
        assert conn.execute(select(func.count()).select_from(t.duty)).scalar() == 3


def test_due_promises_leave_out_what_is_claimed(engine):
    """The key a scan builds in SQL is the key a handler claims, on both databases."""
    due = NOW - timedelta(minutes=5, microseconds=654321)
    with writing(engine) as conn:
        seed(conn, 1, created=NOW - timedelta(hours=2), fr_due=due, res_due=NOW + timedelta(minutes=20))
        seed(conn, 2, created=NOW - timedelta(hours=2), fr_due=due, first_response=NOW - timedelta(hours=1))
        seed(conn, 3, status="solved", created=NOW - timedelta(hours=2), fr_due=due)
    with reading(engine) as conn:
        breaches = store.unmet_promises(conn, "breach", "first_response", None, NOW)
        warnings = store.unmet_promises(conn, "warning", "resolution", NOW, NOW + timedelta(minutes=30))
    # Ticket 2 was answered, ticket 3 is solved: only ticket 1's promise is unmet.
    assert breaches == [(1, "first_response", due, "fast")]
    assert [(pk, target) for pk, target, _due, _p in warnings] == [(1, "resolution")]
    with writing(engine) as conn:
        assert store.claim(conn, "breach", store.due_key(1, "first_response", breaches[0][2]), 1, NOW)
    with reading(engine) as conn:
        assert store.unmet_promises(conn, "breach", "first_response", None, NOW) == []
        # A warning is a different duty: its claim is its own.
        assert store.unmet_promises(conn, "warning", "resolution", NOW, NOW + timedelta(minutes=30)) == warnings
    # A new due time is a new target.
    later = NOW + timedelta(seconds=1)
    with writing(engine) as conn:
        conn.execute(t.ticket.update().where(t.ticket.c.id == 1).values(first_response_due=NOW))
    with reading(engine) as conn:
        assert store.unmet_promises(conn, "breach", "first_response", None, later) == [
            (1, "first_response", NOW, "fast")]


def test_surveys_pending_unassigned_and_autoclose_scans(engine):
    closed = NOW - timedelta(days=2, microseconds=1)
    with writing(engine) as conn:
        seed(conn, 1, status="closed", created=NOW - timedelta(days=3), closed=closed)
        seed(conn, 2, status="closed", created=NOW - timedelta(days=3), closed=NOW - timedelta(hours=1))
        seed(conn, 3, status="closed", created=NOW - timedelta(days=40), closed=NOW - timedelta(days=35))
        seed(conn, 4, status="closed", created=NOW - timedelta(days=3), closed=closed, history=True)
        seed(conn, 5, status="pending", created=NOW - timedelta(days=5), updated=NOW - timedelta(days=3))
        seed(conn, 6, status="pending", created=NOW - timedelta(days=5), updated=NOW - timedelta(hours=1))
        seed(conn, 7, status="new", created=NOW - timedelta(hours=2), assignee=None)
        seed(conn, 8, status="new", created=NOW - timedelta(minutes=10), assignee=None, priority="urgent")
        seed(conn, 9, status="new", created=NOW - timedelta(minutes=10), assignee=None)
        seed(conn, 10, status="solved", created=NOW - timedelta(days=9), solved=NOW - timedelta(days=8))
        seed(conn, 11, status="solved", created=NOW - timedelta(days=9), solved=NOW - timedelta(days=1))
    with reading(engine) as conn:
        surveys = store.closed_unsurveyed(conn, NOW - timedelta(days=31), NOW - timedelta(days=1))
        assert [(r[0], r[2]) for r in surveys] == [(1, closed)]
        assert store.pending_unreminded(conn, NOW - timedelta(days=2)) == [5]
        assert [r[0] for r in store.unassigned_waiting(conn, NOW - timedelta(minutes=5), NOW - timedelta(hours=1))] \
            == [7, 8]
        assert store.solved_before(conn, NOW - timedelta(days=7)) == [10]
    with writing(engine) as conn:
        assert store.claim(conn, "survey", store.survey_key(1, closed), 1, NOW)
        assert store.claim(conn, "pending", "5:whenever", 5, NOW)
        assert store.claim(conn, "unassigned", "7", 7, NOW)
        assert store.close_solved(conn, 10, NOW)
        assert not store.close_solved(conn, 10, NOW)  # Closed already: the compare-and-swap refuses.
    with reading(engine) as conn:
        assert store.closed_unsurveyed(conn, NOW - timedelta(days=31), NOW - timedelta(days=1)) == []
        assert store.pending_unreminded(conn, NOW - timedelta(days=2)) == []
        assert [r[0] for r in store.unassigned_waiting(conn, NOW - timedelta(minutes=5), NOW - timedelta(hours=1))] \
            == [8]
        assert store.solved_before(conn, NOW - timedelta(days=7)) == []
        status, closed_at = conn.execute(select(t.ticket.c.status, t.ticket.c.closed_at)
                                         .where(t.ticket.c.id == 10)).one()
        assert (status, closed_at) == ("closed", NOW)


def test_digest_rows_put_the_soonest_due_first_and_undated_last(engine):
    with writing(engine) as conn:
        seed(conn, 1, created=NOW, res_due=NOW + timedelta(hours=3))
        seed(conn, 2, created=NOW)
        seed(conn, 3, created=NOW, fr_due=NOW + timedelta(hours=1))
        seed(conn, 4, status="solved", created=NOW, fr_due=NOW)
    with reading(engine) as conn:
        assert [r[0] for r in store.open_tickets_of(conn, "alice")] == ["T-1003", "T-1001", "T-1002"]


def test_refresh_computes_the_due_times_from_the_history(engine, tmp_path):
    settings = make_settings(tmp_path, str(engine.url))
    duties = Duties(engine, settings)
    created = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with writing(engine) as conn:
        seed(conn, 1, created=created)
        conn.execute(insert(t.event).values(ticket_id=1, at=created + timedelta(hours=1), actor="alice",
                                            action="status", detail=json.dumps(
                                                {"changes": {"status": {"before": "open", "after": "pending"}}})))
        conn.execute(insert(t.event).values(ticket_id=1, at=created + timedelta(hours=3), actor="inboxd",
                                            action="message", detail=json.dumps(
                                                {"status_before": "pending", "status_after": "open"})))
        conn.execute(t.ticket.update().values(version=2))
    with writing(engine) as conn:
        slaclock.refresh(conn, 1, settings, duties.policies, NOW)
    with reading(engine) as conn:
        row = conn.execute(select(t.ticket.c.first_response_due, t.ticket.c.resolution_due,
                                  t.ticket.c.next_response_due, t.ticket.c.sla_version)).one()
        assert slaclock.current_pending_since(conn, 1) is None
    # The two hours pending pause the resolution clock.
    assert tuple(row) == (created + timedelta(hours=1), created + timedelta(hours=7), None, 2)


def test_claims_race_on_two_engines(engine, store_url):
    """Many claimers of the same keys at once, half of them on another engine: one wins each key."""
    other = create_store_engine(store_url)
    start = threading.Barrier(8)
    wins: list[str] = []
    errors: list[BaseException] = []

    def claimer(e) -> None:
        try:
            start.wait()
            for n in range(20):
                with writing(e) as conn:
                    if store.claim(conn, "breach", f"{n}:first_response:x", None, NOW):
                        wins.append(f"{n}")
        except BaseException as exc:  # Reported by the main thread.
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(e,)) for e in (engine, other) * 4]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    other.dispose()
    assert errors == []
    assert sorted(wins, key=int) == [str(n) for n in range(20)]


# -- the duties, end to end ---------------------------------------------------------------------


def test_two_daemons_run_the_duties_at_once_and_each_mail_is_queued_once(engine, store_url, tmp_path):
    settings = make_settings(tmp_path, store_url)
    with writing(engine) as conn:
        # Tickets 1-3, unanswered for 4h40: the first response is overdue (a
        # breach: a notice, an escalation, a mail to the customer) and the
        # resolution is due in 20 minutes (a warning).  These are the due
        # times the policy gives, so recomputing them changes nothing.
        created = NOW - timedelta(hours=4, minutes=40)
        for pk in (1, 2, 3):
            seed(conn, pk, created=created, fr_due=created + timedelta(hours=1),
                 res_due=created + timedelta(hours=5))
        # Tickets 4-5: closed two days ago, so their survey is due.
        for pk in (4, 5):
            seed(conn, pk, status="closed", created=NOW - timedelta(days=3), closed=NOW - timedelta(days=2))
    engines = [engine, create_store_engine(store_url)]
    start = threading.Barrier(len(engines))
    done: list[dict] = []
    errors: list[BaseException] = []

    def daemon(e) -> None:
        try:
            duties = Duties(e, settings)
            start.wait()
            done.append(duties.run_due(NOW))
        except BaseException as exc:  # Reported by the main thread.
            errors.append(exc)

    threads = [threading.Thread(target=daemon, args=(e,)) for e in engines]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    engines[1].dispose()
    assert errors == []
    # Between them, the two daemons did each item once.
    assert sum(d["warning"] for d in done) == 3
    assert sum(d["breach"] for d in done) == 3
    assert sum(d["survey"] for d in done) == 2

    def queued() -> list[tuple]:
        with reading(engine) as conn:
            return sorted(tuple(row) for row in conn.execute(select(t.outbox.c.kind, t.outbox.c.ticket_id, func.count())
                                       .group_by(t.outbox.c.kind, t.outbox.c.ticket_id)).all())

    # Per ticket: a warning and a breach notice to alice, the escalation to the customer; a survey each.
    assert queued() == ([("csat", pk, 1) for pk in (4, 5)] + [("escalation", pk, 1) for pk in (1, 2, 3)]
                        + [("notification", pk, 2) for pk in (1, 2, 3)])
    with reading(engine) as conn:
        tiers = conn.execute(select(t.ticket.c.tier, t.ticket.c.escalated).where(t.ticket.c.id <= 3)).all()
        assert set(tiers) == {(2, True)}
        assert conn.execute(select(func.count()).select_from(t.csat)).scalar() == 2
    # A later pass, at the same instant or a minute on, finds every target
    # claimed (it only recomputes the due times of the escalated tickets, to the same values).
    before = queued()
    for later in (NOW, NOW + timedelta(minutes=1)):
        counts = Duties(engine, settings).run_due(later)
        assert {name: n for name, n in counts.items() if name != "sla"} == {
            "warning": 0, "breach": 0, "unassigned": 0, "pending": 0, "autoclose": 0, "survey": 0,
            "digest": 0, "weekly": 0, "oauth": 0}
    assert queued() == before
    with reading(engine) as conn:
        assert conn.execute(select(t.ticket.c.first_response_due).where(t.ticket.c.id == 1)).scalar() == \
            created + timedelta(hours=1)
