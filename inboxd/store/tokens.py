"""API tokens (the `api_token` table): make, find, list, revoke and mark used.

Only the SHA-256 of a token's secret is stored (inboxd.desk.tokens decides
what the secret is and whether a token may still be used); these functions
never see the secret and never hand out the hash.  `get` and `find` return
the row with aware UTC datetimes, for the desk's checks; `list_tokens` is
for people and `--json`, with ISO 8601 UTC strings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Row, insert, or_, select, update

from inboxd.store.sql import t

# How stale last_used_at may get: a token used all day long is written once a
# minute, not on every request, so that a read through the API stays a read.
TOUCH_EVERY = timedelta(minutes=1)

# Every column but the hash, in the order the JSON shows them.
_SHOWN = ("id", "agent", "label", "created_at", "created_by", "expires_at", "revoked_at", "revoked_by",
          "last_used_at")


def _columns():
    return [t.api_token.c[name] for name in _SHOWN]


def _as_dict(row: Row | None) -> dict | None:
    return None if row is None else dict(row._mapping)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create(conn: Connection, *, agent: str, label: str, secret_hash: str, created_by: str, now: datetime,
           expires_at: datetime) -> int:
    """Store a new token and return its id."""
    result = conn.execute(insert(t.api_token).values(
        agent=agent, label=label, secret_hash=secret_hash, created_at=now, created_by=created_by,
        expires_at=expires_at))
    return int(result.inserted_primary_key[0])


def list_tokens(conn: Connection, agent: str | None) -> list[dict]:
    """The tokens of `agent` (None: everyone's), newest first, with times as ISO 8601 UTC strings."""
    a = t.api_token
    query = select(*_columns()).order_by(a.c.created_at.desc(), a.c.id.desc())
    if agent is not None:
        query = query.where(a.c.agent == agent)
    out = []
    for row in conn.execute(query):
        item = dict(row._mapping)
        for name in ("created_at", "expires_at", "revoked_at", "last_used_at"):
            item[name] = _iso(item[name])
        out.append(item)
    return out


def get(conn: Connection, tid: int) -> dict | None:
    """One token by its id (without the hash), or None."""
    return _as_dict(conn.execute(select(*_columns()).where(t.api_token.c.id == tid)).first())


def find(conn: Connection, secret_hash: str) -> dict | None:
    """The token whose secret hashes to `secret_hash` (the hash itself left out), or None."""
    return _as_dict(conn.execute(select(*_columns()).where(t.api_token.c.secret_hash == secret_hash)).first())


def revoke(conn: Connection, tid: int, by: str, now: datetime) -> bool:
    """Revoke a token; False when there is no such token or it was revoked already (the first revocation stays)."""
    a = t.api_token
    result = conn.execute(update(a).where(a.c.id == tid, a.c.revoked_at.is_(None))
                          .values(revoked_at=now, revoked_by=by))
    return result.rowcount == 1


def touch(conn: Connection, tid: int, now: datetime) -> None:
    """Record that the token was used at `now`, unless that was recorded less than a minute ago."""
    a = t.api_token
    conn.execute(update(a).where(a.c.id == tid,
                                 or_(a.c.last_used_at.is_(None), a.c.last_used_at <= now - TOUCH_EVERY))
                 .values(last_used_at=now))
