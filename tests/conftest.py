"""Shared pytest fixtures: real IMAP and SMTP servers on loopback ports."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inboxd.testing.dovecot import Dovecot
from inboxd.testing.smtp import SmtpSink

# User names are unique for the whole run, so tests sharing the session Dovecot never see each other's mail.
_user_numbers = itertools.count(1)


@contextlib.contextmanager
def _dovecot_root() -> Iterator[Path]:
    """A fresh directory for one Dovecot, removed afterwards.

    Not under pytest's tmp_path: Dovecot's unprivileged processes must
    traverse every parent, and pytest resets its root to 0700 whenever any
    other pytest run starts.
    """
    root = Path(tempfile.mkdtemp(prefix="inboxd-dovecot-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the whole run; tests get their own users on it (see imap_user)."""
    with _dovecot_root() as root, Dovecot(root) as server:
        yield server


@pytest.fixture
def mail_user_factory(dovecot: Dovecot) -> Callable[..., str]:
    """Call it to add a fresh user (password "secret" unless given) to the session Dovecot."""

    def new_user(password: str = "secret") -> str:
        user = f"u{next(_user_numbers)}"
        dovecot.add_user(user, password)
        return user

    return new_user


@pytest.fixture
def imap_user(mail_user_factory: Callable[..., str]) -> str:
    """The name of a fresh user with an empty INBOX (and Sent), password "secret"."""
    return mail_user_factory()


@pytest.fixture
def private_dovecot() -> Iterator[Dovecot]:
    """A Dovecot of the test's own, free to be stopped, restarted or killed."""
    with _dovecot_root() as root:
        server = Dovecot(root)
        server.start()
        try:
            yield server
        finally:
            # Killing is as clean as stopping for a server that is thrown away, and 1 s faster.
            server.kill()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A started SMTP sink that records every mail it accepts."""
    with SmtpSink() as sink:
        yield sink
