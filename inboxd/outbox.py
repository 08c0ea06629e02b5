"""Step 5: outgoing mail as outbox rows, written in the caller's transaction.

Nothing is ever sent from here.  Each function composes one mail (an
acknowledgement, a relayed agent reply) and writes it to the `outbox` table
on the cursor of the transaction that changes the ticket, so the change and
the mail it causes are committed together or not at all.  `inboxd.sender`
drains the table.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from inboxd.compose import Outgoing, compose, display_name, new_message_id, tagged_subject
from inboxd.config import MailboxSettings, Settings
from inboxd.db import MESSAGE_ORDER, db_time
from inboxd.rules import loop_header_value
from inboxd.templates import Templates
from inboxd.threading import TicketTag


@dataclass(frozen=True)
class TicketView:
    """What composing needs to know about a ticket."""

    pk: int
    ref: str
    subject: str
    status: str
    priority: str
    requester: str
    requester_name: str
    created_at: str


def load_ticket(cur: sqlite3.Cursor, pk: int) -> TicketView:
    row = cur.execute(
        "SELECT id, ref, subject, status, priority, requester, requester_name, created_at FROM ticket WHERE id = ?",
        (pk,),
    ).fetchone()
    return TicketView(*row)


def thread_ids(cur: sqlite3.Cursor, ticket_pk: int) -> tuple[str | None, list[str]]:
    """(the newest customer Message-ID, every Message-ID of the thread in order)."""
    rows = cur.execute(
        "SELECT message_id, kind FROM message WHERE ticket_id = ? AND message_id IS NOT NULL"
        f" ORDER BY {MESSAGE_ORDER}, id",
        (ticket_pk,),
    ).fetchall()
    parent = next((mid for mid, kind in reversed(rows) if kind == "customer"), None)
    return parent, [mid for mid, _ in rows]


def unique_token() -> str:
    return secrets.token_hex(8)


def enqueue(
    cur: sqlite3.Cursor,
    *,
    ticket_pk: int | None,
    mailbox: MailboxSettings,
    kind: str,
    mail: Outgoing,
    now: datetime,
    sent_copy: bool,
) -> int:
    """Write one outbox row; returns its id."""
    cur.execute(
        "INSERT INTO outbox (ticket_id, mailbox, kind, message_id, sender, recipients, data, status, attempts,"
        " next_attempt_at, last_error, created_at, copy_status)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, '', ?, ?)",
        (ticket_pk, mailbox.name, kind, mail.message_id, mail.sender, json.dumps(list(mail.recipients)),
         mail.data, db_time(now), db_time(now), "pending" if sent_copy and mailbox.imap.sent_folder else "none"),
    )
    return cur.lastrowid


def budget_key(address: str) -> tuple[str, str]:
    """The address as the auto-reply budget counts it, and its domain.

    "Bot+7@Bots.Example" counts as "bot@bots.example" at "bots.example": the
    +tag goes (every major provider delivers bot+7@ to bot@) and the local
    part is case-folded like the domain (RFC 5321 lets a server tell Bot@
    from bot@; none does, and each spelling must not get a budget of its own).
    """
    local, _, domain = address.strip().rpartition("@")
    return f"{local.split('+', 1)[0].casefold()}@{domain.lower()}", domain.lower()


@dataclass(frozen=True)
class AckCounts:
    """Acknowledgements that went (or are queued) to one sender, by window."""

    address_hour: int    # to the sender's address (any +tag, any case) in the last hour
    address_day: int     # ... in the last 24 hours
    domain_minute: int   # to any address at the sender's domain in the last minute
    domain_hour: int     # ... in the last hour


def ack_counts(cur: sqlite3.Cursor, address: str, now: datetime, *, count_domain: bool = True) -> AckCounts:
    """What the auto-reply budget needs to know about `address`: two indexed lookups."""
    key, domain = budget_key(address)
    day, hour, minute = (db_time(now - span) for span in
                         (timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)))
    in_day, in_hour = cur.execute(
        "SELECT count(*), coalesce(sum(created_at >= ?), 0) FROM outbox WHERE ack_key = ? AND created_at >= ?",
        (hour, key, day)).fetchone()
    in_domain_hour = in_domain_minute = 0
    if count_domain:
        in_domain_hour, in_domain_minute = cur.execute(
            "SELECT count(*), coalesce(sum(created_at >= ?), 0) FROM outbox WHERE ack_domain = ? AND created_at >= ?",
            (minute, domain, hour)).fetchone()
    return AckCounts(in_hour, in_day, in_domain_minute, in_domain_hour)


def bouncing_since(cur: sqlite3.Cursor, address: str, now: datetime, expiry: timedelta) -> str | None:
    """When mail to `address` last bounced for good, while that mark is in force (within `expiry`)."""
    row = cur.execute("SELECT bounced_at FROM customer WHERE email = ? AND bouncing = 1 AND bounced_at > ?",
                      (address, db_time(now - expiry))).fetchone()
    return row[0] if row else None


def sent_to(cur: sqlite3.Cursor, message_id: str | None) -> tuple[str, ...] | None:
    """The recipients of the mail we sent with `message_id`, or None when we sent no such mail.

    A mail counts once it was handed to a server, or may have been (sent, or
    left in sending by a crash); a queued or refused one cannot bounce.
    """
    if not message_id:
        return None
    row = cur.execute("SELECT recipients FROM outbox WHERE message_id = ? AND status IN ('sent', 'sending')",
                      (message_id.strip().strip("<>"),)).fetchone()
    return tuple(address.lower() for address in json.loads(row[0])) if row else None


def ack_mail(
    settings: Settings,
    templates: Templates,
    tags: TicketTag,
    mailbox: MailboxSettings,
    ticket: TicketView,
    *,
    in_reply_to: str | None,
    now: datetime,
    sla: dict | None = None,
    template: str = "ack",
) -> dict:
    """The acknowledgement of a new ticket, rendered from the mailbox's templates,
    as the arguments of `compose` (see `enqueue_spec`)."""
    variables = {
        "ticket": {
            "id": ticket.ref, "tag": tags.tag(ticket.ref), "subject": ticket.subject, "status": ticket.status,
            "priority": ticket.priority, "created_at": ticket.created_at,
        },
        # The name as the To header gives it (a customer's name can be any length).
        "customer": {"name": display_name(ticket.requester_name), "email": ticket.requester},
        "mailbox": {"name": mailbox.name, "address": mailbox.address, "display_name": mailbox.display_name},
        # The first-response promise, published when an SLA applies.
        "sla": sla or {"first_response": None, "first_response_due": None},
    }
    subject, text, html = templates.render_ack(variables, mailbox=mailbox.name, language=mailbox.language,
                                               name=template)
    return {
        "mailbox_address": mailbox.address,
        "from_name": mailbox.display_name,
        "to": [(ticket.requester_name, ticket.requester)],
        "subject": tagged_subject(subject, ticket.ref, tags),
        "text": text,
        "html": html,
        "message_id": new_message_id(ticket.ref, mailbox.domain, unique=unique_token()),
        "in_reply_to": in_reply_to,
        "references": [in_reply_to] if in_reply_to else [],
        "auto_reply": True,
        "loop_value": loop_header_value(mailbox.address),
        "now": now.isoformat(),
    }


def enqueue_spec(cur: sqlite3.Cursor, *, ticket_pk: int | None, mailbox: MailboxSettings, kind: str, spec: dict,
                 now: datetime, sent_copy: bool) -> int:
    """Queue a mail whose bytes the sender composes on its first attempt.

    Everything that decides the mail (recipients, subject, text, Message-ID,
    threading headers, Date) is fixed here, in the ticket's transaction;
    building the MIME bytes is the expensive part and waits for the sender,
    which stores them so every retry sends the very same bytes.
    """
    recipients = list(dict.fromkeys(address for _name, address in spec["to"]))
    # An acknowledgement is counted by the auto-reply budget (see ack_counts).
    key, domain = budget_key(recipients[0]) if kind == "ack" and recipients else (None, None)
    cur.execute(
        "INSERT INTO outbox (ticket_id, mailbox, kind, message_id, sender, recipients, data, status, attempts,"
        " next_attempt_at, last_error, created_at, copy_status, spec, ack_key, ack_domain)"
        " VALUES (?, ?, ?, ?, ?, ?, x'', 'queued', 0, ?, '', ?, ?, ?, ?, ?)",
        (ticket_pk, mailbox.name, kind, spec["message_id"], spec["mailbox_address"], json.dumps(recipients),
         db_time(now), db_time(now), "pending" if sent_copy and mailbox.imap.sent_folder else "none",
         json.dumps(spec, ensure_ascii=False), key, domain),
    )
    return cur.lastrowid


def compose_spec(spec_json: str) -> Outgoing:
    """The mail an `enqueue_spec` row describes (ValueError for an unusable address)."""
    spec = json.loads(spec_json)
    spec["now"] = datetime.fromisoformat(spec["now"])
    spec["to"] = [tuple(pair) for pair in spec["to"]]
    return compose(**spec)


def relay_mail(
    tags: TicketTag,
    mailbox: MailboxSettings,
    ticket: TicketView,
    *,
    agent_name: str,
    text: str,
    in_reply_to: str | None,
    references: list[str],
    now: datetime,
) -> Outgoing:
    """An agent's emailed answer, sent on to the customer from the shared address."""
    return compose(
        mailbox_address=mailbox.address,
        from_name=f"{agent_name} via {mailbox.display_name}",
        to=[(ticket.requester_name, ticket.requester)],
        subject=tagged_subject(ticket.subject, ticket.ref, tags),
        text=text,
        message_id=new_message_id(ticket.ref, mailbox.domain, unique=unique_token()),
        in_reply_to=in_reply_to,
        references=references,
        loop_value=loop_header_value(mailbox.address),
        now=now,
    )


def store_outgoing(cur: sqlite3.Cursor, ticket_pk: int, mail: Outgoing, *, kind: str, now: datetime,
                   subject: str, text: str, in_reply_to: str | None, key: str | None = None) -> None:
    """Our own mail (or an internal note) joins the ticket's thread, so replies to it find the ticket.

    For a mail composed at send time, `mail.data` is its JSON description; for
    a note, the note's text, `mail.message_id` is empty and `key` names it.
    """
    digest = hashlib.sha256(mail.data).hexdigest()
    cur.execute("INSERT OR IGNORE INTO rawmessage (sha256, size, data) VALUES (?, ?, ?)",
                (digest, len(mail.data), mail.data))
    cur.execute(
        "INSERT INTO message (message_key, message_id, ticket_id, direction, kind, from_addr, from_name, to_addrs,"
        " cc_addrs, reply_to, date, subject, text, reply_text, html_only, in_reply_to, \"references\", auto,"
        " raw_sha256, size, created_at)"
        " VALUES (?, ?, ?, 'out', ?, ?, '', ?, '[]', '[]', ?, ?, ?, ?, 0, ?, '[]', '{}', ?, ?, ?)",
        (key or mail.message_id, mail.message_id or None, ticket_pk, kind, mail.sender,
         json.dumps([{"name": "", "email": r} for r in mail.recipients]), db_time(now), subject,
         text, text, json.dumps([in_reply_to] if in_reply_to else []), digest, len(mail.data), db_time(now)),
    )
    cur.execute("UPDATE ticket SET message_count = message_count + 1 WHERE id = ?", (ticket_pk,))
