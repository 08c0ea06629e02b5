"""The writes of filing one fetched mail: its raw bytes, message, references,
sighting, the ticket it opens or moves, the customer, its events, and the
quarantine and skipped rows of mail that is not filed.

`inboxd.desk.ingest` decides; these functions write what it decided, on the
connection of the batch's write transaction, and read back the few facts of
a ticket that the next decision needs.  This is the hot path of ingest: its
statements are Core, built once, and run as `Prepared` statements (below),
and rows that come in groups (a message's references, its attachments, the
addresses a bounce marks) go in with one executemany.

Datetimes are aware UTC `datetime`s, stored through the columns' own type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Boolean, Connection, bindparam, case, func, select, update
from sqlalchemy.sql.expression import ReleaseSavepointClause, RollbackToSavepointClause, SavepointClause

from inboxd.store.sql import greatest, insert_ignore, t

_t, _m, _c, _e = t.ticket.c, t.message.c, t.customer.c, t.event.c

# json.dumps(..., ensure_ascii=False) makes a new encoder at every call; this one is made once.
to_json = json.JSONEncoder(ensure_ascii=False).encode

# Raw bytes larger than this are written into a SQLite store a piece at a
# time (incremental blob I/O): bound whole, SQLite copies them twice more.
RAW_PIECE = 1 << 20


# -- prepared statements: the hot path's way to run Core ----------------------------


class Prepared:
    """A Core statement compiled once per dialect and run on the driver's cursor.

    Filing a message runs some twenty statements.  Through
    `Connection.execute` each costs SQLAlchemy's whole execution path
    (cache key, parameter processing, result set-up: about fifteen times
    the statement's own work in SQLite), which made filing four times
    slower than the raw-cursor SQL it replaced.  So the hot statements are
    written in Core like any other, compiled once for the connection's
    dialect (SQLite's "?" or psycopg's "%(name)s", its casts and quoting),
    and executed on the DBAPI cursor of the same connection, inside the
    same transaction and savepoints.  Values still go through the columns'
    types: a datetime is bound as SQLite's text or PostgreSQL's timestamptz
    and read back as an aware UTC datetime, a bool as 0/1 or boolean.

    What SQLAlchemy's execution would add, this does not: errors are the
    driver's own (sqlite3.Error, psycopg.Error), not wrapped, and an INSERT
    must be given every column it names (`keys`); Python-side column
    defaults are not applied.  So only plain statements with named
    parameters belong here; the rest use `conn.execute`.
    """

    __slots__ = ("build", "keys", "_by_dialect")

    def __init__(self, stmt, keys: Sequence[str] | None = None):
        # `stmt` is a Core statement, or a function of the connection that
        # builds one (for the constructs each dialect spells its own way).
        self.build = stmt if callable(stmt) else (lambda _conn: stmt)
        self.keys = list(keys) if keys is not None else None
        self._by_dialect: dict[str, tuple] = {}

    def _compiled(self, conn: Connection) -> tuple:
        dialect = conn.dialect
        found = self._by_dialect.get(dialect.name)
        if found is not None:
            return found
        stmt = self.build(conn)
        compiled = stmt.compile(dialect=dialect, column_keys=self.keys)
        names = {bind: compiled.bind_names[bind] for bind in compiled.binds.values()}
        if self.keys is not None:
            extra = set(names.values()) - set(self.keys)
            if extra:
                raise TypeError(f"{stmt.table.name}: columns with defaults not given: {sorted(extra)}")
        types = {name: bind.type for bind, name in names.items()}
        fixed = {name: bind.effective_value for bind, name in names.items() if not bind.required}
        order = list(compiled.positiontup) if compiled.positional else list(types)
        binders = [(name, _remembering(types[name], dialect)) for name in order]
        columns = getattr(stmt, "selected_columns", None)
        if columns is None:
            columns = stmt.exported_columns if getattr(stmt, "_returning", ()) else ()
        readers = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
        found = (compiled.string, _binder(compiled.positional, fixed, binders), readers if any(readers) else None)
        self._by_dialect[dialect.name] = found
        return found

    def execute(self, conn: Connection, params: dict | None = None):
        """Run the statement once; the driver's cursor, for rowcount and rows."""
        sql, bind, _readers = self._compiled(conn)
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(sql, bind(params or {}))
        return cursor

    def executemany(self, conn: Connection, rows: Sequence[dict]) -> None:
        sql, bind, _readers = self._compiled(conn)
        cursor = conn.connection.driver_connection.cursor()
        cursor.executemany(sql, [bind(row) for row in rows])
        cursor.close()

    def first(self, conn: Connection, params: dict | None = None) -> tuple | None:
        """The first row (its values through the columns' types), or None."""
        readers = self._compiled(conn)[2]
        cursor = self.execute(conn, params)
        row = cursor.fetchone()
        cursor.close()
        if row is None or readers is None:
            return row
        return tuple(r(v) if r else v for r, v in zip(readers, row))

    def all(self, conn: Connection, params: dict | None = None) -> list[tuple]:
        readers = self._compiled(conn)[2]
        cursor = self.execute(conn, params)
        rows = cursor.fetchall()
        cursor.close()
        if readers is None:
            return rows
        return [tuple(r(v) if r else v for r, v in zip(readers, row)) for row in rows]

    def scalar(self, conn: Connection, params: dict | None = None):
        row = self.first(conn, params)
        return row[0] if row is not None else None


def _binder(positional: bool, fixed: dict, binders: list[tuple[str, Callable | None]]) -> Callable[[dict], Any]:
    """The function that turns a statement's parameters (a dict by name) into what the driver binds.

    Each value goes through its column type's processor, if it has one; the
    statement's fixed values fill in what the caller does not give.  The
    names are looked up in one C call (`itemgetter`) and only the values
    that have a processor are touched in Python: filing binds some 150,000
    values per 2,000 mails, and a generator over every one of them took
    6.4 µs for a new ticket's 18 values where this takes 4.7 µs.
    """
    names = [name for name, _process in binders]
    processed = [(i, process) for i, (_name, process) in enumerate(binders) if process]
    if not positional:
        # psycopg's named parameters: a dict, as SQLAlchemy would bind it.
        def bind_named(params: dict) -> dict:
            values = {**fixed, **params} if fixed else params
            return {name: process(values[name]) if process else values[name] for name, process in binders}

        return bind_named
    if not names:
        return lambda params: ()
    get = itemgetter(*names)
    single = len(names) == 1

    def bind_positional(params: dict) -> list:
        got = get({**fixed, **params} if fixed else params)
        values = [got] if single else list(got)
        for i, process in processed:
            values[i] = process(values[i])
        return values

    return bind_positional


# What a datetime parameter became for the driver, by dialect and type: the
# same few datetimes (the batch's `now`, a message's arrival) are bound to
# many statements, and the types' processors (aware to UTC, then SQLite's
# text) cost more than the statements' other parameters together.
_BOUND_DATETIMES: dict[tuple[str, str], dict] = {}
_REMEMBERED = 4096


def _remembering(type_, dialect):
    """The bind processor of `type_` on `dialect`; for datetimes, one that remembers its recent results."""
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    if process is None or not _is_datetime(type_):
        return process
    # Equal datetimes are the same instant, which every processor binds alike.
    seen = _BOUND_DATETIMES.setdefault((dialect.name, repr(type_)), {})

    def bind(value):
        try:
            return seen[value]
        except KeyError:
            if len(seen) >= _REMEMBERED:
                seen.clear()
            bound = seen[value] = process(value)
            return bound
        except TypeError:   # not hashable: not a datetime after all
            return process(value)

    return bind


def _is_datetime(type_) -> bool:
    try:
        return type_.python_type is datetime
    except NotImplementedError:
        return False


class PreparedIn:
    """A Prepared statement with a list of values (`column IN (...)`), one per list length.

    `build(column_in)` makes the statement from the IN clause it is given.
    """

    def __init__(self, build, column):
        self.build, self.column = build, column
        self._by_length: dict[int, Prepared] = {}

    def _prepared(self, n: int) -> Prepared:
        found = self._by_length.get(n)
        if found is None:
            found = self._by_length[n] = Prepared(self.build(self.column.in_(
                [bindparam(f"in_{i}", type_=self.column.type) for i in range(n)])))
        return found

    def all(self, conn: Connection, values: Sequence, params: dict | None = None) -> list[tuple]:
        return self._prepared(len(values)).all(conn, {**(params or {}), **{f"in_{i}": v for i, v in enumerate(values)}})


class Savepoint:
    """`conn.begin_nested()` for the hot path: one message's savepoint.

    SQLAlchemy names each savepoint anew (sa_savepoint_1, _2, ...), so it
    compiles SAVEPOINT and RELEASE again for every message: about 0.3 ms,
    a third of the time filing a message took.  These are the same Core
    clauses under one fixed name, compiled once (see `Prepared`).  A
    savepoint opened inside this one by `conn.begin_nested()` nests as usual.
    """

    _OPEN = Prepared(SavepointClause("deliver"))
    _RELEASE = Prepared(ReleaseSavepointClause("deliver"))
    _ROLLBACK = Prepared(RollbackToSavepointClause("deliver"))

    def __init__(self, conn: Connection):
        self.conn = conn
        self._OPEN.execute(conn).close()

    def commit(self) -> None:
        self._RELEASE.execute(self.conn).close()

    def rollback(self) -> None:
        self._ROLLBACK.execute(self.conn).close()
        self._RELEASE.execute(self.conn).close()


def _at(name: str, column) -> bindparam:
    # A datetime parameter with its column's type, so SQLite gets its usual text.
    return bindparam(name, type_=column.type)


def _text(name: str, column) -> bindparam:
    # A text parameter typed as its column, so PostgreSQL need not guess it inside CASE.
    return bindparam(name, type_=column.type)


def _flag(name: str) -> bindparam:
    # A condition decided in Python (PostgreSQL wants it typed as a boolean).
    return bindparam(name, type_=Boolean())


def _ignoring(table_name: str, keys: Sequence[str]) -> Prepared:
    """INSERT ... ON CONFLICT DO NOTHING into `table_name` of these columns."""
    return Prepared(lambda conn: insert_ignore(conn, t.__getattr__(table_name)), keys)


# -- raw bytes -----------------------------------------------------------------

_INSERT_RAW = _ignoring("rawmessage", ("sha256", "size", "data"))
_INSERT_ZEROBLOB = Prepared(lambda conn: insert_ignore(conn, t.rawmessage).values(
    sha256=bindparam("sha256"), size=bindparam("size"), data=func.zeroblob(bindparam("size"))))
_RAW_DATA = Prepared(select(t.rawmessage.c.data).where(t.rawmessage.c.sha256 == bindparam("sha256")))


def insert_raw(conn: Connection, sha256: str, raw: bytes) -> None:
    """Store `raw` in rawmessage under its hash, once.

    SQLite: a large mail is inserted as a zeroblob of its size and written
    into it a piece at a time through sqlite3's blob API, so the store never
    holds more than the mail and one piece (SQLAlchemy has no incremental
    blob I/O, hence the driver's own connection).
    PostgreSQL: the bytes are bound whole as bytea.  psycopg may send them
    as text (hex, twice their size), so a 50 MB mail can cost 100 MB more
    memory for the moment of the INSERT, and the server as much again;
    mail over [store] max_message_bytes never gets here (it is quarantined
    from disk).
    """
    if len(raw) <= RAW_PIECE or conn.dialect.name != "sqlite":
        _INSERT_RAW.execute(conn, {"sha256": sha256, "size": len(raw), "data": raw}).close()
        return
    cursor = _INSERT_ZEROBLOB.execute(conn, {"sha256": sha256, "size": len(raw)})
    inserted, rowid = cursor.rowcount == 1, cursor.lastrowid
    cursor.close()
    if not inserted:
        return
    view = memoryview(raw)
    with conn.connection.driver_connection.blobopen("rawmessage", "data", rowid) as blob:
        for start in range(0, len(raw), RAW_PIECE):
            blob.write(view[start:start + RAW_PIECE])


def insert_raws(conn: Connection, rows: Sequence[tuple[str, bytes]]) -> None:
    """Many (sha256, raw) in one executemany, each once; bound whole, so on
    SQLite none larger than RAW_PIECE (see insert_raw)."""
    _INSERT_RAW.executemany(conn, [{"sha256": sha256, "size": len(raw), "data": raw} for sha256, raw in rows])


def raw_data(conn: Connection, sha256: str) -> bytes | None:
    """The stored raw bytes with this hash."""
    data = _RAW_DATA.scalar(conn, {"sha256": sha256})
    return bytes(data) if data is not None else None


# -- mail that is not filed ----------------------------------------------------

_PLACE = ("mailbox", "folder", "uidvalidity", "uid", "message_id", "reason")
_INSERT_QUARANTINE = _ignoring("quarantine", (*_PLACE, "raw_sha256", "raw_path", "at", "arrived_at"))
_INSERT_SKIPPED = _ignoring("skipped", (*_PLACE, "at"))


def insert_quarantine(conn: Connection, *, mailbox: str, folder: str, uidvalidity: int, uid: int,
                      message_id: str | None, reason: str, raw_sha256: str | None, raw_path: str | None,
                      now: datetime, arrived: datetime | None) -> None:
    """The quarantine row of a mail that could not be filed (kept if one exists for the place)."""
    _INSERT_QUARANTINE.execute(conn, {
        "mailbox": mailbox, "folder": folder, "uidvalidity": uidvalidity, "uid": uid, "message_id": message_id,
        "reason": reason, "raw_sha256": raw_sha256, "raw_path": raw_path, "at": now, "arrived_at": arrived}).close()


def insert_skipped(conn: Connection, *, mailbox: str, folder: str, uidvalidity: int, uid: int,
                   message_id: str | None, reason: str, now: datetime) -> None:
    """Account for a UID deliberately not filed (for `inboxd audit`)."""
    _INSERT_SKIPPED.execute(conn, {
        "mailbox": mailbox, "folder": folder, "uidvalidity": uidvalidity, "uid": uid, "message_id": message_id,
        "reason": reason, "at": now}).close()


# -- messages --------------------------------------------------------------------

_MESSAGE_COLUMNS = ("message_key", "message_id", "ticket_id", "direction", "kind", "from_addr", "from_name",
                    "to_addrs", "cc_addrs", "reply_to", "date", "subject", "text", "reply_text", "html_only",
                    "in_reply_to", "references", "auto", "raw_sha256", "size", "created_at")
_BY_KEY = Prepared(select(_m.id, _m.direction, _m.raw_sha256).where(_m.message_key == bindparam("key")))
# outbox.message_id is unique: at most one row.
_OURS = Prepared(select(t.outbox.c.id).where(t.outbox.c.message_id == bindparam("mid")))
_FIRST_TICKET = Prepared(select(_t.ref).select_from(t.message.join(t.ticket, _t.id == _m.ticket_id))
                         .where(_m.message_key == bindparam("key")))
_INSERT_MESSAGE = Prepared(t.message.insert().returning(_m.id), _MESSAGE_COLUMNS)
_INSERT_REF = _ignoring("messageref", ("message_pk", "ref"))
_INSERT_ATTACHMENT = Prepared(t.attachment.insert().inline(),
                              ("message_pk", "filename", "content_type", "size", "sha256", "stored", "inline"))
_INSERT_SIGHTING = _ignoring("sighting", ("message_pk", "mailbox", "folder", "uidvalidity", "uid", "seen_at"))


def message_by_key(conn: Connection, key: str) -> tuple[int, str, str] | None:
    """(id, direction, raw_sha256) of the stored message with this key."""
    return _BY_KEY.first(conn, {"key": key})


_KEYS_IN = PreparedIn(lambda keys: select(_m.message_key).where(keys), _m.message_key)
# Keys asked for in one statement; lists are padded to a power of two up to
# this, so a few compiled statements serve every batch.
_KEYS_PER_QUERY = 256


def stored_keys(conn: Connection, keys: Iterable[str]) -> set[str]:
    """Which of `keys` the store holds a message under: one query per batch
    instead of one per message (`message_by_key`)."""
    return {row[0] for chunk in _padded_chunks(keys) for row in _KEYS_IN.all(conn, chunk)}


_OURS_IN = PreparedIn(lambda ids: select(t.outbox.c.message_id).where(ids), t.outbox.c.message_id)
_REFERENCED_IN = PreparedIn(lambda ids: select(t.messageref.c.ref).distinct().where(ids), t.messageref.c.ref)


def _padded_chunks(values: Iterable[str]):
    # Lists are padded to a power of two up to _KEYS_PER_QUERY, so a few
    # compiled statements serve every batch; padding repeats the last value,
    # which changes nothing in an IN list.
    wanted = sorted(set(values))
    for start in range(0, len(wanted), _KEYS_PER_QUERY):
        chunk = wanted[start:start + _KEYS_PER_QUERY]
        size = 1 << (len(chunk) - 1).bit_length()
        yield chunk + [chunk[-1]] * (size - len(chunk))


def outgoing_among(conn: Connection, message_ids: Iterable[str]) -> set[str]:
    """Which of `message_ids` we queued mail with (`is_our_outgoing` for a batch, one query)."""
    return {row[0] for chunk in _padded_chunks(message_ids) for row in _OURS_IN.all(conn, chunk)}


def referenced_among(conn: Connection, message_ids: Iterable[str]) -> set[str]:
    """Which of `message_ids` a stored message names (In-Reply-To, References): one query per batch."""
    return {row[0] for chunk in _padded_chunks(message_ids) for row in _REFERENCED_IN.all(conn, chunk)}


def is_our_outgoing(conn: Connection, message_id: str) -> bool:
    """Whether we queued a mail with this Message-ID (a relay, an acknowledgement...)."""
    return _OURS.first(conn, {"mid": message_id}) is not None


def ticket_ref_of_message(conn: Connection, key: str) -> str | None:
    """The ref of the ticket that holds the message with this key."""
    return _FIRST_TICKET.scalar(conn, {"key": key})


def insert_message(conn: Connection, values: dict, refs: Iterable[str], attachments: Sequence[dict]) -> int:
    """The message row (every column of _MESSAGE_COLUMNS in `values`), the ids
    it names and its attachments; its id."""
    pk = _INSERT_MESSAGE.scalar(conn, values)
    refs = [{"message_pk": pk, "ref": ref} for ref in refs]
    if refs:
        _INSERT_REF.executemany(conn, refs)
    if attachments:
        _INSERT_ATTACHMENT.executemany(conn, [{"message_pk": pk, **a} for a in attachments])
    return pk


def sighting_row(message_pk: int, mailbox: str, folder: str, uidvalidity: int, uid: int, now: datetime) -> dict:
    return {"message_pk": message_pk, "mailbox": mailbox, "folder": folder, "uidvalidity": uidvalidity, "uid": uid,
            "seen_at": now}


def insert_sighting(conn: Connection, message_pk: int, mailbox: str, folder: str, uidvalidity: int, uid: int,
                    now: datetime) -> None:
    """Where the message was seen (kept if that place is accounted for already)."""
    _INSERT_SIGHTING.execute(conn, sighting_row(message_pk, mailbox, folder, uidvalidity, uid, now)).close()


def insert_sightings(conn: Connection, rows: Sequence[dict]) -> None:
    """Many `sighting_row`s in one executemany (see ingest.BatchFacts)."""
    if rows:
        _INSERT_SIGHTING.executemany(conn, rows)


# -- tickets -----------------------------------------------------------------------

_TICKET_COLUMNS = ("id", "ref", "subject", "status", "priority", "mailbox", "requester", "requester_name", "tags",
                   "message_count", "created_at", "updated_at", "closed_at", "history", "version", "tier",
                   "escalated", "sla_version")
_INSERT_TICKET = Prepared(t.ticket.insert().inline(), _TICKET_COLUMNS)
# History joins its thread as a record: it moves only the counts and times.
_TOUCH_HISTORY = Prepared(update(t.ticket).where(_t.id == bindparam("pk")).values(
    message_count=_t.message_count + 1, updated_at=greatest(_t.updated_at, _at("at", _t.updated_at)),
    first_response_at=case((_flag("first_response") & _t.first_response_at.is_(None),
                            _at("at", _t.first_response_at)), else_=_t.first_response_at),
    version=_t.version + 1))
_ON_MESSAGE = Prepared(update(t.ticket).where(_t.id == bindparam("pk")).values(
    message_count=_t.message_count + 1, updated_at=_at("at", _t.updated_at), version=_t.version + 1,
    status=bindparam("new_status", type_=_t.status.type),
    first_response_at=case((_flag("first_response") & _t.first_response_at.is_(None),
                            _at("at", _t.first_response_at)), else_=_t.first_response_at),
    closed_at=case((_flag("close"), _at("at", _t.closed_at)), (_flag("keep_closed"), _t.closed_at), else_=None),
    history=case((_flag("live"), False), else_=_t.history)))
_SET_TEAM = Prepared(update(t.ticket).where(_t.id == bindparam("pk"))
                     .values(team=bindparam("team", type_=_t.team.type)))


def insert_ticket(conn: Connection, *, pk: int, ref: str, subject: str, status: str, mailbox: str, requester: str,
                  requester_name: str, at: datetime, closed_at: datetime | None, history: bool) -> None:
    """A new ticket with its first message counted."""
    _INSERT_TICKET.execute(conn, {
        "id": pk, "ref": ref, "subject": subject, "status": status, "priority": "normal", "mailbox": mailbox,
        "requester": requester, "requester_name": requester_name, "tags": "[]", "message_count": 1,
        "created_at": at, "updated_at": at, "closed_at": closed_at, "history": history, "version": 1,
        "tier": 1, "escalated": False, "sla_version": 0}).close()


def count_history_message(conn: Connection, pk: int, at: datetime, agent_reply: bool) -> None:
    """A history mail joined the ticket: counted, and (an agent's) its first response if it has none."""
    _TOUCH_HISTORY.execute(conn, {"pk": pk, "at": at, "first_response": agent_reply}).close()


def count_message(conn: Connection, pk: int, at: datetime, *, new_status: str, first_response: bool,
                  live: bool, close: bool = False) -> None:
    """A live mail joined the ticket: counted, its status moved (a ticket not
    left closed loses its closed_at; `close`, a customer's confirmation of a
    solved ticket, closes it at `at`), an agent's first response kept, and a
    customer's live mail makes a history ticket ordinary work again."""
    _ON_MESSAGE.execute(conn, {"pk": pk, "at": at, "new_status": new_status, "first_response": first_response,
                               "keep_closed": new_status == "closed", "close": close, "live": live}).close()


def set_joined_state(conn: Connection, pk: int, **values) -> None:
    """The state of a ticket that absorbs the others of its conversation."""
    conn.execute(update(t.ticket).where(_t.id == pk).values(version=_t.version + 1, **values))


def set_team(conn: Connection, pk: int, team: str) -> None:
    _SET_TEAM.execute(conn, {"pk": pk, "team": team}).close()


def apply_routing(conn: Connection, pk: int, *, priority: str | None, tags: list[str], team: str | None,
                  tier: int, escalate: bool, assignee: str | None, sla_policy: str | None) -> None:
    """What the routing rules decided; an assigned new ticket is open."""
    values = {"tags": to_json(tags), "team": team, "tier": tier, "version": _t.version + 1}
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


# -- customers, surveys, events ------------------------------------------------------

_INSERT_CUSTOMER = _ignoring("customer", ("email", "name", "created_at", "bouncing"))
_MARK_BOUNCING = Prepared(update(t.customer).where(_c.email == bindparam("address"))
                          .values(bouncing=True, bounced_at=_at("now", _c.bounced_at)))
# A rating's comment is added to what the customer wrote before (a comment
# without a rating, an earlier rating's), so nothing they said is lost.
_ANSWER = (update(t.csat).where(t.csat.c.id == bindparam("csat_id"))
           .values(rating=bindparam("rating"), label=bindparam("label"),
                   comment=case((func.coalesce(t.csat.c.comment, "") == "", _text("comment", t.csat.c.comment)),
                                (_text("comment", t.csat.c.comment) == "", t.csat.c.comment),
                                else_=t.csat.c.comment + "\n\n" + _text("comment", t.csat.c.comment)),
                   answered_at=_at("now", t.csat.c.answered_at)))
_INSERT_EVENT = Prepared(t.event.insert().inline(), ("ticket_id", "at", "actor", "action", "detail"))


def customer_row(email: str, name: str, now: datetime) -> dict:
    return {"email": email, "name": name, "created_at": now, "bouncing": False}


def add_customer(conn: Connection, email: str, name: str, now: datetime) -> None:
    """The customer, the first time they write."""
    _INSERT_CUSTOMER.execute(conn, customer_row(email, name, now)).close()


def add_customers(conn: Connection, rows: Sequence[dict]) -> None:
    """Many `customer_row`s in one executemany, in order: the first of an address is kept."""
    if rows:
        _INSERT_CUSTOMER.executemany(conn, rows)


def mark_bouncing(conn: Connection, addresses: Sequence[str], now: datetime) -> None:
    """Mail to these addresses bounced for good: no auto-replies for a while."""
    if addresses:
        _MARK_BOUNCING.executemany(conn, [{"address": a, "now": now} for a in addresses])


def record_csat_answer(conn: Connection, csat_id: int, rating: int, label: str, comment: str, now: datetime) -> None:
    conn.execute(_ANSWER, {"csat_id": csat_id, "rating": rating, "label": label, "comment": comment, "now": now})


def record_csat_comment(conn: Connection, csat_id: int, comment: str, now: datetime) -> None:
    """A reply to the survey without a rating: its text is added to the survey's comment, any rating kept."""
    if not comment:
        return
    c = t.csat.c
    joined = case((func.coalesce(c.comment, "") == "", bindparam("comment", type_=c.comment.type)),
                  else_=c.comment + "\n\n" + bindparam("comment", type_=c.comment.type))
    conn.execute(update(t.csat).where(c.id == bindparam("csat_id")).values(
        comment=joined, answered_at=func.coalesce(c.answered_at, _at("now", c.answered_at))),
        {"csat_id": csat_id, "comment": comment, "now": now})


def add_event(conn: Connection, ticket_pk: int | None, at: datetime, actor: str, action: str, detail: dict) -> None:
    """One line of the ticket's history."""
    _INSERT_EVENT.execute(conn, {"ticket_id": ticket_pk, "at": at, "actor": actor, "action": action,
                                 "detail": to_json(detail)}).close()


# The key of the PostgreSQL advisory lock that every filing transaction
# holds: any fixed number will do, this one spells "filing".
FILING_LOCK_KEY = int.from_bytes(b"filing", "big")


def serialize_filing(conn: Connection) -> None:
    """Wait for the store-wide filing lock, held until this transaction ends (PostgreSQL).

    Filing decides from what the store holds: which ticket a reply joins,
    whether its customer and ticket rows exist yet.  SQLite makes those
    decisions one transaction at a time (BEGIN IMMEDIATE).  Under
    PostgreSQL's READ COMMITTED, two daemons (or two pollers of one) filing
    a message and its reply from different folders would each miss the
    other's uncommitted ticket and open two; filing the same new customer
    from two batches deadlocks on its unique index.  So batches are filed
    one at a time here too: the daemons still share the fetching, the
    parsing, the sending and the duties, which is most of the work.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(FILING_LOCK_KEY)))


# PostgreSQL's SQLSTATEs for "another transaction was in the way":
# serialization failure, deadlock detected, lock not available.
_CONTENTION = frozenset({"40001", "40P01", "55P03"})


def contention(exc: BaseException) -> bool:
    """Whether `exc` is another transaction getting in the way (a deadlock,
    say) rather than this mail failing: the batch is then rolled back and
    filed again later, never quarantined."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) in _CONTENTION


def connection_lost(conn: Connection) -> bool:
    """Whether the connection itself is gone (PostgreSQL restarted or killed
    the session), rather than one statement failing: then nothing more can
    be written, and no mail is to blame."""
    if conn.invalidated:
        return True
    # psycopg marks its connection broken or closed; sqlite3's has neither.
    driver = conn.connection.driver_connection
    return bool(getattr(driver, "broken", False) or getattr(driver, "closed", False))
