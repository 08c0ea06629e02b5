"""The store as ingest's decisions see it: which tickets hold the mail a
message names, and the facts of those tickets, surveys and assignments that
deciding a message's disposition needs.  Reads only.

`StoreLookup` implements `inboxd.desk.threads.ThreadLookup` and the ticket,
survey and routing parts of `inboxd.desk.decide.Lookup` over a connection.  Every query is by an indexed column (message.message_id,
messageref.ref, ticket.ref); long References are asked about a chunk at a
time, below SQLite's limit on bound parameters.  Tickets are the surviving
ones: a merged ticket leads to the ticket that absorbed it.  The statements
asked about every message run as `inboxd.store.filing.Prepared` (see there
why).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, select

from inboxd.store.filing import Prepared, PreparedIn
from inboxd.store.sql import json_text, t

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
_CSAT_TICKET = Prepared(select(t.csat.c.ticket_id).where(t.csat.c.id == bindparam("csat_id")))
_CSAT_SCORED = Prepared(select(t.csat.c.scored).where(t.csat.c.id == bindparam("csat_id")))

# A ticket as a message's disposition is decided from.  Locked (PostgreSQL;
# SQLite's write lock is held already) until the batch commits: the status
# a message moves the ticket to, and the state of joined tickets, are decided
# from this read and written by the apply stage later in the transaction.
_FACTS = (_t.id, _t.ref, _t.status, _t.closed_at, _t.solved_at, _t.priority, _t.assignee, _t.team, _t.tier,
          _t.escalated, _t.sla_policy, _t.history, _t.created_at, _t.first_response_at, _t.tags)
_TICKET = Prepared(select(*_FACTS).where(_t.id == bindparam("pk")).with_for_update())
_e = t.event.c


@dataclass(frozen=True)
class TicketFacts:
    """What the store knows of one ticket, as ingest decides on it."""

    pk: int
    ref: str
    status: str
    closed_at: datetime | None = None
    solved_at: datetime | None = None
    priority: str = "normal"
    assignee: str | None = None
    team: str | None = None
    tier: int = 1
    escalated: bool = False
    sla_policy: str | None = None
    history: bool = False
    created_at: datetime | None = None
    first_response_at: datetime | None = None
    tags: tuple[str, ...] = ()


def _facts(row) -> TicketFacts:
    *values, tags = row
    return TicketFacts(*values, tags=tuple(json.loads(tags or "[]")))


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

    # -- tickets, locked while the batch is filed ---------------------------------

    def ticket(self, pk: int) -> TicketFacts:
        """The ticket's facts (locked: see _FACTS)."""
        row = _TICKET.first(self.conn, {"pk": pk})
        if row is None:
            raise LookupError(f"no ticket with id {pk}")
        return _facts(row)

    def tickets_to_join(self, pks: list[int]) -> dict[int, TicketFacts]:
        """The unmerged tickets among `pks`, by id; locked in id order, so two
        daemons joining one conversation take turns rather than deadlock."""
        rows = self.conn.execute(select(*_FACTS).where(_t.id.in_(list(pks)), _t.merged_into.is_(None))
                                 .order_by(_t.id).with_for_update())
        return {row[0]: _facts(tuple(row)) for row in rows}

    # -- surveys ------------------------------------------------------------------------

    def csat_by_token(self, token: str) -> int | None:
        return csat_by_token(self.conn, token)

    def csat_by_message_ids(self, ids: list[str]) -> int | None:
        return csat_by_message_ids(self.conn, ids)

    def csat_ticket(self, csat_id: int) -> int:
        return csat_ticket(self.conn, csat_id)

    def csat_scored(self, csat_id: int) -> bool:
        return csat_scored(self.conn, csat_id)

    # -- routing ------------------------------------------------------------------------

    def open_counts(self, open_statuses: tuple[str, ...]) -> dict[str, int]:
        """How many open tickets each assignee has (for least-loaded assignment)."""
        rows = self.conn.execute(select(_t.assignee, func.count()).where(
            _t.status.in_(list(open_statuses)), _t.assignee.is_not(None)).group_by(_t.assignee))
        return {assignee: count for assignee, count in rows}

    def last_rule_assignee(self, team: str | None) -> str | None:
        """Whom the rules last assigned a ticket of `team` to (for round-robin)."""
        return self.conn.execute(select(json_text(_e.detail, "assign")).where(
            _e.action == "rule-assign", json_text(_e.detail, "team").is_not_distinct_from(team))
            .order_by(_e.id.desc()).limit(1)).scalar()


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


def csat_scored(conn: Connection, csat_id: int) -> bool:
    """Whether the survey's links and text carry scores (False: sent before migration 0013, 1 = best)."""
    return bool(_CSAT_SCORED.scalar(conn, {"csat_id": csat_id}))


def csat_ticket(conn: Connection, csat_id: int) -> int:
    """The (surviving) ticket a survey was sent about."""
    pk = _CSAT_TICKET.scalar(conn, {"csat_id": csat_id})
    if pk is None:
        raise LookupError(f"no survey with id {csat_id}")
    return surviving_ticket(conn, pk)
