"""What inboxd wrote back to the mailbox (keywords, Gmail labels, \\Seen), and what is still to write.

One `writeback` row per message place (mailbox, folder, UIDVALIDITY, UID)
holds what was last written there and the ticket version it was written
for.  `due` finds the customer's messages of a folder whose row is missing
or stale: the ticket moved on (version or ticket changed), the overdue state
flipped with time (the same rule as `inboxd list --overdue`), or the write
mode changed (write_back / seen_on_close / keywords allowed / Gmail).  So
nothing is "marked dirty" anywhere else, and a restart rewrites nothing:
what the rows say was written is not written again.

`writeback_folder` keeps what each folder allows (PERMANENTFLAGS at the last
read-write SELECT), the last write error, and how many STORE commands were
ever sent, for `inboxd status` and for tests that prove nothing was rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Row, and_, case, false, func, literal, or_, select, true

from inboxd.store.sql import dialect_insert, excluded, t
from inboxd.store.tickets import overdue_clause
from inboxd.store.tiers import tier_response_unmet

# Message places looked at in one query.
DUE_LIMIT = 500


@dataclass(frozen=True)
class Written:
    """What was just written to one message place (or found already right)."""

    uid: int
    ticket_id: int
    version: int
    overdue: bool
    keywords: frozenset[str]
    seen: bool | None


def due(conn: Connection, mailbox: str, folder: str, uidvalidity: int, now: datetime, mode: str, *,
        after_uid: int = 0, limit: int = DUE_LIMIT) -> list[Row]:
    """The customer's messages in the folder whose write-back is missing or stale, by UID above `after_uid`.

    Each row: uid, ticket_id, the ticket's ref, status, assignee, tags
    (JSON text), version, due times, first_response_at, tier_unanswered,
    and what was written: w_keywords (JSON text or None), w_seen.
    """
    # An alias of `message`: tier_response_unmet() correlates on `message` itself.
    s, m, tk, wb = t.sighting, t.message.alias("filed"), t.ticket, t.writeback
    overdue_now = case((overdue_clause(now), true()), else_=false())
    stmt = (
        select(s.c.uid, tk.c.id.label("ticket_id"), tk.c.ref, tk.c.status, tk.c.assignee, tk.c.tags, tk.c.version,
               tk.c.first_response_due, tk.c.first_response_at, tk.c.next_response_due, tk.c.resolution_due,
               tk.c.tier_response_due, case((tier_response_unmet(), true()), else_=false()).label("tier_unanswered"),
               wb.c.keywords.label("w_keywords"), wb.c.seen.label("w_seen"))
        .select_from(s.join(m, m.c.id == s.c.message_pk).join(tk, tk.c.id == m.c.ticket_id)
                     .outerjoin(wb, and_(wb.c.mailbox == s.c.mailbox, wb.c.folder == s.c.folder,
                                         wb.c.uidvalidity == s.c.uidvalidity, wb.c.uid == s.c.uid)))
        .where(s.c.mailbox == mailbox, s.c.folder == folder, s.c.uidvalidity == uidvalidity, s.c.uid > after_uid,
               m.c.kind == "customer", m.c.direction == "in",
               or_(wb.c.uid.is_(None), wb.c.version != tk.c.version, wb.c.ticket_id != tk.c.id,
                   wb.c.mode != literal(mode), wb.c.overdue != overdue_now))
        .order_by(s.c.uid).limit(limit))
    return list(conn.execute(stmt))


def written_keywords(row: Row) -> frozenset[str]:
    """The keywords a `due` row says were written before (none for a message never written)."""
    try:
        return frozenset(json.loads(row.w_keywords)) if row.w_keywords else frozenset()
    except ValueError:
        return frozenset()


def record(conn: Connection, mailbox: str, folder: str, uidvalidity: int, mode: str, done: Iterable[Written],
           now: datetime) -> None:
    """Remember what was written to each place (after the server took it)."""
    rows = [{"mailbox": mailbox, "folder": folder, "uidvalidity": uidvalidity, "uid": w.uid,
             "ticket_id": w.ticket_id, "version": w.version, "mode": mode, "overdue": w.overdue,
             "keywords": json.dumps(sorted(w.keywords), ensure_ascii=False), "seen": w.seen, "written_at": now}
            for w in done]
    if not rows:
        return
    stmt = dialect_insert(conn, t.writeback)
    upserting = stmt.on_conflict_do_update(
        index_elements=["mailbox", "folder", "uidvalidity", "uid"],
        set_={name: excluded(stmt, name)
              for name in ("ticket_id", "version", "mode", "overdue", "keywords", "seen", "written_at")})
    conn.execute(upserting, rows)


def folder_checked(conn: Connection, mailbox: str, folder: str, *, keywords: bool, seen: bool, gmail: bool,
                   now: datetime) -> None:
    """Record what the folder allows (PERMANENTFLAGS has \\* and \\Seen; the server is Gmail)."""
    stmt = dialect_insert(conn, t.writeback_folder)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["mailbox", "folder"],
        set_={"keywords": keywords, "seen": seen, "gmail": gmail, "checked_at": now}),
        [{"mailbox": mailbox, "folder": folder, "keywords": keywords, "seen": seen, "gmail": gmail,
          "checked_at": now, "stores": 0, "error": ""}])


def add_stores(conn: Connection, mailbox: str, folder: str, stores: int, error: str | None, now: datetime) -> None:
    """Add `stores` STORE commands to the folder's count and set its last write error ("" or None: none)."""
    c = t.writeback_folder.c
    stmt = dialect_insert(conn, t.writeback_folder)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["mailbox", "folder"],
        set_={"stores": c.stores + excluded(stmt, "stores"), "error": excluded(stmt, "error")}),
        [{"mailbox": mailbox, "folder": folder, "keywords": True, "seen": True, "gmail": False,
          "checked_at": now, "stores": stores, "error": error or ""}])


def folders(conn: Connection) -> dict[tuple[str, str], Row]:
    """Every folder's write-back facts by (mailbox, folder): keywords, seen, gmail, checked_at, stores, error."""
    c = t.writeback_folder.c
    rows = conn.execute(select(c.mailbox, c.folder, c.keywords, c.seen, c.gmail, c.checked_at, c.stores, c.error))
    return {(r.mailbox, r.folder): r for r in rows}


def place_count(conn: Connection, mailbox: str, folders_: Sequence[str] = ()) -> int:
    """How many message places have a write-back row (for tests and status)."""
    wb = t.writeback
    stmt = select(func.count()).select_from(wb).where(wb.c.mailbox == mailbox)
    if folders_:
        stmt = stmt.where(wb.c.folder.in_(list(folders_)))
    return int(conn.execute(stmt).scalar_one())
