"""Open the ticket store: engine, per-database tuning, transactions and migrations.

SQLite is the embedded default.  Every connection runs in WAL mode with a
generous busy timeout, so the daemon and several agents' CLIs can use one
file at once.  Write transactions start with BEGIN IMMEDIATE: the write lock
is taken up front, which makes "read, decide, write" sequences (threading a
message, claiming a due job) atomic across processes and turns lock
contention into waiting rather than a "database is locked" error mid-way.

PostgreSQL (through psycopg 3, the `postgres` extra) is for several daemons
on one store.  A write transaction there is an ordinary READ COMMITTED
transaction, set explicitly rather than left to the server's default: there
is no store-wide write lock, so every "read, decide, write" that another
daemon could race is a compare-and-swap UPDATE (its WHERE re-checks the old
value, and PostgreSQL re-evaluates it on the newest row version after
waiting for a concurrent writer's row lock) or an INSERT ... ON CONFLICT.
The claims in the sender, the duties and the folder leases are written that
way.  A read is one REPEATABLE READ READ ONLY transaction: all its queries
see one snapshot, as in SQLite, and it takes no lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from inboxd.store.writegate import WriteGate, register


log = logging.getLogger("inboxd.db")

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration.  Checking it with one query lets every CLI call skip
# importing Alembic when the store is current; a test keeps it equal to
# Alembic's own head.
SCHEMA_HEAD = "0021"
BUSY_TIMEOUT_MS = 60_000
# The key of the PostgreSQL advisory lock that lets one daemon at a time
# migrate: any fixed number will do, this one spells "inboxd".
MIGRATION_LOCK_KEY = int.from_bytes(b"inboxd", "big")


def db_time(dt: datetime | None) -> str | None:
    """A timestamp as SQLAlchemy stores UTCDateTime in SQLite (naive UTC text).

    Only for code that still reads or writes a SQLite store with raw SQL
    (tests that look into the file, migrations of old data).  The store
    layer passes aware `datetime`s to Core statements instead; the columns'
    UTCDateTime type stores them this way on SQLite and as timestamptz on
    PostgreSQL.
    """
    if dt is None:
        return None
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class NoStore(LookupError):
    """A caller that only reads asked for a SQLite store whose file does not exist."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no store at {path}")
        self.path = path


def create_store_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for `url`; for SQLite files, the file is private to its owner.

    With `create` false, a SQLite file that does not exist is `NoStore`
    rather than a new empty store: a command that only reads, pointed at the
    wrong path, must say so instead of leaving an empty database behind.
    """
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not create and not path.exists():
            raise NoStore(path)
        _prepare_private_file(path)
    if sqlite:
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        _tune_sqlite(engine)
        return engine
    # READ COMMITTED with compare-and-swap writes (see the module's docstring).
    # A pooled connection is checked before use, so a daemon outlives a
    # server restart or a failover without failing its next transaction.
    return create_engine(url, isolation_level="READ COMMITTED", pool_pre_ping=True)


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def _prepare_private_file(path: Path) -> None:
    # The store holds customers' mail: create it (and its WAL siblings, which
    # SQLite gives the same mode) readable by the owner only.
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Autocommit at the driver level: we issue BEGIN ourselves below, so
        # pysqlite's implicit, deferred transactions never get in the way.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        # NORMAL is durable across application crashes in WAL mode; only a
        # power loss can drop the last transactions, never corrupt the file.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    # The threads of this process queue for the write lock (inboxd.store.writegate).
    gate = WriteGate(BUSY_TIMEOUT_MS / 1000)
    gate.install(engine.dialect)
    register(engine, gate)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode != "IMMEDIATE":
            conn.exec_driver_sql(f"BEGIN {mode}")
            return
        key = id(conn.connection.dbapi_connection)
        gate.enter(key)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            gate.leave(key)
            raise

    @event.listens_for(engine, "checkin")
    @event.listens_for(engine, "close")
    @event.listens_for(engine, "invalidate")
    def _on_release(dbapi_conn, _record, *_exc) -> None:
        # A connection dropped or returned mid-transaction holds no turn any more.
        gate.leave(id(dbapi_conn))


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed on success, rolled back on any error.

    SQLite: BEGIN IMMEDIATE, the store's write lock for the whole
    transaction.  PostgreSQL: READ COMMITTED; concurrent writers are
    serialised only by the rows they lock, so decisions are compare-and-swap.
    """
    with engine.begin() as conn:
        yield conn


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only snapshot that takes no write lock (and on PostgreSQL refuses to write)."""
    if is_sqlite(engine):
        options: dict = {"sqlite_begin": "DEFERRED"}
    else:
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with engine.connect().execution_options(**options) as conn:
        with conn.begin():
            yield conn


def current_revision(engine: Engine) -> str | None:
    """The store's Alembic revision, or None for an empty database."""
    with reading(engine) as conn:
        return _revision(conn)


def _quick_revision(engine: Engine) -> str | None:
    """The store's revision in one query, or None when it has none (or no version table).

    Every start asks; a current store is then recognised without looking
    at the catalogue.  The query fails on a store without the version
    table, and so does its read transaction only.
    """
    try:
        with reading(engine) as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated or store_unusable(exc):
            raise
        return None


def _create_fresh(conn: Connection) -> bool:
    """Make the head schema in an empty database in one step; False if it is not empty.

    The models' metadata is the head schema (tests/test_db.py checks that
    the migrations make exactly it, on both stores), and inboxd.store.tables
    is generated from it (tests/test_tables_generated.py compares their DDL),
    so `create_all` of those tables and a version row at SCHEMA_HEAD is what
    running every migration makes, in a fraction of the time and without
    importing Alembic or SQLModel.
    """
    from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table

    from inboxd.store.tables import metadata

    if inspect(conn).get_table_names():
        return False
    metadata.create_all(conn)
    # Alembic's own version table, as Alembic creates it.
    version = Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))
    version.create(conn)
    conn.execute(version.insert().values(version_num=SCHEMA_HEAD))
    return True


def _revision(conn: Connection) -> str | None:
    # Asked before the query: on PostgreSQL a failed query would abort the transaction.
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (run at every start-up).

    A current store costs one query; an empty one is created in one
    transaction (`_create_fresh`); only a store at an older revision
    imports Alembic and runs the migrations it lacks.
    """
    if _quick_revision(engine) == SCHEMA_HEAD:
        return
    if _create_empty(engine):
        return
    upgrade(engine)


def upgrade(engine: Engine) -> None:
    """Run the migrations the store lacks, with Alembic (from none at all on an empty database)."""
    current = current_revision(engine)
    if current == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    log.info("migrating store from %s to %s", current or "empty", SCHEMA_HEAD)
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        # SQLite changes a column by copying its table; with foreign keys
        # enforced, dropping the old copy of a referenced table would fail.
        # The pragma only works outside a transaction, hence the raw call.
        if engine.dialect.name == "sqlite":
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    # Daemons starting together take turns (SQLite's BEGIN
                    # IMMEDIATE does the same); the later ones find the schema current.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    if _revision(conn) == SCHEMA_HEAD:
                        return
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                if engine.dialect.name == "sqlite":
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration left {len(broken)} broken foreign key(s)")
        finally:
            if engine.dialect.name == "sqlite":
                raw.execute("PRAGMA foreign_keys=ON")


def _create_empty(engine: Engine) -> bool:
    """Create the schema if the database has no tables at all; whether it did."""
    with writing(engine) as conn:
        if engine.dialect.name == "postgresql":
            # Daemons starting together on an empty store: one creates it, the others then find it current.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        created = _create_fresh(conn)
    if created:
        log.info("created an empty store at schema %s", SCHEMA_HEAD)
    return created


def describe_store(url: str) -> str:
    """For `check-config --connect`: connect to the store and say what it is and its schema revision."""
    try:
        engine = create_store_engine(url, create=False)
    except NoStore as exc:
        return f"sqlite, no store yet at {exc.path} (the first start creates it)"
    try:
        revision = current_revision(engine)
        version = ".".join(map(str, engine.dialect.server_version_info or ()))
    finally:
        engine.dispose()
    if revision is None:
        schema = f"no schema yet (the first start creates it at {SCHEMA_HEAD})"
    elif revision == SCHEMA_HEAD:
        schema = f"schema {revision} (current)"
    elif revision.isdigit() and int(revision) < int(SCHEMA_HEAD):
        schema = f"schema {revision} (the next start migrates it to {SCHEMA_HEAD})"
    else:
        schema = f"schema {revision}, which this inboxd does not know (its newest is {SCHEMA_HEAD})"
    return f"{engine.dialect.name} {version}, {schema}"


def copy_store(source: Path, dest: Path) -> None:
    """A consistent copy of a SQLite store, taken online with SQLite's backup API."""
    import sqlite3

    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    os.chmod(dest, 0o600)


def open_store(url: str, *, create: bool = True) -> Engine:
    """The engine for a migrated, ready store (`NoStore` if `create` is false and there is none)."""
    engine = create_store_engine(url, create=create)
    migrate(engine)
    return engine


# SQLite's primary result codes that say the store cannot be written right
# now: SQLITE_BUSY, SQLITE_LOCKED (another writer), SQLITE_READONLY,
# SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.  They are about the store, not
# the mail: splitting the batch would only quarantine good mail.
_STORE_TROUBLE = frozenset({5, 6, 8, 10, 13, 14})


def store_unusable(exc: BaseException) -> bool:
    """Whether `exc` says the store cannot be written right now (rather than
    that this batch's mail broke it): then the batch is neither retried in
    halves nor quarantined, and the poller tries it again later.

    SQLite: the result codes above.  PostgreSQL: the connection is gone or
    unusable (server down or restarting, an administrator's shutdown, a
    network failure), which SQLAlchemy reports as a connection invalidated,
    and psycopg as an OperationalError.
    """
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    # SQLAlchemy wraps the driver's error; the driver's own is bare.
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _STORE_TROUBLE
    return _postgres_unusable(orig)


def _postgres_unusable(orig: BaseException) -> bool:
    # psycopg is the optional `postgres` extra: only a store that uses it can raise its errors.
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return False
    # OperationalError: connection failure, admin shutdown, crash shutdown,
    # cannot connect now (SQLSTATE classes 08 and 57P); a statement's own
    # failure (a constraint, bad data) is a different class.
    return isinstance(orig, psycopg.OperationalError)
