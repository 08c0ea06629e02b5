"""Benchmark: `inboxd run --once` on the same corpus three ways in one run: acks off, acks on, the bare loop.

It appends N realistic messages (default 2,000) to a private Dovecot
(mixed sizes, 20 % Chinese in GBK, Big5 or UTF-8, 5 % with a 200 KB
attachment, 20 % replies to earlier ones), then, in one run, on the same
folder, each into a fresh, empty store of the chosen kind:

1. **acks off**: `inboxd run --once` as a subprocess with `[autoreply]
   enabled = false`, from interpreter start to exit: start-up, the store's
   migrations from empty, the IMAP login and every batch's fetch, parse,
   threading, dedup, rules, SLA clock and commit.  No acknowledgement is
   queued or sent.
2. **acks on**: the same, with acknowledgements on and an `[smtp]` section
   pointing at a real SMTP sink, an aiosmtpd server in its own process
   (bench/smtpsink.py, started before the clock, not part of the measured
   tree).  `run --once` exits only when it has done the sync and sent what
   it queued, so its time includes composing every acknowledgement,
   sending it over SMTP and recording the outcome (and the copy to a Sent
   folder, if the sender finds one: sent_folder is not set).  The budget is opened wide
   (`per_hour = per_day = 100000`, example.cn a shared domain) so every new
   ticket gets one: the sink's count must equal the acknowledgements queued
   in the outbox, and both are printed.
3. **bare loop**: `bench/ingest.py --bare-loop` as a subprocess: imapclient
   FETCH in batches of 200, stdlib parse, one INSERT per message sent as one
   executemany per batch and one commit per batch, into the same kind of
   store (stdlib sqlite3, or psycopg into another database of the same
   cluster); no threading, dedup, quarantine or acknowledgements: the floor
   any ingester pays on this machine right now.

For each it prints msgs/s (N over the wall time, from fork to exit), the
ratio to the bare loop of the same run, and the peak RSS of the whole
process tree (the process and all its children, e.g. inboxd's parser
worker, summed; sampled every 50 ms with psutil), with the peak USS of the
tree beside it (shared library pages counted once).  It also prints where
the CPU went during each: the measured tree's CPU seconds (from
getrusage of the reaped children: exact) and its top process's (sampled,
so up to 50 ms short), and the CPU the services beside it used in the same
interval (the SMTP sink, Dovecot with its imap and login processes,
PostgreSQL with its backends), against the machine's capacity (wall time ×
CPUs).  On a machine with few CPUs that line says which process bounds the
rate.  The ratios survive a
noisy machine better than the rates.  `--rounds R` repeats the three in
turn.

Before anything is timed, inboxd's sources are byte-compiled (`python -m
compileall inboxd`, what a pip install does).  The environment may set
PYTHONDONTWRITEBYTECODE, and then every `inboxd` process would compile the
modules it imports from source again (about a second): a cost an installed
inboxd never pays, which is not the ingest's.

`--store sqlite` (the default) files into a SQLite file.  `--store
postgresql` starts a private PostgreSQL cluster (inboxd.testing.postgres:
fsync off, as in the tests) before the clock starts; the cluster's start is
not timed and the server's processes are not in the measured tree.
`--smtp-delay MS` has the sink answer each DATA MS milliseconds late, as a
relay across a network would: the acks-on figure then says what a slower
relay costs a run that must send everything it queued (with 4 connections
and 20 ms, at least 5 ms a mail).

Usage: python bench/ingest.py [--store sqlite|postgresql] [--rounds R] [--smtp-delay MS] [N ...]   (default: 2000)
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import os
import random
import resource
import socket
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
from inboxd.testing.ports import free_port  # noqa: E402
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
    """Seconds for `inboxd run --once`, and peak memory (MiB) of its processes (see `run_tree`)."""
    return run_tree([sys.executable, "-m", "inboxd", "--config", str(config), "run", "--once"])


def run_tree(argv: list[str]) -> tuple[float, dict[str, float]]:
    """Wall seconds of the command from fork to exit, and peak memory (MiB) of its process tree.

    Peaks, sampled every 50 ms: the top process's RSS, the largest child's
    RSS (inboxd's parser worker), the RSS of the whole tree summed, and the
    USS (memory no other process shares) of the whole tree, which counts
    shared library pages once instead of once per process.
    """
    start = time.perf_counter()
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    peaks = {"daemon_rss": 0, "worker_rss": 0, "tree_rss": 0, "tree_uss": 0}
    parent = psutil.Process(proc.pid)
    top_cpu = 0.0
    while proc.poll() is None:
        try:
            times = parent.cpu_times()
            top_cpu = times.user + times.system
            children = parent.children(recursive=True)
            rss = [parent.memory_info().rss, *(c.memory_info().rss for c in children)]
            peaks["daemon_rss"] = max(peaks["daemon_rss"], rss[0])
            peaks["worker_rss"] = max([peaks["worker_rss"], *rss[1:]])
            peaks["tree_rss"] = max(peaks["tree_rss"], sum(rss))
            uss = parent.memory_full_info().uss + sum(c.memory_full_info().uss for c in children)
            peaks["tree_uss"] = max(peaks["tree_uss"], uss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:4])} ... failed with {proc.returncode}")
    result = {k: v / 2**20 for k, v in peaks.items()}
    # The long-lived services are this process's children too, but none is
    # reaped during the run: what RUSAGE_CHILDREN gained is the command's tree.
    result["cpu_tree"] = (done.ru_utime - reaped.ru_utime) + (done.ru_stime - reaped.ru_stime)
    result["cpu_top"] = top_cpu
    return elapsed, result


# The SMTP sinks' process ids, by port (see smtp_sink), for their CPU.
SINK_PIDS: dict[int, int] = {}


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live descendants, and the children they reaped (Dovecot's master
    reaps its imap and login processes, PostgreSQL's postmaster its backends)."""
    total = 0.0
    try:
        top = psutil.Process(pid)
        members = [top, *top.children(recursive=True)]
    except psutil.Error:
        return total
    for p in members:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def services_cpu(sink_port: int, dovecot: Dovecot, cluster: "PostgresCluster | None") -> dict[str, float]:
    """CPU seconds used so far by the services beside the measured command."""
    out = {"SMTP sink": process_tree_cpu(SINK_PIDS[sink_port]) if sink_port in SINK_PIDS else 0.0,
           "Dovecot": process_tree_cpu(dovecot._proc.pid) if dovecot._proc is not None else 0.0}
    if cluster is not None and cluster.pid is not None:
        out["PostgreSQL"] = process_tree_cpu(cluster.pid)
    return out


def cpu_line(seconds: float, peaks: dict, before: dict[str, float], after: dict[str, float]) -> str:
    """Where the CPU went during one measured command (see the module's docstring)."""
    others = {k: after[k] - before.get(k, 0.0) for k in after}
    total = peaks["cpu_tree"] + sum(others.values())
    capacity = seconds * (os.cpu_count() or 1)
    beside = ", ".join(f"{k} {v:.2f}" for k, v in others.items())
    return (f"CPU s: the tree {peaks['cpu_tree']:.2f} (top process {peaks['cpu_top']:.2f}); beside it {beside};"
            f" {total:.2f} of {capacity:.2f} ({os.cpu_count()} CPUs × {seconds:.2f} s, {100 * total / capacity:.0f} %)")


def bare_loop(host: str, port: int, ca_file: str, db: str) -> None:
    """The floor: fetch, parse with the stdlib, one INSERT each (run in its own process by --bare-loop).

    `db` is a SQLite file's path, or a PostgreSQL database's URL (written through psycopg).
    """
    ctx = ssl.create_default_context(cafile=ca_file)
    client = IMAPClient(host, port=port, ssl=True, ssl_context=ctx)
    client.login("bench", "secret")
    client.select_folder("INBOX", readonly=True)
    uids = client.search(["ALL"])
    if not db.startswith("postgresql"):
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


def store_counts(url: str) -> dict[str, int]:
    """Inbound messages, tickets, acknowledgements queued and sent, in the store at `url`."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "filed": conn.execute(text("select count(*) from message where direction = 'in'")).scalar(),
                "tickets": conn.execute(text("select count(*) from ticket")).scalar(),
                "acks": conn.execute(text("select count(*) from outbox where kind = 'ack'")).scalar(),
                "acks_sent": conn.execute(text("select count(*) from outbox where kind = 'ack'"
                                               " and status = 'sent'")).scalar(),
            }
    finally:
        engine.dispose()


@contextlib.contextmanager
def smtp_sink(tmp: Path, delay_ms: float = 0.0):
    """(port, file) of bench/smtpsink.py running in its own process, until the block ends."""
    port = free_port()
    log = tmp / f"sink-{port}.tsv"
    log.touch()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "smtpsink.py"), str(port), str(log),
                             str(delay_ms)])
    SINK_PIDS[port] = proc.pid
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the SMTP sink did not start")
            time.sleep(0.05)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


ACKS_OFF = "\n[autoreply]\nenabled = false\n"
ACKS_ON = """
[autoreply]
per_hour = 100000
per_day = 100000
shared_domains = ["example.cn"]

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
"""


def bench(n: int, store: str = "sqlite", rounds: int = 1, smtp_delay: float = 0.0) -> None:
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-") as tmpdir, contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        tmp.chmod(0o711)
        cluster = stack.enter_context(PostgresCluster()) if store == "postgresql" else None
        databases = iter(range(1, 1000))

        def new_store(name: str) -> str:
            if cluster is not None:
                return cluster.create_database(f"{name}_{next(databases)}")
            return f"sqlite:///{tmp / f'{name}-{next(databases)}.db'}"

        dovecot = stack.enter_context(Dovecot(tmp / "dovecot"))
        sink_port, sink_log = stack.enter_context(smtp_sink(tmp, smtp_delay))
        dovecot.add_user("bench", "secret")
        mails = corpus(n)
        size = sum(map(len, mails))
        dovecot.append_many("bench", "INBOX", mails)
        del mails
        print(f"N={n}  store={store}  {size / 2**20:.1f} MiB of mail"
              + (f"  the SMTP sink answers DATA {smtp_delay:g} ms late" if smtp_delay else ""))
        for round_ in range(1, rounds + 1):
            results, cpu = {}, {}
            for label, extra in (("acks off", ACKS_OFF), ("acks on", ACKS_ON.format(port=sink_port))):
                url = new_store(label.replace(" ", "_"))
                config = write_config(tmp, dovecot, url=url)
                with config.open("a") as fh:
                    fh.write(extra)
                before = len(sink_log.read_text().splitlines())
                cpu_before = services_cpu(sink_port, dovecot, cluster)
                seconds, peaks = run_inboxd(config)
                cpu[label] = cpu_line(seconds, peaks, cpu_before, services_cpu(sink_port, dovecot, cluster))
                counts = store_counts(url)
                counts["sink"] = len(sink_log.read_text().splitlines()) - before
                results[label] = (seconds, peaks, counts)
            bare_db = new_store("bare") if cluster is not None else str(tmp / f"bare-{round_}.db")
            cpu_before = services_cpu(sink_port, dovecot, cluster)
            seconds, peaks = run_tree([sys.executable, __file__, "--bare-loop", dovecot.host, str(dovecot.ssl_port),
                                       str(dovecot.ca_file), bare_db])
            cpu["bare loop"] = cpu_line(seconds, peaks, cpu_before, services_cpu(sink_port, dovecot, cluster))
            results["bare loop"] = (seconds, peaks, {})
            bare_s = seconds
            print(f"round {round_}:")
            for label, (seconds, peaks, counts) in results.items():
                print(f"  {label:<9} {seconds:7.2f} s  {n / seconds:7.0f} msgs/s  ratio to bare {bare_s / seconds:5.2f}"
                      f"  peak RSS of the tree {peaks['tree_rss']:6.1f} MiB (USS {peaks['tree_uss']:5.1f} MiB;"
                      f" top process {peaks['daemon_rss']:5.1f}, largest child {peaks['worker_rss']:5.1f})")
                print(f"            {cpu[label]}")
                if counts:
                    print(f"            filed={counts['filed']} tickets={counts['tickets']} acks queued={counts['acks']}"
                          f" recorded sent={counts['acks_sent']} received by the sink={counts['sink']}")
            off, on = results["acks off"][2], results["acks on"][2]
            if off["filed"] != n or on["filed"] != n:
                raise SystemExit(f"expected {n} messages filed, got {off['filed']} and {on['filed']}")
            if off["acks"] or off["sink"]:
                raise SystemExit("acks off queued or sent acknowledgements")
            if not on["acks"] or on["sink"] != on["acks"]:
                raise SystemExit(f"acks on: {on['acks']} queued but {on['sink']} received by the sink")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare-loop"]:
        host, port, ca_file, db = sys.argv[2:6]
        bare_loop(host, int(port), ca_file, db)
        raise SystemExit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--smtp-delay", type=float, default=0.0, metavar="MS",
                    help="the sink answers each DATA this many milliseconds late (a relay across a network)")
    ap.add_argument("sizes", nargs="*", type=int)
    args = ap.parse_args()
    # As a pip install does (see the module's docstring).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "inboxd")], check=True)
    for n in args.sizes or [2000]:
        bench(n, args.store, args.rounds, args.smtp_delay)
        threading.Event().wait(0.5)
