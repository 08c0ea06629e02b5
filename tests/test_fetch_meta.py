"""A folder is read in chunks of META_CHUNK UIDs, whose sizes and arrival times are kept compactly.

The poller asks the server for the size (RFC822.SIZE) and arrival time
(INTERNALDATE) of META_CHUNK UIDs at a time and keeps only arrays and
plain UTC datetimes of that answer (`inboxd.sync.imap._meta`), so a first
sync of years of mail does not hold imapclient's answer, a dict and a time
zone object per message, while the chunk's batches are fetched.  These
tests sync a real Dovecot folder across several chunks, with the chunk made
small: every mail is filed once, with the arrival time the server gave it
(offsets included), batches never straddle a chunk, and mail over
max_message_bytes, spooled to disk, keeps its arrival time too.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.sync import imap
from inboxd.testing.mail import make_mail
from tests.support import db_count, filed_batch_sizes, store_engine, write_config

CHUNK = 4
# Arrival times with an offset of their own, an hour apart, in UID order.
FIRST = datetime(2024, 3, 1, 9, 30, 5, tzinfo=timezone(timedelta(hours=8)))


def arrival(i: int) -> datetime:
    return FIRST + timedelta(hours=i)


def mail(i: int, big: bool = False) -> bytes:
    attachments = [(f"scan{i}.pdf", os.urandom(100 * 1024), "application/pdf")] if big else []
    return make_mail(frm=f"Customer {i} <c{i}@example.cn>", subject=f"Question {i}", body=f"Question {i}.\n",
                     attachments=attachments)


def stored_times(config, sql: str) -> list[datetime]:
    with store_engine(config).connect() as conn:
        return [_utc(row[0]) for row in conn.execute(text(sql))]


def _utc(value) -> datetime:
    # SQLite gives the stored text, PostgreSQL a naive datetime; both are UTC.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(imap, "META_CHUNK", CHUNK)
    # The folder's UIDs are asked for a few at a time too (`_new_uids`).
    monkeypatch.setattr(imap, "SEARCH_WINDOW", 3)


def test_a_sync_across_chunks_files_each_mail_once_at_its_arrival_time(tmp_path, dovecot, imap_user, small_chunks):
    n = CHUNK * 3 + 1
    dovecot.append_many(imap_user, "INBOX", [(mail(i), arrival(i)) for i in range(n)])
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    sizes = filed_batch_sizes(config)
    # A batch is cut where its chunk ends (the count allows more).
    assert sizes == [CHUNK, CHUNK, CHUNK, 1]
    assert db_count(config, "select count(*) from message where direction = 'in'") == n
    assert db_count(config, "select count(distinct message_key) from message") == n
    assert db_count(config, "select last_uid from checkpoint where folder = 'INBOX'") == n
    # Each ticket's time is its mail's INTERNALDATE, whatever the offset it was given in.
    assert stored_times(config, "select created_at from ticket order by id") == [
        arrival(i).astimezone(UTC) for i in range(n)]


def test_history_is_decided_by_each_mails_arrival_across_chunks(tmp_path, dovecot, imap_user, small_chunks):
    n = CHUNK * 2 + 2
    dovecot.append_many(imap_user, "INBOX", [(mail(i), arrival(i)) for i in range(n)])
    # The cut-off falls inside the second chunk: mail 0-5 is history, 6-9 is live.
    cutoff = arrival(CHUNK + 2).astimezone(UTC)
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          history_before=cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert not run_once(load_settings(config)).failed
    assert db_count(config, "select count(*) from ticket where history") == CHUNK + 2
    assert db_count(config, "select count(*) from ticket where not history") == n - CHUNK - 2


def test_mail_over_the_limit_at_a_chunks_start_keeps_its_arrival_time(tmp_path, dovecot, imap_user, small_chunks):
    # The big one is the first UID of the second chunk, a batch of its own.
    kinds = [False] * CHUNK + [True] + [False] * 2
    dovecot.append_many(imap_user, "INBOX", [(mail(i, big), arrival(i)) for i, big in enumerate(kinds)])
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          store="max_message_bytes = 65536")
    assert not run_once(load_settings(config)).failed
    assert db_count(config, "select count(*) from message where direction = 'in'") == len(kinds) - 1
    assert stored_times(config, "select arrived_at from quarantine") == [arrival(CHUNK).astimezone(UTC)]
    assert db_count(config, "select last_uid from checkpoint where folder = 'INBOX'") == len(kinds)


def test_mail_that_comes_later_is_found_past_the_windows_of_the_first_sync(tmp_path, dovecot, imap_user,
                                                                          small_chunks):
    dovecot.append_many(imap_user, "INBOX", [mail(i) for i in range(7)])
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    assert not run_once(load_settings(config)).failed
    # A second sync starts past the checkpoint, inside a window's width of UIDs.
    dovecot.append_many(imap_user, "INBOX", [mail(i) for i in range(7, 12)])
    assert not run_once(load_settings(config)).failed
    assert db_count(config, "select count(*) from message where direction = 'in'") == 12
    assert db_count(config, "select count(distinct message_key) from message") == 12
    assert db_count(config, "select last_uid from checkpoint where folder = 'INBOX'") == 12
    # Nothing new: the last window ("13:*") names the newest UID, which is not new.
    assert not run_once(load_settings(config)).failed
    assert db_count(config, "select count(*) from message where direction = 'in'") == 12
