"""What `inboxd status` shows: each folder's health, checkpoint and history cut-off, the outbox, the quarantine.

Read from the store only, so it works while the daemon runs (and tells
whether it does: a folder's `owner` is the daemon that holds its lease, with
the lease's expiry, or without a live lease the daemon that last synced it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from inboxd.config import Settings
from inboxd.store.leases import holders


def _iso(value) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text.replace(" ", "T")[:19] + "Z"


def read_status(conn: Connection, settings: Settings, now: datetime) -> dict:
    cur = conn.connection.driver_connection.cursor()
    checkpoints = {(r[0], r[1]): r for r in cur.execute(
        "SELECT mailbox, folder, uidvalidity, last_uid, synced_at, history_before FROM checkpoint")}
    states = {(r[0], r[1]): r for r in cur.execute(
        "SELECT mailbox, folder, ok, error, last_ok_at, failing_since, owner FROM folderstate")}
    held = holders(conn)
    mailboxes, healthy = [], True
    for mb in settings.mailboxes:
        sent = mb.imap.sent_folder
        folders = mb.imap.folders + ((sent,) if sent and sent not in mb.imap.folders else ())
        rows = []
        for folder in folders:
            cp, st = checkpoints.get((mb.name, folder)), states.get((mb.name, folder))
            lease = held.get((mb.name, folder))
            live = lease is not None and lease.live(now)
            failing = bool(st and not st[2])
            state = "failing" if failing else ("ok" if cp else "never synced")
            rows.append({
                "folder": folder, "state": state, "error": st[3] if failing else "",
                "failing_since": _iso(st[5]) if failing else None,
                "last_sync": _iso((st[4] if st else None) or (cp[4] if cp else None)),
                "uidvalidity": cp[2] if cp else None, "last_uid": cp[3] if cp else 0,
                "history_before": _iso(mb.history_before or (cp[5] if cp else None)),
                "owner": lease.name if live else (st[6] if st else ""),
                "lease": {"holder": lease.name, "expires_at": _iso(lease.expires_at.isoformat(sep=" ")),
                          "live": live} if lease else None,
            })
        # A Sent folder that fails is a warning; a configured folder that fails is not healthy.
        bad = [r for r in rows if r["state"] == "failing" and r["folder"] in mb.imap.folders]
        healthy &= not bad
        mailboxes.append({"name": mb.name, "address": mb.address,
                          "state": "failing" if bad else ("degraded" if any(r["state"] == "failing" for r in rows)
                                                          else "ok"),
                          "folders": rows})
    counts = dict(cur.execute("SELECT status, count(*) FROM outbox WHERE status != 'sent' GROUP BY status"))
    oldest = cur.execute("SELECT min(created_at) FROM outbox WHERE status = 'queued'").fetchone()[0]
    quarantined = cur.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    cur.close()
    return {
        "state": "ok" if healthy else "failing",
        "at": _iso(now.isoformat(sep=" ")),
        "mailboxes": mailboxes,
        "outbox": {"queued": counts.get("queued", 0), "sending": counts.get("sending", 0),
                   "failed": counts.get("failed", 0), "oldest_queued_at": _iso(oldest)},
        "quarantine": quarantined,
    }
