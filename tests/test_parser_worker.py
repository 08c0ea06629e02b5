"""The parser worker (inboxd.sync.worker.ParserPool): a plain child process that parses batches.

What it answers is what the daemon would parse itself; a worker that dies
fails only the batch it had (the sink then parses that batch itself: see
StoreSink._parsed) and the next batch gets a new worker.
"""

from __future__ import annotations

import io
import os
import pickle
import select
import signal
import subprocess
import sys

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


class _SlowReader(io.RawIOBase):
    """The worker's answer pipe, read 4 KiB at a time, stopping and continuing the worker after each read.

    Each SIGSTOP/SIGCONT interrupts the worker's blocked write to the full
    pipe, which then returns having written only part of what it was given
    (what Ctrl-Z and `fg` of a foreground daemon, or a tracer such as
    py-spy, do to it).  A read that waits a minute for the rest means the
    rest was lost.
    """

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.fd = proc, proc.stdout.fileno()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        ready, _, _ = select.select([self.fd], [], [], 60)
        assert ready, "the rest of the worker's answer never came"
        chunk = os.read(self.fd, min(len(buffer), 4096))
        buffer[:len(chunk)] = chunk
        os.kill(self.proc.pid, signal.SIGSTOP)
        os.kill(self.proc.pid, signal.SIGCONT)
        return len(chunk)


def test_an_answer_interrupted_by_stop_and_continue_arrives_whole(tmp_path):
    raws = [make_mail(subject=f"Long {i}", body=f"line {i} of a long question\n" * 3000) for i in range(12)]
    # Unbuffered standard streams, as the environment of many service managers and containers sets them.
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "inboxd.sync.worker", str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        pickle.dump((raws, 1 << 20, tmp_path / "data"), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        proc.stdin.flush()
        answer = pickle.load(io.BufferedReader(_SlowReader(proc), 4096))
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    assert [repr(m) for m in answer] == [repr(m) for m in parse_many(raws, 1 << 20, tmp_path / "here")]
