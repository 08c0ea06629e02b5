"""The auto-reply budget's bookkeeping (inboxd.outbound.outbox): which address and domain an ack counts against, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inboxd.outbound.outbox import AckCounts, ack_counts, budget_key
from inboxd.store import outbox as store
from inboxd.store.engine import create_store_engine, migrate, open_store, reading, writing

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("address, key, domain", [
    ("bot@bots.example", "bot@bots.example", "bots.example"),
    ("bot+17@bots.example", "bot@bots.example", "bots.example"),
    ("Bot+a+b@Bots.Example", "bot@bots.example", "bots.example"),
    ("BOT@BOTS.EXAMPLE", "bot@bots.example", "bots.example"),
    ("li.lei@qq.com", "li.lei@qq.com", "qq.com"),
])
def test_budget_key_drops_the_plus_tag_and_case(address, key, domain):
    """Defect: an autoresponder rotating bot+N@ was a new address to the budget each time."""
    assert budget_key(address) == (key, domain)


def test_ack_counts_count_each_window(store_url):
    """Defect: the budget scanned every ack of the day with LIKE; now two indexed lookups,
    per normalised address (hour, day) and per domain (minute, hour).  On SQLite and PostgreSQL."""
    engine = create_store_engine(store_url)
    migrate(engine)
    sent = [("bot+1@bots.example", timedelta(seconds=30)), ("Bot@bots.example", timedelta(minutes=30)),
            ("bot+2@bots.example", timedelta(hours=5)), ("bot@bots.example", timedelta(hours=25)),
            ("other@bots.example", timedelta(seconds=10)), ("other@bots.example", timedelta(minutes=2)),
            ("bot@elsewhere.example", timedelta(seconds=1))]
    try:
        with writing(engine) as conn:
            for n, (address, ago) in enumerate(sent):
                key, domain = budget_key(address)
                store.add(conn, ticket_id=None, mailbox="support", kind="ack", message_id=f"id{n}@example.com",
                          sender="support@example.com", recipients=f'["{address}"]', data=b"", spec=None,
                          copy_status="none", ack_key=key, ack_domain=domain, now=NOW - ago)
        with reading(engine) as conn:
            assert ack_counts(conn, "BOT+99@bots.example", NOW) == AckCounts(
                address_hour=2, address_day=3, domain_minute=2, domain_hour=4)
            assert ack_counts(conn, "bot@bots.example", NOW, count_domain=False) == AckCounts(2, 3, 0, 0)
            # A window's edge: an ack exactly a minute old is still in the minute.
            assert ack_counts(conn, "x@bots.example", NOW + timedelta(seconds=50)).domain_minute == 1
    finally:
        engine.dispose()


def test_ack_counts_use_the_indexes(store_url):
    """On SQLite and PostgreSQL, each planner's own EXPLAIN (PostgreSQL's with sequential scans off,
    since on an empty table it would rightly scan it rather than use any index)."""
    from sqlalchemy import bindparam, text

    from inboxd.store.sql import t

    engine = open_store(store_url)
    try:
        with reading(engine) as conn:
            sqlite = conn.dialect.name == "sqlite"
            if not sqlite:
                conn.execute(text("SET LOCAL enable_seqscan = off"))
            for column, index in (("ack_key", "ix_outbox_ack_key"), ("ack_domain", "ix_outbox_ack_domain")):
                query = text(f"{'EXPLAIN QUERY PLAN' if sqlite else 'EXPLAIN'} SELECT count(*) FROM outbox"
                             f" WHERE {column} = :value AND created_at >= :since").bindparams(
                    bindparam("since", type_=t.outbox.c.created_at.type))
                plan = " ".join(str(row) for row in conn.execute(query, {"value": "a", "since": NOW}))
                assert index in plan
    finally:
        engine.dispose()
