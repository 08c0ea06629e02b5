"""The reads behind `inboxd report` and the weekly mail: tickets, status events, SLA targets, CSAT answers.

Every function reads; nothing writes.  They return rows as the store holds
them (timestamps as aware UTC datetimes, JSON columns as their text), and
`inboxd.reports.metrics` turns them into the figures of docs/report-keys.md.
A `Scope` restricts a query to the tickets of one mailbox, team or assignee.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (Connection, Row, String, and_, case, func, literal_column, not_, or_, select, text,
                        type_coerce)

from inboxd.store.sql import json_text, t
from inboxd.vocabulary import OPEN_STATUSES

RESOLVED = ("solved", "closed")
# The other statuses (inboxd.vocabulary.STATUSES): "IN" these, unlike "NOT IN" RESOLVED, can use the status index.
UNRESOLVED = OPEN_STATUSES
# Ticket ids per IN (...) list: well under SQLite's limit on bound parameters.
CHUNK = 900


@dataclass(frozen=True)
class Scope:
    """Which tickets a report covers: their current mailbox, team and assignee."""

    mailbox: str | None = None
    team: str | None = None
    agent: str | None = None

    def clauses(self) -> list:
        """The conditions on `ticket` for this scope (none for every ticket)."""
        ticket = t.ticket
        return [column == value for column, value in ((ticket.c.mailbox, self.mailbox), (ticket.c.team, self.team),
                                                      (ticket.c.assignee, self.agent)) if value is not None]


def _live(scope: Scope, since: datetime, until: datetime) -> list:
    """Tickets alive during [since, until): created before its end and either
    still unresolved or changed since its start (every change bumps updated_at)."""
    ticket = t.ticket
    return [ticket.c.created_at < until,
            or_(ticket.c.status.not_in(RESOLVED), ticket.c.updated_at >= since),
            *scope.clauses()]


def may_change_status():
    # Only events that can change a status: the others are not read (nor their JSON decoded).  It is the
    # condition of the partial index ix_event_status_change (models.STATUS_CHANGE, migration 0020), spelled
    # out as literal SQL: with bound parameters neither database can prove that a query's condition implies
    # the index's, and they scanned every event of the period's tickets instead (0.4 s of a 90-day report).
    return text("(event.action IN ('merge', 'autoclose') OR event.detail LIKE '%status%')")


def live_tickets(conn: Connection, scope: Scope, since: datetime, until: datetime,
                 with_rows: bool = False) -> list[tuple]:
    """(id, mailbox, tags, assignee, created_at, first_response_at, sla_policy, requester, message_count,
    requester in the database's lower case, merged_into) of the tickets alive in the period, in
    id order (so both databases give the figures in the same order).  The two instants come as microseconds
    since the epoch where the database can count them exactly (`_micros_sql`), else as the driver gives them;
    `micros_converter(conn)` makes either microseconds.  The column type's own conversion, a Python call per
    value, was a fifth of a 90-day report over 100,000 tickets, a second pass over the rows to convert them,
    a tenth, and parsing SQLite's text in Python, a twentieth.  The requester is read here for repeat
    complaints: asking for the resolved tickets' by id, 900 at a time, was a tenth of a 90-day report.  Its
    database lower case and `merged_into` make each ticket a contact of its customer (`customer_tickets`'s
    rows), which a report over every mailbox then takes from here (`customer_tickets_elsewhere`).  `with_rows`
    adds each ticket's per-ticket row (report_ticket: watermark, data), read in the same query rather than in a
    second one over the same tickets, its data only when the row is of the ticket's version (else None, as for
    a ticket without a row; the database compares the versions rather than Python, and inboxd.reports.tickets
    decides the rest)."""
    result = conn.execute(live_tickets_query(conn, scope, since, until, with_rows))
    # The driver's own tuples: no column here has a result processor (integers, text, the instants as counted
    # by `_micros_sql`), and a SQLAlchemy Row per ticket, indexed 13 times each, was 2 % of a 90-day report.
    # (tests/test_report_round7.py compares them with the Rows.)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def live_tickets_query(conn: Connection, scope: Scope, since: datetime, until: datetime, with_rows: bool = False):
    """The statement of `live_tickets` (a test compares the driver's rows with SQLAlchemy's)."""
    ticket, rollup = t.ticket, t.report_ticket
    extra = ([rollup.c.watermark, case((rollup.c.version == ticket.c.version, rollup.c.data))]
             if with_rows else [])
    query = select(ticket.c.id, ticket.c.mailbox, ticket.c.tags, ticket.c.assignee,
                   _micros_sql(conn, "ticket.created_at"), _micros_sql(conn, "ticket.first_response_at"),
                   ticket.c.sla_policy, ticket.c.requester, ticket.c.message_count,
                   func.lower(ticket.c.requester), ticket.c.merged_into, *extra)
    if with_rows:
        query = query.outerjoin(rollup, rollup.c.ticket_id == ticket.c.id)
    return query.where(*_live(scope, since, until)).order_by(ticket.c.id)


# SQLite's unixepoch() (3.38 and later) counts the whole seconds of the stored text exactly.
_UNIXEPOCH = (3, 38, 0)


def _micros_sql(conn: Connection, column: str):
    """A timestamp column of `ticket` as microseconds since the epoch (an integer), counted by the database, for
    `live_tickets`: exactly inboxd.reports.tickets.micros of what UTCDateTime reads.

    SQLite keeps the instant as text, "2026-11-30 10:00:00.123456" (UTC, always six digits of fraction): the
    whole seconds of its first 19 characters (unixepoch() of the whole text rounds the fraction to a
    millisecond, so the fraction is added as an integer of its own; whole seconds are exact on either side of
    1970).  A value of another length, or an SQLite without unixepoch(), comes as its text, which
    `micros_converter` parses.  (Checking more of the text's shape in SQL cost more than parsing it in Python
    saves.)  PostgreSQL counts the whole seconds of the timestamp and its microseconds (both exact integers,
    in any version's float or numeric)."""
    if conn.dialect.name == "sqlite":
        if conn.dialect.dbapi.sqlite_version_info < _UNIXEPOCH:
            return literal_column(column)
        return literal_column(
            f"CASE WHEN length({column}) = 26"
            f" THEN unixepoch(substr({column}, 1, 19)) * 1000000 + CAST(substr({column}, 21) AS INTEGER)"
            f" ELSE {column} END")
    return literal_column(
        f"(CAST(extract(epoch FROM date_trunc('second', {column})) AS BIGINT) * 1000000"
        f" + CAST(extract(microseconds FROM {column}) AS BIGINT) % 1000000)")


def _utc_converter(conn: Connection):
    """What UTCDateTime does to a stored instant, for the values of a column read without it."""
    if conn.dialect.name == "sqlite":
        # SQLite keeps the UTC instant as text without an offset (datetime.UTC is timezone.utc, what
        # "+00:00" gives).
        return lambda text: datetime.fromisoformat(text + "+00:00")
    return lambda at: at.replace(tzinfo=UTC) if at.utcoffset() is None else at.astimezone(UTC)


# The epoch of the report's integer instants (inboxd.reports.tickets.micros), naive for SQLite's stored text.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def micros_converter(conn: Connection):
    """The microseconds since the epoch of an instant as `live_tickets` reads it: an integer counted by the
    database as it is, else (a stored text of another shape, an SQLite without unixepoch()) what
    `_utc_converter` gives, as inboxd.reports.tickets.micros counts it, without the datetime in between."""
    if conn.dialect.name == "sqlite":
        # SQLite keeps the UTC instant as text without an offset: parsed naive, it is the same instant.
        # (The defaults bind the names once.)
        return lambda value, parse=datetime.fromisoformat, epoch=_NAIVE_EPOCH, unit=_MICROSECOND: (
            value if value.__class__ is int else (parse(value) - epoch) // unit)
    return lambda at: (at if at.__class__ is int
                       else ((at.replace(tzinfo=UTC) if at.utcoffset() is None else at) - EPOCH) // _MICROSECOND)


def live_status_events(conn: Connection, scope: Scope, since: datetime, until: datetime,
                       end: datetime) -> Iterable[tuple]:
    """(ticket_id, at, action, detail) of the status-changing events before `end` of the tickets alive
    in [since, until), in each ticket's order."""
    # The instants are made UTC here, as in live_tickets: a desk has a few status events per ticket.
    utc = _utc_converter(conn)
    return ((pk, utc(at), action, detail)
            for pk, at, action, detail in conn.execute(live_status_events_query(scope, since, until, end)))


def live_status_events_query(scope: Scope, since: datetime, until: datetime, end: datetime):
    """The statement of `live_status_events` (a test asks both databases for its plan)."""
    ticket, event = t.ticket, t.event
    return (select(event.c.ticket_id, type_coerce(event.c.at, String), event.c.action, event.c.detail)
            .join(ticket, ticket.c.id == event.c.ticket_id)
            .where(*_live(scope, since, until), event.c.at < end, may_change_status())
            .order_by(event.c.ticket_id, event.c.at, event.c.id))


def status_events_of(conn: Connection, ticket_ids: Sequence[int], end: datetime | None = None) -> Iterable[tuple]:
    """(ticket_id, at, action, detail) of the status-changing events of these tickets (before `end` when
    given), in each ticket's order, read through ix_event_status_change as live_status_events is."""
    utc = _utc_converter(conn)
    event = t.event
    before = [event.c.at < end] if end is not None else []
    for start in range(0, len(ticket_ids), CHUNK):
        rows = conn.execute(
            select(event.c.ticket_id, type_coerce(event.c.at, String), event.c.action, event.c.detail)
            .where(event.c.ticket_id.in_(list(ticket_ids[start:start + CHUNK])), *before, may_change_status())
            .order_by(event.c.ticket_id, event.c.at, event.c.id))
        yield from ((pk, utc(at), action, detail) for pk, at, action, detail in rows)


def status_events_between(conn: Connection, scope: Scope, since: datetime, until: datetime) -> Sequence[Row]:
    """(ticket_id, action, detail) of the status-changing events in [since, until)."""
    ticket, event = t.ticket, t.event
    return conn.execute(
        select(event.c.ticket_id, event.c.action, event.c.detail)
        .join(ticket, ticket.c.id == event.c.ticket_id)
        .where(event.c.at >= since, event.c.at < until, *scope.clauses(), may_change_status())).all()


def agent_reply_counts(conn: Connection, ticket_ids: Sequence[int]) -> dict[int, int]:
    """The number of agent messages on each of the tickets (those with none are absent)."""
    out: dict[int, int] = {}
    for start in range(0, len(ticket_ids), CHUNK):
        out.update(conn.execute(agent_reply_counts_query(list(ticket_ids[start:start + CHUNK]))).all())
    return out


def agent_reply_counts_query(ticket_ids: list[int]):
    """The statement of `agent_reply_counts` for one list of tickets (a test asks both databases for its plan).

    Its condition on the kind is the partial index ix_message_agent's (models.AGENT_MESSAGE, migration 0020),
    as literal SQL: SQLite would match a bound "agent" too, but PostgreSQL's generic plan of a prepared
    statement (psycopg prepares one run five times) could not use the index.  Through it the agent messages are
    counted without reading the messages themselves (0.6 s of a 90-day report over 95,000 resolved tickets
    through the index on ticket_id alone, 0.2 s through this one)."""
    message = t.message
    return (select(message.c.ticket_id, func.count())
            .where(text("message.kind = 'agent'"), message.c.ticket_id.in_(ticket_ids))
            .group_by(message.c.ticket_id))


def backlog(conn: Connection, scope: Scope) -> int:
    """Tickets not solved or closed, and not merged into another."""
    ticket = t.ticket
    return conn.execute(
        select(func.count()).select_from(ticket)
        .where(ticket.c.status.in_(UNRESOLVED), ticket.c.merged_into.is_(None), *scope.clauses())).scalar_one()


def open_by_assignee(conn: Connection, scope: Scope) -> dict[str, int]:
    """Unresolved, unmerged tickets per assignee.

    Counted here rather than by GROUP BY: grouping made SQLite walk the assignee index over every ticket
    (seconds on a store of 100,000) instead of the status index over the few unresolved ones."""
    ticket = t.ticket
    return dict(Counter(conn.execute(
        select(ticket.c.assignee)
        .where(ticket.c.assignee.is_not(None), ticket.c.merged_into.is_(None), ticket.c.status.in_(UNRESOLVED),
               *scope.clauses())).scalars()))


def sla_targets(conn: Connection, scope: Scope, target: str, since: datetime, until: datetime) -> Sequence[Row]:
    """(due, done) of the unmerged tickets whose `target` ("first_response" or "resolution") fell due
    in [since, until); done is None while the target is not met."""
    ticket = t.ticket
    if target == "first_response":
        due, done = ticket.c.first_response_due, ticket.c.first_response_at
    elif target == "resolution":
        due, done = ticket.c.resolution_due, func.coalesce(ticket.c.solved_at, ticket.c.closed_at)
    else:
        raise ValueError(f"unknown SLA target {target!r}")
    return conn.execute(
        select(due, done)
        .where(due >= since, due < until, ticket.c.merged_into.is_(None), *scope.clauses())).all()


def csat_sent(conn: Connection, scope: Scope, since: datetime, until: datetime) -> tuple[int, int]:
    """(surveys sent in [since, until), how many of them are rated; a reply without a rating is no answer)."""
    ticket, csat = t.ticket, t.csat
    sent, answered = conn.execute(
        select(func.count(), func.count(csat.c.rating))
        .join_from(csat, ticket, ticket.c.id == csat.c.ticket_id)
        .where(csat.c.sent_at >= since, csat.c.sent_at < until, *scope.clauses())).one()
    return sent, answered


def csat_answers(conn: Connection, scope: Scope, since: datetime, until: datetime) -> Sequence[Row]:
    """(rating, label, answered_at, assignee) of every rated answer given in [since, until)."""
    ticket, csat = t.ticket, t.csat
    return conn.execute(
        select(csat.c.rating, csat.c.label, csat.c.answered_at, ticket.c.assignee)
        .join_from(csat, ticket, ticket.c.id == csat.c.ticket_id)
        .where(csat.c.answered_at >= since, csat.c.answered_at < until, csat.c.rating.is_not(None),
               *scope.clauses())
        .order_by(csat.c.id)).all()


def csat_comments(conn: Connection, scope: Scope, since: datetime, until: datetime) -> int:
    """Surveys replied to in [since, until) without a rating (kept as comments)."""
    ticket, csat = t.ticket, t.csat
    return conn.execute(
        select(func.count())
        .join_from(csat, ticket, ticket.c.id == csat.c.ticket_id)
        .where(csat.c.answered_at >= since, csat.c.answered_at < until, csat.c.rating.is_(None),
               *scope.clauses())).scalar()


def csat_week(conn: Connection, since: datetime, until: datetime, good: Sequence[int]) -> tuple[int, int]:
    """(rated answers given in [since, until), how many of them score one of `good`), over every ticket."""
    csat = t.csat
    total, good = conn.execute(
        select(func.count(), func.coalesce(func.sum(case((csat.c.rating.in_(list(good)), 1), else_=0)), 0))
        .where(csat.c.rating.is_not(None), csat.c.answered_at >= since, csat.c.answered_at < until)).one()
    return total, int(good)


def escalation_details(conn: Connection, scope: Scope, since: datetime, until: datetime) -> list[str]:
    """The detail (JSON text) of every escalation in [since, until)."""
    ticket, event = t.ticket, t.event
    return list(conn.execute(
        select(event.c.detail)
        .join(ticket, ticket.c.id == event.c.ticket_id)
        .where(event.c.action == "escalate", event.c.at >= since, event.c.at < until, *scope.clauses()))
        .scalars())


def reply_counts(conn: Connection, scope: Scope, since: datetime, until: datetime) -> dict[str, int]:
    """The agents' replies in [since, until), per actor: their "reply" events, their macros that sent a
    message (the detail names a message_id) and the agent messages filed from their mail (kind "agent").

    Counted by the database: decoding each event's JSON in Python (600,000 of them over 90 days of a
    busy desk) was most of the report's time.  The LIKE tests only spare the JSON function the rows that
    cannot match (the customers' messages, most events of a busy desk).
    """
    ticket, event = t.ticket, t.event
    message_id = func.coalesce(json_text(event.c.detail, "message_id"), "")
    is_reply = or_(event.c.action == "reply",
                   and_(event.c.action == "macro", event.c.detail.like("%message_id%"), message_id != ""),
                   and_(event.c.action == "message", event.c.detail.like("%agent%"),
                        json_text(event.c.detail, "kind") == "agent"))
    return dict(conn.execute(
        select(event.c.actor, func.count())
        .join(ticket, ticket.c.id == event.c.ticket_id)
        .where(and_(event.c.at >= since, event.c.at < until), is_reply, *scope.clauses())
        .group_by(event.c.actor)).all())


def customer_tickets(conn: Connection, customers: Sequence[str], since: datetime) -> list[tuple]:
    """(id, requester in lower case, created_at, merged_into) of every ticket of these customers (lower-case
    addresses, matched ignoring case) created after `since`, in any mailbox."""
    ticket = t.ticket
    # The instant is made UTC here, as in live_tickets (a 90-day report reads 100,000 of these).
    utc = _utc_converter(conn)
    query = (select(ticket.c.id, func.lower(ticket.c.requester), type_coerce(ticket.c.created_at, String),
                    ticket.c.merged_into)
             .where(ticket.c.created_at > since).order_by(ticket.c.id))
    return _customer_rows(conn, query, customers, utc)


def customer_tickets_elsewhere(conn: Connection, customers: Collection[str], after: datetime, since: datetime,
                               until: datetime) -> list[tuple]:
    """`customer_tickets` less the tickets a report over every mailbox for [since, until) read already (those
    `live_tickets` gives for the whole desk): the other tickets of these customers created after `after`.

    The tickets alive in the period are most of a long report's customers' tickets, and reading them a
    second time was a tenth of a 90-day report.  The condition is the exact complement of `_live` (its
    columns are never NULL), so the two reads together are `customer_tickets`'s rows."""
    ticket = t.ticket
    utc = _utc_converter(conn)
    query = (select(ticket.c.id, func.lower(ticket.c.requester), type_coerce(ticket.c.created_at, String),
                    ticket.c.merged_into)
             .where(ticket.c.created_at > after, not_(and_(*_live(Scope(), since, until)))).order_by(ticket.c.id))
    return _customer_rows(conn, query, customers, utc)


def _customer_rows(conn: Connection, query, customers: Collection[str], utc) -> list[tuple]:
    """The rows of `query` (id, lower(requester), created_at as text, merged_into) whose requester is one
    of `customers`, with the instant made UTC by `utc`."""
    if len(customers) <= CHUNK:
        rows = conn.execute(query.where(func.lower(t.ticket.c.requester).in_(list(customers))))
    else:
        # No index serves lower(requester), so each IN list scanned the whole table:
        # more customers than one list holds are matched here, in one scan.
        wanted = set(customers)
        rows = (row for row in conn.execute(query) if row[1] in wanted)
    return [(pk, requester, utc(created), merged) for pk, requester, created, merged in rows]


def csat_ratings(conn: Connection, scope: Scope, since: datetime, until: datetime) -> Sequence[Row]:
    """(ticket_id, rating) of every rated answer given in [since, until) (the answers `csat_answers` reads)."""
    ticket, csat = t.ticket, t.csat
    return conn.execute(
        select(csat.c.ticket_id, csat.c.rating)
        .join_from(csat, ticket, ticket.c.id == csat.c.ticket_id)
        .where(csat.c.answered_at >= since, csat.c.answered_at < until, csat.c.rating.is_not(None),
               *scope.clauses())
        .order_by(csat.c.id)).all()


# --- `inboxd export` ------------------------------------------------------------------------

def _created_between(since: datetime | None, until: datetime | None) -> list:
    ticket = t.ticket
    return [*([ticket.c.created_at >= since] if since is not None else []),
            *([ticket.c.created_at < until] if until is not None else [])]


def export_tickets(conn: Connection, since: datetime | None, until: datetime | None) -> Sequence[Row]:
    """The tickets created in [since, until) (an open end: all), in id order, with the columns an export shows."""
    ticket = t.ticket
    c = ticket.c
    return conn.execute(
        select(c.ref, c.subject, c.status, c.priority, c.mailbox, c.requester, c.requester_name, c.assignee,
               c.team, c.tags, c.message_count, c.created_at, c.updated_at, c.first_response_at, c.solved_at,
               c.closed_at, c.sla_policy, c.escalated)
        .where(*_created_between(since, until)).order_by(c.id)).all()


def export_messages(conn: Connection, since: datetime | None, until: datetime | None) -> Sequence[Row]:
    """The messages of those tickets, ticket by ticket in the order they were written (their Date, else when
    the store learned of them): (ref, message_id, direction, kind, from_addr, from_name, to_addrs, cc_addrs,
    date, subject, text)."""
    ticket, message = t.ticket, t.message
    m = message.c
    date = func.coalesce(m.date, m.created_at)
    return conn.execute(
        select(ticket.c.ref, m.message_id, m.direction, m.kind, m.from_addr, m.from_name, m.to_addrs, m.cc_addrs,
               date, m.subject, m.text)
        .join_from(message, ticket, ticket.c.id == m.ticket_id)
        .where(*_created_between(since, until))
        .order_by(ticket.c.id, date, m.id)).all()
