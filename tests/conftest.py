"""Shared pytest fixtures: real IMAP, SMTP and PostgreSQL servers on loopback ports."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inboxd.testing.dovecot import Dovecot
from inboxd.testing.postgres import PostgresCluster, find_binaries
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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster for the whole run; tests get their own databases (see pg_url).

    Without PostgreSQL's server programs or psycopg the tests that need it
    are skipped, except in CI (CI=true): scripts/bootstrap installs both
    there, so their absence is a broken set-up, not a reason to test less.
    """
    missing = None
    if find_binaries() is None:
        missing = ("PostgreSQL's initdb and pg_ctl are not installed (Debian's postgresql; scripts/bootstrap"
                   " installs it)")
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            missing = "psycopg is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}, and CI must run the PostgreSQL tests")
        pytest.skip(missing)
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    """The URL of a fresh, empty database of the test's own on the session cluster."""
    return postgres.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL, once for SQLite and once for PostgreSQL (for tests of code that runs on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
