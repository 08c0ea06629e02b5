"""How far each folder is synced (checkpoint) and how its last sync went (folderstate).

A folder's checkpoint is written in the same transaction as the batch it
covers (`save_checkpoint`), so the two are kept or lost together.  Its
history cut-off is written once, by the folder's first sync
(`begin_folder`), and never moved afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from inboxd.store.sql import dialect_insert, excluded, insert_ignore, t


@dataclass(frozen=True)
class FolderCheckpoint:
    """How far a folder is synced, and its history cut-off."""

    uidvalidity: int
    last_uid: int
    history_before: datetime | None = None


def read_checkpoint(conn: Connection, mailbox: str, folder: str) -> FolderCheckpoint | None:
    """How far a folder is synced, or None before its first sync."""
    c = t.checkpoint.c
    row = conn.execute(select(c.uidvalidity, c.last_uid, c.history_before)
                       .where(c.mailbox == mailbox, c.folder == folder)).first()
    return FolderCheckpoint(row[0], row[1], row[2]) if row else None


def history_cutoff(conn: Connection, mailbox: str, folder: str) -> datetime | None:
    """The folder's history cut-off, as its first sync recorded it."""
    c = t.checkpoint.c
    return conn.execute(select(c.history_before).where(c.mailbox == mailbox, c.folder == folder)).scalar()


def begin_folder(conn: Connection, mailbox: str, folder: str, uidvalidity: int, history_before: datetime,
                 now: datetime) -> None:
    """Record a folder's first sync and its history cut-off (a no-op if it is recorded already)."""
    conn.execute(insert_ignore(conn, t.checkpoint).values(
        mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, last_uid=0, synced_at=now,
        history_before=history_before))


def save_checkpoint(conn: Connection, mailbox: str, folder: str, uidvalidity: int, last_uid: int,
                    now: datetime) -> None:
    """Move the folder's checkpoint (in the batch's transaction); the history cut-off is kept."""
    stmt = dialect_insert(conn, t.checkpoint)
    stmt = stmt.on_conflict_do_update(index_elements=["mailbox", "folder"], set_={
        name: excluded(stmt, name) for name in ("uidvalidity", "last_uid", "synced_at")})
    conn.execute(stmt, {"mailbox": mailbox, "folder": folder, "uidvalidity": uidvalidity, "last_uid": last_uid,
                        "synced_at": now})


def set_folder_state(conn: Connection, mailbox: str, folder: str, error: str | None, now: datetime,
                     owner: str = "") -> None:
    """Record how a folder's last sync went, for `inboxd status`.

    A failure keeps the time the folder started failing; a success clears it.
    """
    stmt = dialect_insert(conn, t.folderstate)
    fs = t.folderstate.c
    if error is None:
        row = dict(ok=True, error="", last_ok_at=now, failing_since=None)
        update = {"ok": True, "error": "", "last_ok_at": excluded(stmt, "last_ok_at"), "failing_since": None,
                  "owner": excluded(stmt, "owner")}
    else:
        row = dict(ok=False, error=error[:2000], last_ok_at=None, failing_since=now)
        update = {"ok": False, "error": excluded(stmt, "error"),
                  "failing_since": func.coalesce(fs.failing_since, excluded(stmt, "failing_since")),
                  "owner": excluded(stmt, "owner")}
    conn.execute(stmt.on_conflict_do_update(index_elements=["mailbox", "folder"], set_=update)
                 .values(mailbox=mailbox, folder=folder, owner=owner, **row))


def record_server_uid(conn: Connection, mailbox: str, folder: str, server_uid: int) -> None:
    """Record the newest UID the server has in the folder (UIDNEXT - 1), so the lag can be read from the store."""
    c = t.checkpoint.c
    conn.execute(t.checkpoint.update().where(c.mailbox == mailbox, c.folder == folder).values(server_uid=server_uid))
