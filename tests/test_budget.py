"""The auto-reply budget's bookkeeping (inboxd.outbound.outbox): which address and domain an ack counts against, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inboxd.store.engine import db_time, open_store, writing
from inboxd.outbound.outbox import AckCounts, ack_counts, budget_key

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


def test_ack_counts_count_each_window_through_the_indexes(tmp_path):
    """Defect: the budget scanned every ack of the day with LIKE; now two indexed lookups,
    per normalised address (hour, day) and per domain (minute, hour)."""
    engine = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    sent = [("bot+1@bots.example", timedelta(seconds=30)), ("Bot@bots.example", timedelta(minutes=30)),
            ("bot+2@bots.example", timedelta(hours=5)), ("bot@bots.example", timedelta(hours=25)),
            ("other@bots.example", timedelta(seconds=10)), ("other@bots.example", timedelta(minutes=2)),
            ("bot@elsewhere.example", timedelta(seconds=1))]
    with writing(engine) as conn:
        for n, (address, ago) in enumerate(sent):
            key, domain = budget_key(address)
            conn.exec_driver_sql(
                "INSERT INTO outbox (mailbox, kind, message_id, sender, recipients, data, status, attempts,"
                " next_attempt_at, last_error, created_at, copy_status, ack_key, ack_domain)"
                " VALUES ('support', 'ack', ?, 'support@example.com', ?, x'', 'sent', 1, ?, '', ?, 'none', ?, ?)",
                (f"id{n}@example.com", f'["{address}"]', db_time(NOW - ago), db_time(NOW - ago), key, domain))
        cur = conn.connection.driver_connection.cursor()
        assert ack_counts(cur, "BOT+99@bots.example", NOW) == AckCounts(
            address_hour=2, address_day=3, domain_minute=2, domain_hour=4)
        assert ack_counts(cur, "bot@bots.example", NOW, count_domain=False) == AckCounts(2, 3, 0, 0)
        plan = " ".join(str(row) for row in cur.execute(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM outbox WHERE ack_key = ? AND created_at >= ?", ("a", "b")))
        assert "ix_outbox_ack_key" in plan
