"""Reading sender and recipient addresses from headers (inboxd.mail.message), as a mail client shows them."""

from __future__ import annotations

import base64

import pytest

from inboxd.mail.message import Address, parse_message


def _b(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


def sender(from_header: str) -> Address | None:
    raw = f"From: {from_header}\r\nTo: support@example.com\r\nSubject: x\r\n\r\nhello\r\n".encode()
    return parse_message(raw).from_


def test_an_encoded_display_name_never_supplies_the_address():
    """Defect: `=?utf-8?q?Evil=0D=0ABcc:_victim@x.example?= <evil16@…>` was stored
    with requester `_victim@x.example?=` and its ack failed with "cannot compose"."""
    found = sender("=?utf-8?q?Evil=0D=0ABcc:_victim@x.example?= <evil16@evil.example>")
    assert found == Address("Evil Bcc: victim@x.example", "evil16@evil.example")


@pytest.mark.parametrize("header", [
    "=?utf-8?q?a=40b.example_=3Cother@c.example=3E?= <real@d.example>",
    "=?utf-8?b?" + base64.b64encode(b"x@y.example, z:").decode() + "?= <real@d.example>",
    "=?utf-8?q?=22Quote?= \"and more\" <real@d.example>",
])
def test_colons_ats_and_angles_inside_encoded_words_stay_in_the_name(header):
    """Defect: characters decoded from an encoded word were read as address syntax."""
    assert sender(header).email == "real@d.example"


def test_a_whole_name_and_address_inside_one_encoded_word_is_read_as_thunderbird_shows_it():
    """Defect: `From: =?utf-8?b?<"Zhang San <zhang@example.cn>">?=` gave no usable
    address; Thunderbird decodes, then parses, and shows zhang@example.cn."""
    assert sender(_b("Zhang San <zhang@example.cn>")) == Address("Zhang San", "zhang@example.cn")
    assert sender(_b("张三 <Zhang@Example.CN>", "gb18030")) == Address("张三", "zhang@example.cn")


@pytest.mark.parametrize("header, expected", [
    ("Li Lei <lilei@example.cn>", Address("Li Lei", "lilei@example.cn")),
    (f"{_b('李雷', 'gbk')} <LiLei@Example.CN>", Address("李雷", "lilei@example.cn")),
    ("=?utf-8?q?A?= =?utf-8?q?B?= <ab@example.com>", Address("AB", "ab@example.com")),
    ('"=?utf-8?q?Quoted?=" <q@example.com>', Address("Quoted", "q@example.com")),
    ('"Team, Support" <team@example.com>', Address("Team, Support", "team@example.com")),
    ("Big Bug bb@bug.com", Address("", "bb@bug.com")),
    ("plain@example.org", Address("", "plain@example.org")),
])
def test_ordinary_and_broken_but_common_headers_keep_working(header, expected):
    assert sender(header) == expected


def test_every_recipient_of_a_list_is_read_and_the_unusable_skipped():
    raw = (f"From: a@example.com\r\nTo: {_b('Évelyne, RH')} <rh@example.fr>, undisclosed-recipients:;\r\n"
           "Cc: b@example.com, nobody\r\n\r\nx").encode()
    parsed = parse_message(raw)
    assert parsed.to == (Address("Évelyne, RH", "rh@example.fr"),)
    assert parsed.cc == (Address("", "b@example.com"),)
