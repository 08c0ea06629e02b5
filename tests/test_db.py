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


def test_migrations_build_the_declared_tables(tmp_path):
    engine = db.open_store(f"sqlite:///{tmp_path / 'x.db'}")
    from sqlalchemy import inspect

    insp = inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        columns = {c["name"] for c in insp.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    assert db.current_revision(engine) == db.SCHEMA_HEAD
    # Opening again is a no-op, and the file is private.
    db.open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert stat.S_IMODE(os.stat(tmp_path / "x.db").st_mode) == 0o600


def test_sqlite_is_tuned(tmp_path):
    engine = db.open_store(f"sqlite:///{tmp_path / 'x.db'}")
    with db.reading(engine) as conn:
        assert conn.exec_driver_sql("pragma journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("pragma busy_timeout").scalar() == db.BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("pragma foreign_keys").scalar() == 1


def test_upgrade_from_the_first_schema_keeps_data(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.create_store_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.connect() as conn:
        conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.exec_driver_sql(
                "INSERT INTO ticket (id, ref, subject, status, priority, mailbox, requester, requester_name, tags,"
                " message_count, created_at, updated_at, version) VALUES (1, 'T-1000', 's', 'new', 'normal',"
                " 'support', 'a@b.c', '', '[]', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)")
            conn.exec_driver_sql("INSERT INTO rawmessage (sha256, size, data) VALUES ('x', 1, x'00')")
            conn.exec_driver_sql(
                "INSERT INTO message (message_key, ticket_id, direction, kind, from_addr, from_name, to_addrs,"
                " cc_addrs, reply_to, subject, text, reply_text, html_only, in_reply_to, \"references\", auto,"
                " raw_sha256, size, created_at) VALUES ('k', 1, 'in', 'customer', '', '', '[]', '[]', '[]', '',"
                " '', '', 0, '[]', '[]', '{}', 'x', 1, '2026-01-01 00:00:00')")
    db.migrate(engine)
    assert db.current_revision(engine) == db.SCHEMA_HEAD
    with db.reading(engine) as conn:
        assert conn.exec_driver_sql("SELECT ref, tier, escalated FROM ticket").all() == [("T-1000", 1, 0)]
        assert conn.exec_driver_sql("SELECT count(*) FROM message").scalar() == 1
        assert conn.exec_driver_sql("pragma foreign_keys").scalar() == 1


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
