"""Metrics and status on real Dovecot and aiosmtpd: counts per folder, sync lag, the outbox, error counters.

The store-read metrics are taken with a fixed clock (`exposition(..., clock)`),
so ages are exact instants, not wall-clock waits.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.reports.prometheus import PROCESS, exposition
from inboxd.store.engine import open_store
from inboxd.sync.imap import MailboxPoller
from inboxd.sync.sink import StoreSink
from inboxd.testing.mail import make_mail
from tests.support import cli, write_config

CUTOFF = datetime(2026, 6, 1, tzinfo=UTC)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition by (name, sorted labels); parsing it is itself the format check."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def inbox(name: str, **extra: str) -> tuple[str, tuple]:
    return name, tuple(sorted({"mailbox": "support", "folder": "INBOX", **extra}.items()))


def process_count(name: str, **labels: str) -> float:
    return PROCESS.get_sample_value(name, labels) or 0.0


def test_a_scrape_after_a_sync_shows_the_counts_the_lag_and_the_outbox(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                          acks=True, history="skip", history_before=CUTOFF.strftime("%Y-%m-%dT%H:%MZ"),
                          batch_size=1, store="max_message_bytes = 65536")
    live = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    dovecot.append(imap_user, "INBOX", make_mail(subject="Old, before the cut-off", date=CUTOFF - timedelta(days=90)),
                   when=CUTOFF - timedelta(days=90))
    dovecot.append(imap_user, "INBOX", make_mail(subject="Printer on fire", date=live), when=live)
    dovecot.append(imap_user, "INBOX", make_mail(subject="Huge", body="x" * 100_000 + "\n", date=live), when=live)
    # Every delivery is refused for now: the acknowledgement stays queued.
    smtp_sink.fail_always(451, "try again later")
    temporary_before = process_count("inboxd_smtp_errors_total", mailbox="support", kind="smtp_temporary")
    settings = load_settings(config)
    now = datetime.now(UTC)
    assert run_once(settings, workers=0, now=now).failed == []
    assert process_count("inboxd_smtp_errors_total", mailbox="support", kind="smtp_temporary") > temporary_before

    engine = open_store(settings.store.url, create=False)
    try:
        scrape = samples(exposition(engine, settings, lambda: now + timedelta(hours=1)).decode())
        assert scrape[("inboxd_store_up", ())] == 1
        assert scrape[inbox("inboxd_messages_ingested_total")] == 1
        assert scrape[inbox("inboxd_messages_quarantined_total")] == 1
        assert scrape[inbox("inboxd_messages_skipped_total", reason="history")] == 1
        assert scrape[inbox("inboxd_messages_skipped_total", reason="other")] == 0
        assert scrape[inbox("inboxd_sync_lag")] == 0
        assert scrape[inbox("inboxd_folder_failing")] == 0
        assert abs(scrape[inbox("inboxd_last_sync_timestamp_seconds")] - now.timestamp()) < 600
        assert scrape[("inboxd_outbox_messages", (("status", "queued"),))] == 1
        # Queued a moment after `now` (the cycle's clock runs on from it), scraped an hour after it.
        assert 3000 < scrape[("inboxd_outbox_oldest_queued_age_seconds", ())] <= 3600
        assert scrape[("inboxd_tickets", (("mailbox", "support"), ("status", "new")))] == 1

        # Four more mails; a sync that stops after the first batch (batch_size = 1)
        # saw the server's newest UID: three are still to fetch.
        for i in range(4):
            dovecot.append(imap_user, "INBOX", make_mail(subject=f"More {i}", date=live), when=live)
        sink = StoreSink(engine, settings, workers=0)
        poller = MailboxPoller(settings.mailboxes[0], sink, copies=False,
                               progress=lambda p: p.result is not None and poller.stop.set())
        try:
            poller.run_once()
        finally:
            sink.close()
        scrape = samples(exposition(engine, settings, lambda: now).decode())
        assert scrape[inbox("inboxd_sync_lag")] == 3
        assert scrape[inbox("inboxd_messages_ingested_total")] == 2
    finally:
        engine.dispose()

    # The same through the command line: the text format, `status --json` and `health`.
    text = cli(config, "metrics").stdout
    assert samples(text)[inbox("inboxd_sync_lag")] == 3
    status = json.loads(cli(config, "status", "--json").stdout)
    [folder] = status["mailboxes"][0]["folders"]
    assert folder["lag"] == 3 and folder["last_uid"] + 3 == folder["server_uid"]
    assert status["healthy"] is True and status["mailboxes"][0]["reasons"] == []
    assert "lag 3" in cli(config, "status").stdout
    health = json.loads(cli(config, "health", "--json").stdout)
    assert health["ok"] is True and health["store"] == {"ok": True, "error": None}
    assert health["mailboxes"][0]["folders"][0]["bound_seconds"] == 1800


def test_health_is_unhealthy_before_the_first_sync_and_names_the_folder(tmp_path, dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], idle=False,
                          poll_interval=60)
    # A store with its schema but no sync yet.
    open_store(load_settings(config).store.url).dispose()
    proc = cli(config, "health", check=False)
    assert proc.returncode == 1
    assert "support: unhealthy: INBOX: never synced" in proc.stdout
    health = json.loads(cli(config, "health", "--json", check=False).stdout)
    assert health["ok"] is False and health["mailboxes"][0]["reasons"] == ["INBOX: never synced"]
    assert health["mailboxes"][0]["folders"][0]["bound_seconds"] == 180


def test_imap_login_failures_are_counted_by_kind(tmp_path, dovecot, imap_user):
    bad = tmp_path / "wrong-password"
    bad.write_text("not the password\n")
    bad.chmod(0o600)
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "password_file": str(bad)}])
    before = process_count("inboxd_imap_errors_total", mailbox="support", kind="login")
    report = run_once(load_settings(config), workers=0)
    assert report.failed == ["support"]
    assert process_count("inboxd_imap_errors_total", mailbox="support", kind="login") == before + 1


def test_imap_error_kinds():
    import socket
    import ssl

    from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

    from inboxd.reports.prometheus import IMAP_KINDS
    from inboxd.sync.imap import _error_kind

    kinds = {LoginError("bad password"): "login", socket.timeout("timed out"): "timeout",
             ssl.SSLError("certificate verify failed"): "tls", ConnectionRefusedError(): "network",
             IMAPClientAbortError("socket error: EOF"): "network", IMAPClientError("BAD command"): "protocol",
             ValueError("bug"): "other"}
    assert {type(e).__name__: _error_kind(e) for e in kinds} == {type(e).__name__: k for e, k in kinds.items()}
    assert set(kinds.values()) <= set(IMAP_KINDS)


def test_a_store_that_does_not_answer_is_unhealthy_and_scrapes_as_down(tmp_path, dovecot, imap_user):
    import pytest

    pytest.importorskip("psycopg")
    from inboxd.testing.ports import free_port

    # Nothing listens on the port: the PostgreSQL store is down.
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          url=f"postgresql+psycopg://inboxd@127.0.0.1:{free_port()}/inboxd")
    proc = cli(config, "health", "--json", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    health = json.loads(proc.stdout)
    assert health["ok"] is False and health["store"]["ok"] is False
    assert health["mailboxes"][0]["reasons"][0].startswith("store: ")
    scrape = samples(cli(config, "metrics").stdout)
    assert scrape[("inboxd_store_up", ())] == 0
    assert not any(name == "inboxd_messages_ingested_total" for name, _ in scrape)
