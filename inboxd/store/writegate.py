"""Take turns at a SQLite store's write lock inside one process, first come first served.

SQLite itself does not queue writers: one that finds the lock taken sleeps
in its busy handler (for up to 100 ms at a time) and tries again.  A thread
that writes transaction after transaction, as filing does during a first
sync, releases the lock for only a moment between two of them, so another
thread of the same daemon (the sender, the scheduler) could wait for
seconds while every attempt found the lock taken: in `run --once` no
acknowledgement went out until the whole sync was filed.

The gate queues the threads of this process before they ask SQLite: each
BEGIN IMMEDIATE waits for its turn in arrival order, and each COMMIT or
ROLLBACK hands the turn on.  Other processes (an agent's CLI, a second
daemon) still meet SQLite's busy handler, as before.  A thread that already
holds a turn and opens a second write transaction on another connection is
let through (SQLite then decides, as it did without the gate), and a turn
is never waited for longer than the store's busy timeout, so the gate can
slow a writer down but never stops one.
"""

from __future__ import annotations

import threading
import weakref


class WriteGate:
    """A ticket lock (first come, first served), re-entrant per thread, with a time limit.

    Turns are held by connections (any hashable key, here the DBAPI
    connection's id): `enter(key)` before BEGIN IMMEDIATE, `leave(key)` after
    its COMMIT or ROLLBACK; leaving with a key that holds no turn does nothing.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._cond = threading.Condition(threading.Lock())
        self._next = 0          # The next ticket to hand out.
        self._serving = 0       # The ticket whose turn it is.
        self._skipped: set[int] = set()
        self._owner: int | None = None
        self._held: set[object] = set()

    def enter(self, key: object) -> None:
        """Wait for this thread's turn (at most `timeout`), and record that `key` holds it."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                # A second write transaction of the same thread: SQLite decides, as without the gate.
                self._held.add(key)
                return
            ticket = self._next
            self._next += 1
            if self._cond.wait_for(lambda: self._serving == ticket, self.timeout):
                self._owner = me
                self._held.add(key)
                return
            # Given up: the turn passes over this ticket when it comes, and SQLite's own wait decides.
            self._skipped.add(ticket)

    def leave(self, key: object) -> None:
        """`key`'s transaction has ended: when it was the turn's last, the next in line goes."""
        with self._cond:
            if key not in self._held:
                return
            self._held.discard(key)
            if self._held:
                return
            self._owner = None
            self._serving += 1
            while self._serving in self._skipped:
                self._skipped.discard(self._serving)
                self._serving += 1
            self._cond.notify_all()

    def install(self, dialect) -> None:
        """Hand the turn on after every COMMIT and ROLLBACK of this engine's dialect (after, not before:
        the next writer would otherwise meet the lock still held by the COMMIT's disk flush)."""
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(dbapi_connection) -> None:
            try:
                commit(dbapi_connection)
            finally:
                self.leave(_key(dbapi_connection))

        def do_rollback(dbapi_connection) -> None:
            try:
                rollback(dbapi_connection)
            finally:
                self.leave(_key(dbapi_connection))

        dialect.do_commit, dialect.do_rollback = do_commit, do_rollback


def _key(dbapi_connection) -> int:
    """The same key for the DBAPI connection and the pool's wrapper around it."""
    return id(getattr(dbapi_connection, "dbapi_connection", dbapi_connection))


# The gate of each SQLite engine (PostgreSQL has no store-wide lock, so no gate).
_GATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def register(engine, gate: WriteGate) -> None:
    _GATES[engine] = gate


def gate_of(engine) -> WriteGate | None:
    """The gate of `engine`, or None (PostgreSQL)."""
    return _GATES.get(engine)
