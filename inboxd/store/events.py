"""The audit log: who did what to which ticket, and when (the `event` table).

Every change the workflow (or ingest, or a duty) makes to a ticket adds one
row here in the transaction of the change; `inboxd history` and `inboxd show`
read them back in the order they happened.  `detail` is a small mapping,
kept as JSON text.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, Row, insert, select

from inboxd.store.sql import t


def add_event(conn: Connection, ticket_pk: int | None, at: datetime, actor: str, action: str,
              detail: dict | None = None) -> None:
    """Record one audit event."""
    conn.execute(insert(t.event).values(ticket_id=ticket_pk, at=at, actor=actor, action=action,
                                        detail=json.dumps(detail or {}, ensure_ascii=False)))


def add_events(conn: Connection, events: list[dict]) -> None:
    """Record several events in one batch; each dict has ticket_pk, at, actor, action and detail."""
    if not events:
        return
    conn.execute(insert(t.event), [
        {"ticket_id": e["ticket_pk"], "at": e["at"], "actor": e["actor"], "action": e["action"],
         "detail": json.dumps(e.get("detail") or {}, ensure_ascii=False)}
        for e in events])


def ticket_events(conn: Connection, ticket_pk: int) -> list[Row]:
    """A ticket's events, oldest first: rows of (at, actor, action, detail) with `detail` as JSON text."""
    e = t.event
    return conn.execute(select(e.c.at, e.c.actor, e.c.action, e.c.detail)
                        .where(e.c.ticket_id == ticket_pk).order_by(e.c.at, e.c.id)).all()


def desk_events(conn: Connection, actions: tuple[str, ...], limit: int) -> list[Row]:
    """The newest events with no ticket (the access log: exports, per-agent reports, tokens), newest first."""
    e = t.event
    return conn.execute(select(e.c.at, e.c.actor, e.c.action, e.c.detail)
                        .where(e.c.ticket_id.is_(None), e.c.action.in_(list(actions)))
                        .order_by(e.c.id.desc()).limit(limit)).all()


def recorded_language(conn: Connection, ticket_pk: int) -> str | None:
    """The customer's written language recorded when the ticket was created (inboxd.desk.language), if any."""
    e = t.event
    detail = conn.execute(select(e.c.detail).where(e.c.ticket_id == ticket_pk, e.c.action == "created")
                          .order_by(e.c.id).limit(1)).scalar()
    if not detail:
        return None
    language = json.loads(detail).get("language")
    return language if isinstance(language, str) else None
