"""Charsets as real clients write them: subjects, sender names, text and file names
must come out as Thunderbird shows them.

Each case is a small mail written here from the standards (RFC 2047, 2231,
6532, the WHATWG Encoding Standard's labels, JIS X 0208 and its Windows
extensions) in the shape of one client's output, and is named after that
client.  Byte strings are spelled out where the point is the bytes a client
sends, so that the fixture does not depend on the codec under test.
"""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from inboxd.mail.message import Address, decode_bytes, parse_message


def b_word(text: str, charset: str, codec: str | None = None) -> bytes:
    data = text.encode(codec or charset)
    return f"=?{charset}?B?{base64.b64encode(data).decode()}?=".encode()


def mail(headers: bytes, body: bytes = b"hello\r\n", *, sender: bytes = b"a@example.com") -> bytes:
    return b"From: " + sender + b"\r\nTo: support@example.com\r\n" + headers + b"\r\n" + body


def with_file(disposition: bytes, content_type: bytes = b"application/pdf", body_charset: bytes = b"utf-8",
              extra: bytes = b"") -> bytes:
    """A two-part mail whose second part carries the given Content-Type and Content-Disposition."""
    return (b"From: a@example.com\r\nTo: support@example.com\r\nSubject: file\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain; charset=" + body_charset + b"\r\n\r\nsee attached\r\n"
            b"--b\r\nContent-Type: " + content_type + b"\r\n" + disposition + extra +
            b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n")


# The bytes ISO-2022-JP mail from Windows (CP50220/CP50221) carries, spelled
# from JIS X 0208 and NEC row 13: 注 43 6D, 文 4A 38, ① 2D 21, ㈱ 2D 6A,
# 髙 7C 62 (an NEC-selected IBM extension), 橋 36 36; half-width ｱ is 31
# after ESC ( I, and ｲｳ are 32 33 between SO and SI.
CP50220 = b"\x1b$BCmJ8-!-j|b66\x1b(B"
CP50221_KANA = b"\x1b(I1\x1b(B \x0e23\x0f"

# (case, raw mail, field, expected)
HEADER_CASES = [
    # Outlook and Foxmail label GBK (and GB18030) text "gb2312".
    ("outlook-gb2312-really-gbk-subject",
     mail(b"Subject: " + b_word("镕基的訂單", "gb2312", "gbk") + b"\r\n"), "subject", "镕基的訂單"),
    ("outlook-gb2312-really-gbk-q-word",
     mail(b"Subject: =?gb2312?Q?" + "".join(f"={b:02X}" for b in "訂單".encode("gbk")).encode() + b"?=\r\n"),
     "subject", "訂單"),
    ("foxmail-gb18030-rare-char",
     mail(b"Subject: " + b_word("𠮷野家 收据", "GB2312", "gb18030") + b"\r\n"), "subject", "𠮷野家 收据"),
    ("hk-big5-hkscs-name",
     mail(b"Subject: hi\r\n", sender=b_word("陳嘅", "big5", "big5hkscs") + b" <chan@example.hk>"),
     "from", Address("陳嘅", "chan@example.hk")),
    ("japanese-iso2022-cp50220-circled-digits",
     mail(b"Subject: =?ISO-2022-JP?B?" + base64.b64encode(CP50220) + b"?=\r\n"), "subject", "注文①㈱髙橋"),
    ("japanese-iso2022-cp50221-half-width-kana",
     mail(b"Subject: =?iso-2022-jp?B?" + base64.b64encode(CP50221_KANA) + b"?=\r\n"), "subject", "ｱ ｲｳ"),
    ("docomo-shift_jis-cp932",
     mail(b"Subject: " + b_word("①Ⅲ髙橋様", "Shift_JIS", "cp932") + b"\r\n"), "subject", "①Ⅲ髙橋様"),
    ("korean-outlook-ks_c_5601-1987-uhc-syllable",
     mail(b"Subject: " + b_word("똠방각하 주문", "ks_c_5601-1987", "cp949") + b"\r\n"), "subject", "똠방각하 주문"),
    ("korean-euc-kr-label-on-cp949",
     mail(b"Subject: " + b_word("똠방", "euc-kr", "cp949") + b"\r\n"), "subject", "똠방"),
    ("outlook-latin1-label-windows-1252-quotes",
     mail(b"Subject: =?iso-8859-1?Q?=93Quote=94_costs_=80_5?=\r\n"), "subject", "\u201cQuote\u201d costs \u20ac 5"),
    ("bogus-x-unknown-word-holding-gbk",
     mail(b"Subject: " + b_word("您好，我的订单没有收到", "x-unknown", "gbk") + b"\r\n"), "subject",
     "您好，我的订单没有收到"),
    ("bogus-utf8-spelling", mail(b"Subject: " + b_word("Grüße 你好", "utf8", "utf-8") + b"\r\n"), "subject",
     "Grüße 你好"),
    ("bogus-utf-8lias-label", mail(b"Subject: " + b_word("Grüße 你好", "UTF-8lias", "utf-8") + b"\r\n"), "subject",
     "Grüße 你好"),
    ("rfc2231-language-in-word", mail(b"Subject: " + b_word("訂單", "utf-8*zh-TW", "utf-8") + b"\r\n"), "subject",
     "訂單"),
    # Raw 8-bit headers: UTF-8 when valid (RFC 6532), else the message's charset.
    ("raw-utf8-subject-rfc6532",
     mail(b"Subject: " + "Grüße, 订单 №5".encode() + b"\r\n"), "subject", "Grüße, 订单 №5"),
    ("raw-utf8-display-name-rfc6532",
     mail(b"Subject: x\r\n", sender="张三 <zhang@example.cn>".encode()), "from", Address("张三", "zhang@example.cn")),
    ("raw-gbk-subject-no-encoding",
     mail(b"Subject: " + "您好，发票".encode("gbk") + b"\r\nContent-Type: text/plain; charset=gbk\r\n"),
     "subject", "您好，发票"),
    ("raw-gbk-subject-no-charset-anywhere",
     mail(b"Subject: " + "您好，我的订单没有收到".encode("gbk") + b"\r\n"), "subject", "您好，我的订单没有收到"),
    ("raw-big5-subject-big5-body",
     mail(b"Subject: " + "您好，我的訂單".encode("big5") + b"\r\nContent-Type: text/plain; charset=big5\r\n"),
     "subject", "您好，我的訂單"),
    ("raw-euc-kr-subject-body-charset-hint",
     mail(b"Subject: " + "주문이 도착하지 않았습니다".encode("cp949") + b"\r\nContent-Type: text/plain; charset=euc-kr\r\n"),
     "subject", "주문이 도착하지 않았습니다"),
    ("raw-shift_jis-from-name-body-hint",
     mail(b"Content-Type: text/plain; charset=Shift_JIS\r\nSubject: x\r\n",
          sender="山田太郎".encode("cp932") + b" <yamada@example.jp>"), "from", Address("山田太郎", "yamada@example.jp")),
    ("raw-latin1-subject-outlook-express",
     mail(b"Subject: " + "Grüße aus Köln".encode("cp1252") + b"\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"),
     "subject", "Grüße aus Köln"),
    ("docomo-raw-shift_jis-subject-in-iso-2022-jp-mail",
     mail(b"Subject: " + "ご注文①".encode("cp932") + b"\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"),
     "subject", "ご注文①"),
    ("raw-utf8-subject-in-iso-2022-jp-mail",
     mail(b"Subject: " + "ご注文の件".encode() + b"\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"),
     "subject", "ご注文の件"),
    ("old-japanese-mailer-raw-iso2022-subject",
     mail(b"Subject: Re: " + CP50220 + b"\r\n"), "subject", "Re: 注文①㈱髙橋"),
    ("multipart-hint-from-first-text-part",
     (b"From: a@example.com\r\nSubject: " + "주문 확인".encode("cp949") + b"\r\nMIME-Version: 1.0\r\n"
      b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n--a\r\n'
      b"Content-Type: text/plain; charset=ks_c_5601-1987\r\n\r\nx\r\n--a--\r\n"), "subject", "주문 확인"),
]


@pytest.mark.parametrize("raw, field, expected", [c[1:] for c in HEADER_CASES], ids=[c[0] for c in HEADER_CASES])
def test_headers_as_thunderbird_shows_them(raw, field, expected):
    parsed = parse_message(raw)
    got = parsed.subject if field == "subject" else parsed.from_
    assert got == expected


BODY_CASES = [
    ("outlook-gb2312-really-gbk-body", b"gb2312", "镕基的訂單，谢谢".encode("gbk"), "镕基的訂單，谢谢"),
    ("foxmail-gb2312-label-gb18030-body", b"gb2312", "𠮷野家 € 收据".encode("gb18030"), "𠮷野家 € 收据"),
    ("hk-big5-label-hkscs-body", b"big5", "我哋嘅訂單".encode("big5hkscs"), "我哋嘅訂單"),
    ("japanese-iso2022-cp50220-body", b"iso-2022-jp", CP50220 + b"\r\n" + CP50221_KANA, "注文①㈱髙橋\nｱ ｲｳ"),
    ("docomo-shift_jis-cp932-body", b"Shift_JIS", "①Ⅲ髙橋様～".encode("cp932"), "①Ⅲ髙橋様～"),
    ("eucjp-ms-nec-row13", b"EUC-JP", b"\xad\xa1\xad\xa2", "①②"),
    ("au-phone-utf8-body-labelled-iso-2022-jp", b"ISO-2022-JP", "ご注文の件です".encode(), "ご注文の件です"),
    ("docomo-shift_jis-body-labelled-iso-2022-jp", b"ISO-2022-JP", "ご注文①です".encode("cp932"), "ご注文①です"),
    ("korean-euc-kr-label-uhc-body", b"euc-kr", "똠방각하".encode("cp949"), "똠방각하"),
    ("outlook-latin1-label-cp1252-body", b"ISO-8859-1", b"\x93smart\x94 \x80 caf\xe9", "\u201csmart\u201d \u20ac café"),
    ("turkish-latin5-label-cp1254", b"iso-8859-9", b"\x93\xfe\xf0", "\u201cşğ"),
    ("bogus-x-unknown-label-gbk-body", b"x-unknown", "请尽快帮我处理，谢谢！".encode("gbk"), "请尽快帮我处理，谢谢！"),
    ("bogus-quoted-utf8-label", b'"utf-8"', "Grüße 你好".encode(), "Grüße 你好"),
]


@pytest.mark.parametrize("charset, body, expected", [c[1:] for c in BODY_CASES], ids=[c[0] for c in BODY_CASES])
def test_body_text_as_thunderbird_shows_it(charset, body, expected):
    raw = mail(b"Content-Type: text/plain; charset=" + charset + b"\r\nContent-Transfer-Encoding: 8bit\r\n", body)
    assert parse_message(raw).text == expected


def _pct(data: bytes) -> bytes:
    return "".join(f"%{b:02X}" for b in data).encode()


FILENAME_CASES = [
    ("thunderbird-rfc2231-chinese-filename",
     with_file(b"Content-Disposition: attachment;\r\n filename*=UTF-8''" + _pct("发票 2024.pdf".encode()) + b"\r\n"),
     "发票 2024.pdf"),
    ("thunderbird-rfc2231-continuations",
     with_file(b"Content-Disposition: attachment;\r\n filename*0*=UTF-8''" + _pct("非常长的".encode()) +
               b";\r\n filename*1*=" + _pct("文件名.pdf".encode()) + b"\r\n"), "非常长的文件名.pdf"),
    ("outlook-rfc2231-gb2312-continuations",
     with_file(b"Content-Disposition: attachment;\r\n filename*0*=gb2312''%C4%E3%BA%C3;\r\n"
               b" filename*1*=%CA%C0%BD%E7.pdf\r\n"), "你好世界.pdf"),
    ("rfc2231-gb2312-label-gbk-only-chars",
     with_file(b"Content-Disposition: attachment; filename*=gb2312'zh-cn'" + _pct("訂單.pdf".encode("gbk")) + b"\r\n"),
     "訂單.pdf"),
    ("rfc2231-mixed-encoded-and-plain-continuations",
     with_file(b"Content-Disposition: attachment; filename*0*=utf-8''" + _pct("报告".encode()) +
               b'; filename*1="-final.pdf"\r\n'), "报告-final.pdf"),
    ("rfc2231-extended-wins-over-plain",
     with_file(b'Content-Disposition: attachment; filename="fallback.pdf";\r\n filename*=utf-8\'\'' +
               _pct("合同.pdf".encode()) + b"\r\n"), "合同.pdf"),
    ("rfc2231-empty-charset-utf8-bytes",
     with_file(b"Content-Disposition: attachment; filename*=''" + _pct("合同.pdf".encode()) + b"\r\n"), "合同.pdf"),
    ("qq-mail-rfc2047-filename",
     with_file(b'Content-Disposition: attachment; filename="' + b_word("报价单.xlsx", "GBK") + b'"\r\n',
               b'application/octet-stream; name="' + b_word("报价单.xlsx", "GBK") + b'"'), "报价单.xlsx"),
    ("outlook-rfc2047-name-on-content-type-only",
     with_file(b"", b'application/vnd.ms-excel;\r\n name="' + b_word("季度报表.xls", "gb2312", "gbk") + b'"'),
     "季度报表.xls"),
    ("outlook-rfc2047-word-split-over-rfc2231-continuations",
     with_file(b'Content-Disposition: attachment; filename*0="=?GBK?B?xOO6";\r\n filename*1="w8rAvec=?=.pdf"\r\n'),
     "你好世界.pdf"),
    ("foxmail-raw-gbk-filename",
     with_file(b'Content-Disposition: attachment; filename="' + "报价单.pdf".encode("gbk") + b'"\r\n',
               body_charset=b"gbk"), "报价单.pdf"),
    ("hk-raw-big5-name-big5-body",
     with_file(b"", b'application/pdf; name="' + "報價單.pdf".encode("big5") + b'"', body_charset=b"big5"),
     "報價單.pdf"),
    ("raw-utf8-filename-rfc6532",
     with_file(b'Content-Disposition: attachment; filename="' + "Übersicht 订单.pdf".encode() + b'"\r\n'),
     "Übersicht 订单.pdf"),
    ("japanese-rfc2047-iso2022-filename",
     with_file(b'Content-Disposition: attachment; filename="=?ISO-2022-JP?B?' + base64.b64encode(CP50220) +
               b'?=.pdf"\r\n'), "注文①㈱髙橋.pdf"),
]


@pytest.mark.parametrize("raw, expected", [c[1:] for c in FILENAME_CASES], ids=[c[0] for c in FILENAME_CASES])
def test_attachment_names_as_thunderbird_shows_them(raw, expected):
    [attachment] = parse_message(raw).attachments
    assert attachment.filename == expected
    assert attachment.content == b"%PDF-1.4\n"


def test_labels_resolve_through_the_alias_table_then_detection():
    """Labels no codec knows, and WHATWG labels Python spells differently, still decode."""
    gbk = "您好，我的订单没有收到".encode("gbk")
    for label in ("x-unknown", "unknown-8bit", "UTF-8lias", "charset", "x-user-defined", "chinese", "x-gbk",
                  "csGB2312", "GB_2312-80", "windows-936", None):
        assert decode_bytes(gbk, label) == "您好，我的订单没有收到", label
    assert decode_bytes("嘅".encode("big5hkscs"), "x-x-big5") == "嘅"
    assert decode_bytes("똠".encode("cp949"), "korean") == "똠"
    assert decode_bytes("①".encode("cp932"), "windows-31j") == "①"
    assert decode_bytes(b"\x80", "latin1") == "€"
    assert decode_bytes(b"caf\x8e", "macintosh") == "café"


def test_truly_undecodable_header_bytes_stay_visible_and_reversible():
    """Bytes no charset explains keep clean_text's \\xNN escape, never U+FFFD."""
    raw = mail(b"Subject: Help \x81\x8d\x8f\x90 me\r\nContent-Type: text/plain; charset=windows-1252\r\n")
    subject = parse_message(raw).subject
    assert "\ufffd" not in subject
    assert subject.startswith("Help ") and subject.endswith(" me")
    subject.encode("utf-8")


def test_rfc2231_percent_decoding_is_bytes_not_text():
    # %E4%BD%A0 are the UTF-8 bytes of 你; decoding them as Latin-1 text would give "ä½ ".
    name = urllib.parse.quote("你.txt")
    raw = with_file(f"Content-Disposition: attachment; filename*=utf-8''{name}\r\n".encode())
    assert parse_message(raw).attachments[0].filename == "你.txt"
