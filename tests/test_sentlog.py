"""The sender's log of accepted mail beside a SQLite store (inboxd.store.sentlog), and how the sender uses it."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select

from inboxd.config import load_settings
from inboxd.outbound.outbox import queue
from inboxd.outbound.sender import Sender
from inboxd.store import sentlog
from inboxd.store.engine import open_store, writing
from inboxd.store.sql import t as tables
from tests import support
from tests.support import write_config

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

sqlite_only = pytest.mark.skipif(support.STORE != "sqlite", reason="the sent log exists beside a SQLite file only")


def test_the_log_keeps_what_it_records_until_the_store_has_folded_it(tmp_path):
    log = sentlog.SentLog(tmp_path / "inboxd.db-sent")
    at = datetime(2026, 11, 23, 9, 30, 1, 250, tzinfo=UTC)
    log.record([(7, 1, "<a@x>", at), (9, 2, "<b@x>", at + timedelta(seconds=1))])
    log.record([(7, 1, "<a@x>", at)])  # The same mail twice (a retried log write) is one row.
    assert log.pending() == [(7, 1, "<a@x>", at), (9, 2, "<b@x>", at + timedelta(seconds=1))]
    # Another process (a second log on the same file) sees it too.
    other = sentlog.SentLog(tmp_path / "inboxd.db-sent")
    assert other.pending() == log.pending()
    # Forgetting goes by the claim: the same row sent by a later claim stays.
    log.record([(9, 3, "<b@x>", at)])
    other.forget([(9, 2, "<b@x>", at + timedelta(seconds=1))])
    assert log.pending() == [(7, 1, "<a@x>", at), (9, 3, "<b@x>", at)]
    log.close()
    other.close()


def test_the_log_is_private_to_its_owner(tmp_path):
    path = tmp_path / "inboxd.db-sent"
    sentlog.SentLog(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_only_a_sqlite_file_has_a_log_beside_it(tmp_path):
    assert sentlog.path_beside(create_engine(f"sqlite:///{tmp_path}/inboxd.db")) == tmp_path / "inboxd.db-sent"
    assert sentlog.path_beside(create_engine("sqlite://")) is None
    assert sentlog.path_beside(create_engine("postgresql+psycopg://u@localhost/inboxd")) is None


def _queue_relay(engine, settings, message_id: str) -> None:
    with writing(engine) as conn:
        queue(conn, kind="relay", mailbox=settings.mailbox("support"),
              ticket_pk=None, ref="T-1000", to=[("Ann", "ann@example.org")], subject="Re: [T-1000] Help",
              text="On it.\n", automatic=None, from_name="Support", message_id=message_id,
              now=NOW - timedelta(minutes=1), sent_copy=False)


def _outbox(engine) -> list[tuple]:
    with writing(engine) as conn:
        return conn.execute(select(tables.outbox.c.status, tables.outbox.c.attempts)).all()


@sqlite_only
def test_a_drain_records_its_mail_in_the_store_and_leaves_the_log_empty(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port)
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    for n in range(5):
        _queue_relay(engine, settings, f"inboxd.T-1000.{n}@example.com")
    assert Sender(engine, settings, clock=lambda: NOW).drain().sent == 5
    assert len(smtp_sink.wait_for(5)) == 5
    assert _outbox(engine) == [("sent", 1)] * 5
    assert sentlog.of(engine).pending() == []


@sqlite_only
def test_a_mail_in_the_log_is_never_claimed_again(tmp_path, dovecot, imap_user, smtp_sink):
    """A sender killed after its log's commit and before the fold: the row is still `sending`, and
    its lease runs out; the next claim, by any sender, folds the log first and sends nothing."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port)
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    _queue_relay(engine, settings, "inboxd.T-1000.killed@example.com")
    claimed = Sender(engine, settings, clock=lambda: NOW).claim(NOW)
    assert claimed is not None and _outbox(engine) == [("sending", 1)]
    # What the killed sender logged, read by a sender of another process (its own engine).
    sentlog.of(engine).record([(claimed.id, claimed.attempts, claimed.message_id, NOW)])
    later = NOW + settings.outbox.lease + timedelta(seconds=1)
    other = Sender(open_store(settings.store.url), settings, clock=lambda: later)
    assert other.drain().sent == 0
    assert _outbox(engine) == [("sent", 1)]
    assert smtp_sink.envelopes == []
    assert sentlog.of(engine).pending() == []


@sqlite_only
def test_a_claim_near_the_end_of_its_lease_is_renewed_before_data(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port)
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    _queue_relay(engine, settings, "inboxd.T-1000.slow@example.com")
    clock = [NOW]
    sender = Sender(engine, settings, clock=lambda: clock[0])
    claimed = sender.claim(NOW)
    # Almost the whole lease has gone by (a slow server ahead of it); nobody else claimed the row.
    clock[0] = NOW + settings.outbox.lease - timedelta(seconds=1)
    assert sender.send(claimed) == "sent"
    assert len(smtp_sink.wait_for(1)) == 1
    with writing(engine) as conn:
        status, claimed_at = conn.execute(select(tables.outbox.c.status, tables.outbox.c.claimed_at)).one()
    assert status == "sent"
    assert claimed_at == clock[0]  # Renewed from the moment of the check.


@sqlite_only
def test_a_log_left_beside_a_restored_store_marks_none_of_its_other_mail(tmp_path, dovecot, imap_user, smtp_sink):
    """The log names rows by id and Message-ID: rows of another store with the same ids are left alone."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port)
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    _queue_relay(engine, settings, "inboxd.T-1000.new@example.com")
    with writing(engine) as conn:
        outbox_id = conn.execute(select(tables.outbox.c.id)).scalar_one()
    sentlog.of(engine).record([(outbox_id, 1, "inboxd.T-1000.old@example.com", NOW)])
    assert sentlog.fold(engine) is True
    assert _outbox(engine) == [("queued", 0)]
    assert sentlog.of(engine).pending() == []
    assert Sender(engine, settings, clock=lambda: NOW).drain().sent == 1
    assert len(smtp_sink.wait_for(1)) == 1
