"""/metrics and /healthz of a running daemon, over its Unix socket, against a Dovecot of the test's own.

A scrape after a sync shows the mail ingested for the mailbox and folder;
/healthz is 200 while the mailbox syncs, 503 with the mailbox's reason once
Dovecot is stopped, and 200 again after it restarts.  Everything is polled
(`wait_until`): nothing here measures how soon the daemon notices.
"""

from __future__ import annotations

import json
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inboxd.api.client import ClientError, Target, request
from inboxd.config import load_settings
from inboxd.testing.mail import make_mail
from tests.support import start_daemon, stop_daemon, wait_until, write_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the config maps the Unix user root to an agent")

BOSS = """
[[agents]]
name = "boss"
email = "boss@example.com"
role = "admin"
login = "root"
"""


def get(target: Target, path: str) -> tuple[int, str, bytes] | None:
    """One GET on the daemon's socket; None while nothing answers there yet."""
    try:
        return request(target, "GET", path)
    except ClientError:
        return None


def healthz(target: Target, status: int) -> dict | None:
    """/healthz's body when it answers `status`, else None (for wait_until)."""
    answer = get(target, "/healthz")
    if answer is None or answer[0] != status:
        return None
    return json.loads(answer[2])


def ingested(target: Target) -> float | None:
    answer = get(target, "/metrics")
    if answer is None or answer[0] != 200:
        return None
    for family in text_string_to_metric_families(answer[2].decode()):
        for s in family.samples:
            if s.name == "inboxd_messages_ingested_total" and s.labels == {"mailbox": "support", "folder": "INBOX"}:
                return s.value
    return None


def test_metrics_after_a_sync_and_healthz_follows_dovecot(tmp_path, private_dovecot) -> None:
    dovecot = private_dovecot
    dovecot.add_user("support")
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": "support"}], poll_interval=2,
                          extra=BOSS)
    for i in range(3):
        dovecot.append("support", "INBOX", make_mail(subject=f"Question {i}"))
    target = Target(socket=str(load_settings(config).api.socket))
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        wait_until(lambda: ingested(target) == 3, what="a scrape that shows the 3 mails")
        status, kind, body = get(target, "/metrics")
        assert kind.startswith("text/plain; version=0.0.4")
        up = healthz(target, 200) or wait_until(lambda: healthz(target, 200), what="/healthz 200")
        assert up["ok"] is True and up["mailboxes"][0]["name"] == "support"

        dovecot.stop()
        down = wait_until(lambda: healthz(target, 503), what="/healthz 503 with Dovecot stopped")
        assert down["ok"] is False
        [mailbox] = down["mailboxes"]
        assert mailbox["name"] == "support" and mailbox["ok"] is False
        assert any(reason.startswith("INBOX: ") for reason in mailbox["reasons"]), mailbox

        dovecot.start()
        again = wait_until(lambda: healthz(target, 200), what="/healthz 200 after Dovecot restarted")
        assert again["mailboxes"][0]["reasons"] == []
    finally:
        assert stop_daemon(daemon) == 0
    text = log.read_text()
    assert f"API listening on unix socket {target.socket}" in text
    # The daemon removed its socket when it stopped.
    assert not os.path.exists(target.socket)


def test_metrics_needs_a_known_caller_but_healthz_does_not(tmp_path, dovecot, imap_user) -> None:
    """Without an [[agents]] entry for root, /metrics is refused (401) while /healthz answers."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], poll_interval=2)
    target = Target(socket=str(load_settings(config).api.socket))
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        answer = wait_until(lambda: get(target, "/healthz"), what="the API to answer")
        assert answer[0] in (200, 503)
        status, _kind, body = get(target, "/metrics")
        assert status == 401
        assert "Unix user root (uid 0) is not an agent" in json.loads(body)["error"]
    finally:
        assert stop_daemon(daemon) == 0
