"""What `inboxd status` and `inboxd audit` read: folder health, checkpoints, outbox and quarantine counts,
and the UIDs the store accounts for in a folder.

Every function reads; nothing writes.  Leases are read through
`inboxd.store.leases.holders`, one folder's checkpoint through
`inboxd.store.folders.read_checkpoint`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, Row, func, select

from inboxd.store.sql import t


def checkpoints(conn: Connection) -> dict[tuple[str, str], Row]:
    """Every folder's checkpoint by (mailbox, folder): uidvalidity, last_uid, synced_at, history_before."""
    c = t.checkpoint.c
    rows = conn.execute(select(c.mailbox, c.folder, c.uidvalidity, c.last_uid, c.synced_at, c.history_before,
                               c.server_uid))
    return {(r.mailbox, r.folder): r for r in rows}


def folder_states(conn: Connection) -> dict[tuple[str, str], Row]:
    """Every folder's state as its poller last saw it, by (mailbox, folder):
    ok, error, last_ok_at, failing_since, owner."""
    c = t.folderstate.c
    rows = conn.execute(select(c.mailbox, c.folder, c.ok, c.error, c.last_ok_at, c.failing_since, c.owner))
    return {(r.mailbox, r.folder): r for r in rows}


def outbox_counts(conn: Connection) -> dict[str, int]:
    """The number of outbox rows in each status but sent."""
    c = t.outbox.c
    return dict(conn.execute(select(c.status, func.count()).where(c.status != "sent").group_by(c.status)).all())


def oldest_queued(conn: Connection) -> datetime | None:
    """When the oldest mail still queued was queued."""
    c = t.outbox.c
    return conn.execute(select(func.min(c.created_at)).where(c.status == "queued")).scalar()


def quarantine_count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(t.quarantine)).scalar_one()


def _uids(conn: Connection, table, mailbox: str, folder: str, uidvalidity: int, *extra):
    c = table.c
    return conn.execute(select(c.uid, *extra).where(c.mailbox == mailbox, c.folder == folder,
                                                    c.uidvalidity == uidvalidity))


def sighted_uids(conn: Connection, mailbox: str, folder: str, uidvalidity: int) -> set[int]:
    """The UIDs of the folder (under `uidvalidity`) whose message is stored."""
    return set(_uids(conn, t.sighting, mailbox, folder, uidvalidity).scalars())


def quarantined_uids(conn: Connection, mailbox: str, folder: str, uidvalidity: int) -> set[int]:
    """The UIDs of the folder (under `uidvalidity`) that are quarantined."""
    return set(_uids(conn, t.quarantine, mailbox, folder, uidvalidity).scalars())


def skipped_uids(conn: Connection, mailbox: str, folder: str, uidvalidity: int) -> dict[int, str]:
    """The UIDs of the folder (under `uidvalidity`) deliberately not filed, with the reason."""
    rows: Sequence[Row] = _uids(conn, t.skipped, mailbox, folder, uidvalidity, t.skipped.c.reason).all()
    return {uid: reason for uid, reason in rows}
