"""A brand-new store is made in one step (the models' create_all and a version row at SCHEMA_HEAD);
it must be exactly the store the migrations make: tables, columns, types, defaults, keys, indexes,
constraints (and PostgreSQL's sequences), on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from inboxd.store import engine as db


def _other_store(request: pytest.FixtureRequest, store_url: str, tmp_path) -> str:
    if store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'migrated.db'}"
    return request.getfixturevalue("postgres").create_database()


def _schema(url: str) -> dict:
    """Everything the database says about its schema, in a form that compares."""
    engine = db.create_store_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            out: dict = {}
            for table in sorted(insp.get_table_names()):
                out[table] = {
                    "columns": sorted((c["name"], str(c["type"]), c["nullable"], str(c["default"]))
                                      for c in insp.get_columns(table)),
                    "primary key": (insp.get_pk_constraint(table)["constrained_columns"]),
                    "foreign keys": sorted((tuple(fk["constrained_columns"]), fk["referred_table"],
                                            tuple(fk["referred_columns"]), str(sorted(fk["options"].items())))
                                           for fk in insp.get_foreign_keys(table)),
                    "indexes": sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                                      for ix in insp.get_indexes(table)),
                    "unique constraints": sorted((uq["name"], tuple(uq["column_names"]))
                                                 for uq in insp.get_unique_constraints(table)),
                    "check constraints": sorted((ck["name"], ck["sqltext"]) for ck in insp.get_check_constraints(table)),
                }
            if engine.dialect.name == "postgresql":
                out["sequences"] = conn.execute(text(
                    "SELECT sequencename, data_type::text, start_value, min_value, max_value, increment_by, cycle"
                    " FROM pg_sequences WHERE schemaname = 'public' AND sequencename NOT LIKE '%\\_id\\_seq'"
                    " ORDER BY 1")).all()
                out["sequence values"] = [conn.execute(text(f"SELECT last_value, is_called FROM {name}")).one()
                                          for name, *_ in out["sequences"]]
            else:
                # Column order matters to SQLite's table rewrites (and shows in `.schema`).
                out["column order"] = {t: [c["name"] for c in insp.get_columns(t)] for t in insp.get_table_names()}
            out["version"] = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            out["rows"] = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                           for t in insp.get_table_names()}
        return out
    finally:
        engine.dispose()


@pytest.mark.store
def test_a_new_store_made_in_one_step_is_the_store_the_migrations_make(request, store_url, tmp_path):
    fresh = db.open_store(store_url)  # An empty database: the one-step path.
    fresh.dispose()
    migrated_url = _other_store(request, store_url, tmp_path)
    migrated = db.create_store_engine(migrated_url)
    db.upgrade(migrated)  # Every migration, with Alembic.
    migrated.dispose()
    made, expected = _schema(store_url), _schema(migrated_url)
    assert made.keys() == expected.keys()
    for key in expected:
        assert made[key] == expected[key], key


@pytest.mark.store
def test_a_current_store_is_left_alone_and_an_old_one_is_migrated(store_url):
    from alembic import command
    from alembic.config import Config

    engine = db.create_store_engine(store_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(db.MIGRATIONS))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0017")
        db.migrate(engine)  # Tables exist: not "empty", so Alembic runs the rest.
        assert db.current_revision(engine) == db.SCHEMA_HEAD
        db.migrate(engine)
        assert db.current_revision(engine) == db.SCHEMA_HEAD
    finally:
        engine.dispose()


def test_recognising_a_current_store_does_not_import_alembic(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'store.db'}"
    code = ("import sys; from inboxd.store.engine import open_store; open_store(sys.argv[1]).dispose();"
            " print('alembic' in sys.modules)")
    first = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, check=True)
    # Neither creating an empty store nor opening a current one needs Alembic.
    assert (first.stdout.strip(), again.stdout.strip()) == ("False", "False")
