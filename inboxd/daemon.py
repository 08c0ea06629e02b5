"""Run inboxd: every mailbox's poller together, once or until told to stop.

`run_once` is one full cycle (sync everything new, send what is due, put
the Sent copies in place) and reports which mailboxes failed.
`run_forever` gives each mailbox its own thread with its own connection,
IDLE and back-off, so a mailbox that cannot log in never delays the others,
plus one thread that drains the outbox; it stops cleanly on SIGTERM or
SIGINT: the current batch and the current mail are finished and recorded,
then the threads are joined.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from inboxd.config import Settings
from inboxd.db import open_store
from inboxd.imap import MailboxPoller, MailboxStatus
from inboxd.jobs import Duties
from inboxd.policies import load_policies
from inboxd.sender import Sender
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
        sender = Sender(engine, settings)
        sender.drain()
        Duties(engine, settings).run_due()
        sender.drain()
        for p in pollers:
            if p.status.ok:
                p.append_copies_once()
        return CycleReport({p.mailbox.name: p.status for p in pollers})
    finally:
        sink.close()
        engine.dispose()


def run_forever(settings: Settings, *, workers: int = 1, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    _stop_on_signals(stop)
    policies = load_policies(settings)  # A broken policy section stops start-up, not a duty later.
    engine = open_store(settings.store.url)
    sink = StoreSink(engine, settings, workers=workers)
    pollers = [MailboxPoller(mb, sink, stop) for mb in settings.mailboxes]
    by_name = {p.mailbox.name: p for p in pollers}
    sender = Sender(engine, settings, on_sent=lambda name: by_name[name].wake.set())
    threads = [threading.Thread(target=p.run_forever, name=f"poll-{p.mailbox.name}", daemon=True)
               for p in pollers]
    threads.append(threading.Thread(target=_send_forever, args=(sender, sink.nudge, settings, stop),
                                    name="sender", daemon=True))
    duties = Duties(engine, settings)

    def run_duties() -> None:
        try:
            done = duties.run_due()
            if any(done.values()):
                log.info("duties done: %s", ", ".join(f"{k}={v}" for k, v in done.items() if v))
                sink.nudge.set()  # Duties queue mail; send it now.
        except Exception:  # The next wake-up retries; a duty never kills the daemon.
            log.exception("scheduled duties failed")

    # APScheduler only wakes the duties up: what is due lives in the store,
    # so a missed or coalesced wake-up loses nothing.
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(run_duties, "interval", seconds=policies.scheduler.interval.total_seconds(),
                      max_instances=1, coalesce=True, next_run_time=datetime.now(UTC), id="duties")
    log.info("inboxd started with %d mailbox(es)", len(pollers))
    for t in threads:
        t.start()
    scheduler.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        stop.set()
        log.info("stopping: finishing the current step")
        scheduler.shutdown(wait=True)
        for t in threads:
            t.join(timeout=60)
        sink.close()
        engine.dispose()
        log.info("inboxd stopped")


def _send_forever(sender: Sender, nudge: threading.Event, settings: Settings, stop: threading.Event) -> None:
    """Drain the outbox whenever ingest queued mail, and every outbox interval."""
    interval = settings.outbox.interval.total_seconds()
    while not stop.is_set():
        try:
            sender.drain()
        except Exception:  # The store was busy or gone; the next round retries.
            log.exception("sending failed")
        nudge.wait(interval)
        nudge.clear()


def _stop_on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
