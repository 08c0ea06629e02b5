"""Benchmark: peak memory of the first sync of N messages, as history.

For each N it builds a mailbox of N messages (bench/ingest.py's corpus: mixed
sizes, 20 % Chinese, 5 % with a 200 KB attachment, 20 % replies) with
arrival times spread over the three years before now, then runs
`inboxd run --once` on an empty SQLite store with the default history
settings (cut-off = the first sync, history = "closed"), so every message is
filed as history.  It samples the resident memory (RSS) of the whole process
tree (the daemon and its parser worker, summed; a child not yet past its
exec, which shows the daemon's pages as its own, is left out) every 50 ms
with psutil and prints the peak (and when it was), the daemon's own peak, the wall time and
the counts.

The mailbox is built fast: the messages are written as files straight into
the private Dovecot's Maildir (cur/, the file's mtime is the INTERNALDATE),
and `doveadm force-resync` then indexes them, so a 100,000-message mailbox
takes a minute rather than the half hour of APPENDs.

`--code DIR` runs the inboxd found in DIR (a checkout of another commit,
e.g. `git archive HEAD | tar -x -C DIR`) instead of this one, so a change
is measured before and after in the same run.

Usage: python bench/memory.py [--code DIR] [N ...]   (default: 10000 30000 100000)
"""

from __future__ import annotations

import argparse
import os
import pwd
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import corpus  # noqa: E402
from inboxd.testing.dovecot import MAIL_USER, Dovecot  # noqa: E402


def mails(n: int) -> Iterator[bytes]:
    """N corpus messages, made a thousand at a time so the bench itself stays small."""
    for start in range(0, n, 1000):
        yield from corpus(min(1000, n - start), seed=start)


def fill_maildir(dovecot: Dovecot, user: str, n: int) -> int:
    """Write N messages into `user`'s INBOX as Maildir files and index them; returns their bytes."""
    maildir = dovecot.root / "home" / user / "Maildir"
    owner = pwd.getpwnam(MAIL_USER)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(exist_ok=True)
        os.chown(maildir / sub, owner.pw_uid, owner.pw_gid)
    now = datetime.now(UTC)
    start = now - timedelta(days=3 * 365)
    step = (now - timedelta(hours=1) - start) / n
    total = 0
    for i, raw in enumerate(mails(n)):
        when = (start + step * i).timestamp()
        # Maildir keeps LF line ends; Dovecot serves them as CRLF.
        raw = raw.replace(b"\r\n", b"\n")
        path = maildir / "cur" / f"{int(when)}.M{i}P{os.getpid()}.bench:2,"
        path.write_bytes(raw)
        os.chown(path, owner.pw_uid, owner.pw_gid)
        os.utime(path, (when, when))
        total += len(raw)
    subprocess.run(["doveadm", "-c", str(dovecot.root / "dovecot.conf"), "force-resync", "-u", user, "INBOX"],
                   check=True)
    return total


def write_config(tmp: Path, dovecot: Dovecot, imap: str = "") -> Path:
    (tmp / "pw").write_text("secret")
    config = tmp / "inboxd.toml"
    config.write_text(f"""
[store]
url = "sqlite:///inboxd.db"
data_dir = "var"

[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "{dovecot.host}"
port = {dovecot.ssl_port}
security = "tls"
username = "bench"
password_file = "{tmp / 'pw'}"
ca_file = "{dovecot.ca_file}"
{imap}
""")
    return config


def run_inboxd(config: Path, code: Path) -> tuple[float, float, float, float]:
    """`inboxd run --once` from `code`: (seconds, peak tree RSS MiB, peak daemon RSS MiB, seconds to the peak)."""
    env = dict(os.environ, PYTHONPATH=str(code))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(config), "run", "--once"],
                            stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, cwd=config.parent)
    parent = psutil.Process(proc.pid)
    tree = daemon = 0
    peak_at = 0.0
    command = None
    while proc.poll() is None:
        try:
            own = parent.memory_info().rss
            command = command or parent.cmdline()
            rss = own
            for child in parent.children(recursive=True):
                try:
                    # A child between its vfork and its exec (the parser worker starting) shares the
                    # daemon's memory and shows the daemon's RSS as its own: not counted twice.
                    if child.cmdline() != command:
                        rss += child.memory_info().rss
                except psutil.Error:
                    pass
            if rss > tree:
                tree, peak_at = rss, time.perf_counter() - start
            daemon = max(daemon, own)
        except psutil.Error:
            pass
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"inboxd run --once failed with {proc.returncode}")
    return elapsed, tree / 2**20, daemon / 2**20, peak_at


def bench(n: int, code: Path, imap: str = "") -> None:
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-") as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o711)
        with Dovecot(tmp / "dovecot") as dovecot:
            dovecot.add_user("bench", "secret")
            size = fill_maildir(dovecot, "bench", n)
            config = write_config(tmp, dovecot, imap)
            seconds, tree, daemon, peak_at = run_inboxd(config, code)
            db = sqlite3.connect(tmp / "inboxd.db")
            tickets, history = db.execute("select count(*), sum(history) from ticket").fetchone()
            filed = db.execute("select count(*) from message").fetchone()[0]
            db.close()
        print(f"N={n:>6}  {size / 2**20:7.1f} MiB of mail; first sync as history; code {code}")
        print(f"  peak RSS of the process tree {tree:6.1f} MiB (daemon alone {daemon:6.1f} MiB); "
              f"the tree's peak at {peak_at:.1f} s")
        print(f"  {seconds:7.1f} s, {n / seconds:6.0f} msgs/s; messages {filed}, tickets {tickets}, "
              f"history tickets {history}", flush=True)
        if filed != n:
            raise SystemExit(f"expected {n} messages filed, got {filed}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="the source tree whose inboxd runs")
    ap.add_argument("--imap", default="", help="extra lines for [mailboxes.imap], e.g. 'batch_bytes = 4194304'")
    ap.add_argument("sizes", nargs="*", type=int)
    args = ap.parse_args()
    # Byte-compiled first, as a pip install does (bench/ingest.py says why).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(args.code.resolve() / "inboxd")], check=True)
    for size in args.sizes or [10000, 30000, 100000]:
        bench(size, args.code.resolve(), args.imap.replace("\\n", "\n"))
