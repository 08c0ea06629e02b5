"""The SLA clock of one ticket: its policy and due times, from its history.

Due times are derived, never edited by hand: the policy (a rule's choice, the
mailbox's, or the one for the ticket's priority), the creation time, the
first response, the last customer message, and the intervals the ticket
spent `pending` (waiting on the customer), which pause the resolution clock.
`due_times` computes them from plain inputs (`ClockFacts`); `refresh` reads
those inputs from the store, computes, and stores the result on the ticket
with the version it was computed for, so the scheduler recomputes only
tickets that changed since.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from inboxd.config import Settings
from inboxd.desk.history import status_intervals
from inboxd.desk.policies import Policies
from inboxd.desk.sla import BusinessDays, Calendar, SlaPolicy, due_time
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

_NO_DETAIL: dict = {}

# An audit event as the store gives it: (at, action, detail as JSON text).
EventRow = tuple[str | datetime, str, str]


def _intervals(events: Iterable[EventRow], created_at: datetime):
    # A "created" event's detail says nothing about the status (`status_after` reads only its
    # action), and every ticket has one: not decoding it was a tenth of refreshing every ticket.
    parsed = [(parse_time(at), action, _NO_DETAIL if action == "created" else json.loads(detail))
              for at, action, detail in events]
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


@dataclass(frozen=True)
class ClockFacts:
    """What a ticket's due times are computed from, as plain values.

    `pauses` and the last exchange are needed only by some policies, so
    `refresh` reads them only then (see `needs_history`, `needs_exchange`).
    """

    created_at: datetime
    status: str
    first_response_at: datetime | None = None
    history: bool = False
    pauses: tuple[tuple[datetime, datetime | None], ...] = ()
    last_in: datetime | None = None     # the newest customer message
    last_out: datetime | None = None    # the newest agent answer


@dataclass(frozen=True)
class DueTimes:
    policy: str | None
    first_response: datetime | None = None
    next_response: datetime | None = None
    resolution: datetime | None = None


def settings_digest(policies: Policies, settings: Settings) -> str:
    """A digest of every setting a ticket's due times are computed from: the SLA policies' targets,
    priorities and calendars, and each mailbox's policy.  When it changes, every ticket's due times
    are computed again (the scheduler compares it with the one it recorded)."""
    def target(value):
        if value is None:
            return None
        return ["days", value.days] if isinstance(value, BusinessDays) else value // timedelta(microseconds=1)

    def calendar(cal: Calendar):
        return [cal.name, cal.tz.key, [list(map(list, day)) for day in cal.hours], cal.holiday_country,
                cal.holiday_subdiv, sorted(d.isoformat() for d in cal.extra_holidays),
                sorted(d.isoformat() for d in cal.working_days), list(map(list, cal.working_day_hours))]

    described = {
        "sla": {name: [target(p.first_response), target(p.next_response), target(p.resolution), list(p.priorities),
                       calendar(p.calendar)] for name, p in policies.sla.items()},
        "mailboxes": {mb.name: mb.sla for mb in settings.mailboxes},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def choose_policy(policies: Policies, settings: Settings, *, mailbox: str, named: str | None,
                  priority: str) -> SlaPolicy | None:
    """The ticket's policy: a rule's choice, else its mailbox's, else the one for its priority."""
    try:
        mailbox_sla = settings.mailbox(mailbox).sla
    except LookupError:
        mailbox_sla = None
    return policies.policy_for(named=named, mailbox_sla=mailbox_sla, priority=priority)


def is_running(policy: SlaPolicy | None, history: bool) -> bool:
    """Whether the ticket has a clock at all: history made no promise, until a customer writes again."""
    return policy is not None and not history


def needs_exchange(policy: SlaPolicy, first_response_at: datetime | None, status: str) -> bool:
    """Whether the next-response due time applies, so the last exchange of mail must be known."""
    return policy.next_response is not None and bool(first_response_at) and status in ("new", "open")


def due_times(policy: SlaPolicy | None, facts: ClockFacts, named: str | None = None) -> DueTimes:
    """The ticket's due times under `policy` (pure: plain inputs in, times out).

    `named` is the policy name kept when no policy applies.
    """
    if not is_running(policy, facts.history):
        return DueTimes(policy.name if policy else named)
    cal = policy.calendar
    first = next_ = resolution = None
    if policy.first_response is not None:
        first = cal.add(facts.created_at, policy.first_response)
    # Kept after solving too: reports compare it with the solve time.
    if policy.resolution is not None:
        resolution = due_time(facts.created_at, policy.resolution, cal, list(facts.pauses))
    if needs_exchange(policy, facts.first_response_at, facts.status):
        if facts.last_in and (facts.last_out is None or facts.last_in > facts.last_out):
            next_ = cal.add(facts.last_in, policy.next_response)
    return DueTimes(policy.name, first, next_, resolution)


def refresh_many(conn: Connection, ticket_pks: list[int], settings: Settings, policies: Policies,
                 now: datetime) -> list[int]:
    """`refresh` for many tickets, reading each input for all of them at once
    and storing every result in one statement; returns the tickets whose due
    times could not be computed (left to the caller, unstored).

    The same decisions as `refresh`, from the same rows: the scheduler's
    first pass after an upgrade refreshes every ticket, and three queries and
    an update per ticket were most of its time.
    """
    inputs = store.clock_inputs_many(conn, ticket_pks, with_dues=True)
    chosen: dict[int, SlaPolicy | None] = {}
    running, exchange = [], []
    for pk, (mailbox, priority, status, named, _created, first_response, _version, history, *_dues) in inputs.items():
        policy = chosen[pk] = choose_policy(policies, settings, mailbox=mailbox, named=named, priority=priority)
        if is_running(policy, bool(history)):
            running.append(pk)
            if needs_exchange(policy, first_response, status):
                exchange.append(pk)
    events = store.status_events_many(conn, running) if running else {}
    exchanges = store.last_exchange_many(conn, exchange) if exchange else {}
    rows, same, failed = [], [], []
    for pk in ticket_pks:
        if pk not in inputs:
            failed.append(pk)
            continue
        _mailbox, _priority, status, named, created, first_response, version, history, *stored = inputs[pk]
        policy = chosen[pk]
        try:
            created_at = parse_time(created)
            if is_running(policy, bool(history)):
                last_in, last_out = exchanges.get(pk, (None, None))
                facts = ClockFacts(created_at=created_at, status=status, first_response_at=first_response,
                                   history=bool(history),
                                   pauses=tuple(pending_spells(events.get(pk, ()), created_at)),
                                   last_in=parse_time(last_in), last_out=parse_time(last_out))
            else:
                facts = ClockFacts(created_at=created_at, status=status, first_response_at=first_response,
                                   history=bool(history))
            dues = due_times(policy, facts, named)
        except Exception:  # One odd ticket never stops the clock of the others; the caller says why.
            failed.append(pk)
            continue
        if dues.policy == named and [dues.first_response, dues.next_response, dues.resolution] == stored:
            # Computed again unchanged (the ticket changed in a way they do not depend on): only the version.
            same.append({"pk": pk, "version": version})
        else:
            rows.append({"pk": pk, "policy": dues.policy, "first": dues.first_response, "next": dues.next_response,
                         "resolution": dues.resolution, "version": version})
    store.store_due_times_many(conn, rows)
    store.store_versions_many(conn, same)
    return failed


def refresh(conn: Connection, ticket_pk: int, settings: Settings, policies: Policies, now: datetime) -> None:
    """Recompute and store the ticket's SLA policy and due times: read the
    inputs, compute (`due_times`), store them with the version they are for."""
    mailbox, priority, status, named, created, first_response, version, history = store.clock_inputs(conn, ticket_pk)
    policy = choose_policy(policies, settings, mailbox=mailbox, named=named, priority=priority)
    facts = ClockFacts(created_at=parse_time(created), status=status, first_response_at=first_response,
                       history=bool(history))
    # Only what the policy needs is read: refreshing runs for every filed message.
    if is_running(policy, facts.history):
        pauses = tuple(pending_spells(store.status_events(conn, ticket_pk), facts.created_at))
        last_in = last_out = None
        if needs_exchange(policy, first_response, status):
            last_in, last_out = (parse_time(v) for v in store.last_exchange(conn, ticket_pk))
        facts = replace(facts, pauses=pauses, last_in=last_in, last_out=last_out)
    dues = due_times(policy, facts, named)
    store.store_due_times(conn, ticket_pk, dues.policy, first_response=dues.first_response,
                          next_response=dues.next_response, resolution=dues.resolution, version=version)
