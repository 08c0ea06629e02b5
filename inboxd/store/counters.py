"""Ticket numbers: each new ticket's number, unique however many daemons file at once.

A ticket's number is its primary key, and its ref ("T-1042") is made from
it, so two daemons must never be given the same one.  `SELECT max(id) + 1`
was safe only under SQLite's store-wide write lock; on PostgreSQL two READ
COMMITTED transactions would both read the same maximum.

- PostgreSQL: the SEQUENCE `ticket_number` (nextval).  A sequence never
  waits and never hands out a number twice, but a number taken by a
  transaction that then rolls back (a batch that failed, a message whose
  savepoint was undone) is not handed out again: ticket numbers may have
  gaps.  That is the price of not serialising writers: a counter row
  locked by UPDATE would make every other daemon's batch wait until this
  one commits.
- SQLite: the row ('ticket_number', value) of the `counter` table, moved by
  an UPDATE ... RETURNING under the write lock that BEGIN IMMEDIATE already
  holds.  The update also lifts the value to the highest ticket id in the
  store, so a ticket written by other means (an older inboxd, a copy, a
  test) is never given a number twice; `max(id)` on the primary key is one
  index lookup.  A rolled-back transaction rolls its number back too, so
  SQLite's numbers have no gaps.

Migration 0012 creates both, seeded from the store's highest ticket id, so
an existing store keeps numbering after its last ticket.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select, text

from inboxd.store.filing import Prepared
from inboxd.store.sql import greatest, t, upsert
from inboxd.store.tables import TICKET_NUMBER as TICKET_SEQUENCE

TICKET_NUMBER = TICKET_SEQUENCE.name


def _top_ticket():
    # coalesce outside the subquery: SQLite answers a bare max(id) from the
    # primary key's index at once, but scans the table for coalesce(max(id), 0).
    return func.coalesce(select(func.max(t.ticket.c.id)).scalar_subquery(), 0)


def _sqlite_next(conn: Connection):
    counter = t.counter
    _stmt, on_conflict = upsert(conn, counter, ["name"], {"value": greatest(counter.c.value, _top_ticket()) + 1})
    # The first number of a store that has no counter row yet (a new store,
    # or one copied from PostgreSQL, whose counter is the sequence).
    return on_conflict.values(name=TICKET_NUMBER, value=_top_ticket() + 1).returning(counter.c.value)


# Asked once for every new ticket, so prepared (see inboxd.store.filing.Prepared).
_NEXT = Prepared(lambda conn: select(TICKET_SEQUENCE.next_value()) if conn.dialect.name == "postgresql"
                 else _sqlite_next(conn))


def next_ticket_number(conn: Connection) -> int:
    """A number no other ticket has or will get (see the module docstring for gaps)."""
    return _NEXT.scalar(conn)


def sync_ticket_number(conn: Connection) -> None:
    """Make the next number follow the store's highest ticket id (after a copy into this store)."""
    if conn.dialect.name == "postgresql":
        # is_called false: the next nextval returns exactly max(id) + 1.
        conn.execute(select(func.setval(TICKET_NUMBER, _top_ticket() + 1, False)))
        return
    counter = t.counter
    _stmt, on_conflict = upsert(conn, counter, ["name"], {"value": _top_ticket()})
    conn.execute(on_conflict.values(name=TICKET_NUMBER, value=_top_ticket()))


def peek_ticket_number(conn: Connection) -> int:
    """The last number handed out (or seeded), without taking one; for tests and `inboxd status`."""
    if conn.dialect.name == "postgresql":
        last, called = conn.execute(text(f"SELECT last_value, is_called FROM {TICKET_NUMBER}")).one()
        return last if called else last - 1
    value = conn.execute(select(t.counter.c.value).where(t.counter.c.name == TICKET_NUMBER)).scalar()
    return value or 0
