"""An aiosmtpd SMTP sink on a loopback port that records mail and can be told to fail."""

from __future__ import annotations

import email
import email.message
import email.policy
import threading
import time
from dataclasses import dataclass

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope as _AiosmtpdEnvelope, Session

from inboxd.testing.ports import free_port


@dataclass
class Envelope:
    """One accepted mail transaction: the SMTP envelope and the raw DATA bytes."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

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
        self.sink._record(Envelope(envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return "250 OK"


class SmtpSink:
    """A real SMTP server for tests: every accepted mail lands in `envelopes`."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
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
        controller = Controller(_Handler(self), hostname=self.host, port=self.port, ready_timeout=10)
        controller.start()
        self._controller = controller

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
