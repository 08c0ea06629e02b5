"""`inboxd report` and `inboxd export`: check who may see what, then format the numbers.

The functions take plain values (as typer parses them), the settings, the
store's engine and the acting agent, and return the text to print; a refusal
or a bad argument is a `WorkflowError` (one line), which the CLI prints like
every other workflow refusal.  Roles: an agent sees the team's numbers and
their own; the per-agent section, another agent's numbers and any export
need a supervisor or admin; an unmasked export needs an admin.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from sqlalchemy import Engine

from inboxd.reports import export

from inboxd.reports import metrics
from inboxd.config import AgentSettings, Settings
from inboxd.store.engine import reading
from inboxd.desk.workflow import SUPERVISORS, PermissionDenied, WorkflowError

REPORT_FORMATS = ("table", "json", "csv", "html")
EXPORT_FORMATS = ("csv", "json")


def report_command(*, since: str | None, until: str | None, mailbox: str | None, team: str | None,
                   agent: str | None, fmt: str, per_agent: bool | None, settings: Settings, engine: Engine,
                   actor: AgentSettings, now: datetime | None = None) -> str:
    """The report as text in `fmt`; `per_agent` None means "if the actor may see it"."""
    if fmt not in REPORT_FORMATS:
        raise WorkflowError(f"unknown format {fmt!r}; use one of {', '.join(REPORT_FORMATS)}")
    supervisor = actor.role in SUPERVISORS
    if agent is not None and agent != actor.name and not supervisor:
        raise PermissionDenied(f"another agent's numbers (--agent {agent}) need the supervisor or admin role "
                               f"({actor.name} is an {actor.role})")
    if per_agent and not supervisor:
        raise PermissionDenied(f"the per-agent section needs the supervisor or admin role "
                               f"({actor.name} is an {actor.role})")
    if agent is not None and settings.agent(agent) is None:
        raise WorkflowError(f"unknown agent {agent!r}; known agents: {', '.join(a.name for a in settings.agents)}")
    if mailbox is not None:
        settings.mailbox(mailbox)  # LookupError with the known names.
    now = now or datetime.now(UTC)
    start, end = _period(since, until, settings)
    include_agents = supervisor if per_agent is None else per_agent
    with reading(engine) as conn:
        try:
            report = metrics.compute_report(conn, settings, since=start, until=end, mailbox=mailbox, team=team,
                                            agent=agent, now=now, include_agents=include_agents)
        except ValueError as exc:
            raise WorkflowError(str(exc)) from None
        trend = metrics.csat_trend(conn, settings, until=end or now) if fmt == "html" else []
    if fmt == "json":
        return json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        return report_csv(report)
    if fmt == "html":
        # In the reader's language, as the weekly mail is (templates and chart titles).
        _, _, html, images = metrics.render_report(settings, report, trend, actor.language)
        return metrics.embed_images(html, images)
    return report_table(report)


def export_command(*, fmt: str, since: str | None, until: str | None, full: bool, settings: Settings,
                   engine: Engine, actor: AgentSettings) -> str:
    """Tickets and messages as CSV or JSON; masked unless `full` (admins only)."""
    if fmt not in EXPORT_FORMATS:
        raise WorkflowError(f"unknown format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    if actor.role not in SUPERVISORS:
        raise PermissionDenied(f"export needs the supervisor or admin role ({actor.name} is an {actor.role})")
    if full and actor.role != "admin":
        raise PermissionDenied(f"export --full (unmasked customer data) needs the admin role "
                               f"({actor.name} is a {actor.role})")
    start, end = _period(since, until, settings, default_days=None)
    with reading(engine) as conn:
        records = export.export_records(conn, since=start, until=end, full=full,
                                        own_addresses=settings.own_addresses())
    return export.to_json(records) if fmt == "json" else export.to_csv(records)


def _period(since: str | None, until: str | None, settings: Settings,
            default_days: int | None = 7) -> tuple[datetime | None, datetime | None]:
    """--since/--until as instants; dates are midnights in the report time zone."""
    tz = settings.reports.timezone
    try:
        start = metrics.parse_day(since, tz) if since else None
        end = metrics.parse_day(until, tz) if until else None
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None
    if start is not None and end is not None and start >= end:
        raise WorkflowError("--since must be before --until")
    return start, end


# --- Formats -------------------------------------------------------------------------

def report_rows(report: dict) -> list[tuple[str, str, object]]:
    """(section, key, value) for every scalar in the report; nested keys are dotted."""
    rows: list[tuple[str, str, object]] = []

    def walk(section: str, prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(section, f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(section, f"{prefix}.{index}" if prefix else str(index), inner)
        else:
            rows.append((section, prefix, value))

    for section, value in report.items():
        if isinstance(value, (dict, list)):
            walk(section, "", value)
        else:
            rows.append((section, "value", value))
    return rows


def report_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "key", "value"))
    for section, key, value in report_rows(report):
        writer.writerow((section, key, "" if value is None else value))
    return out.getvalue()


def report_table(report: dict) -> str:
    """The human view: the headline numbers, then each section in a few lines."""
    t, fr, res = report["tickets"], report["first_response"], report["resolution"]
    sla, csat, p = report["sla"], report["csat"], report["period"]
    h, pc = metrics.hours, metrics.percent
    scope = ", ".join(f"{k} {p[k]}" for k in ("mailbox", "team", "agent") if p[k]) or "all tickets"
    lines = [
        f"Report {p['since']} .. {p['until']} ({scope}; hours and days in {p['timezone']})",
        "",
        f"  created {t['created']}   solved {t['solved']}   closed {t['closed']}   reopened {t['reopened']}"
        f"   open now {t['backlog']}   backlog ratio {t['backlog_ratio'] if t['backlog_ratio'] is not None else '-'}",
        "",
        f"  {'':<26}{'median':>8}{'mean':>8}{'p90':>8}{'n':>6}",
        f"  {'first response':<26}{h(fr['median']):>8}{h(fr['mean']):>8}{h(fr['p90']):>8}{fr['count']:>6}",
        f"  {'resolution':<26}{h(res['median']):>8}{h(res['mean']):>8}{h(res['p90']):>8}{res['count']:>6}",
        f"  first-contact resolution {pc(report['first_contact_resolution']['rate'])}"
        f"   reopen rate {pc(report['reopen_rate'])}",
        "",
        f"  SLA first response: {sla['first_response']['met']} met, {sla['first_response']['breached']} breached,"
        f" {sla['first_response']['pending']} pending ({pc(sla['first_response']['attainment'])})",
        f"  SLA resolution:     {sla['resolution']['met']} met, {sla['resolution']['breached']} breached,"
        f" {sla['resolution']['pending']} pending ({pc(sla['resolution']['attainment'])})",
        "",
        f"  CSAT: {csat['responses']} responses of {csat['sent']} sent ({pc(csat['response_rate'])}),"
        f" score {pc(csat['score'])}"
        + "".join(f"; {lvl} {e['label']} {e['count']}" for lvl, e in csat["distribution"].items()),
        f"  escalations: {report['escalations']['count']}"
        + "".join(f"; {r['reason']} ({r['count']})" for r in report["escalations"]["top_reasons"]),
        "  by mailbox: " + (", ".join(f"{k} {v}" for k, v in report["volume"]["by_mailbox"].items()) or "-"),
        "  by tag: " + (", ".join(f"{k} {v}" for k, v in report["volume"]["by_tag"].items()) or "-"),
        "  by weekday: " + ", ".join(f"{k} {v}" for k, v in report["volume"]["by_weekday"].items()),
        "  by hour: " + " ".join(str(v) for v in report["volume"]["by_hour"]),
        "  hours in status: " + ", ".join(f"{k} {v}" for k, v in report["time_in_status"].items()),
        "  share of time in status: " + ", ".join(f"{k} {pc(v)}" for k, v in report["time_in_status_share"].items()),
    ]
    rc = report["repeat_complaints"]
    lines += ["", f"  repeat complaints (within {rc['window_days']} days): {rc['repeated']} of {rc['customers']}"
                  f" customers ({pc(rc['rate'])})"
              + "".join(f"; tag {k} {r['repeated']}/{r['customers']}" for k, r in rc["by_tag"].items())]
    for name, values in rc["by_field"].items():
        lines.append(f"    by {name}: " + (", ".join(f"{v} {r['repeated']}/{r['customers']} ({pc(r['rate'])})"
                                                   for v, r in values.items()) or "-"))
    for name, values in report["by_field"].items():
        lines += ["", f"  {name:<16}{'created':>9}{'resolved':>10}{'csat':>8}{'n':>5}"]
        for value, e in values.items():
            lines.append(f"  {value:<16}{e['created']:>9}{e['resolved']:>10}{pc(e['csat_score']):>8}"
                         f"{e['csat_responses']:>5}")
    if "agents" in report:
        lines += ["", f"  {'agent':<16}{'open':>6}{'resolved':>10}{'replies':>9}{'1st resp':>10}{'resolution':>12}"
                      f"{'CSAT':>8}{'n':>4}"]
        for name, a in report["agents"].items():
            lines.append(f"  {name:<16}{a['open']:>6}{a['resolved']:>10}{a['replies']:>9}"
                         f"{h(a['first_response']['median']):>10}{h(a['resolution']['median']):>12}"
                         f"{pc(a['csat']['score']):>8}{a['csat']['responses']:>4}")
    return "\n".join(lines) + "\n"
