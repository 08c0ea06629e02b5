"""Run inboxd: every mailbox's poller together, once or until told to stop.

`run_once` is one full cycle (sync everything new) and reports which
mailboxes failed.  `run_forever` gives each mailbox its own thread with its
own connection, IDLE and back-off, so a mailbox that cannot log in never
delays the others, and stops cleanly on SIGTERM or SIGINT: the current batch
is finished and committed, then the threads are joined.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

from inboxd.config import Settings
from inboxd.db import open_store
from inboxd.imap import MailboxPoller, MailboxStatus
from inboxd.store import StoreSink

log = logging.getLogger("inboxd.daemon")


@dataclass(frozen=True)
class CycleReport:
    statuses: dict[str, MailboxStatus]

    @property
    def failed(self) -> list[str]:
        return [name for name, st in self.statuses.items() if not st.ok]


def run_once(settings: Settings, *, workers: int = 1) -> CycleReport:
    engine = open_store(settings.store.url)
    sink = StoreSink(engine, settings, workers=workers)
    try:
        pollers = [MailboxPoller(mb, sink) for mb in settings.mailboxes]
        threads = [threading.Thread(target=p.run_once, name=f"poll-{p.mailbox.name}") for p in pollers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return CycleReport({p.mailbox.name: p.status for p in pollers})
    finally:
        sink.close()
        engine.dispose()


def run_forever(settings: Settings, *, workers: int = 1, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    _stop_on_signals(stop)
    engine = open_store(settings.store.url)
    sink = StoreSink(engine, settings, workers=workers)
    pollers = [MailboxPoller(mb, sink, stop) for mb in settings.mailboxes]
    threads = [threading.Thread(target=p.run_forever, name=f"poll-{p.mailbox.name}", daemon=True)
               for p in pollers]
    log.info("inboxd started with %d mailbox(es)", len(pollers))
    for t in threads:
        t.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        stop.set()
        log.info("stopping: finishing the current step")
        for t in threads:
            t.join(timeout=60)
        sink.close()
        engine.dispose()
        log.info("inboxd stopped")


def _stop_on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
