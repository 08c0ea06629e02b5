"""Ticket rows as the agent workflow writes them and the ticket views read them.

The workflow (inboxd.desk.workflow) reads one ticket, decides, and saves it
back with a compare-and-swap on its version; it also merges tickets and
records an agent's first response.  The views (inboxd.desk.views) list
tickets with filters, show one with its thread, and list the outbox with the
ticket each mail is about (`outbox_rows`).  Everything here is SQLAlchemy Core over the models'
tables, so it runs on SQLite and PostgreSQL alike.

The list view prints up to 100,000 tickets, so its timestamps are turned
into the contract's "…T…Z" text by the database (`iso_z`) rather than
parsed into datetimes and formatted again in Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, Integer, Row, and_, bindparam, case, func, literal, or_, select, type_coerce, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Text

from inboxd.store.fields import has_value as has_field_value
from inboxd.store.filing import Prepared
from inboxd.store.sql import greatest, message_order, t
from inboxd.store.tiers import tier_response_unmet
from inboxd.vocabulary import OPEN_STATUSES

# SQLite's default limit on bound parameters is far above this.
_CHUNK = 900


class iso_z(FunctionElement):
    """A stored timestamp as the contract's ISO 8601 text in UTC, "2026-11-23T03:04:16Z" (NULL stays NULL)."""

    inherit_cache = True
    type = Text()


@compiles(iso_z)
def _iso_z_sqlite(element, compiler, **kw):
    # SQLite's "qmark" parameters leave a "%" in the statement as it is.
    return "strftime('%Y-%m-%dT%H:%M:%SZ', " + compiler.process(element.clauses, **kw) + ")"


@compiles(iso_z, "postgresql")
def _iso_z_pg(element, compiler, **kw):
    return ("to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
            % compiler.process(element.clauses, **kw))


def _matches(conn: Connection, column, pattern: str) -> ColumnElement:
    """`column` LIKE `pattern` (with "\\" escaping), ignoring ASCII case on both databases as SQLite's LIKE does."""
    if conn.dialect.name == "sqlite":
        return column.like(pattern, escape="\\")
    return column.ilike(pattern, escape="\\")


def like_anywhere(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with LIKE's wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# -- the workflow's side --------------------------------------------------------------------------

def _work_columns():
    tk = t.ticket
    return (tk.c.id, tk.c.ref, tk.c.subject, tk.c.status, tk.c.priority, tk.c.mailbox, tk.c.requester,
            tk.c.requester_name, tk.c.assignee, tk.c.tags, tk.c.team, tk.c.tier, tk.c.escalated, tk.c.approved_by,
            tk.c.merged_into, tk.c.version)


def ticket_by_ref(conn: Connection, ref: str, *, lock: bool = False) -> Row | None:
    """The ticket's fields the workflow decides on (id, ref, subject, status, priority, mailbox, requester,
    requester_name, assignee, tags as JSON text, team, tier, escalated, approved_by, merged_into, version).

    With `lock`, the row stays locked until the transaction ends (PostgreSQL's
    FOR UPDATE; SQLite's BEGIN IMMEDIATE already holds the store's write
    lock), so a concurrent change waits and then sees this one's result.
    """
    return (_BY_REF_LOCKED if lock else _BY_REF).first(conn, {"ref": ref})


# Compiled once (`filing.Prepared`): every duty item and notification loads its
# ticket, and building the statement each time was a good part of that.
_BY_REF = Prepared(select(*_work_columns()).where(t.ticket.c.ref == bindparam("ref")))
_BY_REF_LOCKED = Prepared(select(*_work_columns()).where(t.ticket.c.ref == bindparam("ref")).with_for_update())


_BY_IDS = select(*_work_columns()).where(t.ticket.c.id.in_(bindparam("pks", expanding=True)))


def tickets_by_ids(conn: Connection, ticket_pks: Sequence[int]) -> list[Row]:
    """`ticket_by_ref`'s row of each ticket in `ticket_pks` that exists, in one query (the scheduler's batches)."""
    return conn.execute(_BY_IDS, {"pks": list(ticket_pks)}).all() if ticket_pks else []


def ref_of(conn: Connection, ticket_pk: int) -> str | None:
    return conn.execute(select(t.ticket.c.ref).where(t.ticket.c.id == ticket_pk)).scalar()


def save_work(conn: Connection, ticket_pk: int, version: int, *, status: str, priority: str, assignee: str | None,
              tags: str, team: str | None, tier: int, escalated: bool, approved_by: str | None,
              merged_into: int | None, now: datetime) -> bool:
    """Write the workflow's fields if the ticket is still at `version` (compare-and-swap); False if it moved.

    Reaching solved or closed stamps solved_at or closed_at (once); leaving
    closed clears closed_at.
    """
    tk = t.ticket
    at = literal(now, type_=tk.c.updated_at.type)
    values = dict(status=status, priority=priority, assignee=assignee, tags=tags, team=team, tier=tier,
                  escalated=bool(escalated), approved_by=approved_by, merged_into=merged_into, updated_at=now,
                  version=tk.c.version + 1)
    if status == "solved":
        values["solved_at"] = case((tk.c.status != "solved", at), else_=tk.c.solved_at)
    if status == "closed":
        values["closed_at"] = case((tk.c.status != "closed", at), else_=tk.c.closed_at)
    else:
        values["closed_at"] = None
    result = conn.execute(update(tk).where(tk.c.id == ticket_pk, tk.c.version == version).values(**values))
    return result.rowcount == 1


def set_by_hand(conn: Connection, ticket_pk: int, *, priority: str | None, assignee: str | None,
                now: datetime) -> dict:
    """An agent's priority and assignee for a ticket they open (`inboxd new`); an assigned new ticket is open.

    Returns the changes as the workflow's events show them ({field: {before, after}}).
    """
    tk = t.ticket
    row = conn.execute(select(tk.c.priority, tk.c.assignee, tk.c.status).where(tk.c.id == ticket_pk)).one()
    values: dict = {}
    changes: dict = {}
    if priority is not None and priority != row.priority:
        values["priority"] = priority
        changes["priority"] = {"before": row.priority, "after": priority}
    if assignee is not None and assignee != row.assignee:
        values["assignee"] = assignee
        changes["assignee"] = {"before": row.assignee, "after": assignee}
        if row.status == "new":
            values["status"] = "open"
            changes["status"] = {"before": "new", "after": "open"}
    if values:
        conn.execute(update(tk).where(tk.c.id == ticket_pk).values(**values, updated_at=now,
                                                                     version=tk.c.version + 1))
    return changes


def mark_first_response(conn: Connection, ticket_pk: int, now: datetime) -> None:
    """The ticket's first response is at `now`, unless it already had one."""
    tk = t.ticket
    conn.execute(update(tk).where(tk.c.id == ticket_pk, tk.c.first_response_at.is_(None))
                 .values(first_response_at=now))


def merge_rows(conn: Connection, src_pk: int, dst_pk: int, dst_tags: str, now: datetime) -> int:
    """Move src's messages to dst, give dst `dst_tags`, close src pointing at dst; returns the messages moved.

    Tickets merged into src before lead straight to dst.  updated_at never
    goes back: a merge by history mail happens "at" that mail's arrival.
    """
    tk, m = t.ticket, t.message
    moved = conn.execute(update(m).where(m.c.ticket_id == src_pk).values(ticket_id=dst_pk)).rowcount
    conn.execute(update(tk).where(tk.c.id == dst_pk).values(
        message_count=tk.c.message_count + moved, tags=dst_tags, updated_at=greatest(tk.c.updated_at, now),
        version=tk.c.version + 1))
    conn.execute(update(tk).where(tk.c.id == src_pk).values(
        merged_into=dst_pk, status="closed", closed_at=now, message_count=0,
        updated_at=greatest(tk.c.updated_at, now), version=tk.c.version + 1))
    conn.execute(update(tk).where(tk.c.merged_into == src_pk).values(merged_into=dst_pk))
    return moved


# -- the views' side --------------------------------------------------------------------------------

def _list_columns():
    tk = t.ticket
    return (tk.c.id, tk.c.ref, tk.c.subject, tk.c.status, tk.c.priority, tk.c.mailbox, tk.c.requester,
            tk.c.requester_name, tk.c.assignee, tk.c.tags, tk.c.message_count, iso_z(tk.c.created_at),
            iso_z(tk.c.updated_at), iso_z(tk.c.first_response_at), tk.c.team, tk.c.tier,
            # As the driver gives it (0/1 from SQLite, a bool from psycopg): the caller takes bool() of
            # it, and a row without result processors keeps 100,000 of them cheap.
            type_coerce(tk.c.escalated, Integer),
            iso_z(tk.c.first_response_due), iso_z(tk.c.resolution_due))


def _order(sort: str) -> list:
    tk = t.ticket
    if sort == "created":
        return [tk.c.created_at.desc()]
    if sort == "priority":
        rank = case({"urgent": 0, "high": 1, "normal": 2}, value=tk.c.priority, else_=3)
        return [rank, tk.c.updated_at.desc()]
    if sort == "id":
        return [tk.c.id.asc()]
    return [tk.c.updated_at.desc()]


def overdue_clause(now: datetime) -> ColumnElement:
    """A clause on `ticket`: a promise broken before `now` (`inboxd list --overdue`, the $inboxd-overdue keyword).

    A due time passed and not met (resolution only while still open), on a
    ticket that is not solved or closed.
    """
    tk = t.ticket
    return and_(
        or_(and_(tk.c.first_response_due < now, tk.c.first_response_at.is_(None)),
            tk.c.next_response_due < now,
            and_(tk.c.resolution_due < now, tk.c.status.in_(OPEN_STATUSES)),
            and_(tk.c.tier_response_due < now, tier_response_unmet())),
        tk.c.status.not_in(("solved", "closed")))


def list_rows(conn: Connection, *, statuses: Sequence[str] = (), mailbox: str | None = None,
              assignee: str | None = None, unassigned: bool = False, tags: Sequence[str] = (),
              team: str | None = None, priorities: Sequence[str] = (), search: str | None = None,
              overdue_at: datetime | None = None, sort: str = "updated", first_for: str | None = None,
              limit: int | None = None, requester: str | None = None,
              fields: Sequence[tuple[str, str]] = (), tier: int | None = None,
              visible: tuple[Sequence[str], Sequence[str], str, Sequence[str]] | None = None) -> list[Row]:
    """Tickets matching every filter given, in the order asked (ties: newest id first).

    Each row: id, ref, subject, status, priority, mailbox, requester,
    requester_name, assignee, tags (JSON text), message_count, created_at,
    updated_at, first_response_at, team, tier, escalated, first_response_due,
    resolution_due, with the timestamps as the contract's ISO text.
    `tags` are JSON-quoted tags (`json.dumps(tag)`), each matched as a whole element.
    `requester` matches the address ignoring case; `fields` are (name, value)
    pairs of custom fields the ticket must all have.  `visible` (teams, mailboxes, agent, team
    mailboxes) keeps the tickets of those teams, opened in those mailboxes, assigned to that agent, or
    belonging to no team (no team of its own and opened in none of the team mailboxes).
    """
    tk, m, s = t.ticket, t.message, t.sighting
    where = []
    if visible is not None:
        teams, mailboxes, agent, teamed = visible
        where.append(or_(tk.c.team.in_(list(teams)), tk.c.mailbox.in_(list(mailboxes)), tk.c.assignee == agent,
                         and_(tk.c.team.is_(None), tk.c.mailbox.not_in(list(teamed)))))
    if statuses:
        where.append(tk.c.status.in_(list(statuses)))
    if mailbox:
        # A ticket belongs to a mailbox it was opened in or any of its mail was seen in.
        seen = select(m.c.ticket_id).join(s, s.c.message_pk == m.c.id).where(s.c.mailbox == mailbox)
        where.append(or_(tk.c.mailbox == mailbox, tk.c.id.in_(seen)))
    if assignee:
        where.append(tk.c.assignee == assignee)
    if unassigned:
        where.append(tk.c.assignee.is_(None))
    for quoted in tags:
        where.append(_matches(conn, tk.c.tags, like_anywhere(quoted)))
    if team:
        where.append(tk.c.team == team)
    if tier is not None:
        where.append(tk.c.tier == tier)
    if requester:
        where.append(func.lower(tk.c.requester) == requester.strip().lower())
    for name, value in fields:
        where.append(has_field_value(name, value))
    if priorities:
        where.append(tk.c.priority.in_(list(priorities)))
    if search:
        pattern = like_anywhere(search)
        where.append(or_(_matches(conn, tk.c.subject, pattern),
                         tk.c.id.in_(select(m.c.ticket_id).where(_matches(conn, m.c.text, pattern)))))
    if overdue_at is not None:
        where.append(overdue_clause(overdue_at))
    stmt = select(*_list_columns()).where(*where)
    order = [*_order(sort), tk.c.id.desc()]
    if first_for and limit:
        # The agent's own tickets, then the others: two queries that each stop at the limit on the
        # sort's index, rather than ordering every matching ticket by "is it mine" first (a sort of
        # tens of thousands of rows on a large store, for the 50 an agent's default view shows).
        mine = conn.execute(stmt.where(tk.c.assignee == first_for).order_by(*order).limit(limit)).all()
        if len(mine) >= limit:
            return mine
        others = or_(tk.c.assignee != first_for, tk.c.assignee.is_(None))
        return mine + conn.execute(stmt.where(others).order_by(*order).limit(limit - len(mine))).all()
    if first_for:
        order.insert(0, case((tk.c.assignee == first_for, 0), else_=1))
    stmt = stmt.order_by(*order)
    if limit:
        stmt = stmt.limit(limit)
    return conn.execute(stmt).all()


def other_mailboxes(conn: Connection, pks: list[int]) -> dict[int, set[str]]:
    """For each ticket, the mailboxes other than its own where some of its mail was seen.

    Only the few tickets whose mail reached several mailboxes have any, so
    this returns a small map even for the whole store.
    """
    tk, m, s = t.ticket, t.message, t.sighting
    out: dict[int, set[str]] = defaultdict(set)
    stmt = (select(m.c.ticket_id, s.c.mailbox).select_from(s).join(m, m.c.id == s.c.message_pk)
            .join(tk, tk.c.id == m.c.ticket_id).where(s.c.mailbox != tk.c.mailbox))
    if len(pks) > 20 * _CHUNK:
        # Most of the store: one pass over all sightings beats thousands of lookups.
        wanted = set(pks)
        for pk, box in conn.execute(stmt).all():
            if pk in wanted:
                out[pk].add(box)
    else:
        for i in range(0, len(pks), _CHUNK):
            for pk, box in conn.execute(stmt.where(m.c.ticket_id.in_(pks[i:i + _CHUNK]))):
                out[pk].add(box)
    return out


def ticket_row(conn: Connection, ref: str) -> Row | None:
    """One ticket as `list_rows` gives it, plus the ref of the ticket it was merged into (or None)."""
    tk = t.ticket
    merged = t.ticket.alias("merged")
    return conn.execute(select(*_list_columns(), merged.c.ref).outerjoin(merged, merged.c.id == tk.c.merged_into)
                        .where(tk.c.ref == ref)).first()


def message_mailboxes(conn: Connection, ticket_pk: int) -> dict[int, set[str]]:
    """For each message of the ticket, the mailboxes it was seen in."""
    m, s = t.message, t.sighting
    seen: dict[int, set[str]] = defaultdict(set)
    for mpk, box in conn.execute(select(s.c.message_pk, s.c.mailbox).join(m, m.c.id == s.c.message_pk)
                                 .where(m.c.ticket_id == ticket_pk)):
        seen[mpk].add(box)
    return seen


def thread(conn: Connection, ticket_pk: int) -> list[Row]:
    """The ticket's messages in thread order: id, message_id, direction, kind, from_addr, from_name, to_addrs,
    cc_addrs, at (the Date header, else when stored), subject, text, reply_text."""
    m = t.message
    return conn.execute(
        select(m.c.id, m.c.message_id, m.c.direction, m.c.kind, m.c.from_addr, m.c.from_name, m.c.to_addrs,
               m.c.cc_addrs, func.coalesce(m.c.date, m.c.created_at, type_=m.c.created_at.type).label("at"),
               m.c.subject, m.c.text, m.c.reply_text)
        .where(m.c.ticket_id == ticket_pk).order_by(message_order(), m.c.id)).all()


def latest_csat(conn: Connection, ticket_pk: int) -> Row | None:
    """The newest answered survey of the ticket: (rating, label, comment, answered_at)."""
    c = t.csat
    return conn.execute(select(c.c.rating, c.c.label, c.c.comment, c.c.answered_at)
                        .where(c.c.ticket_id == ticket_pk, c.c.answered_at.is_not(None))
                        .order_by(c.c.answered_at.desc()).limit(1)).first()


def outbox_rows(conn: Connection, statuses: Sequence[str]) -> list[Row]:
    """Outgoing mail in these statuses, in the order it was queued: id, status, kind, ticket ref, mailbox,
    message_id, recipients (JSON text), attempts, next_attempt_at, last_error, created_at, sent_at."""
    o, tk = t.outbox, t.ticket
    return conn.execute(
        select(o.c.id, o.c.status, o.c.kind, tk.c.ref, o.c.mailbox, o.c.message_id, o.c.recipients, o.c.attempts,
               o.c.next_attempt_at, o.c.last_error, o.c.created_at, o.c.sent_at)
        .select_from(o).outerjoin(tk, tk.c.id == o.c.ticket_id)
        .where(o.c.status.in_(list(statuses))).order_by(o.c.id)).all()


# -- shell completion --------------------------------------------------------------------------------

def open_refs(conn: Connection, prefix: str, limit: int = 50) -> list[str]:
    """Refs of tickets not closed that start with `prefix`, newest first."""
    tk = t.ticket
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(conn.execute(select(tk.c.ref).where(_matches(conn, tk.c.ref, pattern), tk.c.status != "closed")
                             .order_by(tk.c.id.desc()).limit(limit)).scalars())


def tag_sets(conn: Connection) -> list[str]:
    """Each distinct non-empty tag list in the store, as its JSON text."""
    tk = t.ticket
    return list(conn.execute(select(tk.c.tags).distinct().where(tk.c.tags != "[]")).scalars())
