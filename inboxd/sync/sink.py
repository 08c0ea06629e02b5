"""The store as the pollers see it: checkpoints in, batches filed.

Parsing is the slow part of ingest, so batches are parsed in a worker process
as soon as they are fetched, while the previous batch is being written; with
two cores, fetch and write share one and parsing has the other.  A worker
that cannot be started (or a batch too small to be worth it) is parsed in
the filing thread instead: the result is the same, only slower.

Large mail is always parsed in the filing thread: `largemail.parse_large`
needs about a chunk of memory for it, while handing it to the worker would
copy it twice (the pickle, and the worker's own copy).  Mail over
`[store] max_message_bytes` is not fetched at all but spooled to disk by the
IMAP edge (see `spool`) and quarantined there.

A sink is one lease holder (`inboxd.store.leases`): the pollers sync a folder only
while its lease is theirs, and every batch is filed in a transaction that
first checks, and renews, that lease.  A daemon that lost a folder to another
(it hung past the lease) therefore cannot file what it fetched before it knew.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Engine

from inboxd.desk import keywords
from inboxd.desk.keywords import Change
from inboxd.store import filing, folders, leases, sentcopies, writeback
from inboxd.config import Settings
from inboxd.store.engine import reading, store_unusable, writing
from inboxd.desk.ingest import Batch, BatchResult, Filer, FolderCheckpoint
from inboxd.mail.largemail import LARGE_MESSAGE_BYTES, Spool
from inboxd.mail.message import extract_message_id
from inboxd.sync.worker import ParserPool

log = logging.getLogger("inboxd.sync.sink")

# Below this many messages a batch is parsed inline: the round trip to the
# worker process costs more than it saves.
MIN_BATCH_FOR_WORKER = 8

# Most copies claimed (and appended) in one go; far fewer than one
# connection appends within the lease.
COPY_CLAIM_LIMIT = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreSink:
    """Implements the pollers' BatchSink over one engine."""

    def __init__(self, engine: Engine, settings: Settings, *, workers: int = 1,
                 clock: Callable[[], datetime] = utcnow, holder: str | None = None):
        self.engine = engine
        self.settings = settings
        self.filer = Filer(settings)
        self.clock = clock
        # Who holds the folders this sink syncs: the name on its leases, and
        # (as "host:pid") the owner that `inboxd status` shows.
        self.holder = holder or leases.process_holder()
        self.owner = leases.display_name(self.holder)
        self.lease = settings.store.lease
        # Set when something was filed, so the sender looks at the outbox now.
        self.nudge = threading.Event()
        self.max_attachment = settings.store.max_attachment_bytes
        # Mail larger than this is spooled to disk by the pollers, not fetched.
        self.max_message_bytes = settings.store.max_message_bytes
        # The parser processes (inboxd.sync.worker) start at the first batch worth them.
        self.pool: ParserPool | None = ParserPool(workers) if workers > 0 else None

    def close(self) -> None:
        """Give up every folder lease still held (a clean stop) and end the parser worker."""
        try:
            with writing(self.engine) as conn:
                leases.release_all(conn, self.holder)
        except Exception:  # The leases then run out by themselves.
            log.warning("could not release the folder leases of %s", self.owner, exc_info=True)
        self.stop_parsing()

    def stop_parsing(self) -> None:
        """End the parser workers now; mail filed after this is parsed in this process.

        `run --once` calls it once the sync is done: the sends, duties and
        Sent copies after it parse nothing, and a worker kept until the end
        added its 30 MiB to the daemon's growth in those steps (the tree's
        peak of a first sync).
        """
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    # -- folder leases ---------------------------------------------------------

    @property
    def lease_renew_seconds(self) -> float:
        """How often the pollers renew the leases they hold."""
        return self.lease.total_seconds() / leases.RENEWALS_PER_TTL

    def acquire_folder(self, mailbox: str, folder: str, now: datetime) -> bool:
        """Take (or keep) the folder's lease; False while another live daemon holds it.

        A holder that was a process of this machine and is gone (a daemon
        killed and restarted) is taken over at once rather than after its lease.
        """
        with writing(self.engine) as conn:
            if leases.acquire(conn, mailbox, folder, self.holder, now, self.lease):
                return True
            current = leases.holder_of(conn, mailbox, folder)
            if current is not None and leases.holder_gone(current.holder):
                if leases.take_over(conn, mailbox, folder, self.holder, current.holder, now, self.lease):
                    log.info("%s/%s: taking over the lease of %s, which no longer runs", mailbox, folder,
                             current.name)
                    return True
            return False

    def renew_folder(self, mailbox: str, folder: str, now: datetime) -> bool:
        """Extend the folder's lease; False if it is not ours any more."""
        with writing(self.engine) as conn:
            return leases.renew(conn, mailbox, folder, self.holder, now, self.lease)

    def release_folder(self, mailbox: str, folder: str) -> None:
        try:
            with writing(self.engine) as conn:
                leases.release(conn, mailbox, folder, self.holder)
        except Exception:  # It runs out by itself.
            log.warning("could not release the lease of %s/%s", mailbox, folder, exc_info=True)

    def lease_holder(self, mailbox: str, folder: str) -> leases.LeaseHolder | None:
        with reading(self.engine) as conn:
            return leases.holder_of(conn, mailbox, folder)

    def _check_lease(self, conn, batch: Batch, now: datetime) -> None:
        # In the batch's own transaction, so the check and the write are one.
        if not leases.guard(conn, batch.mailbox, batch.folder, self.holder, now, self.lease):
            raise leases.LeaseLost(batch.mailbox, batch.folder, self.holder)

    # -- checkpoints and batches ------------------------------------------------

    def checkpoint(self, mailbox: str, folder: str) -> FolderCheckpoint | None:
        with reading(self.engine) as conn:
            return folders.read_checkpoint(conn, mailbox, folder)

    def begin_folder(self, mailbox: str, folder: str, uidvalidity: int, history_before: datetime) -> None:
        with writing(self.engine) as conn:
            folders.begin_folder(conn, mailbox, folder, uidvalidity, history_before, self.clock())

    def folder_state(self, mailbox: str, folder: str, error: str | None, now: datetime) -> None:
        try:
            with writing(self.engine) as conn:
                folders.set_folder_state(conn, mailbox, folder, error, now, self.owner)
        except Exception:  # Health bookkeeping never stops a sync.
            log.warning("could not record the state of %s/%s", mailbox, folder, exc_info=True)

    def server_uid(self, mailbox: str, folder: str, uid: int) -> None:
        try:
            with writing(self.engine) as conn:
                folders.record_server_uid(conn, mailbox, folder, uid)
        except Exception:  # Like the folder's state, the lag is bookkeeping that never stops a sync.
            log.warning("could not record the newest server UID of %s/%s", mailbox, folder, exc_info=True)

    def spool(self) -> Spool:
        """A file for one mail over max_message_bytes, written as it is fetched."""
        return Spool(self.settings.store.data_dir / "oversize")

    def expect(self, count: int) -> None:
        """A folder has `count` new messages to fetch: start the parser worker now if they are worth it."""
        if self.pool is not None and count >= MIN_BATCH_FOR_WORKER:
            self.pool.warm()

    def prepare(self, batch: Batch) -> tuple[list[int], Future] | None:
        """Start parsing the batch's small mail in the worker: (their positions, the future)."""
        if self.pool is None:
            return None
        small = [i for i, m in enumerate(batch.messages) if 0 < len(m.raw) <= LARGE_MESSAGE_BYTES]
        if len(small) < MIN_BATCH_FOR_WORKER:
            return None
        raws = [batch.messages[i].raw for i in small]
        return small, self.pool.submit(raws, self.max_attachment, self.settings.store.data_dir)

    def file(self, batch: Batch, prepared: tuple[list[int], Future] | None) -> BatchResult:
        """File `batch` in one transaction with its checkpoint.

        Each message already has its own savepoint and quarantine, so a
        transaction that fails as a whole is an unexpected error.  It gets a
        second try; a batch that fails twice is split in halves, each filed
        in its own transaction with a checkpoint up to its own last UID,
        down to the one message that breaks it, which is quarantined with
        its raw bytes alone (`Filer.quarantine_alone`).  So one bad mail
        never holds back the good mail behind it, and nothing is skipped:
        if even that fails, the error goes up and the checkpoint stays
        before the message.
        """
        parsed = self._parsed(batch, prepared)
        try:
            result = self._file_once(batch, parsed)
        except leases.LeaseLost:
            raise
        except Exception as exc:
            if not batch.messages or store_unusable(exc):
                raise
            log.warning("%s/%s: filing UIDs %s failed (%s); trying once more",
                        batch.mailbox, batch.folder, _uids(batch), _describe(exc))
            try:
                result = self._file_once(batch, parsed)
            except leases.LeaseLost:
                raise
            except Exception as again:
                if store_unusable(again):
                    raise
                log.error("%s/%s: filing UIDs %s failed again (%s); splitting the batch to find the mail that"
                          " breaks it", batch.mailbox, batch.folder, _uids(batch), _describe(again))
                result = self._file_split(batch, parsed, again)
        if result.filed:
            # Filing may have queued mail (acknowledgements, relays).
            self.nudge.set()
        if result.commands:
            # Agents' commands by mail run once their mail is committed.
            self.run_commands([(batch.mailbox, batch.folder)])
        return result

    def folder_command(self, mailbox: str, folder: str, uidvalidity: int, uid: int,
                       message_id: str | None) -> str:
        """Act on a message found in a command folder (once; inboxd.desk.foldercommands); the folder to move
        it back to."""
        from inboxd.desk.foldercommands import act

        outcome = act(self.engine, self.settings, self.settings.mailbox(mailbox), folder, uidvalidity, uid,
                      message_id, self.clock())
        if outcome.acted:
            # Closing may have queued mail (a survey).
            self.nudge.set()
        return outcome.back_to

    def run_commands(self, places: list[tuple[str, str]]) -> int:
        """Run the agents' commands by mail that wait, of mail filed from these (mailbox, folder) places
        (the ones whose leases this sink holds); also what a killed daemon left.  Never raises."""
        from inboxd.desk.agentcommands import run_pending

        try:
            done = run_pending(self.engine, self.settings, self.clock(), places)
        except Exception:  # They wait for the next pass.
            log.warning("could not run the commands by mail waiting in %s", places, exc_info=True)
            return 0
        if done:
            self.nudge.set()
        return done

    def _parsed(self, batch: Batch, prepared: tuple[list[int], Future] | None) -> list | None:
        """What the worker parsed, by position in the batch; None where the filer parses."""
        if prepared is None:
            return None
        positions, future = prepared
        try:
            parsed: list = [None] * len(batch.messages)
            for i, msg in zip(positions, future.result()):
                parsed[i] = msg
            return parsed
        except Exception as exc:  # A crashed worker costs speed, not mail: parse inline.
            log.warning("%s/%s: the parser worker failed on UIDs %s (%s); parsing in this process",
                        batch.mailbox, batch.folder, _uids(batch), _describe(exc))
            return None

    def _file_once(self, batch: Batch, parsed: list | None) -> BatchResult:
        with writing(self.engine) as conn:
            filing.serialize_filing(conn)
            now = self.clock()
            self._check_lease(conn, batch, now)
            return self.filer.file_batch(conn, batch, now, parsed)

    def _file_split(self, batch: Batch, parsed: list | None, error: Exception) -> BatchResult:
        """File a failed batch as two halves, splitting again what fails, in UID order."""
        messages = list(batch.messages)
        if len(messages) == 1:
            fetched = messages[0]
            log.error("<%s> %s/%s uid %d fails its transaction alone (%s); quarantining its raw bytes only",
                      extract_message_id(fetched.raw) or "", batch.mailbox, batch.folder, fetched.uid,
                      _describe(error))
            with writing(self.engine) as conn:
                filing.serialize_filing(conn)
                now = self.clock()
                self._check_lease(conn, batch, now)
                return self.filer.quarantine_alone(conn, batch, now, error)
        half = len(messages) // 2
        # The first half's checkpoint is its own last UID; the second keeps
        # the batch's, which may lie past its last message (expunged UIDs).
        parts = [
            (replace(batch, messages=messages[:half], last_uid=messages[half - 1].uid),
             parsed[:half] if parsed is not None else None),
            (replace(batch, messages=messages[half:]), parsed[half:] if parsed is not None else None),
        ]
        total = BatchResult()
        for part, part_parsed in parts:
            try:
                total.add(self._file_once(part, part_parsed))
            except leases.LeaseLost:
                raise
            except Exception as exc:
                if store_unusable(exc):
                    raise
                log.warning("%s/%s: UIDs %s failed (%s); splitting them", part.mailbox, part.folder,
                            _uids(part), _describe(exc))
                total.add(self._file_split(part, part_parsed, exc))
        return total

    def pending_copies(self, mailbox: str) -> list[tuple[int, bytes]]:
        """Sent copies waiting to be appended (unclaimed, or claimed by a daemon that died); claims nothing."""
        with reading(self.engine) as conn:
            return sentcopies.pending_copies(conn, mailbox, self._copy_lease_expired(), COPY_CLAIM_LIMIT)

    def claim_copies(self, mailbox: str, now: datetime | None = None) -> list[tuple[int, bytes]]:
        """Claim the Sent copies to append now (compare-and-swap, like the sender's claim of a send).

        Two daemons on one store each get different rows, so no copy is
        appended twice.  A claim lasts the outbox lease: the copies of a
        daemon that died mid-append are offered again after it (and one
        whose APPEND had gone through may then appear twice; that window
        is the lease's, as for sending).
        """
        now = now or self.clock()
        with writing(self.engine) as conn:
            return sentcopies.claim_copies(conn, mailbox, now, self._copy_lease_expired(now), COPY_CLAIM_LIMIT)

    def _copy_lease_expired(self, now: datetime | None = None) -> datetime:
        return (now or self.clock()) - self.settings.outbox.lease

    def copy_done(self, outbox_id: int) -> None:
        with writing(self.engine) as conn:
            sentcopies.copy_done(conn, outbox_id)

    # -- write-back (inboxd.desk.keywords, inboxd.store.writeback) ----------------

    def writeback_due(self, mailbox: str, folder: str, uidvalidity: int, mode: str,
                      after_uid: int) -> list[tuple[int, Change, writeback.Written]]:
        """The next messages (by UID above `after_uid`) whose write-back is missing or stale:
        (uid, what to send, what will then have been written)."""
        now = self.clock()
        with reading(self.engine) as conn:
            rows = writeback.due(conn, mailbox, folder, uidvalidity, now, mode, after_uid=after_uid)
        out = []
        for row in rows:
            c = keywords.change(keywords.TicketState.from_row(row), now, mode, writeback.written_keywords(row),
                                row.w_seen)
            out.append((row.uid, c, writeback.Written(row.uid, row.ticket_id, row.version, c.overdue,
                                                      c.keywords, c.seen_written)))
        return out

    def writeback_done(self, mailbox: str, folder: str, uidvalidity: int, mode: str,
                       done: list[writeback.Written], stores: int, error: str | None) -> None:
        """Remember what the server took, count the STOREs sent, and set or clear the folder's write error."""
        now = self.clock()
        with writing(self.engine) as conn:
            writeback.record(conn, mailbox, folder, uidvalidity, mode, done, now)
            writeback.add_stores(conn, mailbox, folder, stores, error, now)

    def writeback_folder(self, mailbox: str, folder: str, *, keywords: bool, seen: bool, gmail: bool) -> None:
        """What the folder allows, as its read-write SELECT said (PERMANENTFLAGS, X-GM-EXT-1)."""
        try:
            with writing(self.engine) as conn:
                writeback.folder_checked(conn, mailbox, folder, keywords=keywords, seen=seen, gmail=gmail,
                                         now=self.clock())
        except Exception:  # Bookkeeping for status; the writes themselves still follow PERMANENTFLAGS.
            log.warning("could not record what %s/%s allows", mailbox, folder, exc_info=True)


def _describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - the error may quote the mail that broke it
        return type(exc).__name__


def _uids(batch: Batch) -> str:
    if not batch.messages:
        return "(none)"
    return f"{batch.messages[0].uid}..{batch.messages[-1].uid}"
