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
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection

from inboxd.config import Settings
from inboxd.desk.history import status_intervals
from inboxd.desk.policies import Policies
from inboxd.desk.sla import due_time
from inboxd.store import slaclock as store


def parse_time(value: str | datetime | None) -> datetime | None:
    """An aware UTC datetime from a store value: a datetime, or the naive UTC text SQLite keeps."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


# The end of a status interval that has not ended yet.
_OPEN = datetime.max.replace(tzinfo=UTC)

# An audit event as the store gives it: (at, action, detail as JSON text).
EventRow = tuple[str | datetime, str, str]


def _intervals(events: Iterable[EventRow], created_at: datetime):
    parsed = [(parse_time(at), action, json.loads(detail)) for at, action, detail in events]
    return status_intervals(created_at, parsed, _OPEN)


def pending_spells(events: Iterable[EventRow], created_at: datetime) -> list[tuple[datetime, datetime | None]]:
    """The intervals a ticket spent pending, from its (at, action, detail) event
    rows; a spell still going on has no end."""
    return [(start, None if end == _OPEN else end) for st, start, end in _intervals(events, created_at)
            if st == "pending"]


def pending_since(events: Iterable[EventRow], created_at: datetime) -> datetime | None:
    """When the ticket's current pending spell began, or None if it is not pending."""
    spells = pending_spells(events, created_at)
    return spells[-1][0] if spells and spells[-1][1] is None else None


def current_pending_since(conn: Connection, ticket_pk: int) -> datetime | None:
    """When the stored ticket's current pending spell began, or None if it is not pending."""
    return pending_since(store.status_events(conn, ticket_pk), store.created_at(conn, ticket_pk))


def refresh(conn: Connection, ticket_pk: int, settings: Settings, policies: Policies, now: datetime) -> None:
    """Recompute and store the ticket's SLA policy and due times."""
    mailbox, priority, status, named, created, first_response, version, history = store.clock_inputs(conn, ticket_pk)
    try:
        mailbox_sla = settings.mailbox(mailbox).sla
    except LookupError:
        mailbox_sla = None
    policy = policies.policy_for(named=named, mailbox_sla=mailbox_sla, priority=priority)
    dues: dict[str, datetime | None] = {"first_response": None, "next_response": None, "resolution": None}
    # History made no promise: it has no clock until a customer writes again.
    if policy is not None and not history:
        created_at = parse_time(created)
        cal = policy.calendar
        if policy.first_response is not None:
            dues["first_response"] = cal.add(created_at, policy.first_response)
        pauses = pending_spells(store.status_events(conn, ticket_pk), created_at)
        # Kept after solving too: reports compare it with the solve time.
        if policy.resolution is not None:
            dues["resolution"] = due_time(created_at, policy.resolution, cal, pauses)
        if policy.next_response is not None and first_response and status in ("new", "open"):
            last_in, last_out = store.last_exchange(conn, ticket_pk)
            if last_in and (last_out is None or last_in > last_out):
                dues["next_response"] = cal.add(parse_time(last_in), policy.next_response)
    store.store_due_times(conn, ticket_pk, policy.name if policy else named, **dues, version=version)
