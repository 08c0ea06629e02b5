"""parse_message cuts big base64 attachments out before the stdlib parses a mail
(largemail.cut_attachments) and puts them back after; what it gives must be
exactly what the parse of the whole mail gives: every field, defects and
attachment content included.  No server is needed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
from pathlib import Path

import pytest

from inboxd.mail import largemail, message
from inboxd.mail.message import MalformedMessage, parse_message
from inboxd.testing.mail import make_mail

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
KiB = 1024


def _whole(raw: bytes, **kw):
    """parse_message as it was before the cut: the stdlib reads the whole mail."""
    saved = message._CUT_FROM_BYTES
    message._CUT_FROM_BYTES = 1 << 62
    try:
        return _parse(raw, **kw)
    finally:
        message._CUT_FROM_BYTES = saved


def _parse(raw: bytes, **kw):
    try:
        return parse_message(raw, **kw)
    except MalformedMessage as exc:
        return ("malformed", str(exc))


def _cut_count(raw: bytes) -> int:
    return len(largemail.cut_attachments(raw)[1])


def _mixed(part_headers: str, body: bytes, *, boundary: str = "b1") -> bytes:
    return (b"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: files\r\n"
            b"Message-ID: <cut-1@example.org>\r\nMIME-Version: 1.0\r\n"
            + f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n--{boundary}\r\n'.encode()
            + b"Content-Type: text/plain; charset=utf-8\r\n\r\nSee the file.\r\n"
            + f"--{boundary}\r\n{part_headers}\r\n\r\n".encode() + body + f"\r\n--{boundary}--\r\n".encode())


PDF = os.urandom(200 * KiB)
B64 = base64.encodebytes(PDF).replace(b"\n", b"\r\n")
IMAGE = os.urandom(40 * KiB)

CASES = {
    # Cut: valid base64 files.
    "a pdf": (make_mail(attachments=[("invoice.pdf", PDF, "application/pdf")]), 1),
    "two files and an html body": (make_mail(body="Text 文本\n" * 50, html="<p>HTML</p>\n" * 50, attachments=[
        ("a.bin", os.urandom(30 * KiB), "application/octet-stream"), ("b.png", IMAGE, "image/png")]), 2),
    "an image the html shows by cid": (
        b"From: ann@example.org\r\nSubject: logo\r\nContent-Type: multipart/related; boundary=r\r\n\r\n--r\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p><img src=\"cid:logo@x\"></p>\r\n--r\r\n"
        b"Content-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(IMAGE) + b"--r--\r\n", 1),
    "a file larger than max_attachment_bytes": (make_mail(attachments=[("big.pdf", PDF, "application/pdf")]), 1),
    "LF line ends, no close delimiter": (_mixed(
        "Content-Type: application/zip\r\nContent-Transfer-Encoding: base64", B64)
        .replace(b"\r\n", b"\n").rsplit(b"--b1--", 1)[0], 1),
    # Kept: what the stdlib decodes with a defect, or reads by other rules.
    "base64 with a bad character": (_mixed(
        "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64", B64[:-10] + b"*" + B64[-10:]), 0),
    "base64 without its padding": (_mixed(
        "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64", base64.b64encode(PDF[:-1]).rstrip(b"=")), 0),
    "a winmail.dat": (_mixed(
        'Content-Type: application/octet-stream; name="winmail.dat"\r\nContent-Transfer-Encoding: base64', B64), 0),
    "a base64 text body": (_mixed(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64",
        base64.encodebytes(("第一行 line\n" * 3000).encode())), 0),
    "a file name that is not ASCII": (_mixed(
        "Content-Type: application/pdf; name=\"=?utf-8?b?5Y+R56Wo?=.pdf\"\r\nContent-Transfer-Encoding: base64", B64), 0),
    "a forwarded mail": (_mixed("Content-Type: message/rfc822",
                                b"From: b@example.org\r\nSubject: old\r\n\r\n" + B64), 0),
    # The feed parser reads a "From " line that ends a header block as the body's first line.
    "a From line at the end of a part's headers": (_mixed(
        "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nFrom someone Tue May 10 2005", B64), 0),
    "quoted-printable": (_mixed("Content-Type: text/csv\r\nContent-Transfer-Encoding: quoted-printable",
                                b"caf=C3=A9;1\r\n" * 3000), 0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_cut_parse_is_the_whole_parse(name):
    """Defect guard: cutting attachments out must change nothing parse_message gives."""
    raw, cuts = CASES[name]
    limit = 100 * KiB if name == "a file larger than max_attachment_bytes" else 25 << 20
    assert _cut_count(raw) == cuts
    got = _parse(raw, max_attachment_bytes=limit)
    assert got == _whole(raw, max_attachment_bytes=limit)


def test_the_cut_attachment_is_the_real_one():
    raw, _ = CASES["a pdf"]
    [att] = parse_message(raw).attachments
    assert (att.filename, att.size, att.sha256, att.content) == (
        "invoice.pdf", len(PDF), hashlib.sha256(PDF).hexdigest(), PDF)
    [big] = parse_message(raw, max_attachment_bytes=100 * KiB).attachments
    assert (big.size, big.sha256, big.content) == (len(PDF), hashlib.sha256(PDF).hexdigest(), None)


def test_the_cut_parse_is_the_whole_parse_on_the_corpus(monkeypatch):
    """Defect guard: over every real-world mail of the shared corpus, with every base64
    part that can be cut cut out, parse_message gives what the whole parse gives."""
    if not CORPUS.is_dir():
        pytest.skip(f"no corpus at {CORPUS}")
    files = [p for p in sorted(CORPUS.rglob("*")) if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in {".eml", ".msg", ".txt", ".email", ""} and p.stat().st_size < 20 << 20]
    assert len(files) > 100
    expected = {p: _whole(p.read_bytes()) for p in files}
    monkeypatch.setattr(message, "_CUT_FROM_BYTES", 0)
    monkeypatch.setattr(largemail, "CUT_PART_BYTES", 0)
    cut = [p for p in files if not isinstance(expected[p], tuple) and _cut_count(message._check_shape(p.read_bytes()))]
    assert len(cut) > 20
    differ = [str(p.relative_to(CORPUS)) for p in files if _parse(p.read_bytes()) != expected[p]]
    assert differ == []


# Lines a mutation puts near a base64 part's headers: each is a way the feed
# parser may read a part otherwise than a scan of its bytes would.
_ODD_LINES = [b"From someone Tue", b" folded", b":odd", b"\r", b"X-A: b", b"Content-Transfer-Encoding: 7bit",
              b"Content-Type: text/plain", b"Content-Type: message/rfc822", b"\tcont", b"From ",
              b"Content-Type: multipart/mixed; boundary=x"]


def _mutated(rng: random.Random, raw: bytes) -> bytes:
    sep = b"\r\n" if b"\r\n" in raw else b"\n"
    lines = raw.split(sep)
    at = [i for i, line in enumerate(lines) if line.lower().startswith(b"content-transfer-encoding: base64")]
    kind = rng.randrange(5)
    if kind <= 1 and at:
        lines.insert(max(0, rng.choice(at) + rng.randrange(-2, 3)), rng.choice(_ODD_LINES))
    elif kind == 2:
        delimiters = [i for i, line in enumerate(lines) if line.startswith(b"--")]
        if delimiters:
            i = rng.choice(delimiters)
            lines[i] += rng.choice([b" ", b"\t", b"--", b"x", b"\r"])
    elif kind == 3:
        return raw.replace(sep, rng.choice([b"\r", b"\n", b"\r\n"]))
    else:
        i = rng.randrange(len(raw) + 1)
        return raw[:i] + rng.choice([b"\r\n", b"\n\n", b"=", b"--", b"*"]) + raw[i:]
    return sep.join(lines)


def test_a_cut_parse_is_the_whole_parse_on_mutated_mail(monkeypatch):
    """Defect guard: a 'From ' line closing a part's headers made the cut parse decode what the
    stdlib reads as undecodable; mutated mail (odd header lines, delimiters, line ends) parses
    the same cut as whole."""
    rng = random.Random(15)
    bases = [raw for raw, cuts in CASES.values() if cuts] + [_mixed(
        "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64", base64.encodebytes(os.urandom(3000)))]
    mails = []
    for _ in range(150):
        raw = rng.choice(bases)
        for _ in range(rng.randrange(1, 4)):
            raw = _mutated(rng, raw)
        mails.append(raw)
    expected = [_whole(raw) for raw in mails]
    monkeypatch.setattr(message, "_CUT_FROM_BYTES", 0)
    monkeypatch.setattr(largemail, "CUT_PART_BYTES", 0)
    assert sum(bool(_cut_count(raw)) for raw in mails) > 50
    assert [i for i, raw in enumerate(mails) if _parse(raw) != expected[i]] == []
