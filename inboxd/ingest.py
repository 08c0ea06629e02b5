"""Step 3, the whole of it: file a batch of fetched mail onto tickets.

One batch is one folder's run of UIDs.  It is filed in one write transaction
that also moves the folder's checkpoint past the batch, so a crash at any
point either keeps the batch and its checkpoint or neither: nothing is lost
and nothing is filed twice.  Inside the transaction each message has its own
savepoint; a message that fails any step is rolled back alone and
quarantined with its raw bytes and the reason, and the batch goes on.

The steps for one message are the ordered list `PIPELINE` below; each is a
small function over a `Delivery`, in the manner of Mailman's pipelines.

This is the hot path of ingest, so it speaks SQL to SQLite's own cursor,
inside the SQLAlchemy transaction the caller opened: building a SQLAlchemy
statement per row cost four times the work of the whole rest of filing.
The tables and columns are the ones declared in `inboxd.models`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from inboxd.config import Settings
from inboxd.message import InboundMessage, MalformedMessage, extract_message_id
from inboxd.worker import parse_one
from inboxd.threading import ThreadMatch, TicketTag, find_ticket

log = logging.getLogger("inboxd.ingest")


def db_time(dt: datetime | None) -> str | None:
    """A timestamp as SQLAlchemy stores UTCDateTime in SQLite (naive UTC text)."""
    if dt is None:
        return None
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class Done(Exception):
    """Control exception: the message needs no further steps."""


class Quarantined(Exception):
    """Control exception: file the message in quarantine with this reason."""


@dataclass(frozen=True)
class Fetched:
    """One message as the IMAP edge hands it over."""

    uid: int
    raw: bytes


@dataclass(frozen=True)
class Batch:
    mailbox: str
    folder: str
    uidvalidity: int
    last_uid: int                 # the checkpoint after this batch
    messages: Sequence[Fetched]


@dataclass
class BatchResult:
    filed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    new_tickets: int = 0


@dataclass
class Delivery:
    """The working state of one message on its way through the pipeline."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    raw: bytes
    now: datetime
    parsed: InboundMessage | MalformedMessage | None = None
    sha256: str = ""
    msg: InboundMessage | None = None
    key: str = ""
    match: ThreadMatch | None = None
    ticket_pk: int | None = None
    ticket_ref: str = ""
    message_pk: int | None = None


class Filer:
    """Files batches into the store; one per process, shared by all pollers."""

    def __init__(self, settings: Settings, parse: Callable[[bytes], InboundMessage] | None = None):
        self.settings = settings
        self.tags = TicketTag(settings.tickets.id_format, settings.tickets.tag_format)
        self.max_attachment = settings.store.max_attachment_bytes
        # Parsing inline (no worker) saves attachments the same way the worker does.
        self.parse = parse or (lambda raw: parse_one(raw, self.max_attachment, settings.store.data_dir))

    # -- the batch transaction -------------------------------------------------

    def file_batch(
        self,
        conn: Connection,
        batch: Batch,
        now: datetime,
        parsed: Sequence[InboundMessage | MalformedMessage] | None = None,
    ) -> BatchResult:
        """File `batch` on `conn` (inside the caller's write transaction)."""
        result = BatchResult()
        cur = conn.connection.driver_connection.cursor()
        try:
            for i, fetched in enumerate(batch.messages):
                d = Delivery(batch.mailbox, batch.folder, batch.uidvalidity, fetched.uid, fetched.raw, now)
                if parsed is not None:
                    d.parsed = parsed[i]
                self.deliver(cur, d, result)
            self.save_checkpoint(cur, batch, now)
        finally:
            cur.close()
        return result

    def deliver(self, cur: sqlite3.Cursor, d: Delivery, result: BatchResult) -> None:
        cur.execute("SAVEPOINT deliver")
        try:
            for step in PIPELINE:
                step(self, cur, d)
        except Done:
            cur.execute("RELEASE deliver")
            result.duplicates += 1
            return
        except Exception as exc:  # One bad message never stops the batch.
            cur.execute("ROLLBACK TO deliver")
            cur.execute("RELEASE deliver")
            reason = str(exc) if isinstance(exc, Quarantined | MalformedMessage) else f"{type(exc).__name__}: {exc}"
            self.quarantine(cur, d, reason)
            result.quarantined += 1
            return
        cur.execute("RELEASE deliver")
        result.filed += 1
        if d.match is not None and d.match.is_new:
            result.new_tickets += 1
        log.info(
            "<%s> filed on %s (%s) from %s/%s uid %d",
            d.msg.message_id if d.msg else "", d.ticket_ref, d.match.reason if d.match else "",
            d.mailbox, d.folder, d.uid,
        )

    def quarantine(self, cur: sqlite3.Cursor, d: Delivery, reason: str) -> None:
        message_id = d.msg.message_id if d.msg else extract_message_id(d.raw)
        log.warning("<%s> quarantined from %s/%s uid %d: %s", message_id or "", d.mailbox, d.folder, d.uid, reason)
        keep_raw(self, cur, d)
        cur.execute(
            "INSERT OR IGNORE INTO quarantine (mailbox, folder, uidvalidity, uid, message_id, reason, raw_sha256, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (d.mailbox, d.folder, d.uidvalidity, d.uid, message_id, reason[:2000], d.sha256, db_time(d.now)),
        )

    def save_checkpoint(self, cur: sqlite3.Cursor, batch: Batch, now: datetime) -> None:
        cur.execute(
            "INSERT INTO checkpoint (mailbox, folder, uidvalidity, last_uid, synced_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (mailbox, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity,"
            " last_uid = excluded.last_uid, synced_at = excluded.synced_at",
            (batch.mailbox, batch.folder, batch.uidvalidity, batch.last_uid, db_time(now)),
        )

    def allocate_ref(self, cur: sqlite3.Cursor) -> tuple[int, str]:
        # The write lock is held (BEGIN IMMEDIATE), so max()+1 cannot race.
        top = cur.execute("SELECT max(id) FROM ticket").fetchone()[0] or 0
        pk = top + 1
        return pk, self.tags.ticket_id(self.settings.tickets.first_seq + pk - 1)


class StoreLookup:
    """The store as threading sees it (implements threading.ThreadLookup)."""

    def __init__(self, cur: sqlite3.Cursor):
        self.cur = cur

    def tickets_by_message_ids(self, ids: list[str]) -> dict[str, int]:
        marks = ", ".join("?" * len(ids))
        rows = self.cur.execute(f"SELECT message_id, ticket_id FROM message WHERE message_id IN ({marks})", ids)
        return dict(rows.fetchall())

    def ticket_by_ref(self, ticket_id: str) -> int | None:
        row = self.cur.execute("SELECT id FROM ticket WHERE ref = ?", (ticket_id,)).fetchone()
        return row[0] if row else None

    def ticket_referencing(self, message_id: str) -> int | None:
        row = self.cur.execute(
            "SELECT m.ticket_id FROM messageref r JOIN message m ON m.id = r.message_pk WHERE r.ref = ? LIMIT 1",
            (message_id,),
        ).fetchone()
        return row[0] if row else None


# -- the pipeline: each step one job, in the order a message takes them --------


def keep_raw(filer: Filer, cur: sqlite3.Cursor, d: Delivery) -> None:
    """Keep the exact bytes first, so no later bug can lose the mail."""
    if not d.sha256:
        d.sha256 = hashlib.sha256(d.raw).hexdigest()
    cur.execute("INSERT OR IGNORE INTO rawmessage (sha256, size, data) VALUES (?, ?, ?)",
                (d.sha256, len(d.raw), d.raw))


def parse(filer: Filer, cur: sqlite3.Cursor, d: Delivery) -> None:
    """Turn the bytes into an InboundMessage (possibly parsed ahead, elsewhere)."""
    parsed = d.parsed if d.parsed is not None else _try_parse(filer, d.raw)
    if isinstance(parsed, MalformedMessage):
        raise parsed
    d.msg = parsed
    d.key = parsed.message_id or f"sha256:{d.sha256}"


def _try_parse(filer: Filer, raw: bytes) -> InboundMessage | MalformedMessage:
    return filer.parse(raw)


def skip_duplicate(filer: Filer, cur: sqlite3.Cursor, d: Delivery) -> None:
    """A mail we already hold (another mailbox, a resync) only adds a sighting."""
    row = cur.execute("SELECT id FROM message WHERE message_key = ?", (d.key,)).fetchone()
    if row is None:
        return
    d.message_pk = row[0]
    record_sighting(filer, cur, d)
    raise Done


def thread(filer: Filer, cur: sqlite3.Cursor, d: Delivery) -> None:
    """Find the ticket this message continues, or decide to open one."""
    d.match = find_ticket(d.msg, StoreLookup(cur), filer.tags)


def open_or_update_ticket(filer: Filer, cur: sqlite3.Cursor, d: Delivery) -> None:
    msg = d.msg
    sender = msg.from_ or (msg.reply_to[0] if msg.reply_to else None)
    if sender is None:
        raise Quarantined("no sender address")
    now = db_time(d.now)
    if d.match.is_new:
        d.ticket_pk, d.ticket_ref = filer.allocate_ref(cur)
        cur.execute(
            "INSERT INTO ticket (id, ref, subject, status, priority, mailbox, requester, requester_name, tags,"
            " message_count, created_at, updated_at, version)"
            " VALUES (?, ?, ?, 'new', 'normal', ?, ?, ?, '[]', 1, ?, ?, 1)",
            (d.ticket_pk, d.ticket_ref, filer.tags.display_subject(msg.subject)[:998], d.mailbox,
             sender.email, sender.name, now, now),
        )
        cur.execute("INSERT OR IGNORE INTO customer (email, name, created_at) VALUES (?, ?, ?)",
                    (sender.email, sender.name, now))
        _event(cur, d, "created", {"reason": d.match.reason, "mailbox": d.mailbox, "from": sender.email})
    else:
        d.ticket_pk = d.match.ticket_pk
        d.ticket_ref = cur.execute("SELECT ref FROM ticket WHERE id = ?", (d.ticket_pk,)).fetchone()[0]
        cur.execute(
            "UPDATE ticket SET message_count = message_count + 1, updated_at = ?, version = version + 1"
            " WHERE id = ?",
            (now, d.ticket_pk),
        )
        _event(cur, d, "message", {"reason": d.match.reason, "mailbox": d.mailbox, "from": sender.email})


def store_message(filer: Filer, cur: sqlite3.Cursor, d: Delivery) -> None:
    msg = d.msg
    sender = msg.from_
    cur.execute(
        "INSERT INTO message (message_key, message_id, ticket_id, direction, kind, from_addr, from_name, to_addrs,"
        " cc_addrs, reply_to, date, subject, text, reply_text, html_only, in_reply_to, \"references\", auto,"
        " raw_sha256, size, created_at)"
        " VALUES (?, ?, ?, 'in', 'customer', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (d.key, msg.message_id, d.ticket_pk, sender.email if sender else "", sender.name if sender else "",
         _addresses(msg.to), _addresses(msg.cc), _addresses(msg.reply_to), db_time(msg.date), msg.subject,
         msg.text, msg.text, msg.html_only, json.dumps(list(msg.in_reply_to)), json.dumps(list(msg.references)),
         json.dumps(_auto_facts(msg)), d.sha256, msg.size, db_time(d.now)),
    )
    d.message_pk = cur.lastrowid
    parents = {*msg.in_reply_to, *msg.references} - {msg.message_id}
    if parents:
        cur.executemany("INSERT OR IGNORE INTO messageref (message_pk, ref) VALUES (?, ?)",
                        [(d.message_pk, ref) for ref in parents])
    for att in msg.attachments:
        # The parser saved the content already (see inboxd.worker); only
        # attachments over the size limit are kept as metadata alone.
        cur.execute(
            "INSERT INTO attachment (message_pk, filename, content_type, size, sha256, stored, inline)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (d.message_pk, att.filename, att.content_type, att.size, att.sha256,
             att.size <= filer.max_attachment, att.inline),
        )


def record_sighting(filer: Filer, cur: sqlite3.Cursor, d: Delivery) -> None:
    cur.execute(
        "INSERT OR IGNORE INTO sighting (message_pk, mailbox, folder, uidvalidity, uid, seen_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (d.message_pk, d.mailbox, d.folder, d.uidvalidity, d.uid, db_time(d.now)),
    )


PIPELINE: tuple[Callable[[Filer, sqlite3.Cursor, Delivery], None], ...] = (
    keep_raw,
    parse,
    skip_duplicate,
    thread,
    open_or_update_ticket,
    store_message,
    record_sighting,
)


def _event(cur: sqlite3.Cursor, d: Delivery, action: str, detail: dict) -> None:
    cur.execute("INSERT INTO event (ticket_id, at, actor, action, detail) VALUES (?, ?, 'inboxd', ?, ?)",
                (d.ticket_pk, db_time(d.now), action, json.dumps(detail, ensure_ascii=False)))


def _addresses(addrs) -> str:
    return json.dumps([{"name": a.name, "email": a.email} for a in addrs], ensure_ascii=False)


def _auto_facts(msg: InboundMessage) -> dict:
    a = msg.auto
    facts = {
        "auto_submitted": a.auto_submitted, "precedence": a.precedence, "list_id": a.list_id,
        "list_unsubscribe": a.list_unsubscribe, "auto_response_suppress": a.auto_response_suppress,
        "return_path": a.return_path, "delivery_status": a.delivery_status, "loop": a.loop,
    }
    return {k: v for k, v in facts.items() if v not in (None, False)}


def read_checkpoint(conn: Connection, mailbox: str, folder: str) -> tuple[int, int] | None:
    """(uidvalidity, last_uid) of a folder, or None before its first sync."""
    row = conn.exec_driver_sql(
        "SELECT uidvalidity, last_uid FROM checkpoint WHERE mailbox = ? AND folder = ?", (mailbox, folder)
    ).first()
    return (row[0], row[1]) if row else None
