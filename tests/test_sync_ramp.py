"""A folder sync starts with small batches, doubling up to batch_size, and starts the parser early.

The filer waits for a batch to be fetched and parsed before it can start:
with the first batch a whole batch_size, the first mail of a large sync was
filed only after 200 mails' fetch and parse (and the parser worker's start).
The first batch is FIRST_BATCH mails and each next one twice the last, up
to batch_size; and the poller starts the parser worker as soon as it knows
a folder's count of new mail, so the worker's start overlaps the fetch.
"""

from __future__ import annotations

import threading

from inboxd.config import load_settings
from inboxd.store.engine import open_store
from inboxd.sync.imap import FIRST_BATCH
from inboxd.sync.sink import MIN_BATCH_FOR_WORKER, StoreSink
from inboxd.testing.mail import make_mail
from tests.support import db_count, filed_batch_sizes, write_config


def test_batches_start_small_and_double_up_to_batch_size(tmp_path, dovecot, imap_user):
    n = FIRST_BATCH * 7 + 11
    dovecot.append_many(imap_user, "INBOX", [
        make_mail(frm=f"C{i} <c{i}@example.cn>", subject=f"Question {i}", body=f"Question {i}.\n")
        for i in range(n)])
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          batch_size=FIRST_BATCH * 3)
    sizes = filed_batch_sizes(config)
    top = FIRST_BATCH * 3
    assert sizes[:3] == [FIRST_BATCH, FIRST_BATCH * 2, top]
    assert all(size == top for size in sizes[2:-1]) and 0 < sizes[-1] <= top
    assert sum(sizes) == n
    assert db_count(config, "SELECT count(*) FROM message") == n


def _wait_for_worker(pool, started: threading.Event) -> None:
    while not pool.procs:
        started.wait(0.005)


def test_the_parser_worker_starts_when_a_folder_has_enough_new_mail(tmp_path, dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    sink = StoreSink(engine, settings)
    try:
        sink.expect(MIN_BATCH_FOR_WORKER - 1)
        # Too few to be worth a worker: nothing was asked of the pool, so nothing can start.
        assert sink.pool.jobs.empty() and not sink.pool.procs
        sink.expect(MIN_BATCH_FOR_WORKER)
        _wait_for_worker(sink.pool, threading.Event())
        worker = sink.pool.procs[0]
        assert worker.poll() is None
        # The warmed worker is the one that parses the first batch.
        raws = [make_mail(frm="C <c@example.cn>", subject=f"Q {i}", body="Hello.\n")
                for i in range(MIN_BATCH_FOR_WORKER)]
        parsed = sink.pool.submit(raws, settings.store.max_attachment_bytes, settings.store.data_dir).result(60)
        assert len(parsed) == len(raws)
        assert sink.pool.procs == [worker]
    finally:
        sink.close()
        engine.dispose()
