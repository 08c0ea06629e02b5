"""An aiosmtpd SMTP sink on a loopback port that records mail and can be told to fail.

It can also speak implicit TLS or STARTTLS and require AUTH, so the sender's
security settings are tested against a real server rather than a mock.
"""

from __future__ import annotations

import base64
import email
import email.message
import json
import email.policy
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope as _AiosmtpdEnvelope, LoginPassword, Session

from inboxd.testing.ports import free_port

SECURITY_CHOICES = ("none", "starttls", "tls")


@dataclass
class Envelope:
    """One accepted mail transaction: the SMTP envelope and the raw DATA bytes."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    # The user the client authenticated as, or None when it did not log in.
    auth_user: str | None = None

    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


class _Handler:
    """aiosmtpd hooks: store each envelope, or answer DATA with a planned failure."""

    def __init__(self, sink: "SmtpSink") -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: _AiosmtpdEnvelope) -> str:
        failure = self.sink._take_failure()
        if failure is not None:
            return failure
        content = envelope.original_content or b""
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.sink._record(Envelope(envelope.mail_from or "", list(envelope.rcpt_tos), content, login))
        return "250 OK"


class _OAuthHandler(_Handler):
    """Also accepts AUTH XOAUTH2 and OAUTHBEARER (RFC 7628), each token checked by the sink's `oauth`."""

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "OAUTHBEARER")

    async def _bearer(self, server: SMTP, args: list[str], mechanism: str) -> AuthResult:
        if len(args) < 2:
            return AuthResult(success=False, message="501 5.5.2 an initial response is required")
        try:
            text = base64.b64decode(args[1], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return AuthResult(success=False, message="501 5.5.2 cannot decode the response")
        fields = text.split("\x01")
        user = ""
        if mechanism == "OAUTHBEARER":
            # The GS2 header "n,a=user," then key=value pairs.
            header = fields.pop(0).split(",")
            user = next((p[2:] for p in header if p.startswith("a=")), "").replace("=2C", ",").replace("=3D", "=")
        pairs = dict(f.split("=", 1) for f in fields if "=" in f)
        user = pairs.get("user", user)
        token = pairs.get("auth", "").removeprefix("Bearer ")
        assert self.sink.oauth is not None
        if user and token and self.sink.oauth(token):
            self.sink.oauth_logins.append((mechanism, user))
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        # Both mechanisms send the error as a challenge; the client's answer ends the exchange.
        await server.challenge_auth(json.dumps({"status": "invalid_token"}))
        return AuthResult(success=False)


class _Authenticator:
    """Checks AUTH PLAIN/LOGIN credentials against a fixed user table."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = dict(users)

    def __call__(self, server: SMTP, session: Session, envelope: _AiosmtpdEnvelope,
                 mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(errors="replace"), auth_data.password.decode(errors="replace")
        ok = user in self.users and self.users[user] == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class SmtpSink:
    """A real SMTP server for tests: every accepted mail lands in `envelopes`."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, security: str = "none",
                 cert_file: Path | None = None, key_file: Path | None = None,
                 users: dict[str, str] | None = None, oauth: Callable[[str], bool] | None = None) -> None:
        if security not in SECURITY_CHOICES:
            raise ValueError(f"security must be one of {', '.join(SECURITY_CHOICES)}, not {security!r}")
        if security != "none" and (cert_file is None or key_file is None):
            raise ValueError(f"security {security!r} needs cert_file and key_file")
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.security = security
        self.cert_file = cert_file
        self.key_file = key_file
        self.users = users
        # Whether a bearer token is good (e.g. OAuthServer.is_active): AUTH XOAUTH2/OAUTHBEARER are then offered.
        self.oauth = oauth
        self.oauth_logins: list[tuple[str, str]] = []     # (mechanism, user) of each accepted OAuth2 login
        self.envelopes: list[Envelope] = []
        self._changed = threading.Condition()
        self._fail_next: list[str] = []
        self._fail_always: str | None = None
        self._controller: Controller | None = None

    def __repr__(self) -> str:
        return f"<SmtpSink {self.host}:{self.port} envelopes={len(self.envelopes)}>"

    def __enter__(self) -> "SmtpSink":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on `port` (the same one after a restart)."""
        if self._controller is not None:
            return
        controller = Controller((_OAuthHandler if self.oauth else _Handler)(self), hostname=self.host, port=self.port, ready_timeout=10,
                                **self._server_options())
        controller.start()
        self._controller = controller

    def _server_options(self) -> dict[str, Any]:
        """Controller/SMTP keyword arguments for the chosen security and users."""
        options: dict[str, Any] = {}
        if self.security == "tls":
            options["ssl_context"] = self._tls_context()
        elif self.security == "starttls":
            options["tls_context"] = self._tls_context()
            options["require_starttls"] = True
        if self.users is not None or self.oauth is not None:
            options["authenticator"] = _Authenticator(self.users or {})
            options["auth_required"] = True
            # aiosmtpd only knows about TLS it negotiated itself (STARTTLS); with
            # implicit TLS the socket is already encrypted, and with "none" the
            # tests deliberately allow AUTH over a plain loopback connection.
            options["auth_require_tls"] = self.security == "starttls"
        return options

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def stop(self) -> None:
        """Close the listener; idempotent.  Recorded envelopes are kept."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def fail_next(self, code: int, text: str, count: int = 1) -> None:
        """Answer the next `count` DATA commands with `code text` instead of 250."""
        with self._changed:
            self._fail_next += [f"{code} {text}"] * count

    def fail_always(self, code: int | None, text: str = "") -> None:
        """Answer every DATA with `code text` until called with None."""
        with self._changed:
            self._fail_always = None if code is None else f"{code} {text}".rstrip()

    def wait_for(self, n: int, timeout: float = 10) -> list[Envelope]:
        """Wait until at least `n` envelopes arrived and return them all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.envelopes) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {n} mail(s) at {self.host}:{self.port} within {timeout}s, "
                        f"got {len(self.envelopes)}"
                    )
                self._changed.wait(remaining)
            return list(self.envelopes)

    def _take_failure(self) -> str | None:
        with self._changed:
            if self._fail_next:
                return self._fail_next.pop(0)
            return self._fail_always

    def _record(self, envelope: Envelope) -> None:
        with self._changed:
            self.envelopes.append(envelope)
            self._changed.notify_all()
