"""The operations of the daemon's API: one table that the server serves and the client calls.

Every read and write command of the CLI is one operation here, with its HTTP
method, its path and its parameters.  The server (inboxd.api.server) builds
its endpoints and its OpenAPI document from this table, the thin client
(inboxd.api.client) builds its requests from it, and the store's owner runs
the same operation in-process (inboxd.api.handlers): so the three can never
disagree.  This module imports nothing heavy: the client loads it for every
command an agent types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    """One parameter: where it travels ("path", "query" or "body"), its type and its default."""
    name: str
    where: str = "query"
    # "str", "int", "bool" or "list" (of str); "bool?" is a bool that may be left out (None).
    type: str = "str"
    required: bool = False
    default: Any = None
    doc: str = ""


@dataclass(frozen=True)
class Op:
    name: str
    method: str
    path: str
    summary: str
    params: tuple[Param, ...] = ()
    # The least role that may call it; the handler checks finer rules (the workflow's, export's).
    role: str = "agent"
    # What a successful answer is: "json" (the CLI's --json shape), or "text" (report, export, metrics, macro text).
    returns: str = "json"


def _id(doc: str = "A ticket reference, e.g. T-1042.") -> Param:
    return Param("id", "path", required=True, doc=doc)


_JSON = "json"
OPS: dict[str, Op] = {op.name: op for op in (
    Op("me", "GET", "/v1/me", "Who the API says you are: agent, role, language, time zone, and every agent's name."),
    Op("list", "GET", "/v1/tickets", "List tickets (as `inboxd list --json`).", (
        Param("status", type="list", doc="new, open, pending, solved or closed"),
        Param("mailbox"), Param("assignee"), Param("mine", type="bool", default=False),
        Param("unassigned", type="bool", default=False), Param("tag", type="list"), Param("team"),
        Param("priority", type="list", doc="low, normal, high or urgent"), Param("search"),
        Param("overdue", type="bool", default=False), Param("tier", type="int"), Param("requester"),
        Param("field", type="list", doc="NAME=VALUE"), Param("sort", default="updated"),
        Param("limit", type="int"),
        Param("mine_first", type="bool", default=False, doc="The caller's own tickets first (the default view)."),
    )),
    Op("show", "GET", "/v1/tickets/{id}", "One ticket with its thread and history (as `inboxd show --json`).",
       (_id(),)),
    Op("history", "GET", "/v1/tickets/{id}/history", "A ticket's audit history (as `inboxd history --json`).",
       (_id(),)),
    Op("new", "POST", "/v1/tickets", "Open a ticket by hand (as `inboxd new --json`).", (
        Param("mailbox", "body", required=True), Param("requester", "body", required=True),
        Param("name", "body", default=""), Param("subject", "body", required=True),
        Param("message", "body", required=True), Param("ack", "body", "bool", default=True),
        Param("priority", "body"), Param("assign", "body"), Param("take", "body", "bool", default=False),
    )),
    Op("take", "POST", "/v1/tickets/{id}/take", "Assign an unassigned ticket to yourself.", (_id(),)),
    Op("assign", "POST", "/v1/tickets/{id}/assign", "Assign a ticket to an agent.",
       (_id(), Param("agent", "body", required=True))),
    Op("unassign", "POST", "/v1/tickets/{id}/unassign", "Put a ticket back in the unassigned queue.", (_id(),)),
    Op("set_status", "POST", "/v1/tickets/{id}/status", "Move a ticket through its lifecycle.",
       (_id(), Param("status", "body", required=True, doc="new, open, pending, solved or closed"))),
    Op("close", "POST", "/v1/tickets/{id}/close", "Close a ticket.",
       (_id(), Param("survey", "body", "bool", default=True))),
    Op("reopen", "POST", "/v1/tickets/{id}/reopen", "Reopen a solved or closed ticket.", (_id(),)),
    Op("approve", "POST", "/v1/tickets/{id}/approve", "Record a supervisor's review of an escalated ticket.",
       (_id(),), role="supervisor"),
    Op("tag", "POST", "/v1/tickets/{id}/tags", "Add tags.", (_id(), Param("tags", "body", "list", required=True))),
    Op("untag", "POST", "/v1/tickets/{id}/untag", "Remove tags.",
       (_id(), Param("tags", "body", "list", required=True))),
    Op("priority", "POST", "/v1/tickets/{id}/priority", "Set the priority.",
       (_id(), Param("priority", "body", required=True, doc="low, normal, high or urgent"))),
    Op("escalate", "POST", "/v1/tickets/{id}/escalate", "Escalate to a team, a tier or the supervisors.",
       (_id(), Param("to", "body", required=True), Param("reason", "body", required=True))),
    Op("note", "POST", "/v1/tickets/{id}/notes", "Add an internal note (never mailed).",
       (_id(), Param("message", "body", required=True))),
    Op("reply", "POST", "/v1/tickets/{id}/replies", "Answer the customer through the outbox.",
       (_id(), Param("message", "body", required=True))),
    Op("merge", "POST", "/v1/tickets/{id}/merge", "Merge a ticket into another.",
       (_id(), Param("into", "body", required=True))),
    Op("set_field", "POST", "/v1/tickets/{id}/fields/{field}", "Set (or with value null, clear) a custom field.",
       (_id(), Param("field", "path", required=True), Param("value", "body"))),
    Op("macro_list", "GET", "/v1/macros", "The configured macros."),
    Op("macro_show", "GET", "/v1/tickets/{id}/macros/{name}", "A macro rendered for a ticket; nothing is sent.",
       (_id(), Param("name", "path", required=True)), returns="text"),
    Op("macro_apply", "POST", "/v1/tickets/{id}/macros/{name}", "Send a macro's reply and apply its actions.",
       (_id(), Param("name", "path", required=True),
        Param("text", "body", doc="The reply as edited; default: the macro rendered."))),
    Op("customer", "GET", "/v1/customers/{email}", "A customer's tickets and satisfaction history.",
       (Param("email", "path", required=True),)),
    Op("report", "GET", "/v1/report", "Helpdesk metrics for a period (format json: `inboxd report --format json`).", (
        Param("since"), Param("until"), Param("mailbox"), Param("team"), Param("agent"),
        Param("format", default="json", doc="json, table, csv or html"), Param("per_agent", type="bool?"),
    ), returns="text"),
    Op("export", "GET", "/v1/export", "Tickets and messages, customer data masked unless full (recorded).", (
        Param("format", default="json", doc="json or csv"), Param("since"), Param("until"),
        Param("full", type="bool", default=False),
    ), role="supervisor", returns="text"),
    Op("quarantine_list", "GET", "/v1/quarantine", "Mail that could not be filed, with the reason."),
    Op("quarantine_show", "GET", "/v1/quarantine/{qid}", "One quarantined mail: where, why, and its headers.",
       (Param("qid", "path", "int", required=True),), role="supervisor"),
    Op("quarantine_retry", "POST", "/v1/quarantine/retry", "File a quarantined mail (qid) or all of them again.",
       (Param("qid", "body", "int"), Param("all", "body", "bool", default=False)), role="supervisor"),
    Op("outbox_list", "GET", "/v1/outbox", "Outgoing mail that waits or failed.",
       (Param("status", type="list", doc="queued, sending, sent or failed"),)),
    Op("outbox_retry", "POST", "/v1/outbox/{oid}/retry", "Send a failed or waiting mail again.",
       (Param("oid", "path", "int", required=True),), role="supervisor"),
    Op("status", "GET", "/v1/status", "The daemon's health per mailbox and folder (as `inboxd status --json`)."),
    Op("health", "GET", "/v1/health", "Whether every mailbox synced in time and the store answers."),
    Op("metrics", "GET", "/v1/metrics", "The metrics in the Prometheus text format.", returns="text"),
    Op("access_log", "GET", "/v1/access-log", "Who exported, read per-agent numbers or unmasked data, and when.",
       (Param("limit", type="int", default=200),), role="supervisor"),
    Op("token_create", "POST", "/v1/tokens", "A new API token for an agent (yourself, or anyone for an admin).",
       (Param("agent", "body"), Param("days", "body", "int"), Param("label", "body", default=""))),
    Op("token_list", "GET", "/v1/tokens", "API tokens (yours, or everyone's for an admin); never the secrets."),
    Op("token_revoke", "POST", "/v1/tokens/{tid}/revoke", "Revoke a token.",
       (Param("tid", "path", "int", required=True),)),
)}

ROLE_RANK = {"agent": 0, "supervisor": 1, "admin": 2}
# The commands that stay with the store's owner: they open the store, the mailboxes or the files directly.
OWNER_ONLY = ("run", "check-config", "migrate-store", "backup", "restore", "audit")
