"""Export tickets and their messages as JSON or CSV, masked unless a full export is asked for.

Masking keeps an export useful for counting and auditing while keeping
customers' identities and words out of it: customer addresses become
"l***@example.cn", names their initials ("L. L."), message bodies "[masked]".
Our own addresses (mailboxes and agents) are not personal data and stay as
they are.  Who may export (and who may export unmasked) is checked by the
caller, `inboxd.cli.reports`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection

from inboxd.store import reports as store

MASK = "[masked]"
TICKET_FIELDS = (
    "id", "subject", "status", "priority", "mailbox", "requester", "requester_name", "assignee", "team", "tags",
    "message_count", "created_at", "updated_at", "first_response_at", "solved_at", "closed_at", "sla_policy",
    "escalated",
)
MESSAGE_FIELDS = ("ticket", "message_id", "direction", "kind", "from", "from_name", "to", "cc", "date", "subject",
                  "text")
# The CSV is one table: a "record" column says whether a row is a ticket or a message.
CSV_FIELDS = ("record", *TICKET_FIELDS, *[f for f in MESSAGE_FIELDS if f not in TICKET_FIELDS])


def mask_email(address: str, own: frozenset[str] = frozenset()) -> str:
    """ "lilei@example.cn" -> "l***@example.cn"; our own addresses stay as they are."""
    if not address or address.lower() in own:
        return address
    local, at, domain = address.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_name(name: str) -> str:
    """ "Li Lei" -> "L. L.", "李雷" -> "李."; the first letter of each word."""
    return " ".join(f"{word[0]}." for word in name.split())


def export_records(conn: Connection, *, since: datetime | None, until: datetime | None, full: bool,
                   own_addresses: frozenset[str] = frozenset()) -> dict[str, list[dict]]:
    """{"tickets": [...], "messages": [...]} for the tickets created in [since, until) (open ends: all)."""
    own = frozenset(a.lower() for a in own_addresses)
    email = (lambda a: a) if full else (lambda a: mask_email(a, own))
    name = (lambda n: n) if full else mask_name
    tickets = []
    for row in store.export_tickets(conn, since, until):
        record = dict(zip(TICKET_FIELDS, row))
        record.update(
            requester=email(record["requester"]), requester_name=name(record["requester_name"] or ""),
            tags=json.loads(record["tags"] or "[]"), escalated=bool(record["escalated"]),
            **{k: _iso(record[k]) for k in ("created_at", "updated_at", "first_response_at", "solved_at",
                                            "closed_at")},
        )
        tickets.append(record)
    messages = []
    for row in store.export_messages(conn, since, until):
        record = dict(zip(MESSAGE_FIELDS, row))
        record.update(
            **{"from": email(record["from"] or ""), "from_name": name(record["from_name"] or "")},
            to=_addresses(record["to"], email), cc=_addresses(record["cc"], email),
            date=_iso(record["date"]), text=record["text"] if full else MASK,
        )
        messages.append(record)
    return {"tickets": tickets, "messages": messages}


def _addresses(raw: str | None, email) -> list[str]:
    """The stored [{"name", "email"}] list as plain (possibly masked) addresses."""
    out = []
    for item in json.loads(raw or "[]"):
        address = item.get("email", "") if isinstance(item, dict) else str(item)
        out.append(email(address))
    return out


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_json(records: dict[str, list[dict]]) -> str:
    return json.dumps(records, ensure_ascii=False, indent=2) + "\n"


def to_csv(records: dict[str, list[dict]]) -> str:
    """One CSV table; lists are joined with ";", absent columns are empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for kind, rows in (("ticket", records["tickets"]), ("message", records["messages"])):
        for row in rows:
            writer.writerow({"record": kind, **{k: _cell(v) for k, v in row.items()}})
    return out.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Iterable) and not isinstance(value, str):
        return ";".join(str(v) for v in value)
    return str(value)
