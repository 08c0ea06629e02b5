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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection

from inboxd.outbound import outbox

from inboxd.desk import slaclock
from inboxd.mail.bounces import Bounce, detect_bounce
from inboxd.outbound.compose import tagged_subject, ticket_ref_from_message_id
from inboxd.config import AgentSettings, Settings
from inboxd.store import counters, filing
# FolderCheckpoint is part of the pollers' BatchSink interface (inboxd.sync.imap imports it from here).
from inboxd.store.folders import FolderCheckpoint, save_checkpoint  # noqa: F401
from inboxd.store.lookup import StoreLookup, csat_by_message_ids, csat_by_token, csat_ticket
from inboxd.mail.largemail import header_block, read_head
from inboxd.mail.message import InboundMessage, MalformedMessage, clean_text, content_hash, extract_message_id
from inboxd.mail.quotes import reply_text
from inboxd.outbound.loop import AUTO_REPLIED, loop_header_value
from inboxd.desk.autoreply import AckContext, is_automatic, may_auto_reply
from inboxd.outbound.templates import Templates
from inboxd.desk.threads import ThreadMatch, TicketTag, find_ticket, joined_status
from inboxd.desk.csat import is_low, parse_answer, parse_survey_address
from inboxd.desk.csat import label as csat_label
from inboxd.desk.policies import load_policies
from inboxd.desk.routing import ASSIGN_STRATEGIES, facts_for, merge, pick_assignee
from inboxd.desk.sla import human
from inboxd.sync.worker import parse_one
from inboxd.vocabulary import OPEN_STATUSES, PRIORITIES
from inboxd.desk.workflow import load as workflow_ticket
from inboxd.desk.workflow import merge_tickets, notify_agent

log = logging.getLogger("inboxd.desk.ingest")


class Done(Exception):
    """Control exception: the message needs no further steps (str: why)."""


class Quarantined(Exception):
    """Control exception: file the message in quarantine with this reason."""


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
    match: ThreadMatch | None = None
    ticket_pk: int | None = None
    ticket_ref: str = ""
    message_pk: int | None = None
    # What classify() decided: who wrote it and what it is.
    direction: str = "in"
    kind: str = "customer"
    agent: AgentSettings | None = None
    bounce: Bounce | None = None
    relay: bool = False
    note_reason: str = ""
    previous_ref: str = ""
    reply_text: str = ""
    # What routing decided about the acknowledgement: None (default), False
    # (suppressed by a rule) or a template folder name.
    ack_template: str | bool | None = None
    csat: tuple[int, int, str] | None = None      # (csat row id, rating, comment)
    sighted: bool = False         # a sighting row accounts for this UID
    acked: bool = False
    # The Message-ID a different, earlier mail holds already (see skip_duplicate).
    reused_id: str = ""


class Filer:
    """Files batches into the store; one per process, shared by all pollers."""

    def __init__(self, settings: Settings, parse: Callable[[bytes], InboundMessage] | None = None):
        self.settings = settings
        self.tags = TicketTag(settings.tickets.id_format, settings.tickets.tag_format)
        self.templates = Templates(settings.template_dirs)
        self.own_addresses = settings.own_addresses()
        self.own_domains = frozenset(m.domain for m in settings.mailboxes)
        self.policies = load_policies(settings)
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
        if d.match is not None and d.match.is_new:
            result.new_tickets += 1
            result.history_tickets += d.history
        result.acks += d.acked
        # One line per message is for debugging; progress is logged per batch.
        log.debug(
            "<%s> filed on %s (%s) from %s/%s uid %d",
            d.msg.message_id if d.msg else "", d.ticket_ref, d.match.reason if d.match else "",
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


def classify(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Who wrote this and what is it: customer mail, an agent's reply, a note, a bounce."""
    msg = d.msg
    mailbox = filer.settings.mailbox(d.mailbox)
    sender = msg.from_.email if msg.from_ else ""
    if d.folder == mailbox.imap.sent_folder:
        if msg.auto.loop or (msg.message_id and ticket_ref_from_message_id(msg.message_id)):
            # Automatic mail of an inboxd (another store's, or ours from
            # before a restore): a record at most, never an agent's reply.
            d.direction, d.kind = "out", "auto"
            return
        # The shared mailbox's Sent folder: what the team sent from their clients.
        d.direction, d.kind = "out", "agent"
        d.agent = filer.settings.agent_by_email(sender)
        return
    bounce = detect_bounce(d.raw, msg)
    if bounce is not None:
        d.kind, d.bounce = "bounce", bounce
        return
    answer = _csat_answer(filer, conn, d)
    if answer is not None:
        d.kind, d.csat = "csat", answer
        return
    agent = filer.settings.agent_by_email(sender) if sender else None
    if agent is None:
        return
    d.agent = agent
    automatic = is_automatic(msg)
    first_line = msg.text.lstrip().split("\n", 1)[0].strip().lower()
    to_note = any(a.email == mailbox.note_address() for a in (*msg.to, *msg.cc))
    if automatic:
        # An agent's out-of-office reply is kept for the record, never relayed.
        d.kind, d.note_reason = "note", f"automatic mail from agent {agent.name}: {automatic}"
    elif first_line.startswith("#note") or to_note:
        d.kind, d.note_reason = "note", "internal note by email"
    elif d.history:
        # An agent's mail from the past is a record; it was answered long ago.
        d.direction, d.kind = "out", "agent"
    else:
        d.direction, d.kind, d.relay = "out", "agent", True


def thread(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Find the ticket this message continues, or decide to open one."""
    lookup = StoreLookup(conn)
    if d.csat is not None:
        d.match = ThreadMatch(csat_ticket(conn, d.csat[0]), "satisfaction survey answer")
        return
    if d.bounce is not None and d.bounce.original_message_id:
        mid = d.bounce.original_message_id
        known = lookup.tickets_by_message_ids([mid])
        ref = ticket_ref_from_message_id(mid)
        pk = known.get(mid) or (lookup.ticket_by_ref(ref) if ref else None)
        if pk is not None:
            d.match = ThreadMatch(pk, f"bounce of <{mid}>")
            return
    d.match = find_ticket(d.msg, lookup, filer.tags, ticket_ref_from_message_id)
    if d.match.is_new and d.kind == "auto":
        raise Done("automatic mail in the Sent folder about no ticket")
    if d.match.is_new and d.kind in ("agent", "note"):
        if d.direction == "out" and d.agent is None or d.folder == filer.settings.mailbox(d.mailbox).imap.sent_folder:
            # Sent mail about no ticket is the team's own business.
            raise Done("Sent mail about no ticket")
        # An agent writing to the shared address about no ticket (say, a
        # forwarded customer mail) opens one like anybody else, and nothing
        # is relayed or noted.
        d.direction, d.kind, d.relay = "in", "customer", False


def join_threads(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Merge the other tickets of this message's conversation into the one it joins.

    `thread` decided which tickets the headers connect (ThreadMatch.also);
    this applies it, so a conversation whose mail arrived out of order
    (reply before parent, across folders or mailboxes, after a restore)
    ends up on one ticket.  The oldest ticket survives and absorbs the
    others as an agent's merge would (`workflow.merge_tickets`: messages
    move with their sightings, a 'merge' event on both saying which mail
    joined them and how).  The survivor's state is the joined one:
    `threading.joined_status` (the most active part wins), the highest
    priority and tier, its own assignee/team/SLA policy or else a merged
    ticket's, the earliest creation and first response, and live if any
    part is live (history only if all of it is).

    A ticket closed longer ago than [tickets] reopen_window is finished:
    live mail leaves it alone (it would open a follow-up ticket), and joins
    and merges only the conversation's other tickets.  History mail, a
    record of the past, joins them all.
    """
    match = d.match
    if match is None or not match.also:
        return
    links = match.links()
    rows = filing.tickets_to_join(conn, links)
    window = filer.settings.tickets.reopen_window
    joinable = [pk for pk in sorted(rows)
                if d.history or not (rows[pk].status == "closed" and not _within(rows[pk].closed_at, d.at, window))]
    if not joinable:
        # Every part is finished: the message follows up on the oldest.
        d.match = ThreadMatch(match.ticket_pk, match.reason)
        return
    survivor, others = joinable[0], joinable[1:]
    d.match = ThreadMatch(survivor, links[survivor], tuple(others), tuple(links[pk] for pk in others))
    if not others:
        return
    parts = [rows[survivor], *(rows[pk] for pk in others)]
    status = joined_status([p.status for p in parts])
    source = next((p for p in parts if p.status == status), None)
    closed_at, solved_at = (source.closed_at, source.solved_at) if source is not None else (None, None)
    filing.set_joined_state(
        conn, survivor, status=status, closed_at=closed_at, solved_at=solved_at,
        priority=max((p.priority for p in parts), key=lambda v: PRIORITIES.index(v) if v in PRIORITIES else -1),
        assignee=next((p.assignee for p in parts if p.assignee), None),
        team=next((p.team for p in parts if p.team), None), tier=max(p.tier for p in parts),
        escalated=max(p.escalated for p in parts), sla_policy=next((p.sla_policy for p in parts if p.sla_policy), None),
        history=min(p.history for p in parts), created_at=min(p.created_at for p in parts),
        first_response_at=min((p.first_response_at for p in parts if p.first_response_at is not None), default=None))
    mid = d.msg.message_id or d.key
    change = {"status_before": parts[0].status, "status_after": status} if status != parts[0].status else {}
    for pk in others:
        moved = merge_tickets(conn, workflow_ticket(conn, rows[pk].ref), workflow_ticket(conn, rows[survivor].ref),
                              d.at or d.now, "inboxd", {"reason": f"thread joined by <{mid}>", "link": links[pk],
                                                        **change})
        change = {}
        log.info("<%s> joined %s into %s (%s; %d messages moved)", mid, rows[pk].ref, rows[survivor].ref,
                 links[pk], moved)


def open_or_update_ticket(filer: Filer, conn: Connection, d: Delivery) -> None:
    msg = d.msg
    sender = msg.from_ or (msg.reply_to[0] if msg.reply_to else None)
    if sender is None and d.kind != "bounce":
        raise Quarantined("no sender address")
    sender_email = sender.email if sender else "mailer-daemon"
    if not d.match.is_new:
        d.ticket_pk = d.match.ticket_pk
        d.ticket_ref, status, closed_at = filing.ticket_state(conn, d.ticket_pk)
        if d.history:
            # History joins its thread as a record and changes nothing.
            filing.count_history_message(conn, d.ticket_pk, d.at, agent_reply=d.kind == "agent")
            return
        if d.kind == "customer" and status == "closed" and not _within(closed_at, d.at, filer.settings.tickets.reopen_window):
            # Too old to reopen: a new ticket that points back at the old one.
            _event(conn, d, "follow-up", {"reason": d.match.reason, "note": "closed too long ago to reopen"})
            d.previous_ref = d.ticket_ref
            d.match = ThreadMatch(None, f"follow-up to closed {d.ticket_ref} ({d.match.reason})")
        else:
            new_status = _next_status(status, d.kind)
            first_response = d.kind == "agent"
            # A customer's live mail makes a history ticket ordinary work again.
            live = d.kind == "customer"
            filing.count_message(conn, d.ticket_pk, d.at, new_status=new_status, first_response=first_response,
                                 live=live)
            detail = {"reason": d.match.reason, "mailbox": d.mailbox, "from": sender_email, "kind": d.kind}
            if new_status != status:
                detail.update(status_before=status, status_after=new_status)
            if d.note_reason:
                detail["note"] = d.note_reason
            _event(conn, d, "message", detail, actor=d.agent.name if d.agent else "inboxd")
            return
    d.ticket_pk, d.ticket_ref = filer.allocate_ref(conn)
    status, closed_at = "new", None
    if d.history:
        status = "closed" if filer.settings.mailbox(d.mailbox).history == "closed" else "open"
        closed_at = d.at if status == "closed" else None
    filing.insert_ticket(conn, pk=d.ticket_pk, ref=d.ticket_ref, subject=filer.tags.display_subject(msg.subject)[:998],
                         status=status, mailbox=d.mailbox, requester=sender_email,
                         requester_name=sender.name if sender else "", at=d.at, closed_at=closed_at,
                         history=d.history)
    if sender is not None:
        filing.add_customer(conn, sender.email, sender.name, d.at)
    detail = {"reason": d.match.reason, "mailbox": d.mailbox, "from": sender_email}
    if d.previous_ref:
        detail["follows"] = d.previous_ref
    if d.history:
        detail["history"] = status
    _event(conn, d, "created", detail)


def _next_status(status: str, kind: str) -> str:
    """The status a ticket moves to when a message of this kind arrives."""
    if kind == "customer" and status in ("pending", "solved", "closed"):
        return "open"
    if kind == "agent" and status in ("new", "open"):
        return "pending"
    return status


def _within(closed_at: datetime | None, now: datetime, window) -> bool:
    return closed_at is None or now - closed_at <= window


def store_message(filer: Filer, conn: Connection, d: Delivery) -> None:
    msg = d.msg
    sender = msg.from_
    new_text = reply_text(msg.text)
    values = {
        "message_key": d.key, "message_id": msg.message_id, "ticket_id": d.ticket_pk, "direction": d.direction,
        "kind": d.kind, "from_addr": sender.email if sender else "", "from_name": sender.name if sender else "",
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
    d.reply_text = new_text


def record_sighting(filer: Filer, conn: Connection, d: Delivery) -> None:
    d.sighted = True
    filing.insert_sighting(conn, d.message_pk, d.mailbox, d.folder, d.uidvalidity, d.uid, d.now)


def note_bounce(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A permanent bounce of our own mail marks the addresses it went to, so
    no auto-replies go there until [autoreply] bounce_expiry has passed.

    Anybody can send a mail that looks like a bounce.  So only a report about
    a Message-ID in our outbox (mail we sent; its random part cannot be
    guessed) marks anybody, and only the addresses that mail went to: a
    forged report about mail we never sent, or naming someone else, cannot
    silence a customer.  The history records what was marked, until when,
    or why nothing was.
    """
    if d.bounce is None or d.history:
        # An old bounce says nothing about the address today.
        return
    b = d.bounce
    detail = {"recipients": list(b.recipients), "permanent": b.permanent, "reason": b.reason}
    marked: list[str] = []
    if b.permanent:
        marked, why = _bounced_addresses(conn, b)
        detail["marked"] = marked
        if marked:
            detail["until"] = _iso(d.now + filer.settings.autoreply.bounce_expiry)
        else:
            detail["not_marked"] = why
    _event(conn, d, "bounce", detail)
    filing.mark_bouncing(conn, marked, d.now)


def _bounced_addresses(conn: Connection, bounce: Bounce) -> tuple[list[str], str]:
    """(the addresses this bounce may mark, why none when it is empty)."""
    mid = bounce.original_message_id
    if not mid:
        return [], "the report names no Message-ID of ours"
    sent = outbox.sent_to(conn, mid)
    if sent is None:
        return [], f"we sent no mail <{mid}>"
    marked = sorted(set(bounce.recipients) & set(sent))
    return marked, "" if marked else f"none of the failed addresses is one <{mid}> went to"


def _ack_context(filer: Filer, conn: Connection, mailbox, requester: str, now: datetime) -> AckContext:
    """What the auto-reply rules need to know about the store: the budget's counts and a bounce mark."""
    autoreply = filer.settings.autoreply
    _key, domain = outbox.budget_key(requester)
    # A shared provider's domain (gmail.com) is millions of people: no per-domain ceiling.
    shared = domain in autoreply.shared_domains
    counts = outbox.ack_counts(conn, requester, now, count_domain=not shared)
    bounced = outbox.bouncing_since(conn, requester, now, autoreply.bounce_expiry)
    return AckContext(
        own_addresses=filer.own_addresses,
        own_domains_for_ids=filer.own_domains,
        loop_header_value=loop_header_value(mailbox.address),
        sent_last_hour=counts.address_hour,
        sent_last_day=counts.address_day,
        budget_per_hour=autoreply.per_hour,
        budget_per_day=autoreply.per_day,
        sender_bouncing=bounced is not None,
        domain=domain,
        sent_domain_last_minute=counts.domain_minute,
        sent_domain_last_hour=counts.domain_hour,
        budget_domain_per_minute=None if shared else autoreply.per_domain_per_minute,
        budget_domain_per_hour=None if shared else autoreply.per_domain_per_hour,
    )


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def route(filer: Filer, conn: Connection, d: Delivery) -> None:
    """The admin's [[rules]], in order, on a new ticket and on each customer message."""
    if d.kind != "customer":
        return
    mailbox = filer.settings.mailbox(d.mailbox)
    if d.match.is_new and mailbox.team:
        filing.set_team(conn, d.ticket_pk, mailbox.team)
    rules = filer.policies.rules
    # History is not routed: assigning years of closed mail would skew every
    # agent's load and every round-robin.
    if not rules.rules or d.history:
        return
    tags, priority, team, tier = filing.routing_facts(conn, d.ticket_pk)
    facts = facts_for(d.msg, event="new" if d.match.is_new else "message", mailbox=d.mailbox,
                      headers=_headers(d.raw), tags=list(tags), priority=priority, team=team)
    decisions = rules.evaluate(facts)
    if not decisions:
        return
    outcome = merge(decisions)
    tags += [t for t in outcome.tags if t not in tags]
    team = outcome.team or team
    tier = outcome.tier if outcome.tier is not None else (tier + 1 if outcome.escalate else tier)
    assignee = None
    if outcome.assign in ASSIGN_STRATEGIES:
        members = rules.teams.get(team or "", ()) or tuple(a.name for a in filer.settings.agents if team in a.teams)
        counts = filing.open_counts(conn, OPEN_STATUSES)
        last = filing.last_rule_assignee(conn, team)
        assignee = pick_assignee(outcome.assign, members, open_counts=counts, last_assigned=last)
    elif outcome.assign:
        assignee = outcome.assign
    filing.apply_routing(conn, d.ticket_pk, priority=outcome.priority, tags=tags, team=team, tier=tier,
                         escalate=bool(outcome.escalate), assignee=assignee, sla_policy=outcome.sla)
    for reason in outcome.reasons:
        _event(conn, d, "rule", {"reason": reason})
    if assignee:
        _event(conn, d, "rule-assign", {"assign": assignee, "team": team})
    if outcome.autoreply is not None and outcome.autoreply is not True:
        d.ack_template = outcome.autoreply


def _headers(raw: bytes) -> dict[str, str]:
    # Only the header block, parsed again: rules may look at any header.
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header_block(raw))
    return {k.lower(): str(v) for k, v in head.items()}


def clock(filer: Filer, conn: Connection, d: Delivery) -> None:
    """The ticket's SLA due times, right away (the scheduler keeps them current)."""
    if d.kind in ("customer", "agent") and not d.history:
        slaclock.refresh(conn, d.ticket_pk, filer.settings, filer.policies, d.now)


def record_csat(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A survey answer is stored (never reopening the ticket); a low one is followed up."""
    if d.csat is None:
        return
    csat_id, rating, comment = d.csat
    mailbox = filer.settings.mailbox(d.mailbox)
    scale = filer.policies.csat
    name = csat_label(scale.scale, rating, mailbox.language)
    filing.record_csat_answer(conn, csat_id, rating, name, comment, d.now)
    _event(conn, d, "csat", {"rating": rating, "label": name, "comment": comment})
    if is_low(scale, rating) and not d.history:
        _event(conn, d, "csat-followup", {"rating": rating, "label": name, "task": "follow up with the customer"})
        for agent in filer.settings.agents:
            if agent.role in ("supervisor", "admin") and agent.notify != "none":
                notify_agent(conn, filer.settings, filer.tags, d.ticket_ref, agent, d.now,
                             headline=f"Low satisfaction rating on {d.ticket_ref}: {name}. "
                                      f"Please follow up. Comment: {comment or '-'}")


def _csat_answer(filer: Filer, conn: Connection, d: Delivery) -> tuple[int, int, str] | None:
    """(survey id, rating, comment) when this mail answers a satisfaction survey."""
    msg = d.msg
    scale = filer.policies.csat.scale
    for addr in (*msg.to, *msg.cc):
        parsed = parse_survey_address(addr.email)
        if parsed is None:
            continue
        csat_id = csat_by_token(conn, parsed[0])
        if csat_id is not None and 1 <= parsed[1] <= len(scale):
            answer = parse_answer(reply_text(msg.text), scale)
            comment = answer.comment if answer else reply_text(msg.text).strip()
            return csat_id, parsed[1], comment
    parents = [*msg.in_reply_to, *msg.references]
    if parents:
        csat_id = csat_by_message_ids(conn, parents)
        if csat_id is not None:
            answer = parse_answer(reply_text(msg.text), scale)
            if answer is not None:
                return csat_id, answer.rating, answer.comment
    return None


def acknowledge(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A new ticket from a customer gets an acknowledgement, unless a loop rule says no."""
    mailbox = filer.settings.mailbox(d.mailbox)
    if not (d.match.is_new and d.kind == "customer" and mailbox.ack and filer.settings.autoreply.enabled):
        return
    if d.history:
        return
    if d.ack_template is False:
        _event(conn, d, "no-ack", {"rule": "routing", "reason": "a routing rule suppressed the acknowledgement"})
        return
    ticket = outbox.load_ticket(conn, d.ticket_pk)
    verdict = may_auto_reply(d.msg, _ack_context(filer, conn, mailbox, ticket.requester, d.now))
    if not verdict.allowed:
        _event(conn, d, "no-ack", {"rule": verdict.rule, "reason": verdict.reason})
        return
    subject, text, html = outbox.ack_content(
        filer.templates, filer.tags, mailbox, ticket, sla=_promise(filer, conn, d, mailbox),
        template=d.ack_template if isinstance(d.ack_template, str) else "ack")
    # Composed by the sender on its first attempt: filing stays cheap.
    message_id = outbox.queue(
        conn, kind="ack", mailbox=mailbox, ticket_pk=d.ticket_pk, ref=ticket.ref,
        to=[(ticket.requester_name, ticket.requester)], subject=subject, text=text, html=html,
        in_reply_to=d.msg.message_id, automatic=AUTO_REPLIED, now=d.now,
        sent_copy=filer.settings.outbox.sent_copy, record_on_ticket="auto", compose_at_send=True)
    _event(conn, d, "ack", {"message_id": message_id, "to": ticket.requester})
    d.acked = True


def _promise(filer: Filer, conn: Connection, d: Delivery, mailbox) -> dict:
    """The first-response promise published in the acknowledgement."""
    policy_name, due = filing.sla_promise(conn, d.ticket_pk)
    policy = filer.policies.sla.get(policy_name) if policy_name else None
    if policy is None or policy.first_response is None:
        return {"first_response": None, "first_response_due": None}
    local = due.astimezone(policy.calendar.tz) if due else None
    return {"first_response": human(policy.first_response, mailbox.language),
            "first_response_due": local.strftime("%Y-%m-%d %H:%M %Z") if local else None}


def relay(filer: Filer, conn: Connection, d: Delivery) -> None:
    """An agent's answer by email goes on to the customer from the shared address."""
    if not d.relay:
        return
    if not d.reply_text.strip():
        # Nothing new above the quote (a slip of the send button): relaying it
        # would mail the customer an empty answer.
        _event(conn, d, "relay-skipped", {"reason": "the agent's mail has no new text"}, actor=d.agent.name)
        return
    mailbox = filer.settings.mailbox(d.mailbox)
    ticket = outbox.load_ticket(conn, d.ticket_pk)
    parent, references = outbox.thread_ids(conn, d.ticket_pk)
    # A person's answer, so not automatic; the agent's own mail is on the thread already.
    message_id = outbox.queue(
        conn, kind="relay", mailbox=mailbox, ticket_pk=d.ticket_pk, ref=ticket.ref,
        to=[(ticket.requester_name, ticket.requester)],
        subject=tagged_subject(ticket.subject, ticket.ref, filer.tags), text=d.reply_text,
        in_reply_to=parent, references=references, automatic=None,
        from_name=f"{d.agent.name.capitalize()} via {mailbox.display_name}", now=d.now,
        sent_copy=filer.settings.outbox.sent_copy)
    _event(conn, d, "relay", {"message_id": message_id, "to": ticket.requester}, actor=d.agent.name)


def notify_agents(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Tell agents about customer mail: the assignee (notify "assigned" or "all"),
    and for new tickets the agents of the mailbox's team who asked for "all"."""
    if d.kind != "customer" or d.history:
        return
    assignee, team = filing.watchers(conn, d.ticket_pk)
    for agent in filer.settings.agents:
        if agent.notify == "none":
            continue
        mine = agent.name == assignee
        watching = agent.notify == "all" and assignee is None and (team in agent.teams or d.mailbox in agent.teams)
        if mine or watching:
            headline = (f"New ticket {d.ticket_ref} in {d.mailbox}." if d.match.is_new
                        else f"The customer wrote again on {d.ticket_ref}.")
            notify_agent(conn, filer.settings, filer.tags, d.ticket_ref, agent, d.now, headline=headline)


PIPELINE: tuple[Callable[[Filer, Connection, Delivery], None], ...] = (
    arrival,
    refuse_oversize,
    skip_history,
    keep_raw,
    parse,
    skip_duplicate,
    classify,
    thread,
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
    if d.bounce is not None:
        facts["bounce"] = {"recipients": list(d.bounce.recipients), "permanent": d.bounce.permanent,
                           "reason": d.bounce.reason}
    return {k: v for k, v in facts.items() if v not in (None, False)}
