"""Copies of sent mail in the mailbox's Sent folder: claimed like sends, appended once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from inboxd.config import load_settings
from inboxd.store.engine import create_store_engine, open_store, writing
from inboxd.sync.imap import MailboxPoller, connect
from inboxd.outbound.outbox import queue
from inboxd.store.sql import t as tables
from inboxd.sync.sink import StoreSink
from tests.support import write_config

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _sent_rows(engine, settings, count: int) -> list[str]:
    """`count` outbox rows that went out and wait for their Sent copy; their Message-IDs."""
    mailbox = settings.mailbox("support")
    ids = []
    with writing(engine) as conn:
        for i in range(count):
            ids.append(queue(conn, kind="relay", mailbox=mailbox, ticket_pk=None, ref=f"T-{1000 + i}",
                             to=[(f"Customer {i}", f"c{i}@example.org")], subject=f"Re: [T-{1000 + i}] Question",
                             text="We are on it.\n", automatic=None, from_name="Support",
                             message_id=f"inboxd.T-{1000 + i}.copy{i}@example.com", now=NOW, sent_copy=True))
        conn.execute(update(tables.outbox).values(status="sent", sent_at=tables.outbox.c.created_at))
    return ids


def _sent_folder_ids(settings) -> list[str]:
    client = connect(settings.mailbox("support").imap)
    try:
        client.select_folder("Sent", readonly=True)
        fetched = client.fetch(client.search(["ALL"]), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        return sorted(data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split("<", 1)[1].split(">", 1)[0]
                      for data in fetched.values())
    finally:
        client.logout()


def test_two_daemons_appending_at_once_put_each_copy_in_sent_exactly_once(tmp_path, dovecot, imap_user):
    """Defect: with two daemons on one store, 663 of 3,000 acks appeared twice in
    the Sent folder: both read the same pending copies and both appended them."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "sent_folder": "Sent"}])
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    expected = sorted(_sent_rows(engine, settings, 150))

    # Two daemons: each its own engine (its own connections to the store) and its own IMAP connection.
    sinks = [StoreSink(engine, settings, workers=0), StoreSink(create_store_engine(settings.store.url), settings,
                                                               workers=0)]
    start = threading.Barrier(len(sinks))
    appended = [0] * len(sinks)
    errors: list[BaseException] = []

    def daemon(n: int) -> None:
        poller = MailboxPoller(settings.mailbox("support"), sinks[n])
        client = connect(settings.mailbox("support").imap)
        try:
            start.wait()
            while (done := poller.append_copies(client)) > 0:
                appended[n] += done
        except BaseException as exc:  # Reported by the main thread.
            errors.append(exc)
        finally:
            client.logout()

    threads = [threading.Thread(target=daemon, args=(n,)) for n in range(len(sinks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sum(appended) == len(expected)
    assert _sent_folder_ids(settings) == expected
    with writing(engine) as conn:
        outbox = tables.outbox
        assert conn.execute(select(outbox.c.copy_status, func.count()).group_by(outbox.c.copy_status)).all() \
            == [("done", 150)]
    for sink in sinks:
        sink.engine.dispose()


def test_a_claimed_copy_of_a_daemon_that_died_is_claimed_again_after_the_lease(tmp_path, dovecot, imap_user):
    """Defect (of the claim): a copy claimed by a daemon killed mid-append must not stay unappended for ever."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "sent_folder": "Sent"}])
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    _sent_rows(engine, settings, 3)
    lease = settings.outbox.lease
    first = StoreSink(engine, settings, workers=0)
    second = StoreSink(engine, settings, workers=0, clock=lambda: NOW + lease + timedelta(seconds=1))

    claimed = first.claim_copies("support", NOW)  # ... and the daemon dies before appending them.
    assert [row_id for row_id, _ in claimed] == [1, 2, 3]
    assert second.claim_copies("support", NOW + lease - timedelta(seconds=1)) == []
    assert second.pending_copies("support") != []  # By its clock, the old claim has expired.
    again = second.claim_copies("support", NOW + lease + timedelta(seconds=1))
    assert [row_id for row_id, _ in again] == [1, 2, 3]
    for row_id, _ in again:
        second.copy_done(row_id)
    assert second.claim_copies("support", NOW + 3 * lease) == []
