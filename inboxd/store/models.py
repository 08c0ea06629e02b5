"""The ticket store's tables, declared once with SQLModel.

Timestamps are timezone-aware UTC datetimes (SQLModel's UTCDateTime refuses
naive ones, which keeps local times out of the store).  Lists and small mappings are JSON text columns,
because they are always read and written whole.  These classes are the
single declaration of the schema: Alembic's migrations are checked against
them (tests/test_db.py), and `scripts/gen_tables` generates from them the
plain SQLAlchemy Core tables of `inboxd.store.tables`, which is what the
runtime uses (the hot ingest path's writes, the CLI's reads, create_all for
a fresh store), so the daemon never imports SQLModel or pydantic.  After
changing anything here, run `scripts/gen_tables` (tests/test_tables_generated.py
fails until the generated tables match).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# IMAP_NUMBER (the type of IMAP UIDs and UIDVALIDITY values) lives in
# inboxd.store.types, which the runtime imports without SQLModel; it is
# re-exported here so `from inboxd.store.models import IMAP_NUMBER` keeps working.
from inboxd.store.types import IMAP_NUMBER  # noqa: F401
from inboxd.vocabulary import DIRECTIONS, KINDS, OUTBOX_STATUSES, PRIORITIES, STATUSES  # noqa: F401


class Ticket(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # The human-friendly id that customers and agents see, e.g. "T-1042".
    ref: str = Field(index=True, unique=True)
    subject: str = ""
    status: str = Field(default="new", index=True)
    priority: str = "normal"
    mailbox: str = Field(index=True)
    requester: str = Field(index=True)
    requester_name: str = ""
    assignee: str | None = Field(default=None, index=True)
    tags: str = "[]"
    message_count: int = 0
    created_at: datetime
    updated_at: datetime = Field(index=True)
    first_response_at: datetime | None = None
    # Bumped on every update so concurrent writers can detect lost updates.
    # (The columns are in the order the migrations made them, so that a store
    # created in one step is the same as a migrated one: tests/test_fresh_store.py.)
    version: int = 1
    closed_at: datetime | None = None
    solved_at: datetime | None = None
    team: str | None = Field(default=None, index=True)
    tier: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    # Escalated tickets are reviewed by a supervisor (`inboxd approve`) before closing.
    escalated: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    approved_by: str | None = None
    # A merged ticket points at the one that absorbed it.
    merged_into: int | None = Field(default=None, foreign_key="ticket.id")
    # Promises: the SLA policy and the due times it gives, recomputed by the
    # scheduler whenever the ticket's version moves past sla_version.
    sla_policy: str | None = None
    first_response_due: datetime | None = Field(default=None, index=True)
    next_response_due: datetime | None = Field(default=None, index=True)
    resolution_due: datetime | None = Field(default=None, index=True)
    sla_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # History: the ticket was made from mail that arrived before its folder's
    # cut-off, so it has no SLA clock, no acknowledgement and no duties.  A
    # customer's live mail on it makes it ordinary work again.
    history: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # Tiers (migration 0014): when the ticket was last escalated, and when the
    # first agent reply after it is due under the policy's tierN_response.
    escalated_at: datetime | None = None
    tier_response_due: datetime | None = Field(default=None, index=True)


class Customer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True)
    name: str = ""
    created_at: datetime
    # Set when mail to the customer bounced permanently: no more auto-replies.
    bouncing: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    bounced_at: datetime | None = None


class RawMessage(SQLModel, table=True):
    """The exact bytes of every message ever fetched, addressed by SHA-256."""

    sha256: str = Field(primary_key=True)
    size: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Message(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # The Message-ID, or "sha256:<hex>" of the raw bytes when the mail has none;
    # this is what makes one mail one row however often it is delivered.
    message_key: str = Field(unique=True, index=True)
    message_id: str | None = Field(default=None, index=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    direction: str = "in"
    kind: str = "customer"
    from_addr: str = ""
    from_name: str = ""
    to_addrs: str = "[]"
    cc_addrs: str = "[]"
    reply_to: str = "[]"
    date: datetime | None = None
    subject: str = ""
    text: str = ""
    reply_text: str = ""
    html_only: bool = False
    in_reply_to: str = "[]"
    references: str = "[]"
    auto: str = "{}"
    raw_sha256: str = Field(foreign_key="rawmessage.sha256")
    size: int = 0
    created_at: datetime


class MessageRef(SQLModel, table=True):
    """Each Message-ID a stored message names in In-Reply-To or References.

    It lets a message that arrives after its own reply join the reply's ticket.
    """

    message_pk: int = Field(foreign_key="message.id", primary_key=True)
    ref: str = Field(primary_key=True, index=True)


class Sighting(SQLModel, table=True):
    """Where a message was seen: mailbox, folder, UIDVALIDITY and UID."""

    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_sighting_place"),
    )
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    mailbox: str
    folder: str
    uidvalidity: int = Field(sa_type=IMAP_NUMBER)
    uid: int = Field(sa_type=IMAP_NUMBER)
    seen_at: datetime


class Checkpoint(SQLModel, table=True):
    """How far a folder has been synced; committed with the messages it covers."""

    mailbox: str = Field(primary_key=True)
    folder: str = Field(primary_key=True)
    uidvalidity: int = Field(sa_type=IMAP_NUMBER)
    last_uid: int = Field(default=0, sa_type=IMAP_NUMBER)
    synced_at: datetime
    # Mail that arrived (IMAP INTERNALDATE) before this instant is history.
    # Set on the folder's first sync and never moved by inboxd afterwards.
    history_before: datetime | None = None
    # The newest UID the server had (UIDNEXT - 1) when the folder was last
    # selected (migration 0016); server_uid - last_uid is the sync lag.
    server_uid: int = Field(default=0, sa_type=IMAP_NUMBER, sa_column_kwargs={"server_default": "0"})


class Skipped(SQLModel, table=True):
    """A server UID that was deliberately not filed, and why (history when
    [mailboxes] history = "skip", our own relayed mail, Sent mail about no
    ticket), so `inboxd audit` can account for every UID on the server."""

    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_skipped_place"),
    )
    id: int | None = Field(default=None, primary_key=True)
    mailbox: str
    folder: str
    uidvalidity: int = Field(sa_type=IMAP_NUMBER)
    uid: int = Field(sa_type=IMAP_NUMBER)
    message_id: str | None = None
    reason: str
    at: datetime


class FolderState(SQLModel, table=True):
    """The health of one folder as its poller last saw it, for `inboxd status`."""

    mailbox: str = Field(primary_key=True)
    folder: str = Field(primary_key=True)
    ok: bool = True
    error: str = ""
    # When the last sync of this folder succeeded, and when the error began.
    last_ok_at: datetime | None = None
    failing_since: datetime | None = None
    owner: str = ""


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    filename: str | None = None
    content_type: str = "application/octet-stream"
    size: int = 0
    sha256: str
    # False when the attachment was over the size limit: metadata only.
    stored: bool = True
    inline: bool = False


class Event(SQLModel, table=True):
    """The audit log: who did what to which ticket, and when."""

    __table_args__ = (Index("ix_event_ticket_at", "ticket_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    at: datetime = Field(index=True)
    actor: str
    action: str
    detail: str = "{}"


class Quarantine(SQLModel, table=True):
    """A message that could not be filed, with its raw bytes and the reason."""

    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_quarantine_place"),
    )
    id: int | None = Field(default=None, primary_key=True)
    mailbox: str
    folder: str
    uidvalidity: int = Field(sa_type=IMAP_NUMBER)
    uid: int = Field(sa_type=IMAP_NUMBER)
    message_id: str | None = None
    reason: str
    # The raw bytes: a rawmessage row, or for mail over max_message_bytes a
    # file under data_dir (raw_path, "oversize/<sha256>.eml"; raw_sha256 NULL).
    raw_sha256: str | None = Field(default=None, foreign_key="rawmessage.sha256")
    at: datetime
    # When the server received it (IMAP INTERNALDATE), so a retry files it
    # with its true time and as history when it arrived before the cut-off.
    arrived_at: datetime | None = None
    # (After arrived_at: the column order of the migrations, see Ticket.version.)
    raw_path: str | None = None




class Outbox(SQLModel, table=True):
    """One outgoing mail, written with the ticket change that caused it.

    The sender claims a row by moving it from queued to sending with a
    compare-and-swap UPDATE; a row left in sending by a crash is offered
    again after the lease, with the same Message-ID.
    """

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),
                      Index("ix_outbox_kind_created", "kind", "created_at"),
                      Index("ix_outbox_copy", "copy_status", "mailbox"),
                      Index("ix_outbox_ack_key", "ack_key", "created_at"),
                      Index("ix_outbox_ack_domain", "ack_domain", "created_at"))
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    mailbox: str
    kind: str                      # ack | relay | reply | notification
    message_id: str = Field(unique=True, index=True)
    sender: str
    recipients: str = "[]"
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = "queued"
    attempts: int = 0
    next_attempt_at: datetime
    claimed_at: datetime | None = None
    last_error: str = ""
    created_at: datetime
    sent_at: datetime | None = None
    # Whether the copy for the mailbox's Sent folder is still to be appended.
    # A poller claims it (pending, or claimed with an expired lease, becomes
    # claimed) before the IMAP APPEND, so two daemons never both append it.
    copy_status: str = "none"      # none | pending | claimed | done
    # For mail composed at send time (acknowledgements): the arguments of
    # inboxd.outbound.compose.compose as JSON; `data` is filled in on the first attempt.
    spec: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # (After spec: the column order of the migrations, see Ticket.version.)
    copy_claimed_at: datetime | None = None
    # For acknowledgements, what the auto-reply budget counts: the recipient
    # without +tag, in lower case, and its domain (inboxd.outbound.outbox.budget_key).
    ack_key: str | None = None
    ack_domain: str | None = None


class Duty(SQLModel, table=True):
    """A scheduled duty done once for a ticket and a target (e.g. the breach
    notice for one due time).  Inserting the row is the claim: the unique key
    makes a second daemon's (or a restart's) attempt a no-op."""

    # The key names the ticket (when there is one) and the target, e.g.
    # "1042:first_response:2026-11-23T10:00:00Z"; (duty, key) is unique.
    __table_args__ = (UniqueConstraint("duty", "key", name="uq_duty_once"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    duty: str
    key: str
    at: datetime


class Csat(SQLModel, table=True):
    """A satisfaction survey sent for a closed ticket, and its answer."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    customer: str = Field(index=True)
    token: str = Field(unique=True, index=True)
    message_id: str
    sent_at: datetime
    # The score, higher is better (see inboxd.desk.csat); None until rated.
    rating: int | None = None
    label: str | None = None
    comment: str | None = None
    # When the customer first replied (a rating, or a comment without one); a later rating moves it.
    answered_at: datetime | None = None
    # Whether the survey's links and text carried scores; False for surveys sent
    # before migration 0013, whose links carry positions (1 = best).
    scored: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class TicketField(SQLModel, table=True):
    """A custom field's value on a ticket (`[[fields]]`, `inboxd set`): one row per ticket and field.

    A table rather than a JSON column on the ticket, so `list --field` and the
    report's breakdowns are plain joins and GROUP BYs on both databases.
    """

    __tablename__ = "ticket_field"
    __table_args__ = (Index("ix_ticket_field_name_value", "name", "value"),)
    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    name: str = Field(primary_key=True)
    value: str
    set_at: datetime
    set_by: str = ""


class ApiToken(SQLModel, table=True):
    """An agent's token for the daemon's API over TCP (`inboxd token create`; migration 0017).

    Only the SHA-256 of the secret is kept: the secret is shown once, when
    the token is made, and a copy of the store gives nobody a usable token.
    """

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    agent: str = Field(index=True)
    label: str = ""
    # Hex SHA-256 of the secret (inboxd.desk.tokens.hash_secret); a request finds its token by it.
    secret_hash: str = Field(unique=True, index=True)
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    # Moved at most once a minute (inboxd.store.tokens.touch), so reads stay reads.
    last_used_at: datetime | None = None


class Lease(SQLModel, table=True):
    """Which daemon syncs a folder: one holder at a time, until expires_at.

    A daemon takes a folder's lease before syncing it and renews it while it
    works (inboxd.store.leases); another daemon takes it over only once it has
    expired, so several daemons share one store without syncing a folder twice.
    """

    mailbox: str = Field(primary_key=True)
    folder: str = Field(primary_key=True)
    # Who holds it: "host:pid", plus what tells a dead process on the same machine.
    holder: str
    expires_at: datetime


class Counter(SQLModel, table=True):
    """A named number that only grows: on SQLite, the last ticket number
    handed out ("ticket_number"; see inboxd.store.counters).  PostgreSQL
    keeps that number in the sequence below instead, so the row is absent there."""

    name: str = Field(primary_key=True)
    value: int = Field(sa_type=sa.BigInteger())


class Writeback(SQLModel, table=True):
    """What inboxd last wrote to one message on the server (migration 0018; inboxd.store.writeback).

    A message is looked at again only when its ticket moved past `version`,
    its overdue state differs from `overdue`, or the mode changed, so a
    restart rewrites nothing.  `keywords` are ours only (JSON list); `seen`
    is None until seen_on_close wrote \\Seen.
    """

    mailbox: str = Field(primary_key=True)
    folder: str = Field(primary_key=True)
    uidvalidity: int = Field(primary_key=True, sa_type=IMAP_NUMBER)
    uid: int = Field(primary_key=True, sa_type=IMAP_NUMBER)
    ticket_id: int
    version: int
    mode: str = ""
    overdue: bool = False
    keywords: str = "[]"
    seen: bool | None = None
    written_at: datetime


class WritebackFolder(SQLModel, table=True):
    """What a folder allows inboxd to write, as its last read-write SELECT said, and the write count."""

    __tablename__ = "writeback_folder"
    mailbox: str = Field(primary_key=True)
    folder: str = Field(primary_key=True)
    # PERMANENTFLAGS had \* (new keywords kept), \Seen, and the server is Gmail (X-GM-EXT-1).
    keywords: bool = True
    seen: bool = True
    gmail: bool = False
    checked_at: datetime
    # STORE commands sent for this folder, ever (a restart that rewrites nothing leaves it).
    stores: int = Field(default=0, sa_type=sa.BigInteger())
    error: str = ""


class ReportRollup(SQLModel, table=True):
    """One complete day's share of a report figure (migration 0019; inboxd.store.rollups, inboxd.reports.rollups).

    `fingerprint` names what the figure depends on (the reporting time zone, the rollup format), `day` is the
    local midnight starting the day, as a UTC instant, and `data` the figure as JSON.  `watermark` is the newest
    event id when the row was written: an event after it dated inside the day makes the row stale.
    """

    __tablename__ = "report_rollup"
    fingerprint: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    day: datetime = Field(primary_key=True)
    data: str = Field(sa_column=Column(Text, nullable=False))
    watermark: int = Field(sa_type=sa.BigInteger())
    computed_at: datetime


# PostgreSQL's ticket numbers (inboxd.store.counters); SQLite has no sequences
# and ignores it.  Migration 0012 creates it; Alembic does not compare sequences.
# scripts/gen_tables writes it, under the same name, into inboxd.store.tables.
TICKET_NUMBER = sa.Sequence("ticket_number", metadata=SQLModel.metadata)


# The events that can change a ticket's status (inboxd.desk.history.status_after): a merge, an
# auto-close, or any event whose detail names a status.  The report's status history reads them
# through this partial index (migration 0020); its query repeats the condition word for word
# (inboxd.store.reports), which is what lets SQLite and PostgreSQL use the index.
STATUS_CHANGE = "action IN ('merge', 'autoclose') OR detail LIKE '%status%'"
Index("ix_event_status_change", Event.__table__.c.ticket_id, Event.__table__.c.at,
      sqlite_where=sa.text(STATUS_CHANGE), postgresql_where=sa.text(STATUS_CHANGE))
# The agents' messages by ticket, which the report counts per resolved ticket (first-contact resolution)
# without reading the messages (migration 0020; inboxd.store.reports.agent_reply_counts_query).
AGENT_MESSAGE = "kind = 'agent'"
Index("ix_message_agent", Message.__table__.c.ticket_id,
      sqlite_where=sa.text(AGENT_MESSAGE), postgresql_where=sa.text(AGENT_MESSAGE))


class ReportTicket(SQLModel, table=True):
    """One ticket's status changes as the report reads them (migration 0021; inboxd.reports.tickets).

    `data` is JSON: the format, the ticket's creation and each status change the events make, instants in
    microseconds since the epoch.  `version` is the ticket's version and `watermark` the newest event id
    when the row was written: a row whose ticket has another version, or a status event after the
    watermark, is not used.  Safe to empty: a ticket without a current row is read from its events.
    """

    __tablename__ = "report_ticket"
    ticket_id: int = Field(sa_column=Column(sa.Integer, primary_key=True, autoincrement=False))
    version: int
    watermark: int = Field(sa_type=sa.BigInteger())
    data: str = Field(sa_column=Column(Text, nullable=False))
    computed_at: datetime
