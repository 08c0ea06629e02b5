"""Folder leases: one daemon at a time syncs a folder; another takes over once the lease runs out.

The lease functions are tested with explicit instants on SQLite and on
PostgreSQL (`store_url` runs each test on both); the pollers are tested
against a real Dovecot with two sinks of different holders on one store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from inboxd.store import leases
from inboxd.config import load_settings
from inboxd.store.engine import open_store, reading, writing
from inboxd.sync.imap import MailboxPoller, connect
from inboxd.desk.ingest import Batch, Fetched
from inboxd.store.sql import t as tables
from inboxd.sync.sink import StoreSink
from inboxd.testing.mail import make_mail
from tests.support import cli, db_count, write_config

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


def acquire(engine, holder: str, now: datetime, folder: str = "INBOX") -> bool:
    with writing(engine) as conn:
        return leases.acquire(conn, "support", folder, holder, now, TTL)


def renew(engine, holder: str, now: datetime) -> bool:
    with writing(engine) as conn:
        return leases.renew(conn, "support", "INBOX", holder, now, TTL)


def held(engine) -> dict:
    with reading(engine) as conn:
        return {key: (h.holder, h.expires_at) for key, h in leases.holders(conn).items()}


def test_a_free_folder_is_taken_and_a_live_lease_is_not(engine):
    assert acquire(engine, "a", T0)
    assert held(engine) == {("support", "INBOX"): ("a", T0 + TTL)}
    assert not acquire(engine, "b", T0 + timedelta(seconds=10))
    # Up to and including its expiry instant the lease is a's.
    assert not acquire(engine, "b", T0 + TTL)
    assert held(engine) == {("support", "INBOX"): ("a", T0 + TTL)}
    # Another folder is another lease.
    assert acquire(engine, "b", T0, folder="Sent")


def test_the_holder_acquires_again_and_renews_while_others_cannot(engine):
    assert acquire(engine, "a", T0)
    assert acquire(engine, "a", T0 + timedelta(seconds=5))
    assert held(engine)[("support", "INBOX")] == ("a", T0 + timedelta(seconds=5) + TTL)
    assert renew(engine, "a", T0 + timedelta(seconds=20))
    assert not renew(engine, "b", T0 + timedelta(seconds=21))
    assert held(engine)[("support", "INBOX")] == ("a", T0 + timedelta(seconds=20) + TTL)
    # Renewed in time, the lease outlives its first expiry.
    assert not acquire(engine, "b", T0 + TTL + timedelta(seconds=1))


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew_it(engine):
    assert acquire(engine, "a", T0)
    later = T0 + TTL + timedelta(microseconds=1)
    assert acquire(engine, "b", later)
    assert held(engine) == {("support", "INBOX"): ("b", later + TTL)}
    assert not renew(engine, "a", later + timedelta(seconds=1))
    assert not acquire(engine, "a", later + timedelta(seconds=1))
    # An expired lease nobody took is still its holder's to renew.
    assert renew(engine, "b", later + 3 * TTL)


def test_release_frees_the_folder_at_once_and_only_for_its_holder(engine):
    assert acquire(engine, "a", T0)
    assert acquire(engine, "a", T0, folder="Sent")
    with writing(engine) as conn:
        assert not leases.release(conn, "support", "INBOX", "b")
        assert leases.release(conn, "support", "INBOX", "a")
    assert acquire(engine, "b", T0 + timedelta(seconds=1))
    with writing(engine) as conn:
        assert leases.release_all(conn, "a") == 1
    assert held(engine) == {("support", "INBOX"): ("b", T0 + timedelta(seconds=1) + TTL)}


def test_take_over_and_guard_compare_the_holder(engine):
    assert acquire(engine, "a", T0)
    with writing(engine) as conn:
        # A takeover names the holder it replaces: it fails once that changed.
        assert not leases.take_over(conn, "support", "INBOX", "c", "b", T0, TTL)
        assert leases.take_over(conn, "support", "INBOX", "b", "a", T0, TTL)
        # A write about the folder may go ahead for its holder (renewing the
        # lease), and where nobody holds it; not for anyone else.
        assert leases.guard(conn, "support", "INBOX", "b", T0 + timedelta(seconds=1), TTL)
        assert not leases.guard(conn, "support", "INBOX", "a", T0 + timedelta(seconds=2), TTL)
        assert leases.guard(conn, "support", "Archive", "a", T0, TTL)
    assert held(engine) == {("support", "INBOX"): ("b", T0 + timedelta(seconds=1) + TTL)}


def test_of_daemons_racing_for_a_folder_exactly_one_wins(engine):
    """Each in its own connection and transaction, at the same instant: a compare-and-swap, not a read-then-write."""
    for round_, now in enumerate((T0, T0 + TTL + timedelta(seconds=1))):
        start = threading.Barrier(6)
        won: list[str] = []
        errors: list[BaseException] = []

        def race(name: str) -> None:
            try:
                start.wait()
                if acquire(engine, name, now):
                    won.append(name)
            except BaseException as exc:  # Reported by the main thread.
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(f"d{round_}{n}",)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == [] and len(won) == 1, (won, errors)
        assert held(engine)[("support", "INBOX")] == (won[0], now + TTL)


def test_a_holder_names_its_process_and_tells_when_that_process_is_gone():
    me = leases.process_holder()
    assert leases.display_name(me) == me.split("@")[0] and me.split("@")[0].endswith(f":{__import__('os').getpid()}")
    assert not leases.holder_gone(me)
    # A process that has exited: a restarted daemon takes its folders at once.
    child = subprocess.run([sys.executable, "-c", "from inboxd.store.leases import process_holder; print(process_holder())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert leases.holder_gone(child)
    # Another machine's holder, or a name that is not a process's, is left to expire.
    host, _, rest = me.partition("@")
    assert not leases.holder_gone(f"{host}@00000000.{rest.split('.')[1]}")
    assert not leases.holder_gone("daemon-a")
    assert leases.display_name("daemon-a") == "daemon-a"


# -- pollers sharing one store -----------------------------------------------------------------


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def test_two_pollers_on_one_store_one_syncs_the_other_stands_by_then_takes_over(tmp_path, dovecot, imap_user):
    # The pollers' clocks are driven below; the lease is long so that the
    # CLI's wall-clock view of it ("held ... until") holds on a slow machine.
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], store='lease = "1h"')
    settings = load_settings(config)
    mailbox = settings.mailboxes[0]
    engine = open_store(settings.store.url)
    clock_a, clock_b = Clock(), Clock()
    sink_a = StoreSink(engine, settings, workers=0, clock=clock_a, holder="daemon-a")
    sink_b = StoreSink(engine, settings, workers=0, clock=clock_b, holder="daemon-b")
    poller_a = MailboxPoller(mailbox, sink_a, clock=clock_a)
    poller_b = MailboxPoller(mailbox, sink_b, clock=clock_b)
    client_a, client_b = connect(mailbox.imap), connect(mailbox.imap)
    try:
        dovecot.append(imap_user, "INBOX", make_mail(subject="First"))
        assert poller_a.sync(client_a) == 1
        # b finds the folder held: skipped, without an error.
        dovecot.append(imap_user, "INBOX", make_mail(subject="Second"))
        assert poller_b.sync(client_b) == 0
        assert poller_b.status.ok and poller_b.status.folder_errors == {}
        assert db_count(config, "SELECT count(*) FROM message") == 1
        status = json.loads(cli(config, "status", "--json").stdout)
        [inbox] = status["mailboxes"][0]["folders"]
        assert inbox["owner"] == "daemon-a" and inbox["lease"]["live"] is True
        assert inbox["lease"]["holder"] == "daemon-a"
        expires = datetime.fromisoformat(inbox["lease"]["expires_at"].replace("Z", "+00:00"))
        assert timedelta(0) < expires - datetime.now(UTC) <= settings.store.lease
        assert "held by daemon-a until " in cli(config, "status").stdout

        # a stops renewing (it hung): by b's clock its lease has run out, and b takes the folder over.
        clock_b.offset = settings.store.lease + timedelta(seconds=1)
        assert poller_b.sync(client_b) == 1
        # a wakes up: the folder is b's now, so a neither syncs it nor files what it fetched before it knew.
        dovecot.append(imap_user, "INBOX", make_mail(subject="Third"))
        assert poller_a.sync(client_a) == 0
        with pytest.raises(leases.LeaseLost):
            raw = make_mail(subject="Third")
            sink_a.file(Batch("support", "INBOX", dovecot.uidvalidity(imap_user, "INBOX"), 3, [Fetched(3, raw)]),
                        None)
        assert poller_b.sync(client_b) == 1
        with reading(engine) as conn:
            subjects = list(conn.scalars(select(tables.message.c.subject).order_by(tables.message.c.id)))
        assert subjects == ["First", "Second", "Third"]
        assert db_count(config, "SELECT count(*) FROM sighting") == 3

        # A clean stop gives the folder up: a can take it at once.
        poller_b.release_leases()
        assert poller_a.sync(client_a) == 0 and "INBOX" in poller_a._held
    finally:
        client_a.logout()
        client_b.logout()
        sink_a.close()
        sink_b.close()
    # Closing the sinks released what they still held.
    assert db_count(config, "SELECT count(*) FROM lease") == 0


def test_run_once_while_a_daemon_holds_the_folder_skips_it_and_takes_it_when_the_daemon_is_gone(
        tmp_path, dovecot, imap_user):
    """The holder is a process: once it has exited, the next start takes its folders without waiting out the lease."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    dovecot.append(imap_user, "INBOX", make_mail(subject="Waiting"))
    now = datetime.now(UTC)
    with writing(engine) as conn:
        assert leases.acquire(conn, "support", "INBOX", "other-host:4242", now, timedelta(minutes=10))
    assert cli(config, "run", "--once").returncode == 0
    assert db_count(config, "SELECT count(*) FROM message") == 0

    # A daemon of this machine that has exited.
    gone = subprocess.run([sys.executable, "-c", "from inboxd.store.leases import process_holder; print(process_holder())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with writing(engine) as conn:
        conn.execute(leases.LEASE.update().values(holder=gone))
    assert cli(config, "run", "--once").returncode == 0
    assert db_count(config, "SELECT count(*) FROM message") == 1
    # run --once gives the folder up when it is done.
    assert db_count(config, "SELECT count(*) FROM lease") == 0
    engine.dispose()


def test_the_lease_is_thirty_seconds_unless_configured_and_at_least_three(tmp_path, dovecot, imap_user):
    from inboxd.config import ConfigError

    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    assert load_settings(config).store.lease == timedelta(seconds=30)
    text = config.read_text()
    config.write_text(text.replace('data_dir = "var"', 'data_dir = "var"\nlease = "2m"'))
    assert load_settings(config).store.lease == timedelta(minutes=2)
    config.write_text(text.replace('data_dir = "var"', 'data_dir = "var"\nlease = "1s"'))
    with pytest.raises(ConfigError, match=r'^inboxd.toml: store.lease: must be at least 3s, got "1s"$'):
        load_settings(config)
