"""Step 5: our own outgoing mail as outbox rows, written in the caller's transaction.

Nothing is ever sent from here.  `queue` is the one way out for every mail
inboxd writes (acknowledgements, relayed answers, agents' replies,
notifications, digests, surveys, escalation notices, the weekly report): it
composes the mail, with its loop headers, and writes it to the `outbox`
table on the connection of the transaction that changes the ticket, so the
change and the mail it causes are committed together or not at all.
`inboxd.outbound.sender` drains the table.  The rest answers what the auto-reply
budget and bounce handling ask about mail already queued.  The SQL is in
`inboxd.store.outbox`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from inboxd.outbound.compose import InlineImage, Outgoing, compose, display_name, new_message_id, tagged_subject
from inboxd.config import MailboxSettings
from inboxd.store import outbox as store
from inboxd.outbound.loop import AUTO_REPLIED, loop_header_value
from inboxd.outbound.templates import Templates
from inboxd.desk.threads import TicketTag


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


def load_ticket(conn: Connection, pk: int) -> TicketView:
    return load_ticket_and_promise(conn, pk)[0]


def load_ticket_and_promise(conn: Connection, pk: int) -> tuple[TicketView, str | None, datetime | None]:
    """The ticket as a mail about it sees it, with its SLA policy and first response due, in one read
    (an acknowledgement publishes the promise)."""
    row = store.ticket_for_mail(conn, pk)
    return TicketView(*row[:7], created_at=_template_time(row[7])), row[8], row[9]


def _template_time(at: datetime) -> str:
    # Templates have always been given the time as the store wrote it on
    # SQLite ("2026-11-23 09:30:00.000000", UTC), whatever the database.
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def thread_ids(conn: Connection, ticket_pk: int) -> tuple[str | None, list[str]]:
    """(the newest customer Message-ID, every Message-ID of the thread in order)."""
    rows = store.thread_message_ids(conn, ticket_pk)
    parent = next((mid for mid, kind in reversed(rows) if kind == "customer"), None)
    return parent, [mid for mid, _ in rows]


def unique_token() -> str:
    return secrets.token_hex(8)


def queue(
    conn: Connection,
    *,
    kind: str,
    mailbox: MailboxSettings,
    ticket_pk: int | None,
    ref: str | None,
    to: Sequence[tuple[str, str]],
    subject: str,
    text: str,
    html: str | None = None,
    images: Sequence[InlineImage] = (),
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    automatic: str | None,
    from_name: str | None = None,
    reply_to: str | None = None,
    message_id: str | None = None,
    now: datetime,
    sent_copy: bool,
    record_on_ticket: str | None = None,
    compose_at_send: bool = False,
) -> str:
    """Queue one mail of ours from `mailbox` in the caller's transaction; returns its Message-ID.

    This is the one way out for every mail inboxd writes itself.  `kind`
    names it in the outbox ("ack", "relay", "reply", "notification",
    "digest", "report", or the template of a customer mail such as "csat").
    `ref` is the ticket the Message-ID names, so a reply to the mail finds
    its ticket (None for mail about no one ticket: the kind is named
    instead); `message_id` replaces the generated id where the caller needs
    a stable one.  `automatic` is the Auto-Submitted keyword of automatic
    mail (inboxd.outbound.loop.AUTO_REPLIED or AUTO_GENERATED), None for a person's
    mail; the loop headers follow from it in inboxd.outbound.compose.  The From name
    is the mailbox's display name unless `from_name` says otherwise.

    `sent_copy` puts a copy in the mailbox's Sent folder once sent;
    `record_on_ticket` (a message kind: "auto", "agent") also records the
    mail on the ticket's thread.  With `compose_at_send` only the mail's
    description is stored and the sender builds the bytes on its first
    attempt (see compose_spec), which keeps filing an acknowledgement cheap.
    """
    spec = {
        "mailbox_address": mailbox.address,
        "from_name": from_name if from_name is not None else mailbox.display_name,
        "to": [[name, address] for name, address in to],
        "subject": subject,
        "text": text,
        "html": html,
        "message_id": message_id or new_message_id(ref or kind, mailbox.domain, unique=unique_token()),
        "in_reply_to": in_reply_to,
        "references": list(references),
        "automatic": automatic,
        "loop_value": loop_header_value(mailbox.address),
        "extra_headers": {"Reply-To": reply_to} if reply_to else {},
        "now": now.isoformat(),
    }
    if compose_at_send:
        if images:
            raise ValueError("a mail with images is composed when it is queued")
        described = json.dumps(spec, ensure_ascii=False)
        mail = Outgoing(spec["message_id"], mailbox.address, _recipients(to), described.encode())
        data, stored_spec = b"", described
    else:
        mail = _compose(spec, images)
        data, stored_spec = mail.data, None
    # An acknowledgement is counted by the auto-reply budget (see ack_counts).
    key, domain = budget_key(mail.recipients[0]) if kind == "ack" and mail.recipients else (None, None)
    store.add(conn, ticket_id=ticket_pk, mailbox=mailbox.name, kind=kind, message_id=mail.message_id,
              sender=mail.sender, recipients=json.dumps(list(mail.recipients)), data=data, spec=stored_spec,
              copy_status="pending" if sent_copy and mailbox.imap.sent_folder else "none",
              ack_key=key, ack_domain=domain, now=now)
    if record_on_ticket is not None:
        if ticket_pk is None:
            raise ValueError(f"a {kind} mail about no ticket cannot be recorded on one")
        store_outgoing(conn, ticket_pk, mail, kind=record_on_ticket, now=now, subject=subject, text=text,
                       in_reply_to=in_reply_to)
    return mail.message_id


def compose_spec(spec_json: str) -> Outgoing:
    """The mail a row queued with `compose_at_send` describes (ValueError for an unusable address)."""
    spec = json.loads(spec_json)
    # Rows queued before the loop headers were chosen by name said only whether the mail was automatic.
    if "auto_reply" in spec:
        spec["automatic"] = AUTO_REPLIED if spec.pop("auto_reply") else None
    return _compose(spec)


def _compose(spec: dict, images: Sequence[InlineImage] = ()) -> Outgoing:
    args = dict(spec, now=datetime.fromisoformat(spec["now"]), to=[tuple(pair) for pair in spec["to"]])
    return compose(**args, images=images)


def _recipients(to: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """The envelope recipients of `to`, each once whatever its case (as compose() gives them)."""
    seen: dict[str, str] = {}
    for _name, address in to:
        seen.setdefault(address.lower(), address)
    return tuple(seen.values())


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


def ack_counts(conn: Connection, address: str, now: datetime, *, count_domain: bool = True) -> AckCounts:
    """What the auto-reply budget needs to know about `address`: two indexed lookups."""
    key, domain = budget_key(address)
    in_day, in_hour = store.acks_to_address(conn, key, now)
    in_domain_hour = in_domain_minute = 0
    if count_domain:
        in_domain_hour, in_domain_minute = store.acks_to_domain(conn, domain, now)
    return AckCounts(in_hour, in_day, in_domain_minute, in_domain_hour)


def bouncing_since(conn: Connection, address: str, now: datetime, expiry: timedelta) -> datetime | None:
    """When mail to `address` last bounced for good, while that mark is in force (within `expiry`)."""
    return store.bounced_at(conn, address, now - expiry)


def sent_to(conn: Connection, message_id: str | None) -> tuple[str, ...] | None:
    """The recipients of the mail we sent with `message_id`, or None when we sent no such mail.

    A mail counts once it was handed to a server, or may have been (sent, or
    left in sending by a crash); a queued or refused one cannot bounce.
    """
    if not message_id:
        return None
    recipients = store.recipients_of_sent(conn, message_id.strip().strip("<>"))
    return tuple(address.lower() for address in json.loads(recipients)) if recipients is not None else None


def ack_content(
    templates: Templates,
    tags: TicketTag,
    mailbox: MailboxSettings,
    ticket: TicketView,
    *,
    sla: dict | None = None,
    template: str = "ack",
    language: str | None = None,
) -> tuple[str, str, str | None]:
    """The acknowledgement of a new ticket, rendered from the mailbox's templates:
    (the tagged subject, the text, the HTML or None).  `language` is the
    customer's (inboxd.desk.language), by default the mailbox's."""
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
    subject, text, html = templates.render_ack(variables, mailbox=mailbox.name,
                                               language=language or mailbox.language, name=template)
    return tagged_subject(subject, ticket.ref, tags), text, html


def store_outgoing(conn: Connection, ticket_pk: int, mail: Outgoing, *, kind: str, now: datetime,
                   subject: str, text: str, in_reply_to: str | None, key: str | None = None) -> None:
    """Our own mail (or an internal note) joins the ticket's thread, so replies to it find the ticket.

    For a mail composed at send time, `mail.data` is its JSON description; for
    a note, the note's text, `mail.message_id` is empty and `key` names it.
    Outgoing mail is recorded by `queue`; workflow.note records notes.
    """
    store.add_outgoing_message(
        conn, ticket_pk, message_key=key or mail.message_id, message_id=mail.message_id or None, kind=kind,
        sender=mail.sender, to_addrs=json.dumps([{"name": "", "email": r} for r in mail.recipients]),
        subject=subject, text=text, in_reply_to=json.dumps([in_reply_to] if in_reply_to else []),
        data=mail.data, now=now)


def queue_many(conn: Connection, mails: Sequence[dict]) -> list[str]:
    """`queue` for many mails at once, in one statement; their Message-IDs, in order.

    Each of `mails` is a dict of `queue`'s keyword arguments, and its row is
    the one `queue` writes for them.  The scheduler queues its alerts this
    way, a batch at a time: a statement per alert was most of a busy pass
    on PostgreSQL.  Mail composed at send time, with images or recorded on
    the ticket is queued one at a time by `queue`.
    """
    rows, ids = [], []
    for m in mails:
        if m.get("images") or m.get("compose_at_send") or m.get("record_on_ticket") is not None:
            raise ValueError("queue_many takes plain mail: images, compose_at_send and record_on_ticket need queue")
        mailbox, to, kind, ref, now = m["mailbox"], m["to"], m["kind"], m["ref"], m["now"]
        from_name, reply_to = m.get("from_name"), m.get("reply_to")
        spec = {
            "mailbox_address": mailbox.address,
            "from_name": from_name if from_name is not None else mailbox.display_name,
            "to": [[name, address] for name, address in to],
            "subject": m["subject"],
            "text": m["text"],
            "html": m.get("html"),
            "message_id": m.get("message_id") or new_message_id(ref or kind, mailbox.domain, unique=unique_token()),
            "in_reply_to": m.get("in_reply_to"),
            "references": list(m.get("references", ())),
            "automatic": m["automatic"],
            "loop_value": loop_header_value(mailbox.address),
            "extra_headers": {"Reply-To": reply_to} if reply_to else {},
            "now": now.isoformat(),
        }
        mail = _compose(spec)
        key, domain = budget_key(mail.recipients[0]) if kind == "ack" and mail.recipients else (None, None)
        rows.append(dict(ticket_id=m["ticket_pk"], mailbox=mailbox.name, kind=kind, message_id=mail.message_id,
                         sender=mail.sender, recipients=json.dumps(list(mail.recipients)), data=mail.data, spec=None,
                         copy_status="pending" if m["sent_copy"] and mailbox.imap.sent_folder else "none",
                         ack_key=key, ack_domain=domain, now=now))
        ids.append(mail.message_id)
    store.add_many(conn, rows)
    return ids
