"""Step 3, the whole of it: file a batch of fetched mail onto tickets.

One batch is one folder's run of UIDs.  It is filed in one write transaction
that also moves the folder's checkpoint past the batch, so a crash at any
point either keeps the batch and its checkpoint or neither: nothing is lost
and nothing is filed twice.  Inside the transaction each message has its own
savepoint; a message that fails any step is rolled back alone and
quarantined with its raw bytes and the reason, and the batch goes on.

The steps for one message are the ordered list `PIPELINE` below; each is a
small function over a `Delivery`, in the manner of Mailman's pipelines.
They come in three stages: take the mail in (its arrival time, its raw
bytes kept, parsed, a copy of mail we hold only sighted), decide
(`inboxd.desk.decide`: from the message, a read-only lookup of the store,
the settings and `now`, a frozen `Disposition` with its reasons, and no
writes), and apply it (`inboxd.desk.apply`: one change per step).

A message's time is when the server received it (IMAP INTERNALDATE; the
Date header only when that is missing or absurd), not when inboxd got round
to it: tickets, SLA clocks and reports use it.  Mail that arrived before its
folder's cut-off is history (see `arrival`): it is filed with its real times
as closed (or open) tickets, or skipped, and never acknowledged, clocked,
notified or surveyed.

What is decided is written through the store layer (`inboxd.store.filing`,
`lookup`, `folders`, `counters`) on the SQLAlchemy
connection of the caller's write transaction, so filing runs on SQLite and
PostgreSQL alike.  Each message's savepoint is `filing.Savepoint`, SQLAlchemy's
`conn.begin_nested()` compiled once (see there why).
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection

from inboxd.config import Settings
from inboxd.desk.apply import (acknowledge, clock, join_threads, mail_commands, note_bounce, note_reused_id,
                               notify_agents, open_or_update_ticket, record_csat, record_sighting, relay, route,
                               store_message)
from inboxd.desk import slaclock
from inboxd.desk.decide import Desk, Disposition, Done, Incoming, Quarantined, decide
from inboxd.mail.largemail import header_block, read_head
from inboxd.mail.message import InboundMessage, MalformedMessage, clean_text, content_hash, extract_message_id
from inboxd.outbound import outbox
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
    commands: int = 0             # mails whose commands by mail wait to run (inboxd.desk.agentcommands)

    def add(self, other: BatchResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class BatchFacts:
    """What the store held of a batch's Message-IDs when the batch began: one
    query each for the whole batch instead of one per message.

    `asked` are the ids the queries were about; an answer about any other id
    (a reused id's derived key, a batch parsed inline) is asked of the store
    per message, as before.  Rows this batch writes itself are followed here:
    `absent` loses a key when its first copy is filed (see skip_duplicate),
    and `new_refs` gains the ids the batch's stored messages name, so a later
    message of the batch that they name asks the store (`referenced_by`).
    """

    asked: frozenset[str]
    absent: set[str]
    ours: frozenset[str]
    referenced: frozenset[str]
    new_refs: set[str]
    # Tickets whose SLA clock a message of the current run left to the end of
    # the run (see apply.clock), each with the index of the last such message.
    clocks: dict[int, int] = field(default_factory=dict)
    # Rows of the run that nothing filing does reads back, written together
    # at its end (write_rows): the sightings, and the new customers (marking
    # one bouncing writes them first); each with its message's index.
    sightings: list[tuple[int, dict]] = field(default_factory=list)
    customers: list[tuple[int, dict]] = field(default_factory=list)

    @classmethod
    def of(cls, conn: Connection, parsed: Sequence[InboundMessage | MalformedMessage]) -> BatchFacts:
        ids = frozenset(p.message_id for p in parsed if isinstance(p, InboundMessage) and p.message_id)
        return cls(ids, set(ids - filing.stored_keys(conn, ids)), frozenset(filing.outgoing_among(conn, ids)),
                   frozenset(filing.referenced_among(conn, ids)), set())

    def copy(self) -> BatchFacts:
        """For a run of the batch that may be undone (see Filer.file_batch)."""
        return replace(self, absent=set(self.absent), new_refs=set(self.new_refs), clocks={}, sightings=[],
                       customers=[])

    def write_rows(self, conn: Connection) -> None:
        """Write the rows the run has kept back.  If they fail, the last message
        that kept one is blamed (_Failed): it is filed on its own, its rows written
        at once, and the run before it again (which blames its own last, if need be)."""
        if not (self.customers or self.sightings):
            return
        try:
            filing.add_customers(conn, [row for _i, row in self.customers])
            filing.insert_sightings(conn, [row for _i, row in self.sightings])
        except Exception as exc:
            if filing.connection_lost(conn) or filing.contention(exc):
                raise
            raise _Failed(max(i for i, _row in self.customers + self.sightings)) from exc
        self.customers, self.sightings = [], []

    def is_ours(self, conn: Connection, message_id: str) -> bool:
        if message_id in self.asked:
            return message_id in self.ours
        return filing.is_our_outgoing(conn, message_id)

    def unreferenced(self, message_id: str) -> bool:
        """Whether surely no stored message names `message_id` (else the store is asked)."""
        return message_id in self.asked and message_id not in self.referenced and message_id not in self.new_refs


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
    # The agent who opened the ticket by hand (`inboxd new`, inboxd.desk.newticket); "" for mail.
    opened_by: str = ""
    # What one query per batch told of the batch's Message-IDs (see
    # BatchFacts); shared by its deliveries.  None: ask per message.
    facts: BatchFacts | None = None
    # An agent's commands by mail wait to run once the batch is committed (inboxd.desk.agentcommands).
    commands_waiting: bool = False
    # Filed in a run (see Filer._run): its place in the batch, and its SLA
    # clock may wait for the end of the run (see apply.clock).
    index: int = -1
    in_run: bool = False
    raw_kept: bool = False        # its raw bytes were written with the run's (see Filer._keep_raws)


class _Failed(Exception):
    """A message failed inside a run of the batch (see Filer._run): the run is
    undone.  `index`: the message to blame when it is not the one being filed
    (a clock it left for later, see flush_clocks)."""

    def __init__(self, index: int | None = None):
        super().__init__(index)
        self.index = index


class _NoSavepoint:
    def commit(self) -> None:
        pass


_NO_SAVEPOINT = _NoSavepoint()


class Filer:
    """Files batches into the store; one per process, shared by all pollers."""

    def __init__(self, settings: Settings, parse: Callable[[bytes], InboundMessage] | None = None):
        self.settings = settings
        self.policies = settings.policies
        self.desk = Desk.of(settings, self.policies)
        self.tags = self.desk.tags
        self.templates = Templates(settings.template_dirs)
        self.max_attachment = settings.store.max_attachment_bytes
        self.last_reason = ""     # why the last message quarantined was (see refile)
        # Parsing inline (no worker) saves attachments the same way the worker does.
        self.parse = parse or (lambda raw: parse_one(raw, self.max_attachment, settings.store.data_dir))
        # Ticket numbers of the batch (see allocate_ref and _run).
        self._spare_numbers: list[int] = []
        self._taken: list[int] = []

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
        # What the store holds of the batch's Message-IDs, asked once for the
        # batch rather than once per message (see BatchFacts).
        facts = BatchFacts.of(conn, parsed) if parsed is not None else None
        messages = list(batch.messages)
        self._spare_numbers, self._taken = [], []
        # Runs of messages filed under one savepoint (see _run); a one-message
        # batch is filed under its own at once.
        start, stop = 0, (len(messages) if len(messages) > 1 else 0)
        while start < len(messages):
            if start == stop:
                # The message that failed in a run, under its own savepoint: it fails alone.
                self.deliver(conn, self._delivery(batch, messages, start, now, parsed, facts), result)
                start, stop = start + 1, len(messages)
                continue
            failed = self._run(conn, batch, messages, start, stop, now, parsed, facts, result)
            if failed is None:
                start = stop
            else:
                stop = failed
        self._spare_numbers, self._taken = [], []
        self.save_checkpoint(conn, batch, now)
        return result

    def _run(self, conn: Connection, batch: Batch, messages: list[Fetched], start: int, stop: int, now: datetime,
             parsed, facts: BatchFacts | None, result: BatchResult) -> int | None:
        """File messages[start:stop] under one savepoint; None, or the index of the message that failed.

        A savepoint per message costs SQLite a copy of every page the message
        changes (its sub-journal) and PostgreSQL two round trips, and almost
        every message succeeds.  So the batch is filed in runs: when a message
        fails, the run is rolled back, filed again up to that message, and the
        message is filed under its own savepoint (`deliver`, which quarantines
        it); the next run starts after it.  So each message is filed at most
        twice, and one bad message still never undoes the others.
        """
        saved = facts.copy() if facts is not None else None
        self._taken = []
        run = BatchResult()
        savepoint = conn.begin_nested()
        try:
            deliveries = []
            for i in range(start, stop):
                d = self._delivery(batch, messages, i, now, parsed, facts)
                d.index, d.in_run = i, True
                deliveries.append(d)
            self._keep_raws(conn, deliveries)
            for d in deliveries:
                i = d.index
                self.deliver(conn, d, run, guarded=False)
            if facts is not None:
                facts.write_rows(conn)
                self.flush_clocks(conn, facts, list(facts.clocks), now)
        except _Failed as failed:
            i = failed.index if failed.index is not None else i
            savepoint.rollback()
            if facts is not None:
                facts.absent, facts.new_refs, facts.clocks = saved.absent, saved.new_refs, {}
                facts.sightings, facts.customers = [], []
            if conn.dialect.name == "postgresql":
                # The sequence does not roll back: the run's numbers are free again (see allocate_ref).
                self._spare_numbers = sorted(self._taken + self._spare_numbers)
            return i
        savepoint.commit()
        result.add(run)
        return None

    def _keep_raws(self, conn: Connection, deliveries: list[Delivery]) -> None:
        """The raw bytes of the run's messages in one executemany, before the first
        is filed: what `keep_raw` would write for each (every message that is not
        history skipped; not the pieces SQLite writes of a large one)."""
        rows = []
        for d in deliveries:
            if d.raw_path is not None or (len(d.raw) > filing.RAW_PIECE and conn.dialect.name == "sqlite"):
                continue
            try:
                arrival(self, conn, d)
                skip_history(self, conn, d)
            except Exception:  # noqa: BLE001 - the message's own filing says what is wrong with it
                continue
            d.sha256 = d.sha256 or hashlib.sha256(d.raw).hexdigest()
            d.raw_kept = True
            rows.append((d.sha256, d.raw))
        if not rows:
            return
        try:
            filing.insert_raws(conn, rows)
        except Exception as exc:
            if filing.connection_lost(conn) or filing.contention(exc):
                raise
            # The first message is filed on its own (its bytes written alone), then the rest again.
            raise _Failed(deliveries[0].index) from exc

    def flush_clocks(self, conn: Connection, facts: BatchFacts, pks: list[int], now: datetime) -> None:
        """Refresh the SLA clocks the run's messages left for later (see apply.clock):
        many tickets at once (`slaclock.refresh_many`), the same due times as
        refreshing each after its message.  A ticket whose clock fails is blamed
        on the last message that left it (_Failed), which is then filed on its
        own, its clock refreshed at once, as without the wait."""
        pks = [pk for pk in pks if pk in facts.clocks]
        if not pks:
            return
        try:
            failed = slaclock.refresh_many(conn, pks, self.settings, self.policies, now)
            for pk in failed:
                slaclock.refresh(conn, pk, self.settings, self.policies, now)
        except Exception as exc:
            if filing.connection_lost(conn) or filing.contention(exc):
                raise
            raise _Failed(max(facts.clocks[pk] for pk in pks)) from exc
        for pk in pks:
            del facts.clocks[pk]

    @staticmethod
    def _delivery(batch: Batch, messages: list[Fetched], i: int, now: datetime, parsed,
                  facts: BatchFacts | None) -> Delivery:
        fetched = messages[i]
        ahead = parsed[i] if parsed is not None else None
        # The parser worker hashed the raw bytes it parsed (InboundMessage.raw_sha256): kept with them.
        sha256 = (ahead.raw_sha256 or "") if isinstance(ahead, InboundMessage) and not fetched.raw_path else ""
        return Delivery(batch.mailbox, batch.folder, batch.uidvalidity, fetched.uid, fetched.raw, now,
                        arrived=fetched.arrived, history_before=batch.history_before, raw_path=fetched.raw_path,
                        parsed=ahead, facts=facts, sha256=sha256)

    def deliver(self, conn: Connection, d: Delivery, result: BatchResult, *, guarded: bool = True) -> None:
        """File one message; `guarded`: under its own savepoint, quarantined if it fails.
        Unguarded (inside a run, see _run), a failure raises _Failed instead."""
        savepoint = filing.Savepoint(conn) if guarded else _NO_SAVEPOINT
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
            if filing.connection_lost(conn) or filing.contention(exc):
                # The store went away (PostgreSQL restarted, say), or another
                # transaction deadlocked with this one: no fault of this mail.
                # The batch rolls back and is filed again on the next pass.
                raise
            if not guarded:
                raise exc if isinstance(exc, _Failed) else _Failed() from exc
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
        result.commands += d.commands_waiting
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
        pk = self._spare_numbers.pop(0) if self._spare_numbers else counters.next_ticket_number(conn)
        self._taken.append(pk)
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
    if d.raw_kept:
        return
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
    if d.facts is not None and d.key in d.facts.absent:
        # Not stored when the batch began, and this is the batch's first
        # mail with the key (the key leaves the set here, so a second copy
        # in the same batch asks the store, which then holds the first).
        d.facts.absent.discard(d.key)
        row = None
    else:
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
    if d.msg.message_id and (d.facts.is_ours(conn, d.msg.message_id) if d.facts is not None
                             else filing.is_our_outgoing(conn, d.msg.message_id)):
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
                           FilingLookup(conn, d.facts, filer, d.now), filer.desk, d.now)


class FilingLookup(StoreLookup):
    """The store as deciding sees it (`decide.Lookup`): the tickets' and
    surveys' facts (`StoreLookup`) and the outbox's: what we sent, the
    acknowledgement budget's counts, bounce marks.  Reads only.  With the
    batch's `BatchFacts`, a Message-ID no stored message names is known to
    be so without a query."""

    def __init__(self, conn: Connection, facts: BatchFacts | None = None, filer: Filer | None = None,
                 now: datetime | None = None):
        super().__init__(conn)
        self.facts, self.filer, self.now = facts, filer, now

    def _clocked(self, pks) -> None:
        # A ticket whose clock waits for the end of the run is refreshed before deciding on it.
        if self.facts is not None and self.facts.clocks and self.filer is not None:
            self.filer.flush_clocks(self.conn, self.facts, list(pks), self.now)

    def ticket(self, pk: int):
        self._clocked([pk])
        return super().ticket(pk)

    def tickets_to_join(self, pks: list[int]):
        self._clocked(pks)
        return super().tickets_to_join(pks)

    def tickets_referencing(self, message_id: str) -> set[int]:
        if self.facts is not None and self.facts.unreferenced(message_id):
            return set()
        return super().tickets_referencing(message_id)

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
    mail_commands,
    notify_agents,
)

