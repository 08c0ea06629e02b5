"""Fetch batches are bounded in bytes as well as in count.

The poller asks the server for each message's RFC822.SIZE first and then
fetches runs of messages that fit `[mailboxes.imap] batch_bytes`; a message
larger than that on its own is fetched alone.  These tests sync a real
Dovecot folder and read the batches from the progress reports (one per
filed batch) and the store: how the folder was cut, and that every mail was
filed, none lost, none twice.
"""

from __future__ import annotations

import os

import pytest

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.testing.mail import make_mail
from tests.support import db_count, filed_batch_sizes, write_config

# The smallest batch_bytes the config accepts.
BATCH_BYTES = 64 * 1024


def small(i: int) -> bytes:
    return make_mail(frm=f"Small {i} <small{i}@example.cn>", subject=f"Small question {i}",
                     body=f"Hello, a short question number {i}.\n")


def large(i: int) -> bytes:
    # About 140 KB once base64-encoded: more than BATCH_BYTES on its own.
    return make_mail(frm=f"Large {i} <large{i}@example.cn>", subject=f"Scan {i}",
                     body="The scan is attached.\n",
                     attachments=[(f"scan{i}.pdf", os.urandom(100 * 1024), "application/pdf")])


# The folder, in UID order: small and large mail mixed.
FOLDER = ["s", "s", "s", "L", "L", "L", "s", "s", "s", "L", "s", "s"]


def sync(tmp_path, dovecot, imap_user, batch_bytes: int | None) -> tuple[list[int], object]:
    """Sync the folder once; the number of messages in each filed batch, and the config."""
    raws = [small(i) if kind == "s" else large(i) for i, kind in enumerate(FOLDER)]
    assert all(len(r) > BATCH_BYTES for r, kind in zip(raws, FOLDER) if kind == "L")
    assert sum(len(r) for r, kind in zip(raws, FOLDER) if kind == "s") < BATCH_BYTES
    dovecot.append_many(imap_user, "INBOX", raws)
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    if batch_bytes is not None:
        text = config.read_text()
        config.write_text(text.replace("batch_size = 200\n", f"batch_size = 200\nbatch_bytes = {batch_bytes}\n", 1))
    sizes = filed_batch_sizes(config)
    return sizes, config


def assert_all_filed(config) -> None:
    assert db_count(config, "select count(*) from message where direction = 'in'") == len(FOLDER)
    assert db_count(config, "select count(distinct message_key) from message") == len(FOLDER)
    assert db_count(config, "select count(*) from quarantine") == 0
    assert db_count(config, "select last_uid from checkpoint where folder = 'INBOX'") == len(FOLDER)


def test_large_mail_is_fetched_in_more_batches(tmp_path, dovecot, imap_user):
    sizes, config = sync(tmp_path, dovecot, imap_user, BATCH_BYTES)
    # Each mail over batch_bytes is a batch of its own; the small mail
    # between them shares batches up to the limit.
    assert sizes == [3, 1, 1, 1, 3, 1, 2]
    assert_all_filed(config)


def test_under_the_default_bound_the_count_decides(tmp_path, dovecot, imap_user):
    # The default batch_bytes (2 MiB) holds the whole folder: one batch.
    sizes, config = sync(tmp_path, dovecot, imap_user, None)
    assert sizes == [len(FOLDER)]
    assert_all_filed(config)


@pytest.mark.parametrize("batch_bytes", [BATCH_BYTES, 200 * 1024])
def test_a_second_sync_after_bounded_batches_files_nothing_twice(tmp_path, dovecot, imap_user, batch_bytes):
    sizes, config = sync(tmp_path, dovecot, imap_user, batch_bytes)
    assert sum(sizes) == len(FOLDER)
    assert len(sizes) > 1
    # The checkpoint covers every batch: a second run finds nothing new.
    again: list[int] = []
    report = run_once(load_settings(config), progress=lambda p: again.append(p.done) if p.result else None)
    assert not report.failed and again == []
    assert_all_filed(config)
