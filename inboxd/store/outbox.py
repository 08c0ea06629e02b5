"""The outbox table: queueing our own mail, claiming it for sending, and recording how it went.

Every statement here is SQLAlchemy Core over `t.outbox` (plus the ticket,
message, customer and event rows an outgoing mail touches), so it runs on
SQLite and PostgreSQL alike.  Times are aware UTC datetimes through the
columns' UTCDateTime type.

The sender's claims are compare-and-swap UPDATEs: a row moves from queued
(or sending with an expired lease) to sending only if it still is due when
the UPDATE writes it, and `attempts` grows with every claim, so an outcome
is recorded only by the sender whose claim it still is.  On PostgreSQL the
re-check must be in the UPDATE's own WHERE: the subquery that picks the
candidate is evaluated once, and only the outer WHERE is re-checked on a
row another claim changed meanwhile (without it two senders claimed the same
row; tests/test_outbox_pg.py races them).  The candidate is also locked with
FOR UPDATE SKIP LOCKED, so two senders claiming at once get different rows
rather than one of them none.  SQLite's BEGIN IMMEDIATE serialises claims.

The statements run for every mail (the sender's, the budget's) are built
once, with named parameters: building one costs more than running it on
SQLite.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, Engine, Row, and_, bindparam, case, func, insert, or_, select, union_all, update

from inboxd.store import filing
from inboxd.store.filing import Prepared, PreparedIn
from inboxd.store.sql import message_order, t

# What the sender needs of a claimed row.
_CLAIMED = (t.outbox.c.id, t.outbox.c.ticket_id, t.outbox.c.mailbox, t.outbox.c.message_id, t.outbox.c.sender,
            t.outbox.c.recipients, t.outbox.c.data, t.outbox.c.attempts, t.outbox.c.created_at, t.outbox.c.spec)


# -- queueing ---------------------------------------------------------------------

# Every mail inboxd writes passes here, an acknowledgement inside filing a
# new ticket: these statements are compiled once and run on the driver's
# cursor (`filing.Prepared`), which costs a tenth of `Connection.execute`.
_ADD_COLUMNS = ("ticket_id", "mailbox", "kind", "message_id", "sender", "recipients", "data", "status", "attempts",
                "next_attempt_at", "last_error", "created_at", "copy_status", "spec", "ack_key", "ack_domain")
_ADD = Prepared(insert(t.outbox).inline(), _ADD_COLUMNS)
_MESSAGE_COLUMNS = ("message_key", "message_id", "ticket_id", "direction", "kind", "from_addr", "from_name",
                    "to_addrs", "cc_addrs", "reply_to", "date", "subject", "text", "reply_text", "html_only",
                    "in_reply_to", "references", "auto", "raw_sha256", "size", "created_at")
_ADD_MESSAGE = Prepared(insert(t.message).inline(), _MESSAGE_COLUMNS)
_COUNT_MESSAGE = Prepared(update(t.ticket).where(t.ticket.c.id == bindparam("pk"))
                          .values(message_count=t.ticket.c.message_count + 1))
_tk = t.ticket.c
_TICKET_FOR_MAIL = Prepared(select(_tk.id, _tk.ref, _tk.subject, _tk.status, _tk.priority, _tk.requester,
                                   _tk.requester_name, _tk.created_at, _tk.sla_policy, _tk.first_response_due)
                            .where(_tk.id == bindparam("pk")))


def add(conn: Connection, *, ticket_id: int | None, mailbox: str, kind: str, message_id: str, sender: str,
        recipients: str, data: bytes, spec: str | None, copy_status: str, ack_key: str | None,
        ack_domain: str | None, now: datetime) -> None:
    """A queued row, due at once (`recipients` is the JSON list of envelope recipients)."""
    _ADD.execute(conn, dict(
        ticket_id=ticket_id, mailbox=mailbox, kind=kind, message_id=message_id, sender=sender,
        recipients=recipients, data=data, status="queued", attempts=0, next_attempt_at=now, last_error="",
        created_at=now, copy_status=copy_status, spec=spec, ack_key=ack_key, ack_domain=ack_domain)).close()


def ticket_for_mail(conn: Connection, ticket_pk: int) -> tuple:
    """(id, ref, subject, status, priority, requester, requester_name, created_at, sla_policy,
    first_response_due) of a ticket: what a mail about it says, with the first-response promise."""
    row = _TICKET_FOR_MAIL.first(conn, {"pk": ticket_pk})
    if row is None:
        raise LookupError(f"no ticket with id {ticket_pk}")
    return row


def thread_message_ids(conn: Connection, ticket_pk: int) -> list[tuple[str, str]]:
    """(Message-ID, kind) of each message of a ticket that has one, in the thread's order."""
    m = t.message
    rows = conn.execute(select(m.c.message_id, m.c.kind)
                        .where(m.c.ticket_id == ticket_pk, m.c.message_id.is_not(None))
                        .order_by(message_order(m), m.c.id))
    return [(mid, kind) for mid, kind in rows]


def add_outgoing_message(conn: Connection, ticket_pk: int, *, message_key: str, message_id: str | None,
                         kind: str, sender: str, to_addrs: str, subject: str, text: str, in_reply_to: str,
                         data: bytes, now: datetime) -> None:
    """Our own mail (or a note) as a message of the ticket's thread, its bytes kept by their SHA-256.

    `to_addrs` and `in_reply_to` are the JSON text the message columns hold.
    """
    digest = hashlib.sha256(data).hexdigest()
    filing.insert_raw(conn, digest, data)
    _ADD_MESSAGE.execute(conn, dict(
        message_key=message_key, message_id=message_id, ticket_id=ticket_pk, direction="out", kind=kind,
        from_addr=sender, from_name="", to_addrs=to_addrs, cc_addrs="[]", reply_to="[]", date=now,
        subject=subject, text=text, reply_text=text, html_only=False, in_reply_to=in_reply_to, references="[]",
        auto="{}", raw_sha256=digest, size=len(data), created_at=now)).close()
    _COUNT_MESSAGE.execute(conn, {"pk": ticket_pk}).close()


# -- what the auto-reply budget and bounce handling ask ---------------------------------


def _count_since(column):
    # One indexed range (column, created_at >= since); the recent part is summed within it.
    o = t.outbox
    since = bindparam("since_", type_=o.c.created_at.type)
    recent = bindparam("recent_", type_=o.c.created_at.type)
    return (select(func.count(), func.coalesce(func.sum(case((o.c.created_at >= recent, 1), else_=0)), 0))
            .where(column == bindparam("value_"), o.c.created_at >= since))


# Filing asks these for every new customer mail, so they are compiled once
# and run on the driver's cursor (`filing.Prepared`): through
# `Connection.execute` they had been a tenth of the daemon's whole time.
_ACKS_TO_ADDRESS = Prepared(_count_since(t.outbox.c.ack_key))
_ACKS_TO_DOMAIN = Prepared(_count_since(t.outbox.c.ack_domain))
_BOUNCED_AT = Prepared(select(t.customer.c.bounced_at).where(
    t.customer.c.email == bindparam("address"), t.customer.c.bouncing.is_(True),
    t.customer.c.bounced_at > bindparam("since", type_=t.customer.c.bounced_at.type)))


def _counts(conn: Connection, statement: Prepared, value: str, since: datetime, recent: datetime) -> tuple[int, int]:
    total, in_recent = statement.first(conn, {"value_": value, "since_": since, "recent_": recent})
    return int(total), int(in_recent)


def acks_to_address(conn: Connection, key: str, now: datetime) -> tuple[int, int]:
    """Acknowledgements counted against `key` (see budget_key): (in the last day, in the last hour)."""
    return _counts(conn, _ACKS_TO_ADDRESS, key, now - timedelta(days=1), now - timedelta(hours=1))


def acks_to_domain(conn: Connection, domain: str, now: datetime) -> tuple[int, int]:
    """Acknowledgements to any address at `domain`: (in the last hour, in the last minute)."""
    return _counts(conn, _ACKS_TO_DOMAIN, domain, now - timedelta(hours=1), now - timedelta(minutes=1))


def bounced_at(conn: Connection, address: str, since: datetime) -> datetime | None:
    """When mail to `address` last bounced for good, if the customer is marked bouncing since after `since`."""
    return _BOUNCED_AT.scalar(conn, {"address": address, "since": since})


def recipients_of_sent(conn: Connection, message_id: str) -> str | None:
    """The JSON recipients of the mail with `message_id` that was (or may have been) handed to a server."""
    o = t.outbox
    return conn.execute(select(o.c.recipients)
                        .where(o.c.message_id == message_id, o.c.status.in_(("sent", "sending")))).scalar()


# -- the sender's claims and outcomes ---------------------------------------------------


# The values of the sender's statements come as named parameters.
_o = t.outbox
_NOW = bindparam("now_", type_=_o.c.next_attempt_at.type)
_EXPIRED = bindparam("expired_", type_=_o.c.claimed_at.type)


def _queued_due(o):
    return and_(o.c.status == "queued", o.c.next_attempt_at <= _NOW)


def _lease_expired(o):
    # Sending with a claim from before the lease's start: its sender died, or is too slow.
    return and_(o.c.status == "sending", o.c.claimed_at <= _EXPIRED)


def _due(o):
    return or_(_queued_due(o), _lease_expired(o))


def _candidate(dialect: str):
    """The id of the due row that goes first (by next_attempt_at, then id)."""
    if dialect == "postgresql":
        # The candidate is locked, and one another claim has locked is
        # skipped: two senders get two rows.
        due = _o.alias("due")
        return (select(due.c.id).where(_due(due)).order_by(due.c.next_attempt_at, due.c.id).limit(1)
                .with_for_update(skip_locked=True).scalar_subquery())
    # SQLite (no FOR UPDATE, none needed under BEGIN IMMEDIATE) sorts every
    # due row for the OR above; the first of each kind is one step along
    # ix_outbox_due instead, and the earlier of the two is the same row.
    firsts = []
    for kind in (_queued_due, _lease_expired):
        o = _o.alias()
        firsts.append(select(select(o.c.id, o.c.next_attempt_at).where(kind(o))
                             .order_by(o.c.next_attempt_at, o.c.id).limit(1).subquery()))
    due = union_all(*firsts).subquery("due")
    return select(due.c.id).order_by(due.c.next_attempt_at, due.c.id).limit(1).scalar_subquery()


def _candidates(dialect: str, limit: int):
    """The ids of the first `limit` due rows (by next_attempt_at, then id), as a subquery for IN."""
    if dialect == "postgresql":
        # Locked, skipping rows another claim has locked: two senders claiming
        # at once get different rows rather than one of them none.
        due = _o.alias("due")
        return (select(due.c.id).where(_due(due)).order_by(due.c.next_attempt_at, due.c.id).limit(limit)
                .with_for_update(skip_locked=True))
    # As in _candidate: each kind of due row is a range of ix_outbox_due; the
    # first `limit` of each, merged, hold the first `limit` of both.
    firsts = []
    for kind in (_queued_due, _lease_expired):
        o = _o.alias()
        firsts.append(select(select(o.c.id, o.c.next_attempt_at).where(kind(o))
                             .order_by(o.c.next_attempt_at, o.c.id).limit(limit).subquery()))
    due = union_all(*firsts).subquery("due")
    return select(due.c.id).order_by(due.c.next_attempt_at, due.c.id).limit(limit)


@functools.lru_cache(maxsize=32)
def _claim_batch_statement(dialect: str, limit: int):
    # The outer `due` is the compare-and-swap, as in _claim_statement.  On
    # PostgreSQL the candidates are a CTE, which is run once: as a plain IN
    # (subquery), the planner joined it again for each row a concurrent
    # claim had changed, and racing senders got no rows at all.
    candidates = _candidates(dialect, limit)
    if dialect == "postgresql":
        candidates = select(candidates.cte("due_ids").c.id)
    return (update(_o).where(_o.c.id.in_(candidates), _due(_o))
            .values(status="sending", claimed_at=_NOW, attempts=_o.c.attempts + 1)
            .returning(*_CLAIMED))


class ClaimedRow(NamedTuple):
    """A claimed row's fields (those of _CLAIMED)."""

    id: int
    ticket_id: int | None
    mailbox: str
    message_id: str
    sender: str
    recipients: str
    data: bytes
    attempts: int
    created_at: datetime
    spec: str | None


# One compiled claim per batch size (the sender uses one or two): compiling
# it is most of what a claim costs on SQLite.
_CLAIM_BATCH: dict[int, Prepared] = {}


def claim_batch(conn: Connection, now: datetime, lease: timedelta, limit: int) -> list[ClaimedRow]:
    """Move up to `limit` due rows to `sending` with one compare-and-swap UPDATE ... RETURNING.

    The rows come back in the order they were queued (RETURNING promises
    no order of its own); each is claimed as claim_next claims one.
    """
    prepared = _CLAIM_BATCH.get(limit)
    if prepared is None:
        prepared = _CLAIM_BATCH[limit] = Prepared(lambda c: _claim_batch_statement(c.dialect.name, limit))
    rows = prepared.all(conn, {"now_": now, "expired_": now - lease})
    return sorted((ClaimedRow(*row) for row in rows), key=lambda row: row.id)


def _claim_statement(dialect: str):
    # The outer `due` is the compare-and-swap: PostgreSQL evaluates the
    # subquery once and re-checks only this WHERE on the newest version of a
    # row another claim changed meanwhile.
    return (update(_o).where(_o.c.id == _candidate(dialect), _due(_o))
            .values(status="sending", claimed_at=_NOW, attempts=_o.c.attempts + 1)
            .returning(*_CLAIMED))


_CLAIM = {dialect: _claim_statement(dialect) for dialect in ("sqlite", "postgresql")}
# A claim is still ours while the row is sending with the attempt count our claim gave it.
_OURS = and_(_o.c.id == bindparam("id_"), _o.c.status == "sending", _o.c.attempts == bindparam("attempts_"))
_STILL_CLAIMED = select(_o.c.id).where(_OURS).with_for_update()
# The sender's per-mail statements, compiled once (see `filing.Prepared`).
_CLAIMS_IN = PreparedIn(lambda ids: select(_o.c.id, _o.c.attempts).where(ids, _o.c.status == "sending")
                        .order_by(_o.c.id).with_for_update(), _o.c.id)
_REQUEUE = update(_o).where(_OURS).values(status="queued", next_attempt_at=bindparam("next_"),
                                          last_error=bindparam("error_"))
_FAIL = update(_o).where(_OURS).values(status="failed", last_error=bindparam("error_"))
_SENT = Prepared(update(_o).where(_o.c.id == bindparam("id_"))
                 .values(status="sent", sent_at=bindparam("at_", type_=_o.c.sent_at.type), last_error=""))


def claim_next(conn: Connection, now: datetime, lease: timedelta) -> Row | None:
    """Move the next due row to `sending` (compare-and-swap) and return it, or None when nothing is due.

    Due: queued with its attempt time come, or sending with a claim older
    than `lease`.  The row's fields are those of _CLAIMED; `attempts`
    already counts this claim.
    """
    return conn.execute(_CLAIM[conn.dialect.name], {"now_": now, "expired_": now - lease}).first()


_SET_DATA = Prepared(update(_o).where(_o.c.id == bindparam("id_"))
                     .values(data=bindparam("data_", type_=_o.c.data.type)))


def set_data_many(conn: Connection, data: dict[int, bytes]) -> None:
    """set_data for several rows in one executemany."""
    if data:
        _SET_DATA.executemany(conn, [{"id_": outbox_id, "data_": value} for outbox_id, value in data.items()])


def set_data(conn: Connection, outbox_id: int, data: bytes) -> None:
    """The bytes composed on a row's first attempt, kept so a retry sends exactly these."""
    conn.execute(update(_o).where(_o.c.id == outbox_id).values(data=data))


def set_error(conn: Connection, outbox_id: int, error: str) -> None:
    conn.execute(update(_o).where(_o.c.id == outbox_id).values(last_error=error))


def requeue(conn: Connection, outbox_id: int, attempts: int, next_attempt_at: datetime, error: str) -> bool:
    """Back to `queued` after a temporary failure, if the claim is still ours."""
    return conn.execute(_REQUEUE, {"id_": outbox_id, "attempts_": attempts, "next_": next_attempt_at,
                                   "error_": error}).rowcount == 1


def mark_failed(conn: Connection, outbox_id: int, attempts: int, error: str) -> bool:
    """`failed` for good, if the claim is still ours."""
    return conn.execute(_FAIL, {"id_": outbox_id, "attempts_": attempts, "error_": error}).rowcount == 1


def record_send_failed(conn: Connection, ticket_id: int, detail: str, now: datetime) -> None:
    """The ticket's history says its mail was not delivered (`detail` is the event's JSON)."""
    conn.execute(insert(t.event).values(ticket_id=ticket_id, at=now, actor="inboxd", action="send-failed",
                                        detail=detail))


def still_claimed(conn: Connection, outbox_id: int, attempts: int) -> bool:
    """Whether the claim is still ours; on PostgreSQL the row stays locked until the transaction ends,
    so recording `sent` afterwards waits for no one (SQLite's BEGIN IMMEDIATE holds the whole store)."""
    return conn.execute(_STILL_CLAIMED, {"id_": outbox_id, "attempts_": attempts}).first() is not None


def claims_still_ours(conn: Connection, claims: dict[int, int]) -> set[int]:
    """Which of `claims` (outbox id -> the attempt count its claim gave the row) are still ours: one
    statement for a round of the sender's, which locks the rows on PostgreSQL as still_claimed does."""
    if not claims:
        return set()
    ids = sorted(claims)
    # Padded to a power of two (repeating the last id changes nothing in an
    # IN list), so a few compiled statements serve every round.
    ids += [ids[-1]] * ((1 << (len(ids) - 1).bit_length()) - len(ids))
    return {outbox_id for outbox_id, attempts in _CLAIMS_IN.all(conn, ids) if claims[outbox_id] == attempts}


def mark_sent(conn: Connection, outbox_id: int, now: datetime) -> None:
    _SENT.execute(conn, {"id_": outbox_id, "at_": now}).close()


def retry_now(conn: Connection, outbox_id: int, now: datetime) -> bool:
    """A failed (or waiting) row queued for an immediate new attempt; its give-up clock starts again."""
    o = t.outbox
    return conn.execute(update(o).where(o.c.id == outbox_id, o.c.status.in_(("failed", "queued")))
                        .values(status="queued", next_attempt_at=now, created_at=now)).rowcount == 1


@contextlib.contextmanager
def ledger(engine: Engine) -> Iterator[Connection]:
    """The sender's own connection, on which `sent` is committed; on SQLite with a full sync.

    NORMAL (the store's default) already survives a killed process in WAL
    mode; FULL also survives a power cut, so a mail the server took is never
    recorded as unsent by a crash of the machine either.  PostgreSQL commits
    durably by default (synchronous_commit).
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw = conn.connection.driver_connection
        if sqlite:
            # On the driver's connection: a statement through SQLAlchemy would begin a transaction.
            raw.execute("PRAGMA synchronous=FULL")
        try:
            yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()
            if sqlite:
                raw.execute("PRAGMA synchronous=NORMAL")


# The scheduler's batches (`inboxd.outbound.outbox.queue_many`): one executemany
# for a batch's mail instead of a statement per alert.
_ADD_MANY = insert(t.outbox)


def add_many(conn: Connection, rows: list[dict]) -> None:
    """`add` for many rows at once: each a dict of `add`'s keyword arguments."""
    if rows:
        conn.execute(_ADD_MANY, [dict(
            ticket_id=r["ticket_id"], mailbox=r["mailbox"], kind=r["kind"], message_id=r["message_id"],
            sender=r["sender"], recipients=r["recipients"], data=r["data"], status="queued", attempts=0,
            next_attempt_at=r["now"], last_error="", created_at=r["now"], copy_status=r["copy_status"],
            spec=r["spec"], ack_key=r["ack_key"], ack_domain=r["ack_domain"]) for r in rows])
