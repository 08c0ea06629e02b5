"""The store's schema (on SQLite and PostgreSQL) and SQLite settings."""

import os
import stat

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import inboxd.store.models  # noqa: F401
from inboxd.store import engine as db


def test_schema_head_constant_matches_alembic():
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == db.SCHEMA_HEAD


def test_migrations_build_the_declared_tables(store_url):
    """On SQLite and on PostgreSQL."""
    from sqlalchemy import inspect

    engine = db.open_store(store_url)
    try:
        insp = inspect(engine)
        for table in SQLModel.metadata.sorted_tables:
            columns = {c["name"] for c in insp.get_columns(table.name)}
            assert columns == {c.name for c in table.columns}, table.name
        assert db.current_revision(engine) == db.SCHEMA_HEAD
    finally:
        engine.dispose()
    # Opening again is a no-op.
    engine = db.open_store(store_url)
    try:
        assert db.current_revision(engine) == db.SCHEMA_HEAD
    finally:
        engine.dispose()


def test_the_sqlite_file_is_private(tmp_path):
    """SQLite only: PostgreSQL keeps its files itself."""
    db.open_store(f"sqlite:///{tmp_path / 'x.db'}").dispose()
    assert stat.S_IMODE(os.stat(tmp_path / "x.db").st_mode) == 0o600


def test_sqlite_is_tuned(tmp_path):
    """SQLite only: the PRAGMAs of WAL, the busy timeout and foreign keys."""
    engine = db.open_store(f"sqlite:///{tmp_path / 'x.db'}")
    with db.reading(engine) as conn:
        assert conn.exec_driver_sql("pragma journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("pragma busy_timeout").scalar() == db.BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("pragma foreign_keys").scalar() == 1


def test_upgrade_from_the_first_schema_keeps_data(store_url):
    """On SQLite and on PostgreSQL: a store made by the first migration, with a ticket and its message,
    migrates to the head with both."""
    from alembic import command
    from sqlalchemy import text

    engine = db.create_store_engine(store_url)
    sqlite = engine.dialect.name == "sqlite"
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.connect() as conn:
        if sqlite:
            # Outside the transaction, where SQLite honours it: the migrations rebuild tables.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            created = "2026-01-01 00:00:00"
            conn.execute(text(
                "INSERT INTO ticket (id, ref, subject, status, priority, mailbox, requester, requester_name, tags,"
                " message_count, created_at, updated_at, version) VALUES (1, 'T-1000', 's', 'new', 'normal',"
                " 'support', 'a@b.c', '', '[]', 1, :created, :created, 1)"), {"created": created})
            conn.execute(text("INSERT INTO rawmessage (sha256, size, data) VALUES ('x', 1, :data)"), {"data": b"\0"})
            conn.execute(text(
                "INSERT INTO message (message_key, ticket_id, direction, kind, from_addr, from_name, to_addrs,"
                " cc_addrs, reply_to, subject, text, reply_text, html_only, in_reply_to, \"references\", auto,"
                " raw_sha256, size, created_at) VALUES ('k', 1, 'in', 'customer', '', '', '[]', '[]', '[]', '',"
                " '', '', :html_only, '[]', '[]', '{}', 'x', 1, :created)"), {"html_only": False, "created": created})
    db.migrate(engine)
    assert db.current_revision(engine) == db.SCHEMA_HEAD
    with db.reading(engine) as conn:
        assert conn.execute(text("SELECT ref, tier, escalated FROM ticket")).all() == [("T-1000", 1, False)]
        assert conn.execute(text("SELECT count(*) FROM message")).scalar() == 1
        if sqlite:
            assert conn.execute(text("pragma foreign_keys")).scalar() == 1
    engine.dispose()


def test_migrations_match_the_models_exactly(store_url):
    """On SQLite and on PostgreSQL: migrating an empty database to the head gives exactly the models' schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = db.open_store(store_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    finally:
        engine.dispose()
