"""PostgreSQL as a store: the private test cluster, the schema, transactions, and a daemon's first sync into it.

Every test here runs against a real PostgreSQL (a private cluster for the
run, a fresh database per test; see the `postgres` and `pg_url` fixtures).
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

import inboxd.store.models  # noqa: F401
from inboxd.store import engine as db
from inboxd.testing.dovecot import Dovecot
from inboxd.testing.mail import make_mail
from tests.support import cli, list_json, write_config


def test_migrations_build_the_models_schema_on_postgresql(pg_url):
    engine = db.open_store(pg_url)
    try:
        assert db.current_revision(engine) == db.SCHEMA_HEAD
        insp = sa.inspect(engine)
        for table in SQLModel.metadata.sorted_tables:
            assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}, table.name
        # Timestamps are timestamptz, flags are booleans, IMAP numbers fit 32 unsigned bits.
        columns = {c["name"]: c["type"] for c in insp.get_columns("ticket")}
        assert isinstance(columns["created_at"], sa.DateTime) and columns["created_at"].timezone
        assert isinstance(columns["history"], sa.Boolean)
        uid = {c["name"]: c["type"] for c in insp.get_columns("sighting")}["uid"]
        assert isinstance(uid, sa.BigInteger)
        # (tests/test_db.py compares the whole schema with the models, on both databases.)
        checkpoint = SQLModel.metadata.tables["checkpoint"]
        from datetime import UTC, datetime

        with db.writing(engine) as conn:
            conn.execute(checkpoint.insert().values(mailbox="support", folder="INBOX", uidvalidity=2**32 - 1,
                                                    last_uid=2**32 - 2, synced_at=datetime.now(UTC)))
        with db.reading(engine) as conn:
            assert conn.execute(sa.select(checkpoint.c.uidvalidity, checkpoint.c.last_uid)).one() == (
                2**32 - 1, 2**32 - 2)
        # Opening again finds the schema current.
        db.open_store(pg_url).dispose()
    finally:
        engine.dispose()


def test_daemons_starting_together_migrate_once(pg_url):
    """Two daemons opening one empty database at once: one migrates, the other waits and finds it done."""
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            engine = db.create_store_engine(pg_url)
            start.wait()
            db.migrate(engine)
            engine.dispose()
        except BaseException as exc:  # Reported by the main thread.
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    engine = db.create_store_engine(pg_url)
    assert db.current_revision(engine) == db.SCHEMA_HEAD
    engine.dispose()


def test_reading_is_one_read_only_snapshot_and_writing_commits_or_rolls_back(pg_url):
    engine = db.open_store(pg_url)
    event = SQLModel.metadata.tables["event"]
    from datetime import UTC, datetime

    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    try:
        with db.writing(engine) as conn:
            assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"
            conn.execute(event.insert().values(at=now, actor="alice", action="note"))
        with pytest.raises(RuntimeError):
            with db.writing(engine) as conn:
                conn.execute(event.insert().values(at=now, actor="bob", action="note"))
                raise RuntimeError("rolled back")
        with db.reading(engine) as conn:
            assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "repeatable read"
            first = conn.execute(sa.select(sa.func.count()).select_from(event)).scalar()
            # A write committed meanwhile is not seen: one snapshot for the whole read.
            with db.writing(engine) as other:
                other.execute(event.insert().values(at=now, actor="carol", action="note"))
            assert conn.execute(sa.select(sa.func.count()).select_from(event)).scalar() == first == 1
            with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
                conn.execute(event.insert().values(at=now, actor="dave", action="note"))
        # The pool hands out connections without the read's settings.
        with db.writing(engine) as conn:
            assert conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "off"
            assert conn.execute(sa.select(sa.func.count()).select_from(event)).scalar() == 2
    finally:
        engine.dispose()


def test_run_files_mail_into_postgresql_and_check_config_connects(tmp_path, dovecot: Dovecot, imap_user, pg_url):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], url=pg_url)
    check = cli(config, "check-config", "--connect")
    [store] = [line for line in check.stdout.splitlines() if " store (" in line]
    assert store.startswith("ok     store (postgresql+psycopg://inboxd@127.0.0.1:")
    assert store.endswith(f": postgresql 15.{store.split('postgresql 15.')[1].split(',')[0]},"
                          f" no schema yet (the first start creates it at {db.SCHEMA_HEAD})")

    dovecot.append(imap_user, "INBOX", make_mail(subject="Login broken", frm="Ana <ana@example.org>"))
    dovecot.append(imap_user, "INBOX", make_mail(subject="回复: 发票", frm="李雷 <li@example.cn>"))
    proc = cli(config, "run", "--once")
    assert "Traceback" not in proc.stderr
    tickets = list_json(config)
    assert sorted(t["subject"] for t in tickets) == ["Login broken", "发票"]  # the reply prefix is not part of the subject
    # A second sync files nothing twice.
    cli(config, "run", "--once")
    assert len(list_json(config)) == 2
    check = cli(config, "check-config", "--connect")
    [store] = [line for line in check.stdout.splitlines() if " store (" in line]
    assert store.endswith(f", schema {db.SCHEMA_HEAD} (current)")


def test_check_config_connects_to_a_sqlite_store_and_reports_its_revision(tmp_path, dovecot: Dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    check = cli(config, "check-config", "--connect")
    assert f"ok     store (sqlite:///{tmp_path / 'inboxd.db'}): sqlite, no store yet at" in check.stdout
    assert not (tmp_path / "inboxd.db").exists()
    cli(config, "run", "--once")
    check = cli(config, "check-config", "--connect")
    [store] = [line for line in check.stdout.splitlines() if " store (" in line]
    assert store.startswith(f"ok     store (sqlite:///{tmp_path / 'inboxd.db'}): sqlite 3.")
    assert store.endswith(f", schema {db.SCHEMA_HEAD} (current)")


def test_unreachable_postgresql_is_reported_by_check_config(tmp_path, dovecot: Dovecot, imap_user):
    from inboxd.testing.ports import free_port

    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    url = f"postgresql+psycopg://inboxd@127.0.0.1:{free_port()}/nowhere"
    config.write_text(config.read_text().replace('url = "sqlite:///inboxd.db"', f'url = "{url}"'))
    check = cli(config, "check-config", "--connect", check=False)
    assert check.returncode == 1
    [store] = [line for line in check.stdout.splitlines() if " store (" in line]
    assert store.startswith(f"FAILED store ({url}): OperationalError: ")


def test_dry_run_on_postgresql_is_one_line_saying_how_to_rehearse(tmp_path, dovecot: Dovecot, imap_user, pg_url):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], url=pg_url)
    proc = cli(config, "run", "--dry-run", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "inboxd: inboxd.toml: store.url: --dry-run needs a SQLite store; copy this one with"
        " `inboxd migrate-store --to sqlite:///rehearsal.db` and point a copy of the config at it")
