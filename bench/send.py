"""Benchmark: how fast `Sender.drain()` empties an outbox of N mails into a local SMTP sink.

For each N it builds a fresh SQLite store, inserts N queued outbox rows
composed with `inboxd.outbound.compose.compose` (about 3 KB of text each, 20 % in
Chinese), starts an aiosmtpd `SmtpSink` on loopback and times `drain()`
until every row is `sent`.  It prints the throughput, the per-mail latency
(the gap between one mail being recorded as sent and the next, which covers
the claim, the SMTP transaction and the record) and checks that the sink got
exactly N distinct Message-IDs, every one of them a row that was queued.
The sink is aiosmtpd in its own process (bench/smtpsink.py), so its work
does not share this process's interpreter lock.

The IMAP part of the config is never contacted; it only has to validate.
Usage: python bench/send.py [N ...] [--connections C ...] [--compose-at-send]   (default: 1000 5000, 4)
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inboxd.outbound.compose import compose, new_message_id  # noqa: E402
from inboxd.config import Settings, load_settings  # noqa: E402
from inboxd.store.engine import db_time, open_store, reading, writing  # noqa: E402
from inboxd.outbound.sender import Sender  # noqa: E402
from inboxd.testing.ports import free_port  # noqa: E402

PARAGRAPH = ("Hello Li, thank you for writing to us. We have received your message about the replacement "
             "part and a member of the support team will look into the tracking problem shortly. ")
ZH_PARAGRAPH = "您好，感谢您联系我们。我们已经收到您关于配件物流信息没有更新的来信，客服团队会尽快为您查询并回复。"
# Roughly 3 KB of body either way: Chinese is three bytes a character in UTF-8.
BODY_BYTES = 3000


def write_config(tmp: Path, smtp_port: int, connections: int = 4) -> Path:
    (tmp / "pw").write_text("unused\n")
    config = tmp / "inboxd.toml"
    config.write_text(f"""
[store]
url = "sqlite:///inboxd.db"
data_dir = "var"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
connections = {connections}

[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "imap.example.invalid"
username = "support"
password_file = "pw"
""")
    return config


def body(chinese: bool) -> str:
    paragraph = ZH_PARAGRAPH if chinese else PARAGRAPH
    size = len(paragraph.encode()) + 2
    return (paragraph + "\n\n") * max(1, BODY_BYTES // size)


def fill_outbox(settings: Settings, engine, n: int, seed: int = 7, *, at_send: bool = False) -> tuple[set[str], float]:
    """Insert n queued rows as outbox.queue() would; returns their Message-IDs and mean size in bytes.

    With `at_send` each row holds only the mail's description, as an
    acknowledgement's does, and the sender composes it (which it then times too).
    """
    rng = random.Random(seed)
    mailbox = settings.mailbox("support")
    now = datetime.now(UTC)
    rows, ids, sizes = [], set(), []
    for i in range(n):
        chinese = rng.random() < 0.2
        ref = f"T-{1000 + i}"
        spec = dict(
            mailbox_address=mailbox.address, from_name="Example Support",
            to=[("王小明" if chinese else "Customer", f"customer{i % 500}@example.cn")],
            subject=f"Re: [{ref}] {'订单查询' if chinese else 'Order question'} #{i}",
            text=body(chinese), message_id=new_message_id(ref, mailbox.domain, unique=secrets.token_hex(8)),
            in_reply_to=f"question{i}@example.cn", automatic="auto-replied", loop_value="bench", now=now,
        )
        mail = compose(**spec)
        described = json.dumps(dict(spec, html=None, references=[], extra_headers={}, now=now.isoformat()),
                               ensure_ascii=False) if at_send else None
        ids.add(mail.message_id)
        sizes.append(len(mail.data))
        rows.append((mailbox.name, mail.message_id, mail.sender, f'["{mail.recipients[0]}"]',
                     b"" if at_send else mail.data, db_time(now), db_time(now), described))
    with writing(engine) as conn:
        conn.exec_driver_sql(
            "INSERT INTO outbox (ticket_id, mailbox, kind, message_id, sender, recipients, data, status,"
            " attempts, next_attempt_at, last_error, created_at, copy_status, spec)"
            " VALUES (NULL, ?, 'ack', ?, ?, ?, ?, 'queued', 0, ?, '', ?, 'none', ?)",
            rows,
        )
    return ids, statistics.fmean(sizes)


def start_sink(tmp: Path) -> tuple[subprocess.Popen, int, Path]:
    """bench/smtpsink.py in its own process; (the process, its port, the file it writes a line per mail to)."""
    port, out = free_port("127.0.0.1"), tmp / "sink.tsv"
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "smtpsink.py"), str(port), str(out)])
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port, out
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("the SMTP sink did not start")
            time.sleep(0.05)


def received_ids(out: Path, n: int) -> list[str]:
    """The Message-IDs the sink recorded, once it has n of them (or after 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return [line.split("\t")[1].strip("<>") for line in lines]
        time.sleep(0.05)


def run(n: int, connections: int = 4, at_send: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-send-") as tmp:
        proc, port, out = start_sink(Path(tmp))
        try:
            return _run(n, Path(tmp), port, out, connections, at_send)
        finally:
            proc.terminate()
            proc.wait()


def _run(n: int, tmp: Path, port: int, out: Path, connections: int, at_send: bool) -> dict:
    settings = load_settings(write_config(tmp, port, connections))
    engine = open_store(settings.store.url)
    queued, mean_size = fill_outbox(settings, engine, n, at_send=at_send)

    stamps: list[float] = []
    cpu = time.process_time()
    sender = Sender(engine, settings, on_sent=lambda _mailbox: stamps.append(time.perf_counter()))
    start = time.perf_counter()
    # drain() returns when nothing is due; a retried row would be due later, so loop until all are sent.
    while len(stamps) < n:
        report = sender.drain()
        if report.failed:
            raise SystemExit(f"{report.failed} mail(s) failed; see the outbox table in {tmp}")
        if report.sent == 0:
            time.sleep(0.1)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu

    received = received_ids(out, n)
    with reading(engine) as conn:
        sent_rows = conn.exec_driver_sql("SELECT count(*) FROM outbox WHERE status = 'sent'").scalar()
    engine.dispose()
    gaps = [b - a for a, b in zip([start] + stamps, stamps)]
    ok = len(received) == n and set(received) == queued and sent_rows == n
    return {
        "n": n, "seconds": elapsed, "cpu_ms": cpu / n * 1000, "per_second": n / elapsed, "mean_ms": statistics.fmean(gaps) * 1000,
        "p50_ms": statistics.median(gaps) * 1000, "p99_ms": sorted(gaps)[int(0.99 * (n - 1))] * 1000,
        "max_ms": max(gaps) * 1000, "mean_kb": mean_size / 1024, "ok": ok,
        "distinct": len(set(received)), "received": len(received),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[1000, 5000])
    ap.add_argument("--connections", type=int, nargs="+", default=[4],
                    help="[smtp] connections; several values are run one after the other")
    ap.add_argument("--compose-at-send", action="store_true",
                    help="queue descriptions, as acknowledgements are, so the sender composes each mail")
    args = ap.parse_args(argv)
    failed = False
    for n in args.sizes:
        for connections in args.connections:
            r = run(n, connections, args.compose_at_send)
            print(f"N={r['n']:>6} connections={connections}: {r['seconds']:6.2f} s, {r['per_second']:7.1f} mails/s,"
                  f" {r['cpu_ms']:.2f} ms CPU per mail, latency mean {r['mean_ms']:.2f} ms (p50 {r['p50_ms']:.2f},"
                  f" p99 {r['p99_ms']:.2f}, max {r['max_ms']:.1f}), mean size {r['mean_kb']:.1f} KB; "
                  f"sink got {r['received']} mails, {r['distinct']} distinct Message-IDs: "
                  f"{'OK' if r['ok'] else 'MISMATCH'}", flush=True)
            failed |= not r["ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
