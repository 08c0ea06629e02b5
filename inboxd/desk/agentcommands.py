"""Run an agent's commands by mail, once their mail is filed: as that agent, through the API's handlers.

Filing decided (inboxd.desk.decide, `Disposition.commands`) and recorded
the commands in its own transaction (`record`, called by the apply stage).
Here they run, each as one operation of the daemon's API
(`inboxd.api.handlers.handle`) for a `Caller` that is the agent with
via "mail", so a command by mail can do exactly what the agent could do
with the CLI, and the history says how it came.  The handlers open their
own transactions, so the run is made exactly-once by rows (see
inboxd.store.mailcommands): each command's origin is unique, a command
whose origin is already in the ticket's history is not run again after a
restart, and the mail is marked done, with the one reply to the agent
about any refusal, in one transaction at the end.

A refusal never reaches the customer: the reply goes to the agent alone,
rendered from templates `commands/` in the agent's language.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine

from inboxd.config import AgentSettings, Settings
from inboxd.desk import mailcommands
from inboxd.desk.agentmail import templates_for
from inboxd.desk.mailcommands import CommandError, Plan
from inboxd.desk.threads import TicketTag
from inboxd.store import mailcommands as rows
from inboxd.store.engine import reading, writing
from inboxd.store.events import add_event
from inboxd.store.tickets import ref_of

log = logging.getLogger("inboxd.desk.agentcommands")


def record(conn: Connection, settings: Settings, *, ticket_pk: int, ref: str, agent: AgentSettings, plan: Plan,
           key: str, origin: dict, at: datetime, now: datetime) -> bool:
    """In the filing transaction: keep the commands to run after it, or tell the agent of the refusal.

    Returns whether commands now wait to run.
    """
    if plan.refused:
        add_event(conn, ticket_pk, at, agent.name, "mail-commands",
                  {"refused": [{"line": e.line, "reason": e.reason} for e in plan.refused], "trust": plan.trust,
                   **origin})
        tell_agent(conn, settings, ref, agent, plan.refused, now)
        return False
    if not plan.run or not rows.record_pending(conn, ticket_pk, key, now):
        return False
    add_event(conn, ticket_pk, at, agent.name, "mail-commands",
              {"key": key, "agent": agent.name, "commands": [c.line for c in plan.run], "trust": plan.trust,
               "at": at.isoformat(), **origin})
    return True


def run_pending(engine: Engine, settings: Settings, now: datetime,
                places: Sequence[tuple[str, str]] | None = None) -> int:
    """Run every mail's commands that wait (of the (mailbox, folder) `places` only, if given); returns how many
    mails were finished."""
    with reading(engine) as conn:
        waiting = rows.pending(conn)
    finished = 0
    for ticket_pk, key in waiting:
        mailbox, folder, _message_key = _place(key)
        if places is not None and (mailbox, folder) not in places:
            continue
        try:
            finished += run_one(engine, settings, ticket_pk, key, now)
        except Exception:  # One mail's commands never stop the others (they wait for the next pass).
            log.exception("commands by mail %s on ticket %s failed; they are tried again", key, ticket_pk)
    return finished


def _place(key: str) -> tuple[str, str, str]:
    mailbox, folder, message_key = json.loads(key)
    return mailbox, folder, message_key


def run_one(engine: Engine, settings: Settings, ticket_pk: int, key: str, now: datetime) -> bool:
    """Run one mail's commands that have not run yet; True when this call finished the mail."""
    from inboxd.api.handlers import ApiError, handle
    from inboxd.api.identity import Caller

    with reading(engine) as conn:
        detail = rows.recorded(conn, ticket_pk, key)
        ref = ref_of(conn, ticket_pk)
    refused: list[CommandError] = []
    agent = settings.agent(detail["agent"]) if detail else None
    if detail is None or agent is None or ref is None:
        # The agent left the desk (or the record is gone): nothing runs, and the mail is finished.
        with writing(engine) as conn:
            return rows.finish(conn, ticket_pk, key, now)
    parsed = mailcommands.parse("\n".join(detail["commands"]))
    since = _since(detail)
    for i, command in enumerate(parsed.actions, 1):
        origin = f"{detail.get('origin', 'mail')}, command {i} of <{_place(key)[2]}>"
        with reading(engine) as conn:
            if rows.ran(conn, ticket_pk, origin, since):
                continue
        op, params = mailcommands.call(command, ref)
        try:
            handle(op, params, Caller(agent, "mail", origin), settings=settings, engine=engine, now=now)
        except ApiError as exc:
            if not already(exc):
                refused.append(CommandError(command.line, str(exc)))
    with writing(engine) as conn:
        if not rows.finish(conn, ticket_pk, key, now):
            return False
        if refused:
            add_event(conn, ticket_pk, now, agent.name, "mail-commands-refused",
                      {"refused": [{"line": e.line, "reason": e.reason} for e in refused], "via": "mail",
                       "origin": detail.get("origin", "")})
            tell_agent(conn, settings, ref, agent, refused, now)
    log.info("<%s> commands by mail on %s: %d ran, %d refused", _place(key)[2], ref,
             len(parsed.actions) - len(refused), len(refused))
    return True


def already(exc) -> bool:
    """Whether a refusal only says the ticket is as asked already ("T-1000 is already pending", "already has
    vip", "is already yours"): the agent got what they asked for, so it is not reported as a refusal.  (An
    agent's answer moves the ticket to pending by itself, so "#pending" above an answer would otherwise
    always be refused.)"""
    return getattr(exc, "status", None) == 400 and " already " in f" {exc} "


def _since(detail: dict) -> datetime:
    """Events of the commands are written after the mail arrived: a lower bound for `rows.ran`'s scan."""
    return datetime(1970, 1, 1, tzinfo=UTC) if "at" not in detail else datetime.fromisoformat(detail["at"])


def refusal_text(settings: Settings, agent: AgentSettings, ref: str, ticket_subject: str,
                 refused: Sequence[CommandError]) -> tuple[str, str]:
    """(subject, body) of the reply about refused commands, in the agent's language (templates `commands/`)."""
    variables = {"agent": {"name": agent.name, "label": agent.label},
                 "ticket": {"id": ref, "subject": ticket_subject},
                 "refused": [{"line": e.line, "reason": e.reason} for e in refused]}
    templates = templates_for(settings.template_dirs)
    subject = " ".join(templates.render("commands/subject.txt", variables, language=agent.language).split())
    return subject, templates.render("commands/body.txt", variables, language=agent.language)


def tell_agent(conn: Connection, settings: Settings, ref: str, agent: AgentSettings,
               refused: Sequence[CommandError], now: datetime) -> None:
    """Queue the one reply to `agent` about the commands of their mail that did not run.

    Sent like the agent's notifications (inboxd.desk.workflow.queue_to_agent): automatic, from the
    mailbox, threaded with the ticket's notifications; never to the customer.
    """
    from inboxd.desk.workflow import load, queue_to_agent

    ticket = load(conn, ref)
    subject, text = refusal_text(settings, agent, ref, ticket.subject, refused)
    queue_to_agent(conn, settings, TicketTag(settings.tickets.id_format, settings.tickets.tag_format), ticket,
                   agent, subject, text, now)


__all__ = ["record", "refusal_text", "run_one", "run_pending", "tell_agent"]
