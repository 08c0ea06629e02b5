"""The SLA clock's columns: what a ticket's due times are computed from, and the due times themselves.

`inboxd.desk.slaclock` decides the due times; this module reads its inputs
(the ticket, its status events, its last exchange of mail) and stores the
result with the version it was computed for.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Row, and_, case, func, select, update

from inboxd.store.sql import t


def clock_inputs(conn: Connection, ticket_pk: int) -> Row:
    """The ticket's (mailbox, priority, status, sla_policy, created_at, first_response_at, version, history)."""
    tk = t.ticket
    return conn.execute(select(tk.c.mailbox, tk.c.priority, tk.c.status, tk.c.sla_policy, tk.c.created_at,
                               tk.c.first_response_at, tk.c.version, tk.c.history)
                        .where(tk.c.id == ticket_pk)).one()


def status_events(conn: Connection, ticket_pk: int) -> list[Row]:
    """The ticket's audit events as (at, action, detail JSON text), oldest first."""
    ev = t.event
    return conn.execute(select(ev.c.at, ev.c.action, ev.c.detail).where(ev.c.ticket_id == ticket_pk)
                        .order_by(ev.c.at, ev.c.id)).all()


def created_at(conn: Connection, ticket_pk: int) -> datetime:
    return conn.execute(select(t.ticket.c.created_at).where(t.ticket.c.id == ticket_pk)).scalar_one()


def last_exchange(conn: Connection, ticket_pk: int) -> tuple[datetime | None, datetime | None]:
    """(the newest customer message's time, the newest agent answer's time) on the ticket."""
    m = t.message
    row = conn.execute(select(
        func.max(case((m.c.kind == "customer", m.c.created_at))),
        func.max(case((and_(m.c.direction == "out", m.c.kind == "agent"), m.c.created_at))),
    ).where(m.c.ticket_id == ticket_pk)).one()
    return row[0], row[1]


def store_due_times(conn: Connection, ticket_pk: int, policy: str | None, first_response: datetime | None,
                    next_response: datetime | None, resolution: datetime | None, version: int) -> None:
    """Store the ticket's policy and due times, computed for its `version`."""
    conn.execute(update(t.ticket).where(t.ticket.c.id == ticket_pk).values(
        sla_policy=policy, first_response_due=first_response, next_response_due=next_response,
        resolution_due=resolution, sla_version=version))


def stale_tickets(conn: Connection) -> list[int]:
    """The tickets changed since their due times were last computed (merged ones have none)."""
    tk = t.ticket
    return list(conn.execute(select(tk.c.id).where(tk.c.sla_version != tk.c.version, tk.c.merged_into.is_(None))
                             .order_by(tk.c.id)).scalars())


def mark_computed(conn: Connection, ticket_pk: int) -> None:
    """Leave the ticket's due times as they are until it changes again."""
    conn.execute(update(t.ticket).where(t.ticket.c.id == ticket_pk).values(sla_version=t.ticket.c.version))
