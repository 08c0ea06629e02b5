"""The SLA clock's columns: what a ticket's due times are computed from, and the due times themselves.

`inboxd.desk.slaclock` decides the due times; this module reads its inputs
(the ticket, its status events, its last exchange of mail) and stores the
result with the version it was computed for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, case, func, or_, select, update

from inboxd.store.filing import Prepared, PreparedIn
from inboxd.store.sql import t
from inboxd.vocabulary import OPEN_STATUSES


# Refreshing the clock runs for every filed message, so its statements are
# compiled once (`filing.Prepared`): through `Connection.execute` they had
# been nearly half of filing's time.
_INPUTS = Prepared(select(t.ticket.c.mailbox, t.ticket.c.priority, t.ticket.c.status, t.ticket.c.sla_policy,
                          t.ticket.c.created_at, t.ticket.c.first_response_at, t.ticket.c.version,
                          t.ticket.c.history).where(t.ticket.c.id == bindparam("pk")))
_EVENTS = Prepared(select(t.event.c.at, t.event.c.action, t.event.c.detail)
                   .where(t.event.c.ticket_id == bindparam("pk")).order_by(t.event.c.at, t.event.c.id))
_CREATED = Prepared(select(t.ticket.c.created_at).where(t.ticket.c.id == bindparam("pk")))
_EXCHANGE = Prepared(select(
    func.max(case((t.message.c.kind == "customer", t.message.c.created_at))).label("last_in"),
    func.max(case((and_(t.message.c.direction == "out", t.message.c.kind == "agent"), t.message.c.created_at)))
    .label("last_out"),
).where(t.message.c.ticket_id == bindparam("pk")))
_STORE_DUES = Prepared(update(t.ticket).where(t.ticket.c.id == bindparam("pk")).values(
    sla_policy=bindparam("policy", type_=t.ticket.c.sla_policy.type),
    first_response_due=bindparam("first", type_=t.ticket.c.first_response_due.type),
    next_response_due=bindparam("next", type_=t.ticket.c.next_response_due.type),
    resolution_due=bindparam("resolution", type_=t.ticket.c.resolution_due.type),
    sla_version=bindparam("version", type_=t.ticket.c.sla_version.type)))


def clock_inputs(conn: Connection, ticket_pk: int) -> tuple:
    """The ticket's (mailbox, priority, status, sla_policy, created_at, first_response_at, version, history)."""
    row = _INPUTS.first(conn, {"pk": ticket_pk})
    if row is None:
        raise LookupError(f"no ticket with id {ticket_pk}")
    return row


def status_events(conn: Connection, ticket_pk: int) -> list[tuple]:
    """The ticket's audit events as (at, action, detail JSON text), oldest first."""
    return _EVENTS.all(conn, {"pk": ticket_pk})


def created_at(conn: Connection, ticket_pk: int) -> datetime:
    return _CREATED.scalar(conn, {"pk": ticket_pk})


def last_exchange(conn: Connection, ticket_pk: int) -> tuple[datetime | None, datetime | None]:
    """(the newest customer message's time, the newest agent answer's time) on the ticket."""
    row = _EXCHANGE.first(conn, {"pk": ticket_pk})
    return (row[0], row[1]) if row is not None else (None, None)


def store_due_times(conn: Connection, ticket_pk: int, policy: str | None, first_response: datetime | None,
                    next_response: datetime | None, resolution: datetime | None, version: int) -> None:
    """Store the ticket's policy and due times, computed for its `version`."""
    _STORE_DUES.execute(conn, {"pk": ticket_pk, "policy": policy, "first": first_response, "next": next_response,
                               "resolution": resolution, "version": version}).close()


# The same reads for many tickets at once, for the scheduler's refresh of
# every stale ticket (a first pass after an upgrade: all of them): one query
# per chunk of tickets instead of three per ticket.
_INPUTS_IN = PreparedIn(lambda ids: select(t.ticket.c.id, *_INPUTS.build(None).selected_columns).where(ids),
                        t.ticket.c.id)
# Only the events `inboxd.desk.history.status_after` can read a status from
# (the rest would be decoded and skipped): most events of a busy ticket are
# its messages.
# (Equalities, not IN: `Prepared` statements take no expanding parameters.)
_MAY_CHANGE_STATUS = or_(*(t.event.c.action == action for action in ("created", "merge", "autoclose")),
                         t.event.c.detail.like("%status%"))
_EVENTS_IN = PreparedIn(lambda ids: select(t.event.c.ticket_id, t.event.c.at, t.event.c.action, t.event.c.detail)
                        .where(ids, _MAY_CHANGE_STATUS).order_by(t.event.c.ticket_id, t.event.c.at, t.event.c.id),
                        t.event.c.ticket_id)
_EXCHANGE_IN = PreparedIn(lambda ids: select(t.message.c.ticket_id, *_EXCHANGE.build(None).selected_columns)
                          .where(ids).group_by(t.message.c.ticket_id), t.message.c.ticket_id)


# With the due times as stored, so that a refresh can leave alone the ones it computes again unchanged.
_INPUTS_DUES_IN = PreparedIn(lambda ids: select(t.ticket.c.id, *_INPUTS.build(None).selected_columns,
                                                t.ticket.c.first_response_due, t.ticket.c.next_response_due,
                                                t.ticket.c.resolution_due).where(ids), t.ticket.c.id)


def _padded(ticket_pks: Sequence[int]) -> list[int]:
    # A `PreparedIn` compiles a statement per length of list: padded to a power of two (the last id
    # again, which changes nothing in an IN list), a few statements serve chunks of any length.
    ids = list(ticket_pks)
    return ids + ids[-1:] * ((1 << (len(ids) - 1).bit_length()) - len(ids)) if ids else ids


def clock_inputs_many(conn: Connection, ticket_pks: Sequence[int], *, with_dues: bool = False) -> dict[int, tuple]:
    """`clock_inputs` of each ticket in `ticket_pks` that exists, by id; `with_dues` adds its stored
    (first_response_due, next_response_due, resolution_due)."""
    statement = _INPUTS_DUES_IN if with_dues else _INPUTS_IN
    return {row[0]: tuple(row[1:]) for row in statement.all(conn, _padded(ticket_pks))}


def status_events_many(conn: Connection, ticket_pks: Sequence[int]) -> dict[int, list[tuple]]:
    """`status_events` of each ticket in `ticket_pks` that can change its status, by id (a ticket with
    none is left out)."""
    found: dict[int, list[tuple]] = {}
    for pk, at, action, detail in _EVENTS_IN.all(conn, _padded(ticket_pks)):
        found.setdefault(pk, []).append((at, action, detail))
    return found


def last_exchange_many(conn: Connection, ticket_pks: Sequence[int]) -> dict[int, tuple]:
    """`last_exchange` of each ticket in `ticket_pks`, by id (a ticket with no message is left out)."""
    return {pk: (last_in, last_out) for pk, last_in, last_out in _EXCHANGE_IN.all(conn, _padded(ticket_pks))}


def store_due_times_many(conn: Connection, rows: Sequence[dict]) -> None:
    """`store_due_times` for many tickets: dicts of pk, policy, first, next, resolution, version."""
    if rows:
        _STORE_DUES.executemany(conn, rows)


_STORE_VERSION = Prepared(update(t.ticket).where(t.ticket.c.id == bindparam("pk")).values(
    sla_version=bindparam("version", type_=t.ticket.c.sla_version.type)))


def store_versions_many(conn: Connection, rows: Sequence[dict]) -> None:
    """Record that the due times of many tickets (dicts of pk, version), as stored, hold for `version`.

    Only the version is written: a ticket that changed in a way its due times
    do not depend on (most changes) costs no write of the indexed due columns.
    """
    if rows:
        _STORE_VERSION.executemany(conn, rows)


def stale_tickets(conn: Connection, resolved_limit: int | None = None) -> list[int]:
    """The tickets changed since their due times were last computed (merged ones have none): the
    unresolved ones first, then at most `resolved_limit` solved or closed ones (all without a limit)."""
    tk = t.ticket
    # One scan of the table (no index can find a version mismatch), the unresolved first: two
    # queries scanned it twice, a third of a steady pass.  The rows are read only up to the limit
    # (after an upgrade most of the store is stale and resolved).
    is_open = tk.c.status.in_(OPEN_STATUSES)
    ids, resolved = [], 0
    result = conn.execute(select(tk.c.id, is_open)
                          .where(tk.c.sla_version != tk.c.version, tk.c.merged_into.is_(None))
                          .order_by(is_open.desc(), tk.c.id))
    for pk, unresolved in result:
        if not unresolved:
            if resolved_limit is not None and resolved >= resolved_limit:
                break
            resolved += 1
        ids.append(pk)
    result.close()
    return ids


def mark_computed(conn: Connection, ticket_pk: int) -> None:
    """Leave the ticket's due times as they are until it changes again."""
    conn.execute(update(t.ticket).where(t.ticket.c.id == ticket_pk).values(sla_version=t.ticket.c.version))


def mark_all_stale(conn: Connection) -> int:
    """Make every unmerged ticket's due times stale (the SLA settings changed); how many."""
    tk = t.ticket
    return conn.execute(update(tk).where(tk.c.merged_into.is_(None)).values(sla_version=tk.c.version - 1)).rowcount
