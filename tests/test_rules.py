"""Tests for inboxd.desk.autoreply: which inbound mail may get an automatic acknowledgement, and why not."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from inboxd.mail.message import InboundMessage, parse_message
from inboxd.desk.autoreply import (
    AUTO_REPLY_RULES,
    AckContext,
    Verdict,
    is_automatic,
    is_our_message_id,
    loop_header_value,
    may_auto_reply,
)
from inboxd.testing.mail import make_mail

OUR_ID = "<inboxd.20240514.42.c0ffee@example.com>"
CTX = AckContext(
    own_addresses=frozenset({"support@example.com", "billing@example.com", "alice@example.com"}),
    own_domains_for_ids=frozenset({"example.com"}),
    loop_header_value=loop_header_value("support@example.com"),
    sent_last_hour=0,
    sent_last_day=0,
    budget_per_hour=3,
    budget_per_day=10,
)


def parsed(**kwargs) -> InboundMessage:
    return parse_message(make_mail(**kwargs))


def test_normal_customer_mail_is_allowed():
    assert may_auto_reply(parsed(), CTX) == Verdict(True, "", "")


def test_customer_reply_to_our_acknowledgement_is_allowed():
    msg = parsed(subject="Re: [#1024] Cannot log in", in_reply_to=OUR_ID, references=[OUR_ID])
    assert msg.in_reply_to == (OUR_ID.strip("<>"),)
    assert may_auto_reply(msg, CTX).allowed is True


@pytest.mark.parametrize("kwargs, rule, reason", [
    ({"headers": {"Auto-Submitted": "auto-replied"}}, "auto_submitted", 'Auto-Submitted is "auto-replied"'),
    ({"headers": {"Auto-Submitted": "auto-generated; owner-email=x@example.org"}}, "auto_submitted",
     'Auto-Submitted is "auto-generated; owner-email=x@example.org"'),
    ({"headers": {"Precedence": "bulk"}}, "precedence", 'Precedence is "bulk"'),
    ({"headers": {"Precedence": "Junk"}}, "precedence", 'Precedence is "junk"'),
    ({"headers": {"Precedence": "list"}}, "precedence", 'Precedence is "list"'),
    ({"headers": {"Precedence": "auto_reply"}}, "precedence", 'Precedence is "auto_reply"'),
    ({"headers": {"Precedence": "auto-reply"}}, "precedence", 'Precedence is "auto-reply"'),
    ({"headers": {"List-Id": "Users <users.example.org>"}}, "mailing_list", 'List-Id is "Users <users.example.org>"'),
    ({"headers": {"List-Unsubscribe": "<mailto:leave@example.org>"}}, "mailing_list", "List-Unsubscribe is present"),
    ({"headers": {"X-Auto-Response-Suppress": "All"}}, "auto_response_suppress", 'X-Auto-Response-Suppress is "All"'),
    ({"headers": {"X-Auto-Response-Suppress": "DR, OOF"}}, "auto_response_suppress",
     'X-Auto-Response-Suppress is "DR, OOF"'),
    ({"headers": {"X-Auto-Response-Suppress": "RN autoreply"}}, "auto_response_suppress",
     'X-Auto-Response-Suppress is "RN autoreply"'),
    ({"headers": {"Return-Path": "<>"}}, "mailer_daemon", "the return path is null (<>)"),
    ({"frm": "Mail Delivery System <MAILER-DAEMON@mx.example.org>"}, "mailer_daemon",
     "the sender mailer-daemon@mx.example.org is the mail system"),
    ({"frm": "postmaster@example.cn"}, "mailer_daemon", "the sender postmaster@example.cn is the mail system"),
    ({"headers": {"Return-Path": "<Postmaster@mx.example.org>"}}, "mailer_daemon",
     "the return path postmaster@mx.example.org is the mail system"),
    ({"frm": "Shop <no-reply@shop.example>"}, "noreply_sender", "the sender no-reply@shop.example does not take replies"),
    ({"frm": "NoReply@shop.example"}, "noreply_sender", "the sender noreply@shop.example does not take replies"),
    ({"frm": "do-not-reply@bank.example"}, "noreply_sender", "the sender do-not-reply@bank.example does not take replies"),
    ({"frm": "DoNotReply@bank.example"}, "noreply_sender", "the sender donotreply@bank.example does not take replies"),
    ({"frm": "no_reply@bank.example"}, "noreply_sender", "the sender no_reply@bank.example does not take replies"),
    ({"frm": "bounce@esp.example"}, "noreply_sender", "the sender bounce@esp.example does not take replies"),
    ({"frm": "bounces+1234-abcd@esp.example"}, "noreply_sender",
     "the sender bounces+1234-abcd@esp.example does not take replies"),
    ({"frm": "notifications@tracker.example"}, "noreply_sender",
     "the sender notifications@tracker.example does not take replies"),
    ({"frm": "notification@tracker.example"}, "noreply_sender",
     "the sender notification@tracker.example does not take replies"),
    ({"headers": {"Reply-To": "noreply@forms.example"}}, "noreply_sender",
     "the sender noreply@forms.example does not take replies"),
    ({"frm": "Alice <Alice@Example.com>"}, "own_address", "the sender alice@example.com is one of our own addresses"),
    ({"frm": "support@example.com"}, "own_address", "the sender support@example.com is one of our own addresses"),
    ({"headers": {"X-Inboxd-Loop": "inboxd; support@other.example"}}, "loop_header",
     'X-Inboxd-Loop is "inboxd; support@other.example"'),
    ({"headers": {"X-Inboxd-Loop": CTX.loop_header_value}}, "loop_header",
     'X-Inboxd-Loop is "inboxd; support@example.com"'),
    ({"message_id": OUR_ID}, "own_message_id",
     "the Message-ID <inboxd.20240514.42.c0ffee@example.com> is ours: our own mail came back"),
])
def test_each_rule_refuses_its_case(kwargs, rule, reason):
    assert may_auto_reply(parsed(**kwargs), CTX) == Verdict(False, rule, reason)


@pytest.mark.parametrize("kwargs, rule, reason", [
    ({"headers": {"X-Precedence": "bulk"}}, "precedence", 'X-Precedence is "bulk"'),
    ({"headers": {"List-Post": "<mailto:users@lists.example.org>"}}, "mailing_list",
     'List-Post is "<mailto:users@lists.example.org>"'),
    ({"headers": {"X-ML-Name": "elena"}}, "mailing_list", 'X-ML-Name is "elena"'),
    ({"headers": {"X-Autoreply": "yes"}}, "autoreply_headers", 'X-AutoReply is "yes"'),
    ({"headers": {"X-Loop": "elena@ml.example.jp"}}, "loop_guard", 'X-Loop is "elena@ml.example.jp"'),
    ({"headers": {"Feedback-ID": "1:2:3:esp"}}, "bulk_sender", 'Feedback-ID is "1:2:3:esp": a bulk sender\'s campaign mail'),
    ({"headers": {"X-Failed-Recipients": "gone@example.org"}}, "failed_recipients",
     'X-Failed-Recipients is "gone@example.org": a bounce'),
    ({"frm": "users-request@lists.example.org"}, "robot_sender",
     "the sender users-request@lists.example.org is a list manager's or reporting robot's address"),
    ({"frm": "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@corp.example"}, "mailer_daemon",
     "the sender microsoftexchange329e71ec88ae4615bbc36ab6ce41109e@corp.example is the mail system"),
])
def test_each_new_rule_refuses_its_case(kwargs, rule, reason):
    """Issue "Round 2, 4 of 8", part 3: the header families that let automatic mail through."""
    assert may_auto_reply(parsed(**kwargs), CTX) == Verdict(False, rule, reason)


@pytest.mark.parametrize("kwargs", [
    {"headers": {"X-Autoreply": "no"}},
    {"headers": {"X-Spam-Flag": "YES"}},
    {"headers": {"X-Mailer": "Microsoft Outlook 16.0"}},
    {"frm": "postmaster-team-lead@customer.example"},
    {"frm": "it-admin@customer.example"},
    {"headers": {"Auto-Submitted": "no"}},
    {"headers": {"Precedence": "first-class"}},
    {"headers": {"X-Auto-Response-Suppress": "DR, RN, NRN"}},
    {"headers": {"Return-Path": "<lilei@example.cn>"}},
    {"frm": "Noah <noah@example.cn>"},
    {"frm": "bouncer@club.example"},
    {"frm": "support@other.example"},
    {"message_id": "<inboxd.1.2@other.example>"},
    {"message_id": "<20240514.1@example.com>"},
])
def test_near_misses_are_allowed(kwargs):
    assert may_auto_reply(parsed(**kwargs), CTX).allowed is True


def test_delivery_status_report_from_an_ordinary_address():
    raw = (b"From: Relay <relay@mail.example.org>\r\nTo: support@example.com\r\nSubject: Report\r\n"
           b'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
           b"--R\r\nContent-Type: text/plain\r\n\r\nDelivered.\r\n"
           b"--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.example.org\r\n\r\n"
           b"Final-Recipient: rfc822; someone@example.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n--R--\r\n")
    verdict = may_auto_reply(parse_message(raw), CTX)
    assert verdict == Verdict(False, "delivery_status", "the mail is a delivery status report")


def test_mail_without_any_sender_address():
    msg = parse_message(b"From: MAILER-DAEMON\r\nTo: support@example.com\r\nSubject: Returned mail\r\n\r\nx")
    assert msg.from_ is None
    assert may_auto_reply(msg, CTX) == Verdict(False, "no_sender", "the mail has no sender address to reply to")


def test_bouncing_sender():
    verdict = may_auto_reply(parsed(), replace(CTX, sender_bouncing=True))
    assert verdict == Verdict(False, "sender_bouncing", "the sender's address bounced before")


@pytest.mark.parametrize("hour, day, allowed, reason", [
    (2, 2, True, ""),
    (3, 3, False, "3 auto-replies went to this address in the last hour (budget 3)"),
    (4, 4, False, "4 auto-replies went to this address in the last hour (budget 3)"),
    (0, 9, True, ""),
    (0, 10, False, "10 auto-replies went to this address in the last 24 hours (budget 10)"),
])
def test_budget_edges(hour, day, allowed, reason):
    verdict = may_auto_reply(parsed(), replace(CTX, sent_last_hour=hour, sent_last_day=day))
    assert verdict == Verdict(allowed, "" if allowed else "budget", reason)


@pytest.mark.parametrize("minute, hour, reason", [
    (4, 29, ""),
    (5, 5, "5 auto-replies went to addresses at bots.example in the last minute (ceiling 5 per domain)"),
    (0, 30, "30 auto-replies went to addresses at bots.example in the last hour (ceiling 30 per domain)"),
])
def test_domain_ceiling_edges(minute, hour, reason):
    """Defect: an autoresponder answering from ever new addresses at one domain got an ack each time."""
    ctx = replace(CTX, domain="bots.example", sent_domain_last_minute=minute, sent_domain_last_hour=hour,
                  budget_domain_per_minute=5, budget_domain_per_hour=30)
    assert may_auto_reply(parsed(), ctx) == Verdict(not reason, "budget" if reason else "", reason)


def test_a_shared_provider_domain_has_no_domain_ceiling():
    """gmail.com is millions of people: with no ceiling configured for it, only the per-address budget counts."""
    ctx = replace(CTX, domain="gmail.com", sent_domain_last_minute=500, sent_domain_last_hour=5000)
    assert may_auto_reply(parsed(), ctx).allowed is True


def test_budget_bounds_a_lying_autoresponder():
    """A naive robot answers every mail at once with a fresh subject and clean headers."""
    start = datetime(2024, 5, 14, 8, 0, tzinfo=timezone.utc)
    sent: list[datetime] = []
    for minute in range(0, 24 * 60, 2):
        now = start + timedelta(minutes=minute)
        msg = parsed(frm="Robot <robot@example.net>", subject=f"Your ticket {minute} was received")
        ctx = replace(CTX, sent_last_hour=sum(now - t < timedelta(hours=1) for t in sent),
                      sent_last_day=sum(now - t < timedelta(days=1) for t in sent))
        if may_auto_reply(msg, ctx).allowed:
            sent.append(now)
    assert len(sent) == 10
    assert all(sum(0 <= (t - s).total_seconds() < 3600 for s in sent) <= 3 for t in sent)


def test_first_objection_in_rule_order_decides():
    msg = parsed(frm="noreply@shop.example", headers={"Precedence": "bulk", "Auto-Submitted": "auto-generated"})
    assert may_auto_reply(msg, CTX).rule == "auto_submitted"
    names = [rule.__name__ for rule in AUTO_REPLY_RULES]
    assert names.index("auto_submitted") < names.index("precedence") < names.index("noreply_sender")
    assert names[-1] == "budget"


def test_is_automatic_reads_the_mail_alone():
    assert is_automatic(parsed()) is None
    assert is_automatic(parsed(headers={"Precedence": "bulk"})) == 'Precedence is "bulk"'
    assert is_automatic(parsed(frm="no-reply@shop.example")) == "the sender no-reply@shop.example does not take replies"
    # The subject and text count too (tests/test_automatic_mail.py has the many vendors' formats).
    assert is_automatic(parsed(subject="Abwesenheitsnotiz: Ihre Anfrage")) == (
        'the subject "Abwesenheitsnotiz: Ihre Anfrage" carries the auto-reply marker "Abwesenheitsnotiz"')
    # Our own address and our own ids need the context: not a header fact.
    assert is_automatic(parsed(frm="support@example.com", message_id=OUR_ID)) is None


@pytest.mark.parametrize("message_id, ours", [
    (OUR_ID, True),
    (OUR_ID.strip("<>"), True),
    ("<INBOXD.1.a@Example.COM>", True),
    ("<inboxd.1.a@other.example>", False),
    ("<mail.1.a@example.com>", False),
    ("<inboxd.1.a>", False),
    ("", False),
])
def test_is_our_message_id(message_id, ours):
    assert is_our_message_id(message_id, frozenset({"example.com"})) is ours


def test_loop_header_value():
    assert loop_header_value("Support@Example.com") == "inboxd; support@example.com"
