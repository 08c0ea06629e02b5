"""Outgoing mail over implicit TLS, STARTTLS and plain SMTP, with and without AUTH.

Each test runs inboxd against a real aiosmtpd sink that speaks the chosen
security and checks the credentials, with the Dovecot fixture's self-signed
certificate (SAN IP:127.0.0.1) as the server certificate, so certificate
verification is exercised for real.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.testing.dovecot import Dovecot
from inboxd.testing.mail import make_mail
from inboxd.testing.smtp import SmtpSink
from tests.support import cli, write_config

SMTP_USER = "support@example.com"
SMTP_PASSWORD = "Sm7p-pa55-only-in-the-file"
WRONG_PASSWORD = "wrong-Pa55-never-logged"

# (sink security, whether the sink requires AUTH): the modes a deployment uses.
MODES = {"tls": True, "starttls": True, "none": False}


def key_file(dovecot: Dovecot) -> Path:
    # The fixture keeps its private key next to the certificate it hands out as ca_file.
    return dovecot.ca_file.with_name("key.pem")


@pytest.fixture(params=list(MODES))
def secure_sink(request, dovecot: Dovecot) -> Iterator[SmtpSink]:
    """A started sink for one security mode; AUTH required wherever TLS protects it."""
    security = request.param
    users = {SMTP_USER: SMTP_PASSWORD} if MODES[security] else None
    with SmtpSink(security=security, cert_file=dovecot.ca_file, key_file=key_file(dovecot), users=users) as sink:
        yield sink


def smtp_section(tmp: Path, sink: SmtpSink, *, password: str = SMTP_PASSWORD,
                 ca_file: Path | None = None, log: str = "") -> str:
    """An [smtp] table (and optionally [log]) for write_config's `extra`, which is appended last."""
    lines = ["", "[smtp]", 'host = "127.0.0.1"', f"port = {sink.port}", f'security = "{sink.security}"']
    if sink.users is not None:
        pw = tmp / "smtp-password"
        pw.write_text(password + "\n")
        pw.chmod(0o600)
        lines += [f'username = "{SMTP_USER}"', f'password_file = "{pw}"']
    if ca_file is not None:
        lines.append(f'ca_file = "{ca_file}"')
    # A short time-out keeps a failing handshake from stalling the test.
    lines += ["timeout = 10", "", log]
    return "\n".join(lines) + "\n"


def desk(tmp: Path, dovecot: Dovecot, user: str, sink: SmtpSink, **smtp) -> Path:
    return write_config(tmp, dovecot, [{"name": "support", "user": user}], acks=True,
                        extra=smtp_section(tmp, sink, **smtp))


def queued_rows(config: Path) -> list[dict]:
    return json.loads(cli(config, "outbox", "list", "--json").stdout)


def secret_forms(*passwords: str) -> list[str]:
    """Each password as it could appear in a log: raw, base64 (AUTH LOGIN) and in an AUTH PLAIN blob."""
    forms = []
    for password in passwords:
        forms.append(password)
        forms.append(base64.b64encode(password.encode()).decode())
        forms.append(base64.b64encode(f"\0{SMTP_USER}\0{password}".encode()).decode())
    return forms


def test_ack_is_delivered_and_check_config_connects(tmp_path, dovecot, imap_user, secure_sink):
    config = desk(tmp_path, dovecot, imap_user, secure_sink, ca_file=dovecot.ca_file)
    dovecot.append(imap_user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Order 4711 is late"))
    report = run_once(load_settings(config), workers=0)
    assert report.failed == [], report.statuses
    [env] = secure_sink.wait_for(1)
    assert env.mail_from == "support@example.com" and env.rcpt_tos == ["lilei@example.cn"]
    assert env.message()["Subject"] == "Re: [T-1000] Order 4711 is late"
    assert env.auth_user == (SMTP_USER if secure_sink.users else None)
    assert queued_rows(config) == []  # Nothing waits or failed.

    out = cli(config, "check-config", "--connect").stdout
    expected = "login ok" if secure_sink.users else "connected (no authentication configured)"
    assert f"ok     smtp support (127.0.0.1:{secure_sink.port}): {expected}" in out.splitlines()


def send_with_wrong_password(tmp: Path, dovecot: Dovecot, user: str, security: str) -> tuple[dict, str, SmtpSink]:
    """One `run --once` and one `check-config --connect` with a wrong SMTP password.

    Returns the outbox row, everything both commands printed (debug logging
    goes to stderr, the most a log could ever show), and the sink.
    """
    with SmtpSink(security=security, cert_file=dovecot.ca_file, key_file=key_file(dovecot),
                  users={SMTP_USER: SMTP_PASSWORD}) as sink:
        config = desk(tmp, dovecot, user, sink, password=WRONG_PASSWORD, ca_file=dovecot.ca_file,
                      log='[log]\nlevel = "debug"')
        # The retry an hour away: with the tests' 1 s, a run slowed by a busy machine (parallel test
        # workers) retried within the same `run --once`, and the row counted two attempts instead of one.
        config.write_text(config.read_text().replace('retry_base = "1s"\nretry_max = "2s"',
                                                     'retry_base = "1h"\nretry_max = "1h"'))
        dovecot.append(user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Where is my order"))
        run = cli(config, "run", "--once", check=False)
        assert run.returncode == 0, run.stderr[-2000:]
        check = cli(config, "check-config", "--connect", check=False)
        assert check.returncode == 1
        assert f"FAILED smtp support (127.0.0.1:{sink.port}): SMTPAuthenticationError" in check.stdout
        rows = json.loads(cli(config, "outbox", "list", "--status", "queued", "--status", "failed", "--json").stdout)
    [row] = rows
    return row, run.stdout + run.stderr + check.stdout + check.stderr, sink


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_wrong_password_is_never_logged(tmp_path, dovecot, imap_user, security):
    row, printed, sink = send_with_wrong_password(tmp_path, dovecot, imap_user, security)
    assert sink.envelopes == []
    assert "535" in row["last_error"], row
    assert printed.count("535") >= 2  # The sender's log line and check-config's report.
    for form in secret_forms(WRONG_PASSWORD, SMTP_PASSWORD):
        assert form not in printed + json.dumps(row)


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_wrong_password_is_a_temporary_failure(tmp_path, dovecot, imap_user, security):
    row, printed, _sink = send_with_wrong_password(tmp_path, dovecot, imap_user, security)
    # A bad password is the admin's to fix; the customer's mail must wait for it, not be dropped.
    assert row["status"] == "queued" and row["attempts"] == 1, row
    assert "temporary failure" in printed


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_untrusted_certificate_keeps_the_mail_queued(tmp_path, dovecot, imap_user, security):
    with SmtpSink(security=security, cert_file=dovecot.ca_file, key_file=key_file(dovecot),
                  users={SMTP_USER: SMTP_PASSWORD}) as sink:
        # No ca_file: the self-signed certificate must not be trusted.
        config = desk(tmp_path, dovecot, imap_user, sink)
        dovecot.append(imap_user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Refund please"))
        report = run_once(load_settings(config), workers=0)
        assert report.failed == [], report.statuses
        assert sink.envelopes == []
        [row] = queued_rows(config)
        assert row["status"] == "queued" and row["attempts"] == 1
        assert "certificate verify failed" in row["last_error"], row["last_error"]

        check = cli(config, "check-config", "--connect", check=False)
        assert check.returncode == 1
        [line] = [x for x in check.stdout.splitlines() if x.startswith("FAILED smtp")]
        assert line.startswith(f"FAILED smtp support (127.0.0.1:{sink.port}): ")
        assert "certificate verify failed" in line
