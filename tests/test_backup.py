"""Backups: `inboxd backup`, `inboxd restore` and the scheduled `[backup]` duty, on real stores.

A desk is built by `inboxd run --once` from real mail in Dovecot (with an
attachment, so data_dir has files), backed up, and restored into a new,
empty store: every ticket and message comes back the same, through the CLI
and byte for byte in the tables.  The duty is driven with an injected `now`.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.desk import backups
from inboxd.store.backup import BackupError, restore_backup, take_backup
from inboxd.store.copy import checksum
from inboxd.store.engine import SCHEMA_HEAD, create_store_engine, open_store, reading
from inboxd.store.tables import metadata
from inboxd.testing.mail import make_mail
from tests.support import cli, config_store_url, db_count, list_json, show_json, store_engine, write_config

DATA = Path(__file__).parent / "data"
# A Wednesday night: no weekly report (or other duty of the desk) is due with the backups.
NOW = datetime(2027, 1, 6, 3, 0, tzinfo=UTC)
ALL = [arg for status in ("new", "open", "pending", "solved", "closed") for arg in ("--status", status)]


# -- the pure decisions -------------------------------------------------------------------------


def test_a_backup_is_due_when_there_was_none_or_the_last_is_every_old() -> None:
    day = timedelta(days=1)
    assert backups.is_due(None, day, NOW)
    assert not backups.is_due(NOW - timedelta(hours=23), day, NOW)
    assert backups.is_due(NOW - day, day, NOW)


def test_rotation_keeps_the_newest_and_never_touches_other_folders() -> None:
    names = [backups.backup_name(NOW + timedelta(days=i)) for i in (3, 0, 2, 1)] + ["manual", "inboxd-x"]
    assert backups.to_delete(names, 2) == [backups.backup_name(NOW), backups.backup_name(NOW + timedelta(days=1))]
    assert backups.to_delete(names, 10) == []
    assert backups.backup_name(NOW) == "inboxd-20270106T030000Z"
    assert backups.leftovers([".inboxd-20270104T090000Z.partial-42", "inboxd-20270106T030000Z", ".other"]) == \
        [".inboxd-20270104T090000Z.partial-42"]


def test_the_claim_key_names_the_backup_it_follows() -> None:
    assert backups.claim_key(None) == "after:none"
    assert backups.claim_key(NOW) != backups.claim_key(NOW + timedelta(microseconds=1))


BASE = {"mailboxes": [{"name": "support", "address": "support@example.com",
                       "imap": {"host": "127.0.0.1", "username": "x", "password_env": "X"}}],
        "agents": [{"name": "alice", "email": "alice@example.com"}]}


def test_the_backup_section_is_optional_and_checked(tmp_path) -> None:
    from inboxd.config import ConfigError, parse_settings

    path = tmp_path / "inboxd.toml"
    assert parse_settings(BASE, path).backup is None
    conf = parse_settings(BASE | {"backup": {"dir": "backups"}}, path).backup
    assert (conf.dir, conf.every, conf.keep, conf.key_file) == (tmp_path / "backups", timedelta(days=1), 14, None)
    conf = parse_settings(BASE | {"backup": {"dir": "b", "key_file": "keys/backup.key"}}, path).backup
    assert conf.key_file == tmp_path / "keys" / "backup.key"
    for section, problem in (({}, "inboxd.toml: backup.dir: missing"),
                             ({"dir": "b", "every": "10m"}, "inboxd.toml: backup.every: must be at least 1h"),
                             ({"dir": "b", "keep": 0}, "inboxd.toml: backup.keep: "),
                             ({"dir": "b", "often": "1d"}, "inboxd.toml: backup.often: ")):
        with pytest.raises(ConfigError) as caught:
            parse_settings(BASE | {"backup": section}, path)
        assert str(caught.value).startswith(problem) and "\n" not in str(caught.value)


# -- a desk with tickets, messages and files --------------------------------------------------------


def _desk(tmp: Path, dovecot, user: str, smtp_port: int, backup: str = "") -> Path:
    """A store with six tickets; `backup` (a [backup] section) is added to the config once it is built,
    so that the scheduled duty runs only when a test drives it."""
    tmp.mkdir()
    config = write_config(tmp, dovecot, [{"name": "support", "user": user}], smtp_port=smtp_port, acks=True)
    for i in range(4):
        dovecot.append(user, "INBOX", make_mail(frm=f"Customer {i} <c{i}@c{i}.example.org>", subject=f"Question {i}",
                                                body=f"Question number {i}.\n"))
    dovecot.append(user, "INBOX", make_mail(frm="王芳 <wang@c9.example.cn>", subject="发票问题", charset="gbk",
                                            body="您好，发票有问题。\n"))
    dovecot.append(user, "INBOX", make_mail(frm="Ann <ann@c10.example.org>", subject="Screenshot", attachments=[
        ("screen.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, "image/png")]))
    cli(config, "run", "--once")
    tickets = {t["subject"]: t["id"] for t in list_json(config)}
    cli(config, "--as", "alice", "note", tickets["Question 1"], "-m", "Called the customer.")
    cli(config, "--as", "alice", "close", tickets["Question 2"])
    config.write_text(config.read_text() + "\n" + backup)
    return config


def _empty_desk(tmp: Path, dovecot, user: str, smtp_port: int) -> Path:
    tmp.mkdir()
    return write_config(tmp, dovecot, [{"name": "support", "user": user}], smtp_port=smtp_port)


def _sums(config: Path) -> dict[str, str]:
    engine = store_engine(config)
    try:
        with reading(engine) as conn:
            return {name: checksum(conn, metadata.tables[name]) for name in ("ticket", "message", "rawmessage")}
    finally:
        engine.dispose()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink) -> Path:
    return _desk(tmp_path / "desk", dovecot, imap_user, smtp_sink.port)


def test_a_backup_restores_into_an_empty_store_the_same_tickets_byte_for_byte(desk, tmp_path, dovecot,
                                                                              mail_user_factory, smtp_sink):
    written = json.loads(cli(desk, "backup", str(tmp_path / "b1"), "--json").stdout)
    backup = Path(written["path"])
    assert written["tickets"] == 6 and written["messages"] >= 6
    assert written["files"] == len(_files(desk.parent / "var")) >= 1  # the screenshot
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    for path in backup.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    target = _empty_desk(tmp_path / "other", dovecot, mail_user_factory(), smtp_sink.port)
    restored = json.loads(cli(target, "restore", str(backup), "--json").stdout)
    assert (restored["tickets"], restored["messages"], restored["schema"]) == \
        (written["tickets"], written["messages"], SCHEMA_HEAD)
    before = list_json(desk, *ALL, "--sort", "id")
    assert list_json(target, *ALL, "--sort", "id") == before
    for ticket in before:
        assert show_json(target, ticket["id"]) == show_json(desk, ticket["id"])
    assert _sums(target) == _sums(desk)
    assert _files(target.parent / "var") == _files(desk.parent / "var")

    # The restored store is not empty any more: a second restore is refused, in one line naming the store.
    again = cli(target, "restore", str(backup), check=False)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.count("\n") == 1 and "is not empty" in again.stderr
    assert "table ticket has 6 row(s)" in again.stderr or "row(s)" in again.stderr
    # A folder that is not a backup, and a destination that exists, are one-line mistakes too.
    assert "not an inboxd backup" in cli(target, "restore", str(tmp_path), check=False).stderr
    assert "already exists" in cli(desk, "backup", str(backup), check=False).stderr


def test_an_encrypted_backup_holds_no_plain_text_and_restores_with_the_identity(desk, tmp_path, dovecot,
                                                                                 mail_user_factory, smtp_sink):
    from pyrage import x25519

    identity = x25519.Identity.generate()
    secret, public = tmp_path / "backup.key", tmp_path / "backup.pub"
    secret.write_text(f"# created: by the test\n# public key: {identity.to_public()}\n{identity}\n")
    public.write_text(f"{identity.to_public()}\n")
    # Taking one needs only the recipient.
    written = json.loads(cli(desk, "backup", str(tmp_path / "sealed"), "--key-file", str(public), "--json").stdout)
    backup = Path(written["path"])
    assert written["encrypted"] is True
    names = sorted(str(p.relative_to(backup)) for p in backup.rglob("*") if p.is_file())
    # The database (inboxd.db or inboxd.dump, by the kind of store) is there, encrypted.
    assert "backup.json" in names and any(n.startswith("inboxd.") and n.endswith(".age") for n in names)
    for path in backup.rglob("*"):
        if path.is_file() and path.name != "backup.json":
            assert path.name.endswith(".age") and stat.S_IMODE(path.stat().st_mode) == 0o600
            data = path.read_bytes()
            # Markers long enough that random ciphertext never holds them by chance (a bare b"PNG" did, 1 in ~20).
            assert data.startswith(b"age-encryption.org/v1")
            assert b"Question" not in data and b"\x89PNG\r\n\x1a\n" not in data

    target = _empty_desk(tmp_path / "other", dovecot, mail_user_factory(), smtp_sink.port)
    for args, problem in (((), "is encrypted (age); give the key with --key-file"),
                          (("--key-file", str(public)), "holds only a recipient")):
        proc = cli(target, "restore", str(backup), *args, check=False)
        assert proc.returncode == 1 and problem in proc.stderr and proc.stderr.count("\n") == 1
    wrong = tmp_path / "wrong.key"
    wrong.write_text(f"{x25519.Identity.generate()}\n")
    assert "cannot decrypt" in cli(target, "restore", str(backup), "--key-file", str(wrong), check=False).stderr
    # Nothing was restored by those attempts, so the store is still empty.
    restored = json.loads(cli(target, "restore", str(backup), "--key-file", str(secret), "--json").stdout)
    assert restored["encrypted"] is True and restored["tickets"] == written["tickets"]
    assert list_json(target, *ALL, "--sort", "id") == list_json(desk, *ALL, "--sort", "id")
    assert _sums(target) == _sums(desk)
    assert _files(target.parent / "var") == _files(desk.parent / "var")
    # The decrypted working copy is gone.
    assert not list(target.parent.glob(".inboxd-restore-*"))


WRITER = """
import sys
from datetime import UTC, datetime
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1], connect_args={"timeout": 30} if sys.argv[1].startswith("sqlite") else {})
i = 0
while True:
    # Two rows per transaction: a consistent copy never holds an odd number.
    with engine.begin() as conn:
        for half in ("a", "b"):
            conn.execute(text("INSERT INTO duty (duty, key, at) VALUES ('writer', :key, :at)"),
                         {"key": f"{i}{half}", "at": datetime.now(UTC).replace(tzinfo=None)})
    i += 1
"""


def test_a_backup_taken_while_another_process_commits_is_consistent(desk, tmp_path, dovecot, mail_user_factory,
                                                                    smtp_sink):
    url = config_store_url(desk)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url])
    try:
        # Wait (by the store's own progress, not the clock) until the writer is committing.
        while db_count(desk, "SELECT count(*) FROM duty WHERE duty = 'writer'") < 200:
            assert writer.poll() is None, "the writer died"
        backup = json.loads(cli(desk, "backup", str(tmp_path / "live"), "--json").stdout)["path"]
        assert writer.poll() is None, "the writer died"
    finally:
        writer.kill()
        writer.wait()
    target = _empty_desk(tmp_path / "other", dovecot, mail_user_factory(), smtp_sink.port)
    cli(target, "restore", backup)
    copied = db_count(target, "SELECT count(*) FROM duty WHERE duty = 'writer'")
    assert copied >= 200 and copied % 2 == 0
    assert copied < db_count(desk, "SELECT count(*) FROM duty WHERE duty = 'writer'")
    assert list_json(target, *ALL, "--sort", "id") == list_json(desk, *ALL, "--sort", "id")


def test_the_scheduled_duty_backs_up_when_due_and_keeps_keep(tmp_path, dovecot, imap_user, smtp_sink):
    folder = tmp_path / "backups"
    config = _desk(tmp_path / "desk", dovecot, imap_user, smtp_sink.port,
                   backup=f'[backup]\ndir = "{folder}"\nevery = "1d"\nkeep = 2\n')
    settings = load_settings(config)

    def taken() -> list[str]:
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    run_once(settings, now=NOW)
    assert len(taken()) == 1
    first = taken()[0]
    assert first.startswith("inboxd-20270106T0300")
    run_once(settings, now=NOW + timedelta(hours=23))
    assert taken() == [first]
    run_once(settings, now=NOW + timedelta(days=1, minutes=1))
    assert len(taken()) == 2
    # What a daemon that died while writing a backup leaves behind is cleared by the next rotation.
    (folder / ".inboxd-20270105T090000Z.partial-99999").mkdir()
    run_once(settings, now=NOW + timedelta(days=2, minutes=2))
    run_once(settings, now=NOW + timedelta(days=3, minutes=3))
    # Four taken, the two newest kept.
    assert len(taken()) == 2 and first not in taken() and taken()[-1].startswith("inboxd-20270109T0303")
    assert db_count(config, "SELECT count(*) FROM duty WHERE duty = 'backup-done'") == 4
    # A manual backup in the folder is never rotated away.
    cli(config, "backup", str(folder / "before-upgrade"))
    run_once(settings, now=NOW + timedelta(days=4, minutes=4))
    assert "before-upgrade" in taken() and len(taken()) == 3


def test_a_failed_scheduled_backup_is_retried_on_the_next_pass(tmp_path, dovecot, imap_user, smtp_sink):
    folder = tmp_path / "backups"
    folder.write_text("a file where the folder should be\n")
    config = _desk(tmp_path / "desk", dovecot, imap_user, smtp_sink.port,
                   backup=f'[backup]\ndir = "{folder}"\n')
    settings = load_settings(config)
    run_once(settings, now=NOW)  # Logged, not raised: the daemon goes on.
    assert db_count(config, "SELECT count(*) FROM duty WHERE duty LIKE 'backup%'") == 0
    folder.unlink()
    run_once(settings, now=NOW + timedelta(minutes=1))
    assert len(list(folder.iterdir())) == 1


def test_scheduled_backups_are_encrypted_with_key_file(tmp_path, dovecot, imap_user, smtp_sink):
    from pyrage import x25519

    folder, key = tmp_path / "backups", tmp_path / "backup.pub"
    key.write_text(f"{x25519.Identity.generate().to_public()}\n")
    config = _desk(tmp_path / "desk", dovecot, imap_user, smtp_sink.port,
                   backup=f'[backup]\ndir = "{folder}"\nkey_file = "{key}"\n')
    run_once(load_settings(config), now=NOW)
    [taken] = folder.iterdir()
    assert json.loads((taken / "backup.json").read_text())["encryption"] == "age"
    assert {p.suffix for p in taken.rglob("*") if p.is_file() and p.name != "backup.json"} == {".age"}


def test_a_failing_duty_does_not_stop_the_backup(tmp_path, dovecot, imap_user, smtp_sink):
    from inboxd.desk.duties import Duties

    class Broken(Duties):
        """A desk whose one other duty fails at every pass (a bug in it, a template it cannot render)."""

        def duties(self):
            return [("broken", lambda conn, now: 1 / 0, None)]

    folder = tmp_path / "backups"
    config = _desk(tmp_path / "desk", dovecot, imap_user, smtp_sink.port, backup=f'[backup]\ndir = "{folder}"\n')
    engine = open_store(config_store_url(config))
    try:
        with pytest.raises(ZeroDivisionError):
            Broken(engine, load_settings(config)).run_due(NOW)
    finally:
        engine.dispose()
    assert [p.name for p in folder.iterdir()] == [backups.backup_name(NOW)]


def test_two_daemons_claim_one_backup(tmp_path, dovecot, imap_user, smtp_sink):
    from inboxd.store import backup as store
    from inboxd.store.engine import writing

    config = _desk(tmp_path / "desk", dovecot, imap_user, smtp_sink.port)
    engine = open_store(config_store_url(config))
    try:
        key = backups.claim_key(None)
        with writing(engine) as conn:
            assert store.claim_backup(conn, key, NOW, NOW - backups.STALE_CLAIM) == NOW
        with writing(engine) as conn:
            assert store.claim_backup(conn, key, NOW, NOW - backups.STALE_CLAIM) is None
        # A claim left by a daemon that died is taken over once it is stale.
        later = NOW + backups.STALE_CLAIM + timedelta(minutes=1)
        with writing(engine) as conn:
            assert store.claim_backup(conn, key, later, later - backups.STALE_CLAIM) == later
    finally:
        engine.dispose()


# -- an old schema ------------------------------------------------------------------------------------


def test_a_backup_of_an_old_schema_restores_and_migrates(tmp_path):
    old = json.loads((DATA / "old-store-e9b6433.json").read_text(encoding="utf-8"))
    store = tmp_path / "old.db"
    shutil.copyfile(DATA / "old-store-e9b6433.db", store)
    store.chmod(0o600)
    report = take_backup(f"sqlite:///{store}", tmp_path / "var", None, tmp_path / "b", NOW)
    assert report.schema == old["revision"] != SCHEMA_HEAD
    assert report.tickets == old["counts"]["ticket"]
    url = f"sqlite:///{tmp_path / 'new.db'}"
    restored = restore_backup(tmp_path / "b", url, tmp_path / "newvar", None)
    assert restored.schema == SCHEMA_HEAD
    assert (restored.tickets, restored.messages) == (old["counts"]["ticket"], old["counts"]["message"])
    with pytest.raises(BackupError, match="is not empty"):
        restore_backup(tmp_path / "b", url, tmp_path / "newvar", None)


def test_an_old_postgresql_schema_restores_and_migrates(pg_url, postgres, tmp_path):
    from alembic import command
    from alembic.config import Config

    from inboxd.store.engine import MIGRATIONS, current_revision

    engine = create_store_engine(pg_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0012")
    engine.dispose()
    report = take_backup(pg_url, tmp_path / "var", None, tmp_path / "b", NOW)
    assert report.schema == "0012" and report.store == "postgresql"
    assert stat.S_IMODE((tmp_path / "b" / "inboxd.dump").stat().st_mode) == 0o600
    target = postgres.create_database()
    # The empty target was started once already: its (empty) tables make way for the backup's.
    open_store(target).dispose()
    restored = restore_backup(tmp_path / "b", target, tmp_path / "newvar", None)
    assert restored.schema == SCHEMA_HEAD
    engine = create_store_engine(target)
    try:
        assert current_revision(engine) == SCHEMA_HEAD
    finally:
        engine.dispose()
    with pytest.raises(BackupError, match="a postgresql store"):
        restore_backup(tmp_path / "b", f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "v", None)


def test_pg_dump_missing_is_one_line(monkeypatch, tmp_path):
    from inboxd.store import backup as store

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackupError, match="^pg_dump not found on PATH or in /usr/lib/postgresql/"):
        store.find_pg_tool("pg_dump", debian=tmp_path / "nowhere")
    # Debian's versioned folders, newest first, when PATH has none.
    for version in ("13", "15"):
        (tmp_path / "pg" / version / "bin").mkdir(parents=True)
        (tmp_path / "pg" / version / "bin" / "pg_dump").write_text("")
    assert store.find_pg_tool("pg_dump", debian=tmp_path / "pg") == str(tmp_path / "pg" / "15" / "bin" / "pg_dump")




def test_backing_up_a_missing_store_is_one_line_and_creates_nothing(tmp_path):
    config = tmp_path / "inboxd.toml"
    config.write_text('[store]\nurl = "sqlite:///missing.db"\n[[mailboxes]]\nname = "support"\n'
                      'address = "support@example.com"\n[mailboxes.imap]\nhost = "127.0.0.1"\nusername = "x"\n'
                      'password_env = "X"\n')
    proc = cli(config, "backup", str(tmp_path / "b"), check=False)
    assert proc.returncode == 1 and proc.stderr == f"inboxd: no store at {tmp_path / 'missing.db'}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inboxd.toml"]
