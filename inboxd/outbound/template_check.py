"""check-config's template check: render every template the config uses, once, with sample variables.

A template that is missing, does not compile or uses a variable inboxd does
not give it would otherwise surface only when it is needed: a new ticket's
mail quarantined over its acknowledgement, a survey or the weekly report
never sent.  Here each one is rendered with realistic values, built where
possible by the same functions that build them for real mail (`ack_content`,
`survey_variables`, `mail_variables`, `macro_variables`), so the samples
cannot drift from what the daemon passes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from inboxd.config import MailboxSettings, Settings
from inboxd.desk.language import CHINESE
from inboxd.desk.policies import Policies
from inboxd.outbound.templates import TemplateError, Templates

# A fixed instant, so the check renders the same text on every run.
SAMPLE_NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
# The charts of the weekly report (inboxd.reports.charts.report_charts), by name.
REPORT_CHARTS = ("volume", "first_response", "csat", "backlog")


def check_templates(settings: Settings) -> list[str]:
    """One line per broken template: the template and the problem (TemplateError names the file)."""
    templates = Templates(settings.template_dirs)
    problems: list[str] = []
    for what, render in _renderings(settings, settings.policies, templates):
        try:
            render()
        except TemplateError as exc:
            problems.append(f"{what}: {exc}")
    return list(dict.fromkeys(problems))


def _renderings(settings: Settings, policies: Policies, templates: Templates):
    """(description, zero-argument render call) for each template the config uses."""
    acks = ["ack"] + sorted({rule.actions["autoreply"] for rule in policies.rules.rules
                             if isinstance(rule.actions.get("autoreply"), str)})
    # A Chinese mailbox writes to each customer in their script: both sets of templates are used.
    variants = [replace(mailbox, language=language) for mailbox in settings.mailboxes
                for language in (CHINESE if mailbox.language in CHINESE else (mailbox.language,))]
    for mailbox in variants:
        where = f"for mailbox {mailbox.name} ({mailbox.language})"
        if settings.autoreply.enabled and mailbox.ack:
            for name in acks:
                # Both shapes of the SLA promise: none applies, and one does.
                for sla in (None, _sample_promise(mailbox)):
                    yield f"template {name} {where}", \
                        lambda m=mailbox, n=name, s=sla: _ack(settings, templates, m, n, s)
        if policies.sla and policies.scheduler.escalation_update:
            yield f"template escalation {where}", lambda m=mailbox: _customer_mail(
                settings, templates, m, "escalation", {"reason": "SLA breached: first response"})
        if policies.scheduler.pending_followup:
            yield f"template followup {where}", lambda m=mailbox: _customer_mail(
                settings, templates, m, "followup", {})
        if policies.csat.enabled:
            yield f"template csat {where}", lambda m=mailbox: _survey(settings, policies, templates, m)
    # The weekly report (and `inboxd report --format html`), with and without the per-agent section,
    # in English and each supervisor's language; the agents' mail in each agent's language.
    report_languages = ["en", *(a.language for a in settings.agents if a.role in ("supervisor", "admin"))]
    for language in dict.fromkeys(report_languages):
        what = "template report" if language == "en" else f"template report ({language})"
        yield what, lambda lang=language: _report(settings, templates, lang)
    if settings.mailboxes:
        for language in dict.fromkeys(a.language for a in settings.agents):
            yield f"agent mail ({language})", lambda lang=language: _agent_mail(settings, lang)
    if settings.mailboxes and settings.agents:
        for macro in settings.macros.values():
            yield f"macro {macro.name}", lambda m=macro: _macro(settings, templates, m)


def _sample_ticket(settings: Settings) -> dict[str, Any]:
    from inboxd.desk.threads import TicketTag

    tags = TicketTag(settings.tickets.id_format, settings.tickets.tag_format)
    ref = settings.tickets.id_format.format(seq=settings.tickets.first_seq)
    return {"ref": ref, "tag": tags.tag(ref), "tags": tags, "subject": "Charged twice for order 7731",
            "requester": "carlos@example.es", "requester_name": "Carlos Ruiz"}


def _sample_promise(mailbox: MailboxSettings) -> dict[str, str]:
    from inboxd.desk.sla import human
    from inboxd.localtime import format_local, machine_zone

    # As the acknowledgement writes it: the mailbox's zone, named (desk/apply.py's _promise).
    due = format_local(datetime(2026, 11, 23, 9, 0, tzinfo=UTC), mailbox.timezone or machine_zone(),
                       mailbox.language, marker=True)
    return {"first_response": human(timedelta(hours=4), mailbox.language), "first_response_due": due}


def _ack(settings: Settings, templates: Templates, mailbox: MailboxSettings, name: str, sla: dict | None) -> None:
    from inboxd.outbound.outbox import TicketView, ack_content

    t = _sample_ticket(settings)
    # The creation time in the text form outbox.load_ticket gives templates (UTC, with microseconds).
    ticket = TicketView(pk=1, ref=t["ref"], subject=t["subject"], status="new", priority="normal",
                        requester=t["requester"], requester_name=t["requester_name"],
                        created_at=SAMPLE_NOW.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))
    ack_content(templates, t["tags"], mailbox, ticket, sla=sla, template=name)


def _mailbox_values(mailbox: MailboxSettings) -> dict[str, str]:
    return {"name": mailbox.name, "address": mailbox.address, "display_name": mailbox.display_name}


def _customer_mail(settings: Settings, templates: Templates, mailbox: MailboxSettings, name: str,
                   extra: dict[str, Any]) -> None:
    # The variables of inboxd.desk.duties.Duties._mail_customer.
    t = _sample_ticket(settings)
    variables = {
        "ticket": {"id": t["ref"], "subject": t["subject"], "tag": t["tag"], "status": "open"},
        "customer": {"name": t["requester_name"], "email": t["requester"]},
        "mailbox": _mailbox_values(mailbox),
        **extra,
    }
    for part in ("subject.txt", "body.txt"):
        templates.render(f"{name}/{part}", variables, mailbox=mailbox.name, language=mailbox.language)


def _survey(settings: Settings, policies: Policies, templates: Templates, mailbox: MailboxSettings) -> None:
    from inboxd.desk.csat import survey_variables

    t = _sample_ticket(settings)
    variables = survey_variables(
        {"id": t["ref"], "subject": t["subject"], "tag": t["tag"]},
        {"name": t["requester_name"], "email": t["requester"]}, _mailbox_values(mailbox),
        policies.csat.scale, language=mailbox.language, mailbox_address=mailbox.address,
        token="abcdefghijklmnopqrst")
    for part in ("subject.txt", "body.txt"):
        templates.render(f"csat/{part}", variables, mailbox=mailbox.name, language=mailbox.language)


def _agent_mail(settings: Settings, language: str) -> None:
    # The notification, every alert and the digest, as inboxd.desk.agentmail renders them.
    from inboxd.config import AgentSettings
    from inboxd.desk import agentmail

    t = _sample_ticket(settings)
    agent = AgentSettings(name="sample", email="sample@example.com", display_name="Sample", language=language)
    mailbox = settings.mailboxes[0]
    values = {"ticket": {"id": t["ref"], "priority": "urgent"}, "actor": "Sample", "target": "first_response",
              "tier": 2, "due": SAMPLE_NOW, "waited": timedelta(hours=5),
              "mailbox": {"name": mailbox.name, "display_name": mailbox.display_name}}
    for name in agentmail.ALERTS:
        line = agentmail.headline_text(settings, agent, agentmail.Alert(name, values))
        agentmail.notification_text(
            settings, agent, headline=line,
            ticket={"id": t["ref"], "subject": t["subject"], "status": "open", "priority": "urgent",
                    "assignee": "Sample"},
            customer={"name": t["requester_name"], "email": t["requester"]}, latest="Hello,\n\nI was charged twice.")
    agentmail.digest_text(settings, agent, SAMPLE_NOW.date().isoformat(), [
        agentmail.DigestLine(t["ref"], t["subject"], "open", "urgent", SAMPLE_NOW, "due_soon"),
        agentmail.DigestLine(t["ref"], t["subject"], "pending", "normal", None, "")])
    # The reply about commands by mail that did not run (inboxd.desk.agentcommands).
    from inboxd.desk.agentcommands import refusal_text
    from inboxd.desk.mailcommands import CommandError

    refusal_text(settings, agent, t["ref"], t["subject"], [CommandError("#assign bob", "not run: a sample reason")])


def _report(settings: Settings, templates: Templates, language: str = "en") -> None:
    # A real report, computed over an empty store in memory, so every key the
    # templates may use is there with the type it really has.
    from inboxd.reports import metrics
    from inboxd.store.engine import open_store, reading

    engine = open_store("sqlite://")
    try:
        with reading(engine) as conn:
            report = metrics.compute_report(conn, settings, since=SAMPLE_NOW - timedelta(days=7), until=SAMPLE_NOW,
                                            now=SAMPLE_NOW, include_agents=True)
            trend = metrics.csat_trend(conn, settings, until=SAMPLE_NOW)
    finally:
        engine.dispose()
    # Without the per-agent section the report simply lacks the key (an agent's
    # view, or --no-per-agent), which is what templates most easily get wrong.
    without_agents = {key: value for key, value in report.items() if key != "agents"}
    cids = {name: f"chart-{name}@inboxd.report" for name in REPORT_CHARTS}
    for sample in (report, without_agents):
        variables = metrics.mail_variables(sample, trend, cids=cids, labels={a.name: a.label for a in settings.agents})
        for part in ("subject.txt", "body.txt", "body.html"):
            templates.render(f"report/{part}", variables, language=language)


def _macro(settings: Settings, templates: Templates, macro) -> None:
    from inboxd.desk.macros import macro_variables, render

    t = _sample_ticket(settings)
    agent, mailbox = settings.agents[0], settings.mailboxes[0]
    ticket = {"id": t["ref"], "subject": t["subject"], "status": "open", "priority": "normal", "tags": ["billing"],
              "assignee": agent.name, "requester": {"name": t["requester_name"], "email": t["requester"]}}
    message = {"from": t["requester"], "from_name": t["requester_name"], "date": "2026-11-23 09:00:00",
               "subject": t["subject"], "text": "Hello,\n\nI was charged twice.\n\n> quoted\n",
               "reply_text": "Hello,\n\nI was charged twice.\n"}
    render(templates, macro, macro_variables(ticket, agent, mailbox, message))
