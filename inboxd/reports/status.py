"""What `inboxd status` shows: each folder's health, checkpoint, lag and history cut-off, the outbox, the quarantine.

Read from the store only, so it works while the daemon runs (and tells
whether it does: a folder's `owner` is the daemon that holds its lease, with
the lease's expiry, or without a live lease the daemon that last synced it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Engine

from inboxd.config import Settings
from inboxd.desk.health import FolderFacts, Health, assess
from inboxd.store import health, writeback
from inboxd.store.engine import reading
from inboxd.store.leases import holders


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_status(conn: Connection, settings: Settings, now: datetime) -> dict:
    checkpoints = health.checkpoints(conn)
    states = health.folder_states(conn)
    held = holders(conn)
    written = writeback.folders(conn)
    verdict = assess(settings.mailboxes, _facts(checkpoints, states), None, now)
    verdicts = {m.name: m for m in verdict.mailboxes}
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
                "server_uid": cp.server_uid if cp else None,
                "lag": max(cp.server_uid - cp.last_uid, 0) if cp else None,
                "history_before": _iso(mb.history_before or (cp.history_before if cp else None)),
                "owner": lease.name if live else (st.owner if st else ""),
                "lease": {"holder": lease.name, "expires_at": _iso(lease.expires_at), "live": live} if lease else None,
                "write_back": _write_back(mb, folder, written.get((mb.name, folder))),
            })
        # A Sent folder that fails is a warning; a configured folder that fails is not healthy.
        bad = [r for r in rows if r["state"] == "failing" and r["folder"] in mb.imap.folders]
        healthy &= not bad
        mailboxes.append({"name": mb.name, "address": mb.address,
                          "state": "failing" if bad else ("degraded" if any(r["state"] == "failing" for r in rows)
                                                          else "ok"),
                          "healthy": verdicts[mb.name].ok, "reasons": list(verdicts[mb.name].reasons),
                          "folders": rows})
    counts = health.outbox_counts(conn)
    oldest = health.oldest_queued(conn)
    quarantined = health.quarantine_count(conn)
    return {
        "state": "ok" if healthy else "failing",
        "healthy": verdict.ok,
        "at": _iso(now),
        "mailboxes": mailboxes,
        "outbox": {"queued": counts.get("queued", 0), "sending": counts.get("sending", 0),
                   "failed": counts.get("failed", 0), "oldest_queued_at": _iso(oldest)},
        "quarantine": quarantined,
    }


def _write_back(mb, folder: str, row) -> dict | None:
    """What inboxd writes to the folder (docs/practices/writeback.md); None when it writes nothing there.

    keywords: "keywords" (IMAP keywords), "labels" (Gmail), "refused" (PERMANENTFLAGS
    lacks \\*: nothing is written), "off" (write_back = false), "unknown" (not checked yet);
    seen: "written", "refused" or "off" likewise; stores: STORE commands sent so far;
    error: the last failed write ("" when the last pass wrote everything).
    """
    imap = mb.imap
    if not (imap.write_back or imap.seen_on_close) or folder not in imap.folders or folder == imap.sent_folder:
        return None
    if row is None:
        keywords = "unknown" if imap.write_back else "off"
        seen = "unknown" if imap.seen_on_close else "off"
    else:
        keywords = ("off" if not imap.write_back else "labels" if row.gmail else
                    "keywords" if row.keywords else "refused")
        seen = "off" if not imap.seen_on_close else "written" if row.seen else "refused"
    return {"keywords": keywords, "seen": seen, "checked_at": _iso(row.checked_at) if row else None,
            "stores": row.stores if row else 0, "error": row.error if row else ""}


def _facts(checkpoints: dict, states: dict) -> dict[tuple[str, str], FolderFacts]:
    """What the health rules read of each folder, from its checkpoint and its poller's last word."""
    facts = {}
    for key in set(checkpoints) | set(states):
        cp, st = checkpoints.get(key), states.get(key)
        facts[key] = FolderFacts(last_ok_at=st.last_ok_at if st else None, checkpoint_at=cp.synced_at if cp else None,
                                 failing=bool(st and not st.ok), error=st.error if st else "")
    return facts


def read_health(engine: Engine, settings: Settings, now: datetime) -> Health:
    """The health verdict at `now`; a store that does not answer makes every mailbox unhealthy."""
    try:
        with reading(engine) as conn:
            facts = _facts(health.checkpoints(conn), health.folder_states(conn))
    except Exception as exc:  # Whatever the store's trouble, it is the reason, in one line.
        return assess(settings.mailboxes, {}, " ".join(str(exc).split())[:300] or type(exc).__name__, now)
    return assess(settings.mailboxes, facts, None, now)


def health_json(verdict: Health, now: datetime) -> dict:
    """`inboxd health --json` (and later the body of /healthz)."""
    return {
        "ok": verdict.ok,
        "at": _iso(now),
        "store": {"ok": verdict.store_error is None, "error": verdict.store_error},
        "mailboxes": [{"name": m.name, "ok": m.ok, "reasons": list(m.reasons),
                       "folders": [{"folder": f.folder, "ok": f.ok, "reason": f.reason,
                                    "last_sync": _iso(f.last_sync),
                                    "bound_seconds": int(f.bound.total_seconds())} for f in m.folders]}
                      for m in verdict.mailboxes],
    }
