"""Outgoing messages: whole bytes against golden files, then header by header.

Set INBOXD_REGEN_GOLDEN=1 to rewrite the golden files after an intended change,
then read the diff before committing them.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inboxd.localtime import format_local
from inboxd.outbound.compose import (
    MAX_REFERENCES,
    InlineImage,
    Outgoing,
    compose,
    new_message_id,
    ticket_ref_from_message_id,
    tagged_subject,
)
from inboxd.outbound.loop import AUTO_GENERATED, AUTO_REPLIED, LOOP_HEADER
from inboxd.outbound.templates import Templates
from inboxd.desk.threads import TicketTag

GOLDEN = Path(__file__).parent / "golden"
TEMPLATES = Templates(Path(__file__).parent.parent / "templates")
TAGS = TicketTag("T-{seq}", "[{id}]")
NOW = datetime(2024, 5, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))
# The promise is written in the mailbox's zone, the language's way, with the zone named.
DUE = NOW + timedelta(hours=4)

ACKS = {
    "en": {
        "mailbox": ("support@example.com", "Example Support"),
        "customer": ("Alice Smith", "alice@example.org"),
        "subject": "Re: Fwd: Order 5521 is late",
        "sla": {"first_response": "4 hours", "first_response_due": format_local(DUE, ZoneInfo("Europe/London"), "en",
                                                                                  marker=True)},
    },
    "zh": {
        "mailbox": ("kefu@example.cn", "示例客服中心"),
        "customer": ("李雷", "lilei@example.cn"),
        "subject": "回复：订单延误，请尽快处理",
        "sla": {"first_response": "4 小时", "first_response_due": format_local(DUE, ZoneInfo("Asia/Shanghai"), "zh",
                                                                                 marker=True)},
    },
}


def assert_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("INBOXD_REGEN_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    assert path.exists(), f"{path} is missing; run with INBOXD_REGEN_GOLDEN=1 to create it"
    assert data == path.read_bytes(), f"{name} differs from its golden file"


def ack(language: str) -> Outgoing:
    """The acknowledgement for a fixed new ticket, rendered from the shipped templates."""
    case = ACKS[language]
    address, display_name = case["mailbox"]
    name, email = case["customer"]
    variables = {
        "ticket": {"id": "T-1000", "tag": "[T-1000]", "subject": TAGS.display_subject(case["subject"]),
                   "status": "new", "priority": "normal", "created_at": "2024-05-01 09:30"},
        "customer": {"name": name, "email": email},
        "mailbox": {"name": "support", "address": address, "display_name": display_name},
        "sla": case["sla"],
    }
    subject, text, html = TEMPLATES.render_ack(variables, mailbox="support", language=language)
    return compose(
        mailbox_address=address, from_name=display_name, to=[(name, email)],
        subject=tagged_subject(subject, "T-1000", TAGS), text=text, html=html,
        message_id=new_message_id("T-1000", address.split("@")[1], unique="0f3a9c"),
        in_reply_to=f"customer-{language}@mail.example.org", references=["older@mail.example.org"],
        automatic=AUTO_REPLIED, loop_value="support", now=NOW,
    )


def parse(out: Outgoing) -> EmailMessage:
    return message_from_bytes(out.data, policy=policy.default)


def text_of(part: EmailMessage) -> str:
    """The decoded text of a part; MIME's canonical line break on the wire is CRLF."""
    return part.get_content().replace("\r\n", "\n")


def simple(**overrides) -> Outgoing:
    args = dict(
        mailbox_address="support@example.com", from_name="Example Support",
        to=[("Alice", "alice@example.org")], subject="Re: [T-1000] Order late", text="Hello\n",
        message_id="inboxd.T-1000.u1@example.com", now=NOW,
    )
    args.update(overrides)
    return compose(**args)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_ack_matches_golden_file(language):
    assert_golden(f"ack_{language}.eml", ack(language).data)


def test_english_ack_headers():
    out = ack("en")
    msg = parse(out)
    assert out.sender == "support@example.com"
    assert out.recipients == ("alice@example.org",)
    assert out.message_id == "inboxd.T-1000.0f3a9c@example.com"
    assert msg["From"] == "Example Support <support@example.com>"
    assert msg["To"] == "Alice Smith <alice@example.org>"
    assert msg["Subject"] == "Re: [T-1000] Order 5521 is late"
    assert msg["Date"] == "Wed, 01 May 2024 09:30:00 +0800"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Message-ID"] == "<inboxd.T-1000.0f3a9c@example.com>"
    assert msg["In-Reply-To"] == "<customer-en@mail.example.org>"
    assert msg["References"] == "<older@mail.example.org> <customer-en@mail.example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Precedence"] == "auto_reply"
    assert msg[LOOP_HEADER] == "support"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    body = text_of(msg)
    assert "ticket T-1000" in body and "keep\n[T-1000] in the subject" in body
    # 05:30 UTC is 06:30 in London on a summer day; no UTC unless the reader's zone is UTC.
    assert "within 4 hours,\nby Wed 1 May, 06:30 (BST)." in body


def test_chinese_ack_round_trips_through_rfc2047():
    out = ack("zh")
    raw_headers = out.data.split(b"\r\n\r\n", 1)[0]
    # Encoded words on the wire, Chinese again after decoding.
    assert b"=?utf-8?" in raw_headers
    msg = parse(out)
    assert msg["Subject"] == "Re: [T-1000] 订单延误，请尽快处理"
    assert msg["From"].addresses[0].display_name == "示例客服中心"
    assert msg["From"].addresses[0].addr_spec == "kefu@example.cn"
    assert msg["To"].addresses[0].display_name == "李雷"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"] in ("base64", "quoted-printable")
    body = text_of(msg)
    assert "尊敬的李雷：\n\n您好！" in body
    assert "工单编号为 T-1000" in body
    assert "我们会在 4 小时内回复您，最晚于 5月1日 13:30（北京时间）。" in body
    assert "此邮件为系统自动发送" in body


@pytest.mark.parametrize("language", ["en", "zh"])
def test_wire_format_is_seven_bit_with_crlf_only(language):
    data = ack(language).data
    assert all(byte < 128 for byte in data)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


def test_display_name_with_comma_and_quotes_round_trips():
    msg = parse(simple(to=[('李雷, "Li" Lei', "lilei@example.cn")], from_name="Alice via Support"))
    assert msg["To"].addresses[0].display_name == '李雷, "Li" Lei'
    assert msg["To"].addresses[0].addr_spec == "lilei@example.cn"
    assert msg["From"].addresses[0].display_name == "Alice via Support"


def test_html_alternative():
    out = simple(text="Hello 李雷\n", html="<p>Hello <b>李雷</b></p>\n")
    msg = parse(out)
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert plain.get_content_type() == "text/plain" and text_of(plain) == "Hello 李雷\n"
    assert html.get_content_type() == "text/html" and text_of(html) == "<p>Hello <b>李雷</b></p>\n"
    assert html["MIME-Version"] is None
    # The boundary is derived from the content, so the same inputs give the same bytes.
    assert simple(text="Hello 李雷\n", html="<p>Hello <b>李雷</b></p>\n").data == out.data


def test_plain_mail_has_no_auto_or_loop_headers():
    msg = parse(simple())
    for header in ("Auto-Submitted", "X-Auto-Response-Suppress", "Precedence", LOOP_HEADER,
                   "In-Reply-To", "References"):
        assert msg[header] is None, header


def test_loop_header_without_auto_reply():
    msg = parse(simple(loop_value="support"))
    assert msg[LOOP_HEADER] == "support"
    assert msg["Auto-Submitted"] is None and msg["Precedence"] is None  # A person's mail: not automatic.


def test_generated_mail_says_so_and_suppresses_answers_like_a_reply():
    msg = parse(simple(automatic=AUTO_GENERATED, loop_value="support"))
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Precedence"] == "auto_reply"
    assert msg[LOOP_HEADER] == "support"


def test_unknown_auto_submitted_keyword_is_refused():
    with pytest.raises(ValueError):
        simple(automatic="auto-notified")


def test_inline_images_are_related_parts_of_the_html():
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    images = [InlineImage("chart-volume@inboxd.report", "volume.png", png)]
    out = simple(text="See the chart.\n", html='<img src="cid:chart-volume@inboxd.report">\n', images=images)
    msg = parse(out)
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.iter_parts()
    assert plain.get_content_type() == "text/plain" and related.get_content_type() == "multipart/related"
    html, image = related.iter_parts()
    assert html.get_content_type() == "text/html"
    assert image["Content-ID"] == "<chart-volume@inboxd.report>" and image.get_filename() == "volume.png"
    assert image.get_payload(decode=True) == png
    assert all(part["MIME-Version"] is None for part in msg.walk() if part is not msg)
    # Boundaries come from the content: the same inputs give the same bytes.
    again = simple(text="See the chart.\n", html='<img src="cid:chart-volume@inboxd.report">\n', images=images)
    assert again.data == out.data
    with pytest.raises(ValueError):
        simple(images=images)  # No HTML to show them.


def test_references_keep_the_newest_twenty_and_end_with_the_parent():
    refs = [f"<r{i}@example.org>" for i in range(30)]
    msg = parse(simple(references=refs, in_reply_to="<parent@example.org>"))
    ids = str(msg["References"]).split()
    assert len(ids) == MAX_REFERENCES
    assert ids[-1] == "<parent@example.org>"
    assert ids[0] == "<r11@example.org>"


def test_long_message_ids_are_folded_not_encoded():
    long_id = "BY5PR11MB4241A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6@BY5PR11MB4241.namprd11.prod.outlook.com"
    out = simple(in_reply_to=long_id, references=[long_id.replace("BY5", "SN6"), "a@b.example"])
    assert b"=?" not in out.data
    msg = parse(out)
    assert msg["In-Reply-To"].strip() == f"<{long_id}>"
    assert msg["References"].split()[-1] == f"<{long_id}>"


def test_malformed_thread_ids_from_customers_are_dropped():
    msg = parse(simple(in_reply_to="bad id\r\nBcc: x@evil.example", references=["<ok@example.org>", "中文@example.org"]))
    assert msg["In-Reply-To"] is None
    assert msg["References"] == "<ok@example.org>"
    assert msg["Bcc"] is None


INJECTION = "hello\r\nBcc: victim@evil.example\r\n\r\nbody"


@pytest.mark.parametrize("field", ["subject", "from_name", "to_name", "extra_header", "loop_value"])
def test_header_injection_never_creates_a_header(field):
    kwargs = {
        "subject": {"subject": INJECTION},
        "from_name": {"from_name": INJECTION},
        "to_name": {"to": [(INJECTION, "alice@example.org")]},
        "extra_header": {"extra_headers": {"X-Customer-Ref": INJECTION}},
        "loop_value": {"loop_value": INJECTION},
    }[field]
    out = simple(**kwargs)
    msg = parse(out)
    assert msg["Bcc"] is None
    assert b"\r\nBcc:" not in out.data
    assert out.recipients == ("alice@example.org",)
    assert text_of(msg) == "Hello\n"
    assert not msg.defects


def test_sanitised_values_keep_their_text_on_one_line():
    msg = parse(simple(subject="Order\r\nlate\tnow\x00!", extra_headers={"X-Customer-Ref": "a\u2028b\x85c"}))
    assert msg["Subject"] == "Order  late now !"
    assert msg["X-Customer-Ref"] == "a b c"


@pytest.mark.parametrize("address", [
    "alice@example.org\r\nBcc: victim@evil.example",
    "alice@example.org, victim@evil.example",
    "Alice <alice@example.org>",
    "alice",
    "alice@",
    "李雷@example.cn",
    "alice@exa mple.org",
    "",
])
def test_bad_recipient_address_raises(address):
    with pytest.raises(ValueError):
        simple(to=[("Alice", address)])


def test_bad_mailbox_address_and_other_bad_arguments_raise():
    with pytest.raises(ValueError):
        simple(mailbox_address="support@example.com\nBcc: x@y.example")
    with pytest.raises(ValueError):
        simple(to=[])
    with pytest.raises(ValueError):
        simple(now=datetime(2024, 5, 1, 9, 30))
    with pytest.raises(ValueError):
        simple(message_id="has space@example.com")


@pytest.mark.parametrize("name", ["Bcc", "bcc", "From", "Message-ID", "Content-Type", LOOP_HEADER,
                                  "X-Bad\r\nBcc", "X Bad", "X:Bad", ""])
def test_extra_header_names_are_checked(name):
    with pytest.raises(ValueError):
        simple(extra_headers={name: "value"})


def test_duplicate_recipients_are_sent_once():
    out = simple(to=[("Alice", "alice@example.org"), ("A.", "ALICE@example.org"), ("Bob", "bob@example.org")])
    assert out.recipients == ("alice@example.org", "bob@example.org")


@pytest.mark.parametrize("subject, expected", [
    ("Order late", "Re: [T-1000] Order late"),
    ("Re: [T-1000] Order late", "Re: [T-1000] Order late"),
    ("[T-1000] Order late", "Re: [T-1000] Order late"),
    ("回复: [T-1000] Order late", "Re: [T-1000] Order late"),
    ("回复：Re: Fwd: 订单延误", "Re: [T-1000] 订单延误"),
    ("RE: Re[2]: AW: Order late", "Re: [T-1000] Order late"),
    ("Order late [T-1000]", "Re: [T-1000] Order late"),
    ("Order [T-1000] late", "Re: [T-1000] Order late"),
    ("Re: [T-1000] Re: [T-1000] Order late", "Re: [T-1000] Order late"),
    ("", "Re: [T-1000]"),
    ("Order\r\nBcc: x@y", "Re: [T-1000] Order Bcc: x@y"),
])
def test_tagged_subject_has_the_tag_exactly_once(subject, expected):
    result = tagged_subject(subject, "T-1000", TAGS)
    assert result == expected
    assert result.count("[T-1000]") == 1


def test_tagged_subject_not_a_reply_has_no_prefix():
    assert tagged_subject("Re: Order late", "T-1000", TAGS, reply=False) == "[T-1000] Order late"


def test_tagged_subject_with_another_tag_format():
    tags = TicketTag("{seq}", "(Ticket #{id})")
    assert tagged_subject("AW: (Ticket #77) Lieferung", "77", tags) == "Re: (Ticket #77) Lieferung"


@pytest.mark.parametrize("ref", ["T-1000", "1000", "工单-7", "a.b_c~d/e f%"])
def test_message_id_round_trip(ref):
    mid = new_message_id(ref, "example.com", unique="k2J9x")
    assert mid.startswith("inboxd.") and mid.endswith(".k2J9x@example.com")
    assert all(33 <= ord(c) < 127 and c not in "<> " for c in mid)
    assert ticket_ref_from_message_id(mid) == ref
    assert ticket_ref_from_message_id(f"<{mid}>") == ref


@pytest.mark.parametrize("mid", [
    "CAF=abc@mail.gmail.com", "<inboxd@example.com>", "inboxd.T-1000@example.com",
    "xinboxd.T-1000.u@example.com", "inboxd..u@example.com", "inboxd.%ZZ.u@example.com",
    "inboxd.%FF.u@example.com", "",
])
def test_other_message_ids_are_not_ours(mid):
    assert ticket_ref_from_message_id(mid) is None


def test_new_message_id_rejects_unsafe_parts():
    with pytest.raises(ValueError):
        new_message_id("T-1", "example.com", unique="a.b@c")
    with pytest.raises(ValueError):
        new_message_id("T-1", "exa mple.com", unique="u")
    with pytest.raises(ValueError):
        new_message_id("", "example.com", unique="u")


@pytest.mark.parametrize("name", ["A" * 200_000, "A." * 5000, 'A"b' * 3000, "订单" * 50_000, "word " * 40_000])
def test_huge_display_names_are_cut_and_every_header_line_is_folded(name):
    """Defect: a 200 KB display name produced an ack the SMTP server refused
    ("500 Line too long"): the stdlib never folds a name without spaces."""
    from inboxd.outbound.compose import MAX_DISPLAY_NAME
    from inboxd.mail.message import parse_message

    out = simple(to=[(name, "big@example.org"), ("Bob", "bob@example.org")], from_name=name)
    head = out.data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    # What a reader decodes is the name cut to MAX_DISPLAY_NAME characters, ending in an ellipsis.
    parsed = parse_message(out.data)
    expected = " ".join(name.split())[:MAX_DISPLAY_NAME - 1].rstrip() + "\u2026"
    assert [(a.name, a.email) for a in parsed.to] == [(expected, "big@example.org"), ("Bob", "bob@example.org")]
    assert parsed.from_.name == expected and parsed.from_.email == "support@example.com"


def test_names_that_fit_are_written_as_the_stdlib_writes_them():
    """The fallback folding applies only where the stdlib fails: ordinary names keep their golden form."""
    out = simple(to=[("Alice Smith", "alice@example.org")])
    assert b"\r\nTo: Alice Smith <alice@example.org>\r\n" in out.data


def test_thread_ids_too_long_for_a_header_line_are_dropped():
    """Defect: a customer's 1,000-character Message-ID would have made a References line over 998 octets."""
    out = simple(in_reply_to="<" + "x" * 1000 + "@example.org>", references=["<" + "y" * 1000 + "@example.org>",
                                                                           "<ok@example.org>"])
    msg = parse(out)
    assert msg["In-Reply-To"] is None
    assert msg["References"] == "<ok@example.org>"
