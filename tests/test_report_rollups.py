"""The report read from per-day rollups (inboxd.reports.rollups) equals the report counted live.

Randomized stores (tickets in two mailboxes, status changes with resolutions
and reopenings, escalations with triggers and reasons, agents' replies of
every kind, CSAT answers, an SLA policy on a business calendar) are reported
on in several time zones, over periods that start and end inside a day, on
SQLite and PostgreSQL.  That the report really reads the stored days is
shown by altering one: the whole-desk report changes, and stops changing
once the configuration (the time zone) changes, the period is scoped, or an
event dated inside the day is written after the day was stored.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from inboxd.config import parse_settings
from inboxd.reports import rollups, tickets
from inboxd.reports.metrics import compute_report
from inboxd.store.engine import reading, writing
from inboxd.store.sql import t

NOW = datetime(2026, 11, 20, 15, 17, tzinfo=UTC)
AGENTS = ("alice", "bob", "carol")
STATUS_DETAILS = [
    {"status_before": "new", "status_after": "open"},
    {"changes": {"status": {"before": "open", "after": "pending"}}},
    {"changes": {"status": {"before": "pending", "after": "solved"}}},
    {"changes": {"status": {"before": "open", "after": "solved"}}},
    {"changes": {"status": {"before": "solved", "after": "closed"}}},
    {"changes": {"status": {"before": "solved", "after": "open"}}},
    {"status_before": "closed", "status_after": "open"},
]
OTHER_EVENTS = [
    ("reply", {"message_id": "a@x"}),
    ("macro", {"macro": "refund", "message_id": "m1@example.com"}),
    ("macro", {"macro": "note-only"}),
    ("message", {"kind": "agent", "from": "support@example.com"}),
    ("message", {"kind": "customer", "from": "agent.smith@example.org"}),
    ("escalate", {"to": "tier2", "reason": "server  down", "trigger": "rule"}),
    ("escalate", {"to": "legal", "reason": "SLA breached"}),
    ("escalate", {"to": "tier2", "reason": "VIP customer", "trigger": "tag"}),
    ("escalate", {"to": "tier3"}),
    ("autoclose", {}),
]


def settings_for(tmp_path: Path, timezone: str):
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    return parse_settings({
        "store": {"url": "sqlite:///unused.db"},
        "mailboxes": [{"name": n, "address": f"{n}@example.com", "imap": imap} for n in ("support", "billing")],
        "agents": [{"name": n, "email": f"{n}@example.com"} for n in AGENTS],
        "calendars": [{"name": "office", "timezone": "Asia/Shanghai"}],
        "sla": [{"name": "std", "first_response": "4h", "resolution": "2d", "calendar": "office"}],
        "reports": {"timezone": timezone},
    }, tmp_path / "inboxd.toml")


def seed(engine, rng: random.Random, tickets: int = 60) -> None:
    """Tickets over the 40 days before NOW, each with a random history."""
    with writing(engine) as conn:
        for pk in range(1, tickets + 1):
            created = NOW - timedelta(seconds=rng.randrange(40 * 86400))
            first = created + timedelta(minutes=rng.randrange(1, 3000))
            events = [(created, "inboxd", "created", {"mailbox": "support"})]
            at = created
            for _ in range(rng.randrange(0, 10)):
                at = at + timedelta(seconds=rng.randrange(60, 3 * 86400))
                if at >= NOW:
                    break
                if rng.random() < 0.4:
                    events.append((at, rng.choice(AGENTS), "status", rng.choice(STATUS_DETAILS)))
                else:
                    action, detail = rng.choice(OTHER_EVENTS)
                    events.append((at, rng.choice((*AGENTS, "inboxd")), action, detail))
            status = rng.choice(("new", "open", "pending", "solved", "closed"))
            solved = at if status in ("solved", "closed") else None
            conn.execute(insert(t.ticket).values(
                id=pk, ref=f"T-{1000 + pk}", subject="q", status=status, priority="normal",
                mailbox=("support", "billing")[pk % 2], requester=f"c{pk % 17}@example.org",
                assignee=rng.choice((*AGENTS, None)),
                tags=json.dumps(rng.sample(["a", "b", "发票"], rng.randrange(3)), ensure_ascii=False),
                message_count=1, created_at=created, updated_at=max(at, created), version=1,
                first_response_at=first if first < NOW else None, solved_at=solved,
                sla_policy=rng.choice(("std", None)),
                first_response_due=created + timedelta(hours=4), resolution_due=created + timedelta(days=2)))
            for when, actor, action, detail in events:
                conn.execute(insert(t.event).values(ticket_id=pk, at=when, actor=actor, action=action,
                                                    detail=json.dumps(detail, ensure_ascii=False)))
            if rng.random() < 0.3 and solved is not None:
                rating = rng.randrange(1, 6)
                conn.execute(insert(t.csat).values(
                    ticket_id=pk, token=f"t{pk}", message_id=f"s{pk}@example.com", customer=f"c{pk % 17}@example.org",
                    sent_at=solved,
                    rating=rating, label=str(rating), answered_at=min(solved + timedelta(hours=5), NOW)))


def report(engine, settings, since, *, use: bool = True, **scope) -> dict:
    with reading(engine) as conn:
        return compute_report(conn, settings, since=since, until=NOW, now=NOW, include_agents=True, rollups=use,
                              **scope)


def live_and_rolled(engine, settings, since) -> tuple[dict, dict]:
    """The report counted live, then read from the stored days and per-ticket rows (both filled here)."""
    live = report(engine, settings, since, use=False)
    assert rollups.fill(engine, settings, since=since - timedelta(weeks=4), until=NOW, now=NOW) > 0
    assert tickets.fill(engine, NOW, since=since - timedelta(weeks=4)) > 0
    return live, report(engine, settings, since)


@pytest.mark.parametrize("seed_, timezone", [(1, "UTC"), (2, "Asia/Shanghai"), (3, "America/New_York"),
                                             (4, "Pacific/Chatham")])
def test_the_rolled_up_report_equals_the_live_one(engine, tmp_path, seed_, timezone):
    seed(engine, random.Random(seed_))
    settings = settings_for(tmp_path, timezone)
    since = NOW - timedelta(days=30, hours=7, minutes=13)
    live, rolled = live_and_rolled(engine, settings, since)
    assert rolled == live
    assert live["escalations"]["count"] > 0 and sum(a["replies"] for a in live["agents"].values()) > 0
    # A second fill finds every day stored and current.
    assert rollups.fill(engine, settings, since=since - timedelta(weeks=4), until=NOW, now=NOW) == 0
    assert report(engine, settings, since) == live
    # A shorter period inside the stored days, and one whose end is a day's end, read the same days.
    for start in (NOW - timedelta(days=7), NOW - timedelta(days=3, hours=1)):
        assert report(engine, settings, start) == report(engine, settings, start, use=False)


def alter_one_day(engine) -> None:
    """Add 1000 replies by "alice" to one stored day: a report that reads the day shows them."""
    c = t.report_rollup.c
    with writing(engine) as conn:
        fp, day, data = conn.execute(select(c.fingerprint, c.day, c.data).where(c.kind == "replies")
                                     .order_by(c.day.desc()).limit(1)).one()
        altered = json.loads(data)
        altered["alice"] = altered.get("alice", 0) + 1000
        conn.execute(update(t.report_rollup).where(c.fingerprint == fp, c.kind == "replies", c.day == day)
                     .values(data=json.dumps(altered)))


def test_the_report_reads_the_stored_days_while_they_are_current(engine, tmp_path):
    seed(engine, random.Random(7))
    settings = settings_for(tmp_path, "Asia/Shanghai")
    since = NOW - timedelta(days=20, hours=5)
    live, rolled = live_and_rolled(engine, settings, since)
    assert rolled == live
    alter_one_day(engine)
    assert report(engine, settings, since)["agents"]["alice"]["replies"] == live["agents"]["alice"]["replies"] + 1000
    # Bypassed, scoped to a mailbox, or under another time zone, the stored days are not read.
    assert report(engine, settings, since, use=False) == live
    assert report(engine, settings, since, mailbox="support") == report(engine, settings, since, use=False,
                                                                       mailbox="support")
    other = settings_for(tmp_path, "Europe/Berlin")
    assert report(engine, other, since) == report(engine, other, since, use=False)
    # A configuration change: the fill stores the days under the new fingerprint and drops the old ones.
    assert rollups.fill(engine, other, since=since, until=NOW, now=NOW) > 0
    with reading(engine) as conn:
        kept = set(conn.execute(select(t.report_rollup.c.fingerprint)).scalars())
    assert kept == {rollups.fingerprint(other)}
    assert report(engine, other, since) == report(engine, other, since, use=False)


def test_an_event_dated_inside_a_stored_day_makes_it_stale(engine, tmp_path):
    seed(engine, random.Random(8))
    settings = settings_for(tmp_path, "UTC")
    since = NOW - timedelta(days=20)
    live, rolled = live_and_rolled(engine, settings, since)
    assert rolled == live
    alter_one_day(engine)
    # A reply dated ten days ago, written after the days were stored (a back-dated import, say).
    with writing(engine) as conn:
        conn.execute(insert(t.event).values(ticket_id=1, at=NOW - timedelta(days=10), actor="bob", action="reply",
                                            detail="{}"))
    after = report(engine, settings, since)
    assert after == report(engine, settings, since, use=False)
    assert after["agents"]["bob"]["replies"] == live["agents"]["bob"]["replies"] + 1
    # The next fill recounts the stale days (from the event's day on) and the report reads them again.
    assert rollups.fill(engine, settings, since=since, until=NOW, now=NOW) >= 10
    assert report(engine, settings, since) == after


def test_days_complete_in_the_report_time_zone():
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    since = datetime(2026, 11, 1, 10, tzinfo=UTC)            # 18:00 local: its day is not whole
    days = rollups.complete_days(since, datetime(2026, 11, 5, tzinfo=UTC), datetime(2026, 11, 4, 16, 30, tzinfo=UTC),
                                 tz)
    # Local midnights are 16:00 UTC; the day ending 2026-11-04 16:00 UTC ended less than SETTLE before now.
    assert days == [(datetime(2026, 11, 1, 16, tzinfo=UTC), datetime(2026, 11, 2, 16, tzinfo=UTC)),
                    (datetime(2026, 11, 2, 16, tzinfo=UTC), datetime(2026, 11, 3, 16, tzinfo=UTC))]


def test_the_scheduler_rolls_the_days_up_at_night(engine, tmp_path):
    from inboxd.desk.duties import Duties

    seed(engine, random.Random(9), tickets=20)
    settings = settings_for(tmp_path, "Asia/Shanghai")
    c = t.report_rollup.c
    duties = Duties(engine, settings)
    day = datetime(2026, 11, 20, 10, tzinfo=UTC)                # 18:00 in Shanghai: not at night
    duties.run_due(day)
    with reading(engine) as conn:
        assert conn.execute(select(c.day)).all() == []
    night = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)          # 02:30 in Shanghai
    duties.run_due(night)
    with reading(engine) as conn:
        days = set(conn.execute(select(c.day)).scalars())
    # The whole local days of the FILL_DAYS days before now (the first starts at 02:30 local, not a whole
    # day), up to the one that ended at 00:00 local (16:00 UTC), more than SETTLE ago.
    assert len(days) == rollups.FILL_DAYS - 1 and max(days) == datetime(2026, 11, 19, 16, tzinfo=UTC)
    assert report(engine, settings, NOW - timedelta(days=30)) == report(engine, settings, NOW - timedelta(days=30),
                                                                        use=False)


def test_the_days_before_the_first_event_are_stored_empty_in_one_go(engine, tmp_path):
    """A new store (or a desk's years before it began): nothing to count before the first event, so
    those days are written together with empty figures, and the report reads them like any other."""
    seed(engine, random.Random(10), tickets=15)
    with writing(engine) as conn:
        first = conn.execute(select(t.event.c.at).order_by(t.event.c.at).limit(1)).scalar_one()
    settings = settings_for(tmp_path, "Asia/Shanghai")
    since = NOW - timedelta(days=90)
    live = report(engine, settings, since, use=False)
    days = rollups.complete_days(since, NOW, NOW, settings.reports.timezone)
    assert rollups.fill(engine, settings, since=since, until=NOW, now=NOW) == len(days)
    c = t.report_rollup.c
    with reading(engine) as conn:
        stored = {(kind, day): data for kind, day, data in conn.execute(select(c.kind, c.day, c.data))}
    empty_days = [start for start, end in days if end <= first]
    assert len(empty_days) > 40
    for day in empty_days:
        assert json.loads(stored[("replies", day)]) == {}
        assert json.loads(stored[("resolved", day)]) == []
        assert json.loads(stored[("escalations", day)])["count"] == 0
    assert report(engine, settings, since) == live
    # The stored empty days are read: altering one changes the report.
    with writing(engine) as conn:
        conn.execute(update(t.report_rollup).where(c.kind == "replies", c.day == empty_days[5])
                     .values(data=json.dumps({"alice": 1000})))
    altered = report(engine, settings, since)
    assert altered["agents"]["alice"]["replies"] == live["agents"]["alice"]["replies"] + 1000
    # A mail dated in one of those days, written later (an import): that day is stale, the report counts live.
    with writing(engine) as conn:
        conn.execute(insert(t.event).values(ticket_id=1, at=empty_days[3] + timedelta(hours=3), actor="bob",
                                            action="reply", detail="{}"))
    assert report(engine, settings, since) == report(engine, settings, since, use=False)
