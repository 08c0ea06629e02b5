"""Poison mail: bytes that cannot become text must never stop a mailbox.

Round 2, 2 of 8, item 1.  One raw 8-bit byte (or a NUL, which Dovecot
stores as 0x80) in a Message-ID became a lone surrogate; SQLite refused to
bind it, the quarantine insert failed for the same reason, and the batch
rolled back and was retried for ever: no mail behind it was filed and
`run --once` exited 1 every time.
"""

from __future__ import annotations

import hashlib
import imaplib
import json
from datetime import UTC, datetime
import logging
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from inboxd.desk import ingest
from inboxd.config import load_settings
from inboxd.store.engine import open_store
from inboxd.desk.ingest import Batch, Fetched
from inboxd.mail.message import clean_text, extract_message_id, parse_message
from inboxd.sync.sink import StoreSink
from inboxd.testing.mail import make_mail
from tests.support import PASSWORD, cli, list_json, store_engine, write_config

# Where the poison byte goes; "poison<byte>id" marks it in the raw mail.
FIELDS = ("message_id", "in_reply_to", "references", "subject", "filename", "from")
POISON_BYTES = {"8bit": b"\x80", "nul": b"\x00"}


def poison_mail(field: str, byte: bytes) -> bytes:
    token = "poisonPOISONid"
    # A fixed Date: the mails of one field must be byte-identical but for the poison byte (Dovecot turns
    # both into 0x80), and a Date taken from the wall clock could cross a second between the two.
    kwargs: dict = {"subject": "Poisoned mail", "date": datetime(2026, 11, 30, 8, 0, tzinfo=UTC)}
    if field == "message_id":
        kwargs["message_id"] = f"<{token}@example.cn>"
    elif field == "in_reply_to":
        kwargs["in_reply_to"] = f"<{token}@example.cn>"
    elif field == "references":
        kwargs["references"] = ["<first@example.cn>", f"<{token}@example.cn>"]
    elif field == "subject":
        kwargs["subject"] = f"Help {token} me"
    elif field == "filename":
        kwargs["attachments"] = [(f"{token}.pdf", b"%PDF-1.4 poison", "application/pdf")]
    elif field == "from":
        kwargs["frm"] = f"Poison {token} <li.{token}@example.cn>"
    return make_mail(**kwargs).replace(b"POISON", byte)


def fetch_raw(dovecot, user: str, uid: int) -> bytes:
    """The bytes Dovecot actually stores for a UID (a NUL comes back as 0x80)."""
    imap = imaplib.IMAP4(dovecot.host, dovecot.port)
    try:
        imap.login(user, PASSWORD)
        imap.select("INBOX", readonly=True)
        typ, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
        assert typ == "OK", data
        return data[0][1]
    finally:
        imap.logout()


def row(conn: Connection, sql: str, **params) -> tuple | None:
    """The first row of portable `sql` (:named parameters), as a tuple; None when there is none."""
    found = conn.execute(text(sql), params).first()
    return None if found is None else tuple(found)


def counts(config: Path) -> list[int]:
    with store_engine(config).connect() as conn:
        return [conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("message", "ticket", "quarantine", "sighting")]


@pytest.mark.parametrize("batch_size", [200, 2], ids=["one-batch", "batches-of-2"])
@pytest.mark.parametrize("field", FIELDS)
def test_poison_byte_never_stops_the_mailbox(tmp_path, dovecot, imap_user, field, batch_size):
    """A raw 8-bit byte or a NUL in a header stopped the mailbox: the batch rolled back
    for ever, 0 good mails behind it were filed and `run --once` exited 1."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], batch_size=batch_size)
    # Good mail around and behind each poison mail; with batches of 2 each
    # poison mail shares a batch with a good one: [G0 P], [G1 P], [G2 G3].
    poison_uids = {}
    dovecot.append(imap_user, "INBOX", make_mail(subject="Good 0"))
    for i, (label, byte) in enumerate(POISON_BYTES.items(), start=1):
        poison_uids[label] = dovecot.append(imap_user, "INBOX", poison_mail(field, byte))
        dovecot.append(imap_user, "INBOX", make_mail(subject=f"Good {i}"))
    dovecot.append(imap_user, "INBOX", make_mail(subject="Good 3"))
    stored = {label: fetch_raw(dovecot, imap_user, uid) for label, uid in poison_uids.items()}
    for raw in stored.values():
        # What the server keeps is what inboxd sees: Dovecot turns a NUL into 0x80.
        at = raw.index(b"poison") + len(b"poison")
        assert raw[at:at + 1] == b"\x80"

    first = cli(config, "run", "--once", check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    subjects = {t["subject"] for t in list_json(config)}
    assert {"Good 0", "Good 1", "Good 2", "Good 3"} <= subjects

    escaped = "poison\\x80id@example.cn"
    with store_engine(config).connect() as conn:
        for label, raw in stored.items():
            sha = hashlib.sha256(raw).hexdigest()
            # The raw bytes are kept byte for byte, whether filed or quarantined.
            assert bytes(row(conn, "SELECT data FROM rawmessage WHERE sha256 = :sha", sha=sha)[0]) == raw
            filed = row(conn, "SELECT id, message_id, in_reply_to, \"references\", subject FROM message"
                              " WHERE raw_sha256 = :sha", sha=sha)
            quarantined = row(conn, "SELECT reason FROM quarantine WHERE raw_sha256 = :sha", sha=sha)
            assert (filed is None) != (quarantined is None), (label, filed, quarantined)
            if filed is None:
                assert quarantined[0], label
                continue
            pk, message_id, in_reply_to, references, subject = filed
            if field == "message_id":
                assert message_id == escaped
            elif field == "in_reply_to":
                assert json.loads(in_reply_to) == [escaped]
            elif field == "references":
                assert json.loads(references) == ["first@example.cn", escaped]
            elif field == "subject":
                assert subject.startswith("Help poison") and subject.endswith("id me")
            elif field == "filename":
                [name] = row(conn, "SELECT filename FROM attachment WHERE message_pk = :pk", pk=pk)
                assert name.startswith("poison") and name.endswith("id.pdf")
    before = counts(config)

    # A second cycle files nothing new and does not fail.
    second = cli(config, "run", "--once", check=False)
    assert second.returncode == 0, second.stderr[-2000:]
    assert counts(config) == before


# -- the text boundary, without a server ------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("plain", "plain"),
    ("a\udc80b", "a\\x80b"),                       # an undecodable byte, escaped
    ("caf\udcc3\udca9", "café"),                   # raw UTF-8 bytes, decoded
    ("x\udcff\udcfe\udcc3\udca9y", "x\\xff\\xfeéy"),
    ("nul\x00here", "nul\\x00here"),
    ("lone \ud800 high", "lone \\ud800 high"),
    ("中文\udc80", "中文\\x80"),
])
def test_clean_text_escapes_reversibly(value, expected):
    """Lone surrogates and NULs reached SQLite, which cannot bind them."""
    cleaned = clean_text(value)
    assert cleaned == expected
    cleaned.encode("utf-8")
    assert "\x00" not in cleaned


def test_every_parsed_string_is_storable():
    """The parser handed 8-bit header bytes over as lone surrogates (Message-ID,
    In-Reply-To, References, an address, a content type)."""
    raw = (b"From: Li <li\x80@example.cn>\r\nTo: support@example.com\r\nSubject: s\xff\r\n"
           b"Message-ID: <a\x80b@x>\r\nIn-Reply-To: <c\x00d@x>\r\nReferences: <e\xc3\xa9f@x>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
           b"--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--XX\r\nContent-Type: application/x-\x80\r\nContent-Disposition: attachment; filename=\"f\x80.bin\"\r\n"
           b"\r\ndata\r\n--XX--\r\n")
    msg = parse_message(raw)
    assert msg.message_id == "a\\x80b@x"
    assert msg.in_reply_to == ("c\\x00d@x",)
    assert msg.references == ("eéf@x",)

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, tuple):
            for item in value:
                yield from strings(item)
        elif hasattr(value, "__dataclass_fields__"):
            for name in value.__dataclass_fields__:
                yield from strings(getattr(value, name))

    for text in strings(msg):
        text.encode("utf-8")
        assert "\x00" not in text


def test_extract_message_id_matches_the_parser():
    """The quarantine's Message-ID scan decoded with U+FFFD, the parser not at all."""
    raw = b"Message-ID: <a\x80b\xc3\xa9@x>\r\nFrom: a@b\r\n\r\nbody"
    assert extract_message_id(raw) == parse_message(raw).message_id == "a\\x80bé@x"


# -- the store: quarantine fallback and batch splitting ------------------------------


@pytest.fixture
def sink(tmp_path, dovecot, imap_user):
    """A StoreSink on the test's store (the config names the session Dovecot, never contacted)."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    settings = load_settings(config)
    sink = StoreSink(open_store(settings.store.url), settings, workers=0)
    yield sink
    sink.close()


def _rows(sink: StoreSink, sql: str, **params) -> list[tuple]:
    """The rows of portable `sql` (:named parameters) on the sink's store, bytes as bytes."""
    with sink.engine.connect() as conn:
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                for r in conn.execute(text(sql), params)]


class SimulatedStoreError(Exception):
    """A failure of the store that breaks the whole transaction (raised by the tests below)."""


def _batch(raws: list[bytes], first_uid: int = 1, last_uid: int | None = None) -> Batch:
    messages = [Fetched(first_uid + i, raw) for i, raw in enumerate(raws)]
    return Batch("support", "INBOX", 7, last_uid if last_uid is not None else messages[-1].uid, messages)


def test_quarantine_row_that_cannot_be_written_falls_back_to_raw_bytes(sink, monkeypatch):
    """The quarantine insert failed for the very reason the mail was quarantined
    (a Message-ID SQLite cannot bind), taking the whole batch down with it."""
    good = make_mail(subject="Good after bad text")
    bad = make_mail(subject="Bad text", message_id="<bad@x>")
    parse = sink.filer.parse

    def unclean_parse(raw: bytes):
        # A parser that lets a lone surrogate through, as the old one did.
        msg = parse(raw)
        if raw is bad:
            from dataclasses import replace
            msg = replace(msg, message_id="bad\udc80@x")
        return msg

    monkeypatch.setattr(sink.filer, "parse", unclean_parse)
    result = sink.file(_batch([bad, good], last_uid=5), None)
    assert (result.filed, result.quarantined) == (1, 1)
    [(message_id, reason, sha)] = _rows(sink, "SELECT message_id, reason, raw_sha256 FROM quarantine")
    assert message_id is None and reason == "unreadable: UnicodeEncodeError"
    assert _rows(sink, "SELECT data FROM rawmessage WHERE sha256 = :sha", sha=sha) == [(bad,)]
    assert _rows(sink, "SELECT subject FROM ticket") == [("Good after bad text",)]
    assert _rows(sink, "SELECT last_uid FROM checkpoint") == [(5,)]


def _breaking(monkeypatch, bad_uids: set[int]) -> None:
    """Make filing these UIDs break the whole transaction, past the per-message savepoint."""
    deliver = ingest.Filer.deliver

    def breaking_deliver(self, cur, d, result):
        if d.uid in bad_uids:
            raise SimulatedStoreError(f"simulated failure filing uid {d.uid}")
        return deliver(self, cur, d, result)

    monkeypatch.setattr(ingest.Filer, "deliver", breaking_deliver)


def test_a_batch_that_fails_twice_is_split_down_to_the_bad_message(sink, monkeypatch, caplog):
    """A batch whose transaction failed as a whole was retried for ever, holding
    back every good mail behind the one that broke it."""
    raws = [make_mail(subject=f"Mail {i}") for i in range(1, 8)]
    _breaking(monkeypatch, {5})
    caplog.set_level(logging.WARNING, logger="inboxd.sync.sink")
    # UIDs 1..7 in a batch whose checkpoint is 9 (UIDs 8 and 9 were expunged).
    result = sink.file(_batch(raws, last_uid=9), None)
    assert (result.filed, result.quarantined) == (6, 1)
    assert sorted(s for (s,) in _rows(sink, "SELECT subject FROM ticket")) == [
        f"Mail {i}" for i in (1, 2, 3, 4, 6, 7)]
    [(uid, message_id, reason, sha)] = _rows(sink, "SELECT uid, message_id, reason, raw_sha256 FROM quarantine")
    assert uid == 5 and message_id is None
    assert reason == "unreadable: SimulatedStoreError: simulated failure filing uid 5"
    assert _rows(sink, "SELECT data FROM rawmessage WHERE sha256 = :sha", sha=sha) == [(raws[4],)]
    assert _rows(sink, "SELECT last_uid FROM checkpoint") == [(9,)]
    messages = [r.getMessage() for r in caplog.records]
    assert any("trying once more" in m for m in messages)
    assert any("splitting the batch" in m for m in messages)
    assert any("uid 5 fails its transaction alone" in m and extract_message_id(raws[4]) in m for m in messages)


def test_split_checkpoints_stop_before_a_message_that_cannot_be_kept(sink, monkeypatch):
    """Sub-batches must move the checkpoint only up to their own last UID: when
    even the bare quarantine fails, the mail before it is filed and nothing
    after the checkpoint is lost."""
    raws = [make_mail(subject=f"Mail {i}") for i in range(1, 7)]
    _breaking(monkeypatch, {3})

    def store_down(*args, **kwargs):
        raise SimulatedStoreError("simulated: cannot even quarantine")

    monkeypatch.setattr(ingest.Filer, "quarantine_alone", store_down)
    with pytest.raises(SimulatedStoreError):
        sink.file(_batch(raws, last_uid=6), None)
    assert sorted(s for (s,) in _rows(sink, "SELECT subject FROM ticket")) == ["Mail 1", "Mail 2"]
    assert _rows(sink, "SELECT last_uid FROM checkpoint") == [(2,)]
    assert _rows(sink, "SELECT count(*) FROM quarantine") == [(0,)]
