"""The weekly report's reply counts, now counted by the database, equal the Python decision they replaced.

`inboxd.store.reports.reply_counts` counts per actor the events that are an
agent's reply: a "reply", a "macro" whose detail names a message_id, a
"message" whose detail says kind "agent".  Until this change the report read
every candidate event and decided in Python (`python_counts` below is that
code, kept as the reference); both run here over a generated store with the
awkward cases (a customer whose address contains "agent", a macro with an
empty or absent message_id, events outside the period, another mailbox), on
SQLite and PostgreSQL.  The report as a whole is compared too.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import and_, insert, or_, select

from inboxd.config import parse_settings
from inboxd.reports.metrics import compute_report
from inboxd.store import reports as store
from inboxd.store.engine import create_store_engine, migrate, reading, writing
from inboxd.store.sql import t

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=14)


def python_counts(conn, scope: store.Scope, since: datetime, until: datetime) -> Counter:
    """The reply counting of inboxd.reports.metrics._agents before the database did it."""
    ticket, event = t.ticket, t.event
    may_reply = or_(event.c.action == "reply",
                    and_(event.c.action == "macro", event.c.detail.like("%message_id%")),
                    and_(event.c.action == "message", event.c.detail.like("%agent%")))
    replies = Counter()
    for actor, action, detail in conn.execute(
            select(event.c.actor, event.c.action, event.c.detail)
            .join(ticket, ticket.c.id == event.c.ticket_id)
            .where(and_(event.c.at >= since, event.c.at < until), may_reply, *scope.clauses())):
        parsed = json.loads(detail or "{}")
        if action == "reply" or (action == "macro" and parsed.get("message_id")) or \
                (action == "message" and parsed.get("kind") == "agent"):
            replies[actor] += 1
    return replies


DETAILS = [
    ("reply", {"message_id": "a@x"}),
    ("reply", {}),
    ("macro", {"macro": "refund", "message_id": "m1@example.com"}),
    ("macro", {"macro": "note-only"}),
    ("macro", {"macro": "odd", "message_id": ""}),
    ("macro", {"macro": "odd", "message_id": None}),
    ("message", {"kind": "agent", "from": "support@example.com"}),
    ("message", {"kind": "customer", "from": "agent.smith@example.org"}),
    ("message", {"kind": "customer", "subject": '"kind": "agent"'}),
    ("message", {"from": "agent@example.org", "note": {"kind": "agent"}}),
    ("status", {"changes": {"status": {"before": "open", "after": "solved"}}}),
    ("created", {"mailbox": "support"}),
]


@pytest.fixture
def seeded(store_url: str, tmp_path: Path):
    engine = create_store_engine(store_url)
    migrate(engine)
    rng = random.Random(16)
    with writing(engine) as conn:
        for pk in range(1, 41):
            created = SINCE + timedelta(hours=rng.randrange(-48, 14 * 24))
            conn.execute(insert(t.ticket).values(
                id=pk, ref=f"T-{1000 + pk}", subject="q", status=rng.choice(("open", "solved", "closed")),
                priority="normal", mailbox=("support", "billing")[pk % 2], requester=f"c{pk}@example.org",
                assignee=rng.choice(("alice", "bob", None)), tags="[]", message_count=1, created_at=created,
                updated_at=created, version=1))
            for _ in range(rng.randrange(3, 12)):
                action, detail = rng.choice(DETAILS)
                at = SINCE + timedelta(hours=rng.randrange(-72, 15 * 24), seconds=rng.randrange(3600))
                conn.execute(insert(t.event).values(ticket_id=pk, at=at, actor=rng.choice(("alice", "bob", "inboxd")),
                                                    action=action, detail=json.dumps(detail, ensure_ascii=False)))
    yield engine
    engine.dispose()


@pytest.mark.parametrize("scope", [store.Scope(), store.Scope(mailbox="billing"), store.Scope(agent="bob")])
def test_counted_by_the_database_as_python_counted(seeded, scope):
    with reading(seeded) as conn:
        expected = python_counts(conn, scope, SINCE, UNTIL)
        assert store.reply_counts(conn, scope, SINCE, UNTIL) == dict(expected)
    assert sum(expected.values()) > 10


def test_the_report_counts_the_same_replies(seeded, tmp_path):
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    settings = parse_settings({
        "store": {"url": "sqlite:///unused.db"},
        "mailboxes": [{"name": n, "address": f"{n}@example.com", "imap": imap} for n in ("support", "billing")],
        "agents": [{"name": "alice", "email": "alice@example.com"}, {"name": "bob", "email": "bob@example.com"}],
    }, tmp_path / "inboxd.toml")
    with reading(seeded) as conn:
        report = compute_report(conn, settings, since=SINCE, until=UNTIL, now=UNTIL, include_agents=True)
        expected = python_counts(conn, store.Scope(), SINCE, UNTIL)
    assert {name: row["replies"] for name, row in report["agents"].items()} == {
        name: expected.get(name, 0) for name in report["agents"]}
