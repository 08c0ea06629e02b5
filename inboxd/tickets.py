"""Step 8, the read side: tickets and their threads as the contract's JSON shapes.

Both the CLI's tables and its `--json` output are built from these plain
dicts, so the two can never disagree.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, case, func, select

from inboxd.models import Event, Message, Quarantine, Sighting, Ticket

T_ticket = Ticket.__table__
T_message = Message.__table__
T_sighting = Sighting.__table__
T_event = Event.__table__
T_quarantine = Quarantine.__table__


class NotFound(LookupError):
    pass


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the contract wants; None stays None."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


SORTS = ("updated", "created", "priority", "id")


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


def list_tickets(conn: Connection, flt: ListFilter) -> list[dict]:
    q = select(T_ticket)
    if flt.status:
        q = q.where(T_ticket.c.status.in_(flt.status))
    if flt.mailbox:
        seen_there = (
            select(T_message.c.ticket_id)
            .join(T_sighting, T_sighting.c.message_pk == T_message.c.id)
            .where(T_sighting.c.mailbox == flt.mailbox)
        )
        q = q.where((T_ticket.c.mailbox == flt.mailbox) | T_ticket.c.id.in_(seen_there))
    if flt.assignee:
        q = q.where(T_ticket.c.assignee == flt.assignee)
    if flt.unassigned:
        q = q.where(T_ticket.c.assignee.is_(None))
    for tag in flt.tag:
        # Tags are a JSON array; match the quoted element exactly.
        q = q.where(T_ticket.c.tags.like(f'%{json.dumps(tag, ensure_ascii=False)}%'))
    if flt.team:
        q = q.where(T_ticket.c.team == flt.team)
    if flt.priority:
        q = q.where(T_ticket.c.priority.in_(flt.priority))
    if flt.search:
        pattern = f"%{flt.search}%"
        in_body = select(T_message.c.ticket_id).where(T_message.c.text.like(pattern))
        q = q.where(T_ticket.c.subject.like(pattern) | T_ticket.c.id.in_(in_body))
    order = []
    if flt.first_for:
        order.append(case((T_ticket.c.assignee == flt.first_for, 0), else_=1))
    order += {
        "updated": [T_ticket.c.updated_at.desc()],
        "created": [T_ticket.c.created_at.desc()],
        "priority": [case({"urgent": 0, "high": 1, "normal": 2, "low": 3}, value=T_ticket.c.priority),
                     T_ticket.c.updated_at.desc()],
        "id": [T_ticket.c.id.asc()],
    }[flt.sort]
    q = q.order_by(*order, T_ticket.c.id.desc())
    if flt.limit:
        q = q.limit(flt.limit)
    rows = conn.execute(q).mappings().all()
    boxes = _ticket_mailboxes(conn, [r["id"] for r in rows])
    return [_ticket_dict(r, boxes.get(r["id"], [])) for r in rows]


def _ticket_mailboxes(conn: Connection, pks: list[int]) -> dict[int, list[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for i in range(0, len(pks), 500):
        chunk = pks[i:i + 500]
        rows = conn.execute(
            select(T_message.c.ticket_id, T_sighting.c.mailbox)
            .join(T_sighting, T_sighting.c.message_pk == T_message.c.id)
            .where(T_message.c.ticket_id.in_(chunk))
            .distinct()
        )
        for pk, box in rows:
            out[pk].add(box)
    return {pk: sorted(v) for pk, v in out.items()}


def _ticket_dict(r, mailboxes: list[str]) -> dict:
    return {
        "id": r["ref"],
        "subject": r["subject"],
        "status": r["status"],
        "priority": r["priority"],
        "mailbox": r["mailbox"],
        "mailboxes": mailboxes or [r["mailbox"]],
        "requester": r["requester"],
        "requester_name": r["requester_name"],
        "assignee": r["assignee"],
        "tags": json.loads(r["tags"]),
        "message_count": r["message_count"],
        "created_at": iso(r["created_at"]),
        "updated_at": iso(r["updated_at"]),
        "first_response_at": iso(r["first_response_at"]),
        "team": r["team"],
        "tier": r["tier"],
        "escalated": bool(r["escalated"]),
    }


def show_ticket(conn: Connection, ref: str) -> dict:
    row = conn.execute(select(T_ticket).where(T_ticket.c.ref == ref)).mappings().first()
    if row is None:
        raise NotFound(f"no ticket {ref}")
    pk = row["id"]
    ticket = _ticket_dict(row, _ticket_mailboxes(conn, [pk]).get(pk, []))
    msgs = conn.execute(
        select(T_message).where(T_message.c.ticket_id == pk)
        .order_by(func.coalesce(T_message.c.date, T_message.c.created_at), T_message.c.id)
    ).mappings().all()
    seen: dict[int, set[str]] = defaultdict(set)
    for mpk, box in conn.execute(
        select(T_sighting.c.message_pk, T_sighting.c.mailbox)
        .join(T_message, and_(T_message.c.id == T_sighting.c.message_pk, T_message.c.ticket_id == pk))
    ):
        seen[mpk].add(box)
    ticket["messages"] = [
        {
            "message_id": m["message_id"],
            "direction": m["direction"],
            "kind": m["kind"],
            "from": m["from_addr"],
            "from_name": m["from_name"],
            "to": [a["email"] for a in json.loads(m["to_addrs"])],
            "cc": [a["email"] for a in json.loads(m["cc_addrs"])],
            "date": iso(m["date"] or m["created_at"]),
            "subject": m["subject"],
            "text": m["text"],
            "reply_text": m["reply_text"],
            "mailboxes": sorted(seen.get(m["id"], ())),
        }
        for m in msgs
    ]
    ticket["events"] = [
        {"at": iso(e["at"]), "actor": e["actor"], "action": e["action"], "detail": json.loads(e["detail"])}
        for e in conn.execute(
            select(T_event).where(T_event.c.ticket_id == pk).order_by(T_event.c.at, T_event.c.id)
        ).mappings()
    ]
    return ticket


def list_quarantine(conn: Connection) -> list[dict]:
    rows = conn.execute(select(T_quarantine).order_by(T_quarantine.c.at, T_quarantine.c.id)).mappings()
    return [
        {
            "id": r["id"], "mailbox": r["mailbox"], "folder": r["folder"], "uidvalidity": r["uidvalidity"],
            "uid": r["uid"], "message_id": r["message_id"], "reason": r["reason"],
            "raw_sha256": r["raw_sha256"], "at": iso(r["at"]),
        }
        for r in rows
    ]


def list_outbox(conn: Connection, statuses: tuple[str, ...]) -> list[dict]:
    marks = ", ".join("?" * len(statuses))
    rows = conn.exec_driver_sql(
        "SELECT o.id, o.status, o.kind, t.ref, o.mailbox, o.message_id, o.recipients, o.attempts,"
        " o.next_attempt_at, o.last_error, o.created_at, o.sent_at"
        f" FROM outbox o LEFT JOIN ticket t ON t.id = o.ticket_id WHERE o.status IN ({marks}) ORDER BY o.id",
        statuses,
    ).all()
    return [
        {
            "id": r[0], "status": r[1], "kind": r[2], "ticket": r[3], "mailbox": r[4], "message_id": r[5],
            "to": json.loads(r[6]), "attempts": r[7], "next_attempt_at": _iso_text(r[8]), "last_error": r[9],
            "created_at": _iso_text(r[10]), "sent_at": _iso_text(r[11]),
        }
        for r in rows
    ]


def _iso_text(value: str | None) -> str | None:
    """A timestamp read as raw SQLite text, in the contract's ISO form."""
    return iso(datetime.fromisoformat(value).replace(tzinfo=UTC)) if value else None


def _age(created: str, now: datetime) -> str:
    seconds = (now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return "now"


def format_table(rows: list[dict], now: datetime) -> str:
    """A plain, aligned table: fast for 100,000 rows, readable in any terminal."""
    header = ("ID", "STATUS", "PRI", "AGE", "ASSIGNEE", "DUE", "MAILBOX", "REQUESTER", "SUBJECT")
    body = [(t["id"], t["status"], t["priority"], _age(t["created_at"], now), t["assignee"] or "-",
             (t.get("first_response_due") or t.get("resolution_due") or "-")[:16].replace("T", " "),
             ",".join(t["mailboxes"]), t["requester"], t["subject"][:60]) for t in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*r) for r in (header, *body))
