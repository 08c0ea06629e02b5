"""Folder leases: which daemon syncs which IMAP folder, so several daemons can share one store.

A lease is one row per (mailbox, folder): its holder and the instant it
expires.  A daemon syncs a folder only while it holds the folder's lease; it
renews the lease as it works and releases it when it stops cleanly.  Another
daemon takes the folder over only once the lease has expired (its holder
died, hung or lost the store), so a folder is never synced by two daemons
at once, and a dead daemon's folders move on within one lease.

Every function here is one statement of SQLAlchemy Core that runs the same
on SQLite and PostgreSQL, takes the time as `now` (there is no hidden
clock), and decides by compare-and-swap: the WHERE clause re-checks what
the decision rests on, so of two daemons racing for a folder exactly one
wins, whatever the isolation level.  The caller commits.

The holder names a process ("host:pid", see `process_holder`).  It also
carries what tells, on the same machine, that the process is gone
(`holder_gone`), so a daemon restarted after a crash takes its folders back
at once instead of waiting for its old leases to run out.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, delete, or_, select, update

from inboxd.store.sql import dialect_insert
from inboxd.store.tables import lease as LEASE

# How long a lease lasts, and how often its holder renews it: three renewals
# per lease, so one slow store round trip never lets it lapse.
DEFAULT_TTL = timedelta(seconds=30)
RENEWALS_PER_TTL = 3


class LeaseLost(RuntimeError):
    """Another daemon holds the folder now, so what this one was about to write must not be."""

    def __init__(self, mailbox: str, folder: str, holder: str) -> None:
        super().__init__(f"{mailbox}/{folder}: the folder's lease is no longer held by {display_name(holder)}")
        self.mailbox, self.folder = mailbox, folder


@dataclass(frozen=True)
class LeaseHolder:
    holder: str
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        """Whether the lease still holds at `now` (it lasts up to and including expires_at)."""
        return self.expires_at >= now

    @property
    def name(self) -> str:
        return display_name(self.holder)


def acquire(conn: Connection, mailbox: str, folder: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take the folder's lease until now + ttl; whether `holder` holds it now.

    A free folder is taken by inserting its row; a lease that expired, or is
    already ours, is taken (or extended) by an UPDATE whose WHERE re-checks
    exactly that, so a live lease of another daemon is never taken.
    """
    expires = now + ttl
    inserted = conn.execute(
        _insert(conn).values(mailbox=mailbox, folder=folder, holder=holder, expires_at=expires)
        .on_conflict_do_nothing(index_elements=["mailbox", "folder"]))
    if inserted.rowcount == 1:
        return True
    taken = conn.execute(
        update(LEASE).where(LEASE.c.mailbox == mailbox, LEASE.c.folder == folder,
                            or_(LEASE.c.expires_at < now, LEASE.c.holder == holder))
        .values(holder=holder, expires_at=expires))
    return taken.rowcount == 1


def renew(conn: Connection, mailbox: str, folder: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Extend our lease to now + ttl; False when it is not ours any more.

    A lease of ours that expired unnoticed is renewed too: nobody can have
    synced the folder meanwhile, because taking it over changes the holder.
    """
    renewed = conn.execute(
        update(LEASE).where(LEASE.c.mailbox == mailbox, LEASE.c.folder == folder, LEASE.c.holder == holder)
        .values(expires_at=now + ttl))
    return renewed.rowcount == 1


def take_over(conn: Connection, mailbox: str, folder: str, holder: str, previous: str, now: datetime,
              ttl: timedelta) -> bool:
    """Take the lease from `previous`, known to be dead, before it expires; False if it changed hands."""
    taken = conn.execute(
        update(LEASE).where(LEASE.c.mailbox == mailbox, LEASE.c.folder == folder, LEASE.c.holder == previous)
        .values(holder=holder, expires_at=now + ttl))
    return taken.rowcount == 1


def guard(conn: Connection, mailbox: str, folder: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """For a write about the folder (a batch and its checkpoint): whether it may go ahead.

    Yes when the lease is ours (it is renewed, in the same transaction as
    the write, which locks the row until commit) or when the folder has no
    lease at all (a store used without pollers, such as a quarantine retry);
    no when another daemon holds it, live or not: then this one lost it.
    """
    if renew(conn, mailbox, folder, holder, now, ttl):
        return True
    return conn.execute(select(LEASE.c.holder).where(LEASE.c.mailbox == mailbox,
                                                      LEASE.c.folder == folder)).first() is None


def release(conn: Connection, mailbox: str, folder: str, holder: str) -> bool:
    """Give the folder up at once (a clean stop); False when it was not ours."""
    released = conn.execute(
        delete(LEASE).where(LEASE.c.mailbox == mailbox, LEASE.c.folder == folder, LEASE.c.holder == holder))
    return released.rowcount == 1


def release_all(conn: Connection, holder: str) -> int:
    """Give up every folder `holder` holds; how many there were."""
    return conn.execute(delete(LEASE).where(LEASE.c.holder == holder)).rowcount


def holders(conn: Connection) -> dict[tuple[str, str], LeaseHolder]:
    """Every lease, live or expired, by (mailbox, folder)."""
    rows = conn.execute(select(LEASE.c.mailbox, LEASE.c.folder, LEASE.c.holder, LEASE.c.expires_at))
    return {(r.mailbox, r.folder): LeaseHolder(r.holder, r.expires_at) for r in rows}


def holder_of(conn: Connection, mailbox: str, folder: str) -> LeaseHolder | None:
    row = conn.execute(select(LEASE.c.holder, LEASE.c.expires_at).where(
        LEASE.c.mailbox == mailbox, LEASE.c.folder == folder)).first()
    return LeaseHolder(row.holder, row.expires_at) if row else None


def clear(conn: Connection) -> None:
    """Forget every lease: for a private copy of a store, whose leases name the original's daemons."""
    conn.execute(delete(LEASE))


def _insert(conn: Connection):
    # INSERT ... ON CONFLICT DO NOTHING is spelled the same by both, but
    # SQLAlchemy offers it per dialect.
    if conn.dialect.name in ("postgresql", "sqlite"):
        return dialect_insert(conn, LEASE)
    raise NotImplementedError(f"leases need SQLite or PostgreSQL, not {conn.dialect.name}")


# -- who holds a lease -------------------------------------------------------------------------

_HOLDER = re.compile(r"(?P<name>.+:(?P<pid>\d+))@(?P<machine>[0-9a-f]{8})\.(?P<start>\d+)")


def process_holder() -> str:
    """This process as a lease holder: "host:pid@machine.start".

    `machine` names the kernel boot and the PID namespace (the processes
    that see the same /proc), `start` is the process's start time, so a
    recycled PID is never mistaken for the old daemon.  Without /proc it is
    "host:pid", and its leases simply run out.
    """
    name = f"{socket.gethostname()}:{os.getpid()}"
    machine, start = _machine(), _start_time(os.getpid())
    return f"{name}@{machine}.{start}" if machine and start else name


def display_name(holder: str) -> str:
    """The holder as people read it: "host:pid" (or the holder as given, for other names)."""
    match = _HOLDER.fullmatch(holder)
    return match["name"] if match else holder


def holder_gone(holder: str) -> bool:
    """Whether `holder` is a process of this machine that no longer runs.

    Only a holder from the same machine can be checked; any other is
    presumed alive, and its lease is left to expire.
    """
    match = _HOLDER.fullmatch(holder)
    if match is None or match["machine"] != _machine():
        return False
    return _start_time(int(match["pid"])) != match["start"]


@cache
def _machine() -> str | None:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:8]


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if it is not running."""
    try:
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is the state (the stat file's third field); a zombie has exited.
    if fields[0] == "Z":
        return None
    return fields[19]
