"""The daemon's API served for real on a Unix socket, with the `inboxd` CLI as its client.

The store is filled by a real sync from Dovecot; `inboxd.api.server.start`
serves it on the config's socket exactly as the daemon does, and the CLI,
run as a subprocess with `INBOXD_URL=unix://...`, talks to it.  This
process runs as root, which the config makes an admin agent (login
"root"), so the API's answers must be what the CLI prints when it runs
directly against the store as the store's owner.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from inboxd.api.client import Target, _UnixConnection, request
from inboxd.api.server import start
from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.store.engine import open_store
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import cli, wait_until, write_config

# The config maps the Unix user root to an agent: the tests that call the API run as root
# (the fixture `served` skips otherwise).
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the config maps the Unix user root to an agent")

BOSS = """
[[agents]]
name = "boss"
email = "boss@example.com"
role = "admin"
login = "root"
"""


class Served:
    """A store filled from Dovecot, served on the config's socket; `api(...)` runs the CLI as its client."""

    def __init__(self, config: Path, socket: Path) -> None:
        self.config, self.socket = config, socket
        self.env = {"INBOXD_URL": f"unix://{socket}"}

    def api(self, *args: str, check: bool = True):
        return cli(self.config, *args, env=self.env, check=check)

    def direct(self, *args: str, check: bool = True):
        return cli(self.config, *args, check=check)


@pytest.fixture
def served(tmp_path: Path, dovecot, imap_user):
    if os.geteuid() != 0:
        pytest.skip("the config maps the Unix user root to an agent")
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], extra=BOSS)
    for subject in ("Printer on fire", "打印机坏了", "Invoice 42"):
        dovecot.append(imap_user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject=subject,
                                                      message_id=make_message_id()))
    settings = load_settings(config)
    assert run_once(settings).failed == []
    engine = open_store(settings.store.url)
    stop = threading.Event()
    server = start(settings, engine, stop)
    assert server is not None
    try:
        wait_until(lambda: server.started, what="the API to listen")
        yield Served(config, settings.api.socket)
    finally:
        server.close()
        engine.dispose()
    # The daemon removes its socket when it stops.
    assert not settings.api.socket.exists()


def test_socket_is_group_only(served: Served) -> None:
    assert oct(served.socket.stat().st_mode & 0o777) == "0o660"


def test_list_show_take_answer_what_the_direct_cli_prints(served: Served) -> None:
    through_api = json.loads(served.api("list", "--json").stdout)
    assert len(through_api) == 3
    assert through_api == json.loads(served.direct("list", "--json").stdout)
    ref = next(t["id"] for t in through_api if t["subject"] == "打印机坏了")
    assert json.loads(served.api("show", ref, "--json").stdout) == json.loads(served.direct("show", ref, "--json").stdout)

    served.api("take", ref)
    shown = json.loads(served.direct("show", ref, "--json").stdout)
    assert shown["assignee"] == "boss"
    taken = [e for e in shown["events"] if e["action"] in ("take", "assign", "assigned", "taken")]
    assert taken, shown["events"]
    # The history says the change came through the API, from which Unix user.
    assert taken[-1]["detail"]["via"] == "api"
    assert "unix user root (uid 0)" in taken[-1]["detail"]["origin"]
    assert json.loads(served.api("show", ref, "--json").stdout) == shown


def test_an_error_is_one_line_and_a_failure(served: Served) -> None:
    proc = served.api("show", "T-999999", "--json", check=False)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "T-999999" in lines[0], proc.stderr


def test_an_unknown_path_is_404_json(served: Served) -> None:
    status, kind, body = request(Target(socket=str(served.socket)), "GET", "/v1/no-such-thing")
    assert status == 404
    assert kind.startswith("application/json")
    assert json.loads(body) == {"error": "no such path: GET /v1/no-such-thing"}


def test_on_the_socket_only_the_kernel_names_the_caller(served: Served) -> None:
    """A token on the socket changes nothing: the peer is root, the admin boss, whatever the header says."""
    conn = _UnixConnection(str(served.socket), 30)
    try:
        conn.request("GET", "/v1/me", headers={"Authorization": "Bearer ibx_not-a-token"})
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["agent"] == "boss"
    finally:
        conn.close()


def test_malformed_input_is_422_json_not_500(served: Served) -> None:
    target = Target(socket=str(served.socket))
    status, _kind, body = request(target, "GET", "/v1/tickets?limit=many")
    assert status == 422
    assert "limit" in json.loads(body)["error"]
    # PostgreSQL cannot store a NUL: it is refused at the door, on either store.
    status, _kind, body = request(target, "POST", "/v1/tickets/T-1/notes", body={"message": "a\x00b"})
    assert status == 422, body
    # Ids are 32-bit on PostgreSQL: a larger one is malformed, on either store.
    for qid in (2 ** 31, -(2 ** 63)):
        status, _kind, body = request(target, "GET", f"/v1/quarantine/{qid}")
        assert status == 422, body


def test_a_second_daemon_leaves_the_socket_to_the_first(served: Served, caplog) -> None:
    settings = load_settings(served.config)
    engine = open_store(settings.store.url)
    try:
        with caplog.at_level("WARNING", logger="inboxd.api"):
            assert start(settings, engine, threading.Event()) is None
        assert "another daemon answers on it" in caplog.text
        # The first still answers.
        assert json.loads(served.api("list", "--json").stdout)
    finally:
        engine.dispose()


@as_root
def test_a_stale_socket_file_is_replaced(tmp_path: Path, dovecot, imap_user) -> None:
    import socket as sockets

    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], extra=BOSS)
    settings = load_settings(config)
    # A socket file that nobody listens on, as a killed daemon leaves it.
    dead = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    dead.bind(str(settings.api.socket))
    dead.close()
    assert settings.api.socket.exists()
    assert run_once(settings).failed == []
    engine = open_store(settings.store.url)
    server = start(settings, engine, threading.Event())
    try:
        assert server is not None
        wait_until(lambda: server.started, what="the API to listen")
        assert json.loads(cli(config, "list", "--json", env={"INBOXD_URL": f"unix://{settings.api.socket}"}).stdout) == []
    finally:
        if server is not None:
            server.close()
        engine.dispose()


def test_only_the_server_imports_the_web_stack() -> None:
    """FastAPI, Starlette and uvicorn stay in inboxd/api/server.py (docs/layout.md)."""
    import re

    package = Path(__file__).resolve().parent.parent / "inboxd"
    pattern = re.compile(r"^\s*(?:from|import)\s+(?:fastapi|starlette|uvicorn)\b", re.MULTILINE)
    users = sorted(str(path.relative_to(package)) for path in package.rglob("*.py") if pattern.search(path.read_text()))
    assert users == ["api/server.py"]


@as_root
def test_a_missing_directory_is_made_and_a_missing_group_is_a_warning(tmp_path: Path, dovecot, imap_user,
                                                                      caplog) -> None:
    import dataclasses

    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], extra=BOSS)
    settings = load_settings(config)
    where = tmp_path / "run" / "inboxd" / "api.sock"
    settings = dataclasses.replace(settings, api=dataclasses.replace(settings.api, socket=where,
                                                                     group="inboxd-no-such-group"))
    engine = open_store(settings.store.url)
    try:
        with caplog.at_level("INFO", logger="inboxd.api"):
            server = start(settings, engine, threading.Event())
        assert server is not None
        try:
            wait_until(lambda: server.started, what="the API to listen")
            assert oct(where.parent.stat().st_mode & 0o777) == "0o750"
            assert oct(where.stat().st_mode & 0o777) == "0o660"
            assert where.stat().st_gid == os.getgid()
            assert "group inboxd-no-such-group does not exist" in caplog.text
            assert f"API listening on unix socket {where}" in caplog.text
            assert json.loads(cli(config, "list", "--json", env={"INBOXD_URL": f"unix://{where}"}).stdout) == []
        finally:
            server.close()
    finally:
        engine.dispose()
