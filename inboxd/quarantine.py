"""Quarantined mail: look at one, and file it again once the cause is fixed.

A message is quarantined with its exact bytes and the reason (see
`inboxd.ingest`).  `retry` runs it through the whole pipeline again, as it
would have been filed: with its arrival time, and as history if it arrived
before its folder's cut-off.  Success removes the quarantine row; failure
keeps it, with the new reason.  The raw bytes stay in the store either way,
since the filed message points at them too.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from inboxd.config import Settings
from inboxd.db import db_time, writing
from inboxd.slaclock import parse_time


@dataclass(frozen=True)
class QuarantineItem:
    id: int
    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    message_id: str | None
    reason: str
    raw_sha256: str
    at: datetime | None
    arrived_at: datetime | None
    raw: bytes

    def describe(self) -> dict:
        head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(self.raw)
        headers = "".join(f"{k}: {v}\n" for k, v in head.items())
        return {"id": self.id, "mailbox": self.mailbox, "folder": self.folder, "uidvalidity": self.uidvalidity,
                "uid": self.uid, "message_id": self.message_id, "reason": self.reason,
                "raw_sha256": self.raw_sha256, "size": len(self.raw), "at": _iso(self.at),
                "arrived_at": _iso(self.arrived_at), "headers": headers}


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def load(conn: Connection, quarantine_id: int) -> QuarantineItem | None:
    row = conn.exec_driver_sql(
        "SELECT q.id, q.mailbox, q.folder, q.uidvalidity, q.uid, q.message_id, q.reason, q.raw_sha256, q.at,"
        " q.arrived_at, r.data FROM quarantine q JOIN rawmessage r ON r.sha256 = q.raw_sha256 WHERE q.id = ?",
        (quarantine_id,)).first()
    if row is None:
        return None
    return QuarantineItem(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], parse_time(row[8]),
                          parse_time(row[9]), bytes(row[10]))


def retry(engine: Engine, settings: Settings, quarantine_id: int | None, now: datetime) -> list[dict]:
    """Refile one quarantined message (or all with None); one outcome dict each."""
    from inboxd.ingest import Filer

    with engine.connect() as conn:
        ids = [quarantine_id] if quarantine_id is not None else [
            r[0] for r in conn.exec_driver_sql("SELECT id FROM quarantine ORDER BY id")]
    filer = Filer(settings)
    outcomes = []
    for qid in ids:
        # Each message in its own transaction: one that fails again never
        # holds back the others.
        with writing(engine) as conn:
            item = load(conn, qid)
            if item is None:
                continue
            try:
                mailbox = settings.mailbox(item.mailbox)
            except LookupError:
                outcomes.append({"id": qid, "filed": False, "outcome": "",
                                 "reason": f"mailbox {item.mailbox!r} is no longer configured"})
                continue
            cut = conn.exec_driver_sql("SELECT history_before FROM checkpoint WHERE mailbox = ? AND folder = ?",
                                       (item.mailbox, item.folder)).scalar()
            history_before = mailbox.history_before or parse_time(cut)
            result, reason = filer.refile(conn, (item.mailbox, item.folder, item.uidvalidity, item.uid), item.raw,
                                          item.arrived_at, history_before, now)
            if result.quarantined:
                conn.exec_driver_sql("UPDATE quarantine SET reason = ?, at = ? WHERE id = ?",
                                     (reason, db_time(now), qid))
                outcomes.append({"id": qid, "filed": False, "outcome": "", "reason": reason})
            else:
                conn.exec_driver_sql("DELETE FROM quarantine WHERE id = ?", (qid,))
                what = ("new ticket" if result.new_tickets else "filed") if result.filed else "already known"
                outcomes.append({"id": qid, "filed": True, "outcome": what, "reason": ""})
    return outcomes
