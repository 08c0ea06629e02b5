"""Quarantined mail: look at one, and file it again once the cause is fixed.

A message is quarantined with its exact bytes and the reason (see
`inboxd.desk.ingest`).  `retry` runs it through the whole pipeline again, as it
would have been filed: with its arrival time, and as history if it arrived
before its folder's cut-off.  Success removes the quarantine row; failure
keeps it, with the new reason.  The raw bytes stay in the store either way,
since the filed message points at them too.

Mail over `[store] max_message_bytes` is quarantined with its bytes in a
file under data_dir (`raw_path`), not in the store.  Its retry says it is
still too large until the limit is raised; then it is read from the file
and filed like any other, and the file is removed once no quarantine row
needs it.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Connection, Engine

from inboxd.config import Settings
from inboxd.store.engine import db_time, writing
from inboxd.mail.largemail import header_block, read_head
from inboxd.desk.slaclock import parse_time

log = logging.getLogger("inboxd.desk.quarantine")


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
    raw: bytes                    # b"" when the bytes are in raw_path
    raw_path: Path | None = None  # the file of a mail over max_message_bytes

    @property
    def size(self) -> int:
        return self.raw_path.stat().st_size if self.raw_path is not None else len(self.raw)

    def read_raw(self) -> bytes:
        if self.raw_path is None:
            return self.raw
        return self.raw_path.read_bytes()

    def write_raw(self, out: BinaryIO) -> None:
        """The exact bytes to `out`; a file is copied a piece at a time, never read whole."""
        if self.raw_path is None:
            out.write(self.raw)
            return
        with open(self.raw_path, "rb") as fh:
            shutil.copyfileobj(fh, out, 1 << 20)

    def describe(self) -> dict:
        head_bytes = header_block(self.raw if self.raw_path is None else read_head(self.raw_path))
        head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head_bytes)
        headers = "".join(f"{k}: {v}\n" for k, v in head.items())
        return {"id": self.id, "mailbox": self.mailbox, "folder": self.folder, "uidvalidity": self.uidvalidity,
                "uid": self.uid, "message_id": self.message_id, "reason": self.reason,
                "raw_sha256": self.raw_sha256, "size": self.size, "at": _iso(self.at),
                "arrived_at": _iso(self.arrived_at), "headers": headers,
                "raw_path": str(self.raw_path) if self.raw_path is not None else None}


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def load(conn: Connection, quarantine_id: int, data_dir: Path) -> QuarantineItem | None:
    """One quarantined mail; the bytes of one kept on disk stay there (see read_raw, write_raw)."""
    row = conn.exec_driver_sql(
        "SELECT q.id, q.mailbox, q.folder, q.uidvalidity, q.uid, q.message_id, q.reason, q.raw_sha256, q.at,"
        " q.arrived_at, r.data, q.raw_path FROM quarantine q LEFT JOIN rawmessage r ON r.sha256 = q.raw_sha256"
        " WHERE q.id = ? AND (r.sha256 IS NOT NULL OR q.raw_path IS NOT NULL)",
        (quarantine_id,)).first()
    if row is None:
        return None
    path = data_dir / row[11] if row[11] is not None else None
    # The file's name is its hash (see largemail.Spool).
    sha256 = row[7] or (path.stem if path is not None else "")
    return QuarantineItem(row[0], row[1], row[2], row[3], row[4], row[5], row[6], sha256, parse_time(row[8]),
                          parse_time(row[9]), bytes(row[10]) if row[10] is not None else b"", path)


def retry(engine: Engine, settings: Settings, quarantine_id: int | None, now: datetime) -> list[dict]:
    """Refile one quarantined message (or all with None); one outcome dict each."""
    from inboxd.desk.ingest import Filer, oversize_reason

    with engine.connect() as conn:
        ids = [quarantine_id] if quarantine_id is not None else [
            r[0] for r in conn.exec_driver_sql("SELECT id FROM quarantine ORDER BY id")]
    filer = Filer(settings)
    outcomes = []
    for qid in ids:
        # Each message in its own transaction: one that fails again never
        # holds back the others.
        with writing(engine) as conn:
            item = load(conn, qid, settings.store.data_dir)
            if item is None:
                continue
            limit = settings.store.max_message_bytes
            if item.raw_path is not None and item.size > limit:
                reason = (f"{oversize_reason(item.size, limit)}; still too large: raise [store] max_message_bytes"
                          " to file it")
                conn.exec_driver_sql("UPDATE quarantine SET reason = ? WHERE id = ?", (reason, qid))
                outcomes.append({"id": qid, "filed": False, "outcome": "", "reason": reason})
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
            raw = item.read_raw()
            result, reason = filer.refile(conn, (item.mailbox, item.folder, item.uidvalidity, item.uid), raw,
                                          item.arrived_at, history_before, now)
            if result.quarantined:
                conn.exec_driver_sql("UPDATE quarantine SET reason = ?, at = ? WHERE id = ?",
                                     (reason, db_time(now), qid))
                if item.raw_path is not None:
                    # Within the limit now: its bytes are in the store like any mail's.
                    _move_into_store(conn, qid, hashlib.sha256(raw).hexdigest())
                outcomes.append({"id": qid, "filed": False, "outcome": "", "reason": reason})
            else:
                conn.exec_driver_sql("DELETE FROM quarantine WHERE id = ?", (qid,))
                what = ("new ticket" if result.new_tickets else "filed") if result.filed else "already known"
                outcomes.append({"id": qid, "filed": True, "outcome": what, "reason": ""})
        if item.raw_path is not None:
            _remove_if_unused(engine, item.raw_path, settings.store.data_dir)
    return outcomes


def _move_into_store(conn: Connection, qid: int, sha256: str) -> None:
    """Point a quarantine row at the rawmessage copy of its bytes, when there is one."""
    if conn.exec_driver_sql("SELECT 1 FROM rawmessage WHERE sha256 = ?", (sha256,)).first() is not None:
        conn.exec_driver_sql("UPDATE quarantine SET raw_sha256 = ?, raw_path = NULL WHERE id = ?", (sha256, qid))


def _remove_if_unused(engine: Engine, path: Path, data_dir: Path) -> None:
    """Delete an oversize file that no quarantine row points at any more (after the commit)."""
    relative = str(path.relative_to(data_dir))
    with engine.connect() as conn:
        used = conn.exec_driver_sql("SELECT 1 FROM quarantine WHERE raw_path = ?", (relative,)).first()
    if used is None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)
