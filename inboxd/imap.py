"""Step 1: sync new mail from each mailbox's folders; the only imapclient user.

A folder is synced incrementally by UID: everything above the stored
checkpoint is fetched in batches with BODY.PEEK[] on a folder opened with
EXAMINE (read-only), so the server cannot set \\Seen and nothing is deleted or
moved.  Batches are fetched one ahead on a helper thread while the previous
one is being filed, which keeps the network and the parser busy together.
When the server offers IDLE, the poller waits in IDLE on the first folder so
new mail is picked up within about a second; otherwise it polls.  Failures
back off and reconnect; one mailbox's trouble never touches another's.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from imapclient import IMAPClient

from inboxd.tls import client_context
from inboxd.config import ImapSettings, MailboxSettings
from inboxd.ingest import Batch, BatchResult, Fetched

log = logging.getLogger("inboxd.imap")

# IDLE is renewed well inside the 29 minutes RFC 2177 allows servers to drop it.
IDLE_RENEW_SECONDS = 25 * 60
MAX_BACKOFF_SECONDS = 60.0


class BatchSink(Protocol):
    """Where fetched batches go (the store), as the poller sees it."""

    def checkpoint(self, mailbox: str, folder: str) -> tuple[int, int] | None: ...
    def prepare(self, batch: Batch) -> Any: ...
    def file(self, batch: Batch, prepared: Any) -> BatchResult: ...
    def pending_copies(self, mailbox: str) -> list[tuple[int, bytes]]: ...
    def copy_done(self, outbox_id: int) -> None: ...


def connect(settings: ImapSettings) -> IMAPClient:
    """A logged-in client for `settings` (tls, starttls, or plain when configured)."""
    if settings.security == "tls":
        client = IMAPClient(settings.host, port=settings.port, ssl=True,
                            ssl_context=client_context(settings.ca_file), timeout=settings.timeout)
    else:
        client = IMAPClient(settings.host, port=settings.port, ssl=False, timeout=settings.timeout)
        if settings.security == "starttls":
            client.starttls(client_context(settings.ca_file))
    try:
        client.login(settings.username, settings.password.reveal() if settings.password else "")
    except Exception:
        _logout_quietly(client)
        raise
    return client


def check_login(settings: ImapSettings) -> str:
    """Log in and out once; a short description of the server for check-config."""
    client = connect(settings)
    try:
        caps = {c.decode() for c in client.capabilities()}
        return "IDLE" if "IDLE" in caps else "no IDLE (polling)"
    finally:
        _logout_quietly(client)


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
    ok: bool = True
    error: str = ""
    synced: int = 0


class MailboxPoller:
    """Syncs one mailbox's folders into a sink, once or for ever."""

    def __init__(self, mailbox: MailboxSettings, sink: BatchSink, stop: threading.Event | None = None):
        self.mailbox = mailbox
        self.settings = mailbox.imap
        self.sink = sink
        self.stop = stop or threading.Event()
        # Set by the sender when mail went out, so its Sent copy is appended
        # without waiting for the next poll.
        self.wake = threading.Event()
        self.status = MailboxStatus()

    @property
    def folders(self) -> tuple[str, ...]:
        """Every folder synced: the configured ones, then the Sent folder."""
        sent = self.settings.sent_folder
        return self.settings.folders + ((sent,) if sent and sent not in self.settings.folders else ())

    # -- one pass ---------------------------------------------------------------

    def run_once(self) -> MailboxStatus:
        """Connect, sync every folder once, disconnect; never raises."""
        try:
            client = connect(self.settings)
            try:
                self.sync(client)
            finally:
                _logout_quietly(client)
            self.status = MailboxStatus(ok=True, synced=self.status.synced)
        except Exception as exc:
            self._failed(exc)
        return self.status

    def append_copies(self, client: IMAPClient) -> int:
        """Put a copy of each mail inboxd sent into the Sent folder, marked \\Seen."""
        folder = self.settings.sent_folder
        copies = self.sink.pending_copies(self.mailbox.name) if folder else []
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
        self.wake.clear()
        self.append_copies(client)
        filed = 0
        for folder in self.folders:
            if self.stop.is_set():
                break
            filed += self.sync_folder(client, folder)
        return filed

    def sync_folder(self, client: IMAPClient, folder: str) -> int:
        info = client.select_folder(folder, readonly=True)
        uidvalidity = int(info[b"UIDVALIDITY"])
        known = self.sink.checkpoint(self.mailbox.name, folder)
        start = 1
        if known is not None:
            if known[0] == uidvalidity:
                start = known[1] + 1
            else:
                # The server renumbered the folder.  Fetch it all again; the
                # store recognises each message by Message-ID or content hash.
                log.warning("%s/%s: UIDVALIDITY changed from %d to %d; resyncing the folder",
                            self.mailbox.name, folder, known[0], uidvalidity)
        uids = sorted(uid for uid in client.search(["UID", f"{start}:*"]) if uid >= start)
        if not uids:
            if known is not None and known[0] != uidvalidity:
                self.sink.file(Batch(self.mailbox.name, folder, uidvalidity, 0, ()), None)
            return 0
        log.info("%s/%s: %d new message(s) from UID %d", self.mailbox.name, folder, len(uids), uids[0])
        filed = 0
        for batch, prepared in _prefetch(self._batches(client, folder, uidvalidity, uids), self.sink.prepare):
            result = self.sink.file(batch, prepared)
            filed += result.filed
            self.status.synced += len(batch.messages)
            if self.stop.is_set():
                break
        return filed

    def _batches(self, client: IMAPClient, folder: str, uidvalidity: int, uids: list[int]) -> Iterator[Batch]:
        size = self.settings.batch_size
        for i in range(0, len(uids), size):
            if self.stop.is_set():
                return
            chunk = uids[i:i + size]
            data = client.fetch(chunk, ["BODY.PEEK[]"])
            log.debug("%s/%s: fetched UIDs %d..%d", self.mailbox.name, folder, chunk[0], chunk[-1])
            # A message expunged between SEARCH and FETCH is simply absent.
            messages = [Fetched(uid, data[uid][b"BODY[]"]) for uid in chunk
                        if uid in data and data[uid].get(b"BODY[]") is not None]
            yield Batch(self.mailbox.name, folder, uidvalidity, chunk[-1], messages)

    # -- for ever -----------------------------------------------------------------

    def run_forever(self) -> None:
        """Sync, wait for new mail (IDLE or poll), repeat; reconnect on failure."""
        backoff = 1.0
        while not self.stop.is_set():
            client = None
            try:
                client = connect(self.settings)
                log.info("%s: connected to %s:%d", self.mailbox.name, self.settings.host, self.settings.port)
                backoff = 1.0
                while not self.stop.is_set():
                    self.sync(client)
                    self.status = MailboxStatus(ok=True, synced=self.status.synced)
                    self._wait_for_mail(client)
            except Exception as exc:
                self._failed(exc)
                log.info("%s: reconnecting in %.0f s", self.mailbox.name, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            finally:
                if client is not None:
                    _logout_quietly(client)

    def _wait_for_mail(self, client: IMAPClient) -> None:
        if not (self.settings.idle and client.has_capability("IDLE")):
            deadline = time.monotonic() + self.settings.poll_interval
            while not self.stop.is_set() and not self.wake.is_set() and time.monotonic() < deadline:
                self.stop.wait(1.0)
            return
        client.select_folder(self.folders[0], readonly=True)
        # Other folders have no IDLE of their own; they are checked at least
        # every poll_interval, and whenever the first folder wakes us.
        limit = self.settings.poll_interval if len(self.folders) > 1 else IDLE_RENEW_SECONDS
        deadline = time.monotonic() + min(limit, IDLE_RENEW_SECONDS)
        client.idle()
        quick_empty = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            responses = client.idle_check(timeout=1)
            if any(_is_bye(r) for r in responses):
                raise ConnectionError("server closed the connection (BYE)")
            if any(_is_new_mail(r) for r in responses) or self.wake.is_set():
                break
            # imapclient swallows EOF while idling: a socket that keeps
            # polling readable yet yields no response has been closed.
            quick_empty = quick_empty + 1 if not responses and time.monotonic() - started < 0.5 else 0
            if quick_empty >= 3:
                raise ConnectionError("connection closed by the server while idling")
        # Leaving IDLE also proves the connection still works: a silently
        # dropped one fails here (after the socket timeout) and reconnects.
        client.idle_done()

    def _failed(self, exc: BaseException) -> None:
        message = _describe(exc)
        self.status = MailboxStatus(ok=False, error=message, synced=self.status.synced)
        log.error("%s: %s", self.mailbox.name, message)


def _is_new_mail(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")


def _is_bye(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) >= 1 and response[0] == b"BYE"


def _describe(exc: BaseException) -> str:
    # One line, no secrets: imapclient's errors carry the server's text, never our password.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_END = object()


def _prefetch(batches: Iterator[Batch], prepare, depth: int = 1) -> Iterator[tuple[Batch, Any]]:
    """Run `batches` (and `prepare` on each) one step ahead on a helper thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    cancelled = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                item = (batch, prepare(batch))
                while not cancelled.is_set():
                    try:
                        q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if cancelled.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # Handed to the consumer, which re-raises it.
            q.put(exc)

    worker = threading.Thread(target=produce, name="imap-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        worker.join()
