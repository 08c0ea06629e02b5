"""What `inboxd status` shows: each folder's health, checkpoint and history cut-off, the outbox, the quarantine.

Read from the store only, so it works while the daemon runs (and tells
whether it does: a folder's `owner` is the daemon that holds its lease, with
the lease's expiry, or without a live lease the daemon that last synced it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from inboxd.config import Settings
from inboxd.store import health
from inboxd.store.leases import holders


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_status(conn: Connection, settings: Settings, now: datetime) -> dict:
    checkpoints = health.checkpoints(conn)
    states = health.folder_states(conn)
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
            failing = bool(st and not st.ok)
            state = "failing" if failing else ("ok" if cp else "never synced")
            rows.append({
                "folder": folder, "state": state, "error": st.error if failing else "",
                "failing_since": _iso(st.failing_since) if failing else None,
                "last_sync": _iso((st.last_ok_at if st else None) or (cp.synced_at if cp else None)),
                "uidvalidity": cp.uidvalidity if cp else None, "last_uid": cp.last_uid if cp else 0,
                "history_before": _iso(mb.history_before or (cp.history_before if cp else None)),
                "owner": lease.name if live else (st.owner if st else ""),
                "lease": {"holder": lease.name, "expires_at": _iso(lease.expires_at), "live": live} if lease else None,
            })
        # A Sent folder that fails is a warning; a configured folder that fails is not healthy.
        bad = [r for r in rows if r["state"] == "failing" and r["folder"] in mb.imap.folders]
        healthy &= not bad
        mailboxes.append({"name": mb.name, "address": mb.address,
                          "state": "failing" if bad else ("degraded" if any(r["state"] == "failing" for r in rows)
                                                          else "ok"),
                          "folders": rows})
    counts = health.outbox_counts(conn)
    oldest = health.oldest_queued(conn)
    quarantined = health.quarantine_count(conn)
    return {
        "state": "ok" if healthy else "failing",
        "at": _iso(now),
        "mailboxes": mailboxes,
        "outbox": {"queued": counts.get("queued", 0), "sending": counts.get("sending", 0),
                   "failed": counts.get("failed", 0), "oldest_queued_at": _iso(oldest)},
        "quarantine": quarantined,
    }
