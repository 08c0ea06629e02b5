"""The report's desk figures: repeat complaints (投诉重复率), figures by custom field, time per status as a share.

Pure functions over what `inboxd.reports.metrics` has read already (the
period's tickets with their status intervals, who resolved what when) and
a few facts of `inboxd.store.reports` passed in as plain values, so each
figure is checked by hand in tests with fixed instants.  The definitions
are in docs/report-keys.md; in short:

- **Repeat complaints.**  A resolved ticket is one that reached solved or
  closed from an open status in the period (its last such moment, as
  `tickets.resolved` counts it).  Its customer *repeated* when the same
  address (any case) opened another ticket in the window that follows
  (`[reports] repeat_window`, default 7 days), counted up to now, in any
  mailbox; a ticket merged into the resolved one is the same conversation
  and does not count.  The rate is per customer: customers with a repeat
  over customers with a resolved ticket.  By tag and by field, a customer
  counts under each tag or value of their resolved tickets.
- **By field.**  For each `[[fields]]` name and value: tickets created in
  the period, tickets resolved in it, and survey answers given in it, by
  the ticket's value now.  Tickets without the field are not counted.
- **Time per status.**  Of the time the period's tickets spent in new,
  open, pending and solved inside the period (up to now), the share in
  each; closed is the end, not handling time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

HANDLING = ("new", "open", "pending", "solved")


class Contact(NamedTuple):
    """A ticket of a customer who had one resolved: when it was opened, and where it was merged.

    A named tuple: a 90-day report makes 100,000 of them, and a frozen dataclass's construction cost
    twice as much."""

    pk: int
    customer: str           # the requester, lower case
    created_at: datetime    # (or an integer instant, as repeated_tickets allows)
    merged_into: int | None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _rate(customers: set[str], repeated: set[str]) -> dict:
    return {"customers": len(customers), "repeated": len(repeated), "rate": _share(len(repeated), len(customers))}


def repeated_tickets(resolved_at: Mapping[int, Any], customer_of: Mapping[int, str],
                     contacts: Iterable[Contact], window: Any, now: Any) -> set[int]:
    """The resolved tickets whose customer opened another ticket within `window` after (up to `now`).

    The instants may be datetimes (with a timedelta window) or integers in one unit, such as the report's
    microseconds since the epoch (with the window in them too): the rule only adds and compares them."""
    by_customer: dict[str, list[Contact]] = defaultdict(list)
    for c in contacts:
        by_customer[c[1]].append(c)
    out = set()
    for pk, at in resolved_at.items():
        end = min(at + window, now)
        for other, _customer, created, merged_into in by_customer.get(customer_of.get(pk, ""), ()):
            if other != pk and merged_into != pk and at < created <= end:
                out.add(pk)
                break
    return out


def repeat_complaints(resolved: Iterable[int], customer_of: Mapping[int, str], repeated: set[int],
                      tags_of: Mapping[int, Sequence[str]], fields_of: Mapping[int, Mapping[str, str]],
                      field_names: Sequence[str], window: timedelta) -> dict:
    """The `repeat_complaints` section (see the module's docstring) of the `resolved` tickets, of which
    `repeated` (`repeated_tickets`) are those whose customer came back within `window`."""
    everyone: set[str] = set()
    again: set[str] = set()
    tag_customers: dict[str, set[str]] = defaultdict(set)
    tag_again: dict[str, set[str]] = defaultdict(set)
    value_customers: dict[str, dict[str, set[str]]] = {name: defaultdict(set) for name in field_names}
    value_again: dict[str, dict[str, set[str]]] = {name: defaultdict(set) for name in field_names}
    # The repeated tickets (few) are added to the "again" sets on their own, after their customer's sets: a 90-day
    # report goes through 100,000 resolved tickets here.
    for pk in resolved:
        customer = customer_of.get(pk)
        if not customer:
            continue
        everyone.add(customer)
        tags = tags_of.get(pk)
        if tags:
            for tag in tags:
                tag_customers[tag].add(customer)
        values = fields_of.get(pk) if fields_of else None
        if values:
            for name, value in values.items():
                if name in value_customers:
                    value_customers[name][value].add(customer)
        if pk in repeated:
            again.add(customer)
            for tag in tags or ():
                tag_again[tag].add(customer)
            for name, value in (values or {}).items():
                if name in value_customers:
                    value_again[name][value].add(customer)
    by_tag = {tag: _rate(tag_customers[tag], tag_again[tag])
              for tag in sorted(tag_customers, key=lambda x: (-len(tag_customers[x]), x))}
    by_field = {name: {value: _rate(values[value], value_again[name][value])
                       for value in sorted(values, key=lambda v: (-len(values[v]), v))}
                for name, values in value_customers.items()}
    return {"window_days": round(window / timedelta(days=1), 2), **_rate(everyone, again),
            "by_field": by_field, "by_tag": by_tag}


def by_field(field_choices: Mapping[str, Sequence[str]], fields_of: Mapping[int, Mapping[str, str]],
             created: Iterable[int], resolved: Iterable[int], answers: Iterable[tuple[int, int]],
             good: Callable[[int], bool]) -> dict:
    """The `by_field` section: per field and value, tickets created and resolved, survey answers and their score.

    `answers` are (ticket id, rating) of the answers given in the period;
    `good` says whether a rating is in the top two levels.  A field's
    choices are always listed (zeros included), then any other stored value.
    """
    out: dict[str, dict[str, dict]] = {}
    for name, choices in field_choices.items():
        out[name] = {value: {"created": 0, "resolved": 0, "csat_responses": 0, "csat_good": 0} for value in choices}

    def entry(pk: int, name: str) -> dict | None:
        value = fields_of.get(pk, {}).get(name)
        if value is None:
            return None
        return out[name].setdefault(value, {"created": 0, "resolved": 0, "csat_responses": 0, "csat_good": 0})

    for key, pks in (("created", created), ("resolved", resolved)):
        for pk in pks:
            for name in out:
                e = entry(pk, name)
                if e is not None:
                    e[key] += 1
    for pk, rating in answers:
        for name in out:
            e = entry(pk, name)
            if e is not None:
                e["csat_responses"] += 1
                e["csat_good"] += bool(good(rating))
    for values in out.values():
        for e in values.values():
            e["csat_score"] = _share(e.pop("csat_good"), e["csat_responses"])
    return out


def status_shares(intervals: Iterable[Sequence[tuple[str, datetime, datetime]]], since: datetime,
                  end: datetime) -> dict:
    """The `time_in_status_share` section: each handling status's share of the handling time in [since, end)."""
    seconds = dict.fromkeys(HANDLING, 0.0)
    for ticket in intervals:
        for status, a, b in ticket:
            low, high = max(a, since), min(b, end)
            if status in seconds and high > low:
                seconds[status] += (high - low).total_seconds()
    return shares(seconds)


def shares(seconds: Mapping[str, float]) -> dict:
    """`time_in_status_share` from the seconds spent in each status (those of other statuses are ignored)."""
    handling = {status: seconds.get(status, 0.0) for status in HANDLING}
    total = sum(handling.values())
    return {status: (round(value / total, 4) if total else None) for status, value in handling.items()}
