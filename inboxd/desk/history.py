"""A ticket's status history, read from its audit events.

Reports, the SLA clock and the pending reminder all need to know when a
ticket was in which status; they all read it here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

Interval = tuple[str, datetime, datetime]


def status_after(action: str, detail: dict) -> str | None:
    """The status a ticket has after an event, or None when the event did not change it.

    Ingest writes `status_before/status_after`; the CLI workflow writes
    `changes.status.before/after`; a ticket merged into another one is closed;
    the auto-close duty closes.
    """
    if action == "created":
        return "new"
    if isinstance(detail.get("status_after"), str):
        return detail["status_after"]
    change = (detail.get("changes") or {}).get("status")
    if isinstance(change, dict) and isinstance(change.get("after"), str):
        return change["after"]
    if action == "merge" and "into" in detail:
        return "closed"
    if action == "autoclose":
        return "closed"
    return None


def status_intervals(created_at: datetime, events: Iterable[tuple[datetime, str, dict]],
                     end: datetime) -> list[Interval]:
    """A ticket's statuses as half-open intervals from its creation up to `end`.

    `events` are (at, action, detail) in time order.  The ticket starts `new`
    at `created_at`; each event that changes the status (see `status_after`)
    closes the current interval.  Zero-length intervals are dropped, so two
    changes in the same instant leave only the later status.
    """
    intervals: list[Interval] = []
    status, start = "new", created_at
    for at, action, detail in events:
        after = status_after(action, detail)
        if after is None or after == status or at < created_at:
            continue
        at = min(at, end)
        if at > start:
            intervals.append((status, start, at))
        status, start = after, max(start, at)
    if end > start:
        intervals.append((status, start, end))
    return intervals
