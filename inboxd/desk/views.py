"""Step 8, the read side: tickets and their threads as the contract's JSON shapes.

Both the CLI's tables and its `--json` output are built from these plain
dicts, so the two can never disagree.  The queries are plain SQL on
SQLite's own cursor, and timestamps are turned into ISO 8601 text without
building datetimes: `inboxd list --json` prints 100,000 tickets, and this
keeps it to about a second (see bench/list.py).  It also keeps the CLI from
importing the SQLModel classes, which cost a quarter of a second at every
start.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection

from inboxd.store.engine import MESSAGE_ORDER
from inboxd.cli.terminal import printable

# The contract's enumerations (design.md, "JSON shapes"); tests keep them
# equal to the ones inboxd.store.models declares for the store.
from inboxd.vocabulary import PRIORITIES, STATUSES  # noqa: F401

SORTS = ("updated", "created", "priority", "id")
_ORDER = {
    "updated": "t.updated_at DESC",
    "created": "t.created_at DESC",
    "priority": "CASE t.priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END,"
                " t.updated_at DESC",
    "id": "t.id ASC",
}


def _iso_sql(column: str) -> str:
    """SQL turning a stored timestamp (naive UTC text) into the contract's "…T…Z" form, NULL staying NULL;
    SQLite does this faster than Python can for 100,000 rows."""
    return f"strftime('%Y-%m-%dT%H:%M:%SZ', {column})"


_TICKET_COLUMNS = ("t.id, t.ref, t.subject, t.status, t.priority, t.mailbox, t.requester, t.requester_name,"
                   f" t.assignee, t.tags, t.message_count, {_iso_sql('t.created_at')}, {_iso_sql('t.updated_at')},"
                   f" {_iso_sql('t.first_response_at')}, t.team, t.tier, t.escalated,"
                   f" {_iso_sql('t.first_response_due')}, {_iso_sql('t.resolution_due')}")
# SQLite's default limit on bound parameters is far above this.
_CHUNK = 900


class NotFound(LookupError):
    pass


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the contract wants; None stays None."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_text(value: str | None) -> str | None:
    """A timestamp as the store keeps it (naive UTC text, "2026-11-23 03:04:16.123456")
    in the contract's ISO form ("2026-11-23T03:04:16Z"), by slicing, not parsing."""
    if not value:
        return None
    if len(value) >= 19 and value[10] in " T" and (len(value) == 19 or value[19] in ".Z+"):
        return f"{value[:10]}T{value[11:19]}Z"
    return iso(datetime.fromisoformat(value).replace(tzinfo=UTC))  # Any other form a tool may have written.


@dataclass(frozen=True)
class ListFilter:
    status: tuple[str, ...] = ()
    mailbox: str | None = None
    assignee: str | None = None
    unassigned: bool = False
    tag: tuple[str, ...] = ()
    limit: int | None = None
    team: str | None = None
    priority: tuple[str, ...] = ()
    search: str | None = None
    sort: str = "updated"
    first_for: str | None = None     # this agent's tickets first
    overdue_at: str | None = None    # only tickets with a promise broken before this (store-format UTC)


def _cursor(conn: Connection) -> sqlite3.Cursor:
    return conn.connection.driver_connection.cursor()


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with LIKE's wildcards taken literally (ESCAPE '\\')."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _marks(values) -> str:
    return ", ".join("?" * len(values))


def list_tickets(conn: Connection, flt: ListFilter) -> list[dict]:
    where: list[str] = []
    args: list = []
    if flt.status:
        where.append(f"t.status IN ({_marks(flt.status)})")
        args += flt.status
    if flt.mailbox:
        # A ticket belongs to a mailbox it was opened in or any of its mail was seen in.
        where.append("(t.mailbox = ? OR t.id IN (SELECT m.ticket_id FROM message m"
                     " JOIN sighting s ON s.message_pk = m.id WHERE s.mailbox = ?))")
        args += [flt.mailbox, flt.mailbox]
    if flt.assignee:
        where.append("t.assignee = ?")
        args.append(flt.assignee)
    if flt.unassigned:
        where.append("t.assignee IS NULL")
    for tag in flt.tag:
        # Tags are a JSON array; match the quoted element exactly.
        where.append("t.tags LIKE ? ESCAPE '\\'")
        args.append(_like(json.dumps(tag, ensure_ascii=False)))
    if flt.team:
        where.append("t.team = ?")
        args.append(flt.team)
    if flt.priority:
        where.append(f"t.priority IN ({_marks(flt.priority)})")
        args += flt.priority
    if flt.search:
        where.append("(t.subject LIKE ? ESCAPE '\\' OR t.id IN"
                     " (SELECT ticket_id FROM message WHERE text LIKE ? ESCAPE '\\'))")
        args += [_like(flt.search)] * 2
    if flt.overdue_at:
        # A broken promise: a due time passed and not met (resolution only while still open).
        where.append("((t.first_response_due < ? AND t.first_response_at IS NULL)"
                     " OR t.next_response_due < ? OR (t.resolution_due < ? AND t.status IN ('new', 'open', 'pending')))"
                     " AND t.status NOT IN ('solved', 'closed')")
        args += [flt.overdue_at] * 3
    order = []
    if flt.first_for:
        order.append("CASE WHEN t.assignee = ? THEN 0 ELSE 1 END")
    sql = f"SELECT {_TICKET_COLUMNS} FROM ticket t"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY " + ", ".join([*order, _ORDER[flt.sort], "t.id DESC"])
    if flt.first_for:
        args.append(flt.first_for)
    if flt.limit:
        sql += " LIMIT ?"
        args.append(flt.limit)
    cur = _cursor(conn)
    rows = cur.execute(sql, args).fetchall()
    others = _other_mailboxes(cur, [r[0] for r in rows])
    return [_ticket_dict(r, others.get(r[0])) for r in rows]


def _other_mailboxes(cur: sqlite3.Cursor, pks: list[int]) -> dict[int, set[str]]:
    """For each ticket, the mailboxes other than its own where some of its mail was seen.

    Only the few tickets whose mail reached several mailboxes have any, so
    this returns a small map even for the whole store.
    """
    out: dict[int, set[str]] = defaultdict(set)
    sql = ("SELECT m.ticket_id, s.mailbox FROM sighting s JOIN message m ON m.id = s.message_pk"
           " JOIN ticket t ON t.id = m.ticket_id WHERE s.mailbox != t.mailbox")
    if len(pks) > 20 * _CHUNK:
        # Most of the store: one pass over all sightings beats thousands of lookups.
        wanted = set(pks)
        for pk, box in cur.execute(sql):
            if pk in wanted:
                out[pk].add(box)
    else:
        for i in range(0, len(pks), _CHUNK):
            chunk = pks[i:i + _CHUNK]
            for pk, box in cur.execute(f"{sql} AND m.ticket_id IN ({_marks(chunk)})", chunk):
                out[pk].add(box)
    return out


def _ticket_dict(r: tuple, other_mailboxes: set[str] | None) -> dict:
    return {
        "id": r[1],
        "subject": r[2],
        "status": r[3],
        "priority": r[4],
        "mailbox": r[5],
        # The mailbox it was opened in, and every other one its mail was seen in.
        "mailboxes": sorted({r[5], *other_mailboxes}) if other_mailboxes else [r[5]],
        "requester": r[6],
        "requester_name": r[7],
        "assignee": r[8],
        "tags": _tags(r[9]),
        "message_count": r[10],
        "created_at": r[11],
        "updated_at": r[12],
        "first_response_at": r[13],
        "team": r[14],
        "tier": r[15],
        "escalated": bool(r[16]),
        "first_response_due": r[17],
        "resolution_due": r[18],
    }


@functools.lru_cache(maxsize=4096)
def _parsed_tags(raw: str) -> tuple[str, ...]:
    return tuple(json.loads(raw))


def _tags(raw: str) -> list[str]:
    # Few distinct tag sets exist, so parse each once (a third of `list`'s time otherwise).
    return list(_parsed_tags(raw))


def show_ticket(conn: Connection, ref: str) -> dict:
    cur = _cursor(conn)
    row = cur.execute(f"SELECT {_TICKET_COLUMNS}, t.merged_into FROM ticket t WHERE t.ref = ?", (ref,)).fetchone()
    if row is None:
        raise NotFound(f"no ticket {ref}")
    pk = row[0]
    ticket = _ticket_dict(row, _other_mailboxes(cur, [pk]).get(pk))
    merged = cur.execute("SELECT ref FROM ticket WHERE id = ?", (row[19],)).fetchone() if row[19] else None
    ticket["merged_into"] = merged[0] if merged else None
    seen: dict[int, set[str]] = defaultdict(set)
    for mpk, box in cur.execute("SELECT s.message_pk, s.mailbox FROM sighting s JOIN message m"
                                " ON m.id = s.message_pk WHERE m.ticket_id = ?", (pk,)):
        seen[mpk].add(box)
    ticket["messages"] = [
        {
            "message_id": m[1], "direction": m[2], "kind": m[3], "from": m[4], "from_name": m[5],
            "to": [a["email"] for a in json.loads(m[6])], "cc": [a["email"] for a in json.loads(m[7])],
            "date": _iso_text(m[8]), "subject": m[9], "text": m[10], "reply_text": m[11],
            "mailboxes": sorted(seen.get(m[0], ())),
        }
        for m in cur.execute(
            "SELECT id, message_id, direction, kind, from_addr, from_name, to_addrs, cc_addrs,"
            " coalesce(date, created_at) AS at, subject, text, reply_text FROM message WHERE ticket_id = ?"
            f" ORDER BY {MESSAGE_ORDER}, id", (pk,)).fetchall()
    ]
    ticket["events"] = [
        {"at": _iso_text(e[0]), "actor": e[1], "action": e[2], "detail": json.loads(e[3])}
        for e in cur.execute("SELECT at, actor, action, detail FROM event WHERE ticket_id = ? ORDER BY at, id",
                             (pk,)).fetchall()
    ]
    answer = cur.execute("SELECT rating, label, comment, answered_at FROM csat WHERE ticket_id = ?"
                         " AND answered_at IS NOT NULL ORDER BY answered_at DESC LIMIT 1", (pk,)).fetchone()
    ticket["csat"] = ({"rating": answer[0], "label": answer[1], "comment": answer[2], "at": _iso_text(answer[3])}
                      if answer else None)
    return ticket


def list_quarantine(conn: Connection) -> list[dict]:
    rows = _cursor(conn).execute(
        "SELECT id, mailbox, folder, uidvalidity, uid, message_id, reason, raw_sha256, at, raw_path FROM quarantine"
        " ORDER BY at, id").fetchall()
    return [
        {
            "id": r[0], "mailbox": r[1], "folder": r[2], "uidvalidity": r[3], "uid": r[4], "message_id": r[5],
            # Mail kept on disk (over max_message_bytes) has no rawmessage row; its file is named by its hash.
            "reason": r[6], "raw_sha256": r[7] or Path(r[9] or "").stem, "at": _iso_text(r[8]),
        }
        for r in rows
    ]


def list_outbox(conn: Connection, statuses: tuple[str, ...]) -> list[dict]:
    rows = _cursor(conn).execute(
        "SELECT o.id, o.status, o.kind, t.ref, o.mailbox, o.message_id, o.recipients, o.attempts,"
        " o.next_attempt_at, o.last_error, o.created_at, o.sent_at"
        f" FROM outbox o LEFT JOIN ticket t ON t.id = o.ticket_id WHERE o.status IN ({_marks(statuses)})"
        " ORDER BY o.id",
        statuses,
    ).fetchall()
    return [
        {
            "id": r[0], "status": r[1], "kind": r[2], "ticket": r[3], "mailbox": r[4], "message_id": r[5],
            "to": json.loads(r[6]), "attempts": r[7], "next_attempt_at": _iso_text(r[8]), "last_error": r[9],
            "created_at": _iso_text(r[10]), "sent_at": _iso_text(r[11]),
        }
        for r in rows
    ]


def _age(created: str, now: datetime) -> str:
    seconds = (now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return "now"


def _due(t: dict) -> str:
    """The next promise: the first response until it is given, then the resolution."""
    due = t.get("resolution_due") if t["first_response_at"] else t.get("first_response_due")
    return (due or "-")[:16].replace("T", " ")


def format_table(rows: list[dict], now: datetime) -> str:
    """A plain, aligned table: fast for 100,000 rows, readable in any terminal."""
    header = ("ID", "STATUS", "PRI", "AGE", "ASSIGNEE", "DUE", "MAILBOX", "REQUESTER", "SUBJECT")
    # Requesters and subjects come from customers' mail: no terminal escapes
    # reach the screen (see inboxd.cli.terminal).
    body = [(t["id"], t["status"], t["priority"], _age(t["created_at"], now), t["assignee"] or "-",
             _due(t),
             ",".join(t["mailboxes"]), printable(t["requester"]), printable(t["subject"][:60])) for t in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*r) for r in (header, *body))
