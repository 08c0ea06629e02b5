"""The parser worker: parse a fetched batch in a second process.

It also puts attachment content on disk, so only the small parsed messages
travel back to the daemon.  It imports nothing but the parser, which keeps
the worker process small.  A large mail (over largemail.LARGE_MESSAGE_BYTES)
is parsed by `largemail.parse_large`, which decodes its big attachments
straight to disk; the store parses those in the daemon rather than copy
them to the worker.

The worker is a plain child process (`python -m inboxd.sync.worker`), not a
multiprocessing pool: requests and replies are pickles on its stdin and
stdout.  A pool's spawn context also starts multiprocessing's resource
tracker, a third interpreter of about 12 MB that a parser does not need, and
imports the daemon's main module in the child.  `ParserPool` is the
daemon's side; a worker that dies (a parser crash, the kernel's OOM killer)
fails the batch it had, which the daemon then parses itself, and the next
batch starts a new worker.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from inboxd.mail.attachments import save_attachment
from inboxd.mail.largemail import LARGE_MESSAGE_BYTES, parse_large
from inboxd.mail.message import InboundMessage, MalformedMessage, parse_message
from inboxd.sync import heap


def parse_one(raw: bytes, max_attachment_bytes: int, data_dir: Path | None = None, *,
              hash_raw: bool = False) -> InboundMessage | MalformedMessage:
    """Parse `raw` and find its reply text; with `data_dir`, attachments are saved and their content dropped;
    with `hash_raw` (a batch parsed ahead of filing), the SHA-256 of `raw` is worked out too.  Never raises."""
    try:
        if data_dir is not None and len(raw) > LARGE_MESSAGE_BYTES:
            msg = parse_large(raw, max_attachment_bytes, data_dir)
        else:
            msg = parse_message(raw, max_attachment_bytes=max_attachment_bytes)
    except MalformedMessage as exc:
        return exc
    except Exception as exc:  # A parser bug becomes a quarantine reason.
        return MalformedMessage(f"parse error: {type(exc).__name__}: {exc}")
    # The quote stripping is a tenth of filing a mail; here it runs in the
    # worker, beside the filing thread.  (It never raises: a body it cannot
    # read is kept whole.)  Imported here, not with this module: the daemon
    # imports this module too, and parses in its own process only now and then.
    from inboxd.mail.quotes import reply_text

    # So is the raw bytes' hash, which filing needs to keep them (1.7 ms per MiB of mail), for mail parsed
    # ahead of filing; mail the filing thread parses itself was hashed when its bytes were kept.
    msg = replace(msg, reply_text=reply_text(msg.text),
                  raw_sha256=hashlib.sha256(raw).hexdigest() if hash_raw else None)
    if data_dir is None or not msg.attachments:
        return msg
    for att in msg.attachments:
        if att.content is not None:
            save_attachment(data_dir, att.sha256, att.content)
    return replace(msg, attachments=tuple(replace(a, content=None) for a in msg.attachments))


# How often a worker checks that the daemon that started it is still there.
PARENT_CHECK_SECONDS = 0.2


def watch_parent(parent_pid: int) -> None:
    """End this worker within a fraction of a second of its daemon's death.

    The worker notices a daemon that is gone when it next reads its stdin
    (the pipe's end is closed with the daemon), but not while it parses a
    batch.  A daemon thread compares the parent pid with the one that
    started us; an orphan is adopted by another process, and then exits at once.

    Linux could signal us instead (prctl PR_SET_PDEATHSIG), but that fires
    when the *thread* that started the worker ends, and the pool starts its
    workers from whichever thread submits first: a prefetch thread that
    ends with its folder's sync.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def parse_many(raws: list[bytes], max_attachment_bytes: int, data_dir: Path) -> list[InboundMessage | MalformedMessage]:
    return [parse_one(raw, max_attachment_bytes, data_dir, hash_raw=True) for raw in raws]


class WorkerDied(RuntimeError):
    """The parser worker ended before it answered (a crash, a kill): its batch is parsed by the daemon."""


class ParserPool:
    """The daemon's side of `workers` parser processes, each started at its first batch.

    `submit` returns at once with a Future; a thread per worker writes the
    request to its worker's stdin and reads the answer, so the filing
    thread files the previous batch meanwhile.  The requests wait in one
    queue (a poller prefetches one batch ahead, so it holds few).
    """

    def __init__(self, workers: int):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._serve, name=f"parser-{i}", daemon=True)
                        for i in range(workers)]
        self.procs: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        for t in self.threads:
            t.start()

    def warm(self) -> None:
        """Start the workers now, ahead of the first batch: a worker's start (an interpreter and the
        parser's imports, about 0.2 s) then runs while the poller fetches, not while the filer waits."""
        for _ in self.threads:
            self.jobs.put((None, None))

    def submit(self, raws: list[bytes], max_attachment_bytes: int, data_dir: Path) -> Future:
        future: Future = Future()
        self.jobs.put((future, (raws, max_attachment_bytes, data_dir)))
        return future

    def shutdown(self) -> None:
        """Cancel what waits, let the batches in hand finish, and end the workers."""
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            t.join()

    def _start(self) -> subprocess.Popen:
        # The worker's stdout carries the answers; its stderr is the daemon's.
        proc = subprocess.Popen([sys.executable, "-m", "inboxd.sync.worker", str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        with self.lock:
            self.procs.append(proc)
        return proc

    def _stop(self, proc: subprocess.Popen | None) -> None:
        if proc is None:
            return
        try:
            proc.stdin.close()  # The worker's end of its loop.
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        with self.lock:
            self.procs.remove(proc)

    def _serve(self) -> None:
        proc: subprocess.Popen | None = None
        try:
            while (job := self.jobs.get()) is not None:
                future, request = job
                if future is None:
                    # warm(): only the start (the worker that takes this does; the rest start on work).
                    if proc is None or proc.poll() is not None:
                        self._stop(proc)
                        proc = self._start()
                    continue
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    if proc is None or proc.poll() is not None:
                        self._stop(proc)
                        proc = self._start()
                    future.set_result(_ask(proc, request))
                except BaseException as exc:  # noqa: BLE001 - the filing thread decides what a failure means
                    # A worker that failed mid-answer is not reused: its pipes may hold half a message.
                    if proc is not None:
                        proc.kill()
                    future.set_exception(exc)
                del job, future, request  # The batch's bytes are not kept until the next one.
        finally:
            self._stop(proc)


def _ask(proc: subprocess.Popen, request: tuple) -> list:
    try:
        # Straight into the pipe, frame by frame: no second copy of the batch as one pickle.
        pickle.dump(request, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        proc.stdin.flush()
        return pickle.load(proc.stdout)
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        proc.kill()
        code = proc.wait()
        raise WorkerDied(f"the parser worker ended with {code} ({type(exc).__name__})") from None


def serve(parent_pid: int) -> None:
    """The worker's loop: parse each request read from stdin and write the answer to stdout, until EOF."""
    # Ctrl-C and a SIGTERM to the process group are the daemon's to handle:
    # it finishes its batch, which may be in our hands, then closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    watch_parent(parent_pid)
    # Buffered files of our own on the two pipes.  Under PYTHONUNBUFFERED (or
    # -u) sys.stdout.buffer is the raw file, whose write may put only part of
    # an answer into the pipe when a signal or a tracer (py-spy, strace)
    # interrupts it; pickle does not look at the count, so the rest of the
    # answer was lost and the daemon waited for it.  A BufferedWriter writes
    # the rest.
    stdin = open(sys.stdin.fileno(), "rb", closefd=False)  # noqa: SIM115 - lives as long as the worker
    stdout = open(sys.stdout.fileno(), "wb", closefd=False)  # noqa: SIM115 - lives as long as the worker
    # Nothing else may write to the answers' pipe.
    sys.stdout = sys.stderr
    while True:
        try:
            raws, max_attachment_bytes, data_dir = pickle.load(stdin)
        except EOFError:
            return
        # Each mail's bytes are let go once it is parsed (the request is ours
        # alone), so the batch is never held twice, as bytes and as parsed
        # messages: a parsed message keeps its text, not the mail, and its
        # attachments are on disk.
        parsed = []
        for i in range(len(raws)):
            raw, raws[i] = raws[i], None
            parsed.append(parse_one(raw, max_attachment_bytes, data_dir, hash_raw=True))
            del raw
        del raws
        pickle.dump(parsed, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()
        del parsed
        heap.release()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
