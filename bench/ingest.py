"""Benchmark: how fast `inboxd run --once` files N messages from a real Dovecot.

It appends N realistic messages to a private Dovecot (mixed sizes, 20 %
Chinese in GBK, Big5 or UTF-8, 5 % with a 200 KB attachment, 20 % replies
to earlier ones), then times two things in the same run:

* `inboxd run --once` as a subprocess, from an empty store to all N filed,
  with the peak resident memory of its process tree (the time includes
  the interpreter's start, the store's migrations from empty, the IMAP
  login and every batch's fetch, parse, threading, dedup and commit; no
  acknowledgements are sent: [autoreply] is off);
* a bare loop (imapclient FETCH in batches, stdlib parse, one INSERT per
  message sent as one executemany per batch, one commit per batch) that does
  no threading, dedup or quarantine: the floor any ingester pays on this
  machine right now, into the same kind of store.

`--store sqlite` (the default) files into a SQLite file; the bare loop uses
the stdlib sqlite3.  `--store postgresql` starts a private PostgreSQL
cluster (inboxd.testing.postgres: fsync off, as in the tests) before the
clock starts, files into a fresh database on it, and the bare loop inserts
with psycopg into another database of the same cluster.  The cluster's
start is not timed.

The ratio between the two survives a noisy machine better than either figure.
Usage: python bench/ingest.py [--store sqlite|postgresql] [N ...]   (default: 1000 10000)
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import random
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from imapclient import IMAPClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inboxd.testing.dovecot import Dovecot  # noqa: E402
from inboxd.testing.mail import make_mail, make_message_id  # noqa: E402
from inboxd.testing.postgres import PostgresCluster  # noqa: E402

PARAGRAPH = ("Hello team, I ordered a replacement part last week and the tracking page has not "
             "changed since Monday. Could you check what happened and tell me when it ships? ")
ZH_PARAGRAPH = "您好，我上周订购的配件到现在还没有发货，物流信息一直没有更新，请帮忙查一下什么时候能发出。"
# Big5 has only traditional characters.
ZH_HANT_PARAGRAPH = "您好，我上週訂購的配件到現在還沒有發貨，物流資訊一直沒有更新，請幫忙查一下什麼時候能發出。"


def corpus(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    ids: list[str] = []
    out = []
    for i in range(n):
        chinese = rng.random() < 0.2
        charset = rng.choice(["gbk", "big5", "utf-8"]) if chinese else "utf-8"
        paragraphs = rng.choice([1, 2, 4, 8, 30])
        text = (ZH_HANT_PARAGRAPH if charset == "big5" else ZH_PARAGRAPH) if chinese else PARAGRAPH
        body = (text + "\n\n") * paragraphs
        subject = f"{('訂單查詢' if charset == 'big5' else '订单查询') if chinese else 'Order question'} #{i}"
        attachments = [("invoice.pdf", rng.randbytes(200 * 1024), "application/pdf")] if rng.random() < 0.05 else []
        mid = make_message_id("bench.example")
        reply_to = rng.choice(ids) if ids and rng.random() < 0.2 else None
        out.append(make_mail(
            frm=f"{'王小明' if chinese else 'Customer'} {i} <customer{i % 500}@example.cn>",
            subject=("回复: " if chinese else "Re: ") + subject if reply_to else subject,
            body=body, charset=charset, message_id=mid, in_reply_to=reply_to,
            references=[reply_to] if reply_to else (), attachments=attachments,
        ))
        ids.append(mid)
    return out


def write_config(tmp: Path, dovecot: Dovecot, history_before: str | None = "1970-01-01T00:00Z",
                 url: str = "sqlite:///inboxd.db") -> Path:
    """The bench's inboxd.toml.  The mail is appended before the first sync, so
    by default the history cut-off is 1970 and every message is filed as live
    work (the ingest path); None leaves the default cut-off, the first sync,
    which imports everything as history (bench/history.py).  `url` is the store."""
    (tmp / "pw").write_text("secret")
    config = tmp / "inboxd.toml"
    cutoff = f'history_before = "{history_before}"\n' if history_before else ""
    config.write_text(f"""
[store]
url = "{url}"
data_dir = "var"

[[mailboxes]]
name = "support"
address = "support@example.com"
{cutoff}[mailboxes.imap]
host = "{dovecot.host}"
port = {dovecot.ssl_port}
security = "tls"
username = "bench"
password_file = "{tmp / 'pw'}"
ca_file = "{dovecot.ca_file}"
batch_size = 200
""")
    return config


def run_inboxd(config: Path) -> tuple[float, dict[str, float]]:
    """Seconds for `inboxd run --once`, and peak memory (MiB) of its processes.

    Peaks: the daemon's RSS, the parser worker's RSS, and the USS (memory no
    other process shares) of the whole tree, which counts shared library
    pages once instead of once per process.
    """
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(config), "run", "--once"],
                            stderr=subprocess.DEVNULL)
    peaks = {"daemon_rss": 0, "worker_rss": 0, "tree_uss": 0}
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            children = parent.children(recursive=True)
            peaks["daemon_rss"] = max(peaks["daemon_rss"], parent.memory_info().rss)
            peaks["worker_rss"] = max([peaks["worker_rss"], *(c.memory_info().rss for c in children)])
            uss = parent.memory_full_info().uss + sum(c.memory_full_info().uss for c in children)
            peaks["tree_uss"] = max(peaks["tree_uss"], uss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"inboxd run --once failed with {proc.returncode}")
    return elapsed, {k: v / 2**20 for k, v in peaks.items()}


def bare_loop(dovecot: Dovecot, db: Path | str) -> float:
    """Seconds for the floor: fetch, parse with the stdlib, one INSERT each.

    `db` is a SQLite file, or a PostgreSQL database's URL (written through psycopg).
    """
    ctx = ssl.create_default_context(cafile=str(dovecot.ca_file))
    start = time.perf_counter()
    client = IMAPClient(dovecot.host, port=dovecot.ssl_port, ssl=True, ssl_context=ctx)
    client.login("bench", "secret")
    client.select_folder("INBOX", readonly=True)
    uids = client.search(["ALL"])
    if isinstance(db, Path):
        conn = sqlite3.connect(db)
        insert = "insert into m values (?, ?, ?, ?)"
    else:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(db)
        conn = psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database)
        insert = "insert into m values (%s, %s, %s, %s)"
    conn.execute("create table m (uid bigint primary key, message_id text, subject text, body text)")
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    for i in range(0, len(uids), 200):
        data = client.fetch(uids[i:i + 200], ["BODY.PEEK[]"])
        rows = []
        for uid, item in data.items():
            msg = parser.parsebytes(item[b"BODY[]"])
            part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), msg)
            body = part.get_payload(decode=True) or b""
            rows.append((uid, msg["Message-ID"], str(msg["Subject"]), body.decode("utf-8", "replace")))
        conn.cursor().executemany(insert, rows)
        conn.commit()
    client.logout()
    conn.close()
    return time.perf_counter() - start


def store_counts(url: str) -> tuple[int, int]:
    """(inbound messages, tickets) in the store at `url`."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            filed = conn.execute(text("select count(*) from message where direction = 'in'")).scalar()
            tickets = conn.execute(text("select count(*) from ticket")).scalar()
    finally:
        engine.dispose()
    return filed, tickets


def bench(n: int, store: str = "sqlite") -> None:
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-") as tmpdir, contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        tmp.chmod(0o711)
        if store == "postgresql":
            cluster = stack.enter_context(PostgresCluster())
            url, bare_db = cluster.create_database("inboxd"), cluster.create_database("bare")
        else:
            url, bare_db = f"sqlite:///{tmp / 'inboxd.db'}", tmp / "bare.db"
        with Dovecot(tmp / "dovecot") as dovecot:
            dovecot.add_user("bench", "secret")
            mails = corpus(n)
            size = sum(map(len, mails))
            dovecot.append_many("bench", "INBOX", mails)
            del mails
            config = write_config(tmp, dovecot, url=url)
            inboxd_s, peaks = run_inboxd(config)
            bare_s = bare_loop(dovecot, bare_db)
            filed, tickets = store_counts(url)
        print(f"N={n:>6}  store={store}  {size / 2**20:7.1f} MiB of mail  filed={filed} tickets={tickets}")
        print(f"  inboxd run --once : {inboxd_s:7.2f} s  {n / inboxd_s:8.0f} msgs/s  (from an empty store:"
              f" start-up, migrations, fetch, parse, threading, commit; no acknowledgements)")
        print(f"  peak memory: daemon RSS {peaks['daemon_rss']:.1f} MiB, parser worker RSS "
              f"{peaks['worker_rss']:.1f} MiB, both together (USS) {peaks['tree_uss']:.1f} MiB")
        print(f"  bare fetch/parse/insert: {bare_s:7.2f} s  {n / bare_s:8.0f} msgs/s  (into {store}, one executemany"
              f" and commit per 200)")
        print(f"  ratio inboxd / bare (throughput): {bare_s / inboxd_s:5.2f}")
        if filed != n:
            raise SystemExit(f"expected {n} messages filed, got {filed}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("sizes", nargs="*", type=int)
    args = ap.parse_args()
    for n in args.sizes or [1000, 10000]:
        bench(n, args.store)
        threading.Event().wait(0.5)
