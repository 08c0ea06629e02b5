"""The parser worker (inboxd.sync.worker.ParserPool): a plain child process that parses batches.

What it answers is what the daemon would parse itself; a worker that dies
fails only the batch it had (the sink then parses that batch itself: see
StoreSink._parsed) and the next batch gets a new worker.
"""

from __future__ import annotations

import psutil
import pytest

from inboxd.sync.worker import ParserPool, WorkerDied, parse_many
from inboxd.testing.mail import make_mail


def _batch(n: int = 10) -> list[bytes]:
    mails = [make_mail(subject=f"Question {i}", body=f"Hello,\n\nquestion {i}.\n\n> quoted\n") for i in range(n)]
    mails.append(make_mail(subject="With a file", attachments=[("a.txt", b"some content\n", "text/plain")]))
    mails.append(b"not a mail at all\x00\xff")
    return mails


def test_the_worker_answers_what_the_daemon_would_parse(tmp_path):
    raws = _batch()
    pool = ParserPool(1)
    try:
        answer = pool.submit(raws, 1 << 20, tmp_path / "a").result(timeout=60)
    finally:
        pool.shutdown()
    here = parse_many(raws, 1 << 20, tmp_path / "b")
    assert [repr(m) for m in answer] == [repr(m) for m in here]
    # The attachment went to disk in the worker, and only its metadata came back.
    assert sorted(p.name for p in (tmp_path / "a").rglob("*") if p.is_file()) == \
        sorted(p.name for p in (tmp_path / "b").rglob("*") if p.is_file()) != []


def test_a_worker_that_dies_fails_its_batch_only_and_the_next_batch_gets_a_new_worker(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    raws = _batch()
    pool = ParserPool(1)
    try:
        first = pool.submit(raws, 1 << 20, tmp_path / "data").result(timeout=60)
        assert len(first) == 12
        [old] = pool.procs
        # Saving the attachment under a regular file raises in the worker, which dies of it.
        with pytest.raises(WorkerDied):
            pool.submit(raws, 1 << 20, not_a_dir).result(timeout=60)
        assert old.poll() is not None
        again = pool.submit(raws, 1 << 20, tmp_path / "data").result(timeout=60)
        assert [repr(m) for m in again] == [repr(m) for m in first]
        [new] = pool.procs
        assert new.pid != old.pid
    finally:
        pool.shutdown()
    assert pool.procs == []


def test_the_worker_is_one_child_process_without_a_resource_tracker(tmp_path):
    pool = ParserPool(1)
    try:
        pool.submit(_batch(2), 1 << 20, tmp_path).result(timeout=60)
        children = psutil.Process().children(recursive=True)
        commands = [" ".join(c.cmdline()) for c in children]
        assert any("inboxd.sync.worker" in c for c in commands), commands
        assert not any("resource_tracker" in c for c in commands), commands
    finally:
        pool.shutdown()
