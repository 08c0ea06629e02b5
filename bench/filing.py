"""Benchmark: the filing path alone (`Filer.file_batch`), CPU per message.

The corpus of bench/ingest.py (2,000 mails by default) is parsed up front
(as the parser worker would), then filed into a fresh store in batches of
200, each batch in its own write transaction with the filing lock, the way
`StoreSink._file_once` files it; acks off (`[autoreply] enabled = false`)
or on (`--acks`: the acknowledgements are queued, nothing is sent).  Only
the filing is timed: CPU seconds of this process (`resource.getrusage`) and
wall seconds, with the commit's included.  No IMAP server, so the figure is
the filing thread's share of `bench/ingest.py`, without its noise.

Usage: python bench/filing.py [--store sqlite|postgresql] [--acks] [--rounds R] [N]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import corpus  # noqa: E402
from inboxd.config import parse_settings  # noqa: E402
from inboxd.desk.ingest import Batch, Fetched, Filer  # noqa: E402
from inboxd.store import filing  # noqa: E402
from inboxd.store.engine import open_store, writing  # noqa: E402
from inboxd.sync.worker import parse_one  # noqa: E402
from inboxd.testing.postgres import PostgresCluster  # noqa: E402

BATCH = 200


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def settings_for(root: Path, url: str, acks: bool):
    return parse_settings({
        "store": {"url": url, "data_dir": str(root / "var")},
        "mailboxes": [{"name": "support", "address": "support@example.com", "history_before": "1970-01-01T00:00Z",
                       "imap": {"host": "imap.example.com", "username": "u", "password_env": "X"}}],
        "autoreply": {"enabled": acks},
    }, root / "inboxd.toml")


def file_all(url: str, root: Path, mails: list[bytes], parsed: list, acks: bool) -> tuple[float, float]:
    settings = settings_for(root, url, acks)
    engine = open_store(url)
    filer = Filer(settings)
    now = datetime.now(UTC)
    wall, proc = time.perf_counter(), cpu()
    for start in range(0, len(mails), BATCH):
        fetched = [Fetched(uid=start + i + 1, raw=raw, arrived=now) for i, raw in enumerate(mails[start:start + BATCH])]
        batch = Batch("support", "INBOX", 1, start + len(fetched), fetched)
        with writing(engine) as conn:
            filing.serialize_filing(conn)
            filer.file_batch(conn, batch, now, parsed[start:start + BATCH])
    wall, proc = time.perf_counter() - wall, cpu() - proc
    engine.dispose()
    return wall, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=2000)
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--acks", action="store_true")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-") as tmpdir, contextlib.ExitStack() as stack:
        root = Path(tmpdir)
        cluster = stack.enter_context(PostgresCluster()) if args.store == "postgresql" else None
        mails = corpus(args.n)
        (root / "var").mkdir()
        parsed = [parse_one(raw, 10 << 20, root / "var") for raw in mails]
        for round_ in range(1, args.rounds + 1):
            url = (cluster.create_database(f"filing_{round_}") if cluster is not None
                   else f"sqlite:///{root / f'filing-{round_}.db'}")
            wall, proc = file_all(url, root, mails, parsed, args.acks)
            print(f"round {round_}: {args.n} mails ({args.store}, acks {'on' if args.acks else 'off'}):"
                  f" CPU {proc * 1000 / args.n:.3f} ms/msg, wall {wall * 1000 / args.n:.3f} ms/msg"
                  f" ({args.n / wall:.0f} msgs/s)")


if __name__ == "__main__":
    main()
