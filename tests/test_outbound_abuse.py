"""Hostile and broken inbound mail against the outgoing path, end to end: Dovecot in, aiosmtpd out.

Huge and injected display names, forged bounces, autoresponders that
rotate their address.
"""

from __future__ import annotations

import email
import email.policy
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.store.sql import t as tables
from inboxd.testing.mail import make_mail
from tests.support import list_json, show_json, store_engine, write_config


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


# -- bounces ------------------------------------------------------------------


def dsn(failed: str, original_message_id: str, boundary: str = "dsn-boundary-7") -> bytes:
    """A delivery status report (RFC 3464) from a mail system: `failed` did not get `original_message_id`."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn.{abs(hash((failed, original_message_id)))}@mx.customer.example>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Support <support@example.com>\r\nTo: {failed}\r\nMessage-ID: {original_message_id}\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def acks_to(sink, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(e.data, policy=email.policy.default) for e in sink.envelopes
            if e.rcpt_tos == [address]]


def event_details(config, action: str) -> list[dict]:
    """The details of every `action` event in the store, oldest first."""
    event = tables.event
    engine = store_engine(config)
    try:
        with engine.connect() as conn:
            return [json.loads(detail) for detail in conn.scalars(
                select(event.c.detail).where(event.c.action == action).order_by(event.c.id))]
    finally:
        engine.dispose()


def bounce_events(config) -> list[dict]:
    return event_details(config, "bounce")


def test_a_forged_bounce_about_mail_we_never_sent_does_not_silence_a_customer(desk, dovecot, smtp_sink):
    """Defect: an unauthenticated DSN naming an existing customer, about a Message-ID
    we never sent, set customer.bouncing=1, so her next ticket got no ack."""
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Ann <ann@customer.example>", subject="First question"))
    once(config)
    assert len(acks_to(smtp_sink, "ann@customer.example")) == 1
    # One report about an id nobody sent, one in our id scheme that is not in the outbox.
    dovecot.append(user, "INBOX", dsn("ann@customer.example", "<never-sent@elsewhere.example>"))
    dovecot.append(user, "INBOX", dsn("ann@customer.example", "<inboxd.T-1000.0badc0ffee@example.com>"))
    once(config)
    details = bounce_events(config)
    assert len(details) == 2 and all(d["permanent"] and d["marked"] == [] and d["not_marked"] for d in details)
    dovecot.append(user, "INBOX", make_mail(frm="Ann <ann@customer.example>", subject="Second question"))
    once(config)
    assert len(smtp_sink.wait_for(2)) == 2
    assert len(acks_to(smtp_sink, "ann@customer.example")) == 2


def test_a_bounce_of_our_ack_marks_only_its_recipient_and_the_mark_expires(desk, dovecot, smtp_sink):
    """Defect: any bounce marked every address it named, for ever.  A genuine bounce
    of our ack marks the address that ack went to, until [autoreply] bounce_expiry."""
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Gone <gone@customer.example>", subject="Refund"))
    dovecot.append(user, "INBOX", make_mail(frm="Bea <bea@customer.example>", subject="Invoice"))
    once(config)
    [ack] = acks_to(smtp_sink, "gone@customer.example")
    # A real bounce of that ack; and one about the same ack that names Bea instead.
    dovecot.append(user, "INBOX", dsn("gone@customer.example", ack["Message-ID"]))
    dovecot.append(user, "INBOX", dsn("bea@customer.example", ack["Message-ID"], boundary="other"))
    once(config)
    marked = sorted(d["marked"] for d in bounce_events(config))
    assert marked == [[], ["gone@customer.example"]]
    genuine = next(d for d in bounce_events(config) if d["marked"])
    assert genuine["until"].endswith("Z")
    # Gone's next ticket gets no ack, with the reason in its history; Bea's does.
    dovecot.append(user, "INBOX", make_mail(frm="Gone <gone@customer.example>", subject="Still no refund"))
    dovecot.append(user, "INBOX", make_mail(frm="Bea <bea@customer.example>", subject="Another invoice"))
    once(config)
    assert len(acks_to(smtp_sink, "gone@customer.example")) == 1
    assert len(acks_to(smtp_sink, "bea@customer.example")) == 2
    still = next(t for t in list_json(config) if t["subject"] == "Still no refund")
    [no_ack] = [e for e in show_json(config, still["id"])["events"] if e["action"] == "no-ack"]
    assert no_ack["detail"]["rule"] == "sender_bouncing"
    # Thirty-one days later (the default expiry is 30 days) the mark no longer blocks.
    customer = tables.customer
    gone = customer.c.email == "gone@customer.example"
    engine = store_engine(config)
    try:
        with engine.begin() as conn:
            bounced_at = conn.scalar(select(customer.c.bounced_at).where(gone))
            conn.execute(update(customer).where(gone).values(bounced_at=bounced_at - timedelta(days=31)))
    finally:
        engine.dispose()
    dovecot.append(user, "INBOX", make_mail(frm="Gone <gone@customer.example>", subject="New address works"))
    once(config)
    assert len(acks_to(smtp_sink, "gone@customer.example")) == 2


# -- the budget against rotating addresses ------------------------------------------


def test_an_autoresponder_rotating_plus_tags_gets_only_the_per_address_budget(desk, dovecot, smtp_sink):
    """Defect: an autoresponder rotating bot+N@ got 50 acks in 50 rounds: the budget counted the exact address."""
    config, user = desk
    dovecot.append_many(user, "INBOX", [
        make_mail(frm=f"Bot <Bot+{n}@bots.example>", subject=f"Your request {n} was received") for n in range(1, 51)])
    customers = ["ann@customer.example", "li@customer.example", "raj@other.example"]
    dovecot.append_many(user, "INBOX", [make_mail(frm=f"Customer <{c}>", subject="A real question") for c in customers])
    once(config)
    to_bot = [e for e in smtp_sink.envelopes if e.rcpt_tos[0].endswith("@bots.example")]
    assert len(to_bot) == 3  # [autoreply] per_hour, counted for bot@bots.example whatever the +tag
    assert sorted(e.rcpt_tos[0] for e in smtp_sink.envelopes if not e.rcpt_tos[0].endswith("@bots.example")) \
        == sorted(customers)
    refused = event_details(config, "no-ack")
    assert len(refused) == 47 and all(d["rule"] == "budget" for d in refused)
    assert "3 auto-replies went to this address in the last hour (budget 3)" in {d["reason"] for d in refused}


def test_a_domain_answering_from_ever_new_addresses_hits_the_per_domain_ceiling(tmp_path, dovecot, imap_user,
                                                                                smtp_sink):
    """Defect: fifty addresses at one domain got fifty acks; shared providers (gmail.com)
    must not be held to that ceiling, or real customers would be turned away."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                          acks=True, autoreply="per_domain_per_hour = 7\nper_domain_per_minute = 1000")
    dovecot.append_many(imap_user, "INBOX", [
        make_mail(frm=f"Bot <bot{n}@bots.example>", subject=f"Auto: request {n}") for n in range(1, 51)])
    gmail = [f"customer{n}@gmail.com" for n in range(1, 11)]
    dovecot.append_many(imap_user, "INBOX", [make_mail(frm=f"C <{c}>", subject="Help please") for c in gmail])
    once(config)
    assert len([e for e in smtp_sink.envelopes if e.rcpt_tos[0].endswith("@bots.example")]) == 7
    assert sorted(e.rcpt_tos[0] for e in smtp_sink.envelopes if e.rcpt_tos[0].endswith("@gmail.com")) == sorted(gmail)
    reasons = {d["reason"] for d in event_details(config, "no-ack")}
    assert reasons == {"7 auto-replies went to addresses at bots.example in the last hour (ceiling 7 per domain)"}
