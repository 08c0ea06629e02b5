"""The rows an escalation reads and writes: agents' open loads, the ticket's tier and its tier clock.

`inboxd.desk.tiers` decides who takes an escalated ticket and
`inboxd.desk.escalation` applies it; the SQL is here.  The tier clock is
two columns on the ticket (migration 0014): `escalated_at`, when it was last
escalated, and `tier_response_due`, when the first agent reply after that
is due.  The promise is met by an agent's outgoing message at or after
`escalated_at` (`tier_response_unmet`), which the duties' scan of unmet
promises uses like the other SLA targets.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, exists, func, select, update

from inboxd.store.sql import t
from inboxd.vocabulary import OPEN_STATUSES


def open_counts(conn: Connection) -> dict[str, int]:
    """How many open tickets each assignee holds (live ones; merged tickets are closed)."""
    tk = t.ticket
    rows = conn.execute(select(tk.c.assignee, func.count())
                        .where(tk.c.status.in_(OPEN_STATUSES), tk.c.assignee.is_not(None))
                        .group_by(tk.c.assignee))
    return {assignee: count for assignee, count in rows}


def escalate(conn: Connection, ticket_pk: int, *, tier: int, assignee: str | None, now: datetime) -> None:
    """Move the ticket to `tier`, escalated, with `assignee` (None: the tier's pool); a supervisor's
    earlier approval no longer holds, and a new ticket becomes open work."""
    tk = t.ticket
    conn.execute(update(tk).where(tk.c.id == ticket_pk).values(
        tier=tier, escalated=True, approved_by=None, assignee=assignee, updated_at=now,
        version=tk.c.version + 1))


def set_assignee(conn: Connection, ticket_pk: int, assignee: str | None) -> None:
    """Give the ticket to `assignee` (None: its tier's pool), as a change of the ticket."""
    tk = t.ticket
    conn.execute(update(tk).where(tk.c.id == ticket_pk).values(assignee=assignee, version=tk.c.version + 1))


def set_tier_clock(conn: Connection, ticket_pk: int, *, escalated_at: datetime, due: datetime | None) -> None:
    """Start the tier clock of an escalation at `escalated_at` (`due` None: no limit applies).

    The version is left alone: the clock is not an SLA input, and this
    runs right after the escalation's own versioned write."""
    tk = t.ticket
    conn.execute(update(tk).where(tk.c.id == ticket_pk).values(escalated_at=escalated_at, tier_response_due=due))


def sla_inputs(conn: Connection, ticket_pk: int) -> tuple[str, str, str | None, bool]:
    """(mailbox, priority, sla_policy, history) of the ticket: what chooses its SLA policy."""
    tk = t.ticket
    return tuple(conn.execute(select(tk.c.mailbox, tk.c.priority, tk.c.sla_policy, tk.c.history)
                              .where(tk.c.id == ticket_pk)).one())


def tier_response_unmet():
    """A clause on `ticket`: no agent has answered since the ticket was last escalated."""
    tk, m = t.ticket, t.message
    answered = exists().where(m.c.ticket_id == tk.c.id, m.c.direction == "out", m.c.kind == "agent",
                              m.c.created_at >= tk.c.escalated_at)
    return and_(tk.c.escalated_at.is_not(None), ~answered)
