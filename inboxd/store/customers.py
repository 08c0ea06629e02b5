"""One customer's record across tickets, for `inboxd customer EMAIL`: their name and their survey answers.

Reads only.  The customer's tickets themselves come from the list view
(`inboxd.store.tickets.list_rows` with `requester=`), so `customer --json`
shows them in the list's own shape.  Addresses are compared ignoring case
on both databases.
"""

from __future__ import annotations

from sqlalchemy import Connection, Row, func, select

from inboxd.store.sql import t


def customer_name(conn: Connection, email: str) -> str | None:
    """The name the customer table holds for `email` (None: no such customer)."""
    c = t.customer
    return conn.execute(select(c.c.name).where(func.lower(c.c.email) == email.strip().lower())
                        .order_by(c.c.id).limit(1)).scalar()


def surveys(conn: Connection, email: str) -> list[Row]:
    """The satisfaction surveys sent about the customer's tickets, newest first:
    (ref, sent_at, rating, label, comment, answered_at); unanswered ones have rating and answered_at None."""
    cs, tk = t.csat, t.ticket
    return conn.execute(
        select(tk.c.ref, cs.c.sent_at, cs.c.rating, cs.c.label, cs.c.comment, cs.c.answered_at)
        .join_from(cs, tk, tk.c.id == cs.c.ticket_id)
        .where(func.lower(tk.c.requester) == email.strip().lower())
        .order_by(cs.c.sent_at.desc(), cs.c.id.desc())).all()
