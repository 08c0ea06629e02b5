"""Benchmark: how fast `inboxd migrate-store` copies a SQLite store into PostgreSQL.

It files N messages from a private Dovecot into a SQLite store with
`inboxd run --once` (the corpus of bench/ingest.py: mixed sizes, Chinese
charsets, some 200 KB attachments, replies), starts a private PostgreSQL
cluster (timing its initdb and start), then times `inboxd migrate-store`
into an empty database: rows per second over all tables, and MiB of raw
mail per second.
Usage: python bench/migrate_store.py [N ...]   (default: 2000)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import corpus  # noqa: E402
from inboxd.testing.dovecot import Dovecot  # noqa: E402
from inboxd.testing.postgres import PostgresCluster  # noqa: E402


def build_store(dovecot: Dovecot, tmp: Path, n: int) -> Path:
    user = f"bench{n}"
    dovecot.add_user(user, "secret")
    dovecot.append_many(user, "INBOX", corpus(n))
    (tmp / "pw").write_text("secret\n")
    config = tmp / "inboxd.toml"
    config.write_text(f"""
[store]
url = "sqlite:///inboxd.db"
[autoreply]
enabled = false
[[mailboxes]]
name = "support"
address = "support@example.com"
history_before = "1970-01-01T00:00Z"
[mailboxes.imap]
host = "127.0.0.1"
port = {dovecot.ssl_port}
username = "{user}"
password_file = "{tmp / 'pw'}"
ca_file = "{dovecot.ca_file}"
[[agents]]
name = "alice"
email = "alice@example.com"
""")
    subprocess.run([sys.executable, "-m", "inboxd", "--config", str(config), "run", "--once"], check=True,
                   capture_output=True)
    return config


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-") as root:
        root_path = Path(root)
        root_path.chmod(0o711)
        with Dovecot(root_path / "dovecot") as dovecot, PostgresCluster() as pg:
            print(f"postgres: initdb {pg.initdb_seconds:.2f} s, start {pg.start_seconds:.2f} s")
            for n in sizes:
                tmp = root_path / f"n{n}"
                tmp.mkdir()
                config = build_store(dovecot, tmp, n)
                size = (tmp / "inboxd.db").stat().st_size
                url = pg.create_database(f"bench_{n}")
                started = time.monotonic()
                out = subprocess.run([sys.executable, "-m", "inboxd", "--config", str(config), "migrate-store",
                                      "--to", url], check=True, capture_output=True, text=True).stdout
                elapsed = time.monotonic() - started
                rows = sum(int(line.split()[1]) for line in out.splitlines() if line.endswith("row(s)")
                           and line.startswith("  "))
                summary = [line for line in out.splitlines() if line.startswith("copied ")][0]
                print(f"{n} messages, {rows} rows, {size / 2**20:.0f} MiB SQLite: command {elapsed:.1f} s"
                      f" ({rows / elapsed:.0f} rows/s, {size / 2**20 / elapsed:.1f} MiB/s); {summary}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2000])
