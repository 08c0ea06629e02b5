"""The health rules (inboxd.desk.health) as a table: fresh, stale, erroring, never synced, IDLE vs poll, store down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inboxd.config import ImapSettings, MailboxSettings
from inboxd.desk.health import IDLE_BOUND, MIN_BOUND, FolderFacts, assess, sync_bound

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def mailbox(name="support", *, idle=True, poll=60.0, folders=("INBOX",), sent=None) -> MailboxSettings:
    imap = ImapSettings("imap.example.com", 993, "tls", name, None, folders=folders, sent_folder=sent,
                        idle=idle, poll_interval=poll)
    return MailboxSettings(name, f"{name}@example.com", name, imap)


def synced(ago: timedelta, checkpoint_ago: timedelta | None = None) -> FolderFacts:
    return FolderFacts(last_ok_at=NOW - ago,
                       checkpoint_at=None if checkpoint_ago is None else NOW - checkpoint_ago)


def test_bounds_idle_on_one_folder_or_polled():
    assert sync_bound(mailbox(idle=True)) == IDLE_BOUND == timedelta(minutes=30)
    # IDLE watches the first folder only: with two folders the poll interval sets the pace.
    assert sync_bound(mailbox(idle=True, poll=120, folders=("INBOX", "Billing"))) == timedelta(minutes=6)
    assert sync_bound(mailbox(idle=False, poll=300)) == timedelta(minutes=15)
    assert sync_bound(mailbox(idle=False, poll=5)) == MIN_BOUND


@pytest.mark.parametrize("mb,facts,ok,reason", [
    (mailbox(), synced(timedelta(minutes=29)), True, ""),
    (mailbox(), synced(timedelta(minutes=31)), False, "INBOX: last synced 31 min ago, more than 30 min"),
    (mailbox(idle=False, poll=60), synced(timedelta(minutes=2)), True, ""),
    (mailbox(idle=False, poll=60), synced(timedelta(minutes=4)), False,
     "INBOX: last synced 4 min ago, more than 3 min"),
    # A long first sync moves its checkpoint with every batch: progress, not staleness.
    (mailbox(idle=False, poll=60), FolderFacts(checkpoint_at=NOW - timedelta(seconds=10)), True, ""),
    (mailbox(), FolderFacts(last_ok_at=NOW - timedelta(minutes=1), failing=True,
                            error="folder 'INBOX': IMAPClientError: select failed"),
     False, "INBOX: failing: folder 'INBOX': IMAPClientError: select failed"),
    (mailbox(), None, False, "INBOX: never synced"),
])
def test_one_folder(mb, facts, ok, reason):
    verdict = assess((mb,), {} if facts is None else {("support", "INBOX"): facts}, None, NOW)
    assert verdict.ok is ok
    [m] = verdict.mailboxes
    assert m.ok is ok and m.reasons == ((reason,) if reason else ())
    assert verdict.store_error is None


def test_a_failing_sent_folder_is_only_a_warning():
    mb = mailbox(sent="Sent")
    facts = {("support", "INBOX"): synced(timedelta(minutes=1)),
             ("support", "Sent"): FolderFacts(failing=True, error="no such folder")}
    verdict = assess((mb,), facts, None, NOW)
    assert verdict.ok
    [m] = verdict.mailboxes
    assert [f.ok for f in m.folders] == [True, False]


def test_reasons_are_per_mailbox_and_one_bad_mailbox_is_enough():
    good, bad = mailbox("support"), mailbox("billing", idle=False, poll=30)
    facts = {("support", "INBOX"): synced(timedelta(minutes=5)),
             ("billing", "INBOX"): synced(timedelta(hours=3))}
    verdict = assess((good, bad), facts, None, NOW)
    assert not verdict.ok
    assert {m.name: m.reasons for m in verdict.mailboxes} == {
        "support": (), "billing": ("INBOX: last synced 3 h 0 min ago, more than 2 min",)}


def test_a_store_that_does_not_answer_makes_every_mailbox_unhealthy():
    verdict = assess((mailbox("support"), mailbox("billing")), {}, "connection refused", NOW)
    assert not verdict.ok and verdict.store_error == "connection refused"
    assert [m.reasons for m in verdict.mailboxes] == [("store: connection refused",)] * 2
