"""Time `compute_report` on a store of 100,000 tickets (a year of a busy helpdesk).

    /work/venv/bin/python bench/report.py [TICKETS]

The store is built once per run in a temporary directory: open_store creates
the schema, then tickets, messages (2 per ticket), events (created, first
reply, solve, close: about 3.5 per ticket) and CSAT rows go in with
executemany.  The report is timed for the last 7 and the last 90 days, with
and without the per-agent section, best of 3; then the 90-day one again
after storing what the nightly duty stores (the days' rollups and the
per-ticket rows of inboxd.reports.tickets).
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from inboxd.config import parse_settings
from inboxd.store.engine import db_time, open_store, reading
from inboxd.reports import rollups
from inboxd.reports import tickets as per_ticket
from inboxd.reports.metrics import compute_report

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
AGENTS = ("alice", "bob", "carol", "dave", "erin", "frank")
TAGS = ("billing", "refund", "shipping", "login", "bug", "发票")
REASONS = ("server down", "refund over limit", "legal", "VIP customer")


def settings_for(tmp: Path):
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    return parse_settings({
        "store": {"url": f"sqlite:///{tmp / 'bench.db'}"},
        "mailboxes": [{"name": name, "address": f"{name}@example.com", "imap": imap}
                      for name in ("support", "billing", "sales")],
        "agents": [{"name": name, "email": f"{name}@example.com", "role": "supervisor" if name == "alice" else "agent"}
                   for name in AGENTS],
        "calendars": [{"name": "office", "timezone": "Asia/Shanghai"}],
        "sla": [{"name": "std", "first_response": "4h", "resolution": "2d", "calendar": "office"},
                {"name": "vip", "first_response": "1h", "resolution": "8h"}],
    }, tmp / "inboxd.toml")


def build(path: Path, tickets: int, rng: random.Random) -> tuple[int, int]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    digest = hashlib.sha256(b"bench").hexdigest()
    db.execute("INSERT INTO rawmessage (sha256, size, data) VALUES (?, 5, x'62656e6368')", (digest,))
    ticket_rows, message_rows, event_rows, csat_rows = [], [], [], []
    for pk in range(1, tickets + 1):
        created = NOW - timedelta(seconds=rng.uniform(0, 365 * 86400))
        first = created + timedelta(minutes=rng.expovariate(1 / 240))
        solved = first + timedelta(hours=rng.expovariate(1 / 30))
        closed = solved + timedelta(days=3)
        status = "closed" if closed < NOW else "solved" if solved < NOW else "pending" if first < NOW else "new"
        events = [(created, "inboxd", "created", {"mailbox": "support"})]
        if first < NOW:
            events.append((first, "alice", "message", {"kind": "agent", "status_before": "new", "status_after": "pending"}))
        if solved < NOW:
            events.append((solved, "bob", "status", {"changes": {"status": {"before": "pending", "after": "solved"}}}))
        if closed < NOW:
            events.append((closed, "inboxd", "close", {"changes": {"status": {"before": "solved", "after": "closed"}}}))
            if rng.random() < 0.3:
                rating = rng.choice((1, 1, 2, 2, 3, 4, 5))
                csat_rows.append((pk, f"t{pk}", db_time(closed), rating, str(rating), db_time(closed + timedelta(hours=5))))
        if rng.random() < 0.02:
            events.append((created + timedelta(minutes=30), "alice", "escalate",
                           {"to": "tier2", "reason": rng.choice(REASONS),
                            "changes": {"status": {"before": "new", "after": "open"}}}))
            events.sort(key=lambda e: e[0])
        last = max(e[0] for e in events)
        ticket_rows.append((
            pk, f"T-{1000 + pk}", rng.choice(("support", "billing", "sales")), f"c{pk}@example.cn",
            rng.choice(AGENTS), json.dumps(rng.sample(TAGS, rng.randint(0, 2)), ensure_ascii=False), status,
            db_time(created), db_time(last), db_time(first) if first < NOW else None,
            db_time(solved) if solved < NOW else None, db_time(closed) if closed < NOW else None,
            rng.choice(("std", "vip", None)), db_time(created + timedelta(hours=4)), db_time(created + timedelta(hours=48)),
        ))
        for at, actor, action, detail in events:
            event_rows.append((pk, db_time(at), actor, action, json.dumps(detail)))
        message_rows.append((f"<in{pk}@x>", pk, "in", "customer", db_time(created)))
        if first < NOW:
            message_rows.append((f"<out{pk}@x>", pk, "out", "agent", db_time(first)))
    db.executemany(
        "INSERT INTO ticket (id, ref, subject, priority, mailbox, requester, requester_name, assignee, tags,"
        " message_count, status, created_at, updated_at, first_response_at, solved_at, closed_at, tier, escalated,"
        " sla_policy, first_response_due, resolution_due, sla_version, version)"
        " VALUES (?, ?, 'subject', 'normal', ?, ?, '', ?, ?, 2, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?, ?, 0, 1)", ticket_rows)
    db.executemany(
        "INSERT INTO message (message_key, ticket_id, direction, kind, created_at, date, raw_sha256, from_addr,"
        " from_name, to_addrs, cc_addrs, reply_to, subject, text, reply_text, html_only, in_reply_to,"
        " \"references\", auto, size)"
        f" VALUES (?, ?, ?, ?, ?, NULL, '{digest}', '', '', '[]', '[]', '[]', '', 'body', 'body', 0, '[]', '[]', '{{}}', 4)",
        message_rows)
    db.executemany("INSERT INTO event (ticket_id, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)", event_rows)
    db.executemany("INSERT INTO csat (ticket_id, customer, token, message_id, sent_at, rating, label, answered_at)"
                   " VALUES (?, 'c', ?, 'm', ?, ?, ?, ?)", csat_rows)
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return len(message_rows), len(event_rows)


def best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    tickets = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = settings_for(tmp)
        engine = open_store(settings.store.url)
        start = time.perf_counter()
        messages, events = build(tmp / "bench.db", tickets, random.Random(42))
        print(f"store: {tickets:,} tickets, {messages:,} messages, {events:,} events "
              f"(built in {time.perf_counter() - start:.1f} s)")
        for days in (7, 90):
            for agents in (False, True):
                def run() -> dict:
                    with reading(engine) as conn:
                        return compute_report(conn, settings, since=NOW - timedelta(days=days), until=NOW, now=NOW,
                                              include_agents=agents)
                seconds = best_of(3, run)
                created = run()["tickets"]["created"]
                label = "with agents" if agents else "team only"
                print(f"report {days:>2} days ({label:<11}): {seconds:6.2f} s best of 3  ({created:,} tickets created)")
        # What the scheduler's nightly duty stores: the days' rollups and the per-ticket rows.
        start = time.perf_counter()
        rollups.fill_recent(engine, settings, NOW)
        rows = per_ticket.fill(engine, NOW, since=NOW - timedelta(days=rollups.FILL_DAYS))
        print(f"rollups: the days and {rows:,} per-ticket rows stored in {time.perf_counter() - start:.1f} s")

        def rolled() -> dict:
            with reading(engine) as conn:
                return compute_report(conn, settings, since=NOW - timedelta(days=90), until=NOW, now=NOW,
                                      include_agents=True)

        seconds = best_of(3, rolled)
        with reading(engine) as conn:
            live = compute_report(conn, settings, since=NOW - timedelta(days=90), until=NOW, now=NOW,
                                  include_agents=True, rollups=False)
        print(f"report 90 days (with agents, rollups stored): {seconds:6.2f} s best of 3  (same as without: "
              f"{rolled() == live})")


if __name__ == "__main__":
    main()
