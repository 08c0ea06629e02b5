"""The store as threading sees it: which tickets hold the mail a message names.

`StoreLookup` implements `inboxd.desk.threads.ThreadLookup` over a
connection.  Every query is by an indexed column (message.message_id,
messageref.ref, ticket.ref); long References are asked about a chunk at a
time, below SQLite's limit on bound parameters.  Tickets are the surviving
ones: a merged ticket leads to the ticket that absorbed it.  The statements
asked about every message run as `inboxd.store.filing.Prepared` (see there
why).
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select

from inboxd.store.filing import Prepared, PreparedIn
from inboxd.store.sql import t

_m, _r, _t = t.message.c, t.messageref.c, t.ticket.c

# Built once: the hot path runs them for every message.
_BY_MESSAGE_IDS = PreparedIn(lambda ids: select(_m.message_id, _m.ticket_id).where(ids), _m.message_id)
_BY_REF = Prepared(select(_t.id).where(_t.ref == bindparam("ref")))
_MERGED_INTO = Prepared(select(_t.merged_into).where(_t.id == bindparam("pk")))
_REFERENCING = Prepared(select(_m.ticket_id).distinct()
                        .select_from(t.messageref.join(t.message, _m.id == _r.message_pk))
                        .where(_r.ref == bindparam("ref")))
_CSAT_BY_TOKEN = Prepared(select(t.csat.c.id).where(t.csat.c.token == bindparam("token")))
_SHARING = PreparedIn(lambda ids: select(_r.ref, _m.ticket_id).distinct()
                      .select_from(t.messageref.join(t.message, _m.id == _r.message_pk)).where(ids), _r.ref)
_CSAT_BY_MESSAGE_IDS = PreparedIn(lambda ids: select(t.csat.c.id).where(ids), t.csat.c.message_id)


class StoreLookup:
    """The store as threading sees it (implements threads.ThreadLookup)."""

    CHUNK = 500

    def __init__(self, conn: Connection):
        self.conn = conn

    def _chunks(self, ids: list[str]):
        for start in range(0, len(ids), self.CHUNK):
            yield ids[start:start + self.CHUNK]

    def tickets_by_message_ids(self, ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in self._chunks(ids):
            found.update(_BY_MESSAGE_IDS.all(self.conn, chunk))
        return found

    def ticket_by_ref(self, ticket_id: str) -> int | None:
        pk = _BY_REF.scalar(self.conn, {"ref": ticket_id})
        return surviving_ticket(self.conn, pk) if pk is not None else None

    def tickets_referencing(self, message_id: str) -> set[int]:
        return {pk for (pk,) in _REFERENCING.all(self.conn, {"ref": message_id})}

    def tickets_sharing_refs(self, ids: list[str]) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for chunk in self._chunks(ids):
            for ref, pk in _SHARING.all(self.conn, chunk):
                found.setdefault(ref, set()).add(pk)
        return found


def surviving_ticket(conn: Connection, pk: int) -> int:
    """`pk`, or the ticket it was merged into (and that one's, and so on)."""
    seen = {pk}
    while True:
        merged_into = _MERGED_INTO.scalar(conn, {"pk": pk})
        if merged_into is None or merged_into in seen:
            return pk
        pk = merged_into
        seen.add(pk)


def csat_by_token(conn: Connection, token: str) -> int | None:
    """The survey sent with this token (the answer address names it)."""
    return _CSAT_BY_TOKEN.scalar(conn, {"token": token})


def csat_by_message_ids(conn: Connection, ids: list[str]) -> int | None:
    """A survey whose mail has one of these Message-IDs (an answer that replies to it)."""
    for start in range(0, len(ids), StoreLookup.CHUNK):
        found = _CSAT_BY_MESSAGE_IDS.all(conn, ids[start:start + StoreLookup.CHUNK])
        if found:
            return found[0][0]
    return None


def csat_ticket(conn: Connection, csat_id: int) -> int:
    """The (surviving) ticket a survey was sent about."""
    return surviving_ticket(conn, conn.execute(select(t.csat.c.ticket_id).where(t.csat.c.id == csat_id)).scalar_one())
