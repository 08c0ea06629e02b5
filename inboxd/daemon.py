"""Run inboxd: every mailbox's poller together, once or until told to stop.

`run_once` is one full cycle (sync everything new, sending what ingest
queues while the sync goes on, send what is still due, put the Sent copies
in place) and reports which mailboxes failed.  `dry_run`
is the same sync against a throw-away copy of the store, with nothing sent
and nothing appended: what a first start would do, counted per folder.
`run_forever` gives each mailbox its own thread with its own connection,
IDLE and back-off, so a mailbox that cannot log in never delays the others,
plus one thread that drains the outbox and one that serves the API to the
agents' CLI (inboxd.api.server); it stops cleanly on SIGTERM or
SIGINT: the current batch and the current mail are finished and recorded,
then the threads are joined.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from inboxd.store import leases
from inboxd.config import ConfigError, Settings
from inboxd.store.engine import open_store, writing
from inboxd.sync.imap import MailboxPoller, MailboxStatus, Progress
from inboxd.desk.duties import Duties
from inboxd.outbound.sender import Sender
from inboxd.desk.ingest import BatchResult
from inboxd.sync.sink import StoreSink

log = logging.getLogger("inboxd.daemon")


# A poller whose heartbeat is older than this is stuck (every step of a
# healthy one beats: each batch, each second of IDLE, each back-off tick).
STALL_SECONDS = 300.0


@dataclass
class CycleReport:
    statuses: dict[str, MailboxStatus]
    # (mailbox, folder) -> what was done there, batch results added up.
    folders: dict[tuple[str, str], BatchResult] = field(default_factory=dict)
    messages: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [name for name, st in self.statuses.items() if not st.ok]


class _Tally:
    """Adds up the batch results per folder, for the cycle report and the dry run."""

    def __init__(self, report: CycleReport, then: Callable[[Progress], None] | None = None):
        self.report, self.then, self.lock = report, then, threading.Lock()

    def __call__(self, p: Progress) -> None:
        with self.lock:
            key = (p.mailbox, p.folder)
            self.report.messages[key] = p.done
            if p.result is not None:
                self.report.folders.setdefault(key, BatchResult()).add(p.result)
        if self.then is not None:
            self.then(p)


def start_line(settings: Settings, mode: str) -> str:
    """The first log line: which inboxd, which config, which store, which mailboxes."""
    from sqlalchemy.engine import make_url

    from inboxd import __version__

    store = make_url(settings.store.url).render_as_string(hide_password=True)
    names = ", ".join(m.name for m in settings.mailboxes)
    return f"inboxd {__version__} starting ({mode}): config {settings.path}, store {store}, mailboxes {names}"


def run_once(settings: Settings, *, workers: int = 1, progress: Callable[[Progress], None] | None = None,
             dry_run: bool = False, now: datetime | None = None) -> CycleReport:
    """One full cycle as if it started at `now` (default: the real time, read once here).

    Filing, sending and the scheduled duties read one clock that starts at
    `now` and runs on with the cycle, so a test sets the time of day, SLA
    promises and retries by passing an instant instead of waiting.  (The
    pollers keep the real clock for their leases and the first sync's
    history cut-off.)
    """
    if dry_run:
        return _dry_run(settings, workers=workers, progress=progress)
    start, origin = now or datetime.now(UTC), time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    log.info("%s", start_line(settings, "once"))
    engine = open_store(settings.store.url)
    sink = StoreSink(engine, settings, workers=workers, clock=clock)
    report = CycleReport({})
    tally = _Tally(report, progress)
    try:
        sender = Sender(engine, settings, clock=clock)
        # Mail filed early in the sync is sent while the rest is still being
        # fetched; what is left is drained once the sync is done.
        synced = threading.Event()
        sending = threading.Thread(target=_send_while_syncing, args=(sender, sink.nudge, synced),
                                   name="sender", daemon=True)
        sending.start()
        try:
            pollers = _sync_all(settings, sink, tally)
        finally:
            synced.set()
            sink.nudge.set()
            sending.join()
        # Nothing is parsed from here on: the parser workers' memory is given back before the duties run.
        sink.stop_parsing()
        sender.drain()
        Duties(engine, settings).run_due(clock())
        sender.drain()
        for p in pollers:
            if p.status.ok:
                p.append_copies_once()
        report.statuses.update({p.mailbox.name: p.status for p in pollers})
        return report
    finally:
        sink.close()
        engine.dispose()


def _sync_all(settings: Settings, sink: StoreSink, progress: Callable[[Progress], None], *,
              copies: bool = True) -> list[MailboxPoller]:
    """One pass over every mailbox, each in its own thread; the pollers, with their status."""
    # A dry run (copies=False) changes nothing on the server: no Sent copies, no write-back.
    pollers = [MailboxPoller(mb, sink, progress=progress, copies=copies, writes=copies) for mb in settings.mailboxes]
    threads = [threading.Thread(target=p.run_once, name=f"poll-{p.mailbox.name}") for p in pollers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return pollers


def _dry_run(settings: Settings, *, workers: int, progress: Callable[[Progress], None] | None) -> CycleReport:
    """A full sync into a copy of the store that is thrown away: nothing is
    sent, nothing appended, and the real store is only read.

    The copy runs exactly the code a real start runs (history cut-offs,
    threading, rules, acknowledgement decisions against the real budget), so
    its counts are what a real run would do now.
    """
    from sqlalchemy.engine import make_url

    from inboxd.store.engine import copy_store

    url = make_url(settings.store.url)
    if url.get_backend_name() != "sqlite":
        # Copying a shared database for a rehearsal is the administrator's call, not ours.
        raise ConfigError(f"{settings.path.name}: store.url: --dry-run needs a SQLite store; copy this one with"
                          " `inboxd migrate-store --to sqlite:///rehearsal.db` and point a copy of the config at it")
    with tempfile.TemporaryDirectory(prefix="inboxd-dry-run-") as tmp:
        copy = Path(tmp) / "dry-run.db"
        source = Path(url.database) if url.database else None
        if source is not None and source.exists():
            copy_store(source, copy)
        store = dataclasses.replace(settings.store, url=f"sqlite:///{copy}", data_dir=Path(tmp) / "var")
        trial = dataclasses.replace(settings, store=store)
        engine = open_store(trial.store.url)
        with writing(engine) as conn:
            # The copy's leases name the daemons of the real store; nobody holds this copy's folders.
            leases.clear(conn)
        sink = StoreSink(engine, trial, workers=workers)
        report = CycleReport({})
        tally = _Tally(report, progress)
        try:
            # Sent copies are appended by the real run only.
            pollers = _sync_all(trial, sink, tally, copies=False)
            report.statuses.update({p.mailbox.name: p.status for p in pollers})
            return report
        finally:
            sink.close()
            engine.dispose()


def run_forever(settings: Settings, *, workers: int = 1, stop: threading.Event | None = None,
                progress: Callable[[Progress], None] | None = None) -> None:
    stop = stop or threading.Event()
    _stop_on_signals(stop)
    engine = open_store(settings.store.url)
    sink = StoreSink(engine, settings, workers=workers)
    pollers = [MailboxPoller(mb, sink, stop, progress=progress) for mb in settings.mailboxes]
    by_name = {p.mailbox.name: p for p in pollers}
    sender = Sender(engine, settings, on_sent=lambda name: by_name[name].wake.set())
    threads = [threading.Thread(target=p.run_forever, name=f"poll-{p.mailbox.name}", daemon=True)
               for p in pollers]
    threads.append(threading.Thread(target=_send_forever, args=(sender, sink.nudge, settings, stop),
                                    name="sender", daemon=True))
    threads.append(threading.Thread(target=_watch, args=(pollers, stop), name="watchdog", daemon=True))
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
    # so a missed or coalesced wake-up loses nothing.  Imported here: `run
    # --once` runs the duties itself and need not load it (0.1 s).
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(run_duties, "interval", seconds=settings.policies.scheduler.interval.total_seconds(),
                      max_instances=1, coalesce=True, next_run_time=datetime.now(UTC), id="duties")
    log.info("%s", start_line(settings, "daemon"))
    for t in threads:
        t.start()
    scheduler.start()
    api = None
    try:
        api = _serve_api(settings, engine, stop)
        while not stop.wait(1.0):
            pass
    finally:
        stop.set()
        log.info("stopping: finishing the current step")
        if api is not None:
            api.close()
        scheduler.shutdown(wait=True)
        for t in threads:
            t.join(timeout=60)
        sink.close()
        engine.dispose()
        log.info("inboxd stopped")


def _serve_api(settings: Settings, engine, stop: threading.Event):
    """The daemon's API (inboxd.api.server), or None when it cannot start; mail goes on either way."""
    try:
        # Imported here: `run --once` and the store's owner never load the web stack.
        from inboxd.api import server

        return server.start(settings, engine, stop)
    except Exception:
        log.exception("the API could not start; agents cannot reach this daemon")
        return None


def _watch(pollers: list[MailboxPoller], stop: threading.Event, stall: float = STALL_SECONDS) -> None:
    """Notice a poller that made no progress for `stall` seconds, say so, and
    break its connection so that it reconnects (a thread cannot be killed,
    but its blocked I/O can be ended)."""
    while not stop.wait(min(10.0, stall / 4)):
        for p in pollers:
            idle = time.monotonic() - p.heartbeat
            if idle > stall:
                log.error("%s: no progress for %.0f s; breaking its connection so it reconnects",
                          p.mailbox.name, idle)
                p.beat()
                p.abort()


def _send_while_syncing(sender: Sender, nudge: threading.Event, synced: threading.Event) -> None:
    """Drain the outbox each time ingest files a batch, until the sync is done (run --once)."""
    while True:
        nudge.wait()
        nudge.clear()
        if synced.is_set():
            return
        try:
            sender.drain()
        except Exception:  # The drain after the sync retries.
            log.exception("sending failed")


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
