"""What each operation of the daemon's API does, for one caller: the read and write commands of the CLI.

`handle(op, params, caller, ...)` runs one operation of `inboxd.api.routes`
and returns the same JSON the CLI prints with `--json` (or, for the text
operations, a `Text`).  The server calls it for a caller the kernel or a
token identified; the CLI calls it directly for the store's owner.  It is
here, and only here, that the API decides what a caller may see:

* an agent with `[[agents]] teams` sees the tickets of their teams, of their
  teams' mailboxes, and their own; another ticket is "not found" (its
  existence is not told);
* exports, per-agent numbers and unmasked data are for supervisors and
  admins, and each use is recorded in the access log (an event with no
  ticket), with who, how and from where;
* every change records the caller's `detail()` in the ticket's history.

The workflow (inboxd.desk.workflow) still checks the finer rules of each
change (whose ticket, the lifecycle); its refusals become one-line errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from inboxd.api.identity import Caller, Refused
from inboxd.api.routes import OPS, ROLE_RANK
from inboxd.config import Settings
from inboxd.desk import views
from inboxd.desk.workflow import SUPERVISORS, PermissionDenied, Workflow, WorkflowError, load
from inboxd.outbound.templates import TemplateError
from inboxd.store.engine import reading, writing
from inboxd.vocabulary import OUTBOX_STATUSES, PRIORITIES, STATUSES


class ApiError(Exception):
    """A refusal or a mistake, in one line, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Text:
    """An answer that is a document rather than JSON: a report, an export, metrics, a rendered macro."""
    body: str
    media_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class _Call:
    settings: Settings
    engine: Engine
    caller: Caller
    now: datetime

    @property
    def me(self):
        return self.caller.agent

    def workflow(self) -> Workflow:
        return Workflow(self.engine, self.settings, self.me, source=self.caller.detail())


def handle(op: str, params: dict, caller: Caller, *, settings: Settings, engine: Engine, now: datetime):
    """Run operation `op` for `caller`; `params` are typed already (the server's validation or the CLI's)."""
    spec = OPS.get(op)
    if spec is None:
        raise ApiError(404, f"no operation {op!r}")
    if ROLE_RANK[caller.role] < ROLE_RANK[spec.role]:
        least = "the supervisor or admin role" if spec.role == "supervisor" else f"the {spec.role} role"
        raise ApiError(403, f"{op.replace('_', ' ')} needs {least} ({caller.agent.name} is an {caller.role})")
    call = _Call(settings, engine, caller, now)
    try:
        return _HANDLERS[op](call, params)
    except ApiError:
        raise
    except Refused as exc:
        raise ApiError(exc.status, str(exc)) from None
    except PermissionDenied as exc:
        raise ApiError(403, str(exc)) from None
    except views.NotFound as exc:
        raise ApiError(404, str(exc).strip("'\"")) from None
    except (WorkflowError, TemplateError, LookupError, ValueError) as exc:
        text = str(exc).strip("'\"")
        raise ApiError(404 if text.startswith("no ticket ") else 400, text) from None


# -- who sees what ----------------------------------------------------------------------------------


def visibility(settings: Settings, caller: Caller) -> tuple[tuple[str, ...], tuple[str, ...], str,
                                                             tuple[str, ...]] | None:
    """None when the caller sees every ticket; else (teams, mailboxes, agent, team mailboxes): an agent with
    `teams` sees the tickets of those teams, of their mailboxes, their own, and the tickets that belong to no
    team (a desk that gives its mailboxes no team shares all of its work)."""
    me = caller.agent
    if me.role in SUPERVISORS or not me.teams:
        return None
    mailboxes = tuple(m.name for m in settings.mailboxes if m.team in me.teams)
    teamed = tuple(m.name for m in settings.mailboxes if m.team)
    return me.teams, mailboxes, me.name, teamed


def _sees(c: _Call, ticket) -> bool:
    scope = visibility(c.settings, c.caller)
    if scope is None:
        return True
    teams, mailboxes, name, teamed = scope
    return (ticket.team in teams or ticket.mailbox in mailboxes or ticket.assignee == name
            or (ticket.team is None and ticket.mailbox not in teamed))


def _ticket(c: _Call, ref: str):
    """The ticket `ref`, if the caller may see it; else "no ticket" (whether or not it exists)."""
    with reading(c.engine) as conn:
        try:
            ticket = load(conn, ref)
        except WorkflowError:
            ticket = None
    if ticket is None or not _sees(c, ticket):
        raise ApiError(404, f"no ticket {ref}")
    return ticket


def _record_access(c: _Call, action: str, detail: dict) -> None:
    """One line of the access log: an event with no ticket, in its own transaction before the data leaves."""
    from inboxd.store.events import add_event

    with writing(c.engine) as conn:
        add_event(conn, None, c.now, c.me.name, action, {**detail, **c.caller.detail()})


# -- reads ------------------------------------------------------------------------------------------


def _me(c: _Call, p: dict) -> dict:
    me = c.me
    zone = c.settings.policies.agent_zone(me)
    return {"agent": me.name, "role": me.role, "display_name": me.display_name, "language": me.language,
            "timezone": getattr(zone, "key", str(zone)), "teams": list(me.teams), "tier": me.tier,
            "via": c.caller.via, "origin": c.caller.origin, "by": c.caller.by,
            "agents": {a.name: a.display_name for a in c.settings.agents},
            "mailboxes": [m.name for m in c.settings.mailboxes]}


def _choices(values, allowed, what: str) -> tuple:
    for v in values:
        if v not in allowed:
            raise ApiError(400, f"unknown {what} {v!r}; use one of {', '.join(allowed)}")
    return tuple(values)


def _list(c: _Call, p: dict) -> list[dict]:
    from inboxd.desk.fields import FieldError, parse_filter

    statuses = _choices(p.get("status") or (), STATUSES, "status")
    priorities = _choices(p.get("priority") or (), PRIORITIES, "priority")
    sort = p.get("sort") or "updated"
    if sort not in views.SORTS:
        raise ApiError(400, f"unknown sort {sort!r}; use one of {', '.join(views.SORTS)}")
    mailbox = p.get("mailbox")
    if mailbox is not None and mailbox not in {m.name for m in c.settings.mailboxes}:
        raise ApiError(400, f"unknown mailbox {mailbox!r}")
    limit = p.get("limit")
    if limit is not None and limit < 1:
        raise ApiError(400, f"limit must be 1 or more, got {limit}")
    tier = p.get("tier")
    if tier is not None and tier < 0:
        raise ApiError(400, f"tier must be 0 or more, got {tier}")
    try:
        fields = tuple(parse_filter(c.settings.policies.fields, f) for f in p.get("field") or ())
    except FieldError as exc:
        raise ApiError(400, str(exc)) from None
    assignee = c.me.name if p.get("mine") else p.get("assignee")
    flt = views.ListFilter(
        statuses, mailbox, assignee, bool(p.get("unassigned")), tuple(p.get("tag") or ()), limit, p.get("team"),
        priorities, p.get("search"), sort, first_for=c.me.name if p.get("mine_first") else None,
        overdue_at=c.now if p.get("overdue") else None, requester=p.get("requester"), fields=fields, tier=tier,
        visible=visibility(c.settings, c.caller))
    with reading(c.engine) as conn:
        return views.list_tickets(conn, flt)


def _show(c: _Call, p: dict) -> dict:
    _ticket(c, p["id"])
    with reading(c.engine) as conn:
        return views.show_ticket(conn, p["id"])


def _history(c: _Call, p: dict) -> list[dict]:
    return _show(c, p)["events"]


def _customer(c: _Call, p: dict) -> dict:
    with reading(c.engine) as conn:
        record = views.customer_view(conn, p["email"])
    if visibility(c.settings, c.caller) is not None:
        shown = {t["id"] for t in _list(c, {"requester": p["email"]})}
        record["tickets"] = [t for t in record["tickets"] if t["id"] in shown]
        record["csat"] = [h for h in record["csat"] if h.get("ticket") in shown]
    return record


def _quarantine_list(c: _Call, p: dict) -> list[dict]:
    with reading(c.engine) as conn:
        return views.list_quarantine(conn)


def _quarantine_show(c: _Call, p: dict) -> dict:
    from inboxd.desk.quarantine import load as load_quarantined

    with reading(c.engine) as conn:
        item = load_quarantined(conn, p["qid"], c.settings.store.data_dir)
    if item is None:
        raise ApiError(404, f"no quarantined message {p['qid']}")
    return item.describe()


def _outbox_list(c: _Call, p: dict) -> list[dict]:
    statuses = _choices(p.get("status") or (), OUTBOX_STATUSES, "outbox status")
    with reading(c.engine) as conn:
        return views.list_outbox(conn, statuses or ("queued", "sending", "failed"))


def _status(c: _Call, p: dict) -> dict:
    from inboxd.reports.status import read_status

    with reading(c.engine) as conn:
        return read_status(conn, c.settings, c.now)


def _health(c: _Call, p: dict) -> dict:
    from inboxd.reports.status import health_json, read_health

    return health_json(read_health(c.engine, c.settings, c.now), c.now)


def _metrics(c: _Call, p: dict) -> Text:
    from inboxd.reports.prometheus import exposition

    now = c.now
    return Text(exposition(c.engine, c.settings, lambda: now).decode(), "text/plain; version=0.0.4; charset=utf-8")


def _macro_list(c: _Call, p: dict) -> list[dict]:
    return [{"name": m.name, "status": m.status, "priority": m.priority, "tags": list(m.tags), "assign": m.assign,
             "template": m.template} for m in c.settings.macros.values()]


def _macro_text(c: _Call, ref: str, name: str):
    from inboxd.desk.macros import render, variables
    from inboxd.outbound.templates import Templates

    macros = c.settings.macros
    if name not in macros:
        raise ApiError(400, f"unknown macro {name!r}; known macros: {', '.join(macros) or 'none'}")
    _ticket(c, ref)
    macro = macros[name]
    with reading(c.engine) as conn:
        ticket = load(conn, ref)
        values = variables(conn, c.settings, ticket, c.me)
        return macro, render(Templates(c.settings.template_dirs), macro, values)


def _macro_show(c: _Call, p: dict) -> Text:
    return Text(_macro_text(c, p["id"], p["name"])[1])


def _report(c: _Call, p: dict) -> Text | dict:
    from inboxd.cli.reports import report_command

    fmt = p.get("format") or "json"
    supervisor = c.me.role in SUPERVISORS
    per_agent = p.get("per_agent")
    text = report_command(since=p.get("since"), until=p.get("until"), mailbox=p.get("mailbox"), team=p.get("team"),
                          agent=p.get("agent"), fmt=fmt, per_agent=per_agent, settings=c.settings,
                          engine=c.engine, actor=c.me, now=c.now)
    other = p.get("agent") not in (None, c.me.name)
    if supervisor and (per_agent is not False or other):
        # Per-agent numbers are about people: who read them is recorded.
        _record_access(c, "report-agents", {"format": fmt, "agent": p.get("agent"), "since": p.get("since"),
                                            "until": p.get("until")})
    if fmt == "json":
        return json.loads(text)
    media = {"html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8"}.get(fmt,
                                                                                      "text/plain; charset=utf-8")
    return Text(text, media)


def _export(c: _Call, p: dict) -> Text:
    from inboxd.cli.reports import export_command

    fmt = p.get("format") or "json"
    text = export_command(fmt=fmt, since=p.get("since"), until=p.get("until"), full=bool(p.get("full")),
                          settings=c.settings, engine=c.engine, actor=c.me)
    _record_access(c, "export", {"format": fmt, "full": bool(p.get("full")), "since": p.get("since"),
                                 "until": p.get("until"), "bytes": len(text.encode())})
    return Text(text, "application/json" if fmt == "json" else "text/csv; charset=utf-8")


def _access_log(c: _Call, p: dict) -> list[dict]:
    from inboxd.store.events import desk_events

    limit = p.get("limit") or 200
    if limit < 1:
        raise ApiError(400, f"limit must be 1 or more, got {limit}")
    with reading(c.engine) as conn:
        rows = desk_events(conn, ("export", "report-agents", "token-create", "token-revoke"), limit)
    return [{"at": views.iso(r.at), "actor": r.actor, "action": r.action, "detail": json.loads(r.detail or "{}")}
            for r in rows]


# -- writes -----------------------------------------------------------------------------------------


def _change(method: str, *names: str):
    """An operation that is one workflow method on one visible ticket, with its body parameters in order."""
    def run(c: _Call, p: dict) -> dict:
        _ticket(c, p["id"])
        return getattr(c.workflow(), method)(p["id"], *(p.get(n) for n in names), now=c.now)
    return run


def _close(c: _Call, p: dict) -> dict:
    _ticket(c, p["id"])
    survey = p.get("survey")
    return c.workflow().close(p["id"], survey=True if survey is None else bool(survey), now=c.now)


def _tags(method: str):
    def run(c: _Call, p: dict) -> dict:
        tags = [t for t in (p.get("tags") or []) if t.strip()]
        if not tags:
            raise ApiError(400, "give at least one tag")
        _ticket(c, p["id"])
        return getattr(c.workflow(), method)(p["id"], tags, now=c.now)
    return run


def _note(c: _Call, p: dict) -> dict:
    _ticket(c, p["id"])
    return c.workflow().note(p["id"], p["message"], now=c.now)


def _reply(c: _Call, p: dict) -> dict:
    _ticket(c, p["id"])
    return c.workflow().reply(p["id"], p["message"], now=c.now)


def _merge(c: _Call, p: dict) -> dict:
    _ticket(c, p["id"])
    _ticket(c, p["into"])
    return c.workflow().merge(p["id"], p["into"], now=c.now)


def _set_field(c: _Call, p: dict) -> dict:
    _ticket(c, p["id"])
    return c.workflow().set_field(p["id"], p["field"], p.get("value"), now=c.now)


def _macro_apply(c: _Call, p: dict) -> dict:
    macro, text = _macro_text(c, p["id"], p["name"])
    if p.get("text") is not None:
        text = p["text"]
    return c.workflow().apply_macro(p["id"], macro, text, now=c.now)


def _new(c: _Call, p: dict) -> dict:
    from inboxd.desk.newticket import HandTicket, open_ticket

    if p.get("take") and p.get("assign"):
        raise ApiError(400, "give assign or take, not both")
    mailbox = p["mailbox"]
    scope = visibility(c.settings, c.caller)
    if scope is not None and mailbox not in scope[1]:
        raise ApiError(403, f"{c.me.name} does not work mailbox {mailbox!r} (teams {', '.join(c.me.teams)})")
    form = HandTicket(mailbox=mailbox, requester=p["requester"].strip(), name=(p.get("name") or "").strip(),
                      subject=p["subject"].strip(), text=p["message"],
                      ack=p.get("ack") is not False, priority=p.get("priority"),
                      assignee=c.me.name if p.get("take") else p.get("assign"))
    ref = open_ticket(c.engine, c.settings, form, c.me, c.now, source=c.caller.detail())
    with reading(c.engine) as conn:
        rows = [r for r in views.list_tickets(conn, views.ListFilter(requester=form.requester, sort="created"))
                if r["id"] == ref]
    return rows[0]


def _quarantine_retry(c: _Call, p: dict) -> list[dict]:
    from inboxd.desk.quarantine import retry

    qid, every = p.get("qid"), bool(p.get("all"))
    if (qid is None) == (not every):
        raise ApiError(400, "give one quarantine ID or all")
    outcomes = retry(c.engine, c.settings, None if every else qid, c.now)
    if not outcomes and qid is not None:
        raise ApiError(404, f"no quarantined message {qid}")
    return outcomes


def _outbox_retry(c: _Call, p: dict) -> dict:
    from inboxd.outbound.sender import retry

    if not retry(c.engine, p["oid"], c.now):
        raise ApiError(404, f"no failed or waiting outgoing message {p['oid']}")
    return {"id": p["oid"], "status": "queued"}


def _token_create(c: _Call, p: dict) -> dict:
    from inboxd.desk.tokens import create_token

    days = p.get("days")
    if days is not None and days < 1:
        raise ApiError(400, f"days must be 1 or more, got {days}")
    return create_token(c.engine, c.caller, agent=p.get("agent"), days=days, label=p.get("label") or "",
                        settings=c.settings, now=c.now)


def _token_list(c: _Call, p: dict) -> list[dict]:
    from inboxd.desk.tokens import list_for

    return list_for(c.engine, c.caller)


def _token_revoke(c: _Call, p: dict) -> dict:
    from inboxd.desk.tokens import revoke_token

    return revoke_token(c.engine, c.caller, p["tid"], c.now)


_HANDLERS = {
    "me": _me, "list": _list, "show": _show, "history": _history, "customer": _customer, "new": _new,
    "take": _change("take"), "assign": _change("assign", "agent"), "unassign": _change("unassign"),
    "set_status": _change("set_status", "status"), "close": _close, "reopen": _change("reopen"),
    "approve": _change("approve"), "tag": _tags("tag"), "untag": _tags("untag"),
    "priority": _change("priority", "priority"), "escalate": _change("escalate", "to", "reason"),
    "note": _note, "reply": _reply, "merge": _merge, "set_field": _set_field,
    "macro_list": _macro_list, "macro_show": _macro_show, "macro_apply": _macro_apply,
    "report": _report, "export": _export, "access_log": _access_log,
    "quarantine_list": _quarantine_list, "quarantine_show": _quarantine_show, "quarantine_retry": _quarantine_retry,
    "outbox_list": _outbox_list, "outbox_retry": _outbox_retry,
    "status": _status, "health": _health, "metrics": _metrics,
    "token_create": _token_create, "token_list": _token_list, "token_revoke": _token_revoke,
}
assert set(_HANDLERS) == set(OPS), sorted(set(_HANDLERS) ^ set(OPS))
