"""inboxd/store/tables.py (Core tables generated from the SQLModel classes) is current and equal to the models.

The runtime uses the generated tables so that it never imports SQLModel or
pydantic; these tests make that safe: the committed file is what
`scripts/gen_tables` writes for the models as they are now, both metadata
compile to the same CREATE TABLE / CREATE INDEX / CREATE SEQUENCE on SQLite
and PostgreSQL, Python-side defaults (which Core INSERTs rely on) are the
same, our UTCDateTime behaves as SQLModel's, and the daemon's imports and a
fresh store's creation load neither SQLModel nor pydantic.
"""

from __future__ import annotations

import runpy
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import types
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateSequence, CreateTable
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import UTCDateTime as SQLModelUTCDateTime

import inboxd.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from inboxd.store import tables
from inboxd.store.types import UTCDateTime

ROOT = Path(__file__).resolve().parents[1]
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}
MODELS = SQLModel.metadata
GENERATED = tables.metadata


def test_the_generated_module_is_current():
    """Somebody who changes a model and forgets `scripts/gen_tables` is told so here."""
    render = runpy.run_path(str(ROOT / "scripts" / "gen_tables"), run_name="gen_tables")["render"]
    assert (ROOT / "inboxd" / "store" / "tables.py").read_text() == render(), \
        "inboxd/store/tables.py is out of date: run scripts/gen_tables"


def test_same_tables_in_the_same_dependency_order():
    assert list(GENERATED.tables) == list(MODELS.tables)
    # Backups and store copies walk the tables parents first.
    assert [t.name for t in GENERATED.sorted_tables] == [t.name for t in MODELS.sorted_tables]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", list(MODELS.tables))
def test_same_ddl(name, dialect):
    """CREATE TABLE and every CREATE INDEX compile identically from both metadata."""
    d = DIALECTS[dialect]
    ours, theirs = GENERATED.tables[name], MODELS.tables[name]
    assert str(CreateTable(ours).compile(dialect=d)) == str(CreateTable(theirs).compile(dialect=d))

    def indexes(table):
        return {index.name: str(CreateIndex(index).compile(dialect=d)) for index in table.indexes}

    assert indexes(ours) == indexes(theirs)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_same_sequences(dialect):
    d = DIALECTS[dialect]
    assert sorted(GENERATED._sequences) == sorted(MODELS._sequences) == ["ticket_number"]
    for name, sequence in MODELS._sequences.items():
        assert str(CreateSequence(GENERATED._sequences[name]).compile(dialect=d)) == \
            str(CreateSequence(sequence).compile(dialect=d))
    assert tables.TICKET_NUMBER.name == inboxd.store.models.TICKET_NUMBER.name


@pytest.mark.parametrize("name", list(MODELS.tables))
def test_same_python_side_defaults(name):
    """Core INSERTs that leave a column out get the same value (e.g. a ticket's status 'new')."""

    def defaults(table):
        return {column.name: (None if column.default is None else (column.default.is_scalar, column.default.arg))
                for column in table.columns}

    assert defaults(GENERATED.tables[name]) == defaults(MODELS.tables[name])


def test_the_ticket_status_default_is_kept():
    # Spelled out once: the filing path inserts tickets without a status.
    assert GENERATED.tables["ticket"].c.status.default.arg == "new"


def test_timestamp_columns_use_our_utc_type():
    for table in GENERATED.tables.values():
        for column in table.columns:
            theirs = MODELS.tables[table.name].c[column.name].type
            assert isinstance(column.type, UTCDateTime) == isinstance(theirs, SQLModelUTCDateTime), \
                f"{table.name}.{column.name}"


# UTCDateTime: the same behaviour as SQLModel's, case by case, on both classes.
BERLIN = timezone(timedelta(hours=1))


@pytest.mark.parametrize("cls", [UTCDateTime, SQLModelUTCDateTime])
def test_utc_datetime_binds_aware_values_as_utc(cls):
    value = cls().process_bind_param(datetime(2026, 12, 1, 10, 30, tzinfo=BERLIN), sqlite.dialect())
    assert value == datetime(2026, 12, 1, 9, 30, tzinfo=UTC) and value.tzinfo is UTC
    assert cls().process_bind_param(None, sqlite.dialect()) is None


@pytest.mark.parametrize("cls", [UTCDateTime, SQLModelUTCDateTime])
def test_utc_datetime_refuses_naive_values(cls):
    with pytest.raises(ValueError, match="timezone"):
        cls().process_bind_param(datetime(2026, 12, 1, 10, 30), sqlite.dialect())


@pytest.mark.parametrize("cls", [UTCDateTime, SQLModelUTCDateTime])
def test_utc_datetime_results_are_aware_utc(cls):
    # SQLite gives naive UTC back; PostgreSQL an aware value in the session's zone.
    naive = cls().process_result_value(datetime(2026, 12, 1, 9, 30), sqlite.dialect())
    assert naive == datetime(2026, 12, 1, 9, 30, tzinfo=UTC) and naive.tzinfo is UTC
    aware = cls().process_result_value(datetime(2026, 12, 1, 10, 30, tzinfo=BERLIN), postgresql.dialect())
    assert aware == datetime(2026, 12, 1, 9, 30, tzinfo=UTC) and aware.tzinfo is UTC
    assert cls().process_result_value(None, sqlite.dialect()) is None


@pytest.mark.parametrize("cls", [UTCDateTime, SQLModelUTCDateTime])
def test_utc_datetime_type_details(cls):
    assert repr(cls()) == "UTCDateTime()"
    assert cls.cache_ok is True
    assert cls().impl.timezone is True
    assert isinstance(cls().coerce_compared_value(None, timedelta(hours=1)), types.Interval)
    assert isinstance(cls().coerce_compared_value(None, datetime.now(UTC)), cls)
    assert str(cls().compile(dialect=postgresql.dialect())) == "TIMESTAMP WITH TIME ZONE"


def test_a_round_trip_through_sqlite_keeps_the_instant(tmp_path):
    from sqlalchemy import create_engine, select

    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        GENERATED.create_all(engine)
        event = GENERATED.tables["event"]
        at = datetime(2026, 12, 1, 10, 30, 15, 123456, tzinfo=BERLIN)
        with engine.begin() as conn:
            conn.execute(event.insert().values(at=at, actor="a", action="note"))
            row = conn.execute(select(event.c.at, event.c.detail)).one()
        # The instant survives, in UTC; the Python-side default filled in detail.
        assert row.at == at and row.at.tzinfo is UTC and row.detail == "{}"
    finally:
        engine.dispose()


PROBE = """
import sys
import inboxd.daemon
from inboxd.store import backup, copy, counters, leases
from inboxd.store.engine import create_store_engine, migrate, writing
engine = create_store_engine(sys.argv[1])
migrate(engine)  # a fresh store: create_all of the generated tables
with writing(engine) as conn:
    counters.next_ticket_number(conn)
engine.dispose()
print(sorted(name for name in ("sqlmodel", "pydantic", "alembic", "inboxd.store.models") if name in sys.modules))
"""


def test_the_daemon_and_a_fresh_store_do_not_import_sqlmodel(tmp_path):
    result = subprocess.run([sys.executable, "-c", PROBE, f"sqlite:///{tmp_path / 'inboxd.db'}"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "inboxd.db").exists()


def test_no_runtime_module_imports_the_models():
    """Only Alembic (inboxd/store/migrations) may use the SQLModel classes; anything else would
    load SQLModel and pydantic into the daemon again, lazily, where the probe above does not look."""
    import ast

    offenders = []
    for path in sorted((ROOT / "inboxd").rglob("*.py")):
        if "migrations" in path.relative_to(ROOT / "inboxd").parts or path.name == "models.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if any(name.split(".")[0] == "sqlmodel" or name == "inboxd.store.models" for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
