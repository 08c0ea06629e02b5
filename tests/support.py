"""Helpers for integration tests: a config for the test servers, the CLI as a
subprocess, and waiting for conditions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from inboxd.testing.dovecot import Dovecot

PASSWORD = "secret"


def write_config(tmp: Path, dovecot: Dovecot, mailboxes: list[dict], *, security: str = "tls",
                 smtp_port: int | None = None, extra: str = "", idle: bool = True,
                 poll_interval: float = 60, batch_size: int = 200, acks: bool = False,
                 outbox: str = "", autoreply: str = "", history_before: str | None = "1970-01-01T00:00Z",
                 history: str = "closed") -> Path:
    """An inboxd.toml for `mailboxes`, each {"name", "user", "folders"?, "sent_folder"?, "password_file"?}.

    Acknowledgements are off unless `acks` is true, so tests of the inbound
    path see only inbound mail.  `outbox` and `autoreply` are extra TOML
    for [outbox] and [autoreply].
    Most tests put mail in a folder and then sync it as live work, so the
    history cut-off is 1970 unless `history_before` says otherwise (None:
    the default, the moment of the first sync).
    """
    pw = tmp / "imap-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    port = dovecot.ssl_port if security == "tls" else dovecot.port
    lines = [
        "[store]",
        'url = "sqlite:///inboxd.db"',
        'data_dir = "var"',
        "",
        "[autoreply]",
        f"enabled = {'true' if acks else 'false'}",
        autoreply,
        "",
        "[outbox]",
        'retry_base = "1s"',
        'retry_max = "2s"',
        'interval = "1s"',
        outbox,
        "",
    ]
    if smtp_port:
        lines += ["[smtp]", 'host = "127.0.0.1"', f"port = {smtp_port}", 'security = "none"', ""]
    for mb in mailboxes:
        folders = ", ".join(json.dumps(f) for f in mb.get("folders", ["INBOX"]))
        pwline = f'password_file = "{mb["password_file"]}"' if "password_file" in mb else f'password_file = "{pw}"'
        lines += [
            "[[mailboxes]]",
            f'name = "{mb["name"]}"',
            f'address = "{mb["name"]}@example.com"',
            f'history = "{history}"',
            *([f'history_before = "{history_before}"'] if history_before else []),
            "[mailboxes.imap]",
            f'host = "{dovecot.host}"',
            f"port = {mb.get('port', port)}",
            f'security = "{security}"',
            f'username = "{mb["user"]}"',
            pwline,
            f"folders = [{folders}]",
            f'sent_folder = "{mb.get("sent_folder", "")}"',
            f'ca_file = "{dovecot.ca_file}"',
            f"idle = {'true' if idle else 'false'}",
            f"poll_interval = {poll_interval}",
            f"batch_size = {batch_size}",
            "",
        ]
    lines += ["[[agents]]", 'name = "alice"', 'email = "alice@example.com"', ""]
    path = tmp / "inboxd.toml"
    path.write_text("\n".join(lines) + extra)
    return path


def cli(config: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "inboxd", "--config", str(config), *args],
        capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"inboxd {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def list_json(config: Path, *args: str) -> list[dict]:
    return json.loads(cli(config, "list", "--json", *args).stdout)


def show_json(config: Path, ticket_id: str) -> dict:
    return json.loads(cli(config, "show", ticket_id, "--json").stdout)


def start_daemon(config: Path, log: Path) -> subprocess.Popen:
    fh = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "inboxd", "--config", str(config), "run"],
        stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop_daemon(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    return proc.wait(timeout=timeout)


def wait_until(predicate, timeout: float = 60, interval: float = 0.05, what: str = "condition"):
    """Poll until `predicate()` is true and return its value.

    The deadline only stops a test that would otherwise hang; it is generous
    on purpose, because a loaded machine is slow, and no test may assert how
    soon something happens (bench/ measures that).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def db_count(config: Path, sql: str) -> int:
    import sqlite3

    conn = sqlite3.connect(config.parent / "inboxd.db", timeout=30)
    try:
        return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
