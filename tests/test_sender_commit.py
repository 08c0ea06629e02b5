"""When the sender records that the server accepted a mail, and whose a claimed row is."""

from __future__ import annotations

import re
import signal
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from inboxd.config import load_settings
from inboxd.store.engine import create_store_engine, open_store, writing
from inboxd.outbound.outbox import queue
from inboxd.outbound.sender import Sender
from inboxd.store.sql import t as tables
from inboxd.testing.mail import make_mail
from inboxd.testing.smtp import Envelope, SmtpSink
from tests import support
from tests.support import db_count, start_daemon, stop_daemon, wait_until, write_config


class LockingSink(SmtpSink):
    """An SMTP sink that, on the first DATA, takes the store's write lock before it answers 250:
    another writer (ingest, a CLI command) wanting the store at the moment the server accepts."""

    def __init__(self, store: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.writer: sqlite3.Connection | None = None
        self.lock_was_free: list[bool] = []

    def _record(self, envelope: Envelope) -> None:
        if self.lock_was_free:
            super()._record(envelope)
            return
        self.writer = sqlite3.connect(self.store, timeout=0.5, isolation_level=None, check_same_thread=False)
        try:
            self.writer.execute("BEGIN IMMEDIATE")
            self.lock_was_free.append(True)
        except sqlite3.OperationalError:  # "database is locked": the sender holds it across DATA.
            self.lock_was_free.append(False)
        super()._record(envelope)

    def release(self) -> None:
        if self.writer is not None:
            if self.writer.in_transaction:
                self.writer.execute("ROLLBACK")
            self.writer.close()
            self.writer = None


@pytest.mark.skipif(support.STORE != "sqlite",
                    reason="about SQLite's write lock: the sink takes it with BEGIN IMMEDIATE to check that the"
                           " sender holds it from before DATA to its record")
def test_a_kill_right_after_the_servers_250_does_not_send_the_ack_again(tmp_path, dovecot, imap_user):
    """Defect: 4 of 3,000 acks were sent twice after 10 SIGKILLs: after the server's
    250 the sender still had to wait for the store's write lock to record `sent`, and a
    kill in that wait left the row `sending`, to be sent again after the lease."""
    sink = LockingSink(str(tmp_path / "inboxd.db"))
    sink.start()
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=sink.port,
                          acks=True, outbox='lease = "2s"')
    dovecot.append(imap_user, "INBOX", make_mail(frm="Ann <ann@customer.example>", subject="Help"))
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        sink.wait_for(1, timeout=60)
        # The server has answered 250 while another writer wanted the store.
        # Recorded at once, the row is `sent` whatever that writer does; the
        # kill comes once it is, or after a generous wait for it.
        try:
            wait_until(lambda: db_count(config, "select count(*) from outbox where status = 'sent'") == 1,
                       timeout=10, what="the ack recorded as sent")
        except AssertionError:
            pass
        stop_daemon(daemon, signal.SIGKILL)
    finally:
        sink.release()
        stop_daemon(daemon, signal.SIGKILL)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        # A row left `sending` would be claimed again after the 2 s lease and sent a second time.
        wait_until(lambda: len(re.findall(r"inboxd \S* ?start", log.read_text())) >= 2, timeout=60,
                   what="the daemon's restart")
        wait_until(lambda: db_count(config, "select count(*) from outbox where status != 'sent'") == 0
                   and db_count(config, "select count(*) from outbox") == 1, timeout=30, what="an idle outbox")
    finally:
        assert stop_daemon(daemon) == 0
        sink.stop()
    assert [e.rcpt_tos for e in sink.envelopes] == [["ann@customer.example"]]
    assert sink.lock_was_free == [False]  # The sender held the write lock from before DATA to its record.


NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def test_a_sender_whose_lease_ran_out_never_sends_a_row_another_sender_claimed(tmp_path, dovecot, imap_user,
                                                                              smtp_sink):
    """Defect: a sender slower than the lease sent its row after another sender had
    claimed it again (and sent it): the claim was not checked before DATA."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port)
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    with writing(engine) as conn:
        queue(conn, kind="relay", mailbox=settings.mailbox("support"),
              ticket_pk=None, ref="T-1000", to=[("Ann", "ann@example.org")], subject="Re: [T-1000] Help",
              text="On it.\n", automatic=None, from_name="Support", message_id="inboxd.T-1000.lease@example.com",
              now=NOW - timedelta(minutes=1), sent_copy=False)
    slow = Sender(engine, settings, clock=lambda: NOW)
    claimed = slow.claim(NOW)
    assert claimed is not None
    # The slow sender's lease runs out; a second daemon claims the row and sends it.
    later = NOW + settings.outbox.lease + timedelta(seconds=1)
    other = Sender(create_store_engine(settings.store.url), settings, clock=lambda: later)
    assert other.drain().sent == 1
    assert slow.send(claimed) == "lost"
    assert [e.rcpt_tos for e in smtp_sink.wait_for(1)] == [["ann@example.org"]]
    with writing(engine) as conn:
        assert conn.execute(select(tables.outbox.c.status, tables.outbox.c.attempts)).all() == [("sent", 2)]
    assert len(smtp_sink.envelopes) == 1
