"""The few SQL constructs SQLite and PostgreSQL spell differently, written once.

Every statement in the store layer is SQLAlchemy Core over the tables of
`inboxd.store.tables` (generated from `inboxd.store.models`, without
SQLModel: `tables.ticket`, `tables.message`, ...), so the same
code runs on both databases and every datetime goes through the column's
UTCDateTime type: aware UTC in, aware UTC out, a real timestamp column on
PostgreSQL.  What the two dialects spell differently is here:

- `insert_ignore(conn, table)`: INSERT ... ON CONFLICT DO NOTHING (SQLite's
  "INSERT OR IGNORE" and PostgreSQL's conflict clause are the same statement
  through the dialect's own `insert`).
- `upsert(conn, table, keys, update)`: INSERT ... ON CONFLICT (keys) DO UPDATE.
- `to_second(expr)`: a timestamp cut to its whole second (the thread order).
- `json_text(column, key)`: one top-level key of a JSON text column, as text.
- `greatest(a, b)` / `least(a, b)`: SQLite's two-argument max() and min().

Null-safe equality ("IS ?") is `column.is_not_distinct_from(value)`, which
SQLAlchemy already spells for each dialect.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, func, literal, literal_column
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import DateTime, Text

from inboxd.store.tables import metadata

# The tables, by their SQL names: `tables.ticket.c.status`.
tables = metadata.tables


class _Tables:
    """Attribute access to the Core tables (`tables.ticket`), for readable statements."""

    def __getattr__(self, name: str) -> Table:
        try:
            return metadata.tables[name]
        except KeyError:
            raise AttributeError(name) from None


t = _Tables()


def dialect_insert(conn: Connection, table: Table):
    """The INSERT of the connection's own dialect, which offers ON CONFLICT (and `excluded`)."""
    if conn.dialect.name == "postgresql":
        # Imported here: PostgreSQL's dialect costs a daemon on SQLite 20 ms of its start.
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(conn: Connection, table: Table):
    """INSERT that skips a row colliding with a unique key (any unique key)."""
    return dialect_insert(conn, table).on_conflict_do_nothing()


def upsert(conn: Connection, table: Table, keys: list[str], update: dict[str, Any]):
    """INSERT, or on a conflict over `keys` UPDATE the row with `update`.

    In `update`, values may refer to the row offered through `excluded(name)`.
    """
    stmt = dialect_insert(conn, table)
    return stmt, stmt.on_conflict_do_update(index_elements=keys, set_=update)


def excluded(stmt, name: str) -> ColumnElement:
    """The value the INSERT offered for `name`, inside an upsert's update."""
    return stmt.excluded[name]


class to_second(FunctionElement):
    """A timestamp cut to its whole second, comparable within one dialect.

    SQLite keeps timestamps as ISO text ("2026-11-30 10:00:00.123456"), so
    the first 19 characters are the second; PostgreSQL truncates the value.
    """

    inherit_cache = True
    type = DateTime(timezone=True)


@compiles(to_second)
def _to_second_sqlite(element, compiler, **kw):
    return "substr(%s, 1, 19)" % compiler.process(element.clauses, **kw)


@compiles(to_second, "postgresql")
def _to_second_pg(element, compiler, **kw):
    return "date_trunc('second', %s)" % compiler.process(element.clauses, **kw)


def message_order(message: Table | None = None) -> ColumnElement:
    """The order of a ticket's thread: the Date header's second (or, without
    one, when the store learned of the message); ties go by message id."""
    m = message if message is not None else t.message
    return to_second(func.coalesce(m.c.date, m.c.created_at))


class json_text(FunctionElement):
    """One top-level key of a JSON text column, as text (NULL when absent)."""

    inherit_cache = True
    type = Text()

    def __init__(self, column, key: str):
        self.key = key
        super().__init__(column)


@compiles(json_text)
def _json_text_sqlite(element, compiler, **kw):
    return "json_extract(%s, '$.%s')" % (compiler.process(element.clauses, **kw), element.key)


@compiles(json_text, "postgresql")
def _json_text_pg(element, compiler, **kw):
    return "(CAST(%s AS jsonb) ->> '%s')" % (compiler.process(element.clauses, **kw), element.key)


def _typed(args):
    # A plain value (a datetime) is bound with the first argument's type, so
    # it is stored the way that column stores it (UTC text on SQLite).
    first = args[0]
    return [a if isinstance(a, ClauseElement) else literal(a, type_=first.type) for a in args]


class greatest(FunctionElement):
    """The larger of two values (SQLite's two-argument max())."""

    inherit_cache = True

    def __init__(self, *args):
        super().__init__(*_typed(args))
        self.type = args[0].type


@compiles(greatest)
def _greatest_sqlite(element, compiler, **kw):
    return "max(%s)" % compiler.process(element.clauses, **kw)


@compiles(greatest, "postgresql")
def _greatest_pg(element, compiler, **kw):
    return "greatest(%s)" % compiler.process(element.clauses, **kw)


class least(FunctionElement):
    """The smaller of two values (SQLite's two-argument min())."""

    inherit_cache = True

    def __init__(self, *args):
        super().__init__(*_typed(args))
        self.type = args[0].type


@compiles(least)
def _least_sqlite(element, compiler, **kw):
    return "min(%s)" % compiler.process(element.clauses, **kw)


@compiles(least, "postgresql")
def _least_pg(element, compiler, **kw):
    return "least(%s)" % compiler.process(element.clauses, **kw)


__all__ = ["t", "tables", "insert_ignore", "upsert", "excluded", "to_second", "message_order", "json_text",
           "greatest", "least", "literal_column"]
