"""Tests for inboxd.mail.bounces: which mail is a bounce, about whom, and whether for good."""

from __future__ import annotations

import gzip
import json
import mailbox
from pathlib import Path

import pytest

from inboxd.mail import bounces
from inboxd.mail.bounces import Bounce, detect_bounce, notice_reason
from inboxd.mail.message import parse_message
from inboxd.testing.mail import make_mail

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
FLUFL = CORPUS / "wRAR+flufl.bounce"
MBOX = CORPUS / "rth+jwzthreading/jwzthreading/tests/data/fedora-devel-mailman/2010-January.txt.gz"

RETURNED_HEADERS = (b"From: Support <support@example.com>\r\nTo: gone@example.org\r\nSubject: Re: [#1024] order\r\n"
                    b"Message-ID: <inboxd.42.c0ffee@example.com>\r\n")


def dsn(action: bytes, status: bytes, diagnostic: bytes, subject: bytes) -> bytes:
    """A Postfix delivery status notification for gone@example.org, as Postfix writes it."""
    return (b"Return-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
            b"To: support@example.com\r\nSubject: " + subject + b"\r\nAuto-Submitted: auto-replied\r\n"
            b"Message-Id: <20240514103000.4B1C2@mx.example.org>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="4B1C2.1715682600/mx.example.org"\r\n\r\n'
            b"This is a MIME-encapsulated message.\r\n\r\n--4B1C2.1715682600/mx.example.org\r\n"
            b"Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"This is the mail system at host mx.example.org.\r\n\r\n"
            b"I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n"
            b"--4B1C2.1715682600/mx.example.org\r\nContent-Description: Delivery report\r\n"
            b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n"
            b"X-Postfix-Queue-ID: 4B1C2\r\nArrival-Date: Tue, 14 May 2024 10:29:58 +0000 (UTC)\r\n\r\n"
            b"Final-Recipient: rfc822; gone@example.org\r\nOriginal-Recipient: rfc822;Gone@Example.org\r\n"
            b"Action: " + action + b"\r\nStatus: " + status + b"\r\nRemote-MTA: dns; mail.example.org\r\n"
            b"Diagnostic-Code: " + diagnostic + b"\r\n\r\n"
            b"--4B1C2.1715682600/mx.example.org\r\nContent-Description: Undelivered Message Headers\r\n"
            b"Content-Type: text/rfc822-headers\r\n\r\n" + RETURNED_HEADERS +
            b"\r\n--4B1C2.1715682600/mx.example.org--\r\n")


def test_postfix_dsn_permanent():
    raw = dsn(b"failed", b"5.1.1",
              b"smtp; 550 5.1.1 <gone@example.org>: Recipient address\r\n    rejected: User unknown",
              b"Undelivered Mail Returned to Sender")
    assert detect_bounce(raw) == Bounce(
        recipients=("gone@example.org",),
        permanent=True,
        original_message_id="inboxd.42.c0ffee@example.com",
        reason="550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown",
    )
    # The parsed message may be passed in; the answer is the same.
    assert detect_bounce(raw, parse_message(raw)) == detect_bounce(raw)


def test_delayed_dsn_is_temporary():
    raw = dsn(b"delayed", b"4.4.1",
              b"X-Postfix; connect to mail.example.org[192.0.2.7]:25: Connection timed out",
              b"Delayed Mail (still being retried)")
    bounce = detect_bounce(raw)
    assert bounce is not None
    assert (bounce.recipients, bounce.permanent) == (("gone@example.org",), False)
    assert bounce.reason == "connect to mail.example.org[192.0.2.7]:25: Connection timed out"


def test_success_dsn_is_not_a_bounce():
    raw = dsn(b"delivered", b"2.0.0", b"smtp; 250 2.0.0 Ok", b"Successful Mail Delivery Report")
    assert detect_bounce(raw) is None


def test_exim_mail_delivery_failed_permanent():
    body = ("This message was created automatically by mail delivery software.\n\n"
            "A message that you sent could not be delivered to one or more of its\n"
            "recipients. This is a permanent error. The following address(es) failed:\n\n"
            "  wang.fang@example.net\n"
            "    host mx.example.net [192.0.2.9]\n"
            "    SMTP error from remote mail server after RCPT TO:<wang.fang@example.net>:\n"
            "    550 5.1.1 <wang.fang@example.net>: Recipient address rejected: User unknown\n\n"
            "------ This is a copy of the message, including all the headers. ------\n\n"
            "Return-path: <support@example.com>\n"
            "Message-ID: <inboxd.7.beef@example.com>\n"
            "Subject: Re: [#77] refund\n\nYour refund was sent.\n")
    raw = make_mail(frm="Mail Delivery System <Mailer-Daemon@mail.example.net>",
                    subject="Mail delivery failed: returning message to sender", body=body,
                    headers={"Return-Path": "<>", "X-Failed-Recipients": "wang.fang@example.net",
                             "Auto-Submitted": "auto-replied"})
    bounce = detect_bounce(raw)
    assert bounce is not None
    assert bounce.recipients == ("wang.fang@example.net",)
    assert bounce.permanent is True
    assert bounce.original_message_id == "inboxd.7.beef@example.com"


def test_chinese_bounce_from_postmaster():
    body = ("您好，您发送的邮件被退回。\n以下是该邮件的相关信息：\n"
            "----------------------------------------\n"
            "主题：Re: [#1024] 订单问题\n收件人：zhao.lei@example.cn\n时间：2024-05-14 10:30:00\n"
            "----------------------------------------\n"
            "退信原因：收件人邮箱不存在（550 User not found）\n")
    raw = make_mail(frm="系统管理员 <postmaster@mail.example.cn>", subject="系统退信", body=body, charset="gbk")
    assert detect_bounce(raw) == Bounce(("zhao.lei@example.cn",), True, None, "收件人邮箱不存在（550 User not found）")


def test_chinese_temporary_bounce():
    body = "您的邮件暂时无法投递，系统将稍后重试。\n收件人：qian@example.cn\n原因：451 4.7.1 Try again later\n"
    raw = make_mail(frm="PostMaster@qq.example", subject="邮件投递失败", body=body)
    bounce = detect_bounce(raw)
    assert bounce is not None
    assert (bounce.recipients, bounce.permanent) == (("qian@example.cn",), False)


def test_gmail_prose_bounce_without_report_part():
    body = ("Address not found\n\nYour message wasn't delivered to Nobody@Example.org because the address "
            "couldn't be found.\n\nThe response was:\n\n550 5.1.1 The email account that you tried to reach "
            "does not exist.\n")
    raw = make_mail(frm="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
                    subject="Delivery Status Notification (Failure)", body=body)
    assert detect_bounce(raw) == Bounce(("nobody@example.org",), True, None,
                                        "550 5.1.1 The email account that you tried to reach does not exist.")


@pytest.mark.parametrize("kwargs", [
    {},
    {"subject": "Fwd: Undelivered Mail Returned to Sender",
     "body": "Hi, my mail to you bounced, see below.\n\nFinal-Recipient: rfc822; support@example.com\n"},
    {"subject": "为什么我的邮件总是退信？", "body": "收件人：support@example.com 总是退信。\n", "charset": "gbk"},
    {"frm": "Bob <bob@example.org>", "subject": "Out of Office: Re: [#1024] order",
     "body": "I am out of the office until Monday and will reply when I am back.\n",
     "headers": {"Auto-Submitted": "auto-replied", "Return-Path": "<>", "X-Auto-Response-Suppress": "All"}},
    {"frm": "Carol <carol@example.org>", "subject": "Automatic reply: refund",
     "body": "Thank you for your message. I am on leave.\n", "headers": {"Precedence": "auto_reply"}},
    {"frm": "Postmaster <postmaster@example.org>", "subject": "Your SPF record",
     "body": "Hello, your SPF record lists a server we cannot reach.\n"},
])
def test_ordinary_and_out_of_office_mail_is_not_a_bounce(kwargs):
    assert detect_bounce(make_mail(**kwargs)) is None


@pytest.mark.parametrize("kwargs", [
    {"subject": "Undeliverable parcel, order 1234", "body": "The courier says my address is undeliverable.\n"},
    {"subject": "Delivery failure", "body": "Hello,\n\nmy mails to you come back: 550 5.1.1 user unknown.\n"},
    {"subject": "Returned mail question", "body": "Why do my mails to you come back?\n"},
    {"subject": "邮件投递失败怎么办", "body": "您好，我给你们发邮件总是投递失败。\n"},
])
def test_bounce_words_in_a_customer_subject_are_not_a_bounce(kwargs):
    """Defect: bounce words at the start of a subject alone made a customer's mail a bounce
    (filed without an acknowledgement); the mail must read as a notice now."""
    raw = make_mail(**kwargs)
    assert detect_bounce(raw) is None
    assert notice_reason(parse_message(raw)) is None


@pytest.mark.parametrize("subject, body, reason", [
    ("Unzustellbar: Re: [#1024] Ihre Bestellung", "Ihre Nachricht hat einige oder alle Empfänger nicht erreicht.",
     'the subject "Unzustellbar: Re: [#1024] Ihre Bestellung" is a delivery failure notice'),
    ("Re: [#1024]", "This is the mail system at host mx.example.org.\n\nI'm sorry to have to inform you ...",
     'the text opens as a delivery failure notice: "This is the mail system at host"'),
    ("Delivery failure", "Message from relay.example:\n550 5.1.1 <gone@example.org> User unknown",
     'the subject "Delivery failure" speaks of a failed delivery; the text has mail-system wording '
     '("550 5.1.1"); the sender Mail System <mail@relay.example> looks like the mail system'),
])
def test_notice_reason_says_why(subject, body, reason):
    raw = make_mail(frm="Mail System <mail@relay.example>", subject=subject, body=body)
    assert notice_reason(parse_message(raw)) == reason


@pytest.mark.parametrize("raw", [b"", b"\x00\xff" * 50, b"no headers at all", b"From: <>\r\n\r\n",
                                 b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n--x"])
def test_never_raises(raw):
    result = detect_bounce(raw)
    assert result is None or isinstance(result, Bounce)


def test_broken_flufl_detector_does_not_lose_a_dsn(monkeypatch):
    def broken(msg):
        raise RuntimeError("detector bug")

    monkeypatch.setattr(bounces, "all_failures", broken)
    raw = dsn(b"failed", b"5.1.1", b"smtp; 550 5.1.1 User unknown", b"Undelivered Mail Returned to Sender")
    assert detect_bounce(raw).recipients == ("gone@example.org",)
    plain = make_mail(frm="MAILER-DAEMON@mx.example.org", subject="Returned mail: see transcript",
                      body="The following addresses had permanent fatal errors\n<a@example.org>\n")
    assert detect_bounce(plain).recipients == ("a@example.org",)


# --- Corpus -------------------------------------------------------------------

@pytest.mark.skipif(not FLUFL.is_dir(), reason=f"no corpus at {FLUFL}")
def test_flufl_bounce_corpus():
    expected = json.loads((FLUFL / "EXPECTED.derived.json").read_text())["cases"]
    hits, misses = 0, []
    for relative, entries in sorted(expected.items()):
        # Several detectors may be named for one file; the failed set is what any of them found.
        wanted = {address.lower() for entry in entries for address in entry["expected_addresses"]}
        permanent = entries[0]["failure"] == "permanent"
        found = detect_bounce((FLUFL / relative).read_bytes())
        if found is not None and set(found.recipients) == wanted and found.permanent is permanent:
            hits += 1
        else:
            misses.append((relative, sorted(wanted), found))
    share = hits / len(expected)
    print(f"flufl.bounce corpus: {hits}/{len(expected)} = {share:.3f} exact addresses and permanence")
    # Measured: 101/101.  simple_20, a reply-styled "RE: ... non remis" from an ordinary address,
    # is found since notices are read by their opening sentence too.
    assert share >= 0.99, misses


@pytest.mark.skipif(not MBOX.is_file(), reason=f"no corpus at {MBOX}")
def test_mailing_list_archive_has_no_bounces(tmp_path: Path):
    unpacked = tmp_path / "archive.mbox"
    unpacked.write_bytes(gzip.decompress(MBOX.read_bytes()))
    messages = [m.as_bytes() for m in mailbox.mbox(unpacked)]
    assert len(messages) == 292
    assert [i for i, raw in enumerate(messages) if detect_bounce(raw) is not None] == []
