"""Benchmark: the first sync of a mailbox that already holds years of mail.

It appends N messages (bench/ingest.py's corpus: mixed sizes, 20 % Chinese,
5 % with a 200 KB attachment, 20 % replies) to a private Dovecot with
INTERNALDATEs spread over the three years before now, then runs
`inboxd run --once` on an empty store with the default history settings
(cut-off = the first sync, history = "closed") and an [smtp] section that
points at a real aiosmtpd sink, so an acknowledgement would really be sent.

It prints the wall time of that first sync (process start to exit, store
creation and migrations included), messages per second, the peak memory of
the process tree (daemon RSS, parser worker RSS, and USS of both), and the
counts that prove it was history: tickets made, history tickets, mail the
SMTP sink received (expected 0).

Usage: python bench/history.py [N ...]   (default: 10000)
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import corpus, run_inboxd, write_config  # noqa: E402
from inboxd.testing.dovecot import Dovecot  # noqa: E402
from inboxd.testing.smtp import SmtpSink  # noqa: E402


def bench(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-") as tmpdir, SmtpSink() as sink:
        tmp = Path(tmpdir)
        tmp.chmod(0o711)
        with Dovecot(tmp / "dovecot") as dovecot:
            dovecot.add_user("bench", "secret")
            mails = corpus(n)
            size = sum(map(len, mails))
            now = datetime.now(UTC)
            start = now - timedelta(days=3 * 365)
            step = (now - timedelta(hours=1) - start) / n
            dovecot.append_many("bench", "INBOX", [(raw, start + step * i) for i, raw in enumerate(mails)])
            del mails
            config = write_config(tmp, dovecot, history_before=None)
            with config.open("a") as fh:
                fh.write(f'\n[smtp]\nhost = "127.0.0.1"\nport = {sink.port}\nsecurity = "none"\n')
            seconds, peaks = run_inboxd(config)
            db = sqlite3.connect(tmp / "inboxd.db")
            tickets, history = db.execute("select count(*), sum(history) from ticket").fetchone()
            filed = db.execute("select count(*) from message").fetchone()[0]
            outbox = db.execute("select count(*) from outbox").fetchone()[0]
        print(f"N={n:>6}  {size / 2**20:7.1f} MiB of mail over 3 years; first sync (history = closed)")
        print(f"  inboxd run --once : {seconds:7.2f} s  {n / seconds:8.0f} msgs/s")
        print(f"  peak memory: daemon RSS {peaks['daemon_rss']:.1f} MiB, parser worker RSS "
              f"{peaks['worker_rss']:.1f} MiB, both together (USS) {peaks['tree_uss']:.1f} MiB")
        print(f"  messages {filed}, tickets {tickets}, history tickets {history}, outbox rows {outbox}, "
              f"mails received by the SMTP sink {len(sink.envelopes)}")
        if filed != n or outbox or sink.envelopes:
            raise SystemExit("expected every message filed as history and nothing sent")


if __name__ == "__main__":
    import subprocess

    # Byte-compiled first, as a pip install does (bench/ingest.py says why).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "inboxd")], check=True)
    for n in [int(a) for a in sys.argv[1:]] or [10000]:
        bench(n)
