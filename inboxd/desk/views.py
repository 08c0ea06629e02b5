"""Step 8, the read side: tickets and their threads as the contract's JSON shapes.

Both the CLI's tables and its `--json` output are built from these plain
dicts, so the two can never disagree.  The rows come from
`inboxd.store.tickets` (and the audit events from `inboxd.store.events`);
the list's timestamps arrive as the contract's ISO text already, made by
the database: `inboxd list --json` prints 100,000 tickets, and this keeps it
to about a second (see bench/list.py).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection

# The list's table and local times are pure text work, shared with the thin client.
from inboxd.cli.tables import format_table, local_text  # noqa: F401
from inboxd.store import events as store_events
from inboxd.store import fields as store_fields
from inboxd.store import quarantine as store_quarantine
from inboxd.store import tickets as store

# The contract's enumerations (design.md, "JSON shapes"), importable from
# here as before; inboxd.vocabulary defines them.
from inboxd.vocabulary import OPEN_STATUSES, PRIORITIES, STATUSES  # noqa: F401

SORTS = ("updated", "created", "priority", "id")


class NotFound(LookupError):
    pass


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the contract wants; None stays None."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    first_for: str | None = None          # this agent's tickets first
    overdue_at: datetime | None = None    # only tickets with a promise broken before this instant
    requester: str | None = None          # only this customer's tickets (any case)
    fields: tuple[tuple[str, str], ...] = ()   # only tickets with these custom field values
    tier: int | None = None               # only tickets at this support tier
    # Only what an agent limited to their teams may see: (teams, their mailboxes, agent, every team's
    # mailboxes) (inboxd.api.handlers).
    visible: tuple[tuple[str, ...], tuple[str, ...], str, tuple[str, ...]] | None = None


def list_tickets(conn: Connection, flt: ListFilter) -> list[dict]:
    rows = store.list_rows(
        conn, statuses=flt.status, mailbox=flt.mailbox, assignee=flt.assignee, unassigned=flt.unassigned,
        # Tags are a JSON array; match the quoted element exactly.
        tags=[json.dumps(tag, ensure_ascii=False) for tag in flt.tag],
        team=flt.team, priorities=flt.priority, search=flt.search, overdue_at=flt.overdue_at, sort=flt.sort,
        first_for=flt.first_for, limit=flt.limit, requester=flt.requester, fields=flt.fields,
        tier=flt.tier, visible=flt.visible)
    others = store.other_mailboxes(conn, [r[0] for r in rows])
    values = store_fields.values_for(conn, [r[0] for r in rows])
    return [_ticket_dict(r, others.get(r[0]), values.get(r[0])) for r in rows]


def _ticket_dict(r, other_mailboxes: set[str] | None, fields: dict[str, str] | None = None) -> dict:
    # Unpacked once: 100,000 rows read faster this way than by index.
    (_pk, ref, subject, status, priority, mailbox, requester, requester_name, assignee, tags, message_count,
     created_at, updated_at, first_response_at, team, tier, escalated, first_response_due, resolution_due) = r
    return {
        "id": ref,
        "subject": subject,
        "status": status,
        "priority": priority,
        "mailbox": mailbox,
        # The mailbox it was opened in, and every other one its mail was seen in.
        "mailboxes": sorted({mailbox, *other_mailboxes}) if other_mailboxes else [mailbox],
        "requester": requester,
        "requester_name": requester_name,
        "assignee": assignee,
        "tags": _tags(tags),
        "message_count": message_count,
        "created_at": created_at,
        "updated_at": updated_at,
        "first_response_at": first_response_at,
        "team": team,
        "tier": tier,
        "escalated": bool(escalated),
        "first_response_due": first_response_due,
        "resolution_due": resolution_due,
        # Custom fields ([[fields]], `inboxd set`): name -> value, only those set.
        "fields": dict(fields) if fields else {},
    }


@functools.lru_cache(maxsize=4096)
def _parsed_tags(raw: str) -> tuple[str, ...]:
    return tuple(json.loads(raw))


def _tags(raw: str) -> list[str]:
    # Few distinct tag sets exist, so parse each once (a third of `list`'s time otherwise).
    return list(_parsed_tags(raw))


def show_ticket(conn: Connection, ref: str) -> dict:
    row = store.ticket_row(conn, ref)
    if row is None:
        raise NotFound(f"no ticket {ref}")
    pk = row[0]
    ticket = _ticket_dict(row[:19], store.other_mailboxes(conn, [pk]).get(pk),
                          store_fields.values_for(conn, [pk]).get(pk))
    ticket["merged_into"] = row[19]
    seen = store.message_mailboxes(conn, pk)
    ticket["messages"] = [
        {
            "message_id": m.message_id, "direction": m.direction, "kind": m.kind, "from": m.from_addr,
            "from_name": m.from_name, "to": [a["email"] for a in json.loads(m.to_addrs)],
            "cc": [a["email"] for a in json.loads(m.cc_addrs)], "date": iso(m.at), "subject": m.subject,
            "text": m.text, "reply_text": m.reply_text, "mailboxes": sorted(seen.get(m.id, ())),
        }
        for m in store.thread(conn, pk)
    ]
    ticket["events"] = [
        {"at": iso(e.at), "actor": e.actor, "action": e.action, "detail": json.loads(e.detail)}
        for e in store_events.ticket_events(conn, pk)
    ]
    answer = store.latest_csat(conn, pk)
    ticket["csat"] = ({"rating": answer.rating, "label": answer.label, "comment": answer.comment,
                       "at": iso(answer.answered_at)} if answer else None)
    return ticket


def list_quarantine(conn: Connection) -> list[dict]:
    return [
        {
            "id": r.id, "mailbox": r.mailbox, "folder": r.folder, "uidvalidity": r.uidvalidity, "uid": r.uid,
            "message_id": r.message_id,
            # Mail kept on disk (over max_message_bytes) has no rawmessage row; its file is named by its hash.
            "reason": r.reason, "raw_sha256": r.raw_sha256 or Path(r.raw_path or "").stem, "at": iso(r.at),
        }
        for r in store_quarantine.rows(conn)
    ]


def list_outbox(conn: Connection, statuses: tuple[str, ...]) -> list[dict]:
    return [
        {
            "id": r.id, "status": r.status, "kind": r.kind, "ticket": r.ref, "mailbox": r.mailbox,
            "message_id": r.message_id, "to": json.loads(r.recipients), "attempts": r.attempts,
            "next_attempt_at": iso(r.next_attempt_at), "last_error": r.last_error,
            "created_at": iso(r.created_at), "sent_at": iso(r.sent_at),
        }
        for r in store.outbox_rows(conn, statuses)
    ]


def customer_view(conn: Connection, email: str) -> dict:
    """One customer (`inboxd customer EMAIL`): their tickets newest first, in `list --json`'s shape, and
    their satisfaction history, one entry per survey sent (newest first; unanswered: rating null)."""
    from inboxd.store import customers as store_customers

    tickets = list_tickets(conn, ListFilter(requester=email, sort="created"))
    history = [
        {"ticket": r.ref, "rating": r.rating, "label": r.label, "comment": r.comment, "at": iso(r.answered_at),
         "sent_at": iso(r.sent_at)}
        for r in store_customers.surveys(conn, email)
    ]
    rated = [h["rating"] for h in history if h["rating"] is not None]
    name = store_customers.customer_name(conn, email)
    if name is None:
        name = next((t["requester_name"] for t in tickets if t["requester_name"]), "")
    return {
        "email": email.strip().lower(),
        "name": name,
        "tickets": tickets,
        "csat": history,
        "summary": {
            "tickets": len(tickets),
            "open": sum(1 for t in tickets if t["status"] in OPEN_STATUSES),
            "surveys": len(history),
            "rated": len(rated),
            "average_rating": round(sum(rated) / len(rated), 2) if rated else None,
        },
    }
