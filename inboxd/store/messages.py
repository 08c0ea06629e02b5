"""Stored messages, read back: what a ticket's thread holds.

SQLAlchemy Core over the ``message`` table of ``inboxd.store.models``, so the
same statements run on SQLite and PostgreSQL.  Functions take the
``Connection`` first and return Rows with aware UTC datetimes.
"""

from __future__ import annotations

from sqlalchemy import Connection, Row, select

from inboxd.store.sql import message_order, t


def last_customer_message(conn: Connection, ticket_pk: int) -> Row | None:
    """The ticket's latest customer message in thread order, or None when it has none.

    The Row has from_addr, from_name, date, subject, text and reply_text: what
    a macro may quote.  Thread order is the Date header's second; two
    messages in the same second go by id, the later stored one last.
    """
    m = t.message
    return conn.execute(
        select(m.c.from_addr, m.c.from_name, m.c.date, m.c.subject, m.c.text, m.c.reply_text)
        .where(m.c.ticket_id == ticket_pk, m.c.kind == "customer")
        .order_by(message_order(m).desc(), m.c.id.desc())
        .limit(1)
    ).first()
