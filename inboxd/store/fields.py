"""Custom field values on tickets (the `ticket_field` table): set, clear, read, filter and count them.

`inboxd set` writes through `set_value`/`clear_value` in the workflow's
transaction; the views read `values_for` (many tickets at once, for
`list --json`); `list --field` filters with `has_value`; the report
breaks its figures down by the values `values_for` gives.  SQLAlchemy Core only, so it runs
on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, select
from sqlalchemy.sql import ColumnElement

from inboxd.store.sql import t, upsert

# Ticket ids per IN (...) list: well under SQLite's limit on bound parameters.
_CHUNK = 900


def set_value(conn: Connection, ticket_pk: int, name: str, value: str, actor: str, now: datetime) -> str | None:
    """Give the ticket's field `name` the `value`; returns the value it had (None: none)."""
    before = value_of(conn, ticket_pk, name)
    f = t.ticket_field
    _insert, stmt = upsert(conn, f, ["ticket_id", "name"], {"value": value, "set_at": now, "set_by": actor})
    conn.execute(stmt.values(ticket_id=ticket_pk, name=name, value=value, set_at=now, set_by=actor))
    return before


def clear_value(conn: Connection, ticket_pk: int, name: str) -> str | None:
    """Remove the ticket's field `name`; returns the value it had (None: it had none)."""
    before = value_of(conn, ticket_pk, name)
    f = t.ticket_field
    conn.execute(delete(f).where(f.c.ticket_id == ticket_pk, f.c.name == name))
    return before


def value_of(conn: Connection, ticket_pk: int, name: str) -> str | None:
    f = t.ticket_field
    return conn.execute(select(f.c.value).where(f.c.ticket_id == ticket_pk, f.c.name == name)).scalar()


def values_for(conn: Connection, ticket_pks: Sequence[int]) -> dict[int, dict[str, str]]:
    """Each ticket's fields as {name: value}; tickets with none are absent."""
    f = t.ticket_field
    out: dict[int, dict[str, str]] = defaultdict(dict)
    if not ticket_pks:
        return out
    # Few tickets have fields: for most of the store, one pass beats thousands of lookups.
    stmt = select(f.c.ticket_id, f.c.name, f.c.value).order_by(f.c.ticket_id, f.c.name)
    if len(ticket_pks) > 20 * _CHUNK:
        wanted = set(ticket_pks)
        for pk, name, value in conn.execute(stmt):
            if pk in wanted:
                out[pk][name] = value
        return out
    pks = list(ticket_pks)
    for i in range(0, len(pks), _CHUNK):
        for pk, name, value in conn.execute(stmt.where(f.c.ticket_id.in_(pks[i:i + _CHUNK]))):
            out[pk][name] = value
    return out


def has_value(name: str, value: str) -> ColumnElement:
    """A condition on `ticket`: its field `name` is `value` (for `list --field`)."""
    f = t.ticket_field
    return t.ticket.c.id.in_(select(f.c.ticket_id).where(f.c.name == name, f.c.value == value))

