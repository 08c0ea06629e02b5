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
from inboxd.mail.largemail import header_block, read_head
from inboxd.store import filing, folders
from inboxd.store import quarantine as store
from inboxd.store.engine import reading, writing

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
    row = store.item(conn, quarantine_id)
    if row is None:
        return None
    path = data_dir / row.raw_path if row.raw_path is not None else None
    # The file's name is its hash (see largemail.Spool).
    sha256 = row.raw_sha256 or (path.stem if path is not None else "")
    return QuarantineItem(row.id, row.mailbox, row.folder, row.uidvalidity, row.uid, row.message_id, row.reason,
                          sha256, row.at, row.arrived_at, bytes(row.data) if row.data is not None else b"", path)


def retry(engine: Engine, settings: Settings, quarantine_id: int | None, now: datetime) -> list[dict]:
    """Refile one quarantined message (or all with None); one outcome dict each."""
    from inboxd.desk.ingest import Filer, oversize_reason

    if quarantine_id is not None:
        ids = [quarantine_id]
    else:
        with reading(engine) as conn:
            ids = store.ids(conn)
    filer = Filer(settings)
    outcomes = []
    for qid in ids:
        # Each message in its own transaction: one that fails again never
        # holds back the others.
        with writing(engine) as conn:
            # Re-filing decides threads like the pollers do, so it waits its turn as they do.
            filing.serialize_filing(conn)
            item = load(conn, qid, settings.store.data_dir)
            if item is None:
                continue
            limit = settings.store.max_message_bytes
            if item.raw_path is not None and item.size > limit:
                reason = (f"{oversize_reason(item.size, limit)}; still too large: raise [store] max_message_bytes"
                          " to file it")
                store.set_reason(conn, qid, reason)
                outcomes.append({"id": qid, "filed": False, "outcome": "", "reason": reason})
                continue
            try:
                mailbox = settings.mailbox(item.mailbox)
            except LookupError:
                outcomes.append({"id": qid, "filed": False, "outcome": "",
                                 "reason": f"mailbox {item.mailbox!r} is no longer configured"})
                continue
            history_before = mailbox.history_before or folders.history_cutoff(conn, item.mailbox, item.folder)
            raw = item.read_raw()
            result, reason = filer.refile(conn, (item.mailbox, item.folder, item.uidvalidity, item.uid), raw,
                                          item.arrived_at, history_before, now)
            if result.quarantined:
                store.set_reason(conn, qid, reason, at=now)
                if item.raw_path is not None:
                    # Within the limit now: its bytes are in the store like any mail's, when
                    # filing got as far as storing them.
                    store.point_at_stored_bytes(conn, qid, hashlib.sha256(raw).hexdigest())
                outcomes.append({"id": qid, "filed": False, "outcome": "", "reason": reason})
            else:
                store.remove(conn, qid)
                what = ("new ticket" if result.new_tickets else "filed") if result.filed else "already known"
                outcomes.append({"id": qid, "filed": True, "outcome": what, "reason": ""})
        if item.raw_path is not None:
            _remove_if_unused(engine, item.raw_path, settings.store.data_dir)
    return outcomes


def _remove_if_unused(engine: Engine, path: Path, data_dir: Path) -> None:
    """Delete an oversize file that no quarantine row points at any more (after the commit)."""
    relative = str(path.relative_to(data_dir))
    with reading(engine) as conn:
        used = store.file_in_use(conn, relative)
    if not used:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)
