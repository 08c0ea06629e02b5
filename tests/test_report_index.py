"""The report's status history reads the events that can change a status through their partial index
(ix_event_status_change, migration 0020), and the first-contact resolution counts the agents' messages
through theirs (ix_message_agent), on SQLite and PostgreSQL.

The query repeats the index's condition as literal SQL; if the two drift
apart, or the condition is written with bound parameters again, neither
database can use the index and a 90-day report scans every event of its
tickets.  The plans are asked of each database, with a sequential scan
made unattractive on PostgreSQL (its tables here are tiny).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text

from inboxd.store.engine import reading, writing
from inboxd.store.models import AGENT_MESSAGE, STATUS_CHANGE
from inboxd.store.reports import (Scope, agent_reply_counts, agent_reply_counts_query, live_status_events,
                                  live_status_events_query)
from inboxd.store.sql import t

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def index_ddl(conn, name: str) -> str:
    """The index's definition as the database keeps it (SQLite: its CREATE statement; PostgreSQL: indexdef)."""
    if conn.dialect.name == "sqlite":
        return conn.execute(text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": name}).scalar()
    return conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}).scalar()


def seed(engine) -> None:
    with writing(engine) as conn:
        for pk in range(1, 41):
            created = NOW - timedelta(days=pk)
            conn.execute(insert(t.ticket).values(
                id=pk, ref=f"T-{pk}", subject="q", status="open", priority="normal", mailbox="support",
                requester="c@example.org", tags="[]", message_count=1, created_at=created, updated_at=created,
                version=1))
            events = [("created", {}), ("message", {"kind": "customer"}),
                      ("status", {"changes": {"status": {"before": "new", "after": "open"}}}),
                      ("message", {"kind": "agent", "status_before": "open", "status_after": "pending"}),
                      ("autoclose", {}), ("note", {"text": "100% sure"})]
            for i, kind in enumerate(("customer", "agent", "agent", "note")[:pk % 5]):
                sha = f"{pk * 10 + i:064x}"
                conn.execute(insert(t.rawmessage).values(sha256=sha, size=1, data=b"x"))
                conn.execute(insert(t.message).values(
                    message_key=f"m{pk}.{i}", message_id=f"m{pk}.{i}@example.org", ticket_id=pk, kind=kind,
                    direction="out" if kind == "agent" else "in", raw_sha256=sha, size=1, created_at=created))
            for i, (action, detail) in enumerate(events):
                conn.execute(insert(t.event).values(ticket_id=pk, at=created + timedelta(minutes=i), actor="a",
                                                    action=action, detail=json.dumps(detail)))


def plan(conn, statement) -> str:
    """The database's plan of the statement (the instants are passed as the driver takes them: they do not
    change which index a plan reads)."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    if conn.dialect.name == "sqlite":
        args = tuple(params[name] for name in compiled.positiontup)
        args = tuple(a.replace(tzinfo=None).isoformat(sep=" ") if isinstance(a, datetime) else a for a in args)
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, args).all()
        return "\n".join(str(row[-1]) for row in rows)
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + compiled.string, params).all())


@pytest.mark.store
def test_the_status_history_reads_the_partial_index(engine):
    seed(engine)
    since = NOW - timedelta(days=90)
    with reading(engine) as conn:
        assert "ix_event_status_change" in plan(conn, live_status_events_query(Scope(), since, NOW, NOW))
        rows = list(live_status_events(conn, Scope(), since, NOW, NOW))
    # Exactly the events that can change a status, each ticket's in order; the note that merely says
    # "100%" and the messages without a status are not read.
    assert [r[2] for r in rows] == ["status", "message", "autoclose"] * 40
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)


@pytest.mark.store
def test_the_index_holds_the_condition_of_the_models(engine):
    with engine.connect() as conn:
        ddl = index_ddl(conn, "ix_event_status_change")
        if conn.dialect.name == "sqlite":
            assert ddl.endswith("WHERE " + STATUS_CHANGE)
        else:
            # PostgreSQL prints its own form of the condition: the pattern must come through unchanged
            # (a doubled percent sign would be another condition than the query's).
            assert "'%status%'" in ddl and "'merge'" in ddl and "'autoclose'" in ddl


@pytest.mark.store
def test_the_agent_messages_are_counted_through_the_partial_index(engine):
    seed(engine)
    with reading(engine) as conn:
        assert "ix_message_agent" in plan(conn, agent_reply_counts_query(list(range(1, 41))))
        counts = agent_reply_counts(conn, list(range(1, 41)))
    # As seeded: a ticket with pk % 5 == 2 has one agent message, with 3 or 4 two, the others none.
    assert counts == {pk: min(pk % 5, 3) - 1 for pk in range(1, 41) if pk % 5 >= 2}


@pytest.mark.store
def test_the_agent_index_holds_the_condition_of_the_models(engine):
    with engine.connect() as conn:
        ddl = index_ddl(conn, "ix_message_agent")
        if conn.dialect.name == "sqlite":
            assert ddl.endswith("WHERE " + AGENT_MESSAGE)
        else:
            assert "'agent'" in ddl
