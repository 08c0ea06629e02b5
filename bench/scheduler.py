"""Time one scheduler pass (`Duties.run_due`) over 100,000 open tickets.

    /work/venv/bin/python bench/scheduler.py [TICKETS]

The store gets N open tickets (new, open and pending; half assigned) with a
business-hours SLA: a busy queue where 98 % were created in the last three
hours and 2 % are older (so their promises are broken).  Three passes are
timed:

1. the first pass, which computes every ticket's SLA due times (as after an
   upgrade, or a change of policy) and then handles what is due: warnings,
   breaches with escalations, unassigned alerts, pending reminders;
2. a second pass right after, which finds everything already claimed;
3. a steady-state pass after 1 % of the tickets changed.

Mail the duties queue goes to the outbox (nothing is sent here).
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from inboxd.config import parse_settings
from inboxd.store.engine import db_time, open_store
from inboxd.desk.duties import Duties

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
AGENTS = ("alice", "bob", "carol", "dave")


def settings_for(tmp: Path):
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    return parse_settings({
        "store": {"url": f"sqlite:///{tmp / 'bench.db'}", "data_dir": str(tmp / "var")},
        "mailboxes": [{"name": "support", "address": "support@example.com", "imap": imap}],
        "agents": [{"name": n, "email": f"{n}@example.com", "role": "supervisor" if n == "carol" else "agent"}
                   for n in AGENTS],
        "calendars": [{"name": "office", "timezone": "Asia/Shanghai", "holidays": "CN"}],
        "sla": [{"name": "std", "first_response": "4h", "next_response": "8h", "resolution": "3d",
                 "warn_before": "30m", "calendar": "office", "priority": ["low", "normal", "high", "urgent"]}],
        "scheduler": {"digest_time": "23:59", "weekly_report_day": "sun", "unassigned_after": "1d",
                      "unassigned_after_urgent": "1d"},
        "csat": {"enabled": False},
    }, tmp / "inboxd.toml")


def build(path: Path, n: int, rng: random.Random) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    tickets, events = [], []
    for pk in range(1, n + 1):
        old = rng.random() < 0.02
        created = NOW - timedelta(seconds=rng.uniform(86400, 30 * 86400) if old else rng.uniform(0, 3 * 3600))
        status = rng.choice(("new", "open", "open", "pending"))
        assignee = rng.choice(AGENTS) if status != "new" and rng.random() < 0.5 else None
        first = db_time(created + timedelta(minutes=30)) if status in ("pending",) else None
        tickets.append((pk, f"T-{999 + pk}", f"Ticket {pk}", status, rng.choice(("normal", "high", "urgent")),
                        "support", f"c{pk % 5000}@example.org", "", assignee, "[]", 1, db_time(created),
                        db_time(created + timedelta(minutes=30)), first, 1))
        events.append((pk, db_time(created), "inboxd", "created", "{}"))
        if status == "pending":
            events.append((pk, db_time(created + timedelta(minutes=30)), assignee or "alice", "reply",
                           '{"changes": {"status": {"before": "open", "after": "pending"}}}'))
    db.executemany(
        "INSERT INTO ticket (id, ref, subject, status, priority, mailbox, requester, requester_name, assignee, tags,"
        " message_count, created_at, updated_at, first_response_at, version) VALUES"
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", tickets)
    db.executemany("INSERT INTO event (ticket_id, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)", events)
    db.execute("COMMIT")
    db.close()


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-") as tmpdir:
        tmp = Path(tmpdir)
        settings = settings_for(tmp)
        engine = open_store(settings.store.url)
        build(tmp / "bench.db", n, random.Random(3))
        duties = Duties(engine, settings)
        first, done = timed(lambda: duties.run_due(NOW))
        print(f"{n} open tickets")
        print(f"  first pass (compute every due time, then handle what is due): {first:7.2f} s  {done}")
        second, done2 = timed(lambda: duties.run_due(NOW))
        print(f"  second pass (all claimed already):                               {second:7.2f} s  {done2}")
        db = sqlite3.connect(tmp / "bench.db")
        db.execute("UPDATE ticket SET version = version + 1 WHERE id % 100 = 0")
        db.commit()
        third, done3 = timed(lambda: duties.run_due(NOW + timedelta(minutes=1)))
        print(f"  steady pass after 1 % of tickets changed:                        {third:7.2f} s  {done3}")
        queued = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        print(f"  mail queued by the duties: {queued}")


if __name__ == "__main__":
    main()
