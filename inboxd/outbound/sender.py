"""Step 6: drain the outbox over SMTP; the only aiosmtplib user.

Rows are claimed in batches with one compare-and-swap UPDATE ... RETURNING
(queued, or sending with an expired lease, becomes sending), so two daemons
never send the same row.  A batch is sent over several connections to each
server at once (`[smtp] connections`, default 4), each connection reused for
mail after mail; the failures are recorded together once the batch is done:

* accepted: `sent`, never offered again;
* a temporary failure (4xx, refused connection, time-out, a dropped
  connection): back to `queued` with exponential back-off and jitter, until
  `give_up_after` has passed, then `failed`;
* a permanent failure (5xx): `failed` at once, with the server's answer
  recorded on the row and in the ticket's history.

A failure on one connection touches only the mail on that connection: the
connection is dropped and the next mail opens a new one.  The first
connection to a server is opened alone, so a server that is down (or a
wrong password) costs one attempt per pass, and the rest of the pass
leaves it alone; a server that refuses the extra connections is sent to
over those it accepted.  Mail of one ticket goes out in the order it was
queued (never two of a ticket at once on different connections).

A crash after the server accepted a mail but before `sent` was recorded
leaves the row in `sending`; once its lease expires it is offered again with
the same Message-ID, so at worst a recipient's server sees one Message-ID
twice (which most clients show once).  That window is kept as small as it
can be: the envelope (MAIL FROM, RCPT TO) is sent first on each connection;
then the connections ready for DATA go through `_Ledger` together, in a
round: the store's write lock is taken on a connection of the sender's own,
each claim checked to be still ours (a claim whose lease ran out may have
gone to another daemon, which then sends the mail instead), DATA sent on
every connection of the round at once, `sent` written the moment each
server answers 250, and the round committed (synchronous=FULL) as soon as
the last answer is in, with no wait for a lock in between.  (On
PostgreSQL, where there is no store-wide lock, the rows themselves are
locked before DATA.)  One commit, so one disk flush, covers a round of up
to `connections` mails.  The SQL is in `inboxd.store.outbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiosmtplib
from sqlalchemy import Connection, Engine

from inboxd import oauth
from inboxd.tls import client_context
from inboxd.config import Settings, SmtpSettings
from inboxd.store import outbox as store
from inboxd.store import writegate
from inboxd.store.engine import writing
from inboxd.outbound.outbox import compose_spec

log = logging.getLogger("inboxd.outbound.sender")


def _client(settings: SmtpSettings) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=settings.host, port=settings.port, timeout=settings.timeout,
        use_tls=settings.security == "tls",
        start_tls=settings.security == "starttls",
        # Building a TLS context loads the system's certificates (milliseconds): only when TLS is used.
        tls_context=client_context(settings.ca_file) if settings.security != "none" else None,
    )


async def _connect(settings: SmtpSettings) -> aiosmtplib.SMTP:
    client = _client(settings)
    await client.connect()
    if settings.oauth is not None:
        await _oauth_login(client, settings)
    elif settings.username:
        await client.login(settings.username, settings.password.reveal() if settings.password else "")
    return client


async def _oauth_login(client: aiosmtplib.SMTP, settings: SmtpSettings) -> None:
    """AUTH XOAUTH2 or OAUTHBEARER (RFC 7628) with the mailbox's access token."""
    try:
        # A refresh is an HTTP exchange: off the event loop.
        token = (await asyncio.to_thread(oauth.access_token, settings.oauth)).token
    except oauth.OAuthError as exc:
        # Like a refused login: the server is left alone for the rest of the pass, the mail waits.
        client.close()
        raise aiosmtplib.SMTPAuthenticationError(530, str(exc)) from None
    try:
        if settings.oauth.mechanism == "xoauth2":
            await client.auth_xoauth2(settings.username, token)
            return
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        initial = oauth.sasl_b64(settings.oauth, settings.username, token, settings.host, settings.port)
        response = await client.execute_command(b"AUTH", b"OAUTHBEARER", initial.encode("ascii"))
        if response.code == 334:
            # RFC 7628 section 3.2.3: the server's error comes as a challenge; ^A ends the exchange.
            response = await client.execute_command(b"AQ==")
        if response.code != 235:
            raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)
    except BaseException:
        client.close()
        raise


async def _check(settings: SmtpSettings) -> str:
    client = await _connect(settings)
    await _quit(client)
    if settings.oauth is not None:
        return f"login ok ({settings.oauth.mechanism.upper()})"
    return "login ok" if settings.username else "connected (no authentication configured)"


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def check_login(settings: SmtpSettings) -> str:
    """Connect (and log in when configured) once; a short result for check-config."""
    return asyncio.run(_check(settings))


# How many rows one claim takes, per connection the servers allow: enough
# that every connection has mail queued while the batch's round trips run.
CLAIM_PER_CONNECTION = 8


@dataclass(frozen=True, eq=False)
class Claimed:
    id: int
    ticket_id: int | None
    mailbox: str
    message_id: str
    sender: str
    recipients: list[str]
    data: bytes
    attempts: int
    created_at: datetime


@dataclass
class DrainReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    sent_ids: list[int] = field(default_factory=list)


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


class LostClaim(Exception):
    """The row's lease ran out and another sender claimed it: it is theirs to send and record."""


class _Retired(Exception):
    """This connection could not be opened while others to the same server work: they take its mail."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Sender:
    """Drains due outbox rows; safe to run in several processes at once."""

    def __init__(self, engine: Engine, settings: Settings, clock: Callable[[], datetime] = _utcnow,
                 on_sent: Callable[[str], None] | None = None):
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.on_sent = on_sent or (lambda _mailbox: None)
        self.lock = threading.Lock()
        servers = [settings.smtp] + [m.smtp for m in settings.mailboxes]
        self.batch = CLAIM_PER_CONNECTION * max(s.connections for s in servers if s is not None) \
            if any(servers) else CLAIM_PER_CONNECTION

    # -- the rows ----------------------------------------------------------------

    def claim(self, now: datetime) -> Claimed | None:
        """Move one due row to `sending` (compare-and-swap); None when nothing is due."""
        claimed = self.claim_batch(now, 1)
        return claimed[0] if claimed else None

    def claim_batch(self, now: datetime, limit: int) -> list[Claimed]:
        """Move up to `limit` due rows to `sending` in one compare-and-swap; [] when nothing is due.

        A row queued with only its description is composed here and its bytes
        kept in the claim's own transaction, so a retry (or a resend after a
        crash) sends exactly the same bytes.  Composing a batch holds the
        store's write lock a few milliseconds longer; a transaction of its
        own cost more, another wait for that lock behind filing (on SQLite a
        writer waiting for the lock polls for it, up to 100 ms apart).
        """
        with writing(self.engine) as conn:
            rows = store.claim_batch(conn, now, self.settings.outbox.lease, limit)
            composed: dict[int, bytes] = {}
            claimed = []
            for row in rows:
                data = bytes(row.data)
                if not data and row.spec:
                    try:
                        data = composed[row.id] = compose_spec(row.spec).data
                    except ValueError as exc:
                        data = b""
                        store.set_error(conn, row.id, f"cannot compose: {exc}")
                claimed.append(Claimed(row.id, row.ticket_id, row.mailbox, row.message_id, row.sender,
                                       json.loads(row.recipients), data, row.attempts, row.created_at))
            store.set_data_many(conn, composed)
        return claimed

    def _record(self, conn: Connection, item: Claimed, now: datetime, outcome: Exception | None) -> str:
        """Record a failure (`_Ledger` records a success); "lost" when the claim went to another sender."""
        if outcome is None:
            return "sent"
        if isinstance(outcome, LostClaim):
            return "lost"
        # Imported when needed: prometheus_client is not worth loading at every start for an error counter.
        from inboxd.reports.prometheus import record_smtp_error

        record_smtp_error(item.mailbox,
                          "smtp_temporary" if isinstance(outcome, TemporaryFailure) else "smtp_permanent")
        error = str(outcome)[:1000]
        give_up = now - item.created_at >= self.settings.outbox.give_up_after
        # Only while the claim is ours: `attempts` grows with every claim.
        if isinstance(outcome, TemporaryFailure) and not give_up:
            delay = self.backoff(item.attempts)
            if not store.requeue(conn, item.id, item.attempts, now + delay, error):
                return "lost"
            log.warning("<%s> temporary failure, retrying in %.0f s: %s", item.message_id,
                        delay.total_seconds(), error)
            return "retried"
        if not store.mark_failed(conn, item.id, item.attempts, error):
            return "lost"
        if item.ticket_id is not None:
            store.record_send_failed(
                conn, item.ticket_id,
                json.dumps({"message_id": item.message_id, "to": item.recipients, "error": error},
                           ensure_ascii=False),
                now)
        log.error("<%s> not delivered, giving up: %s", item.message_id, error)
        return "failed"

    def _record_all(self, items: list[Claimed], outcomes: dict[Claimed, Exception | None]) -> list[str]:
        """Each row's result; the failures recorded in one transaction."""
        now = self.clock()
        results: list[str] = []
        failures = [item for item in items if outcomes[item] is not None
                    and not isinstance(outcomes[item], LostClaim)]
        recorded: dict[Claimed, str] = {}
        if failures:
            with writing(self.engine) as conn:
                for item in failures:
                    recorded[item] = self._record(conn, item, now, outcomes[item])
        for item in items:
            outcome = outcomes[item]
            result = recorded.get(item) or ("sent" if outcome is None else "lost")
            if result == "sent":
                log.info("<%s> sent to %s", item.message_id, ", ".join(item.recipients))
                self.on_sent(item.mailbox)
            elif result == "lost":
                log.warning("<%s> not sent: its lease ran out and another sender claimed it", item.message_id)
            results.append(result)
        return results

    def backoff(self, attempts: int) -> timedelta:
        """retry_base doubled per attempt up to retry_max, with ±20 % jitter."""
        cfg = self.settings.outbox
        base = min(cfg.retry_base * (2 ** max(attempts - 1, 0)), cfg.retry_max)
        return base * random.uniform(0.8, 1.2)

    # -- sending -----------------------------------------------------------------

    def drain(self) -> DrainReport:
        """Send everything due now; returns what happened.  Never raises for a server's fault."""
        with self.lock:
            return asyncio.run(self._drain())

    def send(self, item: Claimed) -> str:
        """Send one row claimed with `claim`: "sent", "retried", "failed", or "lost" (another sender has it)."""
        with self.lock:
            return asyncio.run(self._send_claimed([item]))[0]

    async def _drain(self) -> DrainReport:
        report = DrainReport()
        servers: dict[tuple, _Server] = {}
        try:
            with store.ledger(self.engine) as conn:
                ledger = _Ledger(conn, self.clock)
                while True:
                    with _turn(writegate.gate_of(self.engine)):
                        batch = self.claim_batch(self.clock(), self.batch)
                        if not batch:
                            break
                        results = self._record_all(batch, await self._send_batch(batch, servers, ledger))
                    for item, result in zip(batch, results):
                        if result == "sent":
                            report.sent += 1
                            report.sent_ids.append(item.id)
                        elif result == "retried":
                            report.retried += 1
                        elif result == "failed":
                            report.failed += 1
        finally:
            for server in servers.values():
                await server.close()
        return report

    async def _send_claimed(self, items: list[Claimed]) -> list[str]:
        servers: dict[tuple, _Server] = {}
        try:
            with store.ledger(self.engine) as conn:
                outcomes = await self._send_batch(items, servers, _Ledger(conn, self.clock))
                return self._record_all(items, outcomes)
        finally:
            for server in servers.values():
                await server.close()

    async def _send_batch(self, items: list[Claimed], servers: dict[tuple, "_Server"],
                          ledger: "_Ledger") -> dict[Claimed, Exception | None]:
        """Send a batch over every server's connections at once; each row's outcome (None: sent)."""
        outcomes: dict[Claimed, Exception | None] = {}
        queues: dict[tuple, _Queue] = {}
        for item in items:
            if not item.data:
                outcomes[item] = PermanentFailure("cannot compose this mail (see the outbox row's last error)")
                continue
            mailbox = self.settings.mailbox(item.mailbox)
            smtp = self.settings.smtp_for(mailbox)
            if smtp is None:
                outcomes[item] = PermanentFailure(f"no SMTP server configured for mailbox {mailbox.name}")
                continue
            key = (smtp.host, smtp.port, smtp.username)
            if key not in servers:
                servers[key] = _Server(smtp)
            queues.setdefault(key, _Queue()).items.append(item)
        workers = [self._work(servers[key], index, queue, outcomes, ledger)
                   for key, queue in queues.items() for index in range(servers[key].smtp.connections)]
        try:
            await asyncio.gather(*workers)
        finally:
            await ledger.flush()
        for item in items:
            # Never left without an outcome: a row no connection could take waits for the next pass.
            outcomes.setdefault(item, TemporaryFailure("no connection to the server took this mail"))
        return outcomes

    async def _work(self, server: "_Server", index: int, queue: "_Queue",
                    outcomes: dict[Claimed, Exception | None], ledger: "_Ledger") -> None:
        """One connection's share of a batch: take the next row, send it, until none is left."""
        queue.workers += 1
        try:
            while (item := await queue.take()) is not None:
                try:
                    outcomes[item] = await self._send(server, index, item, ledger)
                except _Retired as exc:
                    if queue.workers > 1:
                        # Another connection of this batch takes the row.
                        queue.put_back(item)
                        return
                    outcomes[item] = TemporaryFailure(str(exc))
                finally:
                    queue.done(item)
        finally:
            queue.workers -= 1

    async def _send(self, server: "_Server", index: int, item: Claimed, ledger: "_Ledger") -> Exception | None:
        if server.unreachable is not None:
            return TemporaryFailure(server.unreachable)
        client = server.clients.get(index)
        if client is None or not client.is_connected:
            try:
                client = await server.connect(index)
            except _Retired:
                raise
            except TemporaryFailure as exc:
                return exc
        try:
            ledger.preparing += 1
            try:
                errors = await _envelope(client, item)
            finally:
                ledger.preparing_done()
            if errors:
                # Some recipients were refused, the rest accepted: the mail
                # goes out, so it must not be sent again; the refusals are logged.
                log.warning("<%s> some recipients refused: %s", item.message_id, errors)
            await ledger.data(client, item)
            return None
        except LostClaim as exc:
            try:
                await client.rset()
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                await server.drop(index)
            return exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            await server.drop(index)
            return _classify(min(codes) if codes else 450, str(exc))
        except aiosmtplib.SMTPResponseException as exc:
            await server.drop(index)
            return _classify(exc.code, f"{exc.code} {exc.message}")
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await server.drop(index)
            return TemporaryFailure(f"{type(exc).__name__}: {exc}")


# How long one batch may keep this process's other writers of a SQLite store waiting (see _turn).
BURST = 0.1


@contextlib.contextmanager
def _turn(gate: writegate.WriteGate | None) -> Iterator[None]:
    """One turn at the write gate for a whole batch (claim, rounds, record), for at most BURST.

    A round holds the store's lock for a few milliseconds, while filing
    holds it for a whole batch of mail: with a turn per transaction, the
    sender sent one round, of up to `connections` mails, per batch filed.
    A batch sends in one turn instead; after BURST (a slow server) its
    transactions queue one by one again, so filing never waits longer.
    """
    if gate is None:
        yield
        return
    turn = object()
    gate.enter(turn)
    timer = asyncio.get_running_loop().call_later(BURST, gate.leave, turn)
    try:
        yield
    finally:
        timer.cancel()
        gate.leave(turn)


class _Server:
    """One SMTP server's connections during a drain, by worker index."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp
        self.clients: dict[int, aiosmtplib.SMTP] = {}
        self.unreachable: str | None = None
        self.proven = False
        self.first = asyncio.Lock()

    def live(self, besides: int) -> int:
        return sum(1 for index, client in self.clients.items() if index != besides and client.is_connected)

    async def connect(self, index: int) -> aiosmtplib.SMTP:
        """A new connection for worker `index`; TemporaryFailure when the server cannot be reached,
        _Retired when only this connection fails while others work."""
        if not self.proven:
            # The first connection is opened alone: a server that is down (or a
            # wrong password) costs one attempt, not one per connection.
            async with self.first:
                if self.unreachable is not None:
                    raise TemporaryFailure(self.unreachable)
                if not self.proven:
                    return await self._open(index)
        return await self._open(index)

    async def _open(self, index: int) -> aiosmtplib.SMTP:
        try:
            client = self.clients[index] = await _connect(self.smtp)
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self.drop(index)
            code = getattr(exc, "code", None)
            reason = f"{type(exc).__name__}: {code or ''} {getattr(exc, 'message', exc)}".strip()
            if self.live(index):
                # The server takes fewer connections than configured: the others carry on.
                log.info("%s:%s: connection %d not opened (%s); sending over the others",
                         self.smtp.host, self.smtp.port, index + 1, reason)
                raise _Retired(reason) from exc
            # The server or our login is at fault, not this mail: whatever
            # the code (a 535 for a wrong password, say), it is temporary,
            # and the rest of this pass leaves that server alone.
            self.unreachable = reason
            raise TemporaryFailure(reason) from exc
        self.proven = True
        return client

    async def drop(self, index: int) -> None:
        # After an error the session's state is unknown: start the next mail afresh.
        client = self.clients.pop(index, None)
        if client is not None:
            await _quit(client)

    async def close(self) -> None:
        for index in list(self.clients):
            await self.drop(index)


class _Queue:
    """A batch's rows for one server, taken in order, never two of one ticket at once."""

    def __init__(self) -> None:
        self.items: list[Claimed] = []
        self.busy: set = set()
        self.workers = 0
        self.changed = asyncio.Event()

    @staticmethod
    def _thread(item: Claimed):
        return item.ticket_id if item.ticket_id is not None else ("to", tuple(item.recipients))

    async def take(self) -> Claimed | None:
        """The first row whose ticket has no mail in flight; None when the queue is empty."""
        while self.items:
            for position, item in enumerate(self.items):
                if self._thread(item) not in self.busy:
                    del self.items[position]
                    self.busy.add(self._thread(item))
                    return item
            self.changed.clear()
            await self.changed.wait()
        return None

    def put_back(self, item: Claimed) -> None:
        self.items.insert(0, item)

    def done(self, item: Claimed) -> None:
        self.busy.discard(self._thread(item))
        self.changed.set()


class _Ledger:
    """Sends DATA in rounds holding the store's write lock, and records `sent` the moment a server accepts.

    Each connection whose envelope is done asks for DATA.  A round waits
    (briefly) for the connections still sending their envelopes, so that
    one round, and one commit, covers a mail on each connection.  The lock
    is taken before DATA, so after a server's 250 there is nothing to wait
    for: the UPDATE follows at once, and the commit as soon as the round's
    last answer is in.  The commit (a disk flush) runs in a thread: the
    connections whose mail the round sent go on with their next envelope
    meanwhile; `flush` waits for it.  Other writers wait for the length of
    one round.  A claim that is no longer ours gets LostClaim (the caller
    sends RSET).
    """

    # How long a round waits for connections still sending an envelope.
    GATHER = 0.05

    def __init__(self, conn: Connection, clock: Callable[[], datetime]) -> None:
        self.conn = conn
        self.clock = clock
        self.waiting: list[tuple[aiosmtplib.SMTP, Claimed, asyncio.Future]] = []
        self.running: asyncio.Task | None = None
        self.preparing = 0
        self.arrived = asyncio.Event()
        self.error: BaseException | None = None

    def preparing_done(self) -> None:
        self.preparing -= 1
        self.arrived.set()

    async def data(self, client: aiosmtplib.SMTP, item: Claimed) -> None:
        """DATA for `item` in the next round; returns once the server accepted it and `sent` is written
        (committed by the end of the round: see flush)."""
        if self.error is not None:
            raise self.error
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((client, item, future))
        self.arrived.set()
        if self.running is None:
            self.running = asyncio.create_task(self._rounds())
        await future

    async def flush(self) -> None:
        """Wait for the rounds under way to be committed; raise if a commit failed."""
        while self.running is not None:
            await asyncio.shield(self.running)
        if self.error is not None:
            raise self.error

    async def _rounds(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiting and self.error is None:
                deadline = loop.time() + self.GATHER
                while self.preparing > 0 and loop.time() < deadline:
                    self.arrived.clear()
                    try:
                        await asyncio.wait_for(self.arrived.wait(), deadline - loop.time())
                    except asyncio.TimeoutError:
                        break
                batch, self.waiting = self.waiting, []
                await self._round(batch)
        finally:
            self.running = None

    async def _round(self, batch: list[tuple[aiosmtplib.SMTP, Claimed, asyncio.Future]]) -> None:
        # BEGIN IMMEDIATE on SQLite; on PostgreSQL claims_still_ours locks the rows.
        transaction = self.conn.begin()
        try:
            ours = []
            still = store.claims_still_ours(self.conn, {item.id: item.attempts for _client, item, _future in batch})
            for client, item, future in batch:
                if item.id in still:
                    ours.append((client, item, future))
                else:
                    future.set_exception(LostClaim(item.message_id))

            async def one(client: aiosmtplib.SMTP, item: Claimed, future: asyncio.Future) -> None:
                try:
                    await client.data(item.data)
                except Exception as exc:
                    future.set_exception(exc)
                    return
                store.mark_sent(self.conn, item.id, self.clock())
                future.set_result(None)

            failed = [r for r in await asyncio.gather(*(one(*entry) for entry in ours), return_exceptions=True)
                      if isinstance(r, BaseException)]
            if failed:
                raise failed[0]
            # On a thread, so the connections go on with their next envelope during the disk flush.
            await asyncio.to_thread(transaction.commit)
        except BaseException as exc:
            # The store failed (or the task was cancelled): what this round
            # sent stays `sending` until its lease ends, and the drain stops.
            self.error = exc
            if transaction.is_active:
                transaction.rollback()
            for _client, _item, future in batch:
                if not future.done():
                    future.set_exception(exc)


async def _envelope(client: aiosmtplib.SMTP, item: Claimed) -> dict[str, aiosmtplib.SMTPResponse]:
    """EHLO when needed, MAIL FROM and RCPT TO: everything of a transaction but DATA (as sendmail does it).

    Returns the refused recipients; raises SMTPRecipientsRefused when all are.
    """
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    options = [f"size={len(item.data)}"] if client.supports_extension("size") else []
    await client.mail(item.sender, options=options)
    refused: list[aiosmtplib.SMTPRecipientRefused] = []
    for recipient in item.recipients:
        try:
            await client.rcpt(recipient)
        except aiosmtplib.SMTPRecipientRefused as exc:
            refused.append(exc)
    if len(refused) == len(item.recipients):
        raise aiosmtplib.SMTPRecipientsRefused(refused)
    return {exc.recipient: aiosmtplib.SMTPResponse(exc.code, exc.message) for exc in refused}


def _classify(code: int, text: str) -> Exception:
    return PermanentFailure(text) if 500 <= code < 600 else TemporaryFailure(text)


def retry(engine: Engine, outbox_id: int, now: datetime) -> bool:
    """Queue a failed (or waiting) row for an immediate new attempt."""
    with writing(engine) as conn:
        return store.retry_now(conn, outbox_id, now)
