"""Adopting a mailbox that already holds years of mail: history import, arrival
time, dry run, audit, quarantine retry, and Sent folders that are not ours.

Every test drives a real Dovecot (and, where mail goes out, the aiosmtpd sink).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, text, update

from inboxd.desk import quarantine
from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.store.engine import open_store
from inboxd.store import sql
from inboxd.sync.imap import MailboxPoller, connect
from inboxd.sync.sink import StoreSink
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import cli, db_count, list_json, show_json, store_engine, write_config

NOW = datetime.now(UTC).replace(microsecond=0)


def once(config, **kw):
    return run_once(load_settings(config), workers=0, **kw)


def history_cut(config):
    """The INBOX checkpoint's history cut-off, an aware datetime (None when not set)."""
    with store_engine(config).connect() as conn:
        checkpoint = sql.t.checkpoint.c
        return conn.execute(select(checkpoint.history_before).where(checkpoint.folder == "INBOX")).scalar_one()


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_mails(n: int, start: datetime, end: datetime) -> list[tuple[bytes, datetime, str, str]]:
    """`n` customer mails spread evenly from `start` to `end`: (raw, arrival, message_id, sender)."""
    out = []
    step = (end - start) / max(n - 1, 1)
    for i in range(n):
        when = (start + step * i).replace(microsecond=0)
        # One domain per customer: the per-domain ack ceiling is not what these tests are about.
        sender = f"customer{i % 250}@c{i % 250}.example.org"
        mid = make_message_id("example.org")
        raw = make_mail(frm=f"Customer {i % 250} <{sender}>", subject=f"Old question {i}", message_id=mid,
                        date=when, body=f"Question number {i}.\n")
        out.append((raw, when, mid, sender))
    return out


def test_first_sync_imports_three_years_as_closed_history_and_acknowledges_only_new_mail(
        tmp_path, dovecot, imap_user, smtp_sink):
    """Defect: a first sync acknowledged every old mail (1,506 of 1,509), opened them as `new` tickets
    dated at sync time and started SLA clocks from then."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], acks=True,
                          smtp_port=smtp_sink.port, history_before=None)
    old = history_mails(500, NOW - timedelta(days=3 * 365), NOW - timedelta(days=1))
    dovecot.append_many(imap_user, "INBOX", [(raw, when) for raw, when, _, _ in old])

    report = once(config)
    assert report.failed == []
    tickets = {t["subject"]: t for t in list_json(config, "--status", "closed")}
    assert len(tickets) == 500
    assert db_count(config, "SELECT count(*) FROM ticket WHERE history") == 500
    # Each keeps its real arrival time, not the sync's.
    for raw, when, _, _ in old[::50]:
        subject = re.search(rb"Subject: (.*)\r\n", raw).group(1).decode()
        assert tickets[subject]["created_at"] == iso(when)
    assert db_count(config, "SELECT count(*) FROM outbox") == 0
    assert db_count(config, "SELECT count(*) FROM ticket WHERE first_response_due IS NOT NULL"
                            " OR resolution_due IS NOT NULL") == 0
    assert smtp_sink.envelopes == []
    assert history_cut(config) is not None

    # Twenty new mails after the first start, from customers who also wrote
    # before (the ack budget must not count their history), and a reply to
    # the newest history ticket.
    new = [make_mail(frm=f"customer{i} <customer{i}@c{i}.example.org>", subject=f"New question {i}",
                     message_id=make_message_id("example.org")) for i in range(20)]
    last_raw, last_when, last_mid, last_sender = old[-1]
    reply = make_mail(frm=f"Customer <{last_sender}>", subject="Re: Old question 499",
                      message_id=make_message_id("example.org"), in_reply_to=last_mid, references=[last_mid],
                      body="It happened again.\n")
    dovecot.append_many(imap_user, "INBOX", [*new, reply])
    report = once(config)
    assert report.failed == []
    acks = smtp_sink.wait_for(20)
    assert sorted(e.rcpt_tos[0] for e in acks) == sorted(f"customer{i}@c{i}.example.org" for i in range(20))
    assert db_count(config, "SELECT count(*) FROM outbox") == 20
    reopened = next(t for t in list_json(config) if t["subject"] == "Old question 499")
    assert reopened["status"] == "open" and reopened["message_count"] == 2
    assert reopened["created_at"] == iso(last_when)
    assert db_count(config, f"SELECT history FROM ticket WHERE ref = '{reopened['id']}'") == 0
    # No survey, reminder or alert for any history ticket.
    assert db_count(config, "SELECT count(*) FROM duty d JOIN ticket t ON t.id = d.ticket_id WHERE t.history") == 0
    assert db_count(config, "SELECT count(*) FROM csat") == 0


@pytest.mark.parametrize("mode,status", [("open", "open"), ("skip", None)])
def test_history_open_or_skip(tmp_path, dovecot, imap_user, mode, status):
    """The `history` modes: "open" makes open tickets without clocks; "skip" files nothing but accounts for it."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], history_before=None,
                          history=mode)
    old = history_mails(5, NOW - timedelta(days=30), NOW - timedelta(days=2))
    dovecot.append_many(imap_user, "INBOX", [(raw, when) for raw, when, _, _ in old])
    assert once(config).failed == []
    if status is None:
        assert db_count(config, "SELECT count(*) FROM ticket") == 0
        assert db_count(config, "SELECT count(*) FROM skipped WHERE reason LIKE 'history%'") == 5
        assert db_count(config, "SELECT count(*) FROM rawmessage") == 0
    else:
        tickets = list_json(config, "--status", status)
        assert len(tickets) == 5
        assert db_count(config, "SELECT count(*) FROM ticket WHERE first_response_due IS NOT NULL") == 0
    audit = json.loads(cli(config, "audit", "--json").stdout)
    assert audit[0]["missing"] == [] and audit[0]["on_server"] == 5


def test_mail_that_arrived_while_the_daemon_was_down_keeps_its_arrival_time(tmp_path, dovecot, imap_user):
    """Defect: a ticket's created_at was when inboxd got round to the mail, so mail that arrived
    while the daemon was down looked fresh and its SLA clock started late."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], history_before=None,
                          extra=SLA)
    assert once(config).failed == []  # The first start: an empty folder, cut-off = now.
    # Simulate ten days of downtime: the first sync happened ten days ago.
    with store_engine(config).begin() as conn:
        conn.execute(update(sql.t.checkpoint).values(history_before=NOW - timedelta(days=10)))
    arrived = (NOW - timedelta(days=3)).replace(microsecond=0)
    dovecot.append(imap_user, "INBOX", make_mail(subject="Sent while you were away", date=arrived), when=arrived)
    assert once(config).failed == []
    [t] = list_json(config)
    assert t["status"] == "new" and t["created_at"] == iso(arrived)
    shown = show_json(config, t["id"])
    # Four business hours after an arrival three days ago is long past.
    assert shown["first_response_due"] is not None and shown["first_response_due"] < iso(NOW)
    assert [t["id"] for t in list_json(config, "--overdue")] == [t["id"]]


SLA = """
[[sla]]
name = "standard"
first_response = "4h"
resolution = "2d"
priority = ["low", "normal", "high", "urgent"]
"""


# `run --dry-run` rehearses on a SQLite store only (it tells a PostgreSQL user to copy the store
# to SQLite first), and this test checks the SQLite file itself.
@pytest.mark.skipif('config.getoption("--store") == "postgresql"',
                    reason="run --dry-run needs a SQLite store by design; the test checks the inboxd.db file")
def test_dry_run_counts_match_the_real_run_and_change_nothing(tmp_path, dovecot, imap_user, smtp_sink):
    """`run --dry-run` prints per folder what a real run would do, and writes and sends nothing."""
    cut = NOW - timedelta(days=7)
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], acks=True,
                          smtp_port=smtp_sink.port, history_before=iso(cut))
    old = history_mails(30, NOW - timedelta(days=400), NOW - timedelta(days=8))
    recent = [(make_mail(frm=f"R{i} <recent{i}@r{i}.example.net>", subject=f"Recent {i}",
                         message_id=make_message_id("example.net")), NOW - timedelta(days=1)) for i in range(6)]
    broken = (make_mail(headers={"From": None}, subject="No sender at all"), NOW - timedelta(days=1))
    dovecot.append_many(imap_user, "INBOX", [*((r, w) for r, w, _, _ in old), *recent, broken])

    proc = cli(config, "run", "--dry-run")
    assert not (tmp_path / "inboxd.db").exists()
    assert smtp_sink.envelopes == []
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("support/INBOX"))
    messages, new, history, skipped, acks, quarantined, known = map(int, line.split()[1:])
    assert (messages, new, history, skipped, acks, quarantined, known) == (37, 6, 30, 0, 6, 1, 0)

    assert once(config).failed == []
    assert db_count(config, "SELECT count(*) FROM ticket WHERE NOT history") == new
    assert db_count(config, "SELECT count(*) FROM ticket WHERE history") == history
    assert db_count(config, "SELECT count(*) FROM quarantine") == quarantined
    assert len(smtp_sink.wait_for(acks)) == acks

    # On an existing store the dry run leaves the file exactly as it was.
    before = (tmp_path / "inboxd.db").read_bytes()
    dovecot.append(imap_user, "INBOX", make_mail(subject="One more"))
    proc = cli(config, "run", "--dry-run")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("support/INBOX"))
    assert line.split()[1:4] == ["1", "1", "0"]
    assert (tmp_path / "inboxd.db").read_bytes() == before


def test_audit_finds_exactly_the_uids_deleted_from_the_store(tmp_path, dovecot, imap_user):
    """`audit` answers "did inboxd lose a mail?": 0 missing after a sync, the exact UIDs after a loss."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "sent_folder": "Sent"}])
    for i in range(10):
        dovecot.append(imap_user, "INBOX", make_mail(subject=f"Audit {i}"))
    dovecot.append(imap_user, "INBOX", make_mail(headers={"From": None}, subject="Quarantined"))
    assert once(config).failed == []
    proc = cli(config, "audit")
    assert "support/INBOX" in proc.stdout
    [inbox, sent] = json.loads(cli(config, "audit", "--json").stdout)
    assert (inbox["on_server"], inbox["stored"], inbox["quarantined"], inbox["missing"]) == (11, 10, 1, [])
    assert sent["on_server"] == 0 and sent["missing"] == []

    with store_engine(config).begin() as conn:
        sighting = sql.t.sighting
        conn.execute(delete(sighting).where(sighting.c.folder == "INBOX", sighting.c.uid.in_([3, 7])))
    proc = cli(config, "audit", "--json", check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)[0]["missing"] == [3, 7]
    assert "missing UIDs" in cli(config, "audit", check=False).stdout
    # Mail that is on the server but not synced yet is not missing.
    dovecot.append(imap_user, "INBOX", make_mail(subject="Not yet synced"))
    with store_engine(config).begin() as conn:
        for uid in (3, 7):
            conn.execute(text("INSERT INTO sighting (message_pk, mailbox, folder, uidvalidity, uid, seen_at)"
                              " SELECT message_pk, mailbox, folder, uidvalidity, :uid, seen_at FROM sighting LIMIT 1"),
                         {"uid": uid})
    [inbox, _] = json.loads(cli(config, "audit", "--json").stdout)
    assert inbox["unsynced"] == 1 and inbox["missing"] == []


def test_quarantine_retry_files_the_mail_once_the_parser_bug_is_gone(tmp_path, dovecot, imap_user, monkeypatch):
    """`quarantine retry` re-runs a quarantined mail through the pipeline (Mailman's unshunt)."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    dovecot.append(imap_user, "INBOX", make_mail(subject="Triggers the bug", message_id="<bug@example.cn>"))
    dovecot.append(imap_user, "INBOX", make_mail(subject="Fine"))
    import inboxd.sync.worker

    real = inboxd.sync.worker.parse_message

    def buggy(raw, **kw):
        if b"Triggers the bug" in raw:
            raise KeyError("a parser bug")
        return real(raw, **kw)

    monkeypatch.setattr(inboxd.sync.worker, "parse_message", buggy)
    assert once(config).failed == []
    [q] = json.loads(cli(config, "quarantine", "list", "--json").stdout)
    assert "KeyError" in q["reason"]
    shown = json.loads(cli(config, "quarantine", "show", str(q["id"]), "--json").stdout)
    assert "Subject: Triggers the bug" in shown["headers"] and shown["arrived_at"]
    raw = cli(config, "quarantine", "show", str(q["id"]), "--raw").stdout
    assert "Triggers the bug" in raw

    # Still broken: it stays, with the reason.
    settings = load_settings(config)
    [outcome] = quarantine.retry(open_store(settings.store.url), settings, q["id"], NOW)
    assert outcome["filed"] is False and "KeyError" in outcome["reason"]
    monkeypatch.setattr(inboxd.sync.worker, "parse_message", real)
    proc = cli(config, "quarantine", "retry", str(q["id"]))
    assert "filed" in proc.stdout
    assert json.loads(cli(config, "quarantine", "list", "--json").stdout) == []
    subjects = {t["subject"] for t in list_json(config)}
    assert subjects == {"Triggers the bug", "Fine"}
    # The message is accounted for where it was seen.
    [inbox] = json.loads(cli(config, "audit", "--json").stdout)
    assert inbox["stored"] == 2 and inbox["missing"] == []
    proc = cli(config, "quarantine", "retry", "999", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1


def test_missing_sent_folder_is_a_warning_and_inbox_still_syncs(tmp_path, dovecot, imap_user):
    """Defect: a configured sent_folder missing on the server failed the whole mailbox."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user,
                                               "sent_folder": "Sent Items"}])
    dovecot.append(imap_user, "INBOX", make_mail(subject="Still filed"))
    proc = cli(config, "run", "--once")
    assert proc.returncode == 0
    assert "Sent Items" in proc.stderr and "sent_folder" in proc.stderr
    assert [t["subject"] for t in list_json(config)] == ["Still filed"]
    status = json.loads(cli(config, "status", "--json").stdout)
    folders = {f["folder"]: f for f in status["mailboxes"][0]["folders"]}
    assert folders["INBOX"]["state"] == "ok" and folders["Sent Items"]["state"] == "failing"
    assert status["mailboxes"][0]["state"] == "degraded"


def test_deleted_configured_folder_fails_alone_and_backs_off(tmp_path, dovecot, imap_user, caplog):
    """Defect: a deleted folder listed before INBOX stopped INBOX for good, and its error was
    logged about once a second because back-off reset after every login."""
    dovecot.create_folder(imap_user, "Gone")
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "folders": ["Gone", "INBOX"]}])
    dovecot.delete_folder(imap_user, "Gone")
    dovecot.append(imap_user, "INBOX", make_mail(subject="Behind a deleted folder"))
    proc = cli(config, "run", "--once", check=False)
    assert proc.returncode == 1 and "Gone" in proc.stderr
    assert [t["subject"] for t in list_json(config)] == ["Behind a deleted folder"]
    status = json.loads(cli(config, "status", "--json", check=False).stdout)
    gone = next(f for f in status["mailboxes"][0]["folders"] if f["folder"] == "Gone")
    assert gone["state"] == "failing" and "folders" in gone["error"]
    check = cli(config, "check-config", "--connect", check=False)
    assert check.returncode == 1 and "Gone" in check.stdout

    # The same poller, pass after pass: the folder's retry delay doubles and
    # its error is logged once, while INBOX keeps syncing.
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    sink = StoreSink(engine, settings, workers=0)
    poller = MailboxPoller(settings.mailboxes[0], sink)
    client = connect(settings.mailboxes[0].imap)
    delays = []
    try:
        with caplog.at_level(logging.DEBUG, logger="inboxd.sync.imap"):
            for i in range(4):
                dovecot.append(imap_user, "INBOX", make_mail(subject=f"Pass {i}"))
                poller.sync(client)
                health = poller.health["Gone"]
                delays.append(health.retry_at)
                health.retry_at = 0  # Due again at once: the test drives the schedule.
    finally:
        client.logout()
        sink.close()
    assert [poller.health["Gone"].failures] == [4]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "Gone" in r.getMessage()]
    assert len(errors) == 1
    assert db_count(config, "SELECT count(*) FROM ticket") == 5


def test_acknowledgements_of_another_store_in_sent_are_not_agent_replies(tmp_path, dovecot, imap_user):
    """Defect: a second store took the first store's acknowledgements in Sent for agent replies
    and moved tickets new -> pending."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "sent_folder": "Sent"}])
    dovecot.append(imap_user, "INBOX", make_mail(subject="Help", message_id="<help-1@example.cn>"))
    other_ack = make_mail(frm="Support <support@example.com>", to="lilei@example.cn", subject="Re: [T-1000] Help",
                          message_id="<inboxd.T-1000.0123abcd@example.com>", in_reply_to="<help-1@example.cn>",
                          headers={"Auto-Submitted": "auto-replied", "X-Inboxd-Loop": "inboxd; support@example.com"},
                          body="We received your request.\n")
    dovecot.append(imap_user, "Sent", other_ack)
    assert once(config).failed == []
    [t] = list_json(config)
    assert t["status"] == "new" and t["first_response_at"] is None
    kinds = [m["kind"] for m in show_json(config, t["id"])["messages"]]
    assert kinds == ["customer", "auto"]


def test_a_filing_error_in_a_middle_batch_ends_the_sync_instead_of_hanging(tmp_path, dovecot, imap_user,
                                                                          monkeypatch):
    """Defect: a filing error in the second-to-last batch hung the poller: the fetch thread blocked
    handing over its end marker while the poller waited for it, with nothing logged."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], batch_size=2)
    for i in range(6):
        dovecot.append(imap_user, "INBOX", make_mail(subject=f"Batch mail {i}"))
    calls = {"n": 0}
    real = StoreSink.file

    def fail_second(self, batch, prepared):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("database is locked")
        return real(self, batch, prepared)

    monkeypatch.setattr(StoreSink, "file", fail_second)
    result = {}
    worker = threading.Thread(target=lambda: result.update(report=once(config)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "run_once hung"
    report = result["report"]
    assert report.failed == ["support"] and "database is locked" in report.statuses["support"].error
    monkeypatch.setattr(StoreSink, "file", real)
    assert once(config).failed == []
    assert db_count(config, "SELECT count(*) FROM ticket") == 6


def test_mail_arriving_in_the_same_second_as_the_first_sync_is_new_work(tmp_path, dovecot, imap_user):
    """Defect: the default cut-off kept the first sync's microseconds while INTERNALDATE has whole
    seconds, so mail that arrived in that second, just after the sync, became history (seen in the demo)."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], history_before=None)
    assert once(config).failed == []
    cutoff = history_cut(config)
    assert cutoff.microsecond == 0
    dovecot.append(imap_user, "INBOX", make_mail(subject="Right after the start"), when=cutoff)
    assert once(config).failed == []
    [t] = list_json(config)
    assert t["status"] == "new" and db_count(config, "SELECT count(*) FROM ticket WHERE history") == 0


def test_a_folder_error_differing_only_in_dovecots_timing_is_the_same_reason():
    from inboxd.sync.imap import _without_timings

    first = "folder 'Gone' (mailboxes[support].imap.folders): EXAMINE failed: Mailbox doesn't exist: Gone (0.001 + 0.000 secs)."
    again = "folder 'Gone' (mailboxes[support].imap.folders): EXAMINE failed: Mailbox doesn't exist: Gone (0.012 + 0.000 + 0.011 secs)."
    assert _without_timings(first) == _without_timings(again)
    assert _without_timings(first) != _without_timings(first.replace("Gone (", "Other ("))
