"""Large mail: over [store] max_message_bytes it is streamed to disk and quarantined;
under it, it is parsed without copies (inboxd.mail.largemail) and filed with its attachments.

The sync tests drive a real Dovecot; the parser tests compare `parse_large`
with `parse_message`, whose result it must reproduce.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import select

from inboxd.mail import largemail
from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.mail.message import MalformedMessage, parse_message
from inboxd.store.sql import t
from inboxd.testing.mail import make_mail
from tests.support import cli, db_count, list_json, store_engine, write_config

MiB = 1 << 20
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def set_store_key(config: Path, line: str) -> None:
    """Put `line` (say "max_message_bytes = 102400") in the config's [store] table."""
    text = config.read_text()
    text = re.sub(r"^max_message_bytes = .*\n", "", text, flags=re.M)
    config.write_text(text.replace('data_dir = "var"\n', f'data_dir = "var"\n{line}\n', 1))


def raw_of(config: Path, quarantine_id: int) -> bytes:
    """`inboxd quarantine show --raw ID`, as bytes."""
    proc = subprocess.run([sys.executable, "-m", "inboxd", "--config", str(config), "quarantine", "show", "--raw",
                           str(quarantine_id)], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("workers", [0, 1])
def test_mail_over_max_message_bytes_is_quarantined_on_disk_and_filed_once_the_limit_is_raised(
        tmp_path, dovecot, imap_user, workers):
    """Defect: a 41 MiB mail was fetched whole and parsed at 12 times its size; there was no
    limit, and a mail too large to file could only be held in the store's rawmessage table."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    set_store_key(config, "max_message_bytes = 100000")
    content = os.urandom(300_000)
    big = make_mail(subject="The whole export", attachments=[("export.bin", content, "application/octet-stream")])
    assert len(big) > 300_000
    dovecot.append(imap_user, "INBOX", big)
    dovecot.append(imap_user, "INBOX", make_mail(subject="A small question behind it"))

    assert run_once(load_settings(config), workers=workers).failed == []

    # The mail behind it is filed and the checkpoint is past both.
    assert [t["subject"] for t in list_json(config)] == ["A small question behind it"]
    assert db_count(config, "SELECT last_uid FROM checkpoint WHERE folder = 'INBOX'") == 2
    [q] = json.loads(cli(config, "quarantine", "list", "--json").stdout)
    assert q["reason"].startswith(f"larger than max_message_bytes ({len(big)} bytes")
    sha256 = hashlib.sha256(big).hexdigest()
    assert q["raw_sha256"] == sha256
    # Its bytes are on disk, private, exactly as appended; none of it is in the store.
    path = tmp_path / "var" / "oversize" / f"{sha256}.eml"
    assert path.read_bytes() == big
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert raw_of(config, q["id"]) == big
    assert db_count(config, "SELECT count(*) FROM rawmessage") == 1
    assert db_count(config, f"SELECT count(*) FROM rawmessage WHERE sha256 = '{sha256}'") == 0
    assert db_count(config, "SELECT count(*) FROM quarantine WHERE raw_sha256 IS NULL"
                            " AND raw_path = 'oversize/" + sha256 + ".eml'") == 1
    shown = json.loads(cli(config, "quarantine", "show", str(q["id"]), "--json").stdout)
    assert shown["size"] == len(big) and "Subject: The whole export" in shown["headers"]
    [audit] = json.loads(cli(config, "audit", "--json").stdout)
    assert (audit["on_server"], audit["stored"], audit["quarantined"], audit["missing"]) == (2, 1, 1, [])

    # A retry under the same limit says why it is still there.
    proc = cli(config, "quarantine", "retry", str(q["id"]), check=False)
    assert proc.returncode == 1 and "still too large" in proc.stdout
    assert path.exists()

    # Raised above it, the retry files it from the file, and the file goes.
    set_store_key(config, "max_message_bytes = 1000000")
    assert f"quarantine {q['id']}: filed (new ticket)" in cli(config, "quarantine", "retry", str(q["id"])).stdout
    assert json.loads(cli(config, "quarantine", "list", "--json").stdout) == []
    assert sorted(t["subject"] for t in list_json(config)) == ["A small question behind it", "The whole export"]
    assert not path.exists()
    with store_engine(config).connect() as conn:
        [(stored,)] = conn.execute(select(t.rawmessage.c.data).where(t.rawmessage.c.sha256 == sha256)).all()
        [(att_sha, att_stored)] = conn.execute(select(t.attachment.c.sha256, t.attachment.c.stored)).all()
    assert stored == big
    assert att_stored and att_sha == hashlib.sha256(content).hexdigest()
    saved = tmp_path / "var" / "attachments" / att_sha[:2] / att_sha
    assert saved.read_bytes() == content
    [audit] = json.loads(cli(config, "audit", "--json").stdout)
    assert (audit["stored"], audit["quarantined"], audit["missing"]) == (2, 0, [])


@pytest.mark.parametrize("workers", [0, 1])
def test_large_mail_under_the_limit_is_filed_with_its_attachment_saved(tmp_path, dovecot, imap_user, workers):
    """Defect: a large mail was parsed by the stdlib at about eight times its size and pickled whole
    to the parser worker; it is now parsed in the daemon with its attachment decoded straight to disk."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], batch_size=20)
    content = os.urandom(5 * MiB)
    big = make_mail(subject="Scans of the contract", body="Hello,\n\nthe scans are attached.\n",
                    attachments=[("scans.pdf", content, "application/pdf"),
                                 ("note.txt", b"small text attachment\n", "text/plain")])
    # Eight small mails with it, so that with a worker the batch goes to the worker.
    dovecot.append_many(imap_user, "INBOX", [big, *(make_mail(subject=f"Small {i}") for i in range(8))])

    assert run_once(load_settings(config), workers=workers).failed == []

    tickets = list_json(config)
    assert len(tickets) == 9 and db_count(config, "SELECT count(*) FROM quarantine") == 0
    [ticket] = [t for t in tickets if t["subject"] == "Scans of the contract"]
    shown = json.loads(cli(config, "show", ticket["id"], "--json").stdout)
    assert shown["messages"][0]["text"].startswith("Hello,\n\nthe scans are attached.")
    a, raw = t.attachment.c, t.rawmessage.c
    with store_engine(config).connect() as conn:
        attachments = [tuple(r) for r in conn.execute(
            select(a.filename, a.size, a.sha256, a.stored).order_by(a.filename))]
        [(stored, size)] = conn.execute(select(raw.data, raw.size)
                                        .where(raw.sha256 == hashlib.sha256(big).hexdigest())).all()
    sha = hashlib.sha256(content).hexdigest()
    assert attachments == [("note.txt", 22, hashlib.sha256(b"small text attachment\n").hexdigest(), True),
                           ("scans.pdf", len(content), sha, True)]
    assert (tmp_path / "var" / "attachments" / sha[:2] / sha).read_bytes() == content
    # The raw bytes went into the store a piece at a time, and whole.
    assert stored == big and size == len(big)


# -- the parser: parse_large must give what parse_message gives ------------------------------------


def _comparable(msg):
    """A parsed message without what parse_large deliberately does differently: attachment
    content (it is on disk), defects (its skeleton has fewer to find), and the bytes of a
    forwarded mail (message/*), which it keeps as they came where the stdlib writes them anew."""
    if isinstance(msg, Exception):
        return (type(msg), str(msg))
    return dataclasses.replace(msg, defects=(), attachments=tuple(
        dataclasses.replace(a, content=None, **({"size": 0, "sha256": ""} if a.content_type.startswith("message/")
                                                 else {}))
        for a in msg.attachments))


def _both(raw: bytes, tmp_path: Path):
    def parse(fn):
        try:
            return _comparable(fn())
        except MalformedMessage as exc:
            return _comparable(exc)
    return (parse(lambda: parse_message(raw, max_attachment_bytes=25 * MiB)),
            parse(lambda: largemail.parse_large(raw, 25 * MiB, tmp_path)))


MAILS = {
    "base64 attachment": make_mail(attachments=[("a.bin", os.urandom(200_000), "application/octet-stream")]),
    "alternative text and html, two attachments": make_mail(
        body="Plain 文本\n" * 2000, html="<p>HTML 文本</p>\n" * 2000,
        attachments=[("a.pdf", os.urandom(100_000), "application/pdf"), ("b.csv", b"a,b\r\n" * 30_000, "text/csv")]),
    "quoted-printable attachment": (
        b"From: a@example.org\r\nTo: support@example.com\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\n"
        b"Content-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: text/csv\r\n"
        b"Content-Disposition: attachment; filename=\"r.csv\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + b"caf=C3=A9;=\r\n1;2\r\n" * 20_000 + b"\r\n--XX--\r\nepilogue\r\n"),
    "8bit attachment without a close delimiter, LF line ends": (
        b"From: a@example.org\nSubject: 8bit\nContent-Type: multipart/mixed; boundary=b1\n\n--b1\n\nbody\n"
        b"--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: 8bit\n\n"
        + bytes(range(1, 256)).replace(b"\n", b"").replace(b"\r", b"") * 1000 + b"\n"),
    "nested multipart and a forwarded message": (
        b"From: a@example.org\r\nSubject: nested\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n"
        b"--o\r\nContent-Type: multipart/alternative; boundary=\"i\"\r\n\r\n--i\r\nContent-Type: text/plain\r\n\r\n"
        b"inner text\r\n--i--\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@example.org\r\nSubject: fwd\r\n\r\n"
        + b"forwarded line\r\n" * 10_000 + b"--o\r\nContent-Type: image/png; name=\"x.png\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b"QUJD" * 40_000 + b"\r\n--o--\r\n"),
    "broken base64 stays with the stdlib": (
        b"From: a@example.org\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b"QUJD*EFG\r\n" * 20_000 + b"QQ\r\n--z--\r\n"),
}


@pytest.mark.parametrize("name", list(MAILS))
def test_parse_large_gives_what_parse_message_gives(tmp_path, monkeypatch, name):
    """Defect guard: the streaming parser of large mail must not change what a mail is (its
    text, addresses, attachments' names, sizes and hashes) compared with the stdlib parser."""
    monkeypatch.setattr(largemail, "DETACH_PART_BYTES", 1000)
    expected, got = _both(MAILS[name], tmp_path)
    assert got == expected


def test_parse_large_gives_what_parse_message_gives_on_the_corpus(tmp_path, monkeypatch):
    """Defect guard: over every real-world mail of the shared corpus, with every part that can
    be detached detached, parse_large and parse_message agree."""
    if not CORPUS.is_dir():
        pytest.skip(f"no corpus at {CORPUS}")
    monkeypatch.setattr(largemail, "DETACH_PART_BYTES", 0)
    # Long texts would be cut (test_a_huge_body_text_is_cut_and_says_so); here only detaching counts.
    monkeypatch.setattr(largemail, "BODY_TEXT_BYTES", 1 << 40)
    files = [p for p in sorted(CORPUS.rglob("*")) if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in {".eml", ".msg", ".txt", ".email", ""} and p.stat().st_size < 20 * MiB]
    assert len(files) > 100
    differ = []
    for path in files:
        expected, got = _both(path.read_bytes(), tmp_path)
        if got != expected:
            differ.append(str(path.relative_to(CORPUS)))
    assert differ == []


def test_parse_large_holds_no_copy_of_the_mail(tmp_path):
    """Defect: parsing a 41 MiB mail allocated 318 MiB (the stdlib keeps the text, its lines, the
    joined payload and the decoded bytes); parse_large stays below the mail's own size."""
    content = os.urandom(8 * MiB)
    raw = make_mail(attachments=[("big.bin", content, "application/octet-stream")])
    tracemalloc.start()
    try:
        msg = largemail.parse_large(raw, 25 * MiB, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(raw) / 2
    [att] = msg.attachments
    assert (att.size, att.sha256, att.content) == (len(content), hashlib.sha256(content).hexdigest(), None)


def test_a_huge_body_text_is_cut_and_says_so(tmp_path):
    """Defect: a mail with 3 MB of text kept all of it in memory several times over and in the
    ticket; the text is cut at 1 MiB, on a line, and says so."""
    line = "第 {} 行: the log line the customer pasted\n"
    raw = make_mail(body="".join(line.format(i) for i in range(60_000)))
    msg = largemail.parse_large(raw, 25 * MiB, tmp_path)
    assert msg.text.endswith(largemail.CUT_NOTE) and "BodyTextCut" in msg.defects
    text = msg.text[:-len(largemail.CUT_NOTE)]
    assert text.startswith(line.format(0)) and text.endswith("\n")
    assert 200_000 < len(text.encode()) <= largemail.BODY_TEXT_BYTES
    assert msg.size == len(raw)


def test_a_bounce_that_returns_a_large_mail_is_read_without_copying_it(tmp_path):
    """Defect: a bounce carrying the whole returned mail (a 3 MB attachment here) was parsed
    whole by the stdlib, twice (parser and bounce detection), at several times its size; the
    returned mail is now an attachment on disk and detection reads the report at the front."""
    from inboxd.mail.bounces import detect_bounce

    original = make_mail(frm="Support <support@example.com>", to="gone@example.org", subject="Your invoice",
                         message_id="<invoice-1@example.com>",
                         attachments=[("invoice.pdf", os.urandom(3 * MiB), "application/pdf")])
    raw = (b"From: MAILER-DAEMON@mx.example.com\r\nTo: support@example.com\r\n"
           b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
           b"--B\r\nContent-Type: text/plain\r\n\r\n<gone@example.org>: host mx.example.org said: 550 5.1.1"
           b" User unknown\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; gone@example.org\r\n"
           b"Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
           b"--B\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--B--\r\n")
    tracemalloc.start()
    try:
        msg = largemail.parse_large(raw, 25 * MiB, tmp_path)
        bounce = detect_bounce(raw, msg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(raw) / 2
    assert bounce is not None and bounce.permanent and bounce.recipients == ("gone@example.org",)
    assert bounce.original_message_id == "invoice-1@example.com"
    returned = next(a for a in msg.attachments if a.content_type == "message/rfc822")
    assert returned.size == len(original) and returned.sha256 == hashlib.sha256(original).hexdigest()
    assert (tmp_path / "attachments" / returned.sha256[:2] / returned.sha256).read_bytes() == original
