"""The rows of commands by mail and of command folders: what waits to run, what ran, what was acted on.

Commands by mail are recorded while their mail is filed (the filing
transaction) and run right after, through the API's handlers, each in its
own transaction (inboxd.desk.agentcommands).  So that a daemon killed in
between runs each of them exactly once, three kinds of rows are kept, all
in existing tables:

* a `duty` row ("mail-commands", key) written with the filing: the mail's
  commands wait to run.  Its event "mail-commands" on the ticket holds them;
* each command's own history event, written by the workflow in the
  command's transaction, carries an `origin` unique to that command, so a
  restart sees which of them ran already (`ran`);
* a `duty` row ("mail-commands-done", key) when all of them were run and
  the agent was told of any refusal: the mail is finished.

A folder command's claim is a `duty` row ("folder-command", key) written
in the transaction of its change (`claim_folder_action`), so it acts once
however often the message is seen in the folder before it is moved back.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, and_, exists, select

from inboxd.store.duties import claim
from inboxd.store.sql import t

PENDING, DONE, FOLDER = "mail-commands", "mail-commands-done", "folder-command"


def pending_key(mailbox: str, folder: str, message_key: str) -> str:
    """The key of one mail's commands: where it was filed from, and its message key."""
    return json.dumps([mailbox, folder, message_key], ensure_ascii=False)


def record_pending(conn: Connection, ticket_pk: int, key: str, now: datetime) -> bool:
    """Mark the mail's commands as waiting (in the filing transaction); False if they were already."""
    return claim(conn, PENDING, key, ticket_pk, now)


def pending(conn: Connection) -> list[tuple[int, str]]:
    """(ticket id, key) of every mail whose commands have not all run, oldest first."""
    # Core's alias, the same SQL as the ORM's `aliased`: sqlalchemy.orm is 5.5 MiB the daemon need not load.
    d, done = t.duty, t.duty.alias()
    finished = exists().where(and_(done.c.duty == DONE, done.c.key == d.c.key))
    rows = conn.execute(select(d.c.ticket_id, d.c.key).where(d.c.duty == PENDING, ~finished).order_by(d.c.id))
    return [(r[0], r[1]) for r in rows]


def recorded(conn: Connection, ticket_pk: int, key: str) -> dict | None:
    """The "mail-commands" event's detail for `key` on the ticket (or on the ticket it was merged into)."""
    e = t.event
    rows = conn.execute(select(e.c.detail).where(e.c.action == PENDING, e.c.ticket_id == ticket_pk)
                        .order_by(e.c.id.desc())).scalars()
    for text in rows:
        detail = json.loads(text or "{}")
        if detail.get("key") == key:
            return detail
    return None


def ran(conn: Connection, ticket_pk: int, origin: str, since: datetime) -> bool:
    """Whether an event of the ticket since `since` was written by a caller from `origin` (the command ran)."""
    e = t.event
    rows = conn.execute(select(e.c.detail).where(e.c.ticket_id == ticket_pk, e.c.at >= since)).scalars()
    return any(json.loads(text or "{}").get("origin") == origin for text in rows)


def finish(conn: Connection, ticket_pk: int, key: str, now: datetime) -> bool:
    """Mark the mail's commands done; False when another runner did so first (then it told the agent)."""
    return claim(conn, DONE, key, ticket_pk, now)


def folder_key(mailbox: str, folder: str, uidvalidity: int, uid: int) -> str:
    """The key of one message seen in a command folder: the folder, its UIDVALIDITY and the UID there."""
    return json.dumps([mailbox, folder, uidvalidity, uid], ensure_ascii=False)


def claim_folder_action(conn: Connection, ticket_pk: int | None, key: str, now: datetime) -> bool:
    """Claim acting on a message in a command folder; False when it was acted on already."""
    return claim(conn, FOLDER, key, ticket_pk, now)


def folder_action_done(conn: Connection, key: str) -> bool:
    """Whether the message in the command folder was acted on already (a restart before moving it back)."""
    d = t.duty
    return conn.execute(select(d.c.id).where(d.c.duty == FOLDER, d.c.key == key)).first() is not None


def sighting_of(conn: Connection, mailbox: str, message_id: str) -> tuple[int, str, str] | None:
    """(ticket id, ticket ref, folder) of the stored message with this Message-ID seen in `mailbox`: the
    ticket a message in a command folder belongs to, and the folder it was filed from."""
    m, s, tk = t.message, t.sighting, t.ticket
    row = conn.execute(select(tk.c.id, tk.c.ref, s.c.folder)
                       .select_from(m.join(s, s.c.message_pk == m.c.id).join(tk, tk.c.id == m.c.ticket_id))
                       .where(m.c.message_key == message_id, s.c.mailbox == mailbox)
                       .order_by(s.c.id).limit(1)).first()
    return (row[0], row[1], row[2]) if row is not None else None


__all__ = ["claim_folder_action", "finish", "folder_action_done", "folder_key", "pending", "pending_key", "ran",
           "record_pending", "recorded", "sighting_of"]
