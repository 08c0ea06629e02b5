"""The running daemon against a real Dovecot: IDLE, crashes and server restarts."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import text

from inboxd.testing.mail import make_mail
from tests.support import cli, db_count, start_daemon, stop_daemon, store_engine, wait_until, write_config


def messages(config) -> int:
    return db_count(config, "select count(*) from message")


def test_idle_new_mail_becomes_a_ticket_without_a_poll(tmp_path, dovecot, imap_user):
    # With polling every 300 s, only IDLE can bring these mails in before the
    # (generous) deadlines below.  How fast it is, bench/idle.py measures.
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], poll_interval=300)
    dovecot.append(imap_user, "INBOX", make_mail(subject="Warm-up"))
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: messages(config) == 1, what="the first sync")
        for i in range(3):
            # Each mail is appended while the daemon waits in IDLE, as the server sees it.
            wait_until(lambda: dovecot.idling(imap_user) == 1, timeout=60, what="the daemon to wait in IDLE")
            dovecot.append(imap_user, "INBOX", make_mail(subject=f"Urgent {i}"))
            wait_until(lambda: messages(config) == 2 + i, timeout=60, interval=0.02, what="the IDLE pickup")
    finally:
        assert stop_daemon(daemon) == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    # SIGTERM is a clean stop.
    assert "inboxd stopped" in (tmp_path / "daemon.log").read_text()


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_3000_message_sync_loses_and_doubles_nothing(tmp_path, dovecot, imap_user):
    n = 3000
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], batch_size=50)
    dovecot.append_many(imap_user, "INBOX", (
        make_mail(subject=f"Bulk question {i}", body=f"Message number {i}\n" * 20) for i in range(n)))
    # Kill twice, at different points of the sync, then let a clean run finish.
    for threshold in (n // 5, n // 2):
        daemon = start_daemon(config, tmp_path / "daemon.log")
        try:
            wait_until(lambda: messages(config) >= threshold, timeout=120, interval=0.01, what=f"{threshold} messages")
        finally:
            stop_daemon(daemon, signal.SIGKILL)
        killed_at = messages(config)
        assert killed_at < n, "the kill came too late to prove anything"
    cli(config, "run", "--once")
    engine = store_engine(config)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":  # The file survived the kills intact.
                assert conn.execute(text("pragma integrity_check")).scalar() == "ok"

            def one(sql: str) -> tuple:
                return tuple(conn.execute(text(sql)).one())

            assert one("select count(*) from message") == (n,)
            assert one("select count(distinct message_id) from message") == (n,)
            assert one("select count(*) from ticket") == (n,)
            assert one("select count(*), count(distinct uid) from sighting") == (n, n)
            assert one("select last_uid from checkpoint") == (n,)
            assert one("select count(*) from quarantine") == (0,)
            subjects = {s for (s,) in conn.execute(text("select subject from ticket"))}
    finally:
        engine.dispose()
    assert subjects == {f"Bulk question {i}" for i in range(n)}


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_server_restart_under_a_running_daemon(tmp_path, private_dovecot, how):
    dovecot = private_dovecot
    dovecot.add_user("support")
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": "support"}], poll_interval=300)
    dovecot.append("support", "INBOX", make_mail(subject="Before the restart"))
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: messages(config) == 1, what="the first sync")
        if how == "restart":
            dovecot.stop()
        else:
            dovecot.kill()
        # The daemon notices the server is gone and starts backing off.
        wait_until(lambda: "reconnecting" in (tmp_path / "daemon.log").read_text(), timeout=60,
                   what="the daemon to notice the server is gone")
        dovecot.start()
        for i in range(3):
            dovecot.append("support", "INBOX", make_mail(subject=f"While it was down {i}"))
        wait_until(lambda: messages(config) == 4, timeout=45, what="ingest after the restart")
    finally:
        assert stop_daemon(daemon) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "reconnecting" in log
    assert db_count(config, "select count(*) from ticket") == 4
