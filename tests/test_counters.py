"""Ticket numbers (inboxd.store.counters): unique under concurrent writers, and
continuing after the last ticket of a store that was upgraded or copied."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from sqlalchemy import select

from inboxd.store import counters
from inboxd.store.engine import MIGRATIONS, create_store_engine, is_sqlite, migrate, reading, writing
from inboxd.store.sql import t

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def _ticket(pk: int) -> dict:
    return dict(id=pk, ref=f"T-{999 + pk}", subject="s", status="new", priority="normal", mailbox="support",
                requester="a@example.org", requester_name="", tags="[]", message_count=1, created_at=NOW,
                updated_at=NOW, version=1)


def test_two_postgresql_transactions_get_different_numbers_without_waiting(pg_url):
    engine = create_store_engine(pg_url)
    migrate(engine)
    try:
        with engine.connect() as one, engine.connect() as two:
            # Both transactions open at once, neither committed: no lock is held between them.
            with one.begin(), two.begin():
                a = counters.next_ticket_number(one)
                b = counters.next_ticket_number(two)
                c = counters.next_ticket_number(one)
            assert len({a, b, c}) == 3
    finally:
        engine.dispose()


def test_many_writers_never_share_a_number(pg_url):
    engine = create_store_engine(pg_url)
    migrate(engine)
    got: list[int] = []
    lock = threading.Lock()

    def allocate() -> None:
        for _ in range(25):
            with writing(engine) as conn:
                n = counters.next_ticket_number(conn)
                conn.execute(t.ticket.insert().values(**_ticket(n)))
            with lock:
                got.append(n)

    try:
        workers = [threading.Thread(target=allocate) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert sorted(got) == list(range(1, 101))
    finally:
        engine.dispose()


def test_a_rolled_back_number_is_a_gap_on_postgresql_and_reused_on_sqlite(store_url):
    engine = create_store_engine(store_url)
    migrate(engine)
    try:
        with engine.connect() as conn:
            with conn.begin() as tx:
                assert counters.next_ticket_number(conn) == 1
                tx.rollback()
        with writing(engine) as conn:
            expected = 1 if is_sqlite(engine) else 2
            assert counters.next_ticket_number(conn) == expected
    finally:
        engine.dispose()


def test_an_upgraded_store_keeps_numbering_after_its_last_ticket(store_url):
    engine = create_store_engine(store_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.connect() as conn:
            if is_sqlite(engine):
                # As migrate() does: SQLite's table copies need the foreign keys off.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
            conn.begin()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0011")
            conn.execute(t.ticket.insert(), [_ticket(pk) for pk in (1, 2, 41)])
            conn.commit()
            if is_sqlite(engine):
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
        migrate(engine)
        with writing(engine) as conn:
            assert counters.peek_ticket_number(conn) == 41
            assert counters.next_ticket_number(conn) == 42
            assert counters.next_ticket_number(conn) == 43
    finally:
        engine.dispose()


def test_a_new_store_starts_at_one_and_has_no_counter_row(store_url):
    """No row until the first ticket, so a store copied into a new one brings its own."""
    engine = create_store_engine(store_url)
    migrate(engine)
    try:
        with reading(engine) as conn:
            assert conn.execute(select(t.counter)).all() == []
            assert counters.peek_ticket_number(conn) == 0
        with writing(engine) as conn:
            assert counters.next_ticket_number(conn) == 1
    finally:
        engine.dispose()


def test_sync_follows_tickets_written_by_other_means(store_url):
    """What the store copier calls after copying tickets with their ids."""
    engine = create_store_engine(store_url)
    migrate(engine)
    try:
        with writing(engine) as conn:
            assert counters.next_ticket_number(conn) == 1
            conn.execute(t.ticket.insert(), [_ticket(pk) for pk in (1, 7, 100)])
            counters.sync_ticket_number(conn)
        with writing(engine) as conn:
            assert counters.next_ticket_number(conn) == 101
    finally:
        engine.dispose()


def test_sqlite_numbers_pass_a_ticket_written_without_the_counter(tmp_path):
    """On SQLite the write lock lets the counter also look at max(id), so no number is given twice."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 's.db'}")
    migrate(engine)
    try:
        with writing(engine) as conn:
            assert counters.next_ticket_number(conn) == 1
            conn.execute(t.ticket.insert().values(**_ticket(5)))
            assert counters.next_ticket_number(conn) == 6
    finally:
        engine.dispose()
