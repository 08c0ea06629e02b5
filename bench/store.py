"""Benchmark: the store at scale, 1,000,000 messages / 100,000 tickets, on SQLite and PostgreSQL.

    .venv/bin/python bench/store.py [--tickets 100000] [--store sqlite|postgresql|both] [--keep DIR]

The store is the one bench/cli.py builds (its `build`/`fill`, imported, not
copied): N tickets with 10 messages each (customer mail and agent replies in
turn), sightings, a "created" event and a "message" event per later message,
a customer row per requester; every ticket's SLA due times not yet computed
(as after an upgrade or a change of policy); tickets older than a week
closed (`prepare`).  It is built with sqlite3's
executemany into `--keep DIR` (reused by a later run) or a temp dir.  The
PostgreSQL store is a private cluster (inboxd.testing.postgres) into which
the SQLite store is copied by `inboxd.store.copy.copy_rows` (the code of
`inboxd migrate-store`) once per run; every measured pass then works on a
fresh `CREATE DATABASE ... TEMPLATE` of it, as the SQLite passes work on a
fresh file copy, so each "first pass" starts from the same store.  None of
the building or copying is timed.

Measured, each in this process (wall time and this process's CPU time; on
PostgreSQL the server's own CPU is not in the CPU figure):

* threading lookup per message: `inboxd.desk.threads.find_ticket` with
  `inboxd.store.lookup.StoreLookup` (what ingest's decide step calls), on
  2,000 parsed replies: a third answer a stored message by In-Reply-To and
  References, a third carry only a subject tag, a third are new mail that
  names nothing stored; one read transaction, mean per message (target
  0.3 ms);
* one scheduler pass, `Duties(engine, settings).run_due(now)` with the
  settings of bench/scheduler.py (a business-hours SLA on the CN calendar,
  warnings, escalation, unassigned alerts, the weekly report's day): the
  first pass after the fill (computes the due times of every unresolved
  ticket and of `BACKFILL_RESOLVED` solved or closed ones, then handles
  what is due; target 5 s), a second pass at the same time, the passes, a
  minute apart, that finish the backfill of the closed tickets' due times
  (their number and total time), and a steady pass a minute later after
  1 % of the tickets changed (target 0.3 s);
* the weekly report over the last 90 days, `compute_report(...,
  include_agents=True)` in a read transaction, best of 3 (target 1 s);
  then again after adding the status events the fill does not write (an
  "open" and a "solved" event per resolved ticket, an auto-close per closed
  one: what a desk's history holds, and what the report's status figures read),
  first with the per-day rollups only, then with the per-ticket rows
  (inboxd.reports.tickets) filled as the nightly duty fills them (the fill
  timed too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from bench import cli as cli_bench  # noqa: E402
from inboxd.config import parse_settings  # noqa: E402
from inboxd.desk.duties import Duties  # noqa: E402
from inboxd.desk.threads import TicketTag, find_ticket  # noqa: E402
from inboxd.mail.message import parse_message  # noqa: E402
from inboxd.outbound.compose import ticket_ref_from_message_id  # noqa: E402
from inboxd.reports.metrics import compute_report  # noqa: E402
from inboxd.reports import rollups, tickets  # noqa: E402
from inboxd.store.copy import copy_rows  # noqa: E402
from inboxd.store.engine import open_store, reading  # noqa: E402
from inboxd.store.slaclock import stale_tickets  # noqa: E402
from inboxd.testing.mail import make_mail  # noqa: E402
from inboxd.testing.postgres import PostgresCluster  # noqa: E402

PARTS = ("lookup", "scheduler", "report")
TARGETS = {"lookup": 0.3e-3, "first": 5.0, "steady": 0.3, "report": 1.0}


def settings_for(root: Path):
    """bench/scheduler.py's desk (a business-hours SLA on the CN calendar, warnings, escalation,
    unassigned alerts, Sunday's weekly report) over bench/cli.py's mailboxes and agents."""
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    return parse_settings({
        "store": {"url": f"sqlite:///{root / 'inboxd.db'}", "data_dir": str(root / "var")},
        "mailboxes": [{"name": name, "address": f"{name}@example.com", "imap": imap}
                      for name in cli_bench.MAILBOXES],
        "agents": [{"name": n, "email": f"{n}@example.com", "role": "supervisor" if n == "carol" else "agent"}
                   for n in cli_bench.AGENTS],
        "calendars": [{"name": "office", "timezone": "Asia/Shanghai", "holidays": "CN"}],
        "sla": [{"name": "std", "first_response": "4h", "next_response": "8h", "resolution": "3d",
                 "warn_before": "30m", "calendar": "office", "priority": ["low", "normal", "high", "urgent"]}],
        "scheduler": {"digest_time": "23:59", "weekly_report_day": "sun", "unassigned_after": "1d",
                      "unassigned_after_urgent": "1d"},
        "csat": {"enabled": False},
    }, root / "inboxd.toml")


def now_for(tickets: int) -> datetime:
    """A time just after the fill's last ticket (bench/cli.py: one ticket a minute from 2026-01-01, 10 h each)."""
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=tickets, hours=12)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn):
    """(wall seconds, CPU seconds of this process, result) of fn()."""
    wall, proc = time.perf_counter(), cpu()
    result = fn()
    return time.perf_counter() - wall, cpu() - proc, result


def sample_mails(tickets: int, messages: int, count: int = 2000, seed: int = 5) -> list:
    """Parsed replies to thread: by headers, by subject tag only, and new mail."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            parent = rng.randrange(1, messages + 1)
            raw = make_mail(subject="Re: ticket", in_reply_to=f"<m{parent}@example.org>",
                            references=[f"<m{max(1, parent - 1)}@example.org>", f"<m{parent}@example.org>"])
        elif kind == 1:
            raw = make_mail(subject=f"Re: [T-{1000 + rng.randrange(tickets)}] ticket")
        else:
            raw = make_mail(subject="A new question", in_reply_to=f"<unknown{i}@elsewhere.example>")
        out.append(parse_message(raw))
    return out


def measure(label: str, engine, settings, tickets: int, messages: int, reset,
            only: frozenset[str] = frozenset(PARTS)) -> dict[str, float]:
    """Every figure in `only` on one store; `reset()` gives a fresh engine on an unmeasured copy of it."""
    now = now_for(tickets)
    figures: dict[str, float] = dict.fromkeys(["lookup", "first", "first_cpu", "second", "steady", "report",
                                               "report_cpu"], float("nan"))
    if "lookup" in only:
        _lookup(label, engine, settings, tickets, messages, figures)
    if "scheduler" in only:
        engine = reset()
        _scheduler(label, engine, settings, now, figures)
    if "report" in only:
        _report(label, engine, settings, now, figures)
    engine.dispose()
    return figures


def _lookup(label: str, engine, settings, tickets: int, messages: int, figures: dict[str, float]) -> None:
    tags = TicketTag(settings.tickets.id_format, settings.tickets.tag_format)
    mails = sample_mails(tickets, messages)
    with reading(engine) as conn:
        from inboxd.store.lookup import StoreLookup

        lookup = StoreLookup(conn)
        for msg in mails[:100]:  # warm the statement caches
            find_ticket(msg, lookup, tags, ticket_ref_from_message_id)
        wall, proc, found = timed(lambda: [find_ticket(m, lookup, tags, ticket_ref_from_message_id) for m in mails])
    threaded = sum(not match.is_new for match in found)
    figures["lookup"] = wall / len(mails)
    print(f"[{label}] threading lookup: {wall / len(mails) * 1000:.3f} ms/message wall,"
          f" {proc / len(mails) * 1000:.3f} ms CPU  ({threaded} of {len(mails)} threaded; target 0.3 ms)")


def _scheduler(label: str, engine, settings, now: datetime, figures: dict[str, float]) -> None:
    duties = Duties(engine, settings)
    wall, proc, done = timed(lambda: duties.run_due(now))
    figures["first"] = wall
    figures["first_cpu"] = proc
    print(f"[{label}] first scheduler pass: {wall:7.2f} s wall, {proc:6.2f} s CPU  {done}  (target 5 s)")
    wall, proc, done = timed(lambda: duties.run_due(now))
    figures["second"] = wall
    print(f"[{label}] second pass (same time):  {wall:7.2f} s wall, {proc:6.2f} s CPU  {done}")
    # The rest of an upgrade's backfill: each pass refreshes the unresolved tickets and at most
    # BACKFILL_RESOLVED solved or closed ones, so the first pass left most closed tickets stale.
    passes, wall_all, cpu_all, at = 0, 0.0, 0.0, now + timedelta(minutes=1)
    while True:
        with reading(engine) as conn:
            left = len(stale_tickets(conn))
        if not left or passes >= 50:
            break
        at += timedelta(minutes=1)
        wall, proc, _done = timed(lambda: duties.run_due(at))
        passes, wall_all, cpu_all = passes + 1, wall_all + wall, cpu_all + proc
    figures["backfill"] = wall_all
    print(f"[{label}] rest of the backfill: {passes} more passes, {wall_all:7.2f} s wall, {cpu_all:6.2f} s CPU"
          f" in all ({left} stale left)")

    with engine.begin() as conn:
        conn.execute(text("UPDATE ticket SET version = version + 1 WHERE id % 100 = 0"))
    wall, proc, done = timed(lambda: duties.run_due(at + timedelta(minutes=1)))
    figures["steady"] = wall
    print(f"[{label}] steady pass (1 % changed): {wall:7.2f} s wall, {proc:6.2f} s CPU  {done}  (target 0.3 s)")


def _report(label: str, engine, settings, now: datetime, figures: dict[str, float]) -> None:
    def report(use: bool = True) -> dict:
        with reading(engine) as conn:
            return compute_report(conn, settings, since=now - timedelta(days=90), until=now, now=now,
                                  include_agents=True, rollups=use)

    def cold() -> dict:
        # The first report of a store without rollups: the days are counted and stored (as the scheduler's
        # daily duty does), then read.  The weekly report fills the same way before it computes.
        rollups.fill(engine, settings, since=now - timedelta(days=90), until=now, now=now)
        return report()

    live = timed(lambda: report(False))
    print(f"[{label}] weekly report, 90 days, without rollups: {live[0]:6.2f} s wall, {live[1]:6.2f} s CPU")
    first = timed(cold)
    print(f"[{label}] weekly report, 90 days, cold (rolling up the days first): {first[0]:6.2f} s wall, "
          f"{first[1]:6.2f} s CPU")
    runs = [timed(report) for _ in range(3)]
    wall, proc, result = min(runs, key=lambda r: r[0])
    figures["report"] = wall
    figures["report_cpu"] = min(r[1] for r in runs)
    print(f"[{label}] weekly report, 90 days, warm: {wall:6.2f} s wall, {proc:6.2f} s CPU best of 3"
          f"  ({result['tickets']['created']:,} tickets created; target 1 s; same as without rollups:"
          f" {result == live[2]})")

    # The fill resolves tickets without the status events a desk writes (the agent's "open" and "solved",
    # the auto-close), so the report above has almost no status history to read.  The same store with them:
    added = add_status_events(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM report_rollup"))
    rollups.fill(engine, settings, since=now - timedelta(days=90), until=now, now=now)
    runs = [timed(report) for _ in range(3)]
    wall, proc, result = min(runs, key=lambda r: r[0])
    print(f"[{label}] weekly report, 90 days, warm days, no per-ticket rows, with {added:,} status events:"
          f" {wall:6.2f} s wall, {min(r[1] for r in runs):6.2f} s CPU best of 3"
          f"  ({result['tickets']['resolved']:,} resolved)")
    # The per-ticket rows (inboxd.reports.tickets, report_ticket), as the nightly duty fills them.
    filled = timed(lambda: tickets.fill(engine, now, since=now - timedelta(days=rollups.FILL_DAYS)))
    print(f"[{label}] filling the per-ticket rows ({filled[2]:,} tickets): {filled[0]:6.2f} s wall,"
          f" {filled[1]:6.2f} s CPU (the nightly duty, in batches of {tickets.BATCH})")
    runs = [timed(report) for _ in range(3)]
    wall, proc, rolled = min(runs, key=lambda r: r[0])
    figures["report_events"] = wall
    figures["report_events_cpu"] = min(r[1] for r in runs)
    print(f"[{label}] weekly report, 90 days, warm, with the per-ticket rows: {wall:6.2f} s wall,"
          f" {min(r[1] for r in runs):6.2f} s CPU best of 3  (target 1 s; same as without them:"
          f" {rolled == result})")


def add_status_events(engine) -> int:
    """The status events of the tickets the fill resolved: "open" an hour after creation, "solved" when
    solved, and for the closed ones the auto-close an hour later (not timed); how many were added."""
    later = ("strftime('%Y-%m-%d %H:%M:%f000', {}, '+1 hour')" if engine.dialect.name == "sqlite"
             else "{} + interval '1 hour'")
    change = '{{"changes": {{"status": {{"before": "{}", "after": "{}"}}}}}}'
    statements = [
        (f"SELECT id, {later.format('created_at')}, 'alice', 'status', '{change.format('new', 'open')}'"
         " FROM ticket WHERE status IN ('solved', 'closed')"),
        (f"SELECT id, coalesce(solved_at, updated_at), 'alice', 'status', '{change.format('open', 'solved')}'"
         " FROM ticket WHERE status IN ('solved', 'closed')"),
        (f"SELECT id, {later.format('coalesce(closed_at, updated_at)')}, 'inboxd', 'autoclose', '{{}}'"
         " FROM ticket WHERE status = 'closed'"),
    ]
    added = 0
    with engine.begin() as conn:
        for select_ in statements:
            added += conn.execute(text("INSERT INTO event (ticket_id, at, actor, action, detail) " + select_)).rowcount
    return added


def prepare(db: Path, tickets: int) -> None:
    """Two changes to bench/cli.py's store, made once on the pristine store:

    * Message-IDs stored as ingest stores them, without angle brackets (the
      fill keeps them), so replies thread by their headers;
    * a desk that keeps up: tickets created more than a week before `now`
      that the fill left new, open or pending are closed (solved and closed
      10 h after they were created), so a week of open work remains (about
      6,000 tickets, half of them past their resolution time) rather than
      60,000 tickets two months overdue;
    * each pending ticket has the status event that made it pending.
    """
    conn = sqlite3.connect(db)
    with conn:
        if conn.execute("SELECT message_id FROM message WHERE id = 1").fetchone()[0].startswith("<"):
            conn.execute("UPDATE message SET message_id = substr(message_id, 2, length(message_id) - 2)")
        week_ago = (now_for(tickets) - timedelta(days=7)).replace(tzinfo=None).isoformat(sep=" ")
        conn.execute("UPDATE ticket SET status = 'closed', solved_at = updated_at, closed_at = updated_at"
                     " WHERE status IN ('new', 'open', 'pending') AND created_at < ?", (week_ago,))
        # A pending ticket got there by an agent's status change, which its history shows (the fill
        # writes none, so the reminder duty found no pending spell and looked again on every pass).
        if not conn.execute("SELECT 1 FROM event WHERE action = 'status' LIMIT 1").fetchone():
            conn.execute("INSERT INTO event (ticket_id, at, actor, action, detail)"
                         " SELECT id, created_at, 'alice', 'status',"
                         " '{\"changes\": {\"status\": {\"before\": \"open\", \"after\": \"pending\"}}}'"
                         " FROM ticket WHERE status = 'pending'")
    conn.close()


def sqlite_store(root: Path, tickets: int, settings) -> tuple:
    """(engine, reset) over copies of the pristine SQLite store in root."""
    pristine = root / "inboxd.db"
    work = root / "work.db"
    engines = []

    def reset():
        for engine in engines:
            engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work}{suffix}").unlink(missing_ok=True)
        # The backup API, not a file copy: changes still in the pristine store's WAL (while another
        # connection, such as the PostgreSQL copy's, keeps it from being checkpointed) come along.
        with contextlib.closing(sqlite3.connect(pristine)) as src, contextlib.closing(sqlite3.connect(work)) as dst:
            src.backup(dst)
        engines.append(open_store(f"sqlite:///{work}"))
        return engines[-1]

    return reset(), reset


def postgres_store(stack: contextlib.ExitStack, root: Path, tickets: int) -> tuple:
    """(engine, reset) over databases made from a PostgreSQL copy of the SQLite store."""
    cluster = stack.enter_context(PostgresCluster())
    url = cluster.create_database("pristine")
    target = open_store(url)
    # The copy wants both stores at the same schema: a store built before a migration (0019) is brought up first.
    source = open_store(f"sqlite:///{root / 'inboxd.db'}")
    start = time.perf_counter()
    report = copy_rows(source, target, datetime.now(UTC))
    print(f"[postgresql] copied {report.rows:,} rows from SQLite in {time.perf_counter() - start:.0f} s (not timed)")
    source.dispose()
    with target.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    target.dispose()
    engines = []
    admin = create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    stack.callback(admin.dispose)

    def reset():
        for engine in engines:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS work"))
            conn.execute(text("CREATE DATABASE work TEMPLATE pristine"))
        engines.append(open_store(cluster.url("work")))
        return engines[-1]

    return reset(), reset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=100_000)
    ap.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--keep", type=Path, help="build the store here, or reuse the one built here")
    ap.add_argument("--only", choices=PARTS, action="append",
                    help="measure only this (repeatable; default: all); the report then runs on a fresh copy")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = args.keep
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inboxd-bench-store-")))
        cli_bench.build(root, args.tickets)
        prepare(root / "inboxd.db", args.tickets)
        messages = json.loads((root / "built.json").read_text())["messages"]
        settings = settings_for(root)
        only = frozenset(args.only or PARTS)
        results = {}
        if args.store in ("sqlite", "both"):
            engine, reset = sqlite_store(root, args.tickets, settings)
            results["sqlite"] = measure("sqlite", engine, settings, args.tickets, messages, reset, only)
        if args.store in ("postgresql", "both"):
            engine, reset = postgres_store(stack, root, args.tickets)
            results["postgresql"] = measure("postgresql", engine, settings, args.tickets, messages, reset, only)
        print(f"\n{args.tickets:,} tickets, {messages:,} messages (wall time; targets in brackets)")
        print(f"{'':<12}{'lookup ms':>12}{'first s':>10}{'(CPU)':>8}{'second s':>10}{'steady s':>10}"
              f"{'report s':>10}{'(CPU)':>8}")
        print(f"{'target':<12}{TARGETS['lookup'] * 1000:>12.2f}{TARGETS['first']:>10.1f}{'':>8}{'':>10}"
              f"{TARGETS['steady']:>10.2f}{TARGETS['report']:>10.1f}")
        for store, f in results.items():
            print(f"{store:<12}{f['lookup'] * 1000:>12.3f}{f['first']:>10.2f}{f['first_cpu']:>8.2f}"
                  f"{f['second']:>10.2f}{f['steady']:>10.2f}{f['report']:>10.2f}{f['report_cpu']:>8.2f}")


if __name__ == "__main__":
    main()
