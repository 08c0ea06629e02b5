"""[mailboxes.oauth], [oauth] and auth = "oauth2": defaults per provider and every mistake as one line.

Also the SASL initial responses, which are pure functions (RFC 7628 and Google's XOAUTH2).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from inboxd import oauth
from inboxd.config import ConfigError, Secret, load_settings

BASE = """
[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "imap.example.com"
username = "support@example.com"
auth = "oauth2"
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "inboxd.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_microsoft_gets_its_scopes_xoauth2_and_a_token_file_in_data_dir(tmp_path):
    settings = load(tmp_path, BASE + '[mailboxes.oauth]\nprovider = "microsoft"\nclient_id = "abc"\n'
                                     'tenant = "contoso.onmicrosoft.com"\n'
                                     '[mailboxes.smtp]\nhost = "smtp.office365.com"\nauth = "oauth2"\n')
    mb = settings.mailbox("support")
    conf = mb.imap.oauth
    assert conf.provider == "microsoft" and conf.mechanism == "xoauth2" and conf.tenant == "contoso.onmicrosoft.com"
    assert conf.scopes == ("https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send")
    assert conf.token_file == tmp_path / "var" / "oauth" / "support.token" and conf.key_file is None
    # The mailbox's SMTP signs in with the same token, as the IMAP user unless it names its own.
    assert mb.smtp.oauth == conf and mb.smtp.username == "support@example.com" and mb.smtp.password is None


def test_google_defaults_and_a_generic_provider_with_a_client_secret(tmp_path):
    google = load(tmp_path, BASE + '[mailboxes.oauth]\nprovider = "google"\nclient_id = "abc"\n').mailbox("support")
    assert google.imap.oauth.scopes == ("https://mail.google.com/",)
    assert google.imap.oauth.token_endpoint == "https://oauth2.googleapis.com/token"
    generic = load(tmp_path, BASE + """[mailboxes.oauth]
client_id = "abc"
client_secret_env = "SUPPORT_SECRET"
scopes = ["mail"]
device_authorization_endpoint = "https://id.example.com/device"
token_endpoint = "https://id.example.com/token"

[oauth]
key_file = "keys/oauth.key"
""").mailbox("support").imap.oauth
    assert generic.provider == "generic" and generic.mechanism == "oauthbearer"
    assert generic.client_secret == Secret(env="SUPPORT_SECRET")
    assert generic.key_file == tmp_path / "keys" / "oauth.key"


@pytest.mark.parametrize("text, problem", [
    (BASE, 'mailboxes[0].imap.auth: "oauth2" needs a [mailboxes.oauth] table for this mailbox'),
    (BASE + 'password_env = "X"\n[mailboxes.oauth]\nclient_id = "a"\n',
     'mailboxes[0].imap.password_env: not used with auth = "oauth2" (the token comes from `inboxd oauth login`)'),
    (BASE.replace('auth = "oauth2"\n', 'auth = "kerberos"\n'),
     'mailboxes[0].imap.auth: must be one of "password", "oauth2", got "kerberos"'),
    (BASE.replace('auth = "oauth2"\n', "") + '[mailboxes.oauth]\nprovider = "google"\nclient_id = "a"\n',
     'mailboxes[0].oauth: not used: set auth = "oauth2" in [mailboxes.imap] or [mailboxes.smtp]'),
    (BASE + '[mailboxes.oauth]\nprovider = "yahoo"\nclient_id = "a"\n',
     'mailboxes[0].oauth.provider: must be one of "microsoft", "google", "generic", got "yahoo"'),
    (BASE + '[mailboxes.oauth]\nprovider = "google"\n', "mailboxes[0].oauth.client_id: missing required key"),
    (BASE + '[mailboxes.oauth]\nclient_id = "a"\n',
     'mailboxes[0].oauth.scopes: missing; provider "generic" needs the scopes to ask for'),
    (BASE + '[mailboxes.oauth]\nclient_id = "a"\nscopes = ["mail"]\n',
     'mailboxes[0].oauth.device_authorization_endpoint: missing; provider "generic" needs it'),
    (BASE + '[mailboxes.oauth]\nclient_id = "a"\nscopes = ["mail"]\ndevice_authorization_endpoint = "id/device"\n',
     'mailboxes[0].oauth.device_authorization_endpoint: expected an http(s) URL, got "id/device"'),
    (BASE + '[mailboxes.oauth]\nprovider = "microsoft"\nclient_id = "a"\ntoken_endpoint = "https://x/token"\n',
     'mailboxes[0].oauth.token_endpoint: not used with provider "microsoft" (msal knows Microsoft\'s endpoints;'
     ' set tenant)'),
    (BASE + '[mailboxes.oauth]\nprovider = "google"\nclient_id = "a"\ntenant = "x"\n',
     'mailboxes[0].oauth.tenant: only used with provider "microsoft"'),
    (BASE + '[mailboxes.oauth]\nprovider = "google"\nclient_id = "a"\nmechanism = "plain"\n',
     'mailboxes[0].oauth.mechanism: must be one of "xoauth2", "oauthbearer", got "plain"'),
    (BASE + '[mailboxes.oauth]\nprovider = "google"\nclient_id = "a"\nclient_secret_env = "A"\n'
            'client_secret_file = "b"\n',
     "mailboxes[0].oauth.client_secret_file: conflicts with client_secret_env; give only one source"),
    (BASE + '[mailboxes.oauth]\nprovider = "google"\nclient_id = "a"\nclient_secret = "s3cret"\n',
     'mailboxes[0].oauth.client_secret: unknown key "client_secret"; did you mean "client_secret_env"?'),
    (BASE + '[mailboxes.oauth]\nprovider = "google"\nclient_id = "a"\nauthority = "https://login.example"\n',
     'mailboxes[0].oauth.authority: only used with provider "microsoft"'),
    (BASE + '[mailboxes.oauth]\nprovider = "microsoft"\nclient_id = "a"\nauthority = "login.partner.microsoftonline.cn"\n',
     'mailboxes[0].oauth.authority: expected an https URL of a host, e.g. "https://login.microsoftonline.com",'
     ' got "login.partner.microsoftonline.cn"'),
    (BASE + '[mailboxes.oauth]\nprovider = "microsoft"\nclient_id = "a"\nflow = "browser"\n',
     'mailboxes[0].oauth.flow: provider "microsoft" signs in with the device flow only'),
    (BASE + '[mailboxes.oauth]\nclient_id = "a"\nscopes = ["m"]\nflow = "browser"\ntoken_endpoint = "https://t"\n',
     'mailboxes[0].oauth.authorization_endpoint: missing; provider "generic" needs it'),
    ('[smtp]\nhost = "smtp.example.com"\nauth = "oauth2"\n' + BASE,
     'smtp.auth: "oauth2" signs in as one mailbox: set it in that mailbox\'s [mailboxes.smtp]'),
])
def test_mistakes_are_one_line(tmp_path, text, problem):
    assert error(tmp_path, text) == f"inboxd.toml: {problem}"


def test_sasl_initial_responses():
    conf = load_settings_free(mechanism="xoauth2")
    assert oauth.sasl(conf, "a@example.com", "tok", "imap.example.com", 993) == \
        b"user=a@example.com\x01auth=Bearer tok\x01\x01"
    conf = load_settings_free(mechanism="oauthbearer")
    # RFC 7628 section 3.1, with "," and "=" in the authorization identity escaped (RFC 5801).
    assert oauth.sasl(conf, "a,b=c@example.com", "tok", "smtp.example.com", 587) == \
        b"n,a=a=2Cb=3Dc@example.com,\x01host=smtp.example.com\x01port=587\x01auth=Bearer tok\x01\x01"
    assert base64.b64decode(oauth.sasl_b64(conf, "a@x", "t", "h", 1)) == oauth.sasl(conf, "a@x", "t", "h", 1)


def load_settings_free(mechanism: str):
    from inboxd.config import OAuthSettings

    return OAuthSettings(mailbox="support", provider="generic", client_id="a", token_file=Path("/nonexistent"),
                         mechanism=mechanism)


def test_only_the_oauth_module_imports_the_oauth_libraries():
    """msal, Authlib and cryptography stay in inboxd/oauth.py (docs/layout.md)."""
    import re

    package = Path(__file__).resolve().parent.parent / "inboxd"
    pattern = re.compile(r"^\s*(?:from|import)\s+(?:msal|authlib|cryptography)\b", re.MULTILINE)
    users = sorted(str(path.relative_to(package)) for path in package.rglob("*.py") if pattern.search(path.read_text()))
    assert users == ["oauth.py"]
