"""OAuth2 sign-in for IMAP and SMTP: the device-code login, the encrypted refresh token, and access
tokens refreshed before they expire.  The only user of msal, authlib and cryptography.

`login` runs the device authorization grant (RFC 8628) once, for `inboxd oauth
login MAILBOX`: with msal for Microsoft, with authlib's OAuth2 client for
Google and any other ("generic") provider.  The refresh token it gets is kept
in [store] data_dir/oauth/<mailbox>.token, encrypted with Fernet
(AES-128-CBC + HMAC-SHA256), mode 0600; the key is [oauth] key_file, else
$INBOXD_SECRET_KEY, else the file "key" beside the tokens (made at the first
login, 0600).  The threat model is in docs/practices/oauth.md.

`access_token` hands the IMAP poller and the SMTP sender an access token
from memory while more than REFRESH_MARGIN of it is left, and otherwise
refreshes it first (the refresh grant; a rotated refresh token is written
back).  A refresh that fails raises `RefreshFailed` at once, even while the
old access token would still work for a few minutes: the poller then marks
the mailbox failing, so health, `status` and the admin hear of it before any
mail is missed.  `sasl` builds the XOAUTH2 or OAUTHBEARER (RFC 7628)
initial response.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from inboxd.config import OAuthSettings

# An access token with less than this left is refreshed before it is used.
REFRESH_MARGIN = timedelta(minutes=5)
# How long one HTTP request to a token endpoint may take.
HTTP_TIMEOUT = 30.0
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
KEY_ENV = "INBOXD_SECRET_KEY"


class OAuthError(Exception):
    """An OAuth2 sign-in problem, in one line that names the mailbox and never a token."""


class NotLoggedIn(OAuthError):
    """No usable refresh token is stored: `inboxd oauth login MAILBOX` has not run (or its key is gone)."""


class RefreshFailed(OAuthError):
    """The token endpoint refused (or could not be asked for) a new access token."""


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: datetime
    account: str            # who the token signs in as, when the provider said ("" otherwise)


@dataclass(frozen=True)
class Stored:
    """What the encrypted token file holds."""

    refresh_token: str
    account: str
    provider: str
    obtained_at: datetime     # when `oauth login` got it: a new login starts a new failure episode
    refreshed_at: datetime | None = None


# Access tokens by token file, and one lock per file so that the poller and
# the sender of one mailbox never refresh at the same time.
_cache: dict[Path, AccessToken] = {}
_locks: dict[Path, threading.Lock] = {}
_locks_lock = threading.Lock()


def _lock(path: Path) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault(path, threading.Lock())


def forget() -> None:
    """Drop every access token held in memory (tests, and after a new login)."""
    _cache.clear()


# -- SASL ----------------------------------------------------------------------------------------

def sasl(oauth: OAuthSettings, user: str, token: str, host: str, port: int) -> bytes:
    """The initial client response of the mailbox's mechanism (not yet base64-encoded)."""
    if oauth.mechanism == "oauthbearer":
        # RFC 7628 section 3.1: a GS2 header naming the user, then key=value pairs separated by ^A.
        gs2_user = user.replace("=", "=3D").replace(",", "=2C")
        return f"n,a={gs2_user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def sasl_b64(oauth: OAuthSettings, user: str, token: str, host: str, port: int) -> str:
    return base64.b64encode(sasl(oauth, user, token, host, port)).decode("ascii")


# -- access tokens -------------------------------------------------------------------------------

def access_token(oauth: OAuthSettings, now: datetime | None = None) -> AccessToken:
    """A token with more than REFRESH_MARGIN left at `now` (default: the real time), refreshed when needed."""
    now = now or datetime.now(UTC)
    path = oauth.token_file
    with _lock(path):
        held = _cache.get(path)
        if held is not None and held.expires_at - now > REFRESH_MARGIN:
            return held
        fresh = _refresh(oauth, now)
        _cache[path] = fresh
        return fresh


def seconds_until_refresh(oauth: OAuthSettings, now: datetime | None = None) -> float:
    """How long the access token held in memory lasts before it is due for its refresh (0: due now)."""
    held = _cache.get(oauth.token_file)
    if held is None:
        return 0.0
    return max(0.0, (held.expires_at - REFRESH_MARGIN - (now or datetime.now(UTC))).total_seconds())


def _refresh(oauth: OAuthSettings, now: datetime) -> AccessToken:
    # The file is read at every refresh, so a new `oauth login` is picked up by a running daemon.
    with _file_lock(oauth):
        stored = read_stored(oauth)
        try:
            answer = _provider(oauth).refresh(stored.refresh_token)
        except Exception as exc:
            # Whatever went wrong (the provider's answer, or its library), the mailbox cannot sign in.
            reason = str(exc) if isinstance(exc, OAuthError) else _one_line(exc)
            raise RefreshFailed(f"mailbox {oauth.mailbox}: the OAuth2 token refresh failed: {reason};"
                                f" run `inboxd oauth login {oauth.mailbox}`") from None
        account = answer.account or stored.account
        # A provider that rotates refresh tokens (Microsoft does) sends a new one: it replaces the old.
        _write_stored(oauth, Stored(answer.refresh_token or stored.refresh_token, account, oauth.provider,
                                    stored.obtained_at, now))
    return AccessToken(answer.access_token, now + timedelta(seconds=answer.expires_in), account)


def describe(oauth: OAuthSettings, now: datetime | None = None) -> str:
    """For `check-config --connect`: whose token it is and when the access token expires."""
    now = now or datetime.now(UTC)
    token = access_token(oauth, now)
    who = token.account or "account not told by the provider"
    return (f"{oauth.provider} token for {who}, {oauth.mechanism.upper()}; access token valid until"
            f" {token.expires_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}")


# -- the device-code login -----------------------------------------------------------------------

def login(oauth: OAuthSettings, show: Callable[[str], None], now: datetime | None = None,
          sleep: Callable[[float], None] = time.sleep, paste: IO[str] | None = None) -> Stored:
    """Get the user's consent and store the refresh token.

    The device flow (`flow = "device"`): `show` the URL and the code, poll
    until the user approved.  The browser flow: `show` the URL, then wait
    for the browser to come back to a loopback address, or for the address
    it tried to open to be pasted into `paste` (the terminal).
    """
    provider = _provider(oauth)
    if oauth.flow == "browser":
        answer = provider.browser_login(show, paste)
    else:
        answer = provider.device_login(show, sleep)
    if not answer.refresh_token:
        raise OAuthError(f"mailbox {oauth.mailbox}: the provider gave no refresh token"
                         " (ask for offline access: Microsoft adds it, others may need a scope such as"
                         " \"offline_access\")")
    now = now or datetime.now(UTC)
    stored = Stored(answer.refresh_token, answer.account, oauth.provider, now, None)
    with _file_lock(oauth):
        _write_stored(oauth, stored)
    with _lock(oauth.token_file):
        _cache[oauth.token_file] = AccessToken(answer.access_token, now + timedelta(seconds=answer.expires_in),
                                               answer.account)
    return stored


# -- the encrypted file --------------------------------------------------------------------------

def read_stored(oauth: OAuthSettings) -> Stored:
    """The stored token, decrypted; NotLoggedIn when there is none or it cannot be read."""
    from cryptography.fernet import Fernet, InvalidToken

    path = oauth.token_file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotLoggedIn(f"mailbox {oauth.mailbox}: no OAuth2 token stored ({path});"
                          f" run `inboxd oauth login {oauth.mailbox}`") from None
    except OSError as exc:
        raise NotLoggedIn(f"mailbox {oauth.mailbox}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        plain = json.loads(Fernet(_key(oauth, create=False)).decrypt(data))
    except (InvalidToken, ValueError):
        raise NotLoggedIn(f"mailbox {oauth.mailbox}: {path} cannot be decrypted with the OAuth2 key"
                          f" (was the key changed?); run `inboxd oauth login {oauth.mailbox}`") from None
    return Stored(plain["refresh_token"], plain.get("account", ""), plain.get("provider", oauth.provider),
                  datetime.fromisoformat(plain["obtained_at"]),
                  datetime.fromisoformat(plain["refreshed_at"]) if plain.get("refreshed_at") else None)


def _write_stored(oauth: OAuthSettings, stored: Stored) -> None:
    from cryptography.fernet import Fernet

    plain = json.dumps({"refresh_token": stored.refresh_token, "account": stored.account,
                        "provider": stored.provider, "obtained_at": stored.obtained_at.isoformat(),
                        "refreshed_at": stored.refreshed_at.isoformat() if stored.refreshed_at else None})
    _private_write(oauth.token_file, Fernet(_key(oauth, create=True)).encrypt(plain.encode()))


def _key(oauth: OAuthSettings, create: bool) -> bytes:
    """The Fernet key: [oauth] key_file, else $INBOXD_SECRET_KEY, else data_dir/oauth/key (made when `create`)."""
    from cryptography.fernet import Fernet

    if oauth.key_file is None and os.environ.get(KEY_ENV):
        return _checked(os.environ[KEY_ENV].strip().encode(), f"${KEY_ENV}")
    path = oauth.key_file or oauth.token_file.parent / "key"
    try:
        return _checked(path.read_bytes().strip(), str(path))
    except FileNotFoundError:
        if not create or oauth.key_file is not None:
            raise NotLoggedIn(f"mailbox {oauth.mailbox}: the OAuth2 key {path} is missing") from None
    key = Fernet.generate_key()
    _private_write(path, key + b"\n")
    return key


def _checked(key: bytes, where: str) -> bytes:
    from cryptography.fernet import Fernet

    try:
        Fernet(key)
    except ValueError:
        raise NotLoggedIn(f"{where} is not a Fernet key (32 url-safe base64-encoded bytes;"
                         " make one with: python3 -c 'from cryptography.fernet import Fernet;"
                         " print(Fernet.generate_key().decode())')") from None
    return key


def _private_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, mode 0600, in a folder of mode 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


class _file_lock:
    """Between processes (the daemon, `check-config --connect`, `oauth login`): one refresh at a time."""

    def __init__(self, oauth: OAuthSettings) -> None:
        self.path = oauth.token_file.with_suffix(".lock")

    def __enter__(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# -- the providers -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Answer:
    access_token: str
    expires_in: float
    refresh_token: str
    account: str


def _provider(oauth: OAuthSettings) -> _Msal | _Generic:
    return _Msal(oauth) if oauth.provider == "microsoft" else _Generic(oauth)


class _Generic:
    """RFC 8628 device flow and RFC 6749 refresh grant with authlib (Google, or any provider's endpoints)."""

    def __init__(self, oauth: OAuthSettings) -> None:
        self.oauth = oauth

    def _session(self):
        from authlib.integrations.requests_client import OAuth2Session

        secret = self.oauth.client_secret.reveal() if self.oauth.client_secret else None
        return OAuth2Session(self.oauth.client_id, secret, scope=" ".join(self.oauth.scopes),
                             token_endpoint_auth_method="client_secret_post" if secret else "none")

    def device_login(self, show: Callable[[str], None], sleep: Callable[[float], None]) -> _Answer:
        from authlib.integrations.base_client.errors import OAuthError as LibError

        import requests

        session = self._session()
        data = {"client_id": self.oauth.client_id, "scope": " ".join(self.oauth.scopes)}
        try:
            resp = session.post(self.oauth.device_authorization_endpoint, data=data, timeout=HTTP_TIMEOUT,
                                withhold_token=True)
            grant = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise OAuthError(f"the device authorization endpoint did not answer: {_one_line(exc)}") from None
        if resp.status_code != 200 or "device_code" not in grant:
            raise OAuthError(f"the device authorization endpoint refused: {_error_text(grant, resp.status_code)}")
        url = grant.get("verification_uri_complete") or grant.get("verification_uri") or grant.get("verification_url")
        show(f"To sign in, open {url} and enter the code {grant.get('user_code')}")
        interval = float(grant.get("interval", 5))
        deadline = time.monotonic() + float(grant.get("expires_in", 900))
        while True:
            sleep(interval)
            if time.monotonic() > deadline:
                raise OAuthError("the device code expired before the sign-in was approved")
            try:
                token = session.fetch_token(self.oauth.token_endpoint, grant_type=DEVICE_CODE_GRANT,
                                            device_code=grant["device_code"], timeout=HTTP_TIMEOUT)
            except LibError as exc:
                # RFC 8628 section 3.5: keep polling while pending, more slowly when told to.
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += 5
                    continue
                raise OAuthError(f"the sign-in was not approved: {exc.error}"
                                 + (f": {exc.description}" if exc.description else "")) from None
            except (requests.RequestException, ValueError) as exc:
                raise OAuthError(f"the token endpoint did not answer: {_one_line(exc)}") from None
            return _answer(token)

    def browser_login(self, show: Callable[[str], None], paste: IO[str] | None) -> _Answer:
        """Authorization code with PKCE (RFC 7636) and a loopback redirect (RFC 8252 section 7.3)."""
        from authlib.common.security import generate_token
        from authlib.integrations.base_client.errors import OAuthError as LibError
        from authlib.integrations.requests_client import OAuth2Session

        import requests

        with _Loopback() as loopback:
            secret = self.oauth.client_secret.reveal() if self.oauth.client_secret else None
            session = OAuth2Session(self.oauth.client_id, secret, scope=" ".join(self.oauth.scopes),
                                    redirect_uri=loopback.url, code_challenge_method="S256",
                                    token_endpoint_auth_method="client_secret_post" if secret else "none")
            verifier = generate_token(64)
            # Google gives a refresh token only for offline access, and again only when consent is asked.
            extra = {"access_type": "offline", "prompt": "consent"} if self.oauth.provider == "google" else {}
            url, state = session.create_authorization_url(self.oauth.authorization_endpoint,
                                                          code_verifier=verifier, **extra)
            show(f"To sign in, open this address in a browser:\n\n  {url}\n\n"
                 f"After you approve, the browser is sent to {loopback.url}.  If that page does not open"
                 " (the browser runs on another machine), copy the address it tried to open and paste it here.")
            back = loopback.wait(paste)
        try:
            token = session.fetch_token(self.oauth.token_endpoint, authorization_response=back, state=state,
                                        code_verifier=verifier, timeout=HTTP_TIMEOUT)
        except LibError as exc:
            raise OAuthError(f"the sign-in was not approved: {exc.error}"
                             + (f": {exc.description}" if exc.description else "")) from None
        except (requests.RequestException, ValueError) as exc:
            raise OAuthError(f"the token endpoint did not answer: {_one_line(exc)}") from None
        return _answer(token)

    def refresh(self, refresh_token: str) -> _Answer:
        from authlib.integrations.base_client.errors import OAuthError as LibError

        import requests

        try:
            token = self._session().refresh_token(self.oauth.token_endpoint, refresh_token=refresh_token,
                                                  timeout=HTTP_TIMEOUT)
        except LibError as exc:
            raise OAuthError(exc.error + (f": {exc.description}" if exc.description else "")) from None
        except (requests.RequestException, ValueError) as exc:
            raise OAuthError(f"the token endpoint did not answer: {_one_line(exc)}") from None
        return _answer(token)


class _Loopback:
    """A one-shot HTTP listener on 127.0.0.1 that the browser is redirected to with the code."""

    TIMEOUT = 600.0

    def __enter__(self) -> _Loopback:
        from http.server import BaseHTTPRequestHandler, HTTPServer

        owner = self
        self.result: str | None = None
        self.done = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if "code=" in self.path or "error=" in self.path:
                    owner.result = owner.url.rstrip("/") + self.path
                    owner.done.set()
                body = b"inboxd: the sign-in is done; you can close this page.\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="oauth-loopback", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, paste: IO[str] | None) -> str:
        """The address the browser came back to: from the listener, or a line pasted into `paste`."""
        import select

        deadline = time.monotonic() + self.TIMEOUT
        while not self.done.wait(0.2 if paste is not None else 1.0):
            if time.monotonic() > deadline:
                raise OAuthError("no answer from the browser within 10 minutes")
            if paste is not None and select.select([paste], [], [], 0)[0]:
                line = paste.readline()
                if not line:
                    paste = None      # end of input: only the listener is left
                elif "code=" in line or "error=" in line:
                    return line.strip()
        assert self.result is not None
        return self.result


class _Msal:
    """Microsoft identity platform through msal: its device flow and its refresh grant."""

    def __init__(self, oauth: OAuthSettings) -> None:
        import msal

        self.oauth = oauth
        # The device flow is a public client's (the app registration must allow public client flows).
        # No instance discovery: the admin named the cloud, and msal knows Microsoft's clouds anyway.
        self.app = msal.PublicClientApplication(
            oauth.client_id, authority=f"{oauth.authority}/{oauth.tenant}", instance_discovery=False,
            timeout=HTTP_TIMEOUT)

    def device_login(self, show: Callable[[str], None], sleep: Callable[[float], None]) -> _Answer:
        flow = self.app.initiate_device_flow(scopes=list(self.oauth.scopes))
        if "user_code" not in flow:
            raise OAuthError(f"Microsoft refused the device flow: {_error_text(flow, 0)}")
        show(flow["message"])
        return self._answer(self.app.acquire_token_by_device_flow(flow))

    def refresh(self, refresh_token: str) -> _Answer:
        return self._answer(self.app.acquire_token_by_refresh_token(refresh_token, scopes=list(self.oauth.scopes)))

    @staticmethod
    def _answer(result: dict) -> _Answer:
        if "access_token" not in result:
            raise OAuthError(_error_text(result, 0))
        claims = result.get("id_token_claims") or {}
        return _Answer(result["access_token"], float(result.get("expires_in", 3600)),
                       result.get("refresh_token", ""), claims.get("preferred_username", ""))


def _answer(token: dict) -> _Answer:
    if "access_token" not in token:
        raise OAuthError("the token endpoint's answer has no access_token")
    return _Answer(token["access_token"], float(token.get("expires_in", 3600)), token.get("refresh_token", ""),
                   _account(token))


def _account(token: dict) -> str:
    """Whom the token is for, when the provider says: the id_token's email or preferred_username."""
    id_token = token.get("id_token")
    if not id_token:
        return ""
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return ""
    return claims.get("email") or claims.get("preferred_username") or ""


def _error_text(answer: dict, status: int) -> str:
    error = answer.get("error") or (f"HTTP {status}" if status else "no answer")
    description = " ".join(str(answer.get("error_description", "")).split())[:300]
    return f"{error}: {description}" if description else str(error)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
