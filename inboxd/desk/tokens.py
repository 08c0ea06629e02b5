"""API tokens for agents on other machines: make them, check them, list and revoke them.

A token is a random secret that the agent's CLI sends over TLS
(`$INBOXD_TOKEN`); the store keeps only its SHA-256 (inboxd.store.tokens).
The pure part says what a secret looks like and whether a token may still be
used at `now`; `verify` is what the daemon's server asks for every request
over TCP; `create_token`, `list_for` and `revoke_token` are the API's
`token_create`, `token_list` and `token_revoke` (inboxd.api.handlers).

Who may do what: an agent makes, sees and revokes their own tokens; an admin
(and the store's owner) those of anyone.  Every token made or revoked is an
event with no ticket in the audit log, with who, how and from where.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from inboxd.api.identity import Caller, Refused
from inboxd.config import Settings
from inboxd.desk.views import NotFound, iso
from inboxd.desk.workflow import PermissionDenied, WorkflowError
from inboxd.store import tokens as store
from inboxd.store.engine import reading, writing
from inboxd.store.events import add_event

log = logging.getLogger("inboxd.tokens")

# Every secret starts with this, so a token pasted into a ticket, a chat or a
# repository is easy to find with grep (and by secret scanners).
PREFIX = "ibx_"
# The longest lifetime `--days` may ask for: ten years is "no expiry" in
# practice, and a bound keeps the date arithmetic in range.
MAX_DAYS = 3650
MAX_LABEL = 200


# -- pure -------------------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh secret: the prefix and 32 random bytes, URL-safe base64 (43 characters)."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The hex SHA-256 that the store keeps in place of the secret.

    A plain hash is enough here, and a slow password hash (bcrypt, argon2)
    would only cost time on every request: the secret is 256 random bits,
    not something a person chose, so there is no dictionary to try and
    guessing it is out of reach however fast the hash is.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def refusal(row: dict, now: datetime) -> str | None:
    """Why the token `row` (as inboxd.store.tokens.get returns it) may not be used at `now`, or None."""
    if row["revoked_at"] is not None:
        by = f" by {row['revoked_by']}" if row.get("revoked_by") else ""
        return f"revoked on {iso(row['revoked_at'])}{by}"
    if row["expires_at"] <= now:
        return f"expired on {iso(row['expires_at'])}"
    return None


def _public(row: dict) -> dict:
    """A token as the API shows it: times as ISO 8601 strings, never the secret or its hash."""
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()}


def _who(caller: Caller) -> str:
    """Who made or revoked a token, for its row: the agent, and the admin or owner behind an --as."""
    return caller.agent.name if caller.by is None else f"{caller.agent.name} ({caller.by})"


def _may_manage(caller: Caller, agent: str) -> bool:
    return caller.owner or caller.role == "admin" or caller.agent.name == agent


# -- for the server ---------------------------------------------------------------------------------


def verify(engine: Engine, secret: str, now: datetime) -> tuple[str, int]:
    """The agent and token id of a request's secret; `Refused` (401) if unknown, revoked or expired.

    The refusal (and its line in the log) names the token's id, never the secret.  Its last use is
    written at most once a minute (inboxd.store.tokens.touch), so most
    requests only read.
    """
    secret = (secret or "").strip()
    if not secret:
        raise Refused("no API token: set $INBOXD_TOKEN (inboxd token create makes one)", status=401)
    with reading(engine) as conn:
        row = store.find(conn, hash_secret(secret))
    if row is None:
        # Named by nothing but its first characters: the log never holds a usable secret.
        log.info("refused an unknown API token (%s…)", secret[:len(PREFIX) + 2])
        raise Refused("unknown API token: it may have been mistyped or deleted; inboxd token create makes a new one",
                      status=401)
    why = refusal(row, now)
    if why is not None:
        log.info("refused API token %s of %s: %s", row["id"], row["agent"], why)
        verb = "was " if why.startswith("revoked") else ""
        raise Refused(f"API token {row['id']} of {row['agent']} {verb}{why}; inboxd token create makes a new one",
                      status=401)
    if row["last_used_at"] is None or now - row["last_used_at"] >= store.TOUCH_EVERY:
        with writing(engine) as conn:
            store.touch(conn, row["id"], now)
    return row["agent"], row["id"]


# -- the API's operations ---------------------------------------------------------------------------


def create_token(engine: Engine, caller: Caller, *, agent: str | None, days: int | None, label: str,
                 settings: Settings, now: datetime) -> dict:
    """Make a token for `agent` (default: the caller) lasting `days` (default: [api] token_days).

    Returns {"id", "agent", "label", "token", "expires_at"}: "token" is the
    secret, which is shown this once and never stored.
    """
    target = agent or caller.agent.name
    if settings.agent(target) is None:
        raise WorkflowError(f"unknown agent {target!r}; known agents: {', '.join(a.name for a in settings.agents)}")
    if not _may_manage(caller, target):
        raise PermissionDenied(f"{caller.agent.name} may make tokens for themselves only; an admin makes them"
                               f" for {target}")
    days = settings.api.token_days if days is None else days
    if not 1 <= days <= MAX_DAYS:
        raise WorkflowError(f"days must be from 1 to {MAX_DAYS}, got {days}")
    label = " ".join((label or "").split())
    if len(label) > MAX_LABEL:
        raise WorkflowError(f"the label is {len(label)} characters long; at most {MAX_LABEL}")
    secret = new_secret()
    expires_at = now.astimezone(UTC) + timedelta(days=days)
    with writing(engine) as conn:
        tid = store.create(conn, agent=target, label=label, secret_hash=hash_secret(secret),
                           created_by=_who(caller), now=now, expires_at=expires_at)
        add_event(conn, None, now, caller.agent.name, "token-create",
                  {"token": tid, "agent": target, "label": label, "expires_at": iso(expires_at),
                   **caller.detail()})
    return {"id": tid, "agent": target, "label": label, "token": secret, "expires_at": iso(expires_at)}


def list_for(engine: Engine, caller: Caller) -> list[dict]:
    """The tokens the caller may see, newest first: everyone's for an admin, else their own."""
    everyone = caller.owner or caller.role == "admin"
    with reading(engine) as conn:
        return store.list_tokens(conn, None if everyone else caller.agent.name)


def revoke_token(engine: Engine, caller: Caller, tid: int, now: datetime) -> dict:
    """Revoke token `tid` from `now` on; revoking it again changes nothing and says when it was revoked."""
    # An id past the 64-bit columns cannot exist; asking the database would only fail.
    with writing(engine) as conn:
        row = store.get(conn, tid) if 0 < tid < 2 ** 63 else None
        if row is None:
            raise NotFound(f"no token {tid}")
        if not _may_manage(caller, row["agent"]):
            raise PermissionDenied(f"token {tid} belongs to {row['agent']}; {caller.agent.name} may revoke"
                                   " their own tokens only")
        if store.revoke(conn, tid, _who(caller), now):
            add_event(conn, None, now, caller.agent.name, "token-revoke",
                      {"token": tid, "agent": row["agent"], **caller.detail()})
            row = store.get(conn, tid)
    return _public(row)
