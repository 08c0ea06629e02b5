"""Step 6: talk SMTP; the only aiosmtplib user.

For now this checks that a configured server accepts our login; draining the
outbox arrives with outgoing mail.
"""

from __future__ import annotations

import asyncio
import ssl

import aiosmtplib

from inboxd.config import SmtpSettings


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """Certificate and host name checks on; `ca_file` adds a trusted CA."""
    ctx = ssl.create_default_context()
    if settings.ca_file:
        ctx.load_verify_locations(cafile=str(settings.ca_file))
    return ctx


def _client(settings: SmtpSettings) -> aiosmtplib.SMTP:
    ctx = tls_context(settings)
    return aiosmtplib.SMTP(
        hostname=settings.host, port=settings.port, timeout=settings.timeout,
        use_tls=settings.security == "tls",
        start_tls=True if settings.security == "starttls" else False,
        tls_context=ctx,
    )


async def _check(settings: SmtpSettings) -> str:
    client = _client(settings)
    await client.connect()
    try:
        if settings.username:
            await client.login(settings.username, settings.password.reveal() if settings.password else "")
        return "login ok" if settings.username else "connected (no authentication configured)"
    finally:
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            client.close()


def check_login(settings: SmtpSettings) -> str:
    """Connect (and log in when configured) once; a short result for check-config."""
    return asyncio.run(_check(settings))
