"""MIME structure as real clients build it: winmail.dat (TNEF) unpacked into the files
inside it, and images that the HTML shows by cid: marked inline.

Each case is named after the client whose output it imitates.  The TNEF
streams are written by tests/tnef_writer.py from MS-OXTNEF; compressed RTF
by the compressed_rtf package, the same one that reads it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from pathlib import Path

import compressed_rtf
import pytest

from inboxd.mail import largemail
from inboxd.mail.attachments import attachment_path
from inboxd.mail.message import parse_message
from inboxd.desk.routing import facts_for
from inboxd.sync.worker import parse_one
from tests.tnef_writer import (
    PR_BODY,
    PR_BODY_HTML,
    PR_RTF_COMPRESSED,
    PT_BINARY,
    PT_STRING8,
    winmail_dat,
)

MiB = 1 << 20
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4
TXT = "合同条款：第一条\r\n".encode("gbk")

# What Outlook packs: a file named in the ANSI code page only (attAttachTitle),
# and one with a long Unicode name and a MIME type in attAttachment.
FILES = [
    {"title": "合同.txt".encode("gbk"), "data": TXT},
    {"title": b"REPORT~1.PDF", "data": PDF, "long_name": "季度报告 2024.pdf", "mime": "application/pdf"},
]


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def exchange_mail(tnef: bytes, *, text: bytes | None = b"See the attached files.",
                  tnef_type: bytes = b"application/ms-tnef", name: bytes = b"winmail.dat") -> bytes:
    """A mail as Exchange sends it from an Outlook "rich text" message."""
    head = (b"From: =?gb2312?B?" + base64.b64encode("王芳".encode("gbk")) + b"?= <wang@example.cn>\r\n"
            b"To: support@example.com\r\nSubject: contract\r\nMessage-ID: <tnef@example.cn>\r\n"
            b"MIME-Version: 1.0\r\nX-MS-Has-Attach: yes\r\nX-MS-TNEF-Correlator: <00000000@example.cn>\r\n")
    tnef_part = (b"Content-Type: " + tnef_type + b"; name=\"" + name + b"\"\r\n"
                 b"Content-Disposition: attachment; filename=\"" + name + b"\"\r\n"
                 b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(tnef))
    if text is None:
        return head + tnef_part
    return (head + b'Content-Type: multipart/mixed; boundary="_002_tnef_"\r\n\r\n'
            b"--_002_tnef_\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\n" + text +
            b"\r\n--_002_tnef_\r\n" + tnef_part + b"\r\n--_002_tnef_--\r\n")


def without_content(msg):
    """A parsed mail with attachment content left out: parse_large keeps large ones on disk."""
    return dataclasses.replace(msg, attachments=tuple(dataclasses.replace(a, content=None) for a in msg.attachments))


def files_of(raw: bytes) -> list[tuple]:
    return [(a.filename, a.content_type, a.content, a.inline) for a in parse_message(raw).attachments]


# --- winmail.dat ------------------------------------------------------------

RTF = (rb"{\rtf1\ansi\ansicpg936\fromhtml1 \deff0{\fonttbl{\f0\fswiss\fcharset134 SimSun;}}"
       rb"{\*\htmltag19 <html>}{\*\htmltag50 <body>}\htmlrtf {\htmlrtf0{\*\htmltag64 <p>}"
       rb"\'c4\'e3\'ba\'c3\'a3\'ac order 42 has not arrived.\htmlrtf\par\htmlrtf0{\*\htmltag72 </p>}"
       rb"{\*\htmltag64 <p>}Thanks{\*\htmltag72 </p>}\htmlrtf }\htmlrtf0 {\*\htmltag58 </body>}}")

TNEF_CASES = [
    ("exchange-winmail-dat", exchange_mail(winmail_dat(FILES, codepage=936)),
     "See the attached files.", False,
     [("合同.txt", "text/plain", TXT, False), ("季度报告 2024.pdf", "application/pdf", PDF, False)]),
    ("outlook-rtf-body-only-in-winmail-dat",
     exchange_mail(winmail_dat(FILES[1:], codepage=936,
                               body_props=[(PT_BINARY, PR_RTF_COMPRESSED, compressed_rtf.compress(RTF))]), text=None),
     "你好， order 42 has not arrived.\nThanks", False, [("季度报告 2024.pdf", "application/pdf", PDF, False)]),
    ("exchange-html-body-only-in-winmail-dat",
     exchange_mail(winmail_dat([], body_props=[(PT_BINARY, PR_BODY_HTML,
                                                "<p>Order <b>42</b> 还没到</p>".encode())]), text=None),
     "Order 42 还没到", True, []),
    ("exchange-plain-body-only-in-winmail-dat",
     exchange_mail(winmail_dat([], codepage=1252, body_props=[(PT_STRING8, PR_BODY, "Order 42, please.")]),
                   text=None),
     "Order 42, please.", False, []),
    ("gateway-relabelled-winmail-dat-octet-stream",
     exchange_mail(winmail_dat(FILES[:1], codepage=936), tnef_type=b"application/octet-stream"),
     "See the attached files.", False, [("合同.txt", "text/plain", TXT, False)]),
    ("exchange-winmail-dat-with-body-only-and-mime-text",
     exchange_mail(winmail_dat([], body_props=[(PT_STRING8, PR_BODY, "rich copy")])),
     "See the attached files.", False, []),
]


@pytest.mark.parametrize("raw, text, html_only, files", [c[1:] for c in TNEF_CASES], ids=[c[0] for c in TNEF_CASES])
def test_winmail_dat_is_unpacked_into_its_files_and_body(raw, text, html_only, files):
    parsed = parse_message(raw)
    assert parsed.text == text
    assert parsed.html_only is html_only
    assert files_of(raw) == files
    assert parsed.subject == "contract" and parsed.from_.name == "王芳"
    for attachment in parsed.attachments:
        assert attachment.sha256 == hashlib.sha256(attachment.content).hexdigest()
        assert attachment.size == len(attachment.content)


@pytest.mark.parametrize("tnef", [b"not a TNEF stream at all", winmail_dat(FILES)[:40]],
                         ids=["outlook-winmail-dat-garbage", "exchange-winmail-dat-truncated"])
def test_a_winmail_dat_that_cannot_be_read_stays_as_it_came(tnef):
    raw = exchange_mail(tnef)
    parsed = parse_message(raw)
    [attachment] = parsed.attachments
    assert (attachment.filename, attachment.content_type, attachment.content) == ("winmail.dat", "application/ms-tnef",
                                                                                  tnef)
    assert parsed.text == "See the attached files."


def test_winmail_dat_is_recognised_by_its_signature_written_by_the_spec():
    """The fixture writer follows MS-OXTNEF: signature, key, and checksummed attributes."""
    tnef = winmail_dat(FILES, codepage=936)
    assert tnef[:4] == b"\x78\x9f\x3e\x22"
    from tnefparse.tnef import TNEF

    parsed = TNEF(tnef, do_checksum=True)
    assert [obj.good_checksum for obj in parsed.objects] == [True] * len(parsed.objects)
    assert parsed.codepage == "cp936" and len(parsed.attachments) == 2


def test_winmail_dat_files_are_saved_like_other_attachments(tmp_path: Path):
    """The parser worker writes each file inside winmail.dat to data_dir, as it does any attachment."""
    raw = exchange_mail(winmail_dat(FILES, codepage=936))
    parsed = parse_one(raw, 25 * MiB, tmp_path)
    names = [a.filename for a in parsed.attachments]
    assert names == ["合同.txt", "季度报告 2024.pdf"]
    for attachment, content in zip(parsed.attachments, (TXT, PDF)):
        assert attachment.content is None
        assert attachment_path(tmp_path, attachment.sha256).read_bytes() == content


def test_large_mail_unpacks_winmail_dat_as_parse_message_does(tmp_path: Path, monkeypatch):
    """parse_large keeps winmail.dat in its skeleton (it is never detached), so the files inside
    come out as parse_message gives them, while a large ordinary attachment is still detached."""
    monkeypatch.setattr(largemail, "DETACH_PART_BYTES", 1000)
    big = bytes(range(256)) * 1200
    tnef = winmail_dat([*FILES, {"title": b"BIG.BIN", "data": big}], codepage=936)
    raw = exchange_mail(tnef)
    expected = parse_message(raw)
    got = largemail.parse_large(raw, 25 * MiB, tmp_path)
    # Nothing was detached: the files come out of the winmail.dat bytes, content and all.
    assert got == expected
    assert [a.filename for a in got.attachments] == ["合同.txt", "季度报告 2024.pdf", "BIG.BIN"]


# --- Inline images referenced by cid: ----------------------------------------

APPLE_MAIL = (
    b"From: Ann <ann@example.com>\r\nTo: support@example.com\r\nSubject: screenshot\r\nMIME-Version: 1.0 (Mac OS X Mail 16.0)\r\n"
    b'Content-Type: multipart/alternative; boundary="Apple-Mail=_A"\r\n\r\n'
    b"--Apple-Mail=_A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe error:\r\n\r\n[image]\r\n"
    b'--Apple-Mail=_A\r\nContent-Type: multipart/mixed; boundary="Apple-Mail=_M"\r\n\r\n'
    b'--Apple-Mail=_M\r\nContent-Type: multipart/related; type="text/html"; boundary="Apple-Mail=_R"\r\n\r\n'
    b"--Apple-Mail=_R\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body>The error:<br><img src="cid:A1B2C3D4-0001@example.com" alt="shot.png"></body></html>\r\n'
    b"--Apple-Mail=_R\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: inline; filename=shot.png\r\n"
    b"Content-Type: image/png; x-unix-mode=0644; name=\"shot.png\"\r\nContent-Id: <A1B2C3D4-0001@example.com>\r\n\r\n"
    b"iVBORw0KGgo=\r\n--Apple-Mail=_R--\r\n"
    # Apple Mail sends a file the user attached as inline too; it is still a file.
    b"--Apple-Mail=_M\r\nContent-Disposition: inline; filename=invoice.pdf\r\nContent-Type: application/pdf;\r\n"
    b" x-unix-mode=0644; name=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b"--Apple-Mail=_M--\r\n--Apple-Mail=_A--\r\n")

OUTLOOK_RELATED = (
    b"From: Bo <bo@example.com>\r\nTo: support@example.com\r\nSubject: logo\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/related; type="multipart/alternative"; boundary="_004_"\r\n\r\n'
    b'--_004_\r\nContent-Type: multipart/alternative; boundary="_000_"\r\n\r\n'
    b"--_000_\r\nContent-Type: text/plain; charset=\"gb2312\"\r\n\r\nhi\r\n"
    b"--_000_\r\nContent-Type: text/html; charset=\"gb2312\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<p>hi</p><img width=3D\"80\" src=3D\"cid:image001.png@01DA1B2C.3D4E5F60\">"
    b"<img src=3D\"cid:sig%24logo@01DA\">\r\n--_000_--\r\n"
    # Outlook gives related images a Content-ID and often no Content-Disposition.
    b"--_004_\r\nContent-Type: image/png; name=\"image001.png\"\r\nContent-Description: image001.png\r\n"
    b"Content-ID: <image001.png@01DA1B2C.3D4E5F60>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    b"--_004_\r\nContent-Type: image/gif; name=\"logo.gif\"\r\nContent-ID: <sig$logo@01DA>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n"
    # A related part that the HTML never shows is a file, as Thunderbird lists it.
    b"--_004_\r\nContent-Type: image/jpeg; name=\"unused.jpg\"\r\nContent-ID: <unused@01DA>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n/9j/4AAQ\r\n--_004_--\r\n")

GMAIL_SIGNATURE = (
    b"From: Cy <cy@example.com>\r\nTo: support@example.com\r\nSubject: sig\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="000"\r\n\r\n--000\r\nContent-Type: text/plain\r\n\r\nthanks\r\n'
    # A nameless part marked inline, with no Content-ID: a signature logo.
    b"--000\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"iVBORw0KGgo=\r\n--000--\r\n")

CID_CASES = [
    ("apple-mail-related-cid-image", APPLE_MAIL,
     [("shot.png", "image/png", True, "A1B2C3D4-0001@example.com"), ("invoice.pdf", "application/pdf", False, None)],
     ("application/pdf",)),
    ("outlook-related-cid-without-disposition", OUTLOOK_RELATED,
     [("image001.png", "image/png", True, "image001.png@01DA1B2C.3D4E5F60"),
      ("logo.gif", "image/gif", True, "sig$logo@01DA"), ("unused.jpg", "image/jpeg", False, "unused@01DA")],
     ("image/jpeg",)),
    ("gmail-nameless-inline-signature-logo", GMAIL_SIGNATURE, [(None, "image/png", True, None)], ()),
]


@pytest.mark.parametrize("raw, expected, counted", [c[1:] for c in CID_CASES], ids=[c[0] for c in CID_CASES])
def test_images_the_html_shows_by_cid_are_inline_and_keep_their_content_id(raw, expected, counted):
    parsed = parse_message(raw)
    assert [(a.filename, a.content_type, a.inline, a.content_id) for a in parsed.attachments] == expected
    # Routing's has_attachment and attachment_type see only the files the sender attached.
    assert facts_for(parsed, event="new", mailbox="support").attachment_types == counted


def test_cid_marking_is_the_same_in_large_mail(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(largemail, "DETACH_PART_BYTES", 0)
    for raw in (APPLE_MAIL, OUTLOOK_RELATED):
        assert without_content(largemail.parse_large(raw, 25 * MiB, tmp_path)) == without_content(parse_message(raw))
