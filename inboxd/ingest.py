"""Step 3, the whole of it: file a batch of fetched mail onto tickets.

One batch is one folder's run of UIDs.  It is filed in one write transaction
that also moves the folder's checkpoint past the batch, so a crash at any
point either keeps the batch and its checkpoint or neither: nothing is lost
and nothing is filed twice.  Inside the transaction each message has its own
savepoint; a message that fails any step is rolled back alone and
quarantined with its raw bytes and the reason, and the batch goes on.

The steps for one message are the ordered list `PIPELINE` below; each is a
small function over a `Delivery`, in the manner of Mailman's pipelines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from inboxd.config import Settings
from inboxd.message import InboundMessage, MalformedMessage, extract_message_id, parse_message
from inboxd.models import (
    Attachment,
    Checkpoint,
    Customer,
    Event,
    Message,
    MessageRef,
    Quarantine,
    RawMessage,
    Sighting,
    Ticket,
)
from inboxd.threading import ThreadMatch, TicketTag, find_ticket

log = logging.getLogger("inboxd.ingest")

T_ticket = Ticket.__table__
T_message = Message.__table__
T_ref = MessageRef.__table__
T_sighting = Sighting.__table__
T_checkpoint = Checkpoint.__table__
T_raw = RawMessage.__table__
T_customer = Customer.__table__
T_attachment = Attachment.__table__
T_event = Event.__table__
T_quarantine = Quarantine.__table__


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
    notes: list[str] = field(default_factory=list)


class Filer:
    """Files batches into the store; one per process, shared by all pollers."""

    def __init__(self, settings: Settings, parse: Callable[[bytes], InboundMessage] | None = None):
        self.settings = settings
        self.tags = TicketTag(settings.tickets.id_format, settings.tickets.tag_format)
        self.max_attachment = settings.store.max_attachment_bytes
        self.attachment_dir = settings.store.data_dir / "attachments"
        self.parse = parse or (lambda raw: parse_message(raw, max_attachment_bytes=self.max_attachment))

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
        for i, fetched in enumerate(batch.messages):
            d = Delivery(batch.mailbox, batch.folder, batch.uidvalidity, fetched.uid, fetched.raw, now)
            if parsed is not None:
                d.parsed = parsed[i]
            self.deliver(conn, d, result)
        self.save_checkpoint(conn, batch, now)
        return result

    def deliver(self, conn: Connection, d: Delivery, result: BatchResult) -> None:
        savepoint = conn.begin_nested()
        try:
            for step in PIPELINE:
                step(self, conn, d)
        except Done:
            savepoint.commit()
            result.duplicates += 1
            return
        except Exception as exc:  # One bad message never stops the batch.
            savepoint.rollback()
            reason = str(exc) if isinstance(exc, Quarantined | MalformedMessage) else f"{type(exc).__name__}: {exc}"
            self.quarantine(conn, d, reason)
            result.quarantined += 1
            return
        savepoint.commit()
        result.filed += 1
        if d.match is not None and d.match.is_new:
            result.new_tickets += 1
        log.info(
            "<%s> filed on %s (%s) from %s/%s uid %d",
            d.msg.message_id if d.msg else "", d.ticket_ref, d.match.reason if d.match else "",
            d.mailbox, d.folder, d.uid,
        )

    def quarantine(self, conn: Connection, d: Delivery, reason: str) -> None:
        message_id = d.msg.message_id if d.msg else extract_message_id(d.raw)
        log.warning("<%s> quarantined from %s/%s uid %d: %s", message_id or "", d.mailbox, d.folder, d.uid, reason)
        with conn.begin_nested():
            keep_raw(self, conn, d)
            conn.execute(
                sqlite_insert(T_quarantine)
                .values(
                    mailbox=d.mailbox, folder=d.folder, uidvalidity=d.uidvalidity, uid=d.uid,
                    message_id=message_id, reason=reason[:2000], raw_sha256=d.sha256, at=d.now,
                )
                .on_conflict_do_nothing()
            )

    def save_checkpoint(self, conn: Connection, batch: Batch, now: datetime) -> None:
        stmt = sqlite_insert(T_checkpoint).values(
            mailbox=batch.mailbox, folder=batch.folder, uidvalidity=batch.uidvalidity,
            last_uid=batch.last_uid, synced_at=now,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["mailbox", "folder"],
                set_={"uidvalidity": stmt.excluded.uidvalidity, "last_uid": stmt.excluded.last_uid,
                      "synced_at": stmt.excluded.synced_at},
            )
        )

    # -- what threading needs (ThreadLookup) -----------------------------------

    def lookup(self, conn: Connection) -> _StoreLookup:
        return _StoreLookup(conn)

    def allocate_ref(self, conn: Connection) -> tuple[int, str]:
        # The write lock is held (BEGIN IMMEDIATE), so max()+1 cannot race.
        top = conn.execute(select(func.max(T_ticket.c.id))).scalar() or 0
        pk = top + 1
        return pk, self.tags.ticket_id(self.settings.tickets.first_seq + pk - 1)

    def store_attachment(self, sha256: str, content: bytes) -> None:
        # Content-addressed and written atomically: a crash leaves at worst an
        # unreferenced file, never a half-written one under its final name.
        path = self.attachment_dir / sha256[:2] / sha256
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)


class _StoreLookup:
    def __init__(self, conn: Connection):
        self.conn = conn

    def tickets_by_message_ids(self, ids: list[str]) -> dict[str, int]:
        rows = self.conn.execute(
            select(T_message.c.message_id, T_message.c.ticket_id).where(T_message.c.message_id.in_(ids))
        )
        return {mid: pk for mid, pk in rows}

    def ticket_by_ref(self, ticket_id: str) -> int | None:
        return self.conn.execute(select(T_ticket.c.id).where(T_ticket.c.ref == ticket_id)).scalar()

    def ticket_referencing(self, message_id: str) -> int | None:
        return self.conn.execute(
            select(T_message.c.ticket_id)
            .join(T_ref, T_ref.c.message_pk == T_message.c.id)
            .where(T_ref.c.ref == message_id)
            .limit(1)
        ).scalar()


# -- the pipeline: each step one job, in the order a message takes them --------


def keep_raw(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Keep the exact bytes first, so no later bug can lose the mail."""
    if not d.sha256:
        d.sha256 = hashlib.sha256(d.raw).hexdigest()
    conn.execute(
        sqlite_insert(T_raw).values(sha256=d.sha256, size=len(d.raw), data=d.raw).on_conflict_do_nothing()
    )


def parse(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Turn the bytes into an InboundMessage (possibly parsed ahead, elsewhere)."""
    parsed = d.parsed if d.parsed is not None else _try_parse(filer, d.raw)
    if isinstance(parsed, MalformedMessage):
        raise parsed
    d.msg = parsed
    d.key = parsed.message_id or f"sha256:{d.sha256}"


def _try_parse(filer: Filer, raw: bytes) -> InboundMessage | MalformedMessage:
    try:
        return filer.parse(raw)
    except MalformedMessage as exc:
        return exc


def skip_duplicate(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A mail we already hold (another mailbox, a resync) only adds a sighting."""
    pk = conn.execute(select(T_message.c.id).where(T_message.c.message_key == d.key)).scalar()
    if pk is None:
        return
    d.message_pk = pk
    record_sighting(filer, conn, d)
    raise Done


def thread(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Find the ticket this message continues, or decide to open one."""
    d.match = find_ticket(d.msg, filer.lookup(conn), filer.tags)


def open_or_update_ticket(filer: Filer, conn: Connection, d: Delivery) -> None:
    msg = d.msg
    sender = msg.from_ or (msg.reply_to[0] if msg.reply_to else None)
    if sender is None:
        raise Quarantined("no sender address")
    if d.match.is_new:
        d.ticket_pk, d.ticket_ref = filer.allocate_ref(conn)
        conn.execute(
            insert(T_ticket).values(
                id=d.ticket_pk, ref=d.ticket_ref, subject=filer.tags.display_subject(msg.subject)[:998],
                status="new", priority="normal", mailbox=d.mailbox, requester=sender.email,
                requester_name=sender.name, tags="[]", message_count=1, created_at=d.now, updated_at=d.now,
            )
        )
        conn.execute(
            sqlite_insert(T_customer)
            .values(email=sender.email, name=sender.name, created_at=d.now)
            .on_conflict_do_nothing()
        )
        _event(conn, d, "created", {"reason": d.match.reason, "mailbox": d.mailbox, "from": sender.email})
    else:
        d.ticket_pk = d.match.ticket_pk
        d.ticket_ref = conn.execute(select(T_ticket.c.ref).where(T_ticket.c.id == d.ticket_pk)).scalar_one()
        conn.execute(
            update(T_ticket)
            .where(T_ticket.c.id == d.ticket_pk)
            .values(message_count=T_ticket.c.message_count + 1, updated_at=d.now, version=T_ticket.c.version + 1)
        )
        _event(conn, d, "message", {"reason": d.match.reason, "mailbox": d.mailbox, "from": sender.email})


def store_message(filer: Filer, conn: Connection, d: Delivery) -> None:
    msg = d.msg
    sender = msg.from_
    d.message_pk = conn.execute(
        insert(T_message).values(
            message_key=d.key, message_id=msg.message_id, ticket_id=d.ticket_pk, direction="in", kind="customer",
            from_addr=sender.email if sender else "", from_name=sender.name if sender else "",
            to_addrs=_addresses(msg.to), cc_addrs=_addresses(msg.cc), reply_to=_addresses(msg.reply_to),
            date=msg.date, subject=msg.subject, text=msg.text, reply_text=msg.text, html_only=msg.html_only,
            in_reply_to=json.dumps(list(msg.in_reply_to)), references=json.dumps(list(msg.references)),
            auto=json.dumps(_auto_facts(msg)), raw_sha256=d.sha256, size=msg.size, created_at=d.now,
        )
    ).inserted_primary_key[0]
    parents = {*msg.in_reply_to, *msg.references} - {msg.message_id}
    if parents:
        conn.execute(insert(T_ref), [{"message_pk": d.message_pk, "ref": ref} for ref in parents])
    for att in msg.attachments:
        if att.content is not None:
            filer.store_attachment(att.sha256, att.content)
        conn.execute(
            insert(T_attachment).values(
                message_pk=d.message_pk, filename=att.filename, content_type=att.content_type, size=att.size,
                sha256=att.sha256, stored=att.content is not None, inline=att.inline,
            )
        )


def record_sighting(filer: Filer, conn: Connection, d: Delivery) -> None:
    conn.execute(
        sqlite_insert(T_sighting)
        .values(message_pk=d.message_pk, mailbox=d.mailbox, folder=d.folder,
                uidvalidity=d.uidvalidity, uid=d.uid, seen_at=d.now)
        .on_conflict_do_nothing()
    )


PIPELINE: tuple[Callable[[Filer, Connection, Delivery], None], ...] = (
    keep_raw,
    parse,
    skip_duplicate,
    thread,
    open_or_update_ticket,
    store_message,
    record_sighting,
)


def _event(conn: Connection, d: Delivery, action: str, detail: dict) -> None:
    conn.execute(
        insert(T_event).values(ticket_id=d.ticket_pk, at=d.now, actor="inboxd", action=action,
                               detail=json.dumps(detail, ensure_ascii=False))
    )


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
    row = conn.execute(
        select(T_checkpoint.c.uidvalidity, T_checkpoint.c.last_uid)
        .where(T_checkpoint.c.mailbox == mailbox, T_checkpoint.c.folder == folder)
    ).first()
    return (row[0], row[1]) if row else None


def attachment_path(data_dir: Path, sha256: str) -> Path:
    return data_dir / "attachments" / sha256[:2] / sha256
