"""The copies of sent mail that the pollers append to each mailbox's Sent folder.

An outbox row the sender has sent, whose mailbox keeps Sent copies, has
copy_status 'pending'.  A poller claims a few (pending, or claimed longer
than the outbox lease ago by a daemon that died) by a compare-and-swap
UPDATE ... RETURNING, appends them, and marks each 'done'.  Two daemons on
one store get different rows: on PostgreSQL the outer WHERE repeats the
claimable test, which PostgreSQL re-checks on the newest row version after
waiting for a concurrent claim, and the inner SELECT skips rows another
claim has locked; on SQLite the write lock serialises the claims.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, or_, select, update

from inboxd.store.sql import t


def _claimable(mailbox: str, expired_before: datetime):
    o = t.outbox.c
    return (o.mailbox == mailbox) & (o.status == "sent") & or_(
        o.copy_status == "pending", (o.copy_status == "claimed") & (o.copy_claimed_at <= expired_before))


def pending_copies(conn: Connection, mailbox: str, expired_before: datetime, limit: int) -> list[tuple[int, bytes]]:
    """(outbox id, bytes) of the copies a claim would take now, oldest first; claims nothing."""
    o = t.outbox.c
    rows = conn.execute(select(o.id, o.data).where(_claimable(mailbox, expired_before)).order_by(o.id).limit(limit))
    return [(row[0], row[1]) for row in rows]


def claim_copies(conn: Connection, mailbox: str, now: datetime, expired_before: datetime,
                 limit: int) -> list[tuple[int, bytes]]:
    """Claim up to `limit` copies to append: (outbox id, bytes), in the order they were sent."""
    o = t.outbox.c
    ids = (select(o.id).where(_claimable(mailbox, expired_before)).order_by(o.id).limit(limit)
           .with_for_update(skip_locked=True))
    rows = conn.execute(update(t.outbox).where(o.id.in_(ids.scalar_subquery()), _claimable(mailbox, expired_before))
                        .values(copy_status="claimed", copy_claimed_at=now).returning(o.id, o.data)).all()
    # RETURNING gives no order; the Sent folder gets them in the order they were sent.
    return sorted((row[0], row[1]) for row in rows)


def copy_done(conn: Connection, outbox_id: int) -> None:
    """The copy is in the Sent folder."""
    conn.execute(update(t.outbox).where(t.outbox.c.id == outbox_id).values(copy_status="done"))
