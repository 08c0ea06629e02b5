"""Filing mail into a PostgreSQL store: the ingest pipeline through inboxd.store.filing.

The same batches go through `Filer.file_batch` (and `StoreSink.file`) as on
SQLite, on a fresh PostgreSQL database of the session's private cluster,
and the store is read back through the models' Core tables.  Most tests
run on both stores (`store_url`), so the two cannot drift apart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text

from inboxd.config import load_settings
from inboxd.desk import ingest
from inboxd.desk.ingest import Batch, Fetched, Filer
from inboxd.store import filing, sentcopies
from inboxd.store.engine import create_store_engine, migrate, reading, store_unusable, writing
from inboxd.store.sql import t
from inboxd.sync.sink import StoreSink
from inboxd.testing.mail import make_mail, make_message_id
from inboxd.testing.threadcheck import offline_config

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


class Desk:
    """A migrated store and the Filer that fills it."""

    def __init__(self, tmp_path, url: str):
        self.settings = load_settings(offline_config(tmp_path))
        self.engine = create_store_engine(url)
        migrate(self.engine)
        self.filer = Filer(self.settings)
        self.uid = 0

    def batch(self, *raws: bytes, folder: str = "INBOX", arrived: datetime = NOW,
              history_before: datetime | None = None, uids: list[int] | None = None) -> Batch:
        if uids is None:
            uids = [self.uid + i + 1 for i in range(len(raws))]
        self.uid = max(self.uid, *uids)
        return Batch("support", folder, 7, max(uids), [Fetched(u, r, arrived) for u, r in zip(uids, raws)],
                     history_before)

    def file(self, *raws: bytes, **kwargs) -> ingest.BatchResult:
        with writing(self.engine) as conn:
            return self.filer.file_batch(conn, self.batch(*raws, **kwargs), NOW)

    def all(self, stmt) -> list[tuple]:
        with reading(self.engine) as conn:
            return [tuple(row) for row in conn.execute(stmt)]

    def ticket_of(self, message_id: str) -> str:
        [(ref,)] = self.all(select(t.ticket.c.ref).join(t.message, t.message.c.ticket_id == t.ticket.c.id)
                            .where(t.message.c.message_id == message_id.strip("<>")))
        return ref


@pytest.fixture
def desk(tmp_path, store_url):
    d = Desk(tmp_path, store_url)
    yield d
    d.engine.dispose()


@pytest.fixture
def pg_desk(tmp_path, pg_url):
    d = Desk(tmp_path, pg_url)
    yield d
    d.engine.dispose()


def test_new_tickets_replies_and_numbers(desk):
    a, b = make_message_id("x.example"), make_message_id("x.example")
    result = desk.file(make_mail(message_id=a, subject="Printer on fire", frm="Ann <ann@example.org>"),
                       make_mail(message_id=b, subject="Invoice", frm="Bob <bob@example.net>"))
    assert (result.filed, result.new_tickets, result.quarantined) == (2, 2, 0)
    reply = make_mail(subject="Re: Printer on fire", frm="Ann <ann@example.org>", in_reply_to=a, references=[a],
                      body="It is out now.\n")
    result = desk.file(reply)
    assert (result.filed, result.new_tickets) == (1, 0)
    first = desk.settings.tickets.first_seq
    tickets = desk.all(select(t.ticket.c.id, t.ticket.c.ref, t.ticket.c.subject, t.ticket.c.status,
                              t.ticket.c.message_count, t.ticket.c.created_at).order_by(t.ticket.c.id))
    assert [row[:5] for row in tickets] == [
        (1, f"T-{first}", "Printer on fire", "new", 2),
        (2, f"T-{first + 1}", "Invoice", "new", 1),
    ]
    # Timestamps come back as aware UTC datetimes on both stores.
    assert tickets[0][5] == NOW
    # The reply is on its parent's ticket, with its reference and a sighting each.
    assert desk.ticket_of(a) == f"T-{first}"
    assert desk.all(select(t.messageref.c.ref)) == [(a.strip("<>"),)]
    assert desk.all(select(func.count()).select_from(t.sighting)) == [(3,)]
    assert desk.all(select(t.checkpoint.c.last_uid)) == [(3,)]
    assert sorted(desk.all(select(t.customer.c.email))) == [("ann@example.org",), ("bob@example.net",)]
    actions = desk.all(select(t.event.c.action, t.event.c.detail).where(t.event.c.ticket_id == 1)
                       .order_by(t.event.c.id))
    assert [a for a, _ in actions] == ["created", "message"]
    assert json.loads(actions[1][1])["reason"].startswith("In-Reply-To")


def test_a_uid_filed_twice_is_a_duplicate_and_a_copy_elsewhere_a_sighting(desk):
    raw = make_mail(subject="Once only")
    desk.file(raw, uids=[5])
    again = desk.file(raw, uids=[5])
    assert (again.filed, again.duplicates) == (0, 1)
    elsewhere = desk.file(raw, folder="Archive", uids=[9])
    assert (elsewhere.filed, elsewhere.duplicates) == (0, 1)
    assert desk.all(select(func.count()).select_from(t.message)) == [(1,)]
    assert sorted(desk.all(select(t.sighting.c.folder, t.sighting.c.uid))) == [("Archive", 9), ("INBOX", 5)]


def test_a_bad_message_is_quarantined_and_the_batch_goes_on(desk):
    no_sender = (b"Message-ID: <nosender@x.example>\r\nSubject: Who am I\r\nDate: Wed, 02 Dec 2026 09:00:00 +0000"
                 b"\r\n\r\nNobody wrote this.\r\n")
    good = make_mail(subject="Good mail after a bad one")
    result = desk.file(no_sender, good)
    assert (result.filed, result.quarantined) == (1, 1)
    [(uid, message_id, reason, sha)] = desk.all(select(t.quarantine.c.uid, t.quarantine.c.message_id,
                                                       t.quarantine.c.reason, t.quarantine.c.raw_sha256))
    assert (uid, message_id, reason) == (1, "nosender@x.example", "no sender address")
    with reading(desk.engine) as conn:
        assert filing.raw_data(conn, sha) == no_sender
    assert desk.all(select(t.ticket.c.subject)) == [("Good mail after a bad one",)]
    # Nothing of the bad mail's half-done filing is left.
    assert desk.all(select(func.count()).select_from(t.message)) == [(1,)]


def test_a_quarantine_row_that_cannot_be_written_leaves_a_bare_one(desk, monkeypatch):
    bad, good = make_mail(subject="Bad id"), make_mail(subject="Fine")
    parse = desk.filer.parse

    def unclean_parse(raw):
        from dataclasses import replace
        msg = parse(raw)
        # A NUL byte: PostgreSQL's text refuses it, SQLite's cannot bind a lone surrogate.
        return replace(msg, message_id="bad\x00\udc80@x") if raw is bad else msg

    monkeypatch.setattr(desk.filer, "parse", unclean_parse)
    result = desk.file(bad, good)
    assert (result.filed, result.quarantined) == (1, 1)
    [(message_id, reason)] = desk.all(select(t.quarantine.c.message_id, t.quarantine.c.reason))
    assert message_id is None and reason.startswith("unreadable: ")


def test_large_mail_is_kept_whole(desk):
    body = "".join(f"line {i} of a long report\n" for i in range(150_000))
    raw = make_mail(subject="Big report", body=body,
                    attachments=[("data.bin", bytes(range(256)) * 12_000, "application/octet-stream")])
    assert len(raw) > 3 * filing.RAW_PIECE
    result = desk.file(raw)
    assert result.filed == 1
    [(size, data)] = desk.all(select(t.rawmessage.c.size, t.rawmessage.c.data))
    assert size == len(raw) and bytes(data) == raw


def test_history_files_closed_tickets_that_later_mail_reopens(desk):
    mid = make_message_id("x.example")
    old = datetime(2025, 1, 5, 8, 0, tzinfo=UTC)
    result = desk.file(make_mail(message_id=mid, subject="Old question"), arrived=old, history_before=NOW)
    assert (result.new_tickets, result.history_tickets) == (1, 1)
    assert desk.all(select(t.ticket.c.status, t.ticket.c.history, t.ticket.c.closed_at)) == [("closed", True, old)]
    # A live customer reply long after: too old to reopen, a follow-up ticket.
    desk.file(make_mail(subject="Re: Old question", in_reply_to=mid, references=[mid]))
    rows = desk.all(select(t.ticket.c.id, t.ticket.c.status, t.ticket.c.history).order_by(t.ticket.c.id))
    assert rows == [(1, "closed", True), (2, "new", False)]


def test_a_second_mail_reopens_a_recently_closed_ticket(desk):
    mid = make_message_id("x.example")
    desk.file(make_mail(message_id=mid, subject="Question"))
    with writing(desk.engine) as conn:
        conn.execute(t.ticket.update().values(status="closed", closed_at=NOW - timedelta(days=1)))
    desk.file(make_mail(subject="Re: Question", in_reply_to=mid, references=[mid]))
    assert desk.all(select(t.ticket.c.status, t.ticket.c.closed_at, t.ticket.c.message_count,
                           t.ticket.c.version)) == [("open", None, 2, 2)]


def test_the_sink_files_on_postgresql_with_its_lease_and_checkpoint(pg_desk):
    sink = StoreSink(pg_desk.engine, pg_desk.settings, workers=0, clock=lambda: NOW)
    try:
        assert sink.acquire_folder("support", "INBOX", NOW)
        sink.begin_folder("support", "INBOX", 7, NOW - timedelta(days=30))
        result = sink.file(pg_desk.batch(make_mail(subject="Via the sink")), None)
        assert result.filed == 1
        checkpoint = sink.checkpoint("support", "INBOX")
        assert (checkpoint.uidvalidity, checkpoint.last_uid, checkpoint.history_before) == (
            7, 1, NOW - timedelta(days=30))
        sink.folder_state("support", "INBOX", "connection refused", NOW)
        sink.folder_state("support", "INBOX", "still refused", NOW + timedelta(minutes=5))
        assert pg_desk.all(select(t.folderstate.c.ok, t.folderstate.c.error, t.folderstate.c.failing_since)) == [
            (False, "still refused", NOW)]
        sink.folder_state("support", "INBOX", None, NOW + timedelta(minutes=9))
        assert pg_desk.all(select(t.folderstate.c.ok, t.folderstate.c.failing_since,
                                  t.folderstate.c.last_ok_at)) == [(True, None, NOW + timedelta(minutes=9))]
    finally:
        sink.close()


def test_sent_copies_are_claimed_once_across_connections(store_url, tmp_path):
    desk = Desk(tmp_path, store_url)
    try:
        with writing(desk.engine) as conn:
            for i in range(3):
                conn.execute(t.outbox.insert().values(
                    mailbox="support", kind="reply", message_id=f"m{i}@x", sender="support@example.com",
                    data=b"mail %d" % i, status="sent", next_attempt_at=NOW, created_at=NOW,
                    copy_status="pending"))
        expired = NOW - timedelta(minutes=10)
        with reading(desk.engine) as conn:
            assert [i for i, _ in sentcopies.pending_copies(conn, "support", expired, 2)] == [1, 2]
        with writing(desk.engine) as conn:
            claimed = sentcopies.claim_copies(conn, "support", NOW, expired, 100)
        assert claimed == [(1, b"mail 0"), (2, b"mail 1"), (3, b"mail 2")]
        with writing(desk.engine) as conn:
            assert sentcopies.claim_copies(conn, "support", NOW, expired, 100) == []
            sentcopies.copy_done(conn, 2)
        # After the lease, the copies of a daemon that died are offered again, but not a done one.
        with writing(desk.engine) as conn:
            again = sentcopies.claim_copies(conn, "support", NOW + timedelta(hours=1), NOW + timedelta(minutes=1), 100)
        assert [i for i, _ in again] == [1, 3]
    finally:
        desk.engine.dispose()


def test_postgresql_going_away_is_an_unusable_store_not_a_bad_batch(pg_desk, monkeypatch):
    """With PostgreSQL gone mid-batch, the batch is not split and no good mail is quarantined."""
    sink = StoreSink(pg_desk.engine, pg_desk.settings, workers=0, clock=lambda: NOW)

    def server_goes_away(filer, conn, d):
        if d.uid == 2:
            # An administrator's shutdown of this very session (SQLSTATE 57P01), mid-pipeline.
            conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    try:
        assert sink.acquire_folder("support", "INBOX", NOW)
        monkeypatch.setattr(ingest, "PIPELINE", (server_goes_away, *ingest.PIPELINE))
        with pytest.raises(sa_exc.DBAPIError) as raised:
            sink.file(pg_desk.batch(make_mail(subject="One"), make_mail(subject="Two")), None)
        assert store_unusable(raised.value)
        monkeypatch.undo()
        assert pg_desk.all(select(func.count()).select_from(t.quarantine)) == [(0,)]
        assert pg_desk.all(select(func.count()).select_from(t.ticket)) == [(0,)]
        # The server is back (a new connection): the same batch files whole.
        result = sink.file(pg_desk.batch(make_mail(subject="One"), make_mail(subject="Two"), uids=[1, 2]), None)
        assert (result.filed, result.quarantined) == (2, 0)
    finally:
        sink.close()


def test_postgresql_killed_under_a_filing_statement_is_an_unusable_store(pg_desk, monkeypatch, caplog):
    """The same, when the session dies between statements (killed from outside) and a
    filing statement is the one that finds out."""
    sink = StoreSink(pg_desk.engine, pg_desk.settings, workers=0, clock=lambda: NOW)
    admin = create_store_engine(str(pg_desk.engine.url.render_as_string(hide_password=False)))

    def killed_from_outside(filer, conn, d):
        if d.uid == 2:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    try:
        assert sink.acquire_folder("support", "INBOX", NOW)
        monkeypatch.setattr(ingest, "PIPELINE", (killed_from_outside, *ingest.PIPELINE))
        with pytest.raises(Exception) as raised:
            sink.file(pg_desk.batch(make_mail(subject="One"), make_mail(subject="Two")), None)
        assert store_unusable(raised.value), repr(raised.value)
        # Neither retried nor split: the poller tries the batch again later.
        assert not [r for r in caplog.records if "trying once more" in r.getMessage()]
        monkeypatch.undo()
        assert pg_desk.all(select(func.count()).select_from(t.quarantine)) == [(0,)]
        assert pg_desk.all(select(func.count()).select_from(t.ticket)) == [(0,)]
    finally:
        sink.close()
        admin.dispose()


def test_which_errors_make_the_store_unusable():
    import sqlite3

    unusable = store_unusable
    assert unusable(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert unusable(psycopg.errors.AdminShutdown("terminating connection due to administrator command"))
    assert unusable(sa_exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("gone")))
    invalidated = sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert unusable(invalidated)
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = 5
    assert unusable(busy)
    # A statement's own failure is about the mail, not the store.
    assert not unusable(sa_exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key")))
    assert not unusable(sa_exc.DataError("INSERT", {}, psycopg.DataError("invalid byte sequence")))
    assert not unusable(ValueError("bad header"))


def test_another_transaction_in_the_way_is_not_the_mails_fault():
    # A deadlock or serialization failure rolls the batch back to be filed
    # again; a constraint the mail breaks is the mail's (quarantine).
    errors = psycopg.errors
    assert filing.contention(errors.DeadlockDetected("deadlock detected"))
    assert filing.contention(sa_exc.OperationalError("INSERT", {}, errors.SerializationFailure("could not serialize")))
    assert filing.contention(errors.LockNotAvailable("lock timeout"))
    assert not filing.contention(errors.UniqueViolation("duplicate key"))
    assert not filing.contention(ValueError("bad data"))
