"""The daemon's API over TCP with TLS and per-agent tokens, end to end.

A real daemon (`inboxd run`) listens on a loopback port with a self-signed
certificate made here; the CLI, forced to be a client by `INBOXD_URL`,
verifies that certificate through `INBOXD_CA_FILE` and sends a token made by
`inboxd token create`.  The matrix is the one the Unix socket has
(tests/test_api_unix.py): alice may take but not export; an admin's
`--as alice` is recorded; plus what only tokens have: a revoked token and an
expired one are refused, no token is one line, and no secret reaches the
daemon's log.
"""

from __future__ import annotations

import json
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inboxd.desk import tokens
from inboxd.store import tokens as token_store
from inboxd.store.engine import writing
from inboxd.testing.mail import make_mail
from inboxd.testing.ports import free_port
from tests.support import cli, show_json, start_daemon, stop_daemon, store_engine, wait_until, write_config

HOST = "127.0.0.1"
AGENTS = """
[[agents]]
name = "boss"
email = "boss@example.com"
role = "admin"

[log]
level = "debug"
"""


def _certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the SAN lets the client check the host name) and its key."""
    cert, key = tmp / "api-cert.pem", tmp / "api-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


class Desk:
    """A running daemon with TLS on `url`, and the CLI as a client of it."""

    def __init__(self, config: Path, url: str, ca_file: Path, log: Path) -> None:
        self.config, self.url, self.ca_file, self.log = config, url, ca_file, log

    def client(self, token: str | None, *args: str, ca_file: str | None = None) -> subprocess.CompletedProcess:
        """The CLI as an agent elsewhere runs it: INBOXD_URL, INBOXD_TOKEN (empty: none), INBOXD_CA_FILE
        (empty: the system's trust store)."""
        env = {"INBOXD_URL": self.url, "INBOXD_TOKEN": token or "",
               "INBOXD_CA_FILE": str(self.ca_file) if ca_file is None else ca_file}
        return cli(self.config, *args, check=False, env=env)

    def owner(self, *args: str) -> subprocess.CompletedProcess:
        """The store's owner (root, the test), directly against the store."""
        return cli(self.config, *args)


@pytest.fixture
def desk(tmp_path, dovecot, imap_user):
    for n in range(3):
        dovecot.append(imap_user, "INBOX", make_mail(subject=f"Question {n}", message_id=f"<q{n}@example.cn>"))
    cert, key = _certificate(tmp_path)
    port = free_port()
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], extra=AGENTS,
                          api=f'listen = "{HOST}:{port}"\ncert = "{cert}"\nkey = "{key}"')
    cli(config, "run", "--once")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        wait_until(lambda: _answers(port) or daemon.poll() is not None, what="the API's TCP port")
        assert daemon.poll() is None, log.read_text()[-2000:]
        yield Desk(config, f"https://{HOST}:{port}", cert, log)
    finally:
        stop_daemon(daemon)


def _token(desk: Desk, *args: str) -> dict:
    return json.loads(desk.owner("--as", "boss", "token", "create", *args, "--json").stdout)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_agents_and_admins_over_tls_with_tokens(desk):
    alice = _token(desk, "alice", "--label", "alice's laptop")
    boss = _token(desk, "--days", "1")
    assert (alice["agent"], boss["agent"]) == ("alice", "boss")
    refs = sorted(t["id"] for t in json.loads(desk.owner("list", "--json").stdout))
    assert len(refs) == 3

    # alice may take a ticket...
    taken = desk.client(alice["token"], "take", refs[0], "--json")
    assert taken.returncode == 0, taken.stderr
    assert {k: json.loads(taken.stdout)[k] for k in ("id", "action", "actor")} == {
        "id": refs[0], "action": "take", "actor": "alice"}
    # ...but not export (supervisors and admins only).
    refused = _one_line_error(desk.client(alice["token"], "export"))
    assert "supervisor" in refused

    # The admin acting as alice: the change is alice's, and the history says who was behind it.
    as_alice = desk.client(boss["token"], "--as", "alice", "take", refs[1], "--json")
    assert as_alice.returncode == 0, as_alice.stderr
    event = [e for e in show_json(desk.config, refs[1])["events"] if e["action"] == "take"][-1]
    assert event["actor"] == "alice"
    assert event["detail"]["by"] == "admin boss acting as alice"
    assert event["detail"]["via"] == "api"
    assert event["detail"]["origin"].startswith(f"token {boss['id']} from ")
    # alice may not act as anyone.
    assert "--as is for admins" in _one_line_error(desk.client(alice["token"], "--as", "boss", "list"))

    # Each sees the tokens they may: alice her own, the admin everyone's; never a secret.
    mine = json.loads(desk.client(alice["token"], "token", "list", "--json").stdout)
    assert [t["id"] for t in mine] == [alice["id"]]
    assert mine[0]["last_used_at"] is not None
    everyone = desk.client(boss["token"], "token", "list", "--json").stdout
    assert {t["id"] for t in json.loads(everyone)} == {alice["id"], boss["id"]}
    assert alice["token"] not in everyone and boss["token"] not in everyone
    assert "belongs to boss" in _one_line_error(desk.client(alice["token"], "token", "revoke", str(boss["id"])))

    # No token, a wrong one, or a certificate the client does not trust: one line each.
    assert "$INBOXD_TOKEN" in _one_line_error(desk.client(None, "list"))
    assert "unknown API token" in _one_line_error(desk.client("ibx_" + "x" * 43, "list"))
    # Without INBOXD_CA_FILE the client trusts the system's CAs only, which never signed this certificate.
    untrusted = _one_line_error(desk.client(alice["token"], "list", ca_file=""))
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted, untrusted

    log = desk.log.read_text()
    assert "refused an unknown API token (ibx_xx…)" in log
    for secret in (alice["token"], boss["token"]):
        assert secret not in log and secret[6:] not in log


def test_revoked_and_expired_tokens_are_refused(desk):
    # Made by the owner, the hint names the address of [api] listen.
    hint = desk.owner("--as", "boss", "token", "create", "--days", "1").stdout
    assert f"export INBOXD_URL={desk.url} INBOXD_TOKEN=ibx_" in hint
    alice = _token(desk, "alice")
    assert desk.client(alice["token"], "list", "--json").returncode == 0
    revoked = desk.owner("--as", "boss", "token", "revoke", str(alice["id"]))
    assert f"token {alice['id']} of alice revoked" in revoked.stdout
    line = _one_line_error(desk.client(alice["token"], "list"))
    assert f"API token {alice['id']} of alice was revoked on" in line and "by boss" in line

    # A token made two days ago for one day: expired yesterday, with no waiting.
    secret = tokens.new_secret()
    past = datetime.now(UTC) - timedelta(days=2)
    engine = store_engine(desk.config)
    try:
        with writing(engine) as conn:
            tid = token_store.create(conn, agent="alice", label="old", secret_hash=tokens.hash_secret(secret),
                                     created_by="boss", now=past, expires_at=past + timedelta(days=1))
    finally:
        engine.dispose()
    line = _one_line_error(desk.client(secret, "list"))
    assert f"API token {tid} of alice expired on" in line
    assert secret not in line

    # The daemon logged the refusals, by the tokens' ids, never with their secrets.
    log = desk.log.read_text()
    assert f"refused API token {alice['id']} of alice: revoked on" in log
    assert f"refused API token {tid} of alice: expired on" in log
    assert alice["token"] not in log and secret not in log and secret[6:] not in log
