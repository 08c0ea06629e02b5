"""The writes of filing one fetched mail: its raw bytes, message, references,
sighting, the ticket it opens or moves, the customer, its events, and the
quarantine and skipped rows of mail that is not filed.

`inboxd.desk.ingest` decides; these functions write what it decided, on the
connection of the batch's write transaction, and read back the few facts of
a ticket that the next decision needs.  This is the hot path of ingest: the
statements are built once, at import, and executed with plain parameter
dicts (SQLAlchemy then compiles each shape once), and rows that come in
groups (a message's references, its attachments) go in with one executemany.

Datetimes are aware UTC `datetime`s, stored through the columns' own type.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Boolean, Connection, Row, bindparam, case, func, select, update
from sqlalchemy.sql.dml import Insert

from inboxd.store.sql import greatest, insert_ignore, json_text, t

_t, _m, _c, _e = t.ticket.c, t.message.c, t.customer.c, t.event.c

# Raw bytes larger than this are written into a SQLite store a piece at a
# time (incremental blob I/O): bound whole, SQLite copies them twice more.
RAW_PIECE = 1 << 20


def _ignoring(conn: Connection, table_name: str, _built: dict[tuple[str, str], Insert] = {}) -> Insert:  # noqa: B006
    """INSERT ... ON CONFLICT DO NOTHING for `table_name`, built once per dialect."""
    key = (conn.dialect.name, table_name)
    stmt = _built.get(key)
    if stmt is None:
        stmt = _built[key] = insert_ignore(conn, t.__getattr__(table_name))
    return stmt


def _at(name: str, column) -> bindparam:
    # A datetime parameter with its column's type, so SQLite gets its usual text.
    return bindparam(name, type_=column.type)


def _flag(name: str) -> bindparam:
    # A condition decided in Python (PostgreSQL wants it typed as a boolean).
    return bindparam(name, type_=Boolean())


# -- raw bytes -----------------------------------------------------------------


def insert_raw(conn: Connection, sha256: str, raw: bytes) -> None:
    """Store `raw` in rawmessage under its hash, once.

    SQLite: a large mail is inserted as a zeroblob of its size and written
    into it a piece at a time through sqlite3's blob API, so the store never
    holds more than the mail and one piece.  This is the one place outside
    inboxd.store.engine that reaches the driver's own connection, because
    SQLAlchemy has no incremental blob I/O.
    PostgreSQL: the bytes are bound whole as bytea.  psycopg sends them as
    hex text, so a 50 MB mail costs about 100 MB more memory for the moment
    of the INSERT (and the server as much again); mail over [store]
    max_message_bytes never gets here (it is quarantined from disk).
    """
    rows = _ignoring(conn, "rawmessage")
    if len(raw) <= RAW_PIECE or conn.dialect.name != "sqlite":
        conn.execute(rows, {"sha256": sha256, "size": len(raw), "data": raw})
        return
    result = conn.execute(rows.values(sha256=sha256, size=len(raw), data=func.zeroblob(len(raw))))
    if result.rowcount != 1:
        return
    driver = conn.connection.driver_connection
    view = memoryview(raw)
    with driver.blobopen("rawmessage", "data", result.lastrowid) as blob:
        for start in range(0, len(raw), RAW_PIECE):
            blob.write(view[start:start + RAW_PIECE])


_RAW_DATA = select(t.rawmessage.c.data).where(t.rawmessage.c.sha256 == bindparam("sha256"))


def raw_data(conn: Connection, sha256: str) -> bytes | None:
    """The stored raw bytes with this hash."""
    data = conn.execute(_RAW_DATA, {"sha256": sha256}).scalar()
    return bytes(data) if data is not None else None


# -- mail that is not filed ----------------------------------------------------


def insert_quarantine(conn: Connection, *, mailbox: str, folder: str, uidvalidity: int, uid: int,
                      message_id: str | None, reason: str, raw_sha256: str | None, raw_path: str | None,
                      now: datetime, arrived: datetime | None) -> None:
    """The quarantine row of a mail that could not be filed (kept if one exists for the place)."""
    conn.execute(_ignoring(conn, "quarantine"), {
        "mailbox": mailbox, "folder": folder, "uidvalidity": uidvalidity, "uid": uid, "message_id": message_id,
        "reason": reason, "raw_sha256": raw_sha256, "raw_path": raw_path, "at": now, "arrived_at": arrived})


def insert_skipped(conn: Connection, *, mailbox: str, folder: str, uidvalidity: int, uid: int,
                   message_id: str | None, reason: str, now: datetime) -> None:
    """Account for a UID deliberately not filed (for `inboxd audit`)."""
    conn.execute(_ignoring(conn, "skipped"), {
        "mailbox": mailbox, "folder": folder, "uidvalidity": uidvalidity, "uid": uid, "message_id": message_id,
        "reason": reason, "at": now})


# -- messages --------------------------------------------------------------------

_BY_KEY = select(_m.id, _m.direction, _m.raw_sha256).where(_m.message_key == bindparam("key"))
_OURS = select(t.outbox.c.id).where(t.outbox.c.message_id == bindparam("mid")).limit(1)
_FIRST_TICKET = (select(_t.ref).select_from(t.message.join(t.ticket, _t.id == _m.ticket_id))
                 .where(_m.message_key == bindparam("key")))
_INSERT_MESSAGE = t.message.insert()
_INSERT_ATTACHMENT = t.attachment.insert()


def message_by_key(conn: Connection, key: str) -> Row | None:
    """(id, direction, raw_sha256) of the stored message with this key."""
    return conn.execute(_BY_KEY, {"key": key}).first()


def is_our_outgoing(conn: Connection, message_id: str) -> bool:
    """Whether we queued a mail with this Message-ID (a relay, an acknowledgement...)."""
    return conn.execute(_OURS, {"mid": message_id}).first() is not None


def ticket_ref_of_message(conn: Connection, key: str) -> str | None:
    """The ref of the ticket that holds the message with this key."""
    return conn.execute(_FIRST_TICKET, {"key": key}).scalar()


def insert_message(conn: Connection, values: dict, refs: Iterable[str], attachments: Sequence[dict]) -> int:
    """The message row (its columns in `values`), the ids it names and its attachments; its id."""
    pk = conn.execute(_INSERT_MESSAGE, values).inserted_primary_key[0]
    refs = [{"message_pk": pk, "ref": ref} for ref in refs]
    if refs:
        conn.execute(_ignoring(conn, "messageref"), refs)
    if attachments:
        conn.execute(_INSERT_ATTACHMENT, [{"message_pk": pk, **a} for a in attachments])
    return pk


def insert_sighting(conn: Connection, message_pk: int, mailbox: str, folder: str, uidvalidity: int, uid: int,
                    now: datetime) -> None:
    """Where the message was seen (kept if that place is accounted for already)."""
    conn.execute(_ignoring(conn, "sighting"), {"message_pk": message_pk, "mailbox": mailbox, "folder": folder,
                                               "uidvalidity": uidvalidity, "uid": uid, "seen_at": now})


# -- tickets -----------------------------------------------------------------------

_INSERT_TICKET = t.ticket.insert()
_STATE = select(_t.ref, _t.status, _t.closed_at).where(_t.id == bindparam("pk"))
# History joins its thread as a record: it moves only the counts and times.
_TOUCH_HISTORY = (update(t.ticket).where(_t.id == bindparam("pk")).values(
    message_count=_t.message_count + 1, updated_at=greatest(_t.updated_at, _at("at", _t.updated_at)),
    first_response_at=case((_flag("first_response") & _t.first_response_at.is_(None),
                            _at("at", _t.first_response_at)), else_=_t.first_response_at),
    version=_t.version + 1))
_ON_MESSAGE = (update(t.ticket).where(_t.id == bindparam("pk")).values(
    message_count=_t.message_count + 1, updated_at=_at("at", _t.updated_at), version=_t.version + 1,
    status=bindparam("new_status", type_=_t.status.type),
    first_response_at=case((_flag("first_response") & _t.first_response_at.is_(None),
                            _at("at", _t.first_response_at)), else_=_t.first_response_at),
    closed_at=case((_flag("keep_closed"), _t.closed_at), else_=None),
    history=case((_flag("live"), False), else_=_t.history)))
_JOIN_COLUMNS = (_t.id, _t.ref, _t.status, _t.priority, _t.assignee, _t.team, _t.tier, _t.escalated, _t.sla_policy,
                 _t.history, _t.created_at, _t.first_response_at, _t.closed_at, _t.solved_at)
_ROUTING = select(_t.tags, _t.priority, _t.team, _t.tier).where(_t.id == bindparam("pk"))
_PROMISE = select(_t.sla_policy, _t.first_response_due).where(_t.id == bindparam("pk"))
_WATCHERS = select(_t.assignee, _t.team).where(_t.id == bindparam("pk"))
_SET_TEAM = update(t.ticket).where(_t.id == bindparam("pk")).values(team=bindparam("team", type_=_t.team.type))


def ticket_state(conn: Connection, pk: int) -> Row:
    """(ref, status, closed_at) of a ticket."""
    return conn.execute(_STATE, {"pk": pk}).one()


def insert_ticket(conn: Connection, *, pk: int, ref: str, subject: str, status: str, mailbox: str, requester: str,
                  requester_name: str, at: datetime, closed_at: datetime | None, history: bool) -> None:
    """A new ticket with its first message counted."""
    conn.execute(_INSERT_TICKET, {
        "id": pk, "ref": ref, "subject": subject, "status": status, "priority": "normal", "mailbox": mailbox,
        "requester": requester, "requester_name": requester_name, "tags": "[]", "message_count": 1,
        "created_at": at, "updated_at": at, "closed_at": closed_at, "history": history, "version": 1})


def count_history_message(conn: Connection, pk: int, at: datetime, agent_reply: bool) -> None:
    """A history mail joined the ticket: counted, and (an agent's) its first response if it has none."""
    conn.execute(_TOUCH_HISTORY, {"pk": pk, "at": at, "first_response": agent_reply})


def count_message(conn: Connection, pk: int, at: datetime, *, new_status: str, first_response: bool,
                  live: bool) -> None:
    """A live mail joined the ticket: counted, its status moved (a ticket not
    left closed loses its closed_at), an agent's first response kept, and a
    customer's live mail makes a history ticket ordinary work again."""
    conn.execute(_ON_MESSAGE, {"pk": pk, "at": at, "new_status": new_status, "first_response": first_response,
                               "keep_closed": new_status == "closed", "live": live})


def tickets_to_join(conn: Connection, pks: Iterable[int]) -> dict[int, Row]:
    """The unmerged tickets among `pks`, by id, with what joining them decides from."""
    rows = conn.execute(select(*_JOIN_COLUMNS).where(_t.id.in_(list(pks)), _t.merged_into.is_(None)))
    return {row.id: row for row in rows}


def set_joined_state(conn: Connection, pk: int, **values) -> None:
    """The state of a ticket that absorbs the others of its conversation."""
    conn.execute(update(t.ticket).where(_t.id == pk).values(version=_t.version + 1, **values))


def set_team(conn: Connection, pk: int, team: str) -> None:
    conn.execute(_SET_TEAM, {"pk": pk, "team": team})


def routing_facts(conn: Connection, pk: int) -> tuple[list[str], str, str | None, int]:
    """(tags, priority, team, tier) of a ticket, as routing rules see them."""
    tags, priority, team, tier = conn.execute(_ROUTING, {"pk": pk}).one()
    return json.loads(tags), priority, team, tier


def open_counts(conn: Connection, open_statuses: Sequence[str]) -> dict[str, int]:
    """How many open tickets each assignee has (for round-robin and least-loaded assignment)."""
    rows = conn.execute(select(_t.assignee, func.count()).where(_t.status.in_(list(open_statuses)),
                                                                 _t.assignee.is_not(None)).group_by(_t.assignee))
    return {assignee: count for assignee, count in rows}


def last_rule_assignee(conn: Connection, team: str | None) -> str | None:
    """Whom the rules last assigned a ticket of `team` to."""
    return conn.execute(select(json_text(_e.detail, "assign")).where(
        _e.action == "rule-assign", json_text(_e.detail, "team").is_not_distinct_from(team))
        .order_by(_e.id.desc()).limit(1)).scalar()


def apply_routing(conn: Connection, pk: int, *, priority: str | None, tags: list[str], team: str | None,
                  tier: int, escalate: bool, assignee: str | None, sla_policy: str | None) -> None:
    """What the routing rules decided; an assigned new ticket is open."""
    values = {"tags": json.dumps(tags, ensure_ascii=False), "team": team, "tier": tier, "version": _t.version + 1}
    if priority is not None:
        values["priority"] = priority
    if escalate:
        values["escalated"] = True
    if assignee is not None:
        values["assignee"] = assignee
        values["status"] = case((_t.status == "new", "open"), else_=_t.status)
    if sla_policy is not None:
        values["sla_policy"] = sla_policy
    conn.execute(update(t.ticket).where(_t.id == pk).values(**values))


def sla_promise(conn: Connection, pk: int) -> tuple[str | None, datetime | None]:
    """(SLA policy, first response due) of a ticket."""
    policy, due = conn.execute(_PROMISE, {"pk": pk}).one()
    return policy, due


def watchers(conn: Connection, pk: int) -> tuple[str | None, str | None]:
    """(assignee, team) of a ticket: who hears about its mail."""
    assignee, team = conn.execute(_WATCHERS, {"pk": pk}).one()
    return assignee, team


# -- customers, surveys, events ------------------------------------------------------

_MARK_BOUNCING = (update(t.customer).where(_c.email == bindparam("address"))
                  .values(bouncing=True, bounced_at=_at("now", _c.bounced_at)))
_ANSWER = (update(t.csat).where(t.csat.c.id == bindparam("csat_id"))
           .values(rating=bindparam("rating"), label=bindparam("label"), comment=bindparam("comment"),
                   answered_at=_at("now", t.csat.c.answered_at)))
_INSERT_EVENT = t.event.insert()


def add_customer(conn: Connection, email: str, name: str, now: datetime) -> None:
    """The customer, the first time they write."""
    conn.execute(_ignoring(conn, "customer"), {"email": email, "name": name, "created_at": now, "bouncing": False})


def mark_bouncing(conn: Connection, addresses: Sequence[str], now: datetime) -> None:
    """Mail to these addresses bounced for good: no auto-replies for a while."""
    if addresses:
        conn.execute(_MARK_BOUNCING, [{"address": a, "now": now} for a in addresses])


def record_csat_answer(conn: Connection, csat_id: int, rating: int, label: str, comment: str, now: datetime) -> None:
    conn.execute(_ANSWER, {"csat_id": csat_id, "rating": rating, "label": label, "comment": comment, "now": now})


def add_event(conn: Connection, ticket_pk: int | None, at: datetime, actor: str, action: str, detail: dict) -> None:
    """One line of the ticket's history."""
    conn.execute(_INSERT_EVENT, {"ticket_id": ticket_pk, "at": at, "actor": actor, "action": action,
                                 "detail": json.dumps(detail, ensure_ascii=False)})


def driver_cursor(conn: Connection):
    """Transitional: the driver's cursor on `conn`'s transaction, for the store
    functions of other modules that still take a sqlite3 cursor (SQLite only)."""
    return conn.connection.driver_connection.cursor()
