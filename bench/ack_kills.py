"""Measure: acknowledgements sent twice when the daemon is SIGKILLed while it ingests and sends.

A private Dovecot gets N customer mails; `inboxd run` syncs them and sends
one acknowledgement each to an aiosmtpd sink, while this script SIGKILLs the
daemon K times at random moments (and starts it again).  A row whose mail
the server accepted but whose `sent` was not yet recorded is sent again
after the lease: the sink then sees its Message-ID twice.  The script prints
how many Message-IDs arrived more than once.  The outcome depends on where
the kills land, so it is a measurement, not a test; run it a few times.

Usage: python bench/ack_kills.py [N] [K] [SEED]   (default: 3000 10 1)
"""

from __future__ import annotations

import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inboxd.testing.dovecot import Dovecot  # noqa: E402
from inboxd.testing.mail import make_mail  # noqa: E402
from inboxd.testing.smtp import SmtpSink  # noqa: E402


def config_text(dovecot: Dovecot, user: str, smtp_port: int, pw: Path) -> str:
    return f"""
[store]
url = "sqlite:///inboxd.db"
data_dir = "var"

[autoreply]
# Every customer is a different address: only the per-domain ceiling could refuse, and it is lifted here.
per_domain_per_minute = 100000
per_domain_per_hour = 100000

[outbox]
retry_base = "1s"
retry_max = "2s"
interval = "1s"
lease = "2s"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"

[[mailboxes]]
name = "support"
address = "support@example.com"
history_before = "1970-01-01T00:00Z"
[mailboxes.imap]
host = "{dovecot.host}"
port = {dovecot.ssl_port}
security = "tls"
username = "{user}"
password_file = "{pw}"
ca_file = "{dovecot.ca_file}"
batch_size = 100
"""


def start(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(config), "run"],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def sent_rows(config: Path) -> int:
    try:
        db = sqlite3.connect(config.parent / "inboxd.db", timeout=30)
        try:
            return db.execute("SELECT count(*) FROM outbox WHERE status = 'sent'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 3000
    kills = int(argv[1]) if len(argv) > 1 else 10
    rng = random.Random(int(argv[2]) if len(argv) > 2 else 1)
    # Not under the temporary directory: Dovecot's unprivileged processes must traverse its parents.
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-kills-") as tmp, \
            tempfile.TemporaryDirectory(prefix="inboxd-dovecot-") as dovecot_root, \
            Dovecot(Path(dovecot_root)) as dovecot, SmtpSink() as sink:
        tmp = Path(tmp)
        dovecot.add_user("support", "secret")
        pw = tmp / "pw"
        pw.write_text("secret\n")
        pw.chmod(0o600)
        config = tmp / "inboxd.toml"
        config.write_text(config_text(dovecot, "support", sink.port, pw))
        dovecot.append_many("support", "INBOX", (
            make_mail(frm=f"Customer {i} <c{i}@customer{i % 50}.example>", subject=f"Question {i}") for i in range(n)))
        log = tmp / "daemon.log"
        start_at = time.monotonic()
        for k in range(kills):
            daemon = start(config, log)
            # Kill somewhere in the middle of the work that is left.
            time.sleep(rng.uniform(0.5, 2.5))
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        daemon = start(config, log)
        try:
            deadline = time.monotonic() + 600
            while sent_rows(config) < n and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(3)  # Anything still in flight arrives.
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait()
        ids = collections.Counter(e.message()["Message-ID"] for e in sink.envelopes)
        twice = sum(1 for c in ids.values() if c > 1)
        print(f"N={n} kills={kills}: {sent_rows(config)} rows sent, the sink got {len(sink.envelopes)} mails, "
              f"{len(ids)} distinct Message-IDs, {twice} sent more than once "
              f"({time.monotonic() - start_at:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
