"""Measure how soon new mail becomes a ticket while the daemon waits in IDLE.

    .venv/bin/python bench/idle.py [MAILS]

Starts a private Dovecot and `inboxd run` (polling only every 300 s, so only
IDLE can be quick), waits until the daemon is in IDLE, appends one mail and
times until the store holds it; MAILS times (default 10).  Prints each
latency and the median and worst.  tests/test_daemon.py checks only that
IDLE brings the mail in, never how fast.
"""

from __future__ import annotations

import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inboxd.testing.dovecot import Dovecot  # noqa: E402
from inboxd.testing.mail import make_mail  # noqa: E402
from tests.support import wait_until, write_config  # noqa: E402


def messages(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute("SELECT count(*) FROM message").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def main() -> None:
    mails = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-idle-") as tmp_name:
        tmp = Path(tmp_name)
        # Dovecot's unprivileged processes must traverse its directory.
        tmp.chmod(0o711)
        with Dovecot(tmp / "dovecot") as dovecot:
            dovecot.add_user("support")
            config = write_config(tmp, dovecot, [{"name": "support", "user": "support"}], poll_interval=300)
            db = tmp / "inboxd.db"
            dovecot.append("support", "INBOX", make_mail(subject="Warm-up"))
            with open(tmp / "daemon.log", "ab") as log:
                daemon = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(config), "run"],
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_until(lambda: messages(db) == 1, timeout=60, what="the first sync")
                latencies = []
                for i in range(mails):
                    wait_until(lambda: dovecot.idling("support") == 1, timeout=60, what="IDLE")
                    start = time.perf_counter()
                    dovecot.append("support", "INBOX", make_mail(subject=f"Urgent {i}"))
                    wait_until(lambda: messages(db) == 2 + i, timeout=60, interval=0.005, what="the pickup")
                    latencies.append(time.perf_counter() - start)
                    print(f"mail {i + 1}: {latencies[-1] * 1000:.0f} ms")
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
    print(f"APPEND to ticket while in IDLE, {mails} mails: median {statistics.median(latencies) * 1000:.0f} ms,"
          f" worst {max(latencies) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
