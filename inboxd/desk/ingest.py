"""Step 3, the whole of it: file a batch of fetched mail onto tickets.

One batch is one folder's run of UIDs.  It is filed in one write transaction
that also moves the folder's checkpoint past the batch, so a crash at any
point either keeps the batch and its checkpoint or neither: nothing is lost
and nothing is filed twice.  Inside the transaction each message has its own
savepoint; a message that fails any step is rolled back alone and
quarantined with its raw bytes and the reason, and the batch goes on.

The steps for one message are the ordered list `PIPELINE` below; each is a
small function over a `Delivery`, in the manner of Mailman's pipelines.

A message's time is when the server received it (IMAP INTERNALDATE; the
Date header only when that is missing or absurd), not when inboxd got round
to it: tickets, SLA clocks and reports use it.  Mail that arrived before its
folder's cut-off is history (see `arrival`): it is filed with its real times
as closed (or open) tickets, or skipped, and never acknowledged, clocked,
notified or surveyed.

The steps decide; what they decide is written through the store layer
(`inboxd.store.filing`, `lookup`, `folders`, `counters`) on the SQLAlchemy
connection of the caller's write transaction, so filing runs on SQLite and
PostgreSQL alike.  Each message's savepoint is `filing.Savepoint`, SQLAlchemy's
`conn.begin_nested()` compiled once (see there why).
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection

from inboxd.config import Settings
from inboxd.desk import slaclock
from inboxd.desk.decide import Desk, Disposition, Done, Incoming, Quarantined, decide
from inboxd.desk.policies import load_policies
from inboxd.desk.sla import human
from inboxd.desk.workflow import load as workflow_ticket
from inboxd.desk.workflow import merge_tickets, notify_agent
from inboxd.mail.largemail import header_block, read_head
from inboxd.mail.message import InboundMessage, MalformedMessage, clean_text, content_hash, extract_message_id
from inboxd.outbound import outbox
from inboxd.outbound.compose import tagged_subject
from inboxd.outbound.loop import AUTO_REPLIED
from inboxd.outbound.templates import Templates
from inboxd.store import counters, filing
# FolderCheckpoint is part of the pollers' BatchSink interface (inboxd.sync.imap imports it from here).
from inboxd.store.folders import FolderCheckpoint, save_checkpoint  # noqa: F401
from inboxd.store.lookup import StoreLookup
from inboxd.sync.worker import parse_one

# Done and Quarantined are the pipeline's control exceptions (decide raises them too).
__all__ = ["Batch", "BatchResult", "Delivery", "Done", "Fetched", "Filer", "FolderCheckpoint", "PIPELINE",
           "Quarantined"]

log = logging.getLogger("inboxd.desk.ingest")


@dataclass(frozen=True)
class Fetched:
    """One message as the IMAP edge hands it over."""

    uid: int
    raw: bytes
    arrived: datetime | None = None   # IMAP INTERNALDATE, aware UTC
    # Mail over [store] max_message_bytes is not fetched into memory: its
    # bytes are in this file (data_dir/oversize/<sha256>.eml) and raw is b"".
    raw_path: Path | None = None


@dataclass(frozen=True)
class Batch:
    mailbox: str
    folder: str
    uidvalidity: int
    last_uid: int                 # the checkpoint after this batch
    messages: Sequence[Fetched]
    # Mail that arrived before this is history; None: nothing is.
    history_before: datetime | None = None


@dataclass
class BatchResult:
    filed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    new_tickets: int = 0
    history_tickets: int = 0      # of new_tickets, those made from history
    skipped: int = 0              # history not filed (history = "skip")
    acks: int = 0                 # acknowledgements queued

    def add(self, other: BatchResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Delivery:
    """The working state of one message on its way through the pipeline."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    raw: bytes
    now: datetime
    # When the server received it (see `arrival`), and whether that makes it history.
    arrived: datetime | None = None
    history_before: datetime | None = None
    at: datetime | None = None
    history: bool = False
    raw_path: Path | None = None      # see Fetched.raw_path
    parsed: InboundMessage | MalformedMessage | None = None
    sha256: str = ""
    msg: InboundMessage | None = None
    key: str = ""
    # What decide_disposition decided; the steps after it apply it.
    disposition: Disposition | None = None
    ticket_pk: int | None = None
    ticket_ref: str = ""
    message_pk: int | None = None
    sighted: bool = False         # a sighting row accounts for this UID
    acked: bool = False
    # The Message-ID a different, earlier mail holds already (see skip_duplicate).
    reused_id: str = ""


class Filer:
    """Files batches into the store; one per process, shared by all pollers."""

    def __init__(self, settings: Settings, parse: Callable[[bytes], InboundMessage] | None = None):
        self.settings = settings
        self.policies = load_policies(settings)
        self.desk = Desk.of(settings, self.policies)
        self.tags = self.desk.tags
        self.templates = Templates(settings.template_dirs)
        self.max_attachment = settings.store.max_attachment_bytes
        self.last_reason = ""     # why the last message quarantined was (see refile)
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
        for i, fetched in enumerate(batch.messages):
            d = Delivery(batch.mailbox, batch.folder, batch.uidvalidity, fetched.uid, fetched.raw, now,
                         arrived=fetched.arrived, history_before=batch.history_before,
                         raw_path=fetched.raw_path)
            if parsed is not None:
                d.parsed = parsed[i]
            self.deliver(conn, d, result)
        self.save_checkpoint(conn, batch, now)
        return result

    def deliver(self, conn: Connection, d: Delivery, result: BatchResult) -> None:
        savepoint = filing.Savepoint(conn)
        try:
            for step in PIPELINE:
                step(self, conn, d)
        except Done as done:
            if not d.sighted:
                # Deliberately not filed: say so, so `inboxd audit` accounts for the UID.
                record_skip(conn, d, str(done) or "not filed")
            savepoint.commit()
            if d.history and not d.sighted:
                result.skipped += 1
            else:
                result.duplicates += 1
            return
        except Exception as exc:  # One bad message never stops the batch.
            if filing.connection_lost(conn):
                # The store went away (PostgreSQL restarted, say): that is no
                # fault of this mail, and nothing more can be written.
                raise
            savepoint.rollback()
            self.quarantine(conn, d, _failure_reason(exc))
            result.quarantined += 1
            return
        savepoint.commit()
        result.filed += 1
        if d.disposition is not None and d.disposition.ticket.is_new:
            result.new_tickets += 1
            result.history_tickets += d.history
        result.acks += d.acked
        # One line per message is for debugging; progress is logged per batch.
        log.debug(
            "<%s> filed on %s (%s) from %s/%s uid %d",
            d.msg.message_id if d.msg else "", d.ticket_ref, d.disposition.ticket.reason if d.disposition else "",
            d.mailbox, d.folder, d.uid,
        )

    def quarantine(self, conn: Connection, d: Delivery, reason: str) -> None:
        """Keep the mail's raw bytes and a quarantine row saying why it was not filed.

        The reason and the Message-ID quote the mail, and may be what made
        it fail (text the database cannot bind, say).  So the row is written
        under its own savepoint, and if it cannot be written, a bare row with
        only the place, the raw bytes' hash and the kind of error takes its
        place: quarantining never fails for the reason that sent the mail here.
        """
        message_id = d.msg.message_id if d.msg else extract_message_id(d.raw if d.raw_path is None
                                                                        else read_head(d.raw_path))
        reason = clean_text(reason)[:2000]
        self.last_reason = reason
        # The parser's ids are clean already; the log line must be, whatever the id.
        shown = clean_text(message_id) if isinstance(message_id, str) else ""
        log.warning("<%s> quarantined from %s/%s uid %d: %s", shown, d.mailbox, d.folder, d.uid, reason)
        try:
            with conn.begin_nested():
                if d.raw_path is None:
                    keep_raw(self, conn, d)
                filing.insert_quarantine(
                    conn, mailbox=d.mailbox, folder=d.folder, uidvalidity=d.uidvalidity, uid=d.uid,
                    message_id=message_id, reason=reason, raw_sha256=d.sha256 or None,
                    raw_path=self.data_path(d.raw_path), now=d.now, arrived=d.arrived)
        except Exception as exc:
            log.error("<%s> %s/%s uid %d: the quarantine row failed too (%s); keeping the raw bytes alone",
                      shown, d.mailbox, d.folder, d.uid, clean_text(_failure_reason(exc)))
            with conn.begin_nested():
                quarantine_bare(conn, d.mailbox, d.folder, d.uidvalidity, d.uid, d.raw, d.arrived, d.now,
                                f"unreadable: {type(exc).__name__}", self.data_path(d.raw_path))

    def quarantine_alone(self, conn: Connection, batch: Batch, now: datetime, error: BaseException) -> BatchResult:
        """File a one-message batch that broke its whole transaction, even when split
        down to itself: only its raw bytes, a bare quarantine row and the checkpoint.

        This is the last resort of `StoreSink.file`; it runs none of the
        pipeline and reads nothing from the mail but its bytes.
        """
        [fetched] = batch.messages
        quarantine_bare(conn, batch.mailbox, batch.folder, batch.uidvalidity, fetched.uid, fetched.raw,
                        fetched.arrived, now, clean_text(f"unreadable: {_failure_reason(error)}")[:2000],
                        self.data_path(fetched.raw_path))
        self.save_checkpoint(conn, batch, now)
        return BatchResult(quarantined=1)

    def data_path(self, path: Path | None) -> str | None:
        """`path` as the quarantine row keeps it: relative to data_dir."""
        return None if path is None else os.path.relpath(path, self.settings.store.data_dir)

    def save_checkpoint(self, conn: Connection, batch: Batch, now: datetime) -> None:
        # The history cut-off is written once, by begin_folder, and kept.
        save_checkpoint(conn, batch.mailbox, batch.folder, batch.uidvalidity, batch.last_uid, now)

    def refile(self, conn: Connection, place: tuple[str, str, int, int], raw: bytes, arrived: datetime | None,
               history_before: datetime | None, now: datetime) -> tuple[BatchResult, str]:
        """Run one quarantined message through the pipeline again (Mailman's
        unshunt), on `conn` inside the caller's write transaction.

        Returns the result and, when it failed again, the new reason; the
        caller removes the quarantine row only on success.
        """
        mailbox, folder, uidvalidity, uid = place
        result = BatchResult()
        d = Delivery(mailbox, folder, uidvalidity, uid, raw, now, arrived=arrived, history_before=history_before)
        self.last_reason = ""
        self.deliver(conn, d, result)
        reason = self.last_reason if result.quarantined else ""
        return result, reason

    def allocate_ref(self, conn: Connection) -> tuple[int, str]:
        """A new ticket's number and ref, unique across daemons (see inboxd.store.counters)."""
        pk = counters.next_ticket_number(conn)
        return pk, self.tags.ticket_id(self.settings.tickets.first_seq + pk - 1)


# -- the pipeline: each step one job, in the order a message takes them --------

# An INTERNALDATE outside these bounds is a server's or an import tool's
# mistake; the Date header is the better guess then.
_EARLIEST = datetime(1980, 1, 1, tzinfo=UTC)
_CLOCK_SKEW = timedelta(days=1)


def arrival(filer: Filer, conn: Connection, d: Delivery) -> None:
    """When the server received the mail, and whether that makes it history."""
    at = d.arrived
    if at is None or not (_EARLIEST <= at <= d.now + _CLOCK_SKEW):
        at = _date_header(d.raw)
        if at is None or not (_EARLIEST <= at <= d.now + _CLOCK_SKEW):
            at = d.now
    # Never later than now: a clock ahead of ours must not make mail "future".
    d.at = min(at, d.now)
    d.history = d.history_before is not None and d.at < d.history_before


def refuse_oversize(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Mail over max_message_bytes was streamed to disk instead of fetched; it is quarantined."""
    if d.raw_path is not None:
        raise Quarantined(oversize_reason(d.raw_path.stat().st_size, filer.settings.store.max_message_bytes))


def oversize_reason(size: int, limit: int) -> str:
    return f"larger than max_message_bytes ({size} bytes, the limit is {limit})"


def skip_history(filer: Filer, conn: Connection, d: Delivery) -> None:
    """With history = "skip", history is accounted for and not filed."""
    if d.history and filer.settings.mailbox(d.mailbox).history == "skip":
        raise Done("history (history = \"skip\")")


def _date_header(raw: bytes) -> datetime | None:
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header_block(raw))
    try:
        value = email.utils.parsedate_to_datetime(str(head.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def record_skip(conn: Connection, d: Delivery, reason: str) -> None:
    filing.insert_skipped(conn, mailbox=d.mailbox, folder=d.folder, uidvalidity=d.uidvalidity, uid=d.uid,
                          message_id=d.msg.message_id if d.msg else None, reason=reason, now=d.now)


def keep_raw(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Keep the exact bytes first, so no later bug can lose the mail."""
    if not d.sha256:
        d.sha256 = hashlib.sha256(d.raw).hexdigest()
    filing.insert_raw(conn, d.sha256, d.raw)


def parse(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Turn the bytes into an InboundMessage (possibly parsed ahead, elsewhere)."""
    parsed = d.parsed if d.parsed is not None else filer.parse(d.raw)
    if isinstance(parsed, MalformedMessage):
        raise parsed
    d.msg = parsed
    d.key = parsed.message_id or f"sha256:{d.sha256}"


def skip_duplicate(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A mail we already hold (another mailbox, a resync, the Sent copy of
    our own mail) only adds a sighting.

    "Already hold" is the same Message-ID and the same content: the body and
    the significant headers (`message.content_hash`), so the copies of one
    mail in two mailboxes are one message although servers gave them
    different trace headers.  A different mail that reuses a stored
    Message-ID is a message of its own under a derived key, "<id>#<16 hex
    digits of its content hash>", which is also its stored message_id.  So
    lookups by Message-ID (threading, bounces) keep finding the first mail
    only, replies that name the id keep going to the first mail's ticket,
    and the newcomer threads by its own In-Reply-To, References and subject
    tag.  `note_reused_id` records it on its ticket.  (Its acknowledgement
    names the derived id in In-Reply-To, which the sender's client does not
    know: that costs only the threading of the acknowledgement there.)
    Our own mail keeps the old rule, one Message-ID one message, so the loop
    rules still recognise our ids; and content is compared against the
    stored raw bytes, only when the raw bytes differ.
    """
    row = filing.message_by_key(conn, d.key)
    if row is not None and not _same_content(conn, d, direction=row[1], raw_sha256=row[2]):
        reused = d.msg.message_id
        d.key = f"{d.key}#{content_hash(d.raw)[:16]}"
        d.msg = replace(d.msg, message_id=d.key)
        d.reused_id = reused
        row = filing.message_by_key(conn, d.key)
        if row is None:
            log.warning("<%s> reused by a different mail in %s/%s uid %d; filed as <%s>",
                        reused, d.mailbox, d.folder, d.uid, d.key)
    if row is not None:
        d.message_pk = row[0]
        record_sighting(filer, conn, d)
        raise Done("already filed")
    if d.msg.message_id and filing.is_our_outgoing(conn, d.msg.message_id):
        # A relayed reply: the agent's own mail is the stored message already.
        raise Done("our own outgoing mail")


def _same_content(conn: Connection, d: Delivery, *, direction: str, raw_sha256: str) -> bool:
    """Whether the stored message under d.key is this very mail."""
    if raw_sha256 == d.sha256 or d.key.startswith("sha256:"):
        return True
    if direction != "in":
        # Our own mail (its stored bytes are a description, not the mail)
        # or the team's: a copy in a Sent folder is a sighting, as always,
        # and mail claiming one of our Message-IDs must stay ours for the
        # loop rules.
        return True
    stored = filing.raw_data(conn, raw_sha256)
    if stored is None:
        # Nothing to compare with: keep the old rule, one Message-ID one message.
        return True
    return content_hash(stored) == content_hash(d.raw)


def note_reused_id(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A mail that reused a stored Message-ID says so in its ticket's history."""
    if not d.reused_id:
        return
    _event(conn, d, "message-id-reused", {
        "message_id": d.reused_id, "stored_as": d.key, "first_ticket": filing.ticket_ref_of_message(conn, d.reused_id),
        "reason": "a different mail (other content) already has this Message-ID",
    })


def quarantine_bare(conn: Connection, mailbox: str, folder: str, uidvalidity: int, uid: int, raw: bytes,
                    arrived: datetime | None, now: datetime, reason: str, raw_path: str | None = None) -> None:
    """A quarantine row that cannot fail for the mail's sake: its raw bytes, their
    hash, the place and a reason of our own; nothing read from the mail.  Mail
    kept on disk (`raw_path`, relative to data_dir) has no rawmessage row."""
    sha256 = None
    if raw_path is None:
        sha256 = hashlib.sha256(raw).hexdigest()
        filing.insert_raw(conn, sha256, raw)
    filing.insert_quarantine(conn, mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid, message_id=None,
                             reason=reason, raw_sha256=sha256, raw_path=raw_path, now=now, arrived=arrived)


def _failure_reason(exc: BaseException) -> str:
    """Why a message failed, in one line; never raises, though the error may quote the mail."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not fail the quarantine
        text = "(no description)"
    return text if isinstance(exc, Quarantined | MalformedMessage) else f"{type(exc).__name__}: {text}"


def decide_disposition(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Decide what the message means, writing nothing: the frozen `Disposition`
    (see inboxd.desk.decide).  Every step after this one applies a part of it."""
    d.disposition = decide(Incoming(d.msg, d.raw, d.mailbox, d.folder, d.at, d.history, d.key),
                           FilingLookup(conn), filer.desk, d.now)


def join_threads(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Merge the other tickets of this message's conversation into the one it joins.

    So a conversation whose mail arrived out of order (reply before parent,
    across folders or mailboxes, after a restore) ends up on one ticket.  The
    oldest ticket survives and absorbs the others as an agent's merge would
    (`workflow.merge_tickets`: messages move with their sightings, a 'merge'
    event on both saying which mail joined them and how).  Which tickets
    join, and the survivor's joined state, were decided by
    `decide.plan_join` (a ticket closed longer ago than [tickets]
    reopen_window is left alone by live mail; history joins them all).
    """
    join = d.disposition.join
    if join is None:
        return
    survivor = join.survivor
    filing.set_joined_state(conn, survivor.pk, **{f.name: getattr(join.state, f.name) for f in fields(join.state)})
    mid = d.msg.message_id or d.key
    change = join.change
    for other, link in zip(join.others, join.links):
        moved = merge_tickets(conn, workflow_ticket(conn, other.ref), workflow_ticket(conn, survivor.ref),
                              d.at or d.now, "inboxd", {"reason": f"thread joined by <{mid}>", "link": link, **change})
        change = {}
        log.info("<%s> joined %s into %s (%s; %d messages moved)", mid, other.ref, survivor.ref, link, moved)


def open_or_update_ticket(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Count the message on its ticket and move the ticket's status, or open a new ticket."""
    disposition = d.disposition
    choice = disposition.ticket
    if not choice.is_new:
        d.ticket_pk, d.ticket_ref = choice.pk, choice.ref
        if d.history:
            # History joins its thread as a record and changes nothing.
            filing.count_history_message(conn, d.ticket_pk, d.at, agent_reply=disposition.kind == "agent")
            return
        # A customer's live mail makes a history ticket ordinary work again.
        filing.count_message(conn, d.ticket_pk, d.at, new_status=choice.status_after,
                             first_response=disposition.kind == "agent", live=disposition.kind == "customer")
        detail = {"reason": choice.reason, "mailbox": d.mailbox, "from": disposition.sender, "kind": disposition.kind}
        if choice.status_after != choice.status_before:
            detail.update(status_before=choice.status_before, status_after=choice.status_after)
        if disposition.note_reason:
            detail["note"] = disposition.note_reason
        _event(conn, d, "message", detail, actor=disposition.agent.name if disposition.agent else "inboxd")
        return
    if choice.follows is not None:
        # The closed ticket says where its conversation went on.
        filing.add_event(conn, choice.follows.pk, d.at or d.now, "inboxd", "follow-up",
                         {"reason": choice.follows_reason, "note": "closed too long ago to reopen"})
    d.ticket_pk, d.ticket_ref = filer.allocate_ref(conn)
    filing.insert_ticket(conn, pk=d.ticket_pk, ref=d.ticket_ref, subject=choice.subject, status=choice.status_after,
                         mailbox=d.mailbox, requester=choice.requester, requester_name=choice.requester_name or "",
                         at=d.at, closed_at=choice.closed_at, history=d.history)
    if choice.requester_name is not None:
        filing.add_customer(conn, choice.requester, choice.requester_name, d.at)
    detail = {"reason": choice.reason, "mailbox": d.mailbox, "from": choice.requester}
    if choice.follows is not None:
        detail["follows"] = choice.follows.ref
    if d.history:
        detail["history"] = choice.status_after
    _event(conn, d, "created", detail)


def store_message(filer: Filer, conn: Connection, d: Delivery) -> None:
    msg = d.msg
    sender = msg.from_
    new_text = d.disposition.reply_text
    values = {
        "message_key": d.key, "message_id": msg.message_id, "ticket_id": d.ticket_pk,
        "direction": d.disposition.direction, "kind": d.disposition.kind, "from_addr": sender.email if sender else "", "from_name": sender.name if sender else "",
        "to_addrs": _addresses(msg.to), "cc_addrs": _addresses(msg.cc), "reply_to": _addresses(msg.reply_to),
        "date": msg.date, "subject": msg.subject, "text": msg.text, "reply_text": new_text,
        "html_only": msg.html_only, "in_reply_to": json.dumps(list(msg.in_reply_to)),
        "references": json.dumps(list(msg.references)), "auto": json.dumps(_auto_facts(msg, d)),
        "raw_sha256": d.sha256, "size": msg.size, "created_at": d.at,
    }
    # The parser saved the attachments' content already (see inboxd.sync.worker);
    # only attachments over the size limit are kept as metadata alone.
    attachments = [{"filename": att.filename, "content_type": att.content_type, "size": att.size,
                    "sha256": att.sha256, "stored": att.size <= filer.max_attachment, "inline": att.inline}
                   for att in msg.attachments]
    parents = {*msg.in_reply_to, *msg.references} - {msg.message_id}
    d.message_pk = filing.insert_message(conn, values, parents, attachments)


def record_sighting(filer: Filer, conn: Connection, d: Delivery) -> None:
    d.sighted = True
    filing.insert_sighting(conn, d.message_pk, d.mailbox, d.folder, d.uidvalidity, d.uid, d.now)


def note_bounce(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A permanent bounce of our own mail marks the addresses it went to, so
    no auto-replies go there until [autoreply] bounce_expiry has passed.

    Which addresses, `decide.bounce_marks` decided: only a report about a
    Message-ID in our outbox marks anybody, and only the addresses that mail
    went to.  The history records what was marked, until when, or why
    nothing was.  An old bounce (history) says nothing about the address today.
    """
    bounce, marks = d.disposition.bounce, d.disposition.bounce_marks
    if bounce is None or marks is None:
        return
    detail = {"recipients": list(bounce.recipients), "permanent": bounce.permanent, "reason": bounce.reason}
    if bounce.permanent:
        detail["marked"] = list(marks.marked)
        if marks.marked:
            detail["until"] = _iso(marks.until)
        else:
            detail["not_marked"] = marks.not_marked
    _event(conn, d, "bounce", detail)
    filing.mark_bouncing(conn, list(marks.marked), d.now)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_csat(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A survey answer is stored (never reopening the ticket); a low one is followed up."""
    answer = d.disposition.csat
    if answer is None:
        return
    filing.record_csat_answer(conn, answer.csat_id, answer.rating, answer.label, answer.comment, d.now)
    _event(conn, d, "csat", {"rating": answer.rating, "label": answer.label, "comment": answer.comment})
    if answer.low and not d.history:
        _event(conn, d, "csat-followup", {"rating": answer.rating, "label": answer.label,
                                          "task": "follow up with the customer"})
        for name in answer.followup:
            notify_agent(conn, filer.settings, filer.tags, d.ticket_ref, filer.settings.agent(name), d.now,
                         headline=f"Low satisfaction rating on {d.ticket_ref}: {answer.label}. "
                                  f"Please follow up. Comment: {answer.comment or '-'}")


def route(filer: Filer, conn: Connection, d: Delivery) -> None:
    """What the admin's [[rules]] decided (`decide.route`): the mailbox's team
    on a new ticket, then tags, priority, team, tier, assignee and SLA policy."""
    routing = d.disposition.routing
    if routing is None:
        return
    if routing.team_on_new:
        filing.set_team(conn, d.ticket_pk, routing.team_on_new)
    if not routing.matched:
        return
    filing.apply_routing(conn, d.ticket_pk, priority=routing.priority, tags=list(routing.tags), team=routing.team,
                         tier=routing.tier, escalate=routing.escalate, assignee=routing.assignee,
                         sla_policy=routing.sla)
    for reason in routing.reasons:
        _event(conn, d, "rule", {"reason": reason})
    if routing.assignee:
        _event(conn, d, "rule-assign", {"assign": routing.assignee, "team": routing.team})


def clock(filer: Filer, conn: Connection, d: Delivery) -> None:
    """The ticket's SLA due times, right away (the scheduler keeps them current).

    Computed after the message's writes, from the ticket as they leave it
    (`slaclock.refresh`: read the inputs, `due_times`, store).
    """
    if d.disposition.clock:
        slaclock.refresh(conn, d.ticket_pk, filer.settings, filer.policies, d.now)


def acknowledge(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Queue the acknowledgement `decide.acknowledge` allowed, or record the rule that said no."""
    ack = d.disposition.ack
    if ack is None:
        return
    if not ack.send:
        _event(conn, d, "no-ack", {"rule": ack.rule, "reason": ack.reason})
        return
    mailbox = filer.settings.mailbox(d.mailbox)
    ticket = outbox.load_ticket(conn, d.ticket_pk)
    subject, text, html = outbox.ack_content(
        filer.templates, filer.tags, mailbox, ticket, sla=_promise(filer, conn, d, mailbox), template=ack.template)
    # Composed by the sender on its first attempt: filing stays cheap.
    message_id = outbox.queue(
        conn, kind="ack", mailbox=mailbox, ticket_pk=d.ticket_pk, ref=ticket.ref,
        to=[(ticket.requester_name, ticket.requester)], subject=subject, text=text, html=html,
        in_reply_to=d.msg.message_id, automatic=AUTO_REPLIED, now=d.now,
        sent_copy=filer.settings.outbox.sent_copy, record_on_ticket="auto", compose_at_send=True)
    _event(conn, d, "ack", {"message_id": message_id, "to": ticket.requester})
    d.acked = True


def _promise(filer: Filer, conn: Connection, d: Delivery, mailbox) -> dict:
    """The first-response promise published in the acknowledgement (the clock step has just set it)."""
    policy_name, due = filing.sla_promise(conn, d.ticket_pk)
    policy = filer.policies.sla.get(policy_name) if policy_name else None
    if policy is None or policy.first_response is None:
        return {"first_response": None, "first_response_due": None}
    local = due.astimezone(policy.calendar.tz) if due else None
    return {"first_response": human(policy.first_response, mailbox.language),
            "first_response_due": local.strftime("%Y-%m-%d %H:%M %Z") if local else None}


def relay(filer: Filer, conn: Connection, d: Delivery) -> None:
    """An agent's answer by email goes on to the customer from the shared address."""
    decision, agent = d.disposition.relay, d.disposition.agent
    if decision is None:
        return
    if not decision.send:
        # Nothing new above the quote (a slip of the send button): relaying it
        # would mail the customer an empty answer.
        _event(conn, d, "relay-skipped", {"reason": decision.reason}, actor=agent.name)
        return
    mailbox = filer.settings.mailbox(d.mailbox)
    ticket = outbox.load_ticket(conn, d.ticket_pk)
    parent, references = outbox.thread_ids(conn, d.ticket_pk)
    # A person's answer, so not automatic; the agent's own mail is on the thread already.
    message_id = outbox.queue(
        conn, kind="relay", mailbox=mailbox, ticket_pk=d.ticket_pk, ref=ticket.ref,
        to=[(ticket.requester_name, ticket.requester)],
        subject=tagged_subject(ticket.subject, ticket.ref, filer.tags), text=d.disposition.reply_text,
        in_reply_to=parent, references=references, automatic=None,
        from_name=f"{agent.name.capitalize()} via {mailbox.display_name}", now=d.now,
        sent_copy=filer.settings.outbox.sent_copy)
    _event(conn, d, "relay", {"message_id": message_id, "to": ticket.requester}, actor=agent.name)


def notify_agents(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Tell the agents `decide.watchers` chose about customer mail: the assignee,
    or for an unassigned ticket the agents of its team who asked for "all"."""
    for name in d.disposition.notify:
        headline = (f"New ticket {d.ticket_ref} in {d.mailbox}." if d.disposition.ticket.is_new
                    else f"The customer wrote again on {d.ticket_ref}.")
        notify_agent(conn, filer.settings, filer.tags, d.ticket_ref, filer.settings.agent(name), d.now,
                     headline=headline)


class FilingLookup(StoreLookup):
    """The store as deciding sees it (`decide.Lookup`): the tickets' and
    surveys' facts (`StoreLookup`) and the outbox's: what we sent, the
    acknowledgement budget's counts, bounce marks.  Reads only."""

    def sent_to(self, message_id: str | None) -> tuple[str, ...] | None:
        return outbox.sent_to(self.conn, message_id)

    def ack_counts(self, address: str, now: datetime, *, count_domain: bool) -> outbox.AckCounts:
        return outbox.ack_counts(self.conn, address, now, count_domain=count_domain)

    def bouncing_since(self, address: str, now: datetime, expiry: timedelta) -> datetime | None:
        return outbox.bouncing_since(self.conn, address, now, expiry)


PIPELINE: tuple[Callable[[Filer, Connection, Delivery], None], ...] = (
    # Take the mail in: when it came, its bytes kept, parsed, not one we hold.
    arrival,
    refuse_oversize,
    skip_history,
    keep_raw,
    parse,
    skip_duplicate,
    # Decide what it means, writing nothing.
    decide_disposition,
    # Apply the disposition, one change per step.
    join_threads,
    open_or_update_ticket,
    store_message,
    note_reused_id,
    record_sighting,
    note_bounce,
    record_csat,
    route,
    clock,
    acknowledge,
    relay,
    notify_agents,
)


def _event(conn: Connection, d: Delivery, action: str, detail: dict, actor: str = "inboxd") -> None:
    # Events of a message carry its arrival time, so history reads in order.
    filing.add_event(conn, d.ticket_pk, d.at or d.now, actor, action, detail)


def _addresses(addrs) -> str:
    return json.dumps([{"name": a.name, "email": a.email} for a in addrs], ensure_ascii=False)


def _auto_facts(msg: InboundMessage, d: Delivery) -> dict:
    a = msg.auto
    facts = {
        "auto_submitted": a.auto_submitted, "precedence": a.precedence, "list_id": a.list_id,
        "list_unsubscribe": a.list_unsubscribe, "auto_response_suppress": a.auto_response_suppress,
        "return_path": a.return_path, "delivery_status": a.delivery_status, "loop": a.loop,
    }
    bounce = d.disposition.bounce
    if bounce is not None:
        facts["bounce"] = {"recipients": list(bounce.recipients), "permanent": bounce.permanent,
                           "reason": bounce.reason}
    return {k: v for k, v in facts.items() if v not in (None, False)}
