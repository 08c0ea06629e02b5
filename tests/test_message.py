"""Tests for inboxd.mail.message: raw bytes to InboundMessage, charsets first."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from inboxd.mail import message as message_module
from inboxd.mail.message import (
    Address,
    MalformedMessage,
    extract_message_id,
    parse_message,
)

ORDER = "您好，我的订单没有收到"
HEAD = b"From: Li Wei <LiWei@Example.CN>\r\nTo: support@example.com\r\n"


def mail(headers: bytes, body: bytes = b"body\r\n") -> bytes:
    """Literal bytes: a From/To block, extra headers, a blank line, the body."""
    return HEAD + headers + b"\r\n" + body


def b_word(text: str, charset: str) -> bytes:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?=".encode()


def q_word(text: str, charset: str) -> bytes:
    encoded = "".join(f"={b:02X}" for b in text.encode(charset))
    return f"=?{charset}?Q?{encoded}?=".encode()


# --- Chinese, Japanese and mislabelled charsets -----------------------------

def test_gbk_subject_b_and_q_words_and_gbk_body():
    raw_b = mail(b"Subject: " + b_word(ORDER, "gbk") + b"\r\nContent-Type: text/plain; charset=gbk\r\n",
                 "订单号 12345 还没有发货".encode("gbk"))
    parsed = parse_message(raw_b)
    assert parsed.subject == ORDER
    assert parsed.text == "订单号 12345 还没有发货"
    assert parsed.from_ == Address("Li Wei", "liwei@example.cn")

    raw_q = mail(b"Subject: Re: " + q_word(ORDER, "gb2312") + b"\r\n")
    assert parse_message(raw_q).subject == "Re: " + ORDER


def test_word_split_inside_a_multibyte_character_is_joined():
    data = ORDER.encode("gbk")
    first, second = base64.b64encode(data[:5]).decode(), base64.b64encode(data[5:]).decode()
    raw = mail(f"Subject: =?GBK?B?{first}?=\r\n =?GBK?B?{second}?=\r\n".encode())
    assert parse_message(raw).subject == ORDER


def test_gb18030_body_with_character_outside_gbk():
    text = "收到了 € 和 𠀀 字"  # U+20000 exists only in GB18030's four-byte range.
    with pytest.raises(UnicodeEncodeError):
        text.encode("gbk")
    raw = mail(b"Content-Type: text/plain; charset=GB18030\r\n", text.encode("gb18030"))
    assert parse_message(raw).text == text


def test_gb2312_label_on_gbk_only_characters():
    text = "镕基的訂單"  # Traditional forms and 镕 are in GBK but not in GB2312.
    raw = mail(b"Subject: " + b_word(text, "gbk").replace(b"gbk", b"gb2312") +
               b"\r\nContent-Type: text/plain; charset=gb2312\r\n", text.encode("gbk"))
    parsed = parse_message(raw)
    assert parsed.subject == text
    assert parsed.text == text


def test_big5_subject_and_body():
    text = "您好，我的訂單沒有收到"
    raw = mail(b"Subject: " + b_word(text, "big5") + b"\r\nContent-Type: text/plain; charset=big5\r\n",
               text.encode("big5"))
    parsed = parse_message(raw)
    assert parsed.subject == text
    assert parsed.text == text


def test_big5_label_on_hkscs_character():
    text = "香港的嘅字"  # 嘅 is in Big5-HKSCS, not in plain Big5.
    raw = mail(b"Content-Type: text/plain; charset=big5\r\n", text.encode("big5hkscs"))
    assert parse_message(raw).text == text


def test_iso_2022_jp_subject_and_body():
    subject, body = "注文が届きません", "こんにちは、注文番号は１２３です。"
    raw = mail(b"Subject: " + b_word(subject, "iso-2022-jp") +
               b"\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n", body.encode("iso-2022-jp"))
    parsed = parse_message(raw)
    assert parsed.subject == subject
    assert parsed.text == body


def test_iso_2022_jp_with_windows_extensions():
    # ① (NEC row 13) and half-width ｱ as Outlook sends them; no Python
    # ISO-2022-JP codec decodes ① on its own.
    body = b"\x1b$B-!\x1b(B and \x1b(I1\x1b(B ok"
    raw = mail(b"Content-Type: text/plain; charset=iso-2022-jp\r\n", body)
    assert parse_message(raw).text == "① and ｱ ok"


def test_iso_8859_1_label_on_utf8_bytes():
    raw = mail(b"Subject: =?iso-8859-1?B?" + base64.b64encode("Café crème".encode()) +
               b"?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\n", "Grüße aus Köln".encode())
    parsed = parse_message(raw)
    assert parsed.subject == "Café crème"
    assert parsed.text == "Grüße aus Köln"


def test_real_latin1_still_decodes_as_latin1():
    raw = mail(b"Content-Type: text/plain; charset=iso-8859-1\r\n", "Die Hasen und die Frösche".encode("latin-1"))
    assert parse_message(raw).text == "Die Hasen und die Frösche"


def test_gb2312_label_on_utf8_bytes():
    raw = mail(b"Content-Type: text/plain; charset=gb2312\r\n", ORDER.encode("utf-8"))
    assert parse_message(raw).text == ORDER


def test_utf8_and_latin1_labels_on_gbk_bytes():
    for label in (b"utf-8", b"iso-8859-1", b"us-ascii"):
        raw = mail(b"Content-Type: text/plain; charset=" + label + b"\r\n", ORDER.encode("gbk"))
        assert parse_message(raw).text == ORDER, label


def test_undeclared_8bit_gbk_body_and_raw_gbk_subject():
    raw = mail(b"Subject: " + ORDER.encode("gbk") + b"\r\nContent-Transfer-Encoding: 8bit\r\n",
               "请尽快帮我处理，谢谢！".encode("gbk"))
    parsed = parse_message(raw)
    assert parsed.subject == ORDER
    assert parsed.text == "请尽快帮我处理，谢谢！"


def test_raw_gbk_display_name_and_unknown_8bit_word():
    raw = (b"From: " + "李伟".encode("gbk") + b" <li@example.cn>\r\nTo: a@example.com\r\n"
           b"Subject: =?unknown-8bit?B?" + base64.b64encode(ORDER.encode("gbk")) + b"?=\r\n\r\nx\r\n")
    parsed = parse_message(raw)
    assert parsed.from_ == Address("李伟", "li@example.cn")
    assert parsed.subject == ORDER


def test_stdlib_built_chinese_mail():
    msg = MIMEText("退款什么时候到账？", "plain", "gbk")
    msg["Subject"] = Header("退款问题", "gbk")
    msg["From"] = "wang@example.cn"
    parsed = parse_message(msg.as_bytes())
    assert parsed.subject == "退款问题"
    assert parsed.text == "退款什么时候到账？"


# --- Body selection ----------------------------------------------------------

def test_html_only_mail_becomes_readable_text():
    html = ('<html><head><style>p {color: red}</style></head><body><p>您好，<b>订单</b>没有收到。</p>'
            '<p>See <a href="https://example.com/track">tracking</a></p></body></html>')
    raw = mail(b"Content-Type: text/html; charset=utf-8\r\n", html.encode())
    parsed = parse_message(raw)
    assert parsed.html_only is True
    assert "您好，订单没有收到。" in parsed.text
    assert "[tracking](https://example.com/track)" in parsed.text
    assert "<p>" not in parsed.text and "color: red" not in parsed.text


def test_multipart_alternative_prefers_text_plain():
    msg = MIMEMultipart("alternative")
    msg["From"] = "a@example.com"
    msg.attach(MIMEText("plain version\r\nline two", "plain", "utf-8"))
    msg.attach(MIMEText("<p>html version</p>", "html", "utf-8"))
    parsed = parse_message(msg.as_bytes())
    assert parsed.text == "plain version\nline two"
    assert parsed.html_only is False
    assert parsed.attachments == ()


def test_nul_bytes_stripped_and_crlf_normalised():
    parsed = parse_message(mail(b"", b"one\x00\r\ntwo\r\n"))
    assert parsed.text == "one\ntwo\n"


def test_attachment_with_rfc2231_chinese_filename_and_size_limit():
    msg = MIMEMultipart()
    msg["From"] = "a@example.com"
    msg.attach(MIMEText("see attached", "plain"))
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 8
    part = MIMEApplication(pdf, "pdf")
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "发票 2024.pdf"))
    msg.attach(part)
    gbk_part = MIMEApplication(b"x" * 10, "octet-stream")
    gbk_part.add_header("Content-Disposition", "attachment", filename=("gb2312", "", "合同.docx"))
    msg.attach(gbk_part)
    image = MIMEApplication(b"\x89PNG....", "png")
    image.replace_header("Content-Type", "image/png")
    image.add_header("Content-Disposition", "inline")
    msg.attach(image)
    raw = msg.as_bytes()
    assert b"filename*=" in raw

    parsed = parse_message(raw)
    assert parsed.text == "see attached"
    first, second, third = parsed.attachments
    assert (first.filename, first.content_type, first.size, first.content) == ("发票 2024.pdf", "application/pdf", len(pdf), pdf)
    assert first.sha256 == hashlib.sha256(pdf).hexdigest()
    assert first.inline is False
    assert second.filename == "合同.docx"
    assert (third.content_type, third.inline, third.filename) == ("image/png", True, None)

    limited = parse_message(raw, max_attachment_bytes=100)
    big = limited.attachments[0]
    assert big.content is None
    assert (big.size, big.sha256) == (len(pdf), hashlib.sha256(pdf).hexdigest())
    assert limited.attachments[1].content == b"x" * 10


def test_rfc2047_encoded_filename_outlook_style():
    name = b_word("报价单.xlsx", "gb2312").decode()
    raw = (HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
           b'--b\r\nContent-Type: application/vnd.ms-excel; name="' + name.encode() + b'"\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n")
    parsed = parse_message(raw)
    assert parsed.attachments[0].filename == "报价单.xlsx"
    assert parsed.attachments[0].content == b"\x00\x01\x02"


# --- Automatic-mail facts -----------------------------------------------------

def test_auto_facts_from_headers():
    raw = mail(b"Auto-Submitted: Auto-Replied\r\nPrecedence: BULK\r\nList-Id: Support <support.example.com>\r\n"
               b"List-Unsubscribe: <mailto:leave@example.com>\r\nX-Auto-Response-Suppress: All\r\n"
               b"Return-Path: <>\r\nX-Inboxd-Loop: support@example.com\r\n")
    auto = parse_message(raw).auto
    assert auto.auto_submitted == "auto-replied"
    assert auto.precedence == "bulk"
    assert auto.list_id == "Support <support.example.com>"
    assert auto.list_unsubscribe is True
    assert auto.auto_response_suppress == "All"
    assert auto.return_path == ""
    assert auto.loop == "support@example.com"
    assert auto.delivery_status is False


def test_auto_facts_absent():
    auto = parse_message(mail(b"Return-Path: <Bounce@Example.COM>\r\n")).auto
    assert auto.return_path == "bounce@example.com"
    assert (auto.auto_submitted, auto.precedence, auto.list_id, auto.loop) == (None, None, None, None)
    assert auto.list_unsubscribe is False
    assert parse_message(mail(b"")).auto.return_path is None


def test_delivery_status_report():
    raw = (b"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\nTo: support@example.com\r\n"
           b"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
           b"--R\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n"
           b"--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
           b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
           b"--R\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.com\r\nSubject: Re: order\r\n"
           b"--R--\r\n")
    parsed = parse_message(raw)
    assert parsed.auto.delivery_status is True
    assert parsed.text.startswith("I'm sorry to have to inform you")
    dsn = [a for a in parsed.attachments if a.content_type == "message/delivery-status"]
    assert dsn and b"Final-Recipient: rfc822; gone@example.org" in dsn[0].content


# --- Ids, addresses, dates ----------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    (b"<a1@b.example>", "a1@b.example"),
    (b"a1@b.example", "a1@b.example"),
    (b"  (comment) <a1@b.example>  (more)", "a1@b.example"),
    (b"<a1@b.example> <second@b.example>", "a1@b.example"),
    (b"\r\n <a1@b.example>", "a1@b.example"),
    (b"< a1@b.example >", "a1@b.example"),
    (b"", None),
    (b"<>", None),
])
def test_message_id_forms(header, expected):
    raw = mail(b"Message-ID: " + header + b"\r\n")
    assert parse_message(raw).message_id == expected
    assert extract_message_id(raw) == expected


def test_message_id_absent():
    assert parse_message(mail(b"")).message_id is None


def test_in_reply_to_and_references():
    raw = mail(b"In-Reply-To: <p@x.example> (Li Wei's message of Tuesday)\r\n"
               b"References: <r1@x.example>\r\n <r2@x.example>,<r1@x.example> junk <p@x.example>\r\n")
    parsed = parse_message(raw)
    assert parsed.in_reply_to == ("p@x.example",)
    assert parsed.references == ("r1@x.example", "r2@x.example", "p@x.example")
    bare = parse_message(mail(b"References: r1@x.example, r2@x.example\r\n"))
    assert bare.references == ("r1@x.example", "r2@x.example")


def test_addresses_decoded_and_unusable_skipped():
    raw = (b"From: =?utf-8?B?5byg5LiJ?= <Zhang@Example.CN>\r\nTo: undisclosed-recipients:;\r\n"
           b"Cc: a@example.com, Bob <BOB@example.com>, nobody\r\nReply-To: \"Team, Support\" <team@example.com>\r\n\r\nx")
    parsed = parse_message(raw)
    assert parsed.from_ == Address("张三", "zhang@example.cn")
    assert parsed.to == ()
    assert parsed.cc == (Address("", "a@example.com"), Address("Bob", "bob@example.com"))
    assert parsed.reply_to == (Address("Team, Support", "team@example.com"),)


def test_sender_header_and_reply_to_only():
    assert parse_message(b"Sender: s@example.com\r\nFrom: <>\r\n\r\nx").from_ == Address("", "s@example.com")
    only_reply_to = parse_message(b"Reply-To: r@example.com\r\nSubject: x\r\n\r\nx")
    assert only_reply_to.from_ is None
    assert only_reply_to.reply_to == (Address("", "r@example.com"),)


def test_date_to_utc_and_bad_date():
    parsed = parse_message(mail(b"Date: Tue, 14 May 2024 18:30:00 +0800\r\n"))
    assert parsed.date == datetime(2024, 5, 14, 10, 30, tzinfo=timezone.utc)
    assert parsed.date.utcoffset().total_seconds() == 0
    assert parse_message(mail(b"Date: Tue, 14 May 2024 10:30:00 -0000\r\n")).date == datetime(2024, 5, 14, 10, 30, tzinfo=timezone.utc)
    assert parse_message(mail(b"Date: the day after tomorrow\r\n")).date is None


def test_subject_folding_collapsed_and_size():
    raw = mail(b"Subject: Re:\r\n  about\r\n\tthe  refund\r\n")
    parsed = parse_message(raw)
    assert parsed.subject == "Re: about the refund"
    assert parsed.size == len(raw)
    assert parse_message(mail(b"")).subject == ""


@pytest.mark.parametrize("raw", [
    # A DSN with an empty From, as some MTAs write it.
    (b"From: <>\r\nTo: support@example.com\r\nSubject: Delivery Status Notification (Failure)\r\n"
     b'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
     b"--R\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
     b"--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
     b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n--R--\r\n"),
    # A null return path and no From at all.
    b"Return-Path: <>\r\nTo: support@example.com\r\nSubject: Mail delivery failed\r\n\r\nbody",
    # Sendmail's bare "MAILER-DAEMON", which has no domain to make an address.
    b"From: MAILER-DAEMON\r\nTo: support@example.com\r\nSubject: Returned mail\r\n\r\nbody",
    b"From: Mail Delivery System <Postmaster>\r\nSubject: x\r\n\r\nbody",
])
def test_mail_system_messages_without_sender_parse(raw):
    parsed = parse_message(raw)
    assert parsed.from_ is None
    assert parsed.reply_to == ()


def test_mail_system_without_sender_parses_in_fallback_too(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(message_module, "_walk", broken)
    parsed = parse_message(b"Return-Path: <>\r\nSubject: Undeliverable: x\r\n\r\nbody")
    assert parsed.from_ is None
    with pytest.raises(MalformedMessage, match="^no sender address$"):
        parse_message(b"Return-Path: <a@example.com>\r\nSubject: x\r\n\r\nbody")


# --- Failures -----------------------------------------------------------------

@pytest.mark.parametrize("raw, reason", [
    (b"", "empty message"),
    (b"  \r\n\t\n", "empty message"),
    (b"Hello, this is just text.\nNo headers here.\n", "no header block"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "no header block"),
    (b"Subject: hi\r\nTo: a@example.com\r\n\r\nbody", "no sender address"),
    (b"From: Mail Delivery System <>\r\n\r\nbody", "no sender address"),
    (b"Return-Path: <li@example.cn>\r\nFrom: Postmaster-Fan <>\r\n\r\nbody", "no sender address"),
])
def test_malformed_messages(raw, reason):
    with pytest.raises(MalformedMessage) as caught:
        parse_message(raw)
    assert str(caught.value) == reason


def test_fallback_to_mail_parser_when_fast_path_breaks(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(message_module, "_walk", broken)
    raw = mail(b"Subject: " + b_word(ORDER, "gbk") + b"\r\nMessage-ID: <fb@example.cn>\r\n", b"hello\r\n")
    parsed = parse_message(raw)
    assert parsed.defects[0] == "MailParserFallback"
    assert parsed.subject == ORDER
    assert parsed.message_id == "fb@example.cn"
    assert parsed.from_ == Address("Li Wei", "liwei@example.cn")
    assert parsed.text.strip() == "hello"


def test_both_parsers_failing_is_malformed_with_reason(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(message_module, "_walk", broken)
    monkeypatch.setattr(message_module, "_parse_with_mailparser", broken)
    with pytest.raises(MalformedMessage, match=r"^parse error: RuntimeError: boom$"):
        parse_message(mail(b""))


@pytest.mark.parametrize("raw", [b"", b"\x00\xff" * 100, b"no headers", "not bytes", None, b"Message-ID:\r\n\r\n",
                                 b"Message-ID: <\xff\xfe@x>\r\n\r\n"])
def test_extract_message_id_never_raises(raw):
    result = extract_message_id(raw)
    assert result is None or isinstance(result, str)


def test_extract_message_id_reads_headers_only():
    raw = b"From: a@example.com\r\nMessage-Id:\r\n <folded@example.com>\r\n\r\nMessage-ID: <body@example.com>\r\n"
    assert extract_message_id(raw) == "folded@example.com"
    assert extract_message_id(b"From: a@example.com\r\n\r\nMessage-ID: <body@example.com>\r\n") is None
