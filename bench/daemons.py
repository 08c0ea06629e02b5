"""Benchmark: three daemons on one PostgreSQL store against one daemon, over 6 folders.

A private Dovecot holds two mailboxes of three folders each (INBOX, Billing,
Tech) with N realistic mails between them (bench/ingest.py's corpus: mixed
sizes, 20 % Chinese, 5 % with a 200 KB attachment, 20 % replies to earlier
mails, which here often sit in another folder).  Each scenario gets a fresh
store, starts its `inboxd run` daemons together and stops the clock when
the store holds all N inbound messages, or quarantined ones (polled every
0.2 s; the line says how many were quarantined, which should be none):

* one daemon on PostgreSQL;
* three daemons on PostgreSQL (the folders are shared out by their leases:
  whoever takes a folder's lease first syncs it; the line says who held
  how many);
* one daemon on SQLite, for reference.

The time includes each daemon's interpreter start, the store's migrations
from empty, the IMAP logins and all filing; it excludes appending the mail
and starting the cluster (inboxd.testing.postgres, fsync off).  Without
--acks no acknowledgement is queued or sent ([autoreply] off); with --acks
each new ticket's acknowledgement is queued and the clock also waits until
an SMTP sink on loopback has received every one of them.

Usage: python bench/daemons.py [--acks] [N]   (default: 6000)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.exc import DBAPIError  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench.ingest import corpus  # noqa: E402
from inboxd.testing.dovecot import Dovecot  # noqa: E402
from inboxd.testing.postgres import PostgresCluster  # noqa: E402
from inboxd.testing.smtp import SmtpSink  # noqa: E402

USERS = ("support", "billing")
FOLDERS = ("INBOX", "Billing", "Tech")


def config_text(tmp: Path, dovecot: Dovecot, url: str, smtp_port: int | None) -> str:
    pw = tmp / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    folders = ", ".join(f'"{f}"' for f in FOLDERS)
    text_ = f"""
[store]
url = "{url}"
data_dir = "var"

[autoreply]
enabled = {"true" if smtp_port else "false"}
# Every customer writes from one domain: lift the per-domain ceiling.
per_domain_per_minute = 1000000
per_domain_per_hour = 1000000
per_hour = 1000
per_day = 1000
"""
    if smtp_port:
        text_ += f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
    for user in USERS:
        text_ += f"""
[[mailboxes]]
name = "{user}"
address = "{user}@example.com"
history_before = "1970-01-01T00:00Z"
[mailboxes.imap]
host = "{dovecot.host}"
port = {dovecot.ssl_port}
security = "tls"
username = "{user}"
password_file = "{pw}"
ca_file = "{dovecot.ca_file}"
folders = [{folders}]
batch_size = 200
"""
    return text_


class Store:
    """Counts in a store, whichever kind, through one short connection each time."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)

    def scalar(self, sql: str) -> int:
        try:
            with self.engine.connect() as conn:
                return conn.execute(text(sql)).scalar() or 0
        except DBAPIError:
            return 0  # Not migrated yet.

    def holders(self) -> list[str]:
        try:
            with self.engine.connect() as conn:
                return [h.split("@", 1)[0] for (h,) in conn.execute(text("SELECT holder FROM lease"))]
        except DBAPIError:
            return []


def scenario(tmp: Path, dovecot: Dovecot, url: str, daemons: int, n: int, sink: SmtpSink | None) -> dict:
    """Start `daemons` daemons on an empty store at `url`; seconds until all n are filed (and acknowledged)."""
    tmp.mkdir()
    config = tmp / "inboxd.toml"
    config.write_text(config_text(tmp, dovecot, url, sink.port if sink else None))
    store = Store(url)
    acks_before = len(sink.envelopes) if sink else 0
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(config), "run"],
                              stdout=open(tmp / f"daemon-{i}.log", "ab"), stderr=subprocess.STDOUT,
                              start_new_session=True) for i in range(daemons)]
    held: collections.Counter[str] = collections.Counter()
    try:
        while True:
            # Quarantined mail is done with too (and reported): a daemon that quarantines
            # instead of filing must not make the bench wait for ever.
            filed = store.scalar("SELECT count(*) FROM message WHERE direction = 'in'") \
                + store.scalar("SELECT count(*) FROM quarantine")
            # The widest share-out seen while they worked (leases move when a daemon stands by).
            seen = collections.Counter(store.holders())
            if len(seen) > len(held) or not held:
                held = seen
            done = filed >= n
            if done and sink:
                tickets = store.scalar("SELECT count(*) FROM outbox WHERE kind = 'ack'")
                done = store.scalar("SELECT count(*) FROM outbox WHERE kind = 'ack' AND status = 'sent'") == tickets \
                    and len(sink.envelopes) - acks_before >= tickets
            if done:
                break
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    raise SystemExit(f"daemon {i} exited with {p.returncode}; see {tmp}/daemon-{i}.log:\n"
                                     + (tmp / f"daemon-{i}.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        tickets = store.scalar("SELECT count(*) FROM ticket")
        # A reply filed before its original opens a ticket that the original
        # later merges; what is left is one ticket per conversation.
        unmerged = store.scalar("SELECT count(*) FROM ticket WHERE merged_into IS NULL")
        quarantined = store.scalar("SELECT count(*) FROM quarantine")
        with store.engine.connect() as conn:
            reasons = collections.Counter(r.split("\n", 1)[0][:70] for (r,) in conn.execute(text("SELECT reason FROM quarantine")))
        acks = len(sink.envelopes) - acks_before if sink else 0
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=120)
        store.engine.dispose()
    shares = sorted(held.values(), reverse=True) + [0] * (daemons - len(held))
    return {"seconds": seconds, "tickets": tickets, "unmerged": unmerged, "acks": acks, "held": shares, "quarantined": quarantined,
            "reasons": reasons}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--acks", action="store_true", help="acknowledge every new ticket through an SMTP sink")
    ap.add_argument("n", nargs="?", type=int, default=6000)
    args = ap.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-daemons-") as tmpdir, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        tmp.chmod(0o711)
        dovecot = stack.enter_context(Dovecot(tmp / "dovecot"))
        cluster = stack.enter_context(PostgresCluster())
        sink = stack.enter_context(SmtpSink()) if args.acks else None
        mails = corpus(n)
        size = sum(map(len, mails))
        places = [(u, f) for u in USERS for f in FOLDERS]
        for user in USERS:
            dovecot.add_user(user, "secret")
            for folder in FOLDERS[1:]:
                dovecot.create_folder(user, folder)
        for k, (user, folder) in enumerate(places):
            dovecot.append_many(user, folder, mails[k::len(places)])
        del mails
        what = ("acknowledgements on: the clock waits until the SMTP sink has every one" if args.acks
                else "no acknowledgements ([autoreply] off)")
        print(f"N={n}  {size / 2**20:.1f} MiB of mail in 2 mailboxes x 3 folders; {what}")
        print("  times: from starting the daemons on an empty store (start-up and migrations included) "
              "until all N are filed or quarantined")
        results = [
            ("1 daemon,  PostgreSQL", scenario(tmp / "pg1", dovecot, cluster.create_database("one"), 1, n, sink)),
            ("3 daemons, PostgreSQL", scenario(tmp / "pg3", dovecot, cluster.create_database("three"), 3, n, sink)),
            ("1 daemon,  SQLite    ", scenario(tmp / "sqlite1", dovecot, f"sqlite:///{tmp / 'sqlite1.db'}", 1, n,
                                               sink)),
        ]
        for name, r in results:
            extra = f", {r['acks']} acks" if args.acks else ""
            print(f"  {name}: {r['seconds']:7.2f} s  {n / r['seconds']:7.0f} msgs/s  ({r['tickets']} tickets, {r['unmerged']} after merges{extra},"
                  f" {r['quarantined']} quarantined; folders held per daemon: {r['held']})")
            for reason, count in r["reasons"].most_common(3):
                print(f"      quarantined {count}: {reason}")
        one, three = results[0][1]["seconds"], results[1][1]["seconds"]
        print(f"  3 daemons / 1 daemon on PostgreSQL (throughput): {one / three:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
