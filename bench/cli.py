"""Benchmark: how long an agent waits for `inboxd list`, `show`, `take` and `--help` through the daemon's API.

The store: N tickets (default 100,000) with 10 messages each (1,000,000
messages: customer mail and agent replies in turn, about 0.5 KB of text
each), every message seen in its ticket's mailbox (the first message of one
ticket in ten in a second one too: `sighting` rows), a "created" event per ticket and a "message"
event per later message, and a customer row per requester.
`inboxd.store.engine.open_store` creates the schema (the real migrations);
the rows are bulk-inserted with sqlite3's executemany (about a minute for
a million messages).  The store is built in a temp dir, or in `--keep DIR`,
where a later run finds it and builds nothing.

The server: `inboxd.api.server.start(settings, engine, stop)`, the daemon's
own API server, in a subprocess of this script (`bench/cli.py --serve
CONFIG`), on a Unix socket in the store's directory.  It is started once and
is warm (its engine and settings loaded) before any command is timed; no
mailbox is synced while the commands run.

Each figure is the wall time of one `inboxd ...` process, from fork/exec to
exit, measured here with perf_counter around subprocess.run: interpreter
start-up, imports, parsing the command line, the request over the socket
(the server's work: the caller's identity, the query, the JSON) and
printing the answer.  The program is the `inboxd` console script next to
this Python (as an agent types it), else `python -m inboxd`.  Bytecode is
cached (PYTHONPYCACHEPREFIX in the store's directory, whatever
PYTHONDONTWRITEBYTECODE says), as for an installed inboxd, and one untimed
run of each command comes first.  Each command
runs 5 times (`--runs`); the table gives the best and the median wall time
and the median CPU time (user + system, from getrusage of the finished
process: what the process itself cost, which other load on the machine
inflates far less than the wall time).  The client's and the direct runs of
a command take turns, so a burst of load from elsewhere falls on both.
`take` takes a different unassigned ticket on each run, so every run
changes a ticket (and writes its event) rather than being refused.

"through the API": the thin client, `INBOXD_URL=unix://<socket>`, run from
a directory with no inboxd.toml, as an agent (the agent's `login` is the
Unix user running the bench, so the kernel's SO_PEERCRED answer maps to it).
"direct": the same commands as the store's owner, `--config CONFIG --as
alice` without INBOXD_URL: the CLI opens the store itself (SQLAlchemy, the
migrations check, the query in-process).  Targets: 0.3 s for each client
command, 0.15 s for `--help`.  When a client figure misses its target (or
with `--importtime`), `python -X importtime` of the client's `list` names
the modules that cost the most start-up time.

Usage: python bench/cli.py [--tickets N] [--runs 5] [--keep DIR] [--importtime]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import random
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
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
CUSTOMER_TEXT = ("Hello,\n\nI still cannot log in to my account since yesterday's update. The reset link in "
                 "your last mail says it has expired, and the new one never arrives. 我已经试了三次了。\n"
                 "Could you please have a look? My order number is 7731.\n\nThanks,\nA customer\n\n"
                 "> On Monday the support team wrote:\n> Please try the link below.\n")
AGENT_TEXT = ("Hi,\n\nthank you for your patience. I have reset the link on our side; it is valid for "
              "24 hours now. If it still fails, reply to this mail with a screenshot.\n\nBest regards,\n"
              "The support team\n")
PER_TICKET = 10
CLIENT_TARGET, HELP_TARGET = 0.3, 0.15


def write_config(root: Path, sock: Path) -> Path:
    """The desk's inboxd.toml: two mailboxes, three agents; alice is the Unix user running the bench."""
    (root / "pw").write_text("x\n")
    lines = ["[store]", 'url = "sqlite:///inboxd.db"', 'data_dir = "var"', "",
             # group "": the bench machine need not have an inboxd group; the socket keeps the server's own.
             "[api]", f'socket = "{sock}"', 'group = ""', ""]
    for name in MAILBOXES:
        lines += ["[[mailboxes]]", f'name = "{name}"', f'address = "{name}@example.com"', "[mailboxes.imap]",
                  'host = "127.0.0.1"', 'username = "x"', f'password_file = "{root / "pw"}"', ""]
    for name in AGENTS:
        lines += ["[[agents]]", f'name = "{name}"', f'email = "{name}@example.com"']
        if name == "alice":
            lines.append(f'login = "{getpass.getuser()}"')
        lines.append("")
    path = root / "inboxd.toml"
    path.write_text("\n".join(lines))
    return path


def fill(db: Path, n: int, seed: int = 7) -> int:
    """Bulk-insert n tickets with PER_TICKET messages each, their sightings, events and customers."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("INSERT INTO rawmessage (sha256, size, data) VALUES ('0', 1, x'00')")
    msg_id = 0
    # One transaction per 10,000 tickets keeps memory flat (100,000 message rows at a time).
    for first in range(0, n, 10_000):
        tickets, customers, messages, sightings, events = [], [], [], [], []
        for i in range(first, min(n, first + 10_000)):
            pk = i + 1
            created = start + timedelta(seconds=i * 60)
            box = MAILBOXES[i % 2]
            requester = f"c{i}@example.org"
            last = created + timedelta(hours=PER_TICKET - 1)
            status = rng.choice(STATUSES)
            assignee = None if status == "new" else rng.choice((None, *AGENTS))
            tags = json.dumps(rng.sample(("vip", "billing", "bug", "refund"), rng.randrange(0, 3)))
            tickets.append((pk, f"T-{1000 + i}", rng.choice(SUBJECTS), status, rng.choice(("low", "normal", "high")),
                            box, requester, f"Customer {i}", assignee, tags, PER_TICKET, db_time(created),
                            db_time(last), db_time(created + timedelta(hours=1))))
            customers.append((requester, f"Customer {i}", db_time(created)))
            for j in range(PER_TICKET):
                msg_id += 1
                when = db_time(created + timedelta(hours=j))
                out = j % 2 == 1
                sender = f"{box}@example.com" if out else requester
                text = AGENT_TEXT if out else CUSTOMER_TEXT
                messages.append((msg_id, f"<m{msg_id}@example.org>", f"<m{msg_id}@example.org>", pk,
                                 "out" if out else "in", "agent" if out else "customer", sender,
                                 json.dumps([{"name": "", "email": requester if out else f"{box}@example.com"}]), when,
                                 f"Re: [T-{1000 + i}] ticket" if j else "ticket", text, text.split("\n\n")[1],
                                 when))
                sightings.append((msg_id, box, "Sent" if out else "INBOX", 1, msg_id, when))
                if i % 10 == 0 and j == 0:
                    sightings.append((msg_id, MAILBOXES[(i + 1) % 2], "INBOX", 1, msg_id, when))
                if j == 0:
                    events.append((pk, when, "inboxd", "created",
                                   json.dumps({"reason": "new thread", "mailbox": box, "from": requester})))
                else:
                    events.append((pk, when, assignee or "inboxd" if out else "inboxd", "message",
                                   json.dumps({"reason": "in-reply-to", "mailbox": box, "from": sender,
                                               "kind": "agent" if out else "customer"})))
        with conn:
            conn.executemany(
                "INSERT INTO ticket (id, ref, subject, status, priority, mailbox, requester, requester_name, assignee,"
                " tags, message_count, created_at, updated_at, first_response_at, version)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,1)", tickets)
            conn.executemany("INSERT INTO customer (email, name, created_at, bouncing) VALUES (?,?,?,0)", customers)
            conn.executemany(
                "INSERT INTO message (id, message_key, message_id, ticket_id, direction, kind, from_addr, from_name,"
                " to_addrs, cc_addrs, reply_to, date, subject, text, reply_text, html_only, in_reply_to,"
                " \"references\", auto, raw_sha256, size, created_at)"
                " VALUES (?,?,?,?,?,?,?,'',?,'[]','[]',?,?,?,?,0,'[]','[]','{}','0',2000,?)", messages)
            conn.executemany("INSERT INTO sighting (message_pk, mailbox, folder, uidvalidity, uid, seen_at)"
                             " VALUES (?,?,?,?,?,?)", sightings)
            conn.executemany("INSERT INTO event (ticket_id, at, actor, action, detail) VALUES (?,?,?,?,?)", events)
    with conn:
        # The next ticket number a new mail would get (inboxd.store.counters).
        conn.execute("INSERT INTO counter (name, value) VALUES ('ticket_number', ?)", (999 + n,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    return msg_id


def build(root: Path, n: int) -> tuple[Path, Path]:
    """(config, socket) of the store in root, built unless a finished one is there."""
    sock = root / "api.sock"
    config = write_config(root, sock)
    done = root / "built.json"
    if done.exists() and json.loads(done.read_text())["tickets"] == n:
        print(f"store {root}: reused ({done.read_text().strip()})")
        return config, sock
    for name in ("inboxd.db", "inboxd.db-wal", "inboxd.db-shm"):
        (root / name).unlink(missing_ok=True)
    open_store(f"sqlite:///{root / 'inboxd.db'}").dispose()
    t0 = time.perf_counter()
    messages = fill(root / "inboxd.db", n)
    size = (root / "inboxd.db").stat().st_size
    done.write_text(json.dumps({"tickets": n, "messages": messages, "bytes": size}) + "\n")
    print(f"store {root}: {n:,} tickets, {messages:,} messages, {size / 2**20:,.0f} MiB,"
          f" filled in {time.perf_counter() - t0:.0f} s")
    return config, sock


def serve(config: Path) -> None:
    """The daemon's API server alone, until SIGTERM (runs in the subprocess)."""
    from inboxd.api.server import start
    from inboxd.config import load_settings

    settings = load_settings(config)
    engine = open_store(settings.store.url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # It serves from its own thread and returns at once (None: nowhere to listen, logged).
    server = start(settings, engine, stop)
    if server is None:
        raise SystemExit(1)
    stop.wait()
    server.close()


def wait_for(sock: Path, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bench: the API server exited with status {server.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: no API server on {sock} after {timeout:.0f} s")


def program() -> list[str]:
    script = Path(sys.executable).parent / "inboxd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "inboxd"]


def timed(args: list[str], env: dict, cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, bytes printed) of one `inboxd ARGS` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([*program(), *args], env=env, cwd=cwd, capture_output=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"bench: inboxd {' '.join(args)} failed ({proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, len(proc.stdout)


def unassigned(db: Path, count: int) -> list[str]:
    """Tickets nobody has taken yet, for `take` (a fresh one per run, so none is refused)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT ref FROM ticket WHERE assignee IS NULL AND status IN ('new', 'open')"
                            " ORDER BY random() LIMIT ?", (count,)).fetchall()
    finally:
        conn.close()
    return [ref for (ref,) in rows]


@dataclass
class Figures:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    size: int = 0

    def add(self, figures: tuple[float, float, int]) -> None:
        self.wall.append(figures[0])
        self.cpu.append(figures[1])
        self.size = figures[2]


def measure(commands: list[tuple[str, object]], ways: dict[str, tuple[list[str], dict, Path]],
            runs: int) -> dict[tuple[str, str], Figures]:
    """(way, label) -> Figures.  A command is a list of args or a function of the run number; each
    way is (args before the command, environment, working directory).  The ways take turns run by run,
    so a burst of load on the machine falls on both rather than on one."""
    out: dict[tuple[str, str], Figures] = {}
    for label, command in commands:
        def args(run: int) -> list[str]:
            return command(run) if callable(command) else command

        for way, (prefix, env, cwd) in ways.items():
            # One untimed run first, so every figure sees warm file caches and compiled bytecode.
            timed([*prefix, *args(-1)], env, cwd)
            out[way, label] = Figures()
        for run in range(runs):
            for way, (prefix, env, cwd) in ways.items():
                out[way, label].add(timed([*prefix, *args(run)], env, cwd))
    return out


def importtime(env: dict, cwd: Path, top: int = 15) -> None:
    """The modules that cost the client's `list` most start-up time (python -X importtime)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "inboxd", "list", "--limit", "50"],
                          env=env, cwd=cwd, capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        # "import time:  <self us> | <cumulative us> | <indented module name>"
        self_us, cumulative, name = line[len("import time:"):].split("|")
        rows.append((int(cumulative), int(self_us), name.strip()))
    total = sum(s for _, s, _ in rows)
    heavy = [r for r in rows if r[2].split(".")[0] in ("sqlalchemy", "imapclient", "aiosmtplib", "jinja2")
             or r[2].startswith("inboxd.store")]
    print(f"\npython -X importtime -m inboxd list --limit 50 (client): {len(rows)} modules, "
          f"{total / 1e6:.3f} s of imports in all" + ("; HEAVY: " + ", ".join(sorted({r[2] for r in heavy}))
                                                     if heavy else "; no store or mail stack imported"))
    print(f"{'cumulative':>10} {'self':>8}  module (top {top} by cumulative time)")
    for cumulative, self_us, name in sorted(rows, reverse=True)[:top]:
        print(f"{cumulative / 1e3:8.1f}ms {self_us / 1e3:6.1f}ms  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the store here, or reuse the one built here before")
    parser.add_argument("--importtime", action="store_true", help="always show the client's import times")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    root = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="inboxd-bench-cli-"))
    config, sock = build(root, args.tickets)
    sock.unlink(missing_ok=True)
    agent_home = root / "agent"
    agent_home.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("INBOXD_") and k != "PYTHONDONTWRITEBYTECODE"}
    # Compiled once and cached, as an installed inboxd is (pip compiles it), but outside the source tree.
    base["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(config)], cwd=root,
                              env=base)
    try:
        wait_for(sock, server)
        client_env = {**base, "INBOXD_URL": f"unix://{sock}"}
        middle = f"T-{1000 + args.tickets // 2}"
        takes = iter(unassigned(root / "inboxd.db", 2 * (args.runs + 1)))
        commands = [("list --limit 50", ["list", "--limit", "50"]),
                    ("list --limit 50 --json", ["list", "--limit", "50", "--json"]),
                    (f"show {middle}", ["show", middle]),
                    ("take ID", lambda _run: ["take", next(takes)]),
                    ("--help", ["--help"])]
        figures = measure(commands, {"api": ([], client_env, agent_home),
                                     "direct": (["--config", str(config), "--as", "alice"], base, root)},
                          args.runs)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    built = json.loads((root / "built.json").read_text())
    print(f"\n{built['tickets']:,} tickets, {built['messages']:,} messages; {args.runs} runs each: wall time of"
          f" one `inboxd` process (start to exit), and its CPU time (user + system); load average"
          f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'command':<24} {'target':>6} | {'API best':>8} {'median':>7} {'cpu':>6} {'ok':>3} | "
          f"{'direct best':>11} {'median':>7} {'cpu':>6} | {'out':>7}")
    missed = False
    for label, _ in commands:
        api, direct = figures["api", label], figures["direct", label]
        target = HELP_TARGET if label == "--help" else CLIENT_TARGET
        median = statistics.median(api.wall)
        ok = median <= target
        missed |= not ok
        print(f"{label:<24} {target:5.2f}s | {min(api.wall):7.3f}s {median:6.3f}s {statistics.median(api.cpu):5.3f}s"
              f" {'yes' if ok else 'NO':>3} | {min(direct.wall):10.3f}s {statistics.median(direct.wall):6.3f}s"
              f" {statistics.median(direct.cpu):5.3f}s | {api.size / 1e3:5.1f}kB")
    if missed or args.importtime:
        importtime(client_env, agent_home)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
