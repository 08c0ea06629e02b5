"""The words of mail to agents and supervisors, in each reader's own language and time zone.

Notifications, alerts and the morning digest are rendered from the
templates `notification/`, `alert/<name>.txt` and `digest/` in the agent's
`language` (en, zh or zh-Hant; zh-Hant falls back to zh, then English), and
every time in them is written in the agent's zone the way their language
writes a date (`inboxd.localtime.format_local`), never as UTC.  An `Alert`
is a headline whose variables are formatted only once the reader is known,
so one alert sent to several supervisors reads right for each.  This module
only renders text; `workflow.notify_agent` and the duties queue the mail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from inboxd.config import AgentSettings, Settings
from inboxd.desk.language import agent_headline
from inboxd.desk.sla import human
from inboxd.localtime import format_local
from inboxd.outbound.templates import Templates


# The alert/ templates inboxd itself uses (check-config renders each).
ALERTS = ("assigned", "new_ticket", "customer_wrote", "sla_warning", "sla_breach", "unassigned", "pending")


@dataclass(frozen=True)
class Alert:
    """A notification's first sentence, rendered from `alert/<name>.txt` for each reader.

    Datetimes among the variables are written in the reader's zone and
    language, timedeltas in words of their language.
    """

    name: str
    variables: Mapping[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=8)
def templates_for(roots: tuple[Path, ...]) -> Templates:
    """One Templates per search path: Jinja keeps each compiled template, and checks its file's time."""
    return Templates(roots)


def reader_values(settings: Settings, agent: AgentSettings, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with each datetime and timedelta written for `agent` (nested mappings too)."""
    zone = settings.policies.agent_zone(agent)

    def one(value: Any) -> Any:
        if isinstance(value, datetime):
            return format_local(value, zone, agent.language)
        if isinstance(value, timedelta):
            return human(timedelta(seconds=int(value.total_seconds()) // 60 * 60), agent.language)
        if isinstance(value, Mapping):
            return {k: one(v) for k, v in value.items()}
        return value
    return {k: one(v) for k, v in values.items()}


def headline_text(settings: Settings, agent: AgentSettings, headline: str | Mapping[str, str] | Alert) -> str:
    """The first sentence of a notification, for `agent`."""
    if isinstance(headline, Alert):
        text = templates_for(settings.template_dirs).render(
            f"alert/{headline.name}.txt", reader_values(settings, agent, headline.variables),
            language=agent.language)
        return " ".join(text.split())
    return agent_headline(headline, agent.language)


def notification_text(settings: Settings, agent: AgentSettings, *, headline: str, ticket: Mapping[str, Any],
                      customer: Mapping[str, str], latest: str | None) -> str:
    """The body of a notification about one ticket (templates `notification/body.txt`)."""
    variables = {"headline": headline, "ticket": dict(ticket), "customer": dict(customer), "latest": latest,
                 "agent": {"name": agent.name, "label": agent.label}}
    return templates_for(settings.template_dirs).render("notification/body.txt", variables,
                                                        language=agent.language)


@dataclass(frozen=True)
class DigestLine:
    """One open ticket in an agent's morning digest."""

    ref: str
    subject: str
    status: str
    priority: str
    due: datetime | None
    state: str              # "breached", "due_soon" (within a day) or ""


def digest_text(settings: Settings, agent: AgentSettings, day: str, lines: Sequence[DigestLine]
                ) -> tuple[str, str]:
    """(subject, body) of an agent's morning digest (templates `digest/`)."""
    zone = settings.policies.agent_zone(agent)
    tickets = [{"ref": x.ref, "subject": x.subject, "status": x.status, "priority": x.priority,
                "due": format_local(x.due, zone, agent.language), "state": x.state} for x in lines]
    variables = {
        "agent": {"name": agent.name, "label": agent.label},
        "day": day,
        "tickets": tickets,
        "count": len(tickets),
        "breached": sum(x.state == "breached" for x in lines),
        "due_soon": sum(x.state == "due_soon" for x in lines),
    }
    templates = templates_for(settings.template_dirs)
    subject = templates.render("digest/subject.txt", variables, language=agent.language)
    body = templates.render("digest/body.txt", variables, language=agent.language)
    return " ".join(subject.split()), body
