"""Open a ticket by hand (`inboxd new`): a phone call or a walk-in, typed in by an agent.

The ticket takes the path a customer's first mail takes, so it gets the
same routing rules, SLA clock, acknowledgement (with the auto-reply loop
rules and budget) and notifications: the agent's text becomes a message
from the requester (kind "customer", written down by the agent), a small
RFC 5322 mail built here, and runs through the ingest pipeline's decide
stage (`inboxd.desk.decide`) and its apply steps (`inboxd.desk.apply`).
What differs is said in `HAND_STEPS`: no IMAP place (no sighting), the
`created` event names the agent and `via = "cli"`, `--no-ack` suppresses
the acknowledgement (recorded as a no-ack event), and the agent's
priority and assignee are applied before the SLA clock and the
acknowledgement, so the promise the customer reads is the one that holds.

The acknowledgement goes through the outbox with its own Message-ID,
recorded on the ticket, so the customer's answer to it threads onto the
ticket like any reply.
"""

from __future__ import annotations

import email.policy
import email.utils
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import Connection, Engine

from inboxd.config import EMAIL, AgentSettings, Settings
from inboxd.desk.apply import acknowledge, clock, notify_agents, open_or_update_ticket, route, store_message
from inboxd.desk.decide import Ack, Done, Quarantined
from inboxd.desk.ingest import Delivery, Filer, decide_disposition, keep_raw, parse
from inboxd.desk.workflow import WorkflowError
from inboxd.store import filing
from inboxd.store import tickets as store_tickets
from inboxd.store.engine import writing
from inboxd.vocabulary import PRIORITIES

# The folder a hand-made message is "in": not a real one, and never the Sent folder.
HAND_FOLDER = "(inboxd new)"


@dataclass(frozen=True)
class HandTicket:
    """What the agent typed in."""

    mailbox: str
    requester: str
    name: str
    subject: str
    text: str
    ack: bool = True
    priority: str | None = None
    assignee: str | None = None


@dataclass
class HandDelivery(Delivery):
    """A Delivery with the agent's own settings for the ticket."""

    form: HandTicket | None = None
    # How the agent opened it (inboxd.api.identity.Caller.detail); recorded with the agent's choices.
    source: dict | None = None


def hand_mail(form: HandTicket, address: str, domain: str, now: datetime) -> bytes:
    """The agent's text as a mail from the requester to the mailbox (what the store keeps as its raw bytes)."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((form.name, form.requester))
    msg["To"] = address
    msg["Subject"] = form.subject
    msg["Date"] = email.utils.format_datetime(now)
    # Not of inboxd's "inboxd.<ticket>.<token>@" form: the loop rules would take it for our own mail.
    msg["Message-ID"] = f"<desk-new.{secrets.token_hex(12)}@{domain}>"
    msg["X-Inboxd-Via"] = "cli"
    msg.set_content(form.text if form.text.endswith("\n") else form.text + "\n")
    return msg.as_bytes()


def only_new(filer: Filer, conn: Connection, d: HandDelivery) -> None:
    """A hand-made ticket is a new one: a subject naming a ticket would add to it instead, so refuse."""
    choice = d.disposition.ticket
    if not choice.is_new:
        raise WorkflowError(f"the subject names ticket {choice.ref}; add to it with `inboxd note {choice.ref}`"
                            " or change the subject")
    notify = d.disposition.notify
    assignee = filer.settings.agent(d.form.assignee) if d.form.assignee else None
    if assignee is not None:
        # An assigned ticket is its assignee's news, not the team's; nobody is told what they typed themselves.
        notify = (assignee.name,) if assignee.notify != "none" else ()
    d.disposition = replace(d.disposition, notify=tuple(n for n in notify if n != d.opened_by))
    if not d.form.ack and d.disposition.ack is not None:
        d.disposition = replace(d.disposition, ack=Ack(False, rule="cli", reason="opened with --no-ack"))


def agent_choices(filer: Filer, conn: Connection, d: HandDelivery) -> None:
    """The priority and assignee the agent chose, over the routing rules', before the clock and the ack."""
    form = d.form
    if not (form.priority or form.assignee):
        return
    changes = store_tickets.set_by_hand(conn, d.ticket_pk, priority=form.priority, assignee=form.assignee,
                                        now=d.now)
    if changes:
        filing.add_event(conn, d.ticket_pk, d.now, d.opened_by, "set", {"via": "cli", "changes": changes, **(d.source or {})})


HAND_STEPS: tuple[Callable[[Filer, Connection, Delivery], None], ...] = (
    # Take the typed-in mail in: its bytes kept, parsed.
    keep_raw,
    parse,
    # Decide as for mail, then the agent's own choices.
    decide_disposition,
    only_new,
    # Apply, as ingest does, without an IMAP place.
    open_or_update_ticket,
    store_message,
    route,
    agent_choices,
    clock,
    acknowledge,
    notify_agents,
)


def open_ticket(engine: Engine, settings: Settings, form: HandTicket, actor: AgentSettings, now: datetime,
                source: dict | None = None) -> str:
    """Open the ticket in one write transaction; returns its ref.  Refusals are WorkflowErrors."""
    try:
        mailbox = settings.mailbox(form.mailbox)
    except LookupError as exc:
        raise WorkflowError(str(exc)) from None
    if not EMAIL.fullmatch(form.requester):
        raise WorkflowError(f"--requester: expected an email address, got {form.requester!r}")
    if form.priority is not None and form.priority not in PRIORITIES:
        raise WorkflowError(f"unknown priority {form.priority!r}; use one of {', '.join(PRIORITIES)}")
    if form.assignee is not None and settings.agent(form.assignee) is None:
        raise WorkflowError(f"unknown agent {form.assignee!r}; known agents: "
                            f"{', '.join(a.name for a in settings.agents)}")
    if not form.subject.strip():
        raise WorkflowError("a ticket needs a subject (--subject TEXT)")
    if not form.text.strip():
        raise WorkflowError("a ticket needs the customer's request (-m TEXT)")
    if form.requester.lower() in {a.lower() for a in settings.own_addresses()}:
        raise WorkflowError(f"{form.requester} is one of our own addresses, not a customer")
    filer = Filer(settings)
    raw = hand_mail(form, mailbox.address, mailbox.domain, now)
    d = HandDelivery(form.mailbox, HAND_FOLDER, 0, 0, raw, now, at=now, opened_by=actor.name, form=form,
                     source=source)
    with writing(engine) as conn:
        filing.serialize_filing(conn)
        try:
            for step in HAND_STEPS:
                step(filer, conn, d)
        except (Done, Quarantined) as exc:
            raise WorkflowError(f"cannot open a ticket from this: {exc}") from None
        if source:
            # Who opened it by hand, how and from where, beside the "created" event of the mail it became.
            filing.add_event(conn, d.ticket_pk, now, actor.name, "opened", dict(source))
    return d.ticket_ref
