"""A tiny OAuth2 authorization server on loopback, for the OAuth2 sign-in tests and Dovecot's oauth2 passdb.

It speaks just enough of the real protocols for inboxd's client library to
run unchanged against it:

* ``POST /device``: the device authorization request (RFC 8628 section 3.1);
* ``GET /authorize``: the authorization request of the code flow with PKCE
  (RFC 6749 section 4.1, RFC 7636), approved at once: it redirects to the
  client's redirect_uri with a code, as a browser would be sent;
* ``POST /token``: the device-code grant (pending until `approve_after`
  polls, then a token), the authorization-code grant (the PKCE verifier
  checked) and the refresh grant (RFC 6749 section 6), which
  fails with ``invalid_grant`` once `revoke()` was called;
* ``POST /introspect``: token introspection (RFC 7662) as Dovecot's
  ``passdb oauth2`` asks it with ``introspection_mode = post``: active, and
  whose ("email"), or inactive.

It counts what it was asked, so tests see each refresh, and `is_active`
lets the test SMTP server check a token against the same table.  stdlib
only: a ThreadingHTTPServer on a thread of its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from inboxd.testing.ports import free_port


class OAuthServer:
    """Device flow, refresh and introspection endpoints for one user, with counters."""

    def __init__(self, user: str, *, client_id: str = "inboxd-test", expires_in: int = 3600,
                 approve_after: int = 1, host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> None:
        self.user = user
        self.client_id = client_id
        self.expires_in = expires_in
        # Polls answered "authorization_pending" before the device code is approved.
        self.approve_after = approve_after
        self.host = host
        self.port = free_port(host)
        # (certificate, key): serve HTTPS, as msal insists on (Microsoft's authority is https only).
        self.tls = tls
        self.lock = threading.Lock()
        self.active: set[str] = set()            # access tokens that introspect as active
        self.refresh_tokens: set[str] = set()    # refresh tokens that are honoured
        self.devices: dict[str, int] = {}        # device code -> polls so far
        self.codes: dict[str, tuple[str, str]] = {}   # authorization code -> (code_challenge, redirect_uri)
        self.code_grants = 0
        # Whether a refresh answers with a new refresh token and retires the old one (as Microsoft does).
        self.rotate = False
        self.refreshes = 0
        self.introspections = 0
        self.device_grants = 0
        self.last_scope = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def __enter__(self) -> "OAuthServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        server = ThreadingHTTPServer((self.host, self.port), _handler(self))
        server.daemon_threads = True
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="oauth-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- what tests change ---------------------------------------------------------

    def revoke(self) -> None:
        """Refuse every refresh token from now on (the user revoked the app); access tokens live on."""
        with self.lock:
            self.refresh_tokens.clear()

    def deactivate(self) -> None:
        """Make every access token introspect as inactive."""
        with self.lock:
            self.active.clear()

    def is_active(self, token: str) -> bool:
        with self.lock:
            return token in self.active

    # -- the endpoints -------------------------------------------------------------

    def _device(self, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("client_id") != self.client_id:
            return 400, {"error": "invalid_client"}
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.devices[code] = 0
            self.last_scope = form.get("scope", "")
        return 200, {"device_code": code, "user_code": "WDJB-MJHT", "verification_uri": f"{self.url}/activate",
                     "expires_in": 600, "interval": 0,
                     # Microsoft's answer also carries the sentence to show, which msal passes on.
                     "message": f"To sign in, open {self.url}/activate and enter the code WDJB-MJHT."}

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict]:
        """The browser's visit: a redirect back to the client with a code (status 302, Location in the dict)."""
        if query.get("client_id") != self.client_id or query.get("code_challenge_method") != "S256":
            return 400, {"error": "invalid_request"}
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = (query.get("code_challenge", ""), query.get("redirect_uri", ""))
            self.last_scope = query.get("scope", "")
        return 302, {"Location": f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"}

    def _token(self, form: dict[str, str]) -> tuple[int, dict]:
        grant = form.get("grant_type")
        with self.lock:
            if grant == "authorization_code":
                challenge, redirect = self.codes.pop(form.get("code", ""), ("", ""))
                verifier = form.get("code_verifier", "")
                expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if not challenge or expected != challenge or form.get("redirect_uri") != redirect:
                    return 400, {"error": "invalid_grant", "error_description": "code, verifier or redirect_uri"}
                self.code_grants += 1
                return 200, self._issue(new_refresh=True)
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                code = form.get("device_code", "")
                if code not in self.devices:
                    return 400, {"error": "expired_token"}
                self.devices[code] += 1
                if self.devices[code] <= self.approve_after:
                    return 400, {"error": "authorization_pending"}
                del self.devices[code]
                self.device_grants += 1
                return 200, self._issue(new_refresh=True)
            if grant == "refresh_token":
                self.refreshes += 1
                if form.get("refresh_token") not in self.refresh_tokens:
                    return 400, {"error": "invalid_grant", "error_description": "the refresh token was revoked"}
                if self.rotate:
                    self.refresh_tokens.discard(form["refresh_token"])
                return 200, self._issue(new_refresh=self.rotate)
        return 400, {"error": "unsupported_grant_type"}

    def _issue(self, new_refresh: bool) -> dict:
        access = "at-" + secrets.token_urlsafe(24)
        self.active.add(access)
        answer = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in,
                  "id_token": _unsigned_jwt({"iss": self.url, "sub": "user-1", "aud": self.client_id,
                                             "iat": int(time.time()), "exp": int(time.time()) + 3600,
                                             "email": self.user, "preferred_username": self.user})}
        if new_refresh:
            refresh = "rt-" + secrets.token_urlsafe(24)
            self.refresh_tokens.add(refresh)
            answer["refresh_token"] = refresh
        return answer

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict]:
        with self.lock:
            self.introspections += 1
            if form.get("token") in self.active:
                return 200, {"active": "true", "email": self.user}
        return 200, {"active": "false"}


def _unsigned_jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none'})}.{part(claims)}."


def _handler(owner: OAuthServer) -> type[BaseHTTPRequestHandler]:
    routes = {"/device": owner._device, "/token": owner._token, "/introspect": owner._introspect}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            form = {k: v[0] for k, v in parse_qs(query).items()}
            if path.endswith("/v2.0/.well-known/openid-configuration"):
                # OpenID discovery, where msal finds a Microsoft-style authority's endpoints.
                self._json(200, {"issuer": owner.url, "authorization_endpoint": f"{owner.url}/authorize",
                                 "token_endpoint": f"{owner.url}/token",
                                 "device_authorization_endpoint": f"{owner.url}/device"})
                return
            status, answer = owner._authorize(form) if path == "/authorize" else (404, {"error": "not_found"})
            self.send_response(status)
            if status == 302:
                self.send_header("Location", answer["Location"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
            route = routes.get(self.path.split("?", 1)[0])
            status, answer = route(form) if route else (404, {"error": "not_found"})
            self._json(status, answer)

        def _json(self, status: int, answer: dict) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass

    return Handler
