"""Macros: canned replies (jinja2) plus actions, declared in [[macros]].

A macro is rendered in the templates' sandbox with undefined variables as
errors, so a mistake in a macro is reported before anything is sent.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from inboxd.config import AgentSettings, ConfigError, MailboxSettings, Settings
from inboxd.store.engine import MESSAGE_ORDER
from inboxd.outbound.templates import Templates
from inboxd.desk.views import PRIORITIES, STATUSES

MACRO_KEYS = ("name", "body", "template", "status", "priority", "tags", "assign")


@dataclass(frozen=True)
class Macro:
    name: str
    body: str | None
    template: str | None        # a file under templates/macros/
    status: str | None
    priority: str | None
    tags: tuple[str, ...]
    assign: str | None


def parse_macros(settings: Settings) -> dict[str, Macro]:
    """The [[macros]] of the config, validated; ConfigError names the key."""
    raw = settings.extra.get("macros", [])
    file = settings.path.name
    agents = {a.name for a in settings.agents}
    macros: dict[str, Macro] = {}
    if not isinstance(raw, list):
        raise ConfigError(f"{file}: macros: expected an array of tables ([[macros]])")
    for i, table in enumerate(raw):
        key = f"macros[{i}]"

        def fail(k: str, problem: str):
            raise ConfigError(f"{file}: {key}.{k}: {problem}")

        for k in table:
            if k not in MACRO_KEYS:
                fail(k, f'unknown key "{k}"')
        name = table.get("name")
        if not isinstance(name, str) or not name:
            fail("name", "missing required key")
        if name in macros:
            fail("name", f'duplicate macro name "{name}"')
        body, template = table.get("body"), table.get("template")
        if (body is None) == (template is None):
            fail("body", "give exactly one of body (inline) or template (a file under templates/macros/)")
        for k, allowed in (("status", STATUSES), ("priority", PRIORITIES)):
            if k in table and table[k] not in allowed:
                fail(k, f"must be one of {', '.join(allowed)}, got {table[k]!r}")
        tags = table.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            fail("tags", "expected a list of strings")
        if "assign" in table and table["assign"] not in agents:
            fail("assign", f"unknown agent {table['assign']!r}")
        macros[name] = Macro(name, body, template, table.get("status"), table.get("priority"), tuple(tags),
                             table.get("assign"))
    return macros


def variables(cur: sqlite3.Cursor, settings: Settings, ticket, agent) -> dict[str, Any]:
    """What a macro may use: the ticket, the acting agent, the mailbox, the last customer message."""
    mailbox = settings.mailbox(ticket.mailbox)
    last = cur.execute(
        "SELECT from_addr, from_name, date, subject, text, reply_text FROM message"
        f" WHERE ticket_id = ? AND kind = 'customer' ORDER BY {MESSAGE_ORDER} DESC, id DESC LIMIT 1",
        (ticket.pk,)).fetchone()
    return macro_variables(
        {
            "id": ticket.ref, "subject": ticket.subject, "status": ticket.status, "priority": ticket.priority,
            "tags": list(ticket.tags), "assignee": ticket.assignee,
            "requester": {"name": ticket.requester_name, "email": ticket.requester},
        },
        agent, mailbox,
        dict(zip(("from", "from_name", "date", "subject", "text", "reply_text"), last)) if last else None,
    )


def macro_variables(ticket: dict[str, Any], agent: AgentSettings, mailbox: MailboxSettings,
                    message: dict[str, Any] | None) -> dict[str, Any]:
    """The variables a macro renders with, from plain values (check-config renders samples through it)."""
    return {
        "ticket": ticket,
        "agent": {"name": agent.name, "email": agent.email},
        "mailbox": {"name": mailbox.name, "address": mailbox.address, "display_name": mailbox.display_name},
        "message": message,
    }


def render(templates: Templates, macro: Macro, values: dict[str, Any]) -> str:
    if macro.body is not None:
        return templates.render_string(macro.body, values, name=f"macro {macro.name}")
    # Through the template loader, so a deployment's templates/macros/ is
    # searched before the shipped one and a name cannot reach outside them.
    return templates.render_file(f"macros/{macro.template}", values)
