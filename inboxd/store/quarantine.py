"""Quarantined mail as the store keeps it: list the rows, read one with its bytes, change its reason, remove it.

Mail is quarantined at filing time (inboxd.store.filing); this module serves
`inboxd quarantine list|show|retry` afterwards.  The bytes are a rawmessage
row, or for mail over `[store] max_message_bytes` a file under data_dir
named by `raw_path`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, Row, delete, exists, or_, select, update

from inboxd.store.sql import t


def rows(conn: Connection) -> Sequence[Row]:
    """Every quarantined mail, oldest first: id, mailbox, folder, uidvalidity, uid, message_id, reason,
    raw_sha256, at, raw_path."""
    c = t.quarantine.c
    return conn.execute(
        select(c.id, c.mailbox, c.folder, c.uidvalidity, c.uid, c.message_id, c.reason, c.raw_sha256, c.at,
               c.raw_path)
        .order_by(c.at, c.id)).all()


def ids(conn: Connection) -> list[int]:
    """The ids of every quarantined mail, in the order they were quarantined."""
    return list(conn.execute(select(t.quarantine.c.id).order_by(t.quarantine.c.id)).scalars())


def item(conn: Connection, quarantine_id: int) -> Row | None:
    """One quarantined mail with its bytes (`data`, None when they are in the file `raw_path`); None when there
    is no such row or its bytes are nowhere."""
    q, raw = t.quarantine, t.rawmessage
    return conn.execute(
        select(q.c.id, q.c.mailbox, q.c.folder, q.c.uidvalidity, q.c.uid, q.c.message_id, q.c.reason,
               q.c.raw_sha256, q.c.at, q.c.arrived_at, raw.c.data, q.c.raw_path)
        .join_from(q, raw, raw.c.sha256 == q.c.raw_sha256, isouter=True)
        .where(q.c.id == quarantine_id, or_(raw.c.sha256.is_not(None), q.c.raw_path.is_not(None)))).first()


def set_reason(conn: Connection, quarantine_id: int, reason: str, at: datetime | None = None) -> None:
    """Record a new reason (and, when given, when it was quarantined again)."""
    values: dict = {"reason": reason}
    if at is not None:
        values["at"] = at
    conn.execute(update(t.quarantine).where(t.quarantine.c.id == quarantine_id).values(values))


def remove(conn: Connection, quarantine_id: int) -> None:
    conn.execute(delete(t.quarantine).where(t.quarantine.c.id == quarantine_id))


def point_at_stored_bytes(conn: Connection, quarantine_id: int, sha256: str) -> bool:
    """Point the row at the rawmessage `sha256` instead of its file, when the store holds those bytes;
    whether it did."""
    q, raw = t.quarantine, t.rawmessage
    done = conn.execute(
        update(q).where(q.c.id == quarantine_id, exists().where(raw.c.sha256 == sha256))
        .values(raw_sha256=sha256, raw_path=None))
    return done.rowcount == 1


def file_in_use(conn: Connection, raw_path: str) -> bool:
    """Whether any quarantined mail keeps its bytes in the file `raw_path` (relative to data_dir)."""
    return conn.execute(select(t.quarantine.c.id).where(t.quarantine.c.raw_path == raw_path).limit(1)).first() \
        is not None
