"""Step 1: sync new mail from each mailbox's folders; the only imapclient user.

A folder is synced incrementally by UID: everything above the stored
checkpoint is fetched in batches with BODY.PEEK[] on a folder opened with
EXAMINE (read-only), so the server cannot set \\Seen and nothing is deleted or
moved.  Batches are fetched one ahead on a helper thread while the previous
one is being filed, which keeps the network and the parser busy together;
every hand-off between the two has a bounded wait, so a failure on either
side ends the sync attempt with a logged error instead of a silent hang.
Batches are bounded in bytes as well as in count (RFC822.SIZE is fetched
first), and each message carries its INTERNALDATE: the time the server
received it, which is the ticket's time and decides what is history.  A
message larger than the store's max_message_bytes is never held in memory:
it is fetched a piece at a time (BODY.PEEK[]<offset.length>) into a file
the store gives (`BatchSink.spool`), in a batch of its own, and the store
quarantines it.

When the server offers IDLE, the poller waits in IDLE on the first healthy
folder so new mail is picked up within about a second; otherwise it polls.
Each folder has its own error state and back-off: a folder deleted on the
server is reported (and retried ever less often) while the others go on.
Connection failures back off and reconnect, and the back-off grows until a
sync makes progress, not merely until a login succeeds.  One mailbox's
trouble never touches another's.

Several daemons may share one store.  A poller syncs a folder only while it
holds the folder's lease (`inboxd.store.leases`, through the sink): it takes the
lease before each sync, renews it after every batch and while it waits for
mail, and gives it up when it stops cleanly.  A folder whose lease another
live daemon holds is skipped without an error; the poller tries again at
every pass and takes the folder over once that lease has run out.
"""

from __future__ import annotations

import logging
import re
import queue
from array import array
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from inboxd import oauth
from inboxd.tls import client_context
from inboxd.config import ImapSettings, MailboxSettings
from inboxd.desk.ingest import Batch, BatchResult, Fetched, FolderCheckpoint
from inboxd.mail.message import extract_message_id
from inboxd.sync import heap
from inboxd.store.leases import LeaseLost

log = logging.getLogger("inboxd.sync.imap")

# IDLE is renewed well inside the 29 minutes RFC 2177 allows servers to drop it.
IDLE_RENEW_SECONDS = 25 * 60
MAX_BACKOFF_SECONDS = 60.0
# A folder that fails on its own (deleted, renamed, no permission) is retried
# ever less often, up to this, so it costs a log line now and then, not a loop.
MAX_FOLDER_BACKOFF_SECONDS = 15 * 60.0
# How long one hand-off between the fetch thread and the filer may wait
# before the sync attempt is declared stuck and ended.
HANDOFF_TIMEOUT_SECONDS = 600.0
# UIDs whose size and arrival time are asked for in one FETCH.  imapclient
# answers with a dict, a datetime and a time zone object per message (about
# 1 KB each); a thousand keep that answer near 1 MB while it is read, and
# what the batches need of it is kept compactly (`_meta`).
META_CHUNK = 1000
# UIDs asked for in one SEARCH, and the most SEARCH commands for a folder (`_new_uids`).
SEARCH_WINDOW = 10000
SEARCH_WINDOWS = 100
# The size of a folder sync's first batch (see MailboxPoller._batches).
FIRST_BATCH = 25
# Bytes asked for in one partial FETCH of a message over max_message_bytes.
SPOOL_PIECE = 2 * 1024 * 1024
# The most STORE commands one folder's write-back sends in one pass: turning
# write_back on for a folder of years of mail writes it over several passes
# instead of keeping new mail waiting behind it.
WRITE_BUDGET = 500


class BatchSink(Protocol):
    """Where fetched batches go (the store), as the poller sees it."""

    max_message_bytes: int        # larger mail goes to spool(), not into a batch's memory
    lease_renew_seconds: float    # how often the folder leases a poller holds are renewed
    def spool(self) -> Any: ...   # a file to write one such mail to: write(), finish() -> Path, discard()
    def acquire_folder(self, mailbox: str, folder: str, now: datetime) -> bool: ...
    def renew_folder(self, mailbox: str, folder: str, now: datetime) -> bool: ...
    def release_folder(self, mailbox: str, folder: str) -> None: ...
    def lease_holder(self, mailbox: str, folder: str) -> Any: ...   # .name and .expires_at, or None
    def checkpoint(self, mailbox: str, folder: str) -> FolderCheckpoint | None: ...
    def begin_folder(self, mailbox: str, folder: str, uidvalidity: int, history_before: datetime) -> None: ...
    def expect(self, count: int) -> None: ...
    def prepare(self, batch: Batch) -> Any: ...
    def file(self, batch: Batch, prepared: Any) -> BatchResult: ...
    def folder_state(self, mailbox: str, folder: str, error: str | None, now: datetime) -> None: ...
    def server_uid(self, mailbox: str, folder: str, uid: int) -> None: ...   # the newest UID, for the lag
    def pending_copies(self, mailbox: str) -> list[tuple[int, bytes]]: ...
    def claim_copies(self, mailbox: str) -> list[tuple[int, bytes]]: ...
    def copy_done(self, outbox_id: int) -> None: ...
    # Write-back (inboxd.store.writeback): what is due, what the server took, what a folder allows.
    def writeback_due(self, mailbox: str, folder: str, uidvalidity: int, mode: str, after_uid: int) -> list: ...
    def writeback_done(self, mailbox: str, folder: str, uidvalidity: int, mode: str, done: list, stores: int,
                       error: str | None) -> None: ...
    def writeback_folder(self, mailbox: str, folder: str, *, keywords: bool, seen: bool, gmail: bool) -> None: ...


@dataclass(frozen=True)
class Progress:
    """What a poller reports as a folder's sync goes along (for progress bars and logs)."""

    mailbox: str
    folder: str
    done: int                     # messages of this sync handled so far
    total: int                    # messages this sync found on the server
    result: BatchResult | None = None   # the batch just filed, if any


def connect(settings: ImapSettings) -> IMAPClient:
    """A logged-in client for `settings` (tls, starttls, or plain when configured)."""
    if settings.security == "tls":
        client = IMAPClient(settings.host, port=settings.port, ssl=True,
                            ssl_context=client_context(settings.ca_file), timeout=settings.timeout)
    else:
        client = IMAPClient(settings.host, port=settings.port, ssl=False, timeout=settings.timeout)
        if settings.security == "starttls":
            client.starttls(client_context(settings.ca_file))
    # INTERNALDATE as the server gave it, with its offset: it is a ticket's
    # time, and local-time normalisation would lose the offset.
    client.normalise_times = False
    # imapclient runs imaplib at debug level 5, which formats every untagged
    # response, literals included, into a log line (dropped unless debug
    # logging is on): two extra copies of each fetched mail as text, 95 MiB
    # for a 41 MiB mail.  Level 4 still logs every line read and sent.
    client._imap.debug = 4
    try:
        if settings.oauth is not None:
            _oauth_login(client, settings)
        else:
            client.login(settings.username, settings.password.reveal() if settings.password else "")
    except Exception:
        _logout_quietly(client)
        raise
    return client


def _oauth_login(client: IMAPClient, settings: ImapSettings) -> None:
    """Sign in with the mailbox's OAuth2 access token (refreshed first when it is near its end)."""
    # inboxd.oauth raises its own OAuthError (a refresh that failed) before anything is sent.
    token = oauth.access_token(settings.oauth).token
    if settings.oauth.mechanism == "oauthbearer":
        client.oauthbearer_login(settings.username, token)
    else:
        client.oauth2_login(settings.username, token)


def check_login(settings: ImapSettings, folders: tuple[str, ...] = ()) -> str:
    """Log in and out once; a short description of the server for check-config.

    Every folder in `folders` must exist: a missing one raises an error that
    names it.
    """
    client = connect(settings)
    try:
        caps = {c.decode() for c in client.capabilities()}
        missing = [f for f in folders if not client.folder_exists(f)]
        if missing:
            raise LookupError(f"folder(s) missing on the server: {', '.join(missing)}")
        return ("IDLE" if "IDLE" in caps else "no IDLE (polling)") + (
            f"; folders {', '.join(folders)} present" if folders else "")
    finally:
        _logout_quietly(client)


def server_uids(settings: ImapSettings, folders: tuple[str, ...]) -> dict[str, tuple[int, list[int]] | str]:
    """For `inboxd audit`: each folder's (UIDVALIDITY, every UID), or the error text."""
    client = connect(settings)
    out: dict[str, tuple[int, list[int]] | str] = {}
    try:
        for folder in folders:
            try:
                info = client.select_folder(folder, readonly=True)
                out[folder] = (int(info[b"UIDVALIDITY"]), sorted(client.search(["ALL"])))
            except IMAPClientAbortError:
                raise
            except IMAPClientError as exc:
                out[folder] = _describe(exc)
    finally:
        _logout_quietly(client)
    return out


def _logout_quietly(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception:
            pass


@dataclass
class MailboxStatus:
    """How the mailbox's last pass went.  `ok` is false when the login or a
    configured folder failed; a missing Sent folder is only a warning."""

    ok: bool = True
    error: str = ""
    synced: int = 0
    folder_errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _is_connection_error(exc: BaseException) -> bool:
    """Whether `exc` means the connection is gone (reconnect), rather than a
    problem of one folder (a NO or BAD answer to SELECT, say)."""
    return _connection_lost(exc) or not isinstance(exc, IMAPClientError)


def _connection_lost(exc: BaseException) -> bool:
    """Whether `exc` is the connection itself failing (a socket, TLS or IMAP abort error)."""
    return isinstance(exc, IMAPClientAbortError | OSError | ssl.SSLError | EOFError | ConnectionError)


@dataclass
class _FolderHealth:
    error: str = ""
    failures: int = 0
    retry_at: float = 0.0         # time.monotonic() before which it is not retried


class MailboxPoller:
    """Syncs one mailbox's folders into a sink, once or for ever."""

    def __init__(self, mailbox: MailboxSettings, sink: BatchSink, stop: threading.Event | None = None, *,
                 progress: Callable[[Progress], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), copies: bool = True,
                 writes: bool = True):
        self.mailbox = mailbox
        self.settings = mailbox.imap
        self.sink = sink
        self.stop = stop or threading.Event()
        self.progress = progress
        self.clock = clock
        # Whether sent mail's copies are appended to the Sent folder (never in a dry run).
        self.copies = copies
        # Whether the ticket's state may be written back (write_back, seen_on_close; never in a dry run).
        self.writes = writes
        # What each folder allowed at its last read-write SELECT, so a change is recorded once.
        self._allows: dict[str, tuple[bool, bool, bool]] = {}
        # Set by the sender when mail went out, so its Sent copy is appended
        # without waiting for the next poll.
        self.wake = threading.Event()
        self.status = MailboxStatus()
        self.health: dict[str, _FolderHealth] = {}
        # Moved on by every step that shows the poller is alive (a batch
        # filed, an IDLE check, a back-off tick); the daemon's watchdog
        # reads it.
        self.heartbeat = time.monotonic()
        self._client: IMAPClient | None = None
        # UIDNEXT of each folder as last seen before IDLE (see _wait_for_mail).
        self._uidnext: dict[str, int] = {}
        # The folders whose leases this poller holds, those another daemon
        # holds (each reported once), and when the held ones are renewed next.
        self._held: set[str] = set()
        self._standby: set[str] = set()
        self._renew_at = 0.0

    @property
    def folders(self) -> tuple[str, ...]:
        """Every folder synced: the configured ones, then the Sent folder."""
        sent = self.settings.sent_folder
        return self.settings.folders + ((sent,) if sent and sent not in self.settings.folders else ())

    def abort(self) -> None:
        """Break the current connection from another thread (the watchdog's
        remedy for a poller stuck in I/O): the poller sees an error and reconnects."""
        client = self._client
        if client is not None:
            try:
                client.socket().shutdown(socket.SHUT_RDWR)
            except Exception:
                pass

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    # -- folder leases ------------------------------------------------------------

    def _hold(self, folder: str) -> bool:
        """Whether this poller may sync `folder` now: it holds, or has just taken, the folder's lease."""
        if self.sink.acquire_folder(self.mailbox.name, folder, self.clock()):
            if folder in self._standby:
                log.info("%s/%s: the folder's lease is ours now; syncing it", self.mailbox.name, folder)
            self._held.add(folder)
            self._standby.discard(folder)
            return True
        if folder in self._held:
            self._lost(folder)
        elif folder not in self._standby:
            holder = self.sink.lease_holder(self.mailbox.name, folder)
            log.info("%s/%s: another daemon syncs this folder (%s); standing by until its lease runs out",
                     self.mailbox.name, folder,
                     f"{holder.name}, lease until {holder.expires_at:%Y-%m-%dT%H:%M:%SZ}" if holder else "lease taken")
            self._standby.add(folder)
        return False

    def keep_leases(self) -> None:
        """Renew the leases this poller holds, every lease_renew_seconds (called as it works and waits)."""
        if not self._held or time.monotonic() < self._renew_at:
            return
        self._renew_at = time.monotonic() + self.sink.lease_renew_seconds
        now = self.clock()
        for folder in sorted(self._held):
            try:
                kept = self.sink.renew_folder(self.mailbox.name, folder, now)
            except Exception as exc:  # The store is out of reach; each batch's own check still guards it.
                log.warning("%s/%s: could not renew the folder's lease: %s", self.mailbox.name, folder,
                            _describe(exc))
                continue
            if not kept:
                self._lost(folder)

    def _lost(self, folder: str) -> None:
        log.warning("%s/%s: another daemon took over the folder's lease; this one stops syncing it",
                    self.mailbox.name, folder)
        self._held.discard(folder)
        self._standby.add(folder)

    def release_leases(self) -> None:
        """Give up every folder this poller holds (a clean stop), so another daemon need not wait."""
        for folder in sorted(self._held):
            self.sink.release_folder(self.mailbox.name, folder)
        self._held.clear()

    # -- one pass ---------------------------------------------------------------

    def run_once(self) -> MailboxStatus:
        """Connect, sync every folder once, disconnect; never raises."""
        try:
            client = connect(self.settings)
            self._client = client
            try:
                self.sync(client)
            finally:
                self._client = None
                _logout_quietly(client)
        except Exception as exc:
            self._failed(exc)
        finally:
            self.release_leases()
        return self.status

    def append_copies(self, client: IMAPClient) -> int:
        """Put a copy of each mail inboxd sent into the Sent folder, marked \\Seen."""
        folder = self.settings.sent_folder
        # Claimed, not just read, so another daemon on the store appends the
        # others; looked for first, so a sink without copies (a dry run) claims nothing.
        copies = self.sink.claim_copies(self.mailbox.name) if folder and self.sink.pending_copies(
            self.mailbox.name) else []
        for outbox_id, data in copies:
            client.append(folder, data, flags=[b"\\Seen"])
            self.sink.copy_done(outbox_id)
        if copies:
            log.info("%s: appended %d sent message(s) to %s", self.mailbox.name, len(copies), folder)
        return len(copies)

    def append_copies_once(self) -> None:
        """Connect, append pending Sent copies, disconnect; failures are logged only."""
        if not (self.settings.sent_folder and self.sink.pending_copies(self.mailbox.name)):
            return
        try:
            client = connect(self.settings)
            try:
                self.append_copies(client)
            finally:
                _logout_quietly(client)
        except Exception as exc:
            log.warning("%s: could not append Sent copies: %s", self.mailbox.name, _describe(exc))

    def sync(self, client: IMAPClient) -> int:
        """One pass over every folder that is due; returns the messages filed.

        A folder's own failure is recorded against it and the other folders
        go on; a failure of the connection is raised, to reconnect.
        """
        self.wake.clear()
        status = MailboxStatus(ok=True, synced=self.status.synced)
        try:
            if self.copies:
                self.append_copies(client)
        except Exception as exc:
            if _is_connection_error(exc):
                raise
            # Most likely the Sent folder is missing; its own sync below says so.
            log.debug("%s: could not append Sent copies: %s", self.mailbox.name, _describe(exc))
        filed = 0
        for folder in self.folders:
            if self.stop.is_set():
                break
            health = self.health.setdefault(folder, _FolderHealth())
            if health.retry_at > time.monotonic():
                self._note_folder_error(status, folder, health.error)
                continue
            try:
                if not self._hold(folder):
                    continue
                filed += self.sync_folder(client, folder)
            except LeaseLost:
                # Another daemon took the folder over mid-sync; what it fetched was not filed here.
                self._lost(folder)
                continue
            except Exception as exc:
                if _is_connection_error(exc):
                    raise
                self._folder_failed(folder, health, exc)
                self._note_folder_error(status, folder, health.error)
                continue
            if health.failures:
                log.warning("%s/%s: syncing again after %d failed attempt(s)", self.mailbox.name, folder,
                            health.failures)
            self.health[folder] = _FolderHealth()
            self.sink.folder_state(self.mailbox.name, folder, None, self.clock())
            self._write_back(client, folder)
            self.beat()
        # Commands by mail that a killed daemon left waiting (inboxd.desk.agentcommands); a dry run's sink
        # has none.
        if hasattr(self.sink, "run_commands") and self._held:
            self.sink.run_commands([(self.mailbox.name, f) for f in sorted(self._held)])
            self._command_folders(client)
        status.synced = self.status.synced
        self.status = status
        return filed

    def _command_folders(self, client: IMAPClient) -> None:
        """[mailboxes.imap] command_folders: each message there is acted on (the sink decides and applies it,
        once) and moved back where it came from with UID MOVE (RFC 6851).  Opt-in; a folder's failure is
        logged and the others go on."""
        for folder in self.settings.command_folders:
            try:
                info = client.select_folder(folder)
                uids = client.search(["ALL"])
                if not uids:
                    continue
                uidvalidity = int(info[b"UIDVALIDITY"])
                heads = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
                for uid in uids:
                    head = heads.get(uid, {}).get(b"BODY[HEADER.FIELDS (MESSAGE-ID)]") or b""
                    back = self.sink.folder_command(self.mailbox.name, folder, uidvalidity, uid,
                                                    extract_message_id(head + b"\r\n\r\n"))
                    client.move([uid], back)
            except Exception as exc:
                if _is_connection_error(exc):
                    raise
                log.warning("%s: command folder %r: %s", self.mailbox.name, folder, _describe(exc))

    def _folder_failed(self, folder: str, health: _FolderHealth, exc: BaseException) -> None:
        message = _describe(exc)
        if folder == self.settings.sent_folder and folder not in self.settings.folders:
            key = f"mailboxes[{self.mailbox.name}].imap.sent_folder"
        else:
            key = f"mailboxes[{self.mailbox.name}].imap.folders"
        text = f"folder {folder!r} ({key}): {message}"
        health.failures += 1
        delay = min(2.0 ** health.failures, MAX_FOLDER_BACKOFF_SECONDS)
        health.retry_at = time.monotonic() + delay
        # The first failure, and any change of reason, is worth a line; the
        # same reason again is not, or a deleted folder would flood the log.
        if _without_timings(text) != _without_timings(health.error):
            log.error("%s: %s; other folders go on, retrying it in %.0f s and ever less often",
                      self.mailbox.name, text, delay)
        else:
            log.debug("%s: %s (attempt %d, next in %.0f s)", self.mailbox.name, text, health.failures, delay)
        health.error = text
        # Imported when needed: prometheus_client is not worth loading at every start for an error counter.
        from inboxd.reports.prometheus import record_imap_error

        record_imap_error(self.mailbox.name, "folder" if isinstance(exc, IMAPClientError) else _error_kind(exc))
        self.sink.folder_state(self.mailbox.name, folder, text, self.clock())

    def _note_folder_error(self, status: MailboxStatus, folder: str, error: str) -> None:
        if folder == self.settings.sent_folder and folder not in self.settings.folders:
            status.warnings.append(error)
        else:
            status.ok = False
            status.folder_errors[folder] = error
            status.error = status.error or error

    def sync_folder(self, client: IMAPClient, folder: str) -> int:
        info = client.select_folder(folder, readonly=True)
        uidvalidity = int(info[b"UIDVALIDITY"])
        known = self.sink.checkpoint(self.mailbox.name, folder)
        start = 1
        if known is None:
            # The folder's first sync: what is already there is history.
            # INTERNALDATE has whole seconds: a cut-off with a fraction would
            # make mail that arrives in the same second, just after this
            # sync, look older than it.  So that second counts as new work.
            cutoff = self.mailbox.history_before or self.clock().replace(microsecond=0)
            self.sink.begin_folder(self.mailbox.name, folder, uidvalidity, cutoff)
            history_before: datetime | None = cutoff
            log.info("%s/%s: first sync; mail that arrived before %s is history (%s)",
                     self.mailbox.name, folder, cutoff.isoformat(timespec="seconds"), self.mailbox.history)
        else:
            history_before = self.mailbox.history_before or known.history_before
            if known.uidvalidity == uidvalidity:
                start = known.last_uid + 1
            else:
                # The server renumbered the folder.  Fetch it all again; the
                # store recognises each message by Message-ID or content hash.
                log.warning("%s/%s: UIDVALIDITY changed from %d to %d; resyncing the folder",
                            self.mailbox.name, folder, known.uidvalidity, uidvalidity)
        uids = _new_uids(client, start, int(info.get(b"UIDNEXT") or 0))
        # The newest UID the server has, so the store can tell the sync lag
        # (UIDNEXT - 1, or the highest UID found when the server gives no UIDNEXT).
        self.sink.server_uid(self.mailbox.name, folder,
                             max(int(info.get(b"UIDNEXT") or 0) - 1, uids[-1] if uids else 0))
        if not uids:
            if known is not None and known.uidvalidity != uidvalidity:
                self.sink.file(Batch(self.mailbox.name, folder, uidvalidity, 0, (), history_before), None)
            return 0
        log.info("%s/%s: %d new message(s) from UID %d", self.mailbox.name, folder, len(uids), uids[0])
        self.sink.expect(len(uids))
        filed = done = 0
        self._report(folder, 0, len(uids), None)
        batches = self._batches(client, folder, uidvalidity, uids, history_before)
        for batch, prepared in _prefetch(batches, self.sink.prepare, stop=self.stop, tick=self.keep_leases):
            result = self.sink.file(batch, prepared)
            filed += result.filed
            done += len(batch.messages)
            self.status.synced += len(batch.messages)
            self.beat()
            self.keep_leases()
            self._report(folder, done, len(uids), result)
            # The batch is done with: what it leaves free in the C heap goes back to the system
            # before the next one comes (inboxd.sync.heap says why).
            del batch, prepared, result
            heap.release()
            if self.stop.is_set():
                break
        return filed

    # -- write-back ---------------------------------------------------------------

    def _write_back(self, client: IMAPClient, folder: str) -> None:
        """Bring the folder's customer messages in step with their tickets (write_back, seen_on_close).

        Only the configured folders, never the Sent folder.  The folder is
        SELECTed read-write for this; PERMANENTFLAGS decides what may be
        written (no \\* means no keywords, and `status` says so).  Messages
        with the same change share one UID STORE (.SILENT).  A STORE that
        fails leaves its messages due, to be tried at the next sync, and the
        others go on; only a broken connection is raised.
        """
        imap = self.settings
        if not (self.writes and (imap.write_back or imap.seen_on_close)) or folder not in imap.folders \
                or folder == imap.sent_folder:
            return
        try:
            self._write_folder(client, folder)
        except LeaseLost:
            raise
        except Exception as exc:
            # Only a broken connection ends the pass (to reconnect); anything else, the store's
            # trouble included, costs this folder's write-back until the next sync.
            if _connection_lost(exc):
                raise
            log.warning("%s/%s: write-back failed: %s; retried at the next sync", self.mailbox.name, folder,
                        _describe(exc))

    def _write_folder(self, client: IMAPClient, folder: str) -> None:
        imap, name = self.settings, self.mailbox.name
        info = client.select_folder(folder, readonly=False)
        uidvalidity = int(info[b"UIDVALIDITY"])
        permanent = {_text(f).lower() for f in info.get(b"PERMANENTFLAGS") or ()}
        gmail = client.has_capability("X-GM-EXT-1")
        allows = ("\\*" in permanent, "\\seen" in permanent, gmail)
        if self._allows.get(folder) != allows:
            self._allows[folder] = allows
            self.sink.writeback_folder(name, folder, keywords=allows[0], seen=allows[1], gmail=gmail)
            if imap.write_back and not (allows[0] or gmail):
                log.warning("%s/%s: the server keeps no new keywords here (PERMANENTFLAGS %s); no state is"
                            " written as keywords", name, folder, " ".join(sorted(permanent)) or "empty")
        mode = ("g" if gmail else "k") if imap.write_back and (allows[0] or gmail) else ""
        mode += "s" if imap.seen_on_close and allows[1] else ""
        if not mode:
            return
        after, sent, error = 0, 0, None
        while not self.stop.is_set() and sent < WRITE_BUDGET:
            due = self.sink.writeback_due(name, folder, uidvalidity, mode, after)
            if not due:
                break
            after = due[-1][0]
            groups: dict[tuple, list] = {}
            done = []
            for uid, change, written in due:
                if change.empty:
                    done.append(written)
                else:
                    groups.setdefault((change.add, change.remove, change.seen), []).append((uid, written))
            stores = 0
            try:
                for (add, remove, seen), items in groups.items():
                    if sent + stores >= WRITE_BUDGET:
                        break  # The rest stays due: the next sync goes on from here.
                    uids = [uid for uid, _ in items]
                    try:
                        stores += _store(client, uids, add, remove, seen, gmail)
                    except IMAPClientError as exc:
                        if _is_connection_error(exc):
                            raise
                        error = _describe(exc)
                        log.warning("%s/%s: writing to UIDs %s failed: %s; retried at the next sync", name,
                                    folder, _uid_range(uids), error)
                        continue
                    done.extend(written for _, written in items)
                    self.beat()
            finally:
                # What the server took is remembered even when the connection broke midway.
                self.sink.writeback_done(name, folder, uidvalidity, mode, done, stores, error)
            sent += stores
            self.keep_leases()
        if sent:
            log.info("%s/%s: wrote the tickets' state with %d STORE command(s)%s", name, folder, sent,
                     "; the rest at the next sync" if sent >= WRITE_BUDGET else "")

    def _report(self, folder: str, done: int, total: int, result: BatchResult | None) -> None:
        if self.progress is not None:
            try:
                self.progress(Progress(self.mailbox.name, folder, done, total, result))
            except Exception:  # A progress display never stops a sync.
                log.debug("progress display failed", exc_info=True)

    def _batches(self, client: IMAPClient, folder: str, uidvalidity: int, uids: array,
                 history_before: datetime | None) -> Iterator[Batch]:
        """The folder's new mail in batches of at most batch_size messages and
        batch_bytes bytes (by RFC822.SIZE, asked first), each with its arrival time."""
        # The first batches are small and double up to batch_size: the filer starts on the first
        # mails after a short fetch and parse instead of a whole batch's (the pipeline fills sooner).
        count, limit = min(FIRST_BATCH, self.settings.batch_size), self.settings.batch_bytes
        for m in range(0, len(uids), META_CHUNK):
            meta_uids = uids[m:m + META_CHUNK]
            present, sizes, arrivals = _meta(client, meta_uids)
            i = 0
            while i < len(present):
                if self.stop.is_set():
                    return
                first, size = i, sizes[i]
                i += 1
                if size > self.sink.max_message_bytes:
                    spooled = self._spool(client, folder, present[first], arrivals[first])
                    yield Batch(self.mailbox.name, folder, uidvalidity, present[first], spooled, history_before)
                    continue
                while i < len(present) and i - first < count:
                    nxt = sizes[i]
                    if size + nxt > limit or nxt > self.sink.max_message_bytes:
                        break
                    size += nxt
                    i += 1
                chunk = list(present[first:i])
                data = client.fetch(chunk, ["BODY.PEEK[]"])
                log.debug("%s/%s: fetched UIDs %d..%d (%d bytes)", self.mailbox.name, folder, chunk[0], chunk[-1], size)
                # A message expunged between SEARCH and FETCH is simply absent.
                messages = [Fetched(uid, data[uid][b"BODY[]"], arrivals[first + k])
                            for k, uid in enumerate(chunk) if uid in data and data[uid].get(b"BODY[]") is not None]
                del data  # The bodies live on in `messages` only.
                yield Batch(self.mailbox.name, folder, uidvalidity, chunk[-1], messages, history_before)
                del messages  # Not kept while the next batch is fetched.
                count = min(count * 2, self.settings.batch_size)
            if not present:
                # Every UID of this chunk vanished: still move the checkpoint past them.
                yield Batch(self.mailbox.name, folder, uidvalidity, meta_uids[-1], (), history_before)

    def _spool(self, client: IMAPClient, folder: str, uid: int, arrival: datetime | None) -> list[Fetched]:
        """Fetch one message over max_message_bytes into a file, SPOOL_PIECE bytes at a
        time; the Fetched that points at the file (none if the message vanished)."""
        spool = self.sink.spool()
        try:
            offset = 0
            while True:
                data = client.fetch([uid], [f"BODY.PEEK[]<{offset}.{SPOOL_PIECE}>"])
                piece = data.get(uid, {}).get(f"BODY[]<{offset}>".encode())
                if piece is None:
                    # Expunged while we read it, like a message absent from a FETCH.
                    spool.discard()
                    return []
                spool.write(piece)
                offset += len(piece)
                self.beat()
                if len(piece) < SPOOL_PIECE:
                    break
            path = spool.finish()
        except BaseException:
            spool.discard()
            raise
        log.info("%s/%s: UID %d has %d bytes, more than max_message_bytes (%d); kept in %s",
                 self.mailbox.name, folder, uid, offset, self.sink.max_message_bytes, path)
        return [Fetched(uid, b"", arrival, raw_path=path)]

    # -- for ever -----------------------------------------------------------------

    def run_forever(self) -> None:
        """Sync, wait for new mail (IDLE or poll), repeat; reconnect on failure.

        The back-off after a failure grows until a whole pass succeeds: a
        server that accepts the login and then fails every sync is not
        hammered once a second.
        """
        backoff = 1.0
        while not self.stop.is_set():
            client = None
            try:
                client = connect(self.settings)
                self._client = client
                log.info("%s: connected to %s:%d", self.mailbox.name, self.settings.host, self.settings.port)
                while not self.stop.is_set():
                    self._renew_token()
                    self.sync(client)
                    backoff = 1.0
                    self.beat()
                    self._wait_for_mail(client)
            except Exception as exc:
                # The leases are not renewed while disconnected: if the
                # trouble is this daemon's own, another one takes its folders over.
                self._failed(exc)
                log.info("%s: reconnecting in %.0f s", self.mailbox.name, backoff)
                self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            finally:
                self._client = None
                if client is not None:
                    _logout_quietly(client)
        self.release_leases()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.beat()
            self.stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))

    def _wait_for_mail(self, client: IMAPClient) -> None:
        healthy = [f for f in self.folders if f in self._held and not self.health.get(f, _FolderHealth()).error]
        retry = [h.retry_at for h in self.health.values() if h.error]
        standby = [f for f in self.folders if f not in self._held]
        limit = self.settings.poll_interval
        if retry:
            # Come back when the next failed folder is due for another try.
            limit = max(1.0, min(limit, min(retry) - time.monotonic()))
        if standby:
            # Another daemon's folders are tried again as often as it renews
            # its leases, so they are taken over soon after it dies.
            limit = max(1.0, min(limit, self.sink.lease_renew_seconds))
        if not (self.settings.idle and healthy and client.has_capability("IDLE")):
            deadline = time.monotonic() + limit
            while not self.stop.is_set() and not self.wake.is_set() and time.monotonic() < deadline:
                self.beat()
                self.keep_leases()
                self.stop.wait(1.0)
            return
        info = client.select_folder(healthy[0], readonly=True)
        # Mail that arrived between the sync and this SELECT raises no IDLE
        # notification: UIDNEXT shows it, so sync again at once.
        # (Only when UIDNEXT moved since the last wait: a message expunged
        # before it was fetched leaves UIDNEXT above the checkpoint for good.)
        known = self.sink.checkpoint(self.mailbox.name, healthy[0])
        uidnext = int(info.get(b"UIDNEXT") or 0)
        moved = self._uidnext.get(healthy[0]) != uidnext
        self._uidnext[healthy[0]] = uidnext
        if moved and known is not None and known.uidvalidity == int(info.get(b"UIDVALIDITY") or 0) \
                and uidnext - 1 > known.last_uid:
            return
        # Other folders have no IDLE of their own; they are checked at least
        # every poll_interval, and whenever the first folder wakes us.  So is
        # a mailbox with write-back: a ticket changed by an agent (or gone
        # overdue) reaches the server's keywords within poll_interval.
        writing = self.writes and (self.settings.write_back or self.settings.seen_on_close)
        # Command folders are looked into after each sync, so also within poll_interval.
        if len(self.folders) == 1 and not retry and not standby and not writing and not self.settings.command_folders:
            limit = IDLE_RENEW_SECONDS
        deadline = time.monotonic() + min(limit, IDLE_RENEW_SECONDS, self._token_left())
        client.idle()
        quick_empty = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            responses = client.idle_check(timeout=1)
            self.beat()
            self.keep_leases()
            if any(_is_bye(r) for r in responses):
                raise ConnectionError("server closed the connection (BYE)")
            if any(_is_new_mail(r) for r in responses) or self.wake.is_set() or healthy[0] not in self._held:
                break
            # imapclient swallows EOF while idling: a socket that keeps
            # polling readable yet yields no response has been closed.
            quick_empty = quick_empty + 1 if not responses and time.monotonic() - started < 0.5 else 0
            if quick_empty >= 3:
                raise ConnectionError("connection closed by the server while idling")
        # Leaving IDLE also proves the connection still works: a silently
        # dropped one fails here (after the socket timeout) and reconnects.
        client.idle_done()

    def _renew_token(self) -> None:
        """With OAuth2, refresh the access token before its end even while this connection lives on,
        so a refresh that fails is reported at once (OAuthError), not when the server drops us."""
        if self.settings.oauth is not None:
            oauth.access_token(self.settings.oauth)

    def _token_left(self) -> float:
        """Seconds until the OAuth2 access token is due for its refresh (IDLE wakes up then); inf without."""
        if self.settings.oauth is None:
            return float("inf")
        return max(1.0, oauth.seconds_until_refresh(self.settings.oauth))

    def _failed(self, exc: BaseException) -> None:
        message = _describe(exc)
        from inboxd.reports.prometheus import record_imap_error  # When needed, as above.

        record_imap_error(self.mailbox.name, _error_kind(exc))
        self.status = MailboxStatus(ok=False, error=message, synced=self.status.synced,
                                    folder_errors=self.status.folder_errors, warnings=self.status.warnings)
        log.error("%s: %s", self.mailbox.name, message)
        # The folders this daemon syncs wait for the server now: health (/healthz) and status say so at
        # once, not only when their last sync grows too old.  Their next successful sync clears it.
        # A failed OAuth2 refresh is the whole mailbox's, whoever holds its folders: all are marked.
        for folder in (self.folders if isinstance(exc, oauth.OAuthError) else sorted(self._held)):
            self.sink.folder_state(self.mailbox.name, folder, message, self.clock())


def _store(client: IMAPClient, uids: list[int], add: frozenset[str], remove: frozenset[str], seen: bool | None,
           gmail: bool) -> int:
    """Send one change to `uids` (removals first); how many STORE commands it took."""
    count = 0
    if remove:
        if gmail:
            client.remove_gmail_labels(uids, sorted(remove), silent=True)
        else:
            client.remove_flags(uids, [k.encode() for k in sorted(remove)], silent=True)
        count += 1
    if add:
        if gmail:
            client.add_gmail_labels(uids, sorted(add), silent=True)
        else:
            client.add_flags(uids, [k.encode() for k in sorted(add)], silent=True)
        count += 1
    if seen is True:
        client.add_flags(uids, [b"\\Seen"], silent=True)
        count += 1
    elif seen is False:
        client.remove_flags(uids, [b"\\Seen"], silent=True)
        count += 1
    return count


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _uid_range(uids: list[int]) -> str:
    return f"{uids[0]}" if len(uids) == 1 else f"{uids[0]}..{uids[-1]} ({len(uids)})"


def _new_uids(client: IMAPClient, start: int, uidnext: int) -> array:
    """The folder's UIDs from `start` on, ascending, asked for in windows of UIDs.

    imapclient reads a SEARCH answer into about 200 bytes of Python objects
    per UID (20 MiB for 100,000 mails, the first sync's peak growing with
    the folder); a window of SEARCH_WINDOW UIDs bounds that, and a folder
    whose UIDs are sparse gets wider windows, at most SEARCH_WINDOWS of them.
    The UIDs are kept in an array, not a list: 0.8 MB for 100,000 mails
    rather than 3.5 MB of int objects for the whole sync.
    """
    uids = array("Q")
    low = start
    width = max(SEARCH_WINDOW, (uidnext - start) // SEARCH_WINDOWS + 1)
    # Up to the newest UID the server announced, then the rest ("*": mail that came since).
    while uidnext and low + width < uidnext:
        high = low + width - 1
        uids.extend(sorted(uid for uid in client.search(["UID", f"{low}:{high}"]) if low <= uid <= high))
        low += width
    # "n:*" with n above every UID still names the newest one, hence the filter.
    uids.extend(sorted(uid for uid in client.search(["UID", f"{low}:*"]) if uid >= low))
    return uids


def _meta(client: IMAPClient, uids: array) -> tuple[array, array, list[datetime | None]]:
    """The UIDs of `uids` still on the server, with their sizes (RFC822.SIZE) and arrival times.

    imapclient's answer (a dict per message, a datetime with a time zone
    object of its own) is dropped at once: the sizes go into an array and
    the times become plain UTC datetimes, so what stays alive while the
    chunk's batches are fetched is a few dozen bytes per message.
    """
    answer = client.fetch(list(uids), ["RFC822.SIZE", "INTERNALDATE"])
    present = array("Q", (uid for uid in uids if uid in answer))
    sizes = array("Q", (int(answer[uid].get(b"RFC822.SIZE") or 0) for uid in present))
    arrivals = [_arrival(answer[uid].get(b"INTERNALDATE")) for uid in present]
    return present, sizes, arrivals


def _arrival(value: Any) -> datetime | None:
    """INTERNALDATE as an aware UTC datetime, or None when the server gave none."""
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _is_new_mail(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")


def _is_bye(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) >= 1 and response[0] == b"BYE"


def _error_kind(exc: BaseException) -> str:
    """The kind of an IMAP failure, for the error counters (inboxd.reports.prometheus.IMAP_KINDS)."""
    if isinstance(exc, LoginError | oauth.OAuthError):
        return "login"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, IMAPClientAbortError | OSError | EOFError | ConnectionError):
        return "network"
    if isinstance(exc, IMAPClientError):
        return "protocol"
    return "other"


def _describe(exc: BaseException) -> str:
    # One line, no secrets: imapclient's errors carry the server's text, never our password.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_END = object()


class SyncStuck(RuntimeError):
    """A hand-off between the fetch thread and the filer waited too long."""


def _prefetch(batches: Iterator[Batch], prepare, depth: int = 1, *, stop: threading.Event | None = None,
              timeout: float = HANDOFF_TIMEOUT_SECONDS,
              tick: Callable[[], None] | None = None) -> Iterator[tuple[Batch, Any]]:
    """Run `batches` (and `prepare` on each) one step ahead on a helper thread.

    One step: the next batch is fetched once the consumer has taken the
    last one, so at most two batches are in memory (the one being filed and
    the one fetched and being parsed), not three (a third fetched while the
    queue still held one); the fetch still overlaps the filing.

    Every hand-off waits a bounded time, in short slices that watch for the
    consumer going away: an error on either side ends the whole attempt
    (the producer's error is raised here; a consumer that stops early
    cancels the producer), and nothing ever blocks for good.  `tick` runs
    in the consumer's thread at every slice of a wait (the poller renews its
    leases there while a large mail is fetched).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    cancelled = threading.Event()
    taken = threading.Event()

    def hand_over(item: Any) -> bool:
        while not cancelled.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def wait_taken() -> bool:
        while not cancelled.is_set():
            if taken.wait(0.2):
                taken.clear()
                return True
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not hand_over((batch, prepare(batch))) or not wait_taken():
                    return
                # The consumer has it now: not kept alive here while the next one is fetched.
                del batch
            hand_over(_END)
        except BaseException as exc:  # Handed to the consumer, which re-raises it.
            hand_over(exc)

    worker = threading.Thread(target=produce, name="imap-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            waited = 0.0
            while True:
                try:
                    item = q.get(timeout=0.5)
                    taken.set()
                    break
                except queue.Empty:
                    waited += 0.5
                    if tick is not None:
                        tick()
                    if not worker.is_alive() and q.empty():
                        raise SyncStuck("the fetch thread ended without handing over its result")
                    if stop is not None and stop.is_set():
                        return
                    if waited >= timeout:
                        raise SyncStuck(f"no batch from the server for {timeout:.0f} s")
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        # The producer notices within one slice; a producer blocked in the
        # network has its own socket timeout.  It is a daemon thread, so a
        # join that runs out never keeps the process alive.
        worker.join(timeout=60)
        if worker.is_alive():
            # It still holds the connection: the caller must not use it again.
            raise SyncStuck("the fetch thread did not finish within 60 s of the sync attempt ending")


# Dovecot ends a command's reply with how long it took, "(0.001 + 0.000
# secs)."; two failures for the same reason differ only there.
_TIMINGS = re.compile(r"\s*\(\d+\.\d+(?: \+ \d+\.\d+)* secs\)\.?")


def _without_timings(error: str | None) -> str | None:
    return _TIMINGS.sub("", error) if error else error
