"""Macros: canned replies (jinja2) plus actions, declared in [[macros]].

``read_macros`` validates the ``[[macros]]`` while ``inboxd.config`` reads the
file, so a broken macro fails the load and ``settings.macros`` holds them,
frozen.  A macro is rendered in the templates' sandbox with undefined
variables as errors, so a mistake in a macro is reported before anything is
sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from inboxd.config import AgentSettings, MailboxSettings, Settings, Table, show
from inboxd.vocabulary import PRIORITIES, STATUSES

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from inboxd.outbound.templates import Templates

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


def read_macros(top: Table, *, agents: tuple[AgentSettings, ...]) -> Mapping[str, Macro]:
    """The ``[[macros]]`` of the whole config file ``top``, validated; ConfigError names the key."""
    known = {a.name for a in agents}
    macros: dict[str, Macro] = {}
    for table in top.tables("macros", MACRO_KEYS):
        name = table.string("name")
        if not name.strip():
            table.fail("name", "must not be empty")
        if name in macros:
            table.fail("name", f"duplicate macro name {show(name)}")
        if ("body" in table.data) == ("template" in table.data):
            table.fail("body", "give exactly one of body (inline) or template (a file under templates/macros/)")
        assign = _optional(table, "assign")
        if assign is not None and assign not in known:
            table.fail("assign", f"unknown agent {show(assign)}")
        macros[name] = Macro(
            name=name,
            body=_optional(table, "body"),
            template=_optional(table, "template"),
            status=table.choice("status", "", STATUSES) if "status" in table.data else None,
            priority=table.choice("priority", "", PRIORITIES) if "priority" in table.data else None,
            tags=table.strings("tags", ()),
            assign=assign,
        )
    return MappingProxyType(macros)


def _optional(table: Table, key: str) -> str | None:
    return table.string(key) if key in table.data else None


def variables(conn: Connection, settings: Settings, ticket, agent) -> dict[str, Any]:
    """What a macro may use: the ticket, the acting agent, the mailbox, the last customer message."""
    # Imported here: this module is loaded while the config is read, which
    # should not have to load the database layer.
    from inboxd.store.messages import last_customer_message

    mailbox = settings.mailbox(ticket.mailbox)
    last = last_customer_message(conn, ticket.pk)
    message = None if last is None else {
        "from": last.from_addr, "from_name": last.from_name, "date": _stored_text(last.date),
        "subject": last.subject, "text": last.text, "reply_text": last.reply_text,
    }
    return macro_variables(
        {
            "id": ticket.ref, "subject": ticket.subject, "status": ticket.status, "priority": ticket.priority,
            "tags": list(ticket.tags), "assignee": ticket.assignee,
            "requester": {"name": ticket.requester_name, "email": ticket.requester},
        },
        agent, mailbox, message,
    )


def _stored_text(at: datetime | None) -> str | None:
    """A message's date as macros have always shown it: "2026-11-30 10:00:00.000000", UTC."""
    if at is None:
        return None
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


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
