"""The sender's batches: claims of many rows at once, several connections at once, a dropped connection.

Real threads on connections of their own race for the claims (on SQLite and
PostgreSQL, through the `store_url` fixture), and a real aiosmtpd server
counts the sessions the sender keeps open and how many of them are in DATA
at the same moment.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy import Engine, select

from inboxd.config import Settings, load_settings
from inboxd.daemon import run_once
from inboxd.outbound import outbox
from inboxd.outbound.sender import Sender
from inboxd.store.engine import create_store_engine, migrate, reading, writing
from inboxd.store.sql import t
from inboxd.testing.mail import make_mail
from inboxd.testing.smtp import SmtpSink, _Handler
from tests.support import write_config

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _settings(tmp: Path, store_url: str, smtp_port: int = 1, connections: int = 4) -> Settings:
    """Settings for one mailbox whose mail goes to `smtp_port`; IMAP is never contacted."""
    (tmp / "pw").write_text("unused\n")
    config = tmp / "inboxd.toml"
    config.write_text(f"""
[store]
url = "{store_url}"
data_dir = "var"

[outbox]
lease = "5m"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
connections = {connections}

[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "imap.example.invalid"
username = "support"
password_file = "pw"
""")
    return load_settings(config)


@pytest.fixture
def engines() -> list[Engine]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


def _engine(url: str, engines: list[Engine]) -> Engine:
    engine = create_store_engine(url)
    migrate(engine)
    engines.append(engine)
    return engine


def _queue(engine: Engine, settings: Settings, numbers: range, *, compose_at_send: bool = True) -> list[str]:
    """One mail per number, each to its own customer, as acknowledgements are queued."""
    ids = []
    with writing(engine) as conn:
        for n in numbers:
            ids.append(outbox.queue(
                conn, kind="ack", mailbox=settings.mailbox("support"), ticket_pk=None, ref=f"T-{1000 + n}",
                to=[(f"Customer {n}", f"c{n}@example.org")], subject=f"Re: [T-{1000 + n}] Question {n}",
                text=f"We have your question {n}.\n", automatic="auto-replied",
                message_id=f"inboxd.T-{1000 + n}.m{n}@example.com", now=NOW - timedelta(minutes=1),
                sent_copy=False, compose_at_send=compose_at_send))
    return ids


def _statuses(engine: Engine) -> Counter:
    o = t.outbox
    with reading(engine) as conn:
        return Counter(status for (status,) in conn.execute(select(o.c.status)))


# -- claims ----------------------------------------------------------------------------


def test_two_senders_claiming_batches_at_once_never_get_the_same_row(store_url, tmp_path, engines):
    settings = _settings(tmp_path, store_url)
    first, second = _engine(store_url, engines), _engine(store_url, engines)
    _queue(first, settings, range(90))
    senders = [Sender(first, settings, clock=lambda: NOW), Sender(second, settings, clock=lambda: NOW)]
    claims: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claim_all(n: int) -> None:
        try:
            start.wait()
            while batch := senders[n].claim_batch(NOW, 7):
                assert len(batch) <= 7
                claims[n].extend(item.id for item in batch)
        except BaseException as exc:  # Reported by the main thread.
            errors.append(exc)

    threads = [threading.Thread(target=claim_all, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    claimed = claims[0] + claims[1]
    assert len(claimed) == len(set(claimed)) == 90
    assert _statuses(first) == {"sending": 90}


def test_a_batch_claim_takes_due_rows_in_order_and_composes_them(store_url, tmp_path, engines):
    settings = _settings(tmp_path, store_url)
    engine = _engine(store_url, engines)
    ids = _queue(engine, settings, range(5))
    batch = Sender(engine, settings).claim_batch(NOW, 3)
    assert [item.message_id for item in batch] == ids[:3]
    assert all(item.data.startswith(b"From: ") and item.attempts == 1 for item in batch)
    # The composed bytes are kept on the row, so a retry sends exactly these.
    o = t.outbox
    with reading(engine) as conn:
        kept = dict(conn.execute(select(o.c.message_id, o.c.data).where(o.c.status == "sending")).all())
    assert kept == {item.message_id: item.data for item in batch}


# -- connections -----------------------------------------------------------------------


class _Gathering(_Handler):
    """Holds each DATA until `n` sessions are in DATA at once (or 10 s have passed, for a sender that
    never gets there), then accepts; counts the mails per session and the most sessions in DATA at once.
    `drop` closes the connection of that many DATA commands instead of answering."""

    def __init__(self, sink: SmtpSink, n: int) -> None:
        super().__init__(sink)
        self.n = n
        self.in_data = 0
        self.most = 0
        self.per_session: Counter = Counter()
        self.full: asyncio.Event | None = None
        self.drop = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.full is None:
            self.full = asyncio.Event()
        self.in_data += 1
        self.most = max(self.most, self.in_data)
        if self.in_data >= self.n:
            self.full.set()
        try:
            await asyncio.wait_for(self.full.wait(), 10)
        except asyncio.TimeoutError:
            pass
        finally:
            self.in_data -= 1
        if self.drop:
            self.drop -= 1
            server.transport.close()
            return "421 closing"
        self.per_session[session.peer] += 1
        return await super().handle_DATA(server, session, envelope)


class _GatheringSink(SmtpSink):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.handler = _Gathering(self, n)

    def start(self) -> None:
        controller = Controller(self.handler, hostname=self.host, port=self.port, ready_timeout=10)
        controller.start()
        self._controller = controller


@pytest.mark.parametrize("connections", [1, 3])
def test_the_sender_keeps_n_connections_busy_at_once_and_reuses_each(store_url, tmp_path, engines, connections):
    with _GatheringSink(connections) as sink:
        settings = _settings(tmp_path, store_url, sink.port, connections=connections)
        engine = _engine(store_url, engines)
        ids = _queue(engine, settings, range(24))
        report = Sender(engine, settings, clock=lambda: NOW).drain()
        assert (report.sent, report.retried, report.failed) == (24, 0, 0)
        received = [e.message()["Message-ID"].strip("<>") for e in sink.wait_for(24)]
    assert sorted(received) == sorted(ids)
    assert sink.handler.most == connections
    assert len(sink.handler.per_session) == connections
    assert sum(sink.handler.per_session.values()) == 24
    assert _statuses(engine) == {"sent": 24}


def test_a_dropped_connection_leaves_only_its_mail_to_retry_and_nothing_is_sent_twice(store_url, tmp_path,
                                                                                     engines):
    with _GatheringSink(3) as sink:
        sink.handler.drop = 1
        settings = _settings(tmp_path, store_url, sink.port, connections=3)
        engine = _engine(store_url, engines)
        ids = _queue(engine, settings, range(12))
        report = Sender(engine, settings, clock=lambda: NOW).drain()
        # One DATA met a closed connection: that mail, and only it, waits for its retry.
        assert (report.sent, report.retried, report.failed) == (11, 1, 0)
        assert _statuses(engine) == {"sent": 11, "queued": 1}
        later = NOW + settings.outbox.retry_max * 2
        again = Sender(engine, settings, clock=lambda: later).drain()
        assert (again.sent, again.retried, again.failed) == (1, 0, 0)
        received = [e.message()["Message-ID"].strip("<>") for e in sink.wait_for(12)]
    assert sorted(received) == sorted(ids)
    assert _statuses(engine) == {"sent": 12}


def test_mail_of_one_ticket_goes_out_in_the_order_it_was_queued(store_url, tmp_path, engines):
    """Never two mails of one ticket at once on different connections, so never out of order."""
    with SmtpSink() as sink:
        settings = _settings(tmp_path, store_url, sink.port, connections=4)
        engine = _engine(store_url, engines)
        with writing(engine) as conn:
            ids = [outbox.queue(conn, kind="relay", mailbox=settings.mailbox("support"), ticket_pk=None,
                                ref="T-1000", to=[("Ann", "ann@example.org")], subject=f"Re: [T-1000] Part {n}",
                                text=f"Part {n}.\n", automatic=None, message_id=f"inboxd.T-1000.p{n}@example.com",
                                now=NOW - timedelta(minutes=1), sent_copy=False)
                   for n in range(8)]
        assert Sender(engine, settings, clock=lambda: NOW).drain().sent == 8
        received = [e.message()["Message-ID"].strip("<>") for e in sink.wait_for(8)]
    assert received == ids


# -- run --once ------------------------------------------------------------------------


def test_run_once_sends_acknowledgements_while_the_sync_is_still_going(tmp_path, dovecot, imap_user, smtp_sink):
    """The first batch's acknowledgement reaches the server before the last batch is filed.

    The progress display of the first batch waits (up to 60 s) for the
    sink to have a mail: a cycle that syncs everything before it sends never
    gets one there."""
    for n in range(3):
        dovecot.append(imap_user, "INBOX", make_mail(frm=f"Customer {n} <c{n}@customer.example>",
                                                     subject=f"Question {n}"))
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                          acks=True, batch_size=1)
    seen_during_sync: list[int] = []

    def progress(p) -> None:
        if p.result is not None and p.done == 1:
            try:
                smtp_sink.wait_for(1, timeout=60)
            except AssertionError:
                pass
            seen_during_sync.append(len(smtp_sink.envelopes))

    report = run_once(load_settings(config), progress=progress)
    assert report.failed == []
    assert seen_during_sync and seen_during_sync[0] >= 1
    assert sorted(e.rcpt_tos[0] for e in smtp_sink.wait_for(3)) == [f"c{n}@customer.example" for n in range(3)]
    assert len(smtp_sink.envelopes) == 3


class _LimitedSink(SmtpSink):
    """A server that takes at most `limit` sessions at once and greets any more with 421."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.open = 0
        self.refused = 0

    def start(self) -> None:
        sink = self

        class Limited(SMTP):
            def connection_made(self, transport) -> None:
                sink.open += 1
                super().connection_made(transport)

            def connection_lost(self, exc) -> None:
                sink.open -= 1
                super().connection_lost(exc)

            async def _handle_client(self) -> None:
                if sink.open > sink.limit:
                    sink.refused += 1
                    await self.push("421 too many connections")
                    self.transport.close()
                    return
                await super()._handle_client()

        class LimitedController(Controller):
            def factory(self):
                return Limited(self.handler, **self.SMTP_kwargs)

        controller = LimitedController(_Handler(self), hostname=self.host, port=self.port, ready_timeout=10)
        controller.start()
        self._controller = controller


def test_a_server_that_refuses_the_extra_connections_gets_all_the_mail_over_the_others(store_url, tmp_path,
                                                                                      engines):
    with _LimitedSink(2) as sink:
        settings = _settings(tmp_path, store_url, sink.port, connections=4)
        engine = _engine(store_url, engines)
        ids = _queue(engine, settings, range(20))
        report = Sender(engine, settings, clock=lambda: NOW).drain()
        received = [e.message()["Message-ID"].strip("<>") for e in sink.wait_for(20)]
    assert (report.sent, report.retried, report.failed) == (20, 0, 0)
    assert sorted(received) == sorted(ids)
    assert sink.refused >= 1  # The sender did try for four.
    assert _statuses(engine) == {"sent": 20}
