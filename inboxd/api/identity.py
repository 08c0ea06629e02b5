"""Who is calling: the agent a Unix user, a token or the store's owner is, and who they act as.

Pure: the server hands in what the kernel (SO_PEERCRED) or the token table
said, and gets back a `Caller` or a `Refused` with the reason in one line.
Every change a caller makes records `Caller.detail()` in the ticket's history:
how it came (cli, api, mail), from where, and the admin behind an `--as`.
"""

from __future__ import annotations

from dataclasses import dataclass

from inboxd.config import AgentSettings, Settings


class Refused(Exception):
    """The caller may not do this; `status` is the HTTP status (401 unknown, 403 not allowed)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    agent: AgentSettings
    # "cli": the store's owner, in-process; "api": through the daemon's socket or TCP; "mail": an agent's mail.
    via: str
    # Where from, as people read it: "unix user alice (uid 1001)", "token 3 from 10.0.0.5", "store owner root".
    origin: str
    # The admin (or the store's owner) who acts as `agent` with --as, if any.
    by: str | None = None
    owner: bool = False

    @property
    def role(self) -> str:
        return self.agent.role

    def detail(self) -> dict:
        """What every history event of this caller records beside its own detail."""
        out = {"via": self.via, "origin": self.origin}
        if self.by is not None:
            out["by"] = f"{self.by} acting as {self.agent.name}"
        return out


def _acting(settings: Settings, me: AgentSettings, acting_as: str | None, via: str, origin: str) -> Caller:
    if not acting_as or acting_as == me.name:
        return Caller(me, via, origin)
    if me.role != "admin":
        raise Refused(f"--as is for admins; {me.name} is an {me.role}")
    other = settings.agent(acting_as)
    if other is None:
        raise Refused(f"unknown agent {acting_as!r}", status=400)
    return Caller(other, via, origin, by=f"admin {me.name}")


def for_unix_user(settings: Settings, user: str, uid: int, acting_as: str | None = None) -> Caller:
    """The caller on the Unix socket: the agent whose `login` is the user the kernel reported."""
    me = settings.agent_by_login(user)
    if me is None:
        raise Refused(f"Unix user {user} (uid {uid}) is not an agent of this desk;"
                      " an admin adds them as [[agents]] login in inboxd.toml", status=401)
    return _acting(settings, me, acting_as, "api", f"unix user {user} (uid {uid})")


def for_token(settings: Settings, agent_name: str, token_id: int, peer: str, acting_as: str | None = None) -> Caller:
    """The caller over TCP: the agent a valid token belongs to."""
    me = settings.agent(agent_name)
    if me is None:
        raise Refused(f"token {token_id} belongs to {agent_name}, who is no longer an agent", status=401)
    return _acting(settings, me, acting_as, "api", f"token {token_id} from {peer}")


def for_owner(settings: Settings, user: str, agent: AgentSettings, *, acting: bool) -> Caller:
    """The store's owner (Unix `user`) running a command directly as `agent`; with --as (`acting`) as
    another agent than their own, the history says so ("store owner root acting as alice")."""
    mine = settings.agent_by_login(user)
    by = f"store owner {user}" if acting and (mine is None or mine.name != agent.name) else None
    return Caller(agent, "cli", f"store owner {user}", by=by, owner=True)
