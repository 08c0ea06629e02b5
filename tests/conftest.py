"""Shared pytest fixtures: real IMAP, SMTP and PostgreSQL servers on loopback ports.

It also chooses the store the integration tests use.  `--store=sqlite`
(the default) gives each test's config a SQLite file; `--store=postgresql`
gives each a fresh database on the session's private PostgreSQL cluster.
Which tests that concerns is decided at collection, by reading what each
test (and the fixtures and module helpers it uses) calls: a test that
writes a config with tests/support.py's `write_config` gets the `store`
marker, so `-m store --store=postgresql` runs exactly the tests whose store
the option changes.  Tests that already choose their store (the `pg_url`,
`store_url` and `postgres` fixtures) run on PostgreSQL in every pass and are
not marked.  A store test that looks into the store with SQLite's own means
(the sqlite3 module, `exec_driver_sql`, `db_time` text, the inboxd.db file)
is skipped under --store=postgresql, with the reason.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import shutil
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inboxd.testing.dovecot import Dovecot
from inboxd.testing.postgres import PostgresCluster, find_binaries
from inboxd.testing.smtp import SmtpSink
from tests import support

STORES = ("sqlite", "postgresql")
# Tests that choose their own store: they already run on PostgreSQL in the SQLite pass.
OWN_STORE_FIXTURES = {"pg_url", "store_url", "postgres"}
# Names whose use marks a store test: the config helper that names the store.
STORE_NAMES = {"write_config", "store_url_for"}
# Names (attributes, globals) that speak SQLite only, and file names of the SQLite store.
SQLITE_ONLY_NAMES = {"sqlite3", "exec_driver_sql", "db_time", "driver_connection", "_cursor"}
SQLITE_ONLY_STRINGS = ("inboxd.db",)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store", choices=STORES, default=os.environ.get("INBOXD_TEST_STORE", "sqlite"),
                     help="the store the integration tests' configs name: a SQLite file (default) or a fresh "
                          "database on a private PostgreSQL cluster ($INBOXD_TEST_STORE sets the default)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "store: the test's config names a store that --store chooses (set by conftest)")
    store = config.getoption("--store")
    support.STORE = store
    # Subprocesses that import tests.support (rare) see the same choice.
    os.environ["INBOXD_TEST_STORE"] = store


def pytest_report_header(config: pytest.Config) -> str:
    return f"store: {config.getoption('--store')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    postgresql = config.getoption("--store") == "postgresql"
    for item in items:
        names, strings = _reach(item)
        if OWN_STORE_FIXTURES & set(getattr(item, "fixturenames", ())) or not STORE_NAMES & names:
            continue
        item.add_marker(pytest.mark.store)
        if postgresql:
            found = sorted(SQLITE_ONLY_NAMES & names) + [s for s in SQLITE_ONLY_STRINGS if any(s in x for x in strings)]
            if found:
                item.add_marker(pytest.mark.skip(
                    reason=f"looks into the store with SQLite's own means ({', '.join(found)}); runs in the SQLite pass"))


def _reach(item: pytest.Item) -> tuple[set[str], set[str]]:
    """The names and string constants of the test's code, its fixtures' code, and the module
    functions and classes they use, followed transitively (within the tests package)."""
    roots: list[object] = []
    function = getattr(item, "function", None)
    if function is None:
        return set(), set()
    roots.append(function)
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        for fixturedef in (info.name2fixturedefs.get(name, ()) if info else ()):
            roots.append(fixturedef.func)
    names: set[str] = set()
    strings: set[str] = set()
    seen: set[int] = set()
    while roots:
        obj = roots.pop()
        obj = inspect.unwrap(obj) if callable(obj) else obj
        if id(obj) in seen or not _in_tests(obj):
            continue
        seen.add(id(obj))
        if isinstance(obj, type):
            roots += [v for v in vars(obj).values() if isinstance(v, (types.FunctionType, property, staticmethod,
                                                                     classmethod))]
            continue
        if isinstance(obj, property):
            roots += [f for f in (obj.fget, obj.fset) if f]
            continue
        if isinstance(obj, (staticmethod, classmethod)):
            roots.append(obj.__func__)
            continue
        code = getattr(obj, "__code__", None)
        if code is None:
            continue
        module_globals = getattr(obj, "__globals__", {})
        for c in _codes(code):
            names.update(c.co_names)
            strings.update(x for x in c.co_consts if isinstance(x, str))
            for name in c.co_names:
                target = module_globals.get(name)
                if isinstance(target, (types.FunctionType, type)):
                    roots.append(target)
    return names, strings


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _in_tests(obj: object) -> bool:
    """Whether `obj` is a test module's own code: not inboxd's, pytest's or the stdlib's, and not
    tests/support.py or this file, whose helpers read whichever store the config names."""
    if isinstance(obj, (property, staticmethod, classmethod)):
        return True
    module = getattr(obj, "__module__", None) or ""
    return module.startswith(("tests.", "test_")) and module not in ("tests.support", "tests.conftest")


# User names are unique for the whole run (each pytest-xdist worker has a Dovecot of its own), so tests sharing
# the session Dovecot never see each other's mail.
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


@contextlib.contextmanager
def _running_dovecot() -> Iterator[Dovecot]:
    """A started Dovecot in a root of its own, killed at the end."""
    with _dovecot_root() as root:
        server = Dovecot(root)
        server.start()
        try:
            yield server
        finally:
            # Killing is as clean as stopping for a server that is thrown away, and 1 s faster.
            server.kill()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the whole run (for each pytest-xdist worker); tests get their own users on it (see imap_user)."""
    with _running_dovecot() as server:
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
    with _running_dovecot() as server:
        yield server


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A started SMTP sink that records every mail it accepts."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster for the whole run (for each pytest-xdist worker); tests get their own
    databases (see pg_url).

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
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        # An immediate shutdown: a fast one writes a checkpoint of every test's database first
        # (about 8 s at the end of a run), for a cluster whose directory is removed right after.
        cluster.kill()


@pytest.fixture(autouse=True)
def _store_of_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under --store=postgresql, a store test's configs name databases on the session cluster."""
    if support.STORE != "postgresql" or request.node.get_closest_marker("store") is None:
        yield
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    support.new_database = cluster.create_database
    try:
        yield
    finally:
        support.new_database = None
        support.forget_databases()


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


@pytest.fixture
def engine(store_url: str) -> Iterator:
    """An empty store migrated to the head, once of each kind (see store_url), disposed of after the test."""
    from inboxd.store.engine import create_store_engine, migrate

    engine = create_store_engine(store_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def oauth_dovecot() -> Iterator[tuple]:
    """A Dovecot of the test's own that also signs users in with OAuth2 (XOAUTH2, OAUTHBEARER), and the
    local authorization server it asks (device flow, refresh, introspection; inboxd.testing.oauthserver).

    The server's user is "support@example.com", already a mail user of the Dovecot.
    """
    from inboxd.testing.dovecot import oauth2_config
    from inboxd.testing.oauthserver import OAuthServer

    with _dovecot_root() as root, OAuthServer("support@example.com") as auth:
        server = Dovecot(root, extra_config=oauth2_config(root, f"{auth.url}/introspect"))
        server.start()
        try:
            server.add_user(auth.user)
            yield server, auth
        finally:
            server.kill()
