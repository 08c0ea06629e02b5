"""Outgoing mail end to end: Dovecot in, aiosmtpd out.

Acknowledgements, loop safety, bounces, agents' replies from the Sent folder
and by email, SMTP failures and crashes.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.store.sql import t as tables
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import (cli, db_count, list_json, show_json, start_daemon, stop_daemon, store_engine, wait_until,
                           write_config)

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink):
    """One support mailbox with a Sent folder, acks on, SMTP to the sink."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "sent_folder": "Sent"}],
                          smtp_port=smtp_sink.port, acks=True, extra=AGENTS)
    return config, imap_user


AGENTS = """
[[agents]]
name = "bob"
email = "bob@example.com"
"""


def once(config, now: datetime | None = None):
    """One `run --once` cycle, at `now` (the real time if None).

    It drains the outbox before it returns, and the sink records each mail
    before it answers 250, so afterwards the sink holds everything that was
    sent: "nothing more was sent" needs no waiting.
    """
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses
    return report


def retry_time(config) -> datetime:
    """The instant every queued mail's next attempt is due by (a cycle then retries them all)."""
    outbox = tables.outbox
    engine = store_engine(config)
    try:
        with engine.connect() as conn:
            latest = conn.scalar(select(func.max(outbox.c.next_attempt_at)).where(outbox.c.status == "queued"))
    finally:
        engine.dispose()
    assert latest is not None, "no mail waits for a retry"
    return latest


def close_ticket(config, ago: timedelta) -> None:
    """Close every ticket as of `ago` before now, as an agent would have."""
    engine = store_engine(config)
    try:
        with engine.begin() as conn:
            conn.execute(update(tables.ticket).values(status="closed", closed_at=datetime.now(UTC) - ago))
    finally:
        engine.dispose()


def parsed(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.data, policy=email.policy.default)


def only_ticket(config) -> dict:
    [t] = list_json(config)
    return show_json(config, t["id"])


def test_ack_is_sent_once_with_loop_headers_and_matches_golden(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Order 4711 is late",
                                            message_id="<order-4711@example.cn>"))
    once(config)
    [env] = smtp_sink.wait_for(1)
    assert env.mail_from == "support@example.com" and env.rcpt_tos == ["lilei@example.cn"]
    msg = parsed(env)
    assert msg["Subject"] == "Re: [T-1000] Order 4711 is late"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Precedence"] == "auto_reply"
    assert msg["X-Inboxd-Loop"]
    assert msg["In-Reply-To"] == "<order-4711@example.cn>"
    assert re.fullmatch(r"<inboxd\.T-1000\.[0-9a-f]+@example\.com>", msg["Message-ID"])
    # The whole mail, with only its Date and Message-ID masked, is the golden one.
    normalised = re.sub(rb"(?m)^(Date|Message-ID): .*\r\n", rb"\1: <masked>\r\n", env.data)
    golden = GOLDEN / "ack_received_en.eml"
    if os.environ.get("INBOXD_REGEN_GOLDEN"):  # Regenerate, review, commit.
        golden.write_bytes(normalised)
    assert normalised == golden.read_bytes()
    # A second cycle sends nothing more, and the ack is on the ticket.
    once(config)
    assert len(smtp_sink.envelopes) == 1
    t = only_ticket(config)
    assert [m["kind"] for m in t["messages"]] == ["customer", "auto"]
    assert t["status"] == "new" and t["first_response_at"] is None


def test_chinese_mailbox_gets_chinese_ack(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          smtp_port=smtp_sink.port, acks=True)
    config.write_text(config.read_text().replace('address = "support@example.com"',
                                                 'address = "support@example.com"\nlanguage = "zh"'))
    dovecot.append(imap_user, "INBOX", make_mail(frm="李雷 <lilei@example.cn>", subject="订单没有收到", charset="gbk"))
    once(config)
    msg = parsed(smtp_sink.wait_for(1)[0])
    assert msg["Subject"] == "Re: [T-1000] 订单没有收到"
    assert "工单" in msg.get_body(("plain",)).get_content()
    assert msg["To"].addresses[0].display_name == "李雷"


def test_replies_to_the_ack_thread_by_headers_tag_and_our_message_id(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(subject="Printer on fire"))
    once(config)
    ack = parsed(smtp_sink.wait_for(1)[0])
    ack_id = ack["Message-ID"]
    # 1: a normal reply with In-Reply-To.
    dovecot.append(user, "INBOX", make_mail(subject=f"Re: {ack['Subject']}", in_reply_to=ack_id, references=[ack_id]))
    # 2: headers stripped, the tag survives.
    dovecot.append(user, "INBOX", make_mail(subject="Re: [T-1000] Printer on fire"))
    # 3: tag gone, but the client kept our Message-ID in References only.
    dovecot.append(user, "INBOX", make_mail(subject="still burning", references=[ack_id]))
    once(config)
    tickets = list_json(config)
    assert len(tickets) == 1
    t = show_json(config, tickets[0]["id"])
    assert len([m for m in t["messages"] if m["kind"] == "customer"]) == 4
    reasons = [e["detail"]["reason"] for e in t["events"] if e["action"] == "message"]
    assert reasons[0] == f"In-Reply-To {ack_id}"
    assert reasons[1] == "subject tag [T-1000]"
    assert reasons[2].startswith("References <inboxd.T-1000.")
    # Only the first mail was acknowledged.
    assert len(smtp_sink.envelopes) == 1


AUTOMATIC = {
    "auto-submitted": {"Auto-Submitted": "auto-replied"},
    "precedence-bulk": {"Precedence": "bulk"},
    "precedence-list": {"Precedence": "list"},
    "list-id": {"List-Id": "<news.example.com>"},
    "list-unsubscribe": {"List-Unsubscribe": "<mailto:unsub@example.com>"},
    "x-auto-response-suppress": {"X-Auto-Response-Suppress": "OOF, AutoReply"},
    "null-return-path": {"Return-Path": "<>"},
    "noreply": {"From": "Shop <no-reply@shop.example>"},
    "mailer-daemon": {"From": "MAILER-DAEMON@mx.example.net"},
    "our-loop-header": {"X-Inboxd-Loop": "inboxd; support@example.com"},
    "our-own-agent": {"From": "Bob <bob@example.com>"},
}


@pytest.mark.parametrize("case", sorted(AUTOMATIC))
def test_no_ack_for_automatic_mail(desk, dovecot, smtp_sink, case):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(subject=f"Automatic {case}", headers=AUTOMATIC[case]))
    once(config)
    assert smtp_sink.envelopes == []
    t = only_ticket(config)
    no_ack = [e for e in t["events"] if e["action"] == "no-ack"]
    assert len(no_ack) == 1 and no_ack[0]["detail"]["rule"] and no_ack[0]["detail"]["reason"]


def test_our_own_message_coming_back_gets_no_ack(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(subject="Looped", message_id="<inboxd.T-1.abc@example.com>"))
    once(config)
    assert smtp_sink.envelopes == []


def test_naive_autoresponder_gets_at_most_the_budget(desk, dovecot, smtp_sink):
    """An autoresponder that answers every mail with a fresh subject and no
    headers of any kind: only the per-address budget can stop it."""
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Robot <robot@naive.example>", subject="Hello"))
    for round_ in range(20):
        once(config)
        # The robot answers each of our mails it received since the last round.
        sent_to_robot = [e for e in smtp_sink.envelopes if e.rcpt_tos == ["robot@naive.example"]]
        if len(sent_to_robot) > round_:
            dovecot.append(user, "INBOX", make_mail(frm="Robot <robot@naive.example>",
                                                    subject=f"Your message {round_} was received"))
    sent_to_robot = [e for e in smtp_sink.envelopes if e.rcpt_tos == ["robot@naive.example"]]
    assert len(sent_to_robot) == 3  # The default budget: 3 per hour.
    assert len(list_json(config)) == 4  # Three answered, the fourth stopped the loop.


def test_bounce_lands_on_its_ticket_and_stops_auto_replies(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Gone <gone@example.org>", subject="Where is my refund"))
    once(config)
    ack = parsed(smtp_sink.wait_for(1)[0])
    dsn = _dsn(ack, "gone@example.org")
    dovecot.append(user, "INBOX", dsn)
    once(config)
    [ticket] = list_json(config)
    t = show_json(config, ticket["id"])
    assert [m["kind"] for m in t["messages"]] == ["customer", "auto", "bounce"]
    bounce_events = [e for e in t["events"] if e["action"] == "bounce"]
    assert bounce_events[0]["detail"]["recipients"] == ["gone@example.org"]
    assert bounce_events[0]["detail"]["permanent"] is True
    # A new mail from the bouncing address gets no ack.
    dovecot.append(user, "INBOX", make_mail(frm="Gone <gone@example.org>", subject="Another question"))
    once(config)
    assert len(smtp_sink.envelopes) == 1
    assert db_count(config, "select bouncing from customer where email = 'gone@example.org'") == 1


def _dsn(original: email.message.EmailMessage, recipient: str) -> bytes:
    boundary = "dsn-boundary-42"
    headers = "".join(f"{k}: {v}\r\n" for k, v in original.items() if k in ("From", "To", "Subject", "Message-ID"))
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {make_message_id('mx.example.net')}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def test_reply_from_the_sent_folder_sets_first_response(desk, dovecot, smtp_sink):
    config, user = desk
    first = make_message_id()
    dovecot.append(user, "INBOX", make_mail(subject="Cannot log in", message_id=first))
    once(config)
    # An agent answers from Thunderbird with the shared identity; the copy lands in Sent.
    dovecot.append(user, "Sent", make_mail(frm="Example Support <support@example.com>", to="lilei@example.cn",
                                           subject="Re: [T-1000] Cannot log in", in_reply_to=first,
                                           references=[first], body="Try resetting it here: ...\n"),
                   flags=("\\Seen",))
    once(config)
    t = only_ticket(config)
    agent = [m for m in t["messages"] if m["kind"] == "agent"]
    assert len(agent) == 1 and agent[0]["direction"] == "out"
    assert t["first_response_at"] is not None
    assert t["status"] == "pending"
    # The copies inboxd itself appended to Sent (the ack) were recognised, not counted again.
    assert sum(1 for m in t["messages"] if m["kind"] == "auto") == 1
    assert dovecot.message_count(user, "Sent") == 2
    # A customer reply reopens the ticket.
    dovecot.append(user, "INBOX", make_mail(subject="Re: [T-1000] Cannot log in", body="Still broken.\n"))
    once(config)
    assert only_ticket(config)["status"] == "open"


def test_agent_reply_by_email_reaches_the_customer_once_and_notes_stay_internal(desk, dovecot, smtp_sink):
    config, user = desk
    first = make_message_id()
    dovecot.append(user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Refund", message_id=first))
    once(config)
    ack = parsed(smtp_sink.wait_for(1)[0])
    # Bob answers from his own mailbox to the shared address, quoting the customer.
    dovecot.append(user, "INBOX", make_mail(
        frm="Bob <bob@example.com>", subject=f"Re: {ack['Subject']}", in_reply_to=first, references=[first],
        body="Your refund was issued today.\n\nOn Mon, 23 Nov 2026 at 10:00, Li Lei <lilei@example.cn> wrote:\n> Refund\n"))
    # And an internal note, which must never reach the customer.
    dovecot.append(user, "INBOX", make_mail(
        frm="Bob <bob@example.com>", subject="Re: [T-1000] Refund", body="#note customer is a VIP, be quick\n"))
    once(config)
    once(config)
    relayed = [e for e in smtp_sink.envelopes if e.rcpt_tos == ["lilei@example.cn"]]
    assert len(relayed) == 2  # the ack and the one relayed answer
    msg = parsed(relayed[1])
    assert msg["From"].addresses[0].addr_spec == "support@example.com"
    assert msg["From"].addresses[0].display_name == "Bob via Support"
    body = msg.get_body(("plain",)).get_content()
    assert "Your refund was issued today." in body and "wrote:" not in body
    assert "VIP" not in "".join(e.data.decode("ascii", "replace") for e in smtp_sink.envelopes)
    t = only_ticket(config)
    kinds = [m["kind"] for m in t["messages"]]
    assert kinds.count("agent") == 1 and kinds.count("note") == 1
    agent = next(m for m in t["messages"] if m["kind"] == "agent")
    assert agent["reply_text"].strip() == "Your refund was issued today."
    assert t["first_response_at"] is not None and t["status"] == "pending"


def test_mail_from_an_unknown_address_is_never_relayed(desk, dovecot, smtp_sink):
    config, user = desk
    first = make_message_id()
    dovecot.append(user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Refund", message_id=first))
    once(config)
    dovecot.append(user, "INBOX", make_mail(frm="Mallory <mallory@evil.example>", subject="Re: [T-1000] Refund",
                                            body="Please send the refund to my account instead.\n"))
    once(config)
    assert [e.rcpt_tos for e in smtp_sink.envelopes] == [["lilei@example.cn"]]  # only the ack


def test_smtp_down_then_451_then_550(desk, dovecot, smtp_sink):
    config, user = desk
    smtp_sink.stop()
    dovecot.append(user, "INBOX", make_mail(frm="A <a@example.cn>", subject="First"))
    once(config)
    for _ in range(2):  # More cycles with the server down, each at the instant the retry is due.
        once(config, retry_time(config))
    rows = {r["kind"]: r for r in json.loads(cli(config, "outbox", "list", "--json").stdout)}
    assert rows["ack"]["status"] == "queued" and rows["ack"]["attempts"] >= 2
    assert rows["ack"]["last_error"]
    smtp_sink.start()
    smtp_sink.fail_next(451, "4.3.0 try again later")
    once(config, retry_time(config))  # answered 451: still queued
    assert smtp_sink.envelopes == []
    once(config, retry_time(config))
    [env] = smtp_sink.wait_for(1)
    assert env.rcpt_tos == ["a@example.cn"]
    # A second customer's ack is refused for good.
    smtp_sink.fail_next(550, "5.1.1 no such user")
    dovecot.append(user, "INBOX", make_mail(frm="B <b@example.cn>", subject="Second"))
    once(config)
    # Refused for good: the row is "failed", which the sender never claims
    # again, so another cycle sends nothing, however long one waits.
    assert db_count(config, "select count(*) from outbox where status = 'queued'") == 0
    once(config)
    assert len(smtp_sink.envelopes) == 1  # The first ack went out exactly once.
    failed = json.loads(cli(config, "outbox", "list", "--status", "failed", "--json").stdout)
    assert len(failed) == 1 and failed[0]["last_error"].startswith("550")
    second = next(t for t in list_json(config) if t["subject"] == "Second")
    events = show_json(config, second["id"])["events"]
    assert any(e["action"] == "send-failed" and "550" in e["detail"]["error"] for e in events)
    # An admin can retry it; this time the server takes it.
    cli(config, "outbox", "retry", str(failed[0]["id"]))
    once(config)
    assert len(smtp_sink.wait_for(2)) == 2


def test_sigkill_between_queueing_and_sending_loses_nothing(desk, dovecot, smtp_sink, tmp_path):
    config, user = desk
    # A row claimed when the kill came stays "sending" until its lease runs out.
    config.write_text(config.read_text().replace('interval = "1s"', 'interval = "1s"\nlease = "3s"'))
    smtp_sink.stop()  # Mail can be queued but not sent.
    for i in range(5):
        dovecot.append(user, "INBOX", make_mail(frm=f"C{i} <c{i}@example.cn>", subject=f"Question {i}"))
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        wait_until(lambda: db_count(config, "select count(*) from outbox") == 5, what="five queued acks")
    finally:
        stop_daemon(daemon, signal.SIGKILL)
    assert db_count(config, "select count(*) from outbox where status = 'sent'") == 0
    smtp_sink.start()
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        envelopes = smtp_sink.wait_for(5, timeout=30)
        wait_until(lambda: db_count(config, "select count(*) from outbox where status = 'sent'") == 5,
                   timeout=60, what="every send to be recorded")
    finally:
        assert stop_daemon(daemon) == 0
    assert sorted(e.rcpt_tos[0] for e in smtp_sink.envelopes) == [f"c{i}@example.cn" for i in range(5)]
    assert len(envelopes) == 5
    assert db_count(config, "select count(*) from outbox where status = 'sent'") == 5


def test_reply_to_a_closed_ticket_reopens_within_the_window_else_opens_a_new_one(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(subject="Old problem"))
    once(config)
    close_ticket(config, timedelta(days=1))
    dovecot.append(user, "INBOX", make_mail(subject="Re: [T-1000] Old problem", body="It is back.\n"))
    once(config)
    assert [t["status"] for t in list_json(config)] == ["open"]
    close_ticket(config, timedelta(days=30))
    dovecot.append(user, "INBOX", make_mail(subject="Re: [T-1000] Old problem", body="Back again.\n"))
    once(config)
    tickets = {t["id"]: t for t in list_json(config)}
    assert tickets["T-1000"]["status"] == "closed"
    assert tickets["T-1001"]["status"] == "new"
    created = next(e for e in show_json(config, "T-1001")["events"] if e["action"] == "created")
    assert created["detail"]["follows"] == "T-1000"


def test_an_agents_out_of_office_reply_is_never_relayed(desk, dovecot, smtp_sink):
    config, user = desk
    first = make_message_id()
    dovecot.append(user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Refund", message_id=first))
    once(config)
    dovecot.append(user, "INBOX", make_mail(
        frm="Bob <bob@example.com>", subject="Automatic reply: Refund", in_reply_to=first, references=[first],
        headers={"Auto-Submitted": "auto-replied"}, body="I am out of the office until Monday.\n"))
    once(config)
    once(config)
    assert [e.rcpt_tos for e in smtp_sink.envelopes] == [["lilei@example.cn"]]  # the ack only
    t = only_ticket(config)
    assert [m["kind"] for m in t["messages"]].count("note") == 1
    assert t["first_response_at"] is None


def test_an_agents_reply_with_nothing_above_the_quote_is_not_relayed(desk, dovecot, smtp_sink):
    """Defect guarded: reply text is empty when a mail holds only a quote, and relaying that would mail
    the customer an empty answer."""
    config, user = desk
    first = make_message_id()
    dovecot.append(user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Refund", message_id=first,
                                            body="Where is my refund?\n"))
    once(config)
    dovecot.append(user, "INBOX", make_mail(
        frm="Bob <bob@example.com>", subject="Re: [T-1000] Refund", in_reply_to=first, references=[first],
        body="On Mon, 30 Nov 2026 at 09:00, Li Lei <lilei@example.cn> wrote:\n> Where is my refund?\n"))
    once(config)
    assert [e.rcpt_tos for e in smtp_sink.envelopes] == [["lilei@example.cn"]]  # the ack only
    actions = [e["action"] for e in only_ticket(config)["events"]]
    assert "relay-skipped" in actions and "relay" not in actions
