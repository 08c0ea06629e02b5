"""Reports on a scripted history: every number below was worked out by hand.

The store is filled directly (tickets, messages, events, CSAT rows with fixed
timestamps) in the shapes ingest and the CLI workflow write: on SQLite through
its own cursor, on PostgreSQL through SQLAlchemy Core (every test runs on
both, and gets the same figures).  The period is
Mon 2026-11-16 00:00Z to Tue 2026-11-24 00:00Z; "now" is 2026-11-24 12:00Z.

  T1 support, SLA "std" (Mon-Fri 09-18 UTC): created Fri 20th 17:00, agent reply
     (ingest) Mon 23rd 10:00 = 2 business hours, solved 11:00 = 3 business hours.
  T2 billing, no SLA: created Tue 17th 09:00, taken 09:30, replies 12:00 and
     Wed 09:00, solved Wed 10:00, customer reopens Thu 09:00, solved again 12:00,
     closed Fri 12:00.  First response 3 h, resolution 51 h, two agent replies.
  T3 support: created Wed 18th 14:00, escalated 15:00 to tier2 ("server down"),
     never answered: both its SLA targets are breached.
  T4 support: created before the period, pending all through it.
  T5 solved and closed before the period (counts only for the backlog ratio).
  T6 support: created Thu 19th 10:00, closed 10:30 without a reply.
"""

from __future__ import annotations

import email
import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from email import policy
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlalchemy as sa

from inboxd.cli.reports import export_command, report_command
from inboxd.config import parse_settings
from inboxd.store.engine import create_store_engine, db_time, migrate, open_store, reading, writing
from inboxd.store.sql import t
from inboxd.desk.duties import Duties
from inboxd.desk.history import status_intervals
from inboxd.reports.metrics import compute_report, report_message_id, transitions
from inboxd.desk.workflow import PermissionDenied

SINCE = datetime(2026, 11, 16, tzinfo=UTC)
UNTIL = datetime(2026, 11, 24, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def make_settings(tmp_path: Path):
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    data = {
        "store": {"url": f"sqlite:///{tmp_path / 'inboxd.db'}"},
        "mailboxes": [{"name": "support", "address": "support@example.com", "imap": imap},
                      {"name": "billing", "address": "billing@example.com", "imap": imap}],
        "agents": [{"name": "alice", "email": "alice@example.com", "role": "agent"},
                   {"name": "bob", "email": "bob@example.com", "role": "agent"},
                   {"name": "carol", "email": "carol@example.com", "role": "supervisor"},
                   {"name": "dave", "email": "dave@example.com", "role": "admin"}],
        "calendars": [{"name": "office", "timezone": "UTC"}],
        "sla": [{"name": "std", "first_response": "4h", "resolution": "2d", "calendar": "office"}],
    }
    return parse_settings(data, tmp_path / "inboxd.toml")


class History:
    """Writes rows the way ingest and the workflow do, through SQLite's own cursor."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.messages = 0

    def ticket(self, pk: int, *, mailbox: str, created: datetime, status: str, tags=(), assignee=None,
               first_response=None, solved=None, closed=None, policy=None, fr_due=None, res_due=None,
               requester="lilei@example.cn", name="Li Lei", team=None) -> None:
        self.db.execute(
            "INSERT INTO ticket (id, ref, subject, status, priority, mailbox, requester, requester_name, assignee,"
            " tags, message_count, created_at, updated_at, first_response_at, solved_at, closed_at, team, tier,"
            " escalated, sla_policy, first_response_due, resolution_due, sla_version, version)"
            " VALUES (?, ?, '订单 20481 还没有发货', ?, 'normal', ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?, ?, 0, 1)",
            (pk, f"T-{1000 + pk}", status, mailbox, requester, name, assignee, json.dumps(list(tags)),
             db_time(created), db_time(created), db_time(first_response), db_time(solved), db_time(closed), team,
             policy, db_time(fr_due), db_time(res_due)))
        self.event(pk, created, "inboxd", "created", {"mailbox": mailbox})

    def event(self, pk: int, when: datetime, actor: str, action: str, detail: dict) -> None:
        self.db.execute("INSERT INTO event (ticket_id, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
                        (pk, db_time(when), actor, action, json.dumps(detail)))
        self.db.execute("UPDATE ticket SET updated_at = max(updated_at, ?) WHERE id = ?", (db_time(when), pk))

    def ingest(self, pk: int, when: datetime, kind: str, before: str | None = None, after: str | None = None,
               actor: str = "inboxd") -> None:
        """A message filed by ingest: the message row and its "message" event."""
        self.message(pk, when, kind)
        detail = {"reason": "subject tag", "kind": kind}
        if before != after:
            detail.update(status_before=before, status_after=after)
        self.event(pk, when, actor, "message", detail)

    def cli(self, pk: int, when: datetime, actor: str, action: str, before: str, after: str, **extra) -> None:
        """A workflow change: `changes.status` as Workflow._change writes it."""
        if action == "reply":
            self.message(pk, when, "agent")
        self.event(pk, when, actor, action, {**extra, "changes": {"status": {"before": before, "after": after}}})

    def message(self, pk: int, when: datetime, kind: str) -> None:
        self.messages += 1
        data = f"message {self.messages}".encode()
        digest = hashlib.sha256(data).hexdigest()
        self.db.execute("INSERT OR IGNORE INTO rawmessage (sha256, size, data) VALUES (?, ?, ?)",
                        (digest, len(data), data))
        self.db.execute(
            "INSERT INTO message (message_key, message_id, ticket_id, direction, kind, from_addr, from_name,"
            " to_addrs, cc_addrs, reply_to, date, subject, text, reply_text, html_only, in_reply_to, \"references\","
            " auto, raw_sha256, size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]', '[]', ?, 's', ?, ?, 0, '[]',"
            " '[]', '{}', ?, ?, ?)",
            (f"<m{self.messages}@x>", f"m{self.messages}@x", pk, "in" if kind == "customer" else "out", kind,
             "lilei@example.cn" if kind == "customer" else "support@example.com",
             "Li Lei" if kind == "customer" else "",
             json.dumps([{"name": "Support", "email": "support@example.com"}]), db_time(when),
             "我的订单在哪里？", "我的订单在哪里？", digest, len(data), db_time(when)))
        self.db.execute("UPDATE ticket SET message_count = message_count + 1 WHERE id = ?", (pk,))

    def csat(self, pk: int, sent: datetime, rating=None, label=None, answered=None) -> None:
        self.db.execute(
            "INSERT INTO csat (ticket_id, customer, token, message_id, sent_at, rating, label, answered_at)"
            " VALUES (?, 'lilei@example.cn', ?, 'x', ?, ?, ?, ?)",
            (pk, f"tok{pk}", db_time(sent), rating, label, db_time(answered)))


class CoreHistory:
    """The same rows as History, written with SQLAlchemy Core (on either database)."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn
        self.messages = 0

    def ticket(self, pk: int, *, mailbox: str, created: datetime, status: str, tags=(), assignee=None,
               first_response=None, solved=None, closed=None, policy=None, fr_due=None, res_due=None,
               requester="lilei@example.cn", name="Li Lei", team=None) -> None:
        self.conn.execute(t.ticket.insert().values(
            id=pk, ref=f"T-{1000 + pk}", subject="订单 20481 还没有发货", status=status, priority="normal",
            mailbox=mailbox, requester=requester, requester_name=name, assignee=assignee, tags=json.dumps(list(tags)),
            message_count=0, created_at=created, updated_at=created, first_response_at=first_response,
            solved_at=solved, closed_at=closed, team=team, tier=1, escalated=False, sla_policy=policy,
            first_response_due=fr_due, resolution_due=res_due, sla_version=0, version=1))
        self.event(pk, created, "inboxd", "created", {"mailbox": mailbox})

    def event(self, pk: int, when: datetime, actor: str, action: str, detail: dict) -> None:
        ticket = t.ticket
        self.conn.execute(t.event.insert().values(ticket_id=pk, at=when, actor=actor, action=action,
                                                  detail=json.dumps(detail)))
        self.conn.execute(ticket.update().where(ticket.c.id == pk, ticket.c.updated_at < when)
                          .values(updated_at=when))

    ingest = History.ingest
    cli = History.cli

    def message(self, pk: int, when: datetime, kind: str) -> None:
        self.messages += 1
        data = f"message {self.messages}".encode()
        digest = self.raw(data)
        self.conn.execute(t.message.insert().values(
            message_key=f"<m{self.messages}@x>", message_id=f"m{self.messages}@x", ticket_id=pk,
            direction="in" if kind == "customer" else "out", kind=kind,
            from_addr="lilei@example.cn" if kind == "customer" else "support@example.com",
            from_name="Li Lei" if kind == "customer" else "",
            to_addrs=json.dumps([{"name": "Support", "email": "support@example.com"}]), date=when, subject="s",
            text="我的订单在哪里？", reply_text="我的订单在哪里？", raw_sha256=digest, size=len(data), created_at=when))
        self.conn.execute(t.ticket.update().where(t.ticket.c.id == pk)
                          .values(message_count=t.ticket.c.message_count + 1))

    def raw(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.conn.execute(sa.select(t.rawmessage.c.sha256).where(t.rawmessage.c.sha256 == digest)).first() is None:
            self.conn.execute(t.rawmessage.insert().values(sha256=digest, size=len(data), data=data))
        return digest

    def csat(self, pk: int, sent: datetime, rating=None, label=None, answered=None) -> None:
        self.conn.execute(t.csat.insert().values(ticket_id=pk, customer="lilei@example.cn", token=f"tok{pk}",
                                                 message_id="x", sent_at=sent, rating=rating, label=label,
                                                 answered_at=answered))


def script(h) -> None:
    """The history of the module docstring, written by `h` (History or CoreHistory)."""
    # T1: business hours.
    h.ticket(1, mailbox="support", created=at(20, 17), status="solved", tags=["billing"], assignee="alice",
             first_response=at(23, 10), solved=at(23, 11), policy="std", fr_due=at(23, 12), res_due=at(30, 11))
    h.message(1, at(20, 17), "customer")
    h.ingest(1, at(23, 10), "agent", "new", "pending", actor="alice")
    h.cli(1, at(23, 11), "alice", "status", "pending", "solved")
    # T2: a reopened ticket, wall-clock times.
    h.ticket(2, mailbox="billing", created=at(17, 9), status="closed", tags=["refund", "billing"], assignee="bob",
             first_response=at(17, 12), solved=at(19, 12), closed=at(20, 12), fr_due=at(17, 10), res_due=at(20, 9),
             requester="wang@example.com", name="Wang Fang")
    h.message(2, at(17, 9), "customer")
    h.cli(2, at(17, 9, 30), "bob", "take", "new", "open")
    h.cli(2, at(17, 12), "bob", "reply", "open", "pending")
    h.ingest(2, at(18, 8), "customer", "pending", "open")
    h.cli(2, at(18, 9), "bob", "reply", "open", "pending")
    h.cli(2, at(18, 10), "bob", "status", "pending", "solved")
    h.ingest(2, at(19, 9), "customer", "solved", "open")
    h.cli(2, at(19, 12), "bob", "status", "open", "solved")
    h.cli(2, at(20, 12), "bob", "close", "solved", "closed", survey=True)
    h.csat(2, at(20, 12), rating=5, label="Very satisfied", answered=at(20, 13))
    # T3: escalated with a reason, never answered.
    h.ticket(3, mailbox="support", created=at(18, 14), status="open", tags=["outage"], fr_due=at(18, 16),
             res_due=at(23, 15), team="tier2")
    h.message(3, at(18, 14), "customer")
    h.cli(3, at(18, 15), "alice", "escalate", "new", "open", to="tier2", reason="server down")
    # T4: older, pending all period.
    h.ticket(4, mailbox="support", created=at(10, 10), status="pending", assignee="alice",
             first_response=at(10, 11), fr_due=at(10, 14))
    h.message(4, at(10, 10), "customer")
    h.ingest(4, at(10, 11), "agent", "new", "pending", actor="alice")
    # T5: solved and closed before the period.
    h.ticket(5, mailbox="support", created=at(2, 9), status="closed", assignee="alice", solved=at(5, 9),
             closed=at(6, 9))
    h.cli(5, at(5, 9), "alice", "status", "new", "solved")
    h.cli(5, at(6, 9), "alice", "close", "solved", "closed")
    h.csat(5, at(6, 9), rating=2, label="Unsatisfied", answered=at(7, 9))
    # T6: closed at once, survey unanswered.
    h.ticket(6, mailbox="support", created=at(19, 10), status="closed", assignee="alice", closed=at(19, 10, 30))
    h.message(6, at(19, 10), "customer")
    h.cli(6, at(19, 10, 30), "alice", "close", "new", "closed")
    h.csat(6, at(19, 10, 30))
    # T1's survey, answered 3 (一般).
    h.csat(1, at(23, 11), rating=3, label="Neutral", answered=at(23, 12))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    """The history on SQLite, written through SQLite's own cursor as ingest and the CLI did, and on
    PostgreSQL through SQLAlchemy Core."""
    settings = make_settings(tmp_path)
    if request.param == "sqlite":
        engine = open_store(settings.store.url)
        db = sqlite3.connect(tmp_path / "inboxd.db", isolation_level=None)
        db.execute("BEGIN")
        script(History(db))
        db.execute("COMMIT")
        db.close()
    else:
        engine = create_store_engine(request.getfixturevalue("pg_url"))
        migrate(engine)
        with writing(engine) as conn:
            script(CoreHistory(conn))
    yield settings, engine
    engine.dispose()


def report(store, **kw):
    settings, engine = store
    with reading(engine) as conn:
        return compute_report(conn, settings, since=SINCE, until=UNTIL, now=NOW,
                              include_agents=kw.pop("include_agents", True), **kw)


def test_ticket_counts_backlog_and_rates(store) -> None:
    r = report(store)
    assert r["tickets"] == {"created": 4, "solved": 2, "closed": 2, "resolved": 3, "reopened": 1,
                            "backlog": 2, "backlog_ratio": 2.0}
    # T1 (1 agent reply) is the only first-contact resolution of T1, T2, T6.
    assert r["first_contact_resolution"] == {"count": 1, "rate": 0.3333}
    assert r["reopen_rate"] == 0.3333


def test_times_use_business_hours_where_the_policy_has_a_calendar(store) -> None:
    r = report(store)
    # T1: Friday 17:00 -> Monday 10:00 is 2 business hours; T2 is 3 wall-clock hours.
    assert r["first_response"] == {"count": 2, "median": 9000.0, "mean": 9000.0, "p90": 10800.0,
                                   "histogram": {"<1h": 0, "1-4h": 2, "4-8h": 0, "8-24h": 0, "1-3d": 0, ">3d": 0}}
    # T6 0.5 h, T1 3 business hours, T2 51 h to its last solve in the period.
    assert r["resolution"] == {"count": 3, "median": 10800.0, "mean": 65400.0, "p90": 183600.0}


def test_sla_csat_volume_and_escalations(store) -> None:
    r = report(store)
    assert r["sla"] == {
        "first_response": {"met": 1, "breached": 2, "pending": 0, "attainment": 0.3333},
        "resolution": {"met": 1, "breached": 1, "pending": 0, "attainment": 0.5},
        "breaches": 3,
    }
    csat = r["csat"]
    trend = csat.pop("trend")
    # Every level of the default scale, best first; the score is the share of 5 and 4.
    assert csat == {"sent": 3, "responses": 2, "response_rate": 0.6667, "score": 0.5, "mean": 4.0, "comments": 0,
                    "distribution": {"5": {"label": "Very satisfied", "count": 1}, "4": {"label": "Satisfied", "count": 0},
                                     "3": {"label": "Neutral", "count": 1}, "2": {"label": "Unsatisfied", "count": 0}},
                    "levels": [{"score": 5, "label": "Very satisfied", "count": 1, "share": 0.5},
                               {"score": 4, "label": "Satisfied", "count": 0, "share": 0.0},
                               {"score": 3, "label": "Neutral", "count": 1, "share": 0.5},
                               {"score": 2, "label": "Unsatisfied", "count": 0, "share": 0.0}]}
    # Per day of the period (eight days from Monday 16th).
    assert [d["start"] for d in trend] == [f"2026-11-{day}" for day in range(16, 24)]
    assert [d["responses"] for d in trend] == [0, 0, 0, 0, 1, 0, 0, 1]
    assert (trend[4]["score"], trend[4]["mean"], trend[4]["counts"]) == (1.0, 5.0, {"5": 1, "4": 0, "3": 0, "2": 0})
    assert (trend[7]["score"], trend[7]["counts"]["3"]) == (0.0, 1)
    assert trend[0] == {"start": "2026-11-16", "responses": 0, "score": None, "mean": None,
                        "counts": {"5": 0, "4": 0, "3": 0, "2": 0}}
    assert r["volume"]["by_mailbox"] == {"support": 3, "billing": 1}
    assert r["volume"]["by_tag"] == {"billing": 2, "outage": 1, "refund": 1}
    hours = [0] * 24
    hours[9] = hours[10] = hours[14] = hours[17] = 1
    assert r["volume"]["by_hour"] == hours
    assert r["volume"]["by_weekday"] == {"mon": 0, "tue": 1, "wed": 1, "thu": 1, "fri": 1, "sat": 0, "sun": 0}
    # A seeded escalate event without a trigger, by an agent: counted as manual.
    assert r["escalations"] == {"count": 1, "by_target": {"tier2": 1},
                                "by_trigger": {"manual": 1, "sla": 0, "tag": 0, "rule": 0},
                                "top_reasons": [{"reason": "server down", "count": 1}]}


def test_time_in_status_and_daily_series(store) -> None:
    r = report(store)
    assert r["time_in_status"] == {"new": 67.0, "open": 135.5, "pending": 214.0, "solved": 60.0, "closed": 193.5}
    assert [d["date"][8:] for d in r["daily"]] == ["16", "17", "18", "19", "20", "21", "22", "23"]
    assert [d["created"] for d in r["daily"]] == [0, 1, 1, 1, 1, 0, 0, 0]
    assert [d["resolved"] for d in r["daily"]] == [0, 0, 1, 2, 0, 0, 0, 1]
    assert [d["backlog"] for d in r["daily"]] == [1, 2, 2, 2, 3, 3, 3, 2]


def test_per_agent_section_and_agent_scope(store) -> None:
    agents = report(store)["agents"]
    assert agents["alice"] == {"open": 1, "resolved": 2, "replies": 1,
                               "first_response": {"count": 1, "median": 7200.0, "mean": 7200.0, "p90": 7200.0},
                               "resolution": {"count": 2, "median": 6300.0, "mean": 6300.0, "p90": 10800.0},
                               # T1's 3 (一般): answered, not in the top two.
                               "csat": {"responses": 1, "score": 0.0, "mean": 3.0}}
    assert agents["bob"]["replies"] == 2 and agents["bob"]["resolved"] == 1
    assert agents["bob"]["csat"] == {"responses": 1, "score": 1.0, "mean": 5.0}
    assert agents["carol"]["csat"] == {"responses": 0, "score": None, "mean": None}
    assert agents["carol"]["open"] == 0
    mine = report(store, agent="alice", include_agents=False)
    assert "agents" not in mine
    assert mine["tickets"]["created"] == 2 and mine["tickets"]["backlog"] == 1


def test_status_intervals_from_both_event_shapes() -> None:
    events = [(at(1, 10), "message", {"status_before": "new", "status_after": "pending"}),
              (at(1, 11), "note", {"text": "x"}),
              (at(1, 12), "status", {"changes": {"status": {"before": "pending", "after": "solved"}}}),
              (at(1, 13), "message", {"status_before": "solved", "status_after": "open"}),
              (at(1, 14), "merge", {"into": "T-1"})]
    intervals = status_intervals(at(1, 9), events, at(1, 15))
    assert [(s, a.hour, b.hour) for s, a, b in intervals] == [
        ("new", 9, 10), ("pending", 10, 12), ("solved", 12, 13), ("open", 13, 14), ("closed", 14, 15)]
    assert [(b, a) for b, a, _ in transitions(intervals)][2] == ("solved", "open")


# --- Permissions and formats through the command functions.

def run_report(store, actor: str, **kw) -> str:
    settings, engine = store
    args = dict(since="2026-11-16", until="2026-11-24", mailbox=None, team=None, agent=None, fmt="json",
                per_agent=None)
    args.update(kw)
    return report_command(**args, settings=settings, engine=engine, actor=settings.agent(actor), now=NOW)


def test_agent_sees_own_numbers_but_not_colleagues(store) -> None:
    with pytest.raises(PermissionDenied, match="supervisor or admin role"):
        run_report(store, "alice", agent="bob")
    with pytest.raises(PermissionDenied, match="per-agent section needs the supervisor or admin role"):
        run_report(store, "alice", per_agent=True)
    team = json.loads(run_report(store, "alice"))
    assert "agents" not in team and team["tickets"]["created"] == 4
    assert json.loads(run_report(store, "alice", agent="alice"))["tickets"]["created"] == 2


def test_supervisor_gets_per_agent_section_and_every_format(store) -> None:
    assert set(json.loads(run_report(store, "carol"))["agents"]) == {"alice", "bob", "carol", "dave"}
    rows = run_report(store, "carol", fmt="csv").splitlines()
    assert rows[0] == "section,key,value"
    assert "tickets,created,4" in rows and "sla,first_response.breached,2" in rows
    # The scale's levels and the per-agent satisfaction in every format.
    assert "csat,levels.0.score,5" in rows and "agents,bob.csat.score,1.0" in rows
    table = run_report(store, "carol", fmt="table")
    assert "created 4" in table and "alice" in table
    assert "; 5 Very satisfied 1; 4 Satisfied 0; 3 Neutral 1; 2 Unsatisfied 0" in table
    bob = next(line.split() for line in table.splitlines() if line.strip().startswith("bob"))
    assert bob[-2:] == ["100.0%", "1"]
    html = run_report(store, "carol", fmt="html")
    assert "data:image/png;base64," in html and "cid:" not in html
    assert ">Agents</h2>" in html and ">alice</td>" in html
    assert ">satisfaction</th>" in html and "100.0% (1)" in html


def test_html_report_without_the_per_agent_section(store) -> None:
    # An agent never gets the section, and a supervisor can leave it out.
    for actor, per_agent in (("alice", None), ("alice", False), ("carol", False)):
        html = run_report(store, actor, fmt="html", per_agent=per_agent)
        assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
        assert "Helpdesk weekly report" in html and ">Agents</h2>" not in html, (actor, per_agent)
    assert ">alice</td>" not in run_report(store, "alice", fmt="html", agent="alice")


def test_export_roles_and_masking(store) -> None:
    settings, engine = store

    def export(actor: str, **kw) -> str:
        return export_command(fmt=kw.pop("fmt", "json"), since=None, until=None, full=kw.pop("full", False),
                              settings=settings, engine=engine, actor=settings.agent(actor))

    with pytest.raises(PermissionDenied, match="export needs the supervisor or admin role"):
        export("alice")
    with pytest.raises(PermissionDenied, match="needs the admin role"):
        export("carol", full=True)
    masked = json.loads(export("carol"))
    t1 = masked["tickets"][0]
    assert (t1["id"], t1["requester"], t1["requester_name"]) == ("T-1001", "l***@example.cn", "L. L.")
    first = masked["messages"][0]
    assert first["text"] == "[masked]" and first["from"] == "l***@example.cn"
    assert first["to"] == ["support@example.com"]  # Our own address is not masked.
    assert "lilei" not in export("carol", fmt="csv") and "我的订单" not in export("carol", fmt="csv")
    full = json.loads(export("dave", full=True))
    assert full["tickets"][0]["requester"] == "lilei@example.cn"
    assert full["messages"][0]["text"] == "我的订单在哪里？"
    assert len(full["messages"]) == sum(t["message_count"] for t in full["tickets"])


# --- The weekly mail.

class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def weekly_duty(engine, settings, week: str, now: datetime) -> bool:
    """The weekly report's duty for `week`, done at `now` in its own write transaction."""
    with writing(engine) as conn:
        return Duties(engine, settings).handle_one_weekly_report(conn, week, now)


def test_weekly_mail_goes_to_supervisors_with_inline_charts(store) -> None:
    settings, engine = store
    assert weekly_duty(engine, settings, "2026-W48", UNTIL)
    with reading(engine) as conn:
        outbox = t.outbox
        rows = conn.execute(sa.select(outbox.c.recipients, outbox.c.message_id, outbox.c.data)
                            .where(outbox.c.kind == "report").order_by(outbox.c.id)).all()
    assert [json.loads(r[0]) for r in rows] == [["carol@example.com"], ["dave@example.com"]]
    data = rows[0][2]
    assert b"\r\n" in data and all(byte < 128 for byte in data)  # CRLF and 7-bit safe.
    msg = email.message_from_bytes(data, policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "carol@example.com"
    # Automatic mail, not an answer to one; no out-of-office reply answers it.
    assert msg["Auto-Submitted"] == "auto-generated"
    assert (msg["X-Auto-Response-Suppress"], msg["Precedence"]) == ("All", "auto_reply")
    assert msg["X-Inboxd-Loop"] == "inboxd; support@example.com"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",)).get_content()
    assert "created            4" in plain and "server down" in plain
    html = msg.get_body(("html",)).get_content()
    parser = _Html()
    parser.feed(html)
    assert "script" not in parser.tags and "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html  # No external images or links to fetch.
    images = {part["Content-ID"].strip("<>"): part.get_payload(decode=True)
              for part in msg.walk() if part.get_content_type() == "image/png"}
    cids = [src.removeprefix("cid:") for src in parser.images]
    assert len(cids) == 4 and all(src.startswith("cid:") for src in parser.images)
    assert set(cids) == set(images)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in images.values())
    # The Message-ID is the recipient's and the week's, and the week is claimed: a second pass queues nothing.
    assert msg["Message-ID"] == f"<{rows[0][1]}>"
    assert rows[0][1] == report_message_id("example.com", "carol@example.com", at(17, 0), UNTIL)
    assert not weekly_duty(engine, settings, "2026-W48", UNTIL)
