"""Step 6: drain the outbox over SMTP; the only aiosmtplib user.

One row at a time is claimed with a compare-and-swap UPDATE (queued, or
sending with an expired lease, becomes sending), so two daemons never send
the same row.  The outcome is recorded right after the server answers:

* accepted: `sent`, never offered again;
* a temporary failure (4xx, refused connection, time-out, a dropped
  connection): back to `queued` with exponential back-off and jitter, until
  `give_up_after` has passed, then `failed`;
* a permanent failure (5xx): `failed` at once, with the server's answer
  recorded on the row and in the ticket's history.

A crash after the server accepted a mail but before `sent` was recorded
leaves the row in `sending`; once its lease expires it is offered again with
the same Message-ID, so at worst a recipient's server sees one Message-ID
twice (which most clients show once).  That window is kept as small as it
can be: the envelope (MAIL FROM, RCPT TO) is sent first; then the store's
write lock is taken on a connection of the sender's own, the claim checked
to be still ours (a claim whose lease ran out may have gone to another
daemon, which then sends the mail instead), the message sent with DATA, and
`sent` written and committed (synchronous=FULL) in the same event-loop step
as the server's 250 reply, with no wait for a lock in between.  (On
PostgreSQL, where there is no store-wide lock, the row itself is locked
before DATA.)  Connections are reused across rows for the same server.  The
SQL is in `inboxd.store.outbox`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Iterator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiosmtplib
from sqlalchemy import Connection, Engine

from inboxd.tls import client_context
from inboxd.config import Settings, SmtpSettings
from inboxd.store import outbox as store
from inboxd.store.engine import writing
from inboxd.outbound.outbox import compose_spec
from inboxd.reports.prometheus import record_smtp_error

log = logging.getLogger("inboxd.outbound.sender")


def _client(settings: SmtpSettings) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=settings.host, port=settings.port, timeout=settings.timeout,
        use_tls=settings.security == "tls",
        start_tls=settings.security == "starttls",
        tls_context=client_context(settings.ca_file),
    )


async def _connect(settings: SmtpSettings) -> aiosmtplib.SMTP:
    client = _client(settings)
    await client.connect()
    if settings.username:
        await client.login(settings.username, settings.password.reveal() if settings.password else "")
    return client


async def _check(settings: SmtpSettings) -> str:
    client = await _connect(settings)
    await _quit(client)
    return "login ok" if settings.username else "connected (no authentication configured)"


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def check_login(settings: SmtpSettings) -> str:
    """Connect (and log in when configured) once; a short result for check-config."""
    return asyncio.run(_check(settings))


@dataclass(frozen=True)
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

    # -- the rows ----------------------------------------------------------------

    def claim(self, now: datetime) -> Claimed | None:
        """Move one due row to `sending` (compare-and-swap); None when nothing is due."""
        with writing(self.engine) as conn:
            row = store.claim_next(conn, now, self.settings.outbox.lease)
            if row is None:
                return None
            data = bytes(row.data)
            if not data and row.spec:
                # Composed on the first attempt and kept, so a retry (or a
                # resend after a crash) sends exactly the same bytes.
                try:
                    data = compose_spec(row.spec).data
                except ValueError as exc:
                    data = b""
                    store.set_error(conn, row.id, f"cannot compose: {exc}")
                else:
                    store.set_data(conn, row.id, data)
        return Claimed(row.id, row.ticket_id, row.mailbox, row.message_id, row.sender, json.loads(row.recipients),
                       data, row.attempts, row.created_at)

    def _record(self, item: Claimed, now: datetime, outcome: Exception | None) -> str:
        """Record a failure (`_commit_point` records a success); "lost" when the claim went to another sender."""
        if outcome is None:
            return "sent"
        if isinstance(outcome, LostClaim):
            return "lost"
        record_smtp_error(item.mailbox,
                          "smtp_temporary" if isinstance(outcome, TemporaryFailure) else "smtp_permanent")
        with writing(self.engine) as conn:
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

    def backoff(self, attempts: int) -> timedelta:
        """retry_base doubled per attempt up to retry_max, with ±20 % jitter."""
        cfg = self.settings.outbox
        base = min(cfg.retry_base * (2 ** max(attempts - 1, 0)), cfg.retry_max)
        return base * random.uniform(0.8, 1.2)

    # -- sending -----------------------------------------------------------------

    def drain(self) -> DrainReport:
        """Send everything due now; returns what happened.  Never raises."""
        with self.lock:
            return asyncio.run(self._drain())

    def send(self, item: Claimed) -> str:
        """Send one row claimed with `claim`: "sent", "retried", "failed", or "lost" (another sender has it)."""
        with self.lock:
            return asyncio.run(self._send_claimed([item]))[0]

    async def _drain(self) -> DrainReport:
        report = DrainReport()

        def claimed() -> Iterator[Claimed]:
            while (item := self.claim(self.clock())) is not None:
                yield item

        for item, result in zip(*await self._send_all(claimed())):
            if result == "sent":
                report.sent += 1
                report.sent_ids.append(item.id)
            elif result == "retried":
                report.retried += 1
            elif result == "failed":
                report.failed += 1
        return report

    async def _send_claimed(self, items: list[Claimed]) -> list[str]:
        return (await self._send_all(iter(items)))[1]

    async def _send_all(self, items: Iterator[Claimed]) -> tuple[list[Claimed], list[str]]:
        """Send each claimed row as it comes, reusing connections; (the rows, their results)."""
        done: list[Claimed] = []
        results: list[str] = []
        clients: dict[tuple, aiosmtplib.SMTP] = {}
        unreachable: dict[tuple, str] = {}
        try:
            with store.ledger(self.engine) as ledger:
                for item in items:
                    outcome = await self._send(item, clients, unreachable, ledger)
                    result = self._record(item, self.clock(), outcome)
                    if result == "sent":
                        log.info("<%s> sent to %s", item.message_id, ", ".join(item.recipients))
                        self.on_sent(item.mailbox)
                    elif result == "lost":
                        log.warning("<%s> not sent: its lease ran out and another sender claimed it",
                                    item.message_id)
                    done.append(item)
                    results.append(result)
        finally:
            for client in clients.values():
                await _quit(client)
        return done, results

    async def _send(self, item: Claimed, clients: dict[tuple, aiosmtplib.SMTP],
                    unreachable: dict[tuple, str], ledger: Connection) -> Exception | None:
        if not item.data:
            return PermanentFailure("cannot compose this mail (see the outbox row's last error)")
        mailbox = self.settings.mailbox(item.mailbox)
        smtp = self.settings.smtp_for(mailbox)
        if smtp is None:
            return PermanentFailure(f"no SMTP server configured for mailbox {mailbox.name}")
        key = (smtp.host, smtp.port, smtp.username)
        if key in unreachable:
            return TemporaryFailure(unreachable[key])
        client = clients.get(key)
        if client is None or not client.is_connected:
            try:
                client = clients[key] = await _connect(smtp)
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                # The server or our login is at fault, not this mail: whatever
                # the code (a 535 for a wrong password, say), it is temporary,
                # and the rest of this pass leaves that server alone.
                await _drop(clients, key)
                code = getattr(exc, "code", None)
                unreachable[key] = f"{type(exc).__name__}: {code or ''} {getattr(exc, 'message', exc)}".strip()
                return TemporaryFailure(unreachable[key])
        try:
            errors = await _envelope(client, item)
            if errors:
                # Some recipients were refused, the rest accepted: the mail
                # goes out, so it must not be sent again; the refusals are logged.
                log.warning("<%s> some recipients refused: %s", item.message_id, errors)
            return await self._commit_point(client, item, ledger)
        except LostClaim as exc:
            return exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            await _drop(clients, key)
            return _classify(min(codes) if codes else 450, str(exc))
        except aiosmtplib.SMTPResponseException as exc:
            await _drop(clients, key)
            return _classify(exc.code, f"{exc.code} {exc.message}")
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await _drop(clients, key)
            return TemporaryFailure(f"{type(exc).__name__}: {exc}")

    async def _commit_point(self, client: aiosmtplib.SMTP, item: Claimed, ledger: Connection) -> None:
        """Send DATA holding the store's write lock, and record `sent` the moment the server accepts.

        The lock is taken before DATA, so after the server's 250 there is
        nothing to wait for: the UPDATE and its commit follow at once.  Other
        writers wait for the length of one DATA exchange.  Raises LostClaim
        (after RSET) when the claim is no longer ours.
        """
        # BEGIN IMMEDIATE on SQLite; on PostgreSQL still_claimed locks the row.
        transaction = ledger.begin()
        try:
            if not store.still_claimed(ledger, item.id, item.attempts):
                transaction.rollback()
                await client.rset()  # An error here drops the connection, as any SMTP error does.
                raise LostClaim(item.message_id)
            await client.data(item.data)
            store.mark_sent(ledger, item.id, self.clock())
            transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise


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


async def _drop(clients: dict[tuple, aiosmtplib.SMTP], key: tuple) -> None:
    # After an error the session's state is unknown: start the next mail afresh.
    client = clients.pop(key, None)
    if client is not None:
        await _quit(client)


def _classify(code: int, text: str) -> Exception:
    return PermanentFailure(text) if 500 <= code < 600 else TemporaryFailure(text)


def retry(engine: Engine, outbox_id: int, now: datetime) -> bool:
    """Queue a failed (or waiting) row for an immediate new attempt."""
    with writing(engine) as conn:
        return store.retry_now(conn, outbox_id, now)
