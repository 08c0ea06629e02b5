"""The report rollups' table (report_rollup): read a range of days, write a day, drop stale days.

Nothing here decides what a rollup holds; `inboxd.reports.rollups` does.
The watermark functions read the event table by its primary key only, so
checking that rollups are still current costs one index probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, func, or_, select, update

from inboxd.store.reports import CHUNK, RESOLVED, may_change_status
from inboxd.store.sql import dialect_insert, excluded, t, upsert


def read(conn: Connection, fingerprint: str, kinds: Sequence[str], first: datetime,
         last: datetime) -> dict[tuple[str, datetime], tuple[str, int]]:
    """{(kind, day): (data, watermark)} of the rows with `first` <= day <= `last`."""
    c = t.report_rollup.c
    rows = conn.execute(
        select(c.kind, c.day, c.data, c.watermark)
        .where(c.fingerprint == fingerprint, c.kind.in_(list(kinds)), c.day >= first, c.day <= last))
    return {(kind, day): (data, watermark) for kind, day, data, watermark in rows}


def write(conn: Connection, fingerprint: str, kind: str, day: datetime, data: str, watermark: int,
          now: datetime) -> None:
    """Store one day's figure, replacing what was there."""
    values = {"fingerprint": fingerprint, "kind": kind, "day": day, "data": data, "watermark": watermark,
              "computed_at": now}
    stmt, on_conflict = upsert(conn, t.report_rollup, ["fingerprint", "kind", "day"],
                               {"data": data, "watermark": watermark, "computed_at": now})
    conn.execute(on_conflict.values(**values))


def forget(conn: Connection, fingerprint: str | None = None, since: datetime | None = None) -> int:
    """Drop the rows of `fingerprint` (of every fingerprint when None) from day `since` on (all days when None)."""
    c = t.report_rollup.c
    stmt = delete(t.report_rollup)
    if fingerprint is not None:
        stmt = stmt.where(c.fingerprint == fingerprint)
    if since is not None:
        stmt = stmt.where(c.day >= since)
    return conn.execute(stmt).rowcount


def forget_others(conn: Connection, fingerprint: str) -> int:
    """Drop the rows of every other fingerprint (a changed configuration's old figures)."""
    c = t.report_rollup.c
    return conn.execute(delete(t.report_rollup).where(c.fingerprint != fingerprint)).rowcount


def restamp(conn: Connection, fingerprint: str, keys: Sequence[tuple[str, datetime]], watermark: int) -> None:
    """Set the watermark of the rows (kind, day) found current up to `watermark`."""
    c = t.report_rollup.c
    stmt = (update(t.report_rollup)
            .where(c.fingerprint == fingerprint, c.kind == bindparam("k"), c.day == bindparam("d"),
                   c.watermark < watermark)
            .values(watermark=watermark))
    conn.execute(stmt, [{"k": kind, "d": day} for kind, day in keys])


def newest_event(conn: Connection) -> int:
    """The newest event id (0 when there is none)."""
    return conn.execute(select(func.coalesce(func.max(t.event.c.id), 0))).scalar_one()


def earliest_event_after(conn: Connection, watermark: int) -> datetime | None:
    """The earliest `at` of the events written after `watermark` (by id), or None when there are none."""
    event = t.event.c
    # Through a subquery with a LIMIT, which SQLite does not flatten: asked directly for min(at), it walked
    # the index on `at` from the oldest event until it met a newer id (the whole table, for a recent watermark).
    newer = select(event.at.label("at")).where(event.id > watermark).limit(2 ** 62).subquery()
    return conn.execute(select(func.min(newer.c.at))).scalar()


def earliest_event_since(conn: Connection, since: datetime) -> datetime | None:
    """The earliest `at` of the events dated at or after `since` (one probe of the index on `at`), or None."""
    return conn.execute(select(func.min(t.event.c.at)).where(t.event.c.at >= since)).scalar()


# --- Per-ticket rows (report_ticket, migration 0021; inboxd.reports.tickets) ------------------------------

def ticket_rows(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[int, int, str]]:
    """{ticket_id: (version, watermark, data)} of the stored rows of these tickets."""
    c = t.report_ticket.c
    out = {}
    for start in range(0, len(ids), CHUNK):
        out.update((pk, (version, watermark, data)) for pk, version, watermark, data in conn.execute(
            select(c.ticket_id, c.version, c.watermark, c.data).where(c.ticket_id.in_(list(ids[start:start + CHUNK])))))
    return out


def tickets_from(conn: Connection, first_id: int, limit: int,
                 since: datetime) -> list[tuple[int, int, int, datetime]]:
    """(id, version, message_count, created_at) of up to `limit` tickets from id `first_id` on that a report from `since` on
    reads (unresolved, or changed since `since`), in id order."""
    ticket = t.ticket
    return [tuple(row) for row in conn.execute(
        select(ticket.c.id, ticket.c.version, ticket.c.message_count, ticket.c.created_at)
        .where(ticket.c.id >= first_id, or_(ticket.c.status.not_in(RESOLVED), ticket.c.updated_at >= since))
        .order_by(ticket.c.id).limit(limit))]


def newer_status_events(conn: Connection, watermark: int, first_id: int | None = None,
                        last_id: int | None = None) -> dict[int, int]:
    """{ticket_id: newest event id} of the tickets (ids in [first_id, last_id] when given) with an event
    that can change a status written after `watermark` (by id)."""
    event = t.event
    bounds = ([event.c.ticket_id >= first_id] if first_id is not None else []) + (
        [event.c.ticket_id <= last_id] if last_id is not None else [])
    if not bounds:
        # Over every ticket (the report's check), the events after the watermark are read by primary key
        # through a subquery with a LIMIT, which SQLite does not flatten: asked directly, it walked the whole
        # partial index ix_event_status_change instead (every status event of the store, 17 ms of a 90-day
        # report on 360,000 of them, to find the few written since the last night's fill).
        newer = (select(event.c.ticket_id.label("ticket_id"), event.c.id.label("id"))
                 .where(event.c.id > watermark, may_change_status()).limit(2 ** 62).subquery())
        return dict(conn.execute(
            select(newer.c.ticket_id, func.max(newer.c.id)).group_by(newer.c.ticket_id)).all())
    return dict(conn.execute(
        select(event.c.ticket_id, func.max(event.c.id))
        .where(event.c.id > watermark, *bounds, may_change_status())
        .group_by(event.c.ticket_id)).all())


def write_tickets(conn: Connection, rows: Sequence[dict]) -> None:
    """Store per-ticket rows ({ticket_id, version, watermark, data, computed_at}), replacing what was there."""
    if not rows:
        return
    stmt = dialect_insert(conn, t.report_ticket)
    conn.execute(stmt.on_conflict_do_update(index_elements=["ticket_id"], set_={
        name: excluded(stmt, name) for name in ("version", "watermark", "data", "computed_at")}), list(rows))


def restamp_tickets(conn: Connection, ids: Sequence[int], watermark: int) -> None:
    """Set the watermark of the rows of these tickets, found current up to `watermark`."""
    c = t.report_ticket.c
    for start in range(0, len(ids), CHUNK):
        conn.execute(update(t.report_ticket)
                     .where(c.ticket_id.in_(list(ids[start:start + CHUNK])), c.watermark < watermark)
                     .values(watermark=watermark))


def forget_tickets(conn: Connection) -> int:
    """Drop every per-ticket row (the reports then read the tickets' events until the next fill)."""
    return conn.execute(delete(t.report_ticket)).rowcount
