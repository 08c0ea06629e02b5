"""The SQL behind the Prometheus metrics: one read-only snapshot of what the store knows.

Counts per folder (filed, quarantined, skipped), each folder's sync lag and
last sync, the outbox, duties done, tickets by status and SLA promises past
due.  Everything reads; nothing writes.  `inboxd.reports.prometheus` turns
the snapshot into metric families.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, case, func, select

from inboxd.config import Settings
from inboxd.store import health
from inboxd.store.sql import t
from inboxd.store.tiers import tier_response_unmet
from inboxd.vocabulary import OPEN_STATUSES

# The promises whose due time, once passed while unmet, is a breach.
BREACH_TARGETS = ("first_response", "next_response", "resolution", "tier_response")


@dataclass
class FolderFigures:
    mailbox: str
    folder: str
    ingested: int = 0
    quarantined: int = 0
    skipped_history: int = 0
    skipped_other: int = 0
    last_uid: int = 0
    server_uid: int = 0
    last_sync: datetime | None = None
    failing: bool = False

    @property
    def lag(self) -> int:
        """UIDs on the server past the checkpoint when the folder was last selected (never negative)."""
        return max(self.server_uid - self.last_uid, 0)


@dataclass
class Snapshot:
    folders: list[FolderFigures] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    oldest_queued_age: float = 0.0
    duties: dict[str, int] = field(default_factory=dict)
    tickets: dict[tuple[str, str], int] = field(default_factory=dict)
    breaches: dict[tuple[str, str], int] = field(default_factory=dict)


def lags(conn: Connection) -> dict[tuple[str, str], int]:
    """Each folder's lag by (mailbox, folder): newest server UID at the last SELECT minus the checkpoint."""
    c = t.checkpoint.c
    rows = conn.execute(select(c.mailbox, c.folder, c.server_uid, c.last_uid))
    return {(r.mailbox, r.folder): max(r.server_uid - r.last_uid, 0) for r in rows}


def _by_folder(conn: Connection, table) -> dict[tuple[str, str], int]:
    c = table.c
    rows = conn.execute(select(c.mailbox, c.folder, func.count()).group_by(c.mailbox, c.folder))
    return {(m, f): n for m, f, n in rows}


def _skipped(conn: Connection) -> dict[tuple[str, str, str], int]:
    c = t.skipped.c
    # The history step's reason starts with "history" (inboxd.desk.ingest.skip_history).
    kind = case((c.reason.like("history%"), "history"), else_="other")
    rows = conn.execute(select(c.mailbox, c.folder, kind, func.count()).group_by(c.mailbox, c.folder, kind))
    return {(m, f, k): n for m, f, k, n in rows}


def _breaches(conn: Connection, now: datetime) -> dict[tuple[str, str], int]:
    tk = t.ticket.c
    unmet = {"first_response": tk.first_response_at.is_(None), "next_response": None,
             "resolution": tk.status.in_(OPEN_STATUSES), "tier_response": tier_response_unmet()}
    out: dict[tuple[str, str], int] = {}
    for target in BREACH_TARGETS:
        column = tk[f"{target}_due"]
        where = [column < now, tk.status.not_in(("solved", "closed")), tk.merged_into.is_(None)]
        if unmet[target] is not None:
            where.append(unmet[target])
        for mailbox, n in conn.execute(select(tk.mailbox, func.count()).where(*where).group_by(tk.mailbox)):
            out[(mailbox, target)] = n
    return out


def snapshot(conn: Connection, settings: Settings, now: datetime) -> Snapshot:
    """Everything the metrics report, read in one transaction at `now`."""
    places: dict[tuple[str, str], FolderFigures] = {}
    for mb in settings.mailboxes:
        sent = mb.imap.sent_folder
        for folder in mb.imap.folders + ((sent,) if sent and sent not in mb.imap.folders else ()):
            places[(mb.name, folder)] = FolderFigures(mb.name, folder)

    def place(key: tuple[str, str]) -> FolderFigures:
        return places.setdefault(key, FolderFigures(*key))

    for key, n in _by_folder(conn, t.sighting).items():
        place(key).ingested = n
    for key, n in _by_folder(conn, t.quarantine).items():
        place(key).quarantined = n
    for (m, f, kind), n in _skipped(conn).items():
        setattr(place((m, f)), f"skipped_{kind}", n)
    states = health.folder_states(conn)
    for key, cp in health.checkpoints(conn).items():
        figures = place(key)
        figures.last_uid, figures.server_uid = cp.last_uid, cp.server_uid
        st = states.get(key)
        figures.last_sync = (st.last_ok_at if st else None) or cp.synced_at
        figures.failing = bool(st and not st.ok)
    oldest = health.oldest_queued(conn)
    d = t.duty.c
    tk = t.ticket.c
    return Snapshot(
        folders=list(places.values()),
        outbox=health.outbox_counts(conn),
        oldest_queued_age=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        duties=dict(conn.execute(select(d.duty, func.count()).group_by(d.duty)).all()),
        tickets={(m, s): n for m, s, n in conn.execute(
            select(tk.mailbox, tk.status, func.count()).where(tk.merged_into.is_(None))
            .group_by(tk.mailbox, tk.status))},
        breaches=_breaches(conn, now),
    )
