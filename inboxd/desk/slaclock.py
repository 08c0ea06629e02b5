"""The SLA clock of one ticket: its policy and due times, from its history.

Due times are derived, never edited by hand: the policy (a rule's choice, the
mailbox's, or the one for the ticket's priority), the creation time, the
first response, the last customer message, and the intervals the ticket
spent `pending` (waiting on the customer), which pause the resolution clock.
`refresh` stores them on the ticket with the version they were computed
for, so the scheduler recomputes only tickets that changed since.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from inboxd.config import Settings
from inboxd.store.engine import db_time
from inboxd.desk.history import status_intervals
from inboxd.desk.policies import Policies
from inboxd.desk.sla import due_time

from inboxd.vocabulary import OPEN_STATUSES  # noqa: F401


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None


# The end of a status interval that has not ended yet.
_OPEN = datetime.max.replace(tzinfo=UTC)


def _intervals(events: list[tuple[str, str, str]], created_at: datetime):
    parsed = [(parse_time(at), action, json.loads(detail)) for at, action, detail in events]
    return status_intervals(created_at, parsed, _OPEN)


def pending_spells(events: list[tuple[str, str, str]], created_at: datetime) -> list[tuple[datetime, datetime | None]]:
    """The intervals a ticket spent pending, from its (at, action, detail) event
    rows; a spell still going on has no end."""
    return [(start, None if end == _OPEN else end) for st, start, end in _intervals(events, created_at)
            if st == "pending"]


def pending_since(events: list[tuple[str, str, str]], created_at: datetime) -> datetime | None:
    """When the ticket's current pending spell began, or None if it is not pending."""
    spells = pending_spells(events, created_at)
    return spells[-1][0] if spells and spells[-1][1] is None else None


def refresh(cur: sqlite3.Cursor, ticket_pk: int, settings: Settings, policies: Policies, now: datetime) -> None:
    """Recompute and store the ticket's SLA policy and due times."""
    row = cur.execute(
        "SELECT mailbox, priority, status, sla_policy, created_at, first_response_at, version, history"
        " FROM ticket WHERE id = ?",
        (ticket_pk,),
    ).fetchone()
    mailbox, priority, status, named, created, first_response, version, history = row
    try:
        mailbox_sla = settings.mailbox(mailbox).sla
    except LookupError:
        mailbox_sla = None
    policy = policies.policy_for(named=named, mailbox_sla=mailbox_sla, priority=priority)
    dues: dict[str, datetime | None] = {"first_response_due": None, "next_response_due": None, "resolution_due": None}
    # History made no promise: it has no clock until a customer writes again.
    if policy is not None and not history:
        created_at = parse_time(created)
        cal = policy.calendar
        if policy.first_response is not None:
            dues["first_response_due"] = cal.add(created_at, policy.first_response)
        events = cur.execute("SELECT at, action, detail FROM event WHERE ticket_id = ? ORDER BY at, id",
                             (ticket_pk,)).fetchall()
        pauses = pending_spells(events, created_at)
        # Kept after solving too: reports compare it with the solve time.
        if policy.resolution is not None:
            dues["resolution_due"] = due_time(created_at, policy.resolution, cal, pauses)
        if policy.next_response is not None and first_response and status in ("new", "open"):
            last_in, last_out = cur.execute(
                "SELECT max(CASE WHEN kind = 'customer' THEN created_at END),"
                " max(CASE WHEN direction = 'out' AND kind = 'agent' THEN created_at END)"
                " FROM message WHERE ticket_id = ?", (ticket_pk,)).fetchone()
            if last_in and (last_out is None or last_in > last_out):
                dues["next_response_due"] = cal.add(parse_time(last_in), policy.next_response)
    cur.execute(
        "UPDATE ticket SET sla_policy = ?, first_response_due = ?, next_response_due = ?, resolution_due = ?,"
        " sla_version = ? WHERE id = ?",
        (policy.name if policy else named, db_time(dues["first_response_due"]), db_time(dues["next_response_due"]),
         db_time(dues["resolution_due"]), version, ticket_pk),
    )
