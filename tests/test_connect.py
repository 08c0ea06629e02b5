"""Connection security, check-config --connect and secrets in logs, on real servers."""

from __future__ import annotations

import pytest

from inboxd.testing.mail import make_mail
from tests.support import cli, list_json, write_config


@pytest.mark.parametrize("security", ["tls", "starttls", "none"])
def test_each_security_mode_syncs(tmp_path, dovecot, imap_user, security):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], security=security)
    dovecot.append(imap_user, "INBOX", make_mail(subject=f"Over {security}"))
    cli(config, "run", "--once")
    assert [t["subject"] for t in list_json(config)] == [f"Over {security}"]


def test_certificate_is_checked(tmp_path, dovecot, imap_user):
    # Without the test CA the self-signed certificate must be refused.
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    text = config.read_text().replace(f'ca_file = "{dovecot.ca_file}"', 'ca_file = ""')
    config.write_text(text)
    proc = cli(config, "run", "--once", check=False)
    assert proc.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr or "certificate verify failed" in proc.stderr


def test_check_config_connect_reports_each_server(tmp_path, dovecot, mail_user_factory, smtp_sink):
    good, bad = mail_user_factory(), mail_user_factory()
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    config = write_config(tmp_path, dovecot, [
        {"name": "support", "user": good},
        {"name": "billing", "user": bad, "password_file": str(wrong)},
    ], smtp_port=smtp_sink.port)
    assert cli(config, "check-config").returncode == 0
    proc = cli(config, "check-config", "--connect", check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(line.startswith("ok     imap support") for line in lines), proc.stdout
    assert any(line.startswith("FAILED imap billing") for line in lines), proc.stdout
    assert any(line.startswith("ok     smtp") for line in lines), proc.stdout


def test_broken_config_names_file_key_and_problem(tmp_path, dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    config.write_text(config.read_text().replace(f"port = {dovecot.ssl_port}", 'port = "abc"'))
    proc = cli(config, "check-config", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == 'inboxd: inboxd.toml: mailboxes[0].imap.port: expected an integer, got "abc"'


def test_no_secret_in_debug_logs(tmp_path, dovecot, mail_user_factory):
    secret = "Zebra-Quartz-8841"
    user = mail_user_factory(password=secret)
    pw = tmp_path / "pw"
    pw.write_text(secret)
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": user, "password_file": str(pw)}])
    config.write_text(config.read_text().replace("[store]", '[log]\nlevel = "debug"\n\n[store]'))
    dovecot.append(user, "INBOX", make_mail(subject="Secret check"))
    proc = cli(config, "run", "--once")
    assert "fetched UIDs" in proc.stderr  # Debug logging really was on...
    assert secret not in proc.stderr  # ...and the password never appears.
