"""The store's schema and SQLite settings."""

import os
import stat

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import inboxd.models  # noqa: F401
from inboxd import db


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
