"""The scheduled duties' rows: their claims, the scans for what is due, and the changes they make.

A duty is done once per target because its claim is an insert into `duty`
under the unique (duty, key): on SQLite under BEGIN IMMEDIATE, on
PostgreSQL through INSERT ... ON CONFLICT DO NOTHING, which waits for a
concurrent claimer of the same key and then does nothing.  The keys name
the ticket and the target; a target's time is written the way SQLite stores
timestamps ("2026-11-23 10:00:00.000000", UTC), so a scan can leave out
claimed targets in SQL on both databases (`_time_key`) and the keys of a
store made before PostgreSQL was supported stay valid.

`inboxd.desk.duties` decides what to do; everything it reads or writes is here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Row, String, and_, bindparam, cast, delete, exists, func, literal, or_, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Text

from inboxd.store.filing import Prepared
from inboxd.store.messages import LastMessage
from inboxd.store.sql import insert_ignore, message_order, t
from inboxd.store.tiers import tier_response_unmet
from inboxd.vocabulary import OPEN_STATUSES

# The promises a ticket's due times stand for, each with its column
# (tier_response: the first agent reply after an escalation, inboxd.store.tiers).
TARGETS = ("first_response", "next_response", "resolution", "tier_response")


# -- claims -----------------------------------------------------------------------------


# RETURNING says whether the row went in (PostgreSQL gives no rowcount for
# an INSERT that returns rows).  Compiled once (`filing.Prepared`): a busy
# first pass claims thousands of items, and building the statement each
# time was a tenth of each.
_CLAIM = Prepared(lambda conn: insert_ignore(conn, t.duty).returning(t.duty.c.id),
                  ("ticket_id", "duty", "key", "at"))
_REF = Prepared(select(t.ticket.c.ref).where(t.ticket.c.id == bindparam("pk")))


def claim(conn: Connection, duty: str, key: str, ticket_pk: int | None, now: datetime) -> bool:
    """Claim `duty` for `key`; False when it was claimed already (by anyone, ever)."""
    return _CLAIM.first(conn, {"ticket_id": ticket_pk, "duty": duty, "key": key, "at": now}) is not None


def claim_many(conn: Connection, duty: str, items: Sequence[tuple[str, int | None]], now: datetime) -> set[str]:
    """`claim` for many (key, ticket) at once, in one statement; the keys this call claimed.

    The rows go in in key order, so two daemons claiming overlapping
    batches on PostgreSQL wait for each other's keys in the same order
    (never each for the other's) and each key goes to one of them.
    """
    if not items:
        return set()
    rows = [{"ticket_id": pk, "duty": duty, "key": key, "at": now} for key, pk in sorted(set(items))]
    return set(conn.execute(insert_ignore(conn, t.duty).returning(t.duty.c.key), rows).scalars())


def claimed(conn: Connection, duty: str, key: str) -> bool:
    """Whether `duty` was claimed for `key`."""
    dt = t.duty
    return conn.execute(select(dt.c.id).where(dt.c.duty == duty, dt.c.key == key).limit(1)).first() is not None


def release_others(conn: Connection, duty: str, key: str) -> int:
    """Delete the claims of `duty` for any key but `key` (a record kept as a claim: the SLA settings'
    digest); how many there were."""
    dt = t.duty
    return conn.execute(delete(dt).where(dt.c.duty == duty, dt.c.key != key)).rowcount


def time_key(dt: datetime) -> str:
    """A target's time as it appears in a claim's key (SQLite's text for a UTC timestamp)."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def due_key(ticket_pk: int, target: str, due: datetime) -> str:
    """The key of a warning or breach notice: the ticket, the promise and its due time."""
    return f"{ticket_pk}:{target}:{time_key(due)}"


def pending_key(ticket_pk: int, since: datetime) -> str:
    """The key of a pending reminder: the ticket and when its pending spell began."""
    return f"{ticket_pk}:{time_key(since)}"


def survey_key(ticket_pk: int, closed_at: datetime) -> str:
    """The key of a survey: the ticket and when it closed (a reopened and closed ticket is asked again)."""
    return f"{ticket_pk}:{time_key(closed_at)}"


class _time_key(FunctionElement):
    """`time_key` in SQL: a timestamp column as the text a claim's key holds."""

    inherit_cache = True
    type = Text()


@compiles(_time_key)
def _time_key_sqlite(element, compiler, **kw):
    # SQLite keeps the timestamp as exactly that text already.
    return compiler.process(element.clauses, **kw)


@compiles(_time_key, "postgresql")
def _time_key_pg(element, compiler, **kw):
    return "to_char((%s) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')" % compiler.process(element.clauses, **kw)


def _key(*parts):
    """A claim's key built in SQL from columns and literal text, joined as given."""
    expr = None
    for part in parts:
        part = literal(part, String) if isinstance(part, str) else part
        expr = part if expr is None else expr + part
    return expr


class _unindexed(FunctionElement):
    """A timestamp column as a value no index is used for (SQLite's unary +, PostgreSQL's + 0 seconds)."""

    inherit_cache = True

    def __init__(self, column):
        self.type = column.type
        super().__init__(column)


@compiles(_unindexed)
def _unindexed_sqlite(element, compiler, **kw):
    return "+%s" % compiler.process(element.clauses, **kw)


@compiles(_unindexed, "postgresql")
def _unindexed_pg(element, compiler, **kw):
    return "(%s + interval '0 seconds')" % compiler.process(element.clauses, **kw)


def _not_claimed(duty: str, key) -> object:
    d = t.duty
    return ~exists().where(d.c.duty == duty, d.c.key == key)


# -- what is due ---------------------------------------------------------------------------


def unmet_promises(conn: Connection, duty: str, target: str, low: datetime | None,
                   high: datetime) -> list[tuple[int, str, datetime, str | None]]:
    """(ticket, target, due, sla_policy) of the unmet `target` promises due in (low, high],
    not yet claimed for `duty`, soonest first."""
    tk = t.ticket
    column = tk.c[f"{target}_due"]
    unmet = {"first_response": tk.c.first_response_at.is_(None),
             "next_response": None,
             "resolution": tk.c.status.in_(OPEN_STATUSES),
             "tier_response": tier_response_unmet()}[target]
    # Solved and closed tickets keep their first-response and resolution due times (the reports read
    # them), so without a lower bound (what is overdue) those indexes would walk most of the store:
    # the scan is kept to the open tickets (the status index).  PostgreSQL's planner would often see
    # that too, but not before its statistics catch up with a backfill of due times (it then took
    # the index for one row and read 100,000).  The other due times are kept only while due.
    due = _unindexed(column) if low is None and target in ("first_response", "resolution") else column
    where = [due <= high, tk.c.status.in_(OPEN_STATUSES), tk.c.merged_into.is_(None),
             _not_claimed(duty, _key(cast(tk.c.id, String), f":{target}:", _time_key(column)))]
    if low is not None:
        where.append(column > low)
    if unmet is not None:
        where.append(unmet)
    rows = conn.execute(select(tk.c.id, column, tk.c.sla_policy).where(*where).order_by(due))
    return [(pk, target, due, policy) for pk, due, policy in rows]


def unassigned_waiting(conn: Connection, urgent_before: datetime, before: datetime) -> list[Row]:
    """(ticket, created_at) of live tickets without an assignee created before `before`
    (urgent ones: before `urgent_before`), not yet alerted about."""
    tk = t.ticket
    return conn.execute(
        select(tk.c.id, tk.c.created_at)
        .where(tk.c.assignee.is_(None), tk.c.status.in_(("new", "open")), tk.c.merged_into.is_(None),
               tk.c.history.is_(False),
               or_(and_(tk.c.priority == "urgent", tk.c.created_at <= urgent_before), tk.c.created_at <= before),
               _not_claimed("unassigned", cast(tk.c.id, String)))
        .order_by(tk.c.created_at)).all()


def pending_unreminded(conn: Connection, changed_before: datetime) -> list[int]:
    """Live pending tickets unchanged since `changed_before` whose current spell
    has no reminder yet (a reminder claimed after the last change covers it)."""
    tk, d = t.ticket, t.duty
    reminded = exists().where(d.c.duty == "pending", d.c.ticket_id == tk.c.id, d.c.at >= tk.c.updated_at)
    # Nearly every ticket is unchanged for days: the scan is kept to the pending ones (the status
    # index), not the walk of the updated_at index over the whole store (SQLite's choice).
    updated = _unindexed(tk.c.updated_at)
    return list(conn.execute(
        select(tk.c.id)
        .where(tk.c.status == "pending", tk.c.merged_into.is_(None), tk.c.history.is_(False),
               updated <= changed_before, ~reminded)
        .order_by(updated)).scalars())


def solved_before(conn: Connection, cutoff: datetime) -> list[int]:
    """Live tickets solved at or before `cutoff`, longest solved first."""
    tk = t.ticket
    return list(conn.execute(
        select(tk.c.id).where(tk.c.status == "solved", tk.c.solved_at <= cutoff, tk.c.merged_into.is_(None))
        .order_by(tk.c.solved_at)).scalars())


def closed_unsurveyed(conn: Connection, since: datetime, until: datetime) -> list[Row]:
    """(ticket, requester, closed_at, tags JSON) of live tickets closed in [since, until] with no survey claimed."""
    tk = t.ticket
    return conn.execute(
        select(tk.c.id, tk.c.requester, tk.c.closed_at, tk.c.tags)
        .where(tk.c.status == "closed", tk.c.closed_at <= until, tk.c.closed_at >= since,
               tk.c.merged_into.is_(None), tk.c.history.is_(False),
               _not_claimed("survey", _key(cast(tk.c.id, String), ":", _time_key(tk.c.closed_at))))
        .order_by(tk.c.closed_at)).all()


def open_tickets_of(conn: Connection, agent: str) -> list[Row]:
    """An agent's open tickets as (ref, subject, status, priority, first_response_due,
    next_response_due, resolution_due, mailbox), the soonest due first."""
    tk = t.ticket
    soonest = func.coalesce(tk.c.first_response_due, tk.c.next_response_due, tk.c.resolution_due)
    return conn.execute(
        select(tk.c.ref, tk.c.subject, tk.c.status, tk.c.priority, tk.c.first_response_due,
               tk.c.next_response_due, tk.c.resolution_due, tk.c.mailbox)
        .where(tk.c.assignee == agent, tk.c.status.in_(OPEN_STATUSES))
        .order_by(soonest.asc().nulls_last())).all()


# -- what a duty reads about one ticket ----------------------------------------------------


_m = t.message
# Each ticket's customer messages numbered newest first in thread order (`messages.last_customer_message`'s order).
_NEWEST_FIRST = func.row_number().over(partition_by=_m.c.ticket_id,
                                       order_by=(message_order(_m).desc(), _m.c.id.desc()))
_customer = (select(_m.c.ticket_id, _m.c.from_addr, _m.c.from_name, _m.c.date, _m.c.subject, _m.c.text,
                    _m.c.reply_text, _NEWEST_FIRST.label("n"))
             .where(_m.c.ticket_id.in_(bindparam("pks", expanding=True)), _m.c.kind == "customer").subquery())
_LAST_CUSTOMER_MANY = select(*[c for c in _customer.c if c.name != "n"]).where(_customer.c.n == 1)


def last_customer_messages(conn: Connection, ticket_pks: Sequence[int]) -> dict[int, LastMessage]:
    """`messages.last_customer_message` of each ticket in `ticket_pks` that has one, by id: one query."""
    if not ticket_pks:
        return {}
    return {row[0]: LastMessage(*row[1:]) for row in conn.execute(_LAST_CUSTOMER_MANY, {"pks": list(ticket_pks)})}


def ticket_ref(conn: Connection, ticket_pk: int) -> str:
    row = _REF.first(conn, {"pk": ticket_pk})
    if row is None:
        raise LookupError(f"no ticket with id {ticket_pk}")
    return row[0]


def last_close(conn: Connection, ticket_pk: int) -> tuple[str, dict] | None:
    """(action, detail) of the ticket's newest event that could have closed it, or None."""
    ev = t.event
    row = conn.execute(
        select(ev.c.action, ev.c.detail)
        .where(ev.c.ticket_id == ticket_pk, ev.c.action.in_(("close", "autoclose", "status", "merge")))
        .order_by(ev.c.at.desc(), ev.c.id.desc()).limit(1)).first()
    return (row[0], json.loads(row[1])) if row else None


def last_surveyed(conn: Connection, customer: str) -> datetime | None:
    """When `customer` was last sent a survey, or None."""
    return conn.execute(select(func.max(t.csat.c.sent_at)).where(t.csat.c.customer == customer)).scalar()


# -- what duties change ---------------------------------------------------------------------


# The rows `filing.add_event` writes, a batch's at once (compiled once, `filing.Prepared`).
_ADD_EVENT = Prepared(t.event.insert().inline(), ("ticket_id", "at", "actor", "action", "detail"))


def add_events(conn: Connection, rows: Sequence[tuple[int | None, datetime, str, str, dict]]) -> None:
    """`filing.add_event` for each (ticket, at, actor, action, detail) of `rows`, in one executemany."""
    if rows:
        _ADD_EVENT.executemany(conn, [{"ticket_id": pk, "at": at, "actor": actor, "action": action,
                                       "detail": json.dumps(detail or {}, ensure_ascii=False)}
                                      for pk, at, actor, action, detail in rows])


def escalate(conn: Connection, ticket_pk: int, tier: int, now: datetime) -> None:
    """Move the ticket to `tier`, escalated; a supervisor's earlier approval no longer holds."""
    tk = t.ticket
    conn.execute(update(tk).where(tk.c.id == ticket_pk).values(
        tier=tier, escalated=True, approved_by=None, updated_at=now, version=tk.c.version + 1))


def close_solved(conn: Connection, ticket_pk: int, now: datetime) -> bool:
    """Close the ticket if it is still solved (compare-and-swap on the status); whether it did."""
    tk = t.ticket
    result = conn.execute(update(tk).where(tk.c.id == ticket_pk, tk.c.status == "solved").values(
        status="closed", closed_at=now, updated_at=now, version=tk.c.version + 1))
    return result.rowcount == 1


def record_survey(conn: Connection, ticket_pk: int, customer: str, token: str, message_id: str,
                  now: datetime) -> None:
    conn.execute(t.csat.insert().values(ticket_id=ticket_pk, customer=customer, token=token,
                                        message_id=message_id, sent_at=now, scored=True))
