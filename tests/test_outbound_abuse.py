"""Hostile and broken inbound mail against the outgoing path, end to end: Dovecot in, aiosmtpd out.

Huge and injected display names, forged bounces, autoresponders that
rotate their address.
"""

from __future__ import annotations

import email
import email.policy

import pytest

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.testing.mail import make_mail
from tests.support import list_json, show_json, write_config


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink):
    """One support mailbox with a Sent folder, acks on, SMTP to the sink."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "sent_folder": "Sent"}],
                          smtp_port=smtp_sink.port, acks=True)
    return config, imap_user


def once(config):
    report = run_once(load_settings(config), workers=0)
    assert report.failed == [], report.statuses
    return report


def raw_mail(from_header: str, subject: str = "Help", message_id: str = "<m1@customer.example>") -> bytes:
    return (f"From: {from_header}\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
            f"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: {message_id}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease help.\r\n").encode()


def test_an_ack_to_a_200_kb_display_name_is_accepted_with_folded_headers(desk, dovecot, smtp_sink):
    """Defect: a 200 KB display name produced an ack the SMTP server refused ("500 Line too long")."""
    config, user = desk
    dovecot.append(user, "INBOX", raw_mail(f'"{"A" * 200_000}" <big@customer.example>'))
    once(config)
    [env] = smtp_sink.wait_for(1)
    assert env.rcpt_tos == ["big@customer.example"]
    head, _, body = env.data.partition(b"\r\n\r\n")
    assert max(len(line) for line in env.data.split(b"\r\n")) <= 998
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    ack = email.message_from_bytes(env.data, policy=email.policy.default)
    assert ack["To"].addresses[0].addr_spec == "big@customer.example"
    # The greeting names the customer as the To header does: cut to 200 characters.
    assert len(ack.get_body(("plain",)).get_content()) < 5_000


def test_an_injected_encoded_display_name_gets_its_ack_at_the_bracketed_address(desk, dovecot, smtp_sink):
    """Defect: `From: =?utf-8?q?Evil=0D=0ABcc:_victim@x.example?= <evil16@…>` was stored
    with requester `_victim@x.example?=` and its ack failed with "cannot compose"."""
    config, user = desk
    dovecot.append(user, "INBOX", raw_mail("=?utf-8?q?Evil=0D=0ABcc:_victim@x.example?= <evil16@evil.example>"))
    once(config)
    [env] = smtp_sink.wait_for(1)
    assert env.rcpt_tos == ["evil16@evil.example"]
    ack = email.message_from_bytes(env.data, policy=email.policy.default)
    assert ack["Bcc"] is None and ack["Cc"] is None
    assert [a.addr_spec for a in ack["To"].addresses] == ["evil16@evil.example"]
    [ticket] = list_json(config)
    assert ticket["requester"] == "evil16@evil.example"
    assert all(e["action"] != "send-failed" for e in show_json(config, ticket["id"])["events"])
