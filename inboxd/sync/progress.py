"""Show a long sync's progress: a bar per folder on a terminal, a log line per batch elsewhere.

Both take the pollers' `Progress` reports (one per filed batch) from any
thread.  Neither ever writes one line per message: a first sync of years of
mail is a few hundred batch lines in a log, not a hundred thousand.
"""

from __future__ import annotations

import logging
import threading
import time

from inboxd.sync.imap import Progress

log = logging.getLogger("inboxd.sync")


class LogProgress:
    """One INFO line per batch, with the folder's running counts and rate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[tuple[str, str], float] = {}
        self._totals: dict[tuple[str, str], dict[str, int]] = {}

    def __call__(self, p: Progress) -> None:
        key = (p.mailbox, p.folder)
        with self._lock:
            started = self._started.setdefault(key, time.monotonic())
            totals = self._totals.setdefault(key, {"filed": 0, "new": 0, "history": 0, "quarantined": 0,
                                                   "acks": 0})
            if p.result is None:
                return
            totals["filed"] += p.result.filed
            totals["new"] += p.result.new_tickets
            totals["history"] += p.result.history_tickets
            totals["quarantined"] += p.result.quarantined
            totals["acks"] += p.result.acks
            elapsed = max(time.monotonic() - started, 1e-6)
            counts = dict(totals)
        log.info("%s/%s: %d/%d messages (%.0f msg/s): filed %d, new tickets %d (history %d), acknowledgements %d,"
                 " quarantined %d", p.mailbox, p.folder, p.done, p.total, p.done / elapsed, counts["filed"],
                 counts["new"], counts["history"], counts["acks"], counts["quarantined"])


class TerminalProgress:
    """A rich progress bar per folder (done / total, rate, time left), on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bars, TaskProgressColumn,
                                   TextColumn, TimeRemainingColumn)

        self._bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                          console=Console(stderr=True), transient=False)
        self._tasks: dict[tuple[str, str], int] = {}
        self._started: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> TerminalProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def __call__(self, p: Progress) -> None:
        key = (p.mailbox, p.folder)
        with self._lock:
            if key not in self._tasks:
                self._tasks[key] = self._bars.add_task(f"{p.mailbox}/{p.folder}", total=p.total, rate="")
                self._started[key] = time.monotonic()
            elapsed = max(time.monotonic() - self._started[key], 1e-6)
            self._bars.update(self._tasks[key], completed=p.done, total=p.total,
                              rate=f"{p.done / elapsed:,.0f} msg/s" if p.done else "")


def for_stream(stream) -> LogProgress | TerminalProgress:
    """A bar display when `stream` is a terminal, log lines otherwise."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return TerminalProgress() if terminal else LogProgress()
