"""Benchmark: the memory one very large mail costs the daemon.

It appends one mail with a big attachment (default 30 MiB, base64: a
41 MiB mail) and eight small mails behind it to a private Dovecot, then
syncs the folder with `inboxd.daemon.run_once` into a fresh store, once per
scenario, each in a process of its own so its peak is its own:

  inline   workers=0; the big mail is parsed in the daemon process
  worker   workers=1 and batch_bytes = 96 MiB, so the big mail shares a batch
           with the small ones and that batch goes to the parser worker
  limit    workers=1 and the default max_message_bytes (25 MiB): the big mail
           is not fetched whole but streamed to disk and quarantined

Except in "limit", max_message_bytes and max_attachment_bytes are raised
above the mail, so it is parsed and its attachment saved.  For each it
prints the daemon's RSS after imports (the floor), its peak RSS
(VmHWM), the peak RSS of the parser worker (its VmHWM, read while it
lives), and the daemon's peak above its floor
as a multiple of the mail's size.  Figures, never pass/fail.

Usage: python bench/bigmail.py [ATTACHMENT_MIB]
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MiB = 2 ** 20
SCENARIOS = {
    "inline": {"workers": 0, "imap": "", "store": "max_message_bytes = {big}\nmax_attachment_bytes = {big}"},
    "worker": {"workers": 1, "imap": "batch_bytes = {big}",
               "store": "max_message_bytes = {big}\nmax_attachment_bytes = {big}"},
    "limit": {"workers": 1, "imap": "", "store": ""},
}


def big_mail(attachment_mib: int) -> bytes:
    from inboxd.testing.mail import make_mail

    content = os.urandom(attachment_mib * MiB)
    return make_mail(frm="Big Sender <big@example.org>", subject="The full data set",
                     body="Hello,\n\nthe export you asked for is attached.\n",
                     attachments=[("export.bin", content, "application/octet-stream")])


def small_mails(n: int) -> list[bytes]:
    from inboxd.testing.mail import make_mail

    return [make_mail(frm=f"Customer {i} <c{i}@example.org>", subject=f"Small question {i}",
                      body=f"Question {i}.\n") for i in range(n)]


def write_config(tmp: Path, dovecot, scenario: dict) -> Path:
    big = 96 * MiB
    (tmp / "pw").write_text("secret")
    config = tmp / "inboxd.toml"
    config.write_text(f"""
[store]
url = "sqlite:///inboxd.db"
data_dir = "var"
{scenario['store'].format(big=big)}

[autoreply]
enabled = false

[[mailboxes]]
name = "support"
address = "support@example.com"
history_before = "1970-01-01T00:00Z"
[mailboxes.imap]
host = "{dovecot.host}"
port = {dovecot.ssl_port}
security = "tls"
username = "bench"
password_file = "{tmp / 'pw'}"
ca_file = "{dovecot.ca_file}"
{scenario['imap'].format(big=big)}
""")
    return config


def high_water(pid: int | str = "self") -> float:
    """A process's peak RSS in MiB (VmHWM: per address space, so a fresh
    process starts from zero, unlike ru_maxrss, which Linux carries across exec)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def child(config: str, workers: int) -> None:
    """Run one sync in this process and print its memory figures as JSON."""
    import psutil

    from inboxd.config import load_settings
    from inboxd.daemon import run_once

    settings = load_settings(Path(config))
    floor = psutil.Process().memory_info().rss
    workers_peak = 0.0
    done = threading.Event()

    def watch_workers() -> None:
        # The parser worker's high-water mark, read while it lives (it lives
        # until the sync ends, so the last reading is its peak).
        nonlocal workers_peak
        me = psutil.Process()
        while not done.wait(0.05):
            for proc in me.children(recursive=True):
                workers_peak = max(workers_peak, high_water(proc.pid))

    watcher = threading.Thread(target=watch_workers, daemon=True)
    watcher.start()
    report = run_once(settings, workers=workers)
    done.set()
    watcher.join()
    print(json.dumps({"ok": not report.failed, "floor": floor / MiB, "daemon_peak": high_water(),
                      "worker_peak": workers_peak}))


def main(attachment_mib: int) -> None:
    from inboxd.testing.dovecot import Dovecot

    with tempfile.TemporaryDirectory(prefix="inboxd-bench-") as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o711)
        with Dovecot(tmp / "dovecot") as dovecot:
            dovecot.add_user("bench", "secret")
            raw = big_mail(attachment_mib)
            size = len(raw)
            dovecot.append("bench", "INBOX", raw)
            del raw
            dovecot.append_many("bench", "INBOX", small_mails(8))
            print(f"one mail of {size / MiB:.1f} MiB ({attachment_mib} MiB attachment, base64) and 8 small ones")
            print(f"{'scenario':<8} {'floor':>8} {'daemon peak':>12} {'above floor':>12} {'x mail':>7}"
                  f" {'worker peak':>12}  outcome")
            for name, scenario in SCENARIOS.items():
                run = tmp / name
                run.mkdir()
                config = write_config(run, dovecot, scenario)
                out = subprocess.run([sys.executable, __file__, "--child", str(config), str(scenario["workers"])],
                                     capture_output=True, text=True, check=True)
                fig = json.loads(out.stdout.strip().splitlines()[-1])
                db = sqlite3.connect(run / "inboxd.db")
                filed = db.execute("SELECT count(*) FROM message").fetchone()[0]
                quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
                saved = db.execute("SELECT count(*) FROM attachment WHERE stored").fetchone()[0]
                db.close()
                above = fig["daemon_peak"] - fig["floor"]
                worker = f"{fig['worker_peak']:9.1f} MiB" if scenario["workers"] else f"{'-':>12}"
                print(f"{name:<8} {fig['floor']:7.1f}M {fig['daemon_peak']:11.1f}M {above:11.1f}M"
                      f" {above * MiB / size:6.2f}x {worker}  filed {filed}, quarantined {quarantined},"
                      f" attachments saved {saved}{'' if fig['ok'] else ', SYNC FAILED'}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
