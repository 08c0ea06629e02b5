"""Stored messages, read back: what a ticket's thread holds.

SQLAlchemy Core over the ``message`` table of ``inboxd.store.models``, so the
same statements run on SQLite and PostgreSQL.  Functions take the
``Connection`` first and return Rows with aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, select

from inboxd.store.filing import Prepared
from inboxd.store.sql import message_order, t


class LastMessage(NamedTuple):
    from_addr: str
    from_name: str | None
    date: datetime | None
    subject: str | None
    text: str | None
    reply_text: str | None


# Compiled once (`filing.Prepared`): every agent notification reads it, and
# building the statement each time was most of its cost in a busy scheduler pass.
_m = t.message
_LAST_CUSTOMER = Prepared(
    select(_m.c.from_addr, _m.c.from_name, _m.c.date, _m.c.subject, _m.c.text, _m.c.reply_text)
    .where(_m.c.ticket_id == bindparam("pk"), _m.c.kind == "customer")
    .order_by(message_order(_m).desc(), _m.c.id.desc())
    .limit(1))


def last_customer_message(conn: Connection, ticket_pk: int) -> LastMessage | None:
    """The ticket's latest customer message in thread order, or None when it has none.

    It has from_addr, from_name, date, subject, text and reply_text: what
    a macro may quote.  Thread order is the Date header's second; two
    messages in the same second go by id, the later stored one last.
    """
    row = _LAST_CUSTOMER.first(conn, {"pk": ticket_pk})
    return None if row is None else LastMessage(*row)
