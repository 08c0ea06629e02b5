"""One Message-ID, two different mails: both are kept; one mail, two deliveries: one message.

Round 2, 2 of 8, item 5.  A second mail with a Message-ID the store already
held was dropped silently, with only a sighting recorded, even when it came
from another sender with other content.
"""

from __future__ import annotations

from sqlalchemy import text

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.mail.message import content_hash
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import cli, list_json, show_json, store_engine, write_config


def once(config):
    report = run_once(load_settings(config), workers=0)
    assert report.failed == [], report.statuses
    return report


def rows(config, sql: str, **params) -> list[tuple]:
    """The rows of portable `sql` (:named parameters) on the store the config names."""
    with store_engine(config).connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def test_different_mail_with_a_stored_message_id_is_kept_and_flagged(tmp_path, dovecot, mail_user_factory):
    """A different mail (other sender, other body) that reused a stored Message-ID
    was dropped: only a sighting of the first mail was recorded."""
    support, billing = mail_user_factory(), mail_user_factory()
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": support},
                                              {"name": "billing", "user": billing}])
    reused = make_message_id()
    dovecot.append(support, "INBOX", make_mail(subject="Printer on fire", message_id=reused,
                                               frm="Ann <ann@example.org>", body="The printer is on fire.\n"))
    once(config)
    impostor = make_mail(subject="Refund for order 88", message_id=reused, frm="Bob <bob@example.net>",
                         body="Please refund order 88.\n")
    dovecot.append(support, "INBOX", impostor)
    # The same second mail, delivered to another mailbox too: one more sighting of it, not a third message.
    dovecot.append(billing, "INBOX", impostor)
    once(config)

    tickets = {t["subject"]: t for t in list_json(config)}
    assert set(tickets) == {"Printer on fire", "Refund for order 88"}
    first, second = tickets["Printer on fire"], tickets["Refund for order 88"]
    assert first["requester"] == "ann@example.org" and second["requester"] == "bob@example.net"
    bare = reused.strip("<>")
    derived = f"{bare}#{content_hash(impostor)[:16]}"
    assert rows(config, "SELECT message_key, message_id FROM message ORDER BY id") == [
        (bare, bare), (derived, derived)]
    assert sorted(second["mailboxes"]) == ["billing", "support"]

    shown = show_json(config, second["id"])
    [event] = [e for e in shown["events"] if e["action"] == "message-id-reused"]
    assert event["detail"]["message_id"] == bare and event["detail"]["first_ticket"] == first["id"]
    assert event["detail"]["stored_as"] == derived
    assert "message-id-reused" in cli(config, "show", second["id"]).stdout
    assert not any(e["action"] == "message-id-reused" for e in show_json(config, first["id"])["events"])

    # A reply naming the reused id still belongs to the first mail's ticket.
    dovecot.append(support, "INBOX", make_mail(subject="Re: fire", in_reply_to=reused, references=[reused],
                                               frm="Ann <ann@example.org>"))
    once(config)
    assert show_json(config, first["id"])["message_count"] == 2
    assert show_json(config, second["id"])["message_count"] == 1


def test_one_mail_in_two_mailboxes_with_different_trace_headers_is_one_message(
        tmp_path, dovecot, mail_user_factory):
    """Comparing content must not turn one mail delivered twice into two: the
    servers' Received, Delivered-To, X-Original-To and Return-Path differ."""
    support, billing = mail_user_factory(), mail_user_factory()
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": support},
                                              {"name": "billing", "user": billing}])
    mail = make_mail(subject="Charged twice", to=["support@example.com", "billing@example.com"])
    dovecot.append(support, "INBOX",
                   b"Return-Path: <li@example.cn>\r\nDelivered-To: support@example.com\r\n"
                   b"Received: from mx1.example.com by imap.example.com; Mon, 1 Jan 2026 10:00:00 +0000\r\n" + mail)
    dovecot.append(billing, "INBOX",
                   b"Return-Path: <li@example.cn>\r\nDelivered-To: billing@example.com\r\n"
                   b"X-Original-To: billing@example.com\r\n"
                   b"Received: from mx2.example.com by imap.example.com; Mon, 1 Jan 2026 10:00:03 +0000\r\n"
                   b"Received: from relay.example.net by mx2.example.com; Mon, 1 Jan 2026 10:00:01 +0000\r\n" + mail)
    once(config)
    [ticket] = list_json(config)
    assert sorted(ticket["mailboxes"]) == ["billing", "support"]
    assert rows(config, "SELECT count(*) FROM message") == [(1,)]
    assert rows(config, "SELECT count(*) FROM sighting") == [(2,)]
    assert not any(e["action"] == "message-id-reused" for e in show_json(config, ticket["id"])["events"])
