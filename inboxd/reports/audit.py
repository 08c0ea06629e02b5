"""`inboxd audit`: account for every message on the server, UID by UID.

For each folder, the server's UIDs under its current UIDVALIDITY are
compared with what the store recorded for that place: a sighting (the
message is stored, perhaps first seen elsewhere), a quarantine row, or a
skipped row (history under `history = "skip"`, our own relayed mail, Sent
mail about no ticket).  A UID at or below the folder's checkpoint with none
of these is missing: the answer to "did inboxd lose a mail?".  UIDs above
the checkpoint (or all of them, before a first sync or after a UIDVALIDITY
change) are not synced yet, which is not a loss.
"""

from __future__ import annotations

from sqlalchemy import Connection

from inboxd.config import MailboxSettings
from inboxd.store import folders, health


def audit_mailbox(conn: Connection, mailbox: MailboxSettings) -> list[dict]:
    from inboxd.sync import imap

    sent = mailbox.imap.sent_folder
    folders = mailbox.imap.folders + ((sent,) if sent and sent not in mailbox.imap.folders else ())
    try:
        server = imap.server_uids(mailbox.imap, folders)
    except Exception as exc:  # The login or the connection: one line for the whole mailbox.
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return [_error_row(mailbox.name, f, f"{type(exc).__name__}: {text}") for f in folders]
    return [compare(conn, mailbox.name, folder, server[folder]) for folder in folders]


def _error_row(mailbox: str, folder: str, error: str) -> dict:
    return {"mailbox": mailbox, "folder": folder, "uidvalidity": None, "error": error, "on_server": 0,
            "stored": 0, "quarantined": 0, "skipped_history": 0, "not_filed": 0, "unsynced": 0, "missing": []}


def compare(conn: Connection, mailbox: str, folder: str, server: tuple[int, list[int]] | str) -> dict:
    """One folder's accounting, from the server's (UIDVALIDITY, UIDs) or its error text."""
    if isinstance(server, str):
        return _error_row(mailbox, folder, server)
    uidvalidity, uids = server
    checkpoint = folders.read_checkpoint(conn, mailbox, folder)
    stored = health.sighted_uids(conn, mailbox, folder, uidvalidity)
    quarantined = health.quarantined_uids(conn, mailbox, folder, uidvalidity)
    skipped = health.skipped_uids(conn, mailbox, folder, uidvalidity)
    last = checkpoint.last_uid if checkpoint and checkpoint.uidvalidity == uidvalidity else 0
    row = _error_row(mailbox, folder, "")
    row.update(uidvalidity=uidvalidity, on_server=len(uids))
    missing = []
    for uid in uids:
        if uid in stored:
            row["stored"] += 1
        elif uid in quarantined:
            row["quarantined"] += 1
        elif uid in skipped:
            row["skipped_history" if skipped[uid].startswith("history") else "not_filed"] += 1
        elif uid > last:
            row["unsynced"] += 1
        else:
            missing.append(uid)
    row["missing"] = missing
    return row
