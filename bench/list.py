"""Benchmark: how long `inboxd list` takes on a store of 100,000 tickets.

It builds a store with N tickets (default 100,000) and about 1.5 messages
per ticket, each message seen in one mailbox (one in ten in two), one
"created" event per ticket, then times the CLI as an agent runs it, as a
subprocess from interpreter start to exit, best of 3:

* `inboxd list --json` (every ticket: the contract says never truncated),
* `inboxd --as alice list` (the default human view: open work first),
* `inboxd list --status open --limit 50`.

`inboxd.store.engine.open_store` creates the schema (the real migrations); the rows
are bulk-inserted with sqlite3's executemany, which takes a few seconds.
Usage: python bench/list.py [N]   (keeps the store in a temp dir it prints)
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inboxd.store.engine import db_time, open_store  # noqa: E402

MAILBOXES = ("support", "billing")
AGENTS = ("alice", "bob", "carol")
STATUSES = ("new", "open", "pending", "solved", "closed")
SUBJECTS = ("Cannot log in", "Invoice for October", "订单 20481 还没有发货", "發票抬頭需要更改",
            "Charged twice for order 7731", "Password reset link expired")


def write_config(root: Path) -> Path:
    (root / "pw").write_text("x\n")
    lines = ["[store]", 'url = "sqlite:///inboxd.db"', 'data_dir = "var"', ""]
    for name in MAILBOXES:
        lines += ["[[mailboxes]]", f'name = "{name}"', f'address = "{name}@example.com"', "[mailboxes.imap]",
                  'host = "127.0.0.1"', 'username = "x"', f'password_file = "{root / "pw"}"', ""]
    for name in AGENTS:
        lines += ["[[agents]]", f'name = "{name}"', f'email = "{name}@example.com"', ""]
    path = root / "inboxd.toml"
    path.write_text("\n".join(lines))
    return path


def fill(db: Path, n: int, seed: int = 7) -> int:
    """Bulk-insert n tickets with their messages, sightings and events; returns the message count."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("INSERT INTO rawmessage (sha256, size, data) VALUES ('0' , 1, x'00')")
    tickets, messages, sightings, events = [], [], [], []
    msg_id = 0
    for i in range(n):
        pk = i + 1
        created = start + timedelta(seconds=i * 60)
        updated = created + timedelta(minutes=rng.randrange(0, 5000))
        box = MAILBOXES[i % 2]
        count = 2 if rng.random() < 0.5 else 1
        status = rng.choice(STATUSES)
        assignee = rng.choice((None, *AGENTS))
        tags = json.dumps(rng.sample(("vip", "billing", "bug", "refund"), rng.randrange(0, 3)))
        tickets.append((pk, f"T-{1000 + i}", rng.choice(SUBJECTS), status, rng.choice(("low", "normal", "high")),
                        box, f"c{i}@example.org", f"Customer {i}", assignee, tags, count, db_time(created),
                        db_time(updated)))
        for j in range(count):
            msg_id += 1
            when = db_time(created + timedelta(minutes=j))
            messages.append((msg_id, f"<m{msg_id}@example.org>", f"<m{msg_id}@example.org>", pk,
                             f"c{i}@example.org", when, "Hello, it does not work.\n" * 5, when))
            sightings.append((msg_id, box, "INBOX", 1, msg_id, when))
            if msg_id % 10 == 0:
                sightings.append((msg_id, MAILBOXES[(i + 1) % 2], "INBOX", 1, msg_id, when))
        events.append((pk, db_time(created), "inboxd", "created", "{}"))
    with conn:
        conn.executemany(
            "INSERT INTO ticket (id, ref, subject, status, priority, mailbox, requester, requester_name, assignee,"
            " tags, message_count, created_at, updated_at, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,1)", tickets)
        conn.executemany(
            "INSERT INTO message (id, message_key, message_id, ticket_id, direction, kind, from_addr, from_name, to_addrs,"
            " cc_addrs, reply_to, date, subject, text, reply_text, html_only, in_reply_to, \"references\", auto,"
            " raw_sha256, size, created_at)"
            " VALUES (?,?,?,?,'in','customer',?,'','[]','[]','[]',?,'',?,'',0,'[]','[]','{}','0',100,?)", messages)
        conn.executemany("INSERT INTO sighting (message_pk, mailbox, folder, uidvalidity, uid, seen_at)"
                         " VALUES (?,?,?,?,?,?)", sightings)
        conn.executemany("INSERT INTO event (ticket_id, at, actor, action, detail) VALUES (?,?,?,?,?)", events)
    conn.close()
    return msg_id


def best_of(config: Path, args: list[str], runs: int = 3) -> tuple[float, int]:
    """(best wall time in seconds, bytes printed) of `inboxd --config config ARGS`."""
    times, size = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "inboxd", "--config", str(config), *args],
                              capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
        size = len(proc.stdout)
    return min(times), size


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    root = Path(tempfile.mkdtemp(prefix="inboxd-bench-list-"))
    config = write_config(root)
    open_store(f"sqlite:///{root / 'inboxd.db'}").dispose()
    t0 = time.perf_counter()
    messages = fill(root / "inboxd.db", n)
    print(f"store {root}: {n} tickets, {messages} messages, filled in {time.perf_counter() - t0:.1f} s")
    for label, args in (
        ("list --json", ["list", "--json"]),
        ("list (default human view)", ["--as", "alice", "list"]),
        ("list --status open --limit 50", ["list", "--status", "open", "--limit", "50"]),
        ("--help (start-up floor)", ["--help"]),
    ):
        seconds, size = best_of(config, args)
        print(f"{label:<32} {seconds:6.2f} s  ({size / 1e6:.1f} MB out)")


if __name__ == "__main__":
    main()
