"""Helpers for integration tests: a config for the test servers, the CLI as a
subprocess, the store the config names, and waiting for conditions.

The store a test's config names is a SQLite file in the test's directory,
or, when the suite runs with `--store=postgresql` (tests/conftest.py), a
fresh database of its own on the session's private PostgreSQL cluster.
`store_url_for` decides which; `db_count` and `store_engine` read whichever
it is, so a test that inspects the store through them runs on both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from inboxd.testing.dovecot import Dovecot

PASSWORD = "secret"

# "sqlite" or "postgresql": the store the tests' configs name.  Set by
# tests/conftest.py from --store (or $INBOXD_TEST_STORE).
STORE = os.environ.get("INBOXD_TEST_STORE", "sqlite")
# Under --store=postgresql, conftest sets this for each store test: it
# creates an empty database on the session cluster and returns its URL.
new_database: Callable[[], str] | None = None
# The PostgreSQL store already given to each test directory, so a test that
# writes its config twice in one directory keeps one store, as with SQLite's file.
_databases: dict[Path, str] = {}


def store_url_for(tmp: Path) -> str:
    """The store URL a config in directory `tmp` names.

    SQLite: "inboxd.db" next to the config (a relative path, which inboxd
    resolves against the config's directory).  PostgreSQL: a fresh database
    for this directory, the same one on every call.
    """
    if STORE == "sqlite":
        return "sqlite:///inboxd.db"
    if new_database is None:
        raise RuntimeError("--store=postgresql, but this test is not marked `store` (tests/conftest.py gives the"
                           " store tests their database)")
    tmp = Path(tmp).resolve()
    if tmp not in _databases:
        _databases[tmp] = new_database()
    return _databases[tmp]


def forget_databases() -> None:
    """Called between tests: the next test's directories get new databases."""
    _databases.clear()


def write_config(tmp: Path, dovecot: Dovecot, mailboxes: list[dict], *, security: str = "tls",
                 smtp_port: int | None = None, extra: str = "", idle: bool = True,
                 poll_interval: float = 60, batch_size: int = 200, acks: bool = False,
                 outbox: str = "", autoreply: str = "", history_before: str | None = "1970-01-01T00:00Z",
                 history: str = "closed", url: str | None = None, store: str = "", api: str = "") -> Path:
    """An inboxd.toml for `mailboxes`, each {"name", "user", "folders"?, "sent_folder"?, "password_file"?}.

    Acknowledgements are off unless `acks` is true, so tests of the inbound
    path see only inbound mail.  `outbox` and `autoreply` are extra TOML
    for [outbox] and [autoreply].
    Most tests put mail in a folder and then sync it as live work, so the
    history cut-off is 1970 unless `history_before` says otherwise (None:
    the default, the moment of the first sync).
    The store is `url` when given, else the one `store_url_for` chooses;
    `store` is extra TOML for [store] (e.g. 'lease = "3s"').
    Every config serves the daemon's API on its own socket, `tmp`/api.sock,
    with the daemon's own group, so no test daemon binds /run/inboxd; `api`
    is extra TOML for [api] (e.g. listen, cert, key).
    """
    pw = tmp / "imap-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    port = dovecot.ssl_port if security == "tls" else dovecot.port
    lines = [
        "[store]",
        f'url = "{url or store_url_for(tmp)}"',
        'data_dir = "var"',
        store,
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
        "[api]",
        f"socket = {json.dumps(str(tmp / 'api.sock'))}",
        'group = ""',
        api,
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


def cli(config: Path, *args: str, check: bool = True, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`inboxd --config CONFIG ARGS...` as a subprocess; `env` is added to this process's environment
    (e.g. {"INBOXD_URL": "unix:///.../api.sock"} makes the CLI a client of the daemon's API)."""
    proc = subprocess.run(
        [sys.executable, "-m", "inboxd", "--config", str(config), *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **env} if env else None,
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


def config_store_url(config: Path) -> str:
    """The store URL in `config` (a relative SQLite path made absolute, as inboxd does)."""
    import tomllib

    from sqlalchemy.engine import make_url

    url = tomllib.loads(config.read_text())["store"]["url"]
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_absolute():
        return parsed.set(database=str(config.parent / parsed.database)).render_as_string(hide_password=False)
    return url


def store_engine(config: Path):
    """A SQLAlchemy engine on the store `config` names, for tests that inspect it.

    Write portable SQL through it (`sqlalchemy.text` with :named parameters)
    and the test runs on SQLite and PostgreSQL alike.  It does not create a
    missing SQLite file and holds no pooled connection between uses, so it
    never keeps a test database busy.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    url = config_store_url(config)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        return create_engine(f"sqlite:///file:{path}?mode=rw&uri=true", poolclass=NullPool,
                             connect_args={"timeout": 30})
    return create_engine(url, poolclass=NullPool)


def db_count(config: Path, sql: str, **params) -> int:
    """The first column of the first row of `sql` on the store `config` names; 0 when there is
    no store yet, or the table does not exist yet (the daemon has not migrated)."""
    if STORE == "sqlite" and config_store_url(config).startswith("sqlite"):
        # The common case stays on the stdlib driver: it is polled in tight loops.
        import sqlite3

        conn = sqlite3.connect(config.parent / "inboxd.db", timeout=30)
        try:
            return conn.execute(sql, params).fetchone()[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            conn.close()
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError, ProgrammingError

    engine = store_engine(config)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar() or 0
    except (OperationalError, ProgrammingError):
        return 0
    finally:
        engine.dispose()


def filed_batch_sizes(config: Path) -> list[int]:
    """Sync `config` once (`run_once`, which must not fail): how many messages each filed batch held, in
    order, read from the progress reports (one per filed batch)."""
    from inboxd.config import load_settings
    from inboxd.daemon import run_once

    sizes: list[int] = []
    done = [0]

    def progress(p) -> None:
        if p.result is not None:
            sizes.append(p.done - done[0])
            done[0] = p.done

    report = run_once(load_settings(config), progress=progress)
    assert not report.failed
    return sizes
