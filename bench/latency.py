"""Benchmark: how soon a delivered mail is a ticket, and its acknowledgement is sent, while `inboxd run` idles.

    .venv/bin/python bench/latency.py [--seconds 60] [--seed 1] [--store sqlite|postgresql]

Starts a private Dovecot, an SMTP sink in its own process (bench/smtpsink.py,
which writes each mail's arrival time and In-Reply-To to a file) and `inboxd
run` (IMAP IDLE on, polling only every 300 s so only IDLE can be quick;
acknowledgements on, `[smtp]` the sink, the sender's outbox interval the
tests' 1 s).  After the first sync (one warm-up mail, filed and
acknowledged), for `--seconds` it appends one mail every 0.5 to 2 s (a
seeded random wait), each from a new customer address with its own
Message-ID, over one IMAP connection of its own.  The clock of each mail
starts just before its APPEND command is sent, and it measures:

* ticket: APPEND -> the message is in the store (a thread here polls the
  store every 20 ms for the Message-IDs still missing);
* ack: APPEND -> the acknowledgement is accepted by the sink (its arrival
  line, matched by In-Reply-To; the time is taken by the sink after DATA,
  before its 250 reply);
* IDLE floor: APPEND -> an EXISTS response seen by a bare imapclient IDLE
  on the same folder (another connection of the same user, in a thread
  here): Dovecot's own notification delay, which no IDLE client beats.

It prints p50, p95 and max of each, and the ratios of the ticket and the
ack to the floor.  Mail still missing 30 s after the last append counts
as missing and is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imapclient import IMAPClient  # noqa: E402
from sqlalchemy import bindparam, create_engine, text  # noqa: E402

from bench.ingest import smtp_sink  # noqa: E402
from inboxd.testing.dovecot import Dovecot  # noqa: E402
from inboxd.testing.mail import make_mail  # noqa: E402
from inboxd.testing.postgres import PostgresCluster  # noqa: E402
from tests.support import PASSWORD, wait_until, write_config  # noqa: E402

TARGETS = {"ticket": 0.7, "ack": 1.0}


class StoreWatch(threading.Thread):
    """Polls the store every 20 ms for the Message-IDs asked about; records when each appears."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.engine = create_engine(url)
        self.wanted: set[str] = set()
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.query = text("SELECT message_id FROM message WHERE message_id IN :ids").bindparams(
            bindparam("ids", expanding=True))

    def want(self, message_id: str) -> None:
        with self.lock:
            self.wanted.add(message_id)

    def run(self) -> None:
        while not self.stop.wait(0.02):
            with self.lock:
                ids = sorted(self.wanted)
            if not ids:
                continue
            with contextlib.suppress(Exception), self.engine.connect() as conn:
                found = list(conn.execute(self.query, {"ids": ids}).scalars())
                now = time.time()
                with self.lock:
                    for mid in found:
                        self.seen[mid] = now
                        self.wanted.discard(mid)


class IdleFloor(threading.Thread):
    """A bare IMAP IDLE on the folder: the time of each EXISTS response it sees."""

    def __init__(self, dovecot: Dovecot, user: str):
        super().__init__(daemon=True)
        self.client = IMAPClient(dovecot.host, port=dovecot.port, ssl=False)
        self.client.login(user, PASSWORD)
        self.client.select_folder("INBOX")
        self.exists: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        # One IDLE for the whole run: leaving and re-entering it would lose
        # the responses that arrive in between, or delay them.
        self.client.idle()
        self.ready.set()
        while not self.stop.is_set():
            responses = self.client.idle_check(timeout=0.5)
            now = time.time()
            self.exists += [(now, r[0]) for r in responses if len(r) > 1 and r[1] == b"EXISTS"]

    def first_exists(self, count: int) -> float | None:
        """When the folder was first seen holding `count` messages."""
        return next((at for at, n in self.exists if n >= count), None)


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """(p50, p95, max) in seconds."""
    ordered = sorted(values)
    p95 = statistics.quantiles(ordered, n=20, method="inclusive")[-1] if len(ordered) > 1 else ordered[0]
    return statistics.median(ordered), p95, ordered[-1]


# A ticket later than the floor by more than this is listed with its floor.
LATE_BEYOND_FLOOR = 0.2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-latency-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        # Dovecot's unprivileged processes must traverse its directory.
        tmp.chmod(0o711)
        url = (stack.enter_context(PostgresCluster()).create_database("latency") if args.store == "postgresql"
               else f"sqlite:///{tmp / 'inboxd.db'}")
        dovecot = stack.enter_context(Dovecot(tmp / "dovecot"))
        port, sink_log = stack.enter_context(smtp_sink(tmp))
        dovecot.add_user("support", PASSWORD)
        config = write_config(tmp, dovecot, [{"name": "support", "user": "support"}], poll_interval=300,
                              smtp_port=port, acks=True, url=url,
                              autoreply="per_hour = 100000\nper_day = 100000\nshared_domains = [\"example.org\"]")
        dovecot.append("support", "INBOX", make_mail(frm="Warm Up <warm@example.org>", subject="Warm-up"))
        watch = StoreWatch(url)
        with open(tmp / "daemon.log", "ab") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(config), "run"],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: len(sink_log.read_text().splitlines()) >= 1, timeout=120,
                       what="the first sync and its acknowledgement")
            wait_until(lambda: dovecot.idling("support") >= 1, timeout=60, what="the daemon's IDLE")
            floor = IdleFloor(dovecot, "support")
            floor.start()
            floor.ready.wait(10)
            watch.start()
            appender = IMAPClient(dovecot.host, port=dovecot.port, ssl=False)
            appender.login("support", PASSWORD)
            sent: list[tuple[str, float, int]] = []   # (Message-ID, APPEND time, folder size after it)
            end = time.monotonic() + args.seconds
            count = 1
            while time.monotonic() < end:
                time.sleep(rng.uniform(0.5, 2.0))
                i = len(sent)
                mid = f"<latency-{i}-{rng.getrandbits(40):x}@bench.example>"
                raw = make_mail(frm=f"Customer {i} <c{i}@example.org>", subject=f"Order question {i}",
                                message_id=mid)
                # The store keeps a Message-ID without its angle brackets.
                watch.want(mid.strip("<>"))
                started = time.time()
                appender.append("INBOX", raw)
                count += 1
                sent.append((mid, started, count))
            appender.logout()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                acked = {line.split("\t")[2] for line in sink_log.read_text().splitlines()}
                if not watch.wanted and all(mid in acked for mid, _, _ in sent):
                    break
                time.sleep(0.1)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
            watch.stop.set()
            if "floor" in locals():
                floor.stop.set()
                floor.join(5)
        acks = {}
        for line in sink_log.read_text().splitlines():
            at, _mid, in_reply_to, _size = line.split("\t")
            acks.setdefault(in_reply_to, float(at))
        lat = {"floor": [], "ticket": [], "ack": []}
        missing = {"floor": 0, "ticket": 0, "ack": 0}
        late = []
        for i, (mid, started, size) in enumerate(sent):
            each = {}
            for name, at in (("floor", floor.first_exists(size)), ("ticket", watch.seen.get(mid.strip("<>"))),
                             ("ack", acks.get(mid))):
                if at is None:
                    missing[name] += 1
                else:
                    lat[name].append(at - started)
                    each[name] = at - started
            if "floor" in each and each.get("ticket", 0) - each["floor"] > LATE_BEYOND_FLOOR:
                late.append((i + 1, started - sent[0][1], each))
    print(f"{len(sent)} mails over {args.seconds:.0f} s (one every 0.5-2 s, seed {args.seed}), store {args.store}")
    p50 = {}
    for name, label in (("floor", "IDLE floor (bare IDLE sees EXISTS)"), ("ticket", "APPEND -> ticket in store"),
                        ("ack", "APPEND -> ack at the SMTP sink")):
        if not lat[name]:
            print(f"  {label:<36} no measurement ({missing[name]} missing)")
            continue
        p50[name], p95, worst = quantiles(lat[name])
        target = f"  target p50 {TARGETS[name]:.1f} s" if name in TARGETS else ""
        print(f"  {label:<36} p50 {p50[name] * 1000:6.0f} ms  p95 {p95 * 1000:6.0f} ms  max {worst * 1000:6.0f} ms"
              f"  ({len(lat[name])} measured, {missing[name]} missing){target}")
    if p50.get("floor"):
        for name in ("ticket", "ack"):
            if name in p50:
                print(f"  ratio {name} / IDLE floor (p50): {p50[name] / p50['floor']:.2f}")
    # The mails whose ticket came later than Dovecot's own notice by more than
    # LATE_BEYOND_FLOOR: their floor beside them tells whether Dovecot was
    # late too (the floor's IDLE is a different connection) or inboxd was.
    for n, offset, each in late:
        parts = "  ".join(f"{k} {v * 1000:.0f} ms" for k, v in each.items())
        print(f"  late: mail {n} (appended at +{offset:.1f} s): {parts}")


if __name__ == "__main__":
    main()
