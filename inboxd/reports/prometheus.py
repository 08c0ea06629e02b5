"""The daemon's metrics in the Prometheus text format: the only module that imports prometheus_client.

Two kinds of numbers.  What the store knows (messages ingested, quarantined
and skipped per folder, sync lag and last sync, the outbox, duties run,
tickets by status, SLA breaches) is read from the store at each scrape by
`StoreCollector`, so every daemon on a shared store reports the same.  What
only a process sees (IMAP and SMTP errors by kind, duties that failed) is
kept in process-local counters, which `record_*` below move; Prometheus
scrapes each daemon and sums them.

The metric names and labels are documented in docs/practices/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from inboxd.config import Settings
from inboxd.store import metrics as store_metrics
from inboxd.store.engine import reading

# Process-local counters live in their own registry, so a test or a second
# Settings can build a fresh exposition without touching the global one.
PROCESS = CollectorRegistry(auto_describe=True)
IMAP_ERRORS = Counter("inboxd_imap_errors", "IMAP errors seen by this daemon, by mailbox and kind",
                      ["mailbox", "kind"], registry=PROCESS)
SMTP_ERRORS = Counter("inboxd_smtp_errors", "SMTP delivery failures seen by this daemon, by mailbox and kind",
                      ["mailbox", "kind"], registry=PROCESS)
DUTIES_FAILED = Counter("inboxd_duties_failed", "Scheduled duty passes that raised in this daemon, by duty",
                        ["duty"], registry=PROCESS)

IMAP_KINDS = ("login", "network", "timeout", "tls", "protocol", "folder", "other")
SMTP_KINDS = ("smtp_temporary", "smtp_permanent")


def record_imap_error(mailbox: str, kind: str) -> None:
    IMAP_ERRORS.labels(mailbox=mailbox, kind=kind if kind in IMAP_KINDS else "other").inc()


def record_smtp_error(mailbox: str, kind: str) -> None:
    SMTP_ERRORS.labels(mailbox=mailbox, kind=kind).inc()


def record_duty_failed(duty: str) -> None:
    DUTIES_FAILED.labels(duty=duty).inc()


class StoreCollector(Collector):
    """Reads the store on every collect(); a store that does not answer gives inboxd_store_up 0."""

    def __init__(self, engine: Engine | None, settings: Settings, clock: Callable[[], datetime]):
        self.engine, self.settings, self.clock = engine, settings, clock

    def collect(self) -> Iterator:
        up = GaugeMetricFamily("inboxd_store_up", "1 when the store answered this scrape, else 0")
        try:
            if self.engine is None:
                raise ConnectionError("the store could not be opened")
            with reading(self.engine) as conn:
                snap = store_metrics.snapshot(conn, self.settings, self.clock())
        except Exception:  # A scrape reports the store down rather than failing.
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(snap)


def _families(snap: store_metrics.Snapshot) -> Iterator:
    folder = ["mailbox", "folder"]
    ingested = CounterMetricFamily("inboxd_messages_ingested", "Server messages filed from each folder", labels=folder)
    quarantined = CounterMetricFamily("inboxd_messages_quarantined", "Messages of each folder now in quarantine",
                                      labels=folder)
    skipped = CounterMetricFamily("inboxd_messages_skipped",
                                  "Server messages deliberately not filed; reason is history or other",
                                  labels=folder + ["reason"])
    lag = GaugeMetricFamily("inboxd_sync_lag", "Newest server UID minus the stored checkpoint, at the last SELECT",
                            labels=folder)
    last = GaugeMetricFamily("inboxd_last_sync_timestamp_seconds", "When the folder last synced without error",
                             labels=folder)
    failing = GaugeMetricFamily("inboxd_folder_failing", "1 while the folder's last sync attempt failed",
                                labels=folder)
    for f in snap.folders:
        key = [f.mailbox, f.folder]
        ingested.add_metric(key, f.ingested)
        quarantined.add_metric(key, f.quarantined)
        skipped.add_metric(key + ["history"], f.skipped_history)
        skipped.add_metric(key + ["other"], f.skipped_other)
        lag.add_metric(key, f.lag)
        if f.last_sync is not None:
            last.add_metric(key, f.last_sync.timestamp())
        failing.add_metric(key, 1 if f.failing else 0)
    yield from (ingested, quarantined, skipped, lag, last, failing)

    outbox = GaugeMetricFamily("inboxd_outbox_messages", "Outbox rows by status (sent rows are not counted)",
                               labels=["status"])
    for status in ("queued", "sending", "failed"):
        outbox.add_metric([status], snap.outbox.get(status, 0))
    yield outbox
    yield GaugeMetricFamily("inboxd_outbox_oldest_queued_age_seconds",
                            "Age of the oldest mail still queued (0 when none is)", value=snap.oldest_queued_age)

    duties = CounterMetricFamily("inboxd_duties_run", "Scheduled duty items done (claims in the duty table)",
                                 labels=["duty"])
    for duty, count in sorted(snap.duties.items()):
        duties.add_metric([duty], count)
    yield duties

    tickets = GaugeMetricFamily("inboxd_tickets", "Tickets by mailbox and status", labels=["mailbox", "status"])
    for (mailbox, status), count in sorted(snap.tickets.items()):
        tickets.add_metric([mailbox, status], count)
    yield tickets
    breaches = GaugeMetricFamily("inboxd_sla_breached_tickets",
                                 "Unsolved tickets past a due time, by mailbox and promise",
                                 labels=["mailbox", "target"])
    for (mailbox, target), count in sorted(snap.breaches.items()):
        breaches.add_metric([mailbox, target], count)
    yield breaches


def exposition(engine: Engine | None, settings: Settings, clock: Callable[[], datetime]) -> bytes:
    """The text format of one scrape: the store's numbers read now, then this process's counters.

    `engine` is None when the store could not be opened: the scrape then says inboxd_store_up 0.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(engine, settings, clock))
    return generate_latest(registry) + generate_latest(PROCESS)
