"""OAuth2 sign-in: the device-code login, the encrypted token file, IMAP and SMTP over XOAUTH2 and
OAUTHBEARER, refresh before expiry, and a failed refresh that turns health red and mails the admin once.

Everything is a real exchange: a private Dovecot whose oauth2 passdb asks
a local authorization server (inboxd.testing.oauthserver) whether each
bearer token is active; that server also answers the device-code and
refresh grants inboxd's OAuth2 library sends ("generic" provider); the SMTP
sink checks tokens against it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from inboxd import oauth
from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.reports.status import read_health
from inboxd.store.engine import open_store
from inboxd.testing.mail import make_mail
from inboxd.testing.smtp import SmtpSink
from tests.support import cli, list_json, start_daemon, stop_daemon, wait_until, write_config

USER = "support@example.com"


def oauth_config(tmp: Path, dovecot, auth, *, mechanism: str = "xoauth2", smtp: SmtpSink | None = None,
                 admin_smtp: SmtpSink | None = None, acks: bool = False) -> Path:
    """A config whose mailbox "support" signs in to IMAP (and to `smtp`, when given) with OAuth2."""
    path = write_config(tmp, dovecot, [{"name": "support", "user": USER}], security="none", acks=acks,
                        smtp_port=admin_smtp.port if admin_smtp else None)
    text = path.read_text()
    pw = f'password_file = "{tmp / "imap-password"}"'
    assert text.count(pw) == 1
    text = text.replace(pw, 'auth = "oauth2"')
    tables = [
        "[mailboxes.oauth]",
        'provider = "generic"',
        f'client_id = "{auth.client_id}"',
        'scopes = ["mail", "offline_access"]',
        f'device_authorization_endpoint = "{auth.url}/device"',
        f'token_endpoint = "{auth.url}/token"',
        f'mechanism = "{mechanism}"',
        "",
    ]
    if smtp is not None:
        tables += ["[mailboxes.smtp]", 'host = "127.0.0.1"', f"port = {smtp.port}", 'security = "none"',
                   'auth = "oauth2"', ""]
    text = text.replace("[[agents]]", "\n".join(tables) + "\n[[agents]]", 1)
    text += '\n[[agents]]\nname = "dave"\nemail = "dave@example.com"\nrole = "admin"\n'
    path.write_text(text)
    return path


def alerts(sink: SmtpSink) -> list:
    return [e for e in sink.envelopes if "OAuth2 sign-in failed" in e.message()["Subject"]]


@pytest.fixture(autouse=True)
def _no_tokens_in_memory():
    # Access tokens are cached per process; each test starts as a fresh daemon would.
    oauth.forget()
    yield
    oauth.forget()


def test_login_runs_the_device_flow_and_stores_the_refresh_token_encrypted_0600(tmp_path, oauth_dovecot):
    dovecot, auth = oauth_dovecot
    config = oauth_config(tmp_path, dovecot, auth)
    done = cli(config, "oauth", "login", "support")
    # The user is shown where to go and the code to type; the login waited for the approval.
    assert f"open {auth.url}/activate and enter the code WDJB-MJHT" in done.stderr
    assert auth.device_grants == 1 and auth.last_scope == "mail offline_access"
    assert f"signed in as {USER}" in done.stdout
    token_file = tmp_path / "var" / "oauth" / "support.token"
    key_file = tmp_path / "var" / "oauth" / "key"
    for path in (token_file, key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    # Encrypted: the refresh token the server issued is nowhere in the file.
    (refresh_token,) = auth.refresh_tokens
    data = token_file.read_bytes()
    assert refresh_token.encode() not in data and b"refresh_token" not in data
    assert oauth.read_stored(load_settings(config).mailbox("support").imap.oauth).refresh_token == refresh_token


@pytest.mark.parametrize("answer", ["browser", "paste"])
def test_login_by_browser_with_pkce(tmp_path, oauth_dovecot, answer):
    """flow = "browser" (Google's): the browser comes back to a loopback listener, or its address is pasted."""
    dovecot, auth = oauth_dovecot
    config = oauth_config(tmp_path, dovecot, auth)
    text = config.read_text().replace(f'device_authorization_endpoint = "{auth.url}/device"',
                                      f'flow = "browser"\nauthorization_endpoint = "{auth.url}/authorize"')
    config.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(config), "oauth", "login", "support"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = next(line.strip() for line in proc.stderr if line.strip().startswith(f"{auth.url}/authorize?"))
        query = parse_qs(urlsplit(url).query)
        assert query["code_challenge_method"] == ["S256"] and query["scope"] == ["mail offline_access"]
        # The browser: the server approves at once and sends it back to the redirect_uri with a code.
        visit = urllib.request.Request(url, method="GET")
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(visit, timeout=30)
        location = redirect.value.headers["Location"]
        assert location.startswith(query["redirect_uri"][0]) and "code=" in location
        if answer == "browser":
            with urllib.request.urlopen(location, timeout=30) as page:
                assert b"sign-in is done" in page.read()
        else:
            # The browser was on another machine: its address bar is pasted into the terminal.
            proc.stdin.write(location + "\n")
            proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"signed in as {USER}" in out
    assert auth.code_grants == 1
    assert oauth.read_stored(load_settings(config).mailbox("support").imap.oauth).refresh_token in auth.refresh_tokens


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_login_of_a_password_mailbox_is_one_line(tmp_path, oauth_dovecot):
    dovecot, _auth = oauth_dovecot
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": USER}], security="none")
    done = cli(config, "oauth", "login", "support", check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        'inboxd: mailbox support does not sign in with OAuth2: set auth = "oauth2" in its [mailboxes.imap]'
        ' (or [mailboxes.smtp]) and give it a [mailboxes.oauth] table']


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_sync_and_ack_sign_in_with_the_token(tmp_path, oauth_dovecot, mechanism):
    dovecot, auth = oauth_dovecot
    with SmtpSink(oauth=auth.is_active) as smtp:
        config = oauth_config(tmp_path, dovecot, auth, mechanism=mechanism, smtp=smtp, acks=True)
        cli(config, "oauth", "login", "support")
        dovecot.append(USER, "INBOX", make_mail(subject="Printer on fire", frm="Carol <carol@customer.example>",
                                                to=USER))
        settings = load_settings(config)
        report = run_once(settings)
        assert report.statuses["support"].ok, report.statuses["support"].error
        assert [t["subject"] for t in list_json(config)] == ["Printer on fire"]
        # The acknowledgement went out over SMTP, signed in with the same mailbox's token.
        sent = smtp.wait_for(1)
        (ack,) = [e for e in sent if e.rcpt_tos == ["carol@customer.example"]]
        assert ack.message()["Auto-Submitted"] == "auto-replied" and ack.auth_user == USER
        assert {e.auth_user for e in sent} == {USER}
        assert smtp.oauth_logins and set(smtp.oauth_logins) == {(mechanism.upper(), USER)}
    # Dovecot asked the authorization server about the token (the SASL exchange was real).
    assert auth.introspections >= 1
    # A daemon process (this one) that starts refreshes once and then keeps the token in memory.
    assert auth.refreshes == 1


def test_a_revoked_token_is_refused_by_dovecot(tmp_path, oauth_dovecot):
    dovecot, auth = oauth_dovecot
    settings = load_settings(oauth_config(tmp_path, dovecot, auth))
    # Logged in by this process, which keeps the access token in memory and uses it while it lasts.
    oauth.login(settings.mailbox("support").imap.oauth, show=lambda text: None, sleep=lambda seconds: None)
    auth.deactivate()
    report = run_once(settings)
    assert not report.statuses["support"].ok
    assert "LoginError" in report.statuses["support"].error


def test_the_access_token_is_refreshed_before_it_expires(tmp_path, oauth_dovecot):
    dovecot, auth = oauth_dovecot
    conf = load_settings(oauth_config(tmp_path, dovecot, auth)).mailbox("support").imap.oauth
    t0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    oauth.login(conf, show=lambda text: None, now=t0, sleep=lambda seconds: None)
    first = oauth.access_token(conf, now=t0)
    assert auth.refreshes == 0 and first.expires_at == t0 + timedelta(hours=1) and first.account == USER
    # With more than five minutes left, the token in memory is used.
    assert oauth.access_token(conf, now=t0 + timedelta(minutes=54, seconds=59)) == first
    assert auth.refreshes == 0
    # Five minutes before its end it is refreshed, once, and the new one lasts an hour from then.
    later = t0 + timedelta(minutes=55, seconds=1)
    second = oauth.access_token(conf, now=later)
    assert auth.refreshes == 1 and second.token != first.token
    assert second.expires_at == later + timedelta(hours=1)
    assert oauth.access_token(conf, now=later + timedelta(minutes=10)) == second
    assert auth.refreshes == 1
    assert oauth.seconds_until_refresh(conf, now=later) == pytest.approx(55 * 60)
    # The old token is still good at the server until it ends; the new one signs in too.
    assert auth.is_active(second.token)


def test_a_rotated_refresh_token_replaces_the_stored_one(tmp_path, oauth_dovecot):
    dovecot, auth = oauth_dovecot
    conf = load_settings(oauth_config(tmp_path, dovecot, auth)).mailbox("support").imap.oauth
    t0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    first = oauth.login(conf, show=lambda text: None, now=t0, sleep=lambda seconds: None).refresh_token
    auth.rotate = True
    oauth.access_token(conf, now=t0 + timedelta(hours=1))
    stored = oauth.read_stored(conf)
    assert stored.refresh_token != first and auth.refresh_tokens == {stored.refresh_token}
    assert stored.obtained_at == t0 and stored.refreshed_at == t0 + timedelta(hours=1)
    # The next refresh uses the new one (the old one is refused by now).
    oauth.access_token(conf, now=t0 + timedelta(hours=2))
    assert auth.refreshes == 2


def test_a_failed_refresh_turns_health_red_in_one_sync_and_mails_the_admin_once(tmp_path, oauth_dovecot):
    dovecot, auth = oauth_dovecot
    with SmtpSink() as admin_smtp:
        config = oauth_config(tmp_path, dovecot, auth, admin_smtp=admin_smtp)
        cli(config, "oauth", "login", "support")
        settings = load_settings(config)
        assert run_once(settings).statuses["support"].ok
        engine = open_store(settings.store.url)
        try:
            assert read_health(engine, settings, datetime.now(UTC)).ok
            # The user revoked the app.  The access token in memory would still work for a while; the
            # daemon finds out at its next refresh (a token near its end, here: none in memory).
            auth.revoke()
            oauth.forget()
            report = run_once(settings)
            assert not report.statuses["support"].ok
            assert report.statuses["support"].error.startswith("RefreshFailed: mailbox support: the OAuth2"
                                                               " token refresh failed: invalid_grant")
            # Red at once, in /healthz's verdict and in `inboxd status`, with the reason.
            verdict = read_health(engine, settings, datetime.now(UTC))
            assert not verdict.ok
            assert "inboxd oauth login support" in " ".join(verdict.mailboxes[0].reasons)
        finally:
            engine.dispose()
        status = json.loads(cli(config, "status", "--json", check=False).stdout)
        (mailbox,) = status["mailboxes"]
        assert mailbox["state"] == "failing" and not mailbox["healthy"]
        # One mail to the admin, through the outbox, from the same pass.  (On the weekly report's day
        # the admin gets that too: only the alerts are counted.)
        admin_smtp.wait_for(1)
        (alert,) = alerts(admin_smtp)
        assert alert.rcpt_tos == ["dave@example.com"]
        message = alert.message()
        assert message["Subject"] == "[inboxd] support: OAuth2 sign-in failed; new mail is not being read"
        assert "inboxd oauth login support" in message.get_content()
        assert message["Auto-Submitted"] == "auto-generated"
        # Later passes keep failing (and retrying the refresh) without mailing again.
        refreshes = auth.refreshes
        assert not run_once(settings).statuses["support"].ok
        assert auth.refreshes == refreshes + 1
        assert len(alerts(admin_smtp)) == 1
        # A new login ends it: the next pass signs in and health is green again.
        cli(config, "oauth", "login", "support")
        assert run_once(settings).statuses["support"].ok
        engine = open_store(settings.store.url)
        try:
            assert read_health(engine, settings, datetime.now(UTC)).ok
        finally:
            engine.dispose()


def test_check_config_connect_shows_whose_token_and_its_expiry(tmp_path, oauth_dovecot):
    dovecot, auth = oauth_dovecot
    config = oauth_config(tmp_path, dovecot, auth)
    before = cli(config, "check-config", "--connect", check=False)
    assert before.returncode == 1
    assert "FAILED oauth2 support: NotLoggedIn: mailbox support: no OAuth2 token stored" in before.stdout
    cli(config, "oauth", "login", "support")
    done = cli(config, "check-config", "--connect")
    line = next(x for x in done.stdout.splitlines() if x.startswith("ok     oauth2 support:"))
    assert f"generic token for {USER}, XOAUTH2; access token valid until 20" in line
    assert any(x.startswith("ok     imap support") for x in done.stdout.splitlines())


def test_the_key_can_come_from_the_environment(tmp_path, oauth_dovecot, monkeypatch):
    from cryptography.fernet import Fernet

    dovecot, auth = oauth_dovecot
    conf = load_settings(oauth_config(tmp_path, dovecot, auth)).mailbox("support").imap.oauth
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("INBOXD_SECRET_KEY", key)
    oauth.login(conf, show=lambda text: None, sleep=lambda seconds: None)
    assert not (conf.token_file.parent / "key").exists()
    assert json.loads(Fernet(key.encode()).decrypt(conf.token_file.read_bytes()))["account"] == USER
    # Another key cannot read it: one line that says what to do.
    monkeypatch.setenv("INBOXD_SECRET_KEY", Fernet.generate_key().decode())
    with pytest.raises(oauth.NotLoggedIn, match="cannot be decrypted .* run `inboxd oauth login support`"):
        oauth.read_stored(conf)
    assert os.environ["INBOXD_SECRET_KEY"] != key


def test_microsoft_through_msal_device_flow_and_refresh(tmp_path, oauth_dovecot, monkeypatch):
    """provider = "microsoft": msal's own device flow and refresh grant, against a local authority over HTTPS
    (msal finds the endpoints by OpenID discovery under `authority`/`tenant`, as it does at Microsoft)."""
    from inboxd.testing.oauthserver import OAuthServer

    dovecot, _auth = oauth_dovecot
    # msal speaks only HTTPS; requests trusts the test's certificate through the environment.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(dovecot.ca_file))
    with OAuthServer(USER, tls=(dovecot.ca_file, dovecot.ca_file.parent / "key.pem")) as ms:
        path = write_config(tmp_path, dovecot, [{"name": "support", "user": USER}], security="none")
        text = path.read_text().replace(f'password_file = "{tmp_path / "imap-password"}"', 'auth = "oauth2"')
        text = text.replace("[[agents]]", f'[mailboxes.oauth]\nprovider = "microsoft"\nclient_id = "{ms.client_id}"\n'
                                          f'tenant = "contoso"\nauthority = "{ms.url}"\n\n[[agents]]', 1)
        path.write_text(text)
        conf = load_settings(path).mailbox("support").imap.oauth
        shown = []
        t0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        stored = oauth.login(conf, show=shown.append, now=t0)
        assert shown == [f"To sign in, open {ms.url}/activate and enter the code WDJB-MJHT."]
        assert stored.account == USER and stored.refresh_token in ms.refresh_tokens
        # msal asks for offline access itself, besides the Outlook scopes.
        assert "https://outlook.office.com/IMAP.AccessAsUser.All" in ms.last_scope
        assert "offline_access" in ms.last_scope
        refreshed = oauth.access_token(conf, now=t0 + timedelta(minutes=56))
        assert ms.refreshes == 1 and ms.is_active(refreshed.token) and refreshed.account == USER
        ms.revoke()
        with pytest.raises(oauth.RefreshFailed, match="mailbox support: the OAuth2 token refresh failed: invalid_grant"):
            oauth.access_token(conf, now=t0 + timedelta(hours=2))


def test_the_daemon_refreshes_while_idling_and_goes_red_as_soon_as_a_refresh_fails(tmp_path, oauth_dovecot):
    """`inboxd run`: a connection that idles for long is not left with an expired token; the poller wakes up
    when the token is due, refreshes it, and a refusal turns health red without waiting for mail."""
    dovecot, auth = oauth_dovecot
    # Tokens that are due for their refresh (five minutes before their end) five seconds after they are issued.
    auth.expires_in = 305
    config = oauth_config(tmp_path, dovecot, auth)
    cli(config, "oauth", "login", "support")
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        # The daemon refreshes at its start (it has no token in memory), then again each time one is due,
        # while its connection stays in IDLE.
        wait_until(lambda: auth.refreshes >= 3, timeout=60, what="two refreshes while idling")
        assert cli(config, "health", check=False).returncode == 0
        logins = dovecot.root / "log" / "info.log"
        connections = logins.read_text().count("Login: user=<support@example.com>, method=XOAUTH2")
        auth.revoke()
        wait_until(lambda: cli(config, "health", check=False).returncode == 1, timeout=60,
                   what="health to turn red after the refused refresh")
        status = json.loads(cli(config, "status", "--json", check=False).stdout)
        assert "invalid_grant" in status["mailboxes"][0]["folders"][0]["error"]
    finally:
        assert stop_daemon(daemon) == 0
    # No reconnection was needed for the refreshes before the revocation: one login, kept.
    assert connections == 1
