"""The sender's log of mail an SMTP server accepted, in a small SQLite file of its own beside a SQLite store.

SQLite has one write lock for the whole store.  The sender used to write
`sent` in a transaction held open through DATA, so that a mail the server
took was recorded at once; but for as long as the server took to answer,
filing, the scheduler and the agents' commands all waited for that lock.
During a first sync with acknowledgements on, filing spent a third of its
time waiting for the SMTP server.

So on a SQLite store the sender writes what each server accepted here
instead: one row per mail (the outbox row, the attempt count of the claim
that sent it, the time), committed with a full disk flush the moment a
round's answers are in, under this file's lock only.  The rows are folded
into the outbox (`inboxd.store.outbox.fold_sent`) in the write transaction
of the sender's next claim, before the claim looks for due rows, and at the
end of every drain; a mail logged here is therefore never claimed again,
whichever daemon claims next, and a SIGKILL between the log's commit and
the fold loses nothing: the next claim folds it.  The window in which a
killed sender sends a mail twice is what it was (the server's 250 before
the log's commit), and the store's lock is never held across the network.

PostgreSQL has no store-wide lock (the sender locks only its rows there),
and an in-memory SQLite store has no file to put a log beside: neither has
a sent log, and the sender records `sent` in the store as before.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from inboxd.store import outbox
from inboxd.store.engine import BUSY_TIMEOUT_MS, is_sqlite, writing

# The log's file is the store's path with this suffix, beside SQLite's own -wal and -shm.
SUFFIX = "-sent"

# One logged mail: (outbox id, attempts of the claim that sent it, its Message-ID, when the server
# accepted it).  The Message-ID makes sure a log is only ever folded into its own store: a log left
# beside a store restored from a backup names rows whose ids may now be other mail.
Logged = tuple[int, int, str, datetime]

_SCHEMA = ("CREATE TABLE IF NOT EXISTS sent ("
           " outbox_id INTEGER NOT NULL, attempts INTEGER NOT NULL, message_id TEXT NOT NULL, at TEXT NOT NULL,"
           " PRIMARY KEY (outbox_id, attempts))")


class SentLog:
    """The sent log of one SQLite store file; safe to use from several threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _private(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                     check_same_thread=False)
        # FULL: a mail recorded as sent must stay recorded through a power cut too, or it goes again.
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(_SCHEMA)

    def record(self, rows: Iterable[Logged]) -> None:
        """Log that the server accepted these mails, durably, in one transaction."""
        values = [(outbox_id, attempts, message_id, _text(at)) for outbox_id, attempts, message_id, at in rows]
        if values:
            self._write("INSERT OR IGNORE INTO sent (outbox_id, attempts, message_id, at) VALUES (?, ?, ?, ?)",
                        values)

    def pending(self) -> list[Logged]:
        """Every mail logged and not yet folded into the store, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT outbox_id, attempts, message_id, at FROM sent ORDER BY rowid").fetchall()
        return [(outbox_id, attempts, message_id, _time(at)) for outbox_id, attempts, message_id, at in rows]

    def forget(self, rows: Iterable[Logged]) -> None:
        """Drop rows the store has folded in (committed): only after that commit, so none is lost."""
        keys = [(outbox_id, attempts) for outbox_id, attempts, _message_id, _at in rows]
        if keys:
            self._write("DELETE FROM sent WHERE outbox_id = ? AND attempts = ?", keys)

    def _write(self, sql: str, values: list[tuple]) -> None:
        # One transaction, so one disk flush, for all the rows (autocommit would flush per row).
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, values)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _private(path: Path) -> None:
    # Outbox ids and times only, but kept as private as the store itself.
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)


def _text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# One log per engine, opened at its first use (many Senders may share an engine).
_LOGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOGS_LOCK = threading.Lock()


def path_beside(engine: Engine) -> Path | None:
    """Where the sent log of `engine`'s store is, or None when the store has none (see the docstring)."""
    if not is_sqlite(engine):
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database + SUFFIX)


def fold(engine: Engine) -> bool:
    """Record in the store, as sent, what the log beside it holds; whether it held any.  The sender
    does this in every claim and at the end of every drain; a backup does it before its snapshot."""
    log = of(engine)
    logged = log.pending() if log is not None else []
    if not logged:
        return False
    with writing(engine) as conn:
        outbox.fold_sent(conn, logged)
    log.forget(logged)
    return True


def of(engine: Engine) -> SentLog | None:
    """The sent log beside `engine`'s store, or None for a store that has none."""
    path = path_beside(engine)
    if path is None:
        return None
    with _LOGS_LOCK:
        log = _LOGS.get(engine)
        if log is None:
            log = _LOGS[engine] = SentLog(path)
        return log
