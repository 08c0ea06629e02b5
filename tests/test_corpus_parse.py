"""Robustness sweep of inboxd.mail.message over the shared real-world corpus.

Every mail in ../shared/corpus must parse or raise MalformedMessage; where
the corpus states expected subjects and ids, most must match.
"""

from __future__ import annotations

import gzip
import json
import mailbox
import re
from pathlib import Path

import pytest

from inboxd.mail.message import InboundMessage, MalformedMessage, extract_message_id, parse_message

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
if not CORPUS.is_dir():
    pytest.skip(f"no corpus at {CORPUS}", allow_module_level=True)

MAIL_SUFFIXES = {".eml", ".msg", ".txt", ".email"}
NOT_MAIL = {"SOURCE_COMMIT", "README", "COPYING"}
MBOX = CORPUS / "rth+jwzthreading/jwzthreading/tests/data/fedora-devel-mailman/2010-January.txt.gz"
STALWART = CORPUS / "stalwartlabs+mail-parser/resources"


def _mail_files() -> list[Path]:
    files = []
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.name in NOT_MAIL or path.name.startswith("."):
            continue
        if path.suffix.lower() in MAIL_SUFFIXES or path.suffix == "":
            files.append(path)
    return files


def _mbox_messages(tmp_dir: Path) -> list[bytes]:
    unpacked = tmp_dir / "2010-January.mbox"
    unpacked.write_bytes(gzip.decompress(MBOX.read_bytes()))
    return [m.as_bytes() for m in mailbox.mbox(unpacked)]


def _collapse(text: str) -> str:
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


def _check_invariants(parsed: InboundMessage) -> None:
    """What every parsed message promises to the store, whatever its input."""
    for text in (parsed.subject, parsed.text, *(a.name for a in parsed.to + parsed.cc + parsed.reply_to)):
        text.encode("utf-8")  # No lone surrogates from undecoded 8-bit bytes.
        assert "\x00" not in text
    assert "\r\n" not in parsed.text
    if parsed.date is not None:
        assert parsed.date.utcoffset().total_seconds() == 0
    for address in (parsed.from_, *parsed.to, *parsed.cc, *parsed.reply_to):
        if address is not None:
            assert address.email and address.email == address.email.lower()
    for attachment in parsed.attachments:
        assert attachment.content is None or len(attachment.content) == attachment.size


def _parse_or_quarantine(raw: bytes) -> InboundMessage | None:
    extract_message_id(raw)
    try:
        parsed = parse_message(raw)
    except MalformedMessage as error:
        assert str(error) and "\n" not in str(error)
        return None
    _check_invariants(parsed)
    return parsed


@pytest.mark.parametrize("path", _mail_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_file_parses_or_is_quarantined(path: Path):
    _parse_or_quarantine(path.read_bytes())


def test_mbox_subjects_and_ids_match_the_archive(tmp_path: Path):
    expected = json.loads((CORPUS / "rth+jwzthreading/EXPECTED.derived.json").read_text())["messages"]
    messages = _mbox_messages(tmp_path)
    assert len(messages) == len(expected) == 292
    subject_hits = id_hits = 0
    for entry in expected:
        parsed = _parse_or_quarantine(messages[entry["idx"]])
        assert parsed is not None, entry["idx"]
        subject_hits += parsed.subject == _collapse(entry["subject"])
        id_hits += parsed.message_id == entry["message_id"].strip().strip("<>")
    # Measured: 292/292 for both.
    assert subject_hits / len(expected) >= 0.98
    assert id_hits / len(expected) >= 0.98


def test_stalwart_eml_subjects():
    compared = hits = 0
    misses = []
    for expected_file in sorted((STALWART / "eml").glob("*/*.json")):
        if expected_file.name.endswith(".crlf.json"):
            continue
        headers = json.loads(expected_file.read_text())["parts"][0]["headers"]
        subjects = [h["value"].get("Text") for h in headers if h["name"] == "subject"]
        # "\ufffd" marks bytes the source could not decode either: not comparable.
        if not subjects or not subjects[0] or "\ufffd" in subjects[0]:
            continue
        parsed = _parse_or_quarantine(expected_file.with_suffix(".eml").read_bytes())
        if parsed is None:  # Quarantined for a missing sender: a rule of ours, not a decoding miss.
            continue
        compared += 1
        if parsed.subject == _collapse(subjects[0]):
            hits += 1
        else:
            misses.append((expected_file.name, parsed.subject, subjects[0]))
    # Measured: 67/67.
    assert compared >= 60
    assert hits / compared >= 0.95, misses


def test_stalwart_header_vectors():
    unstructured = json.loads((STALWART / "unstructured.json").read_text())
    subject_hits = 0
    for vector in unstructured:
        raw = ("From: a@example.com\nSubject:" + vector["header"]).encode("utf-8")
        subject_hits += parse_message(raw).subject == _collapse(vector["expected"])
    ids = json.loads((STALWART / "id.json").read_text())
    id_hits = 0
    for vector in ids:
        raw = ("From: a@example.com\nMessage-ID:" + vector["header"]).encode("utf-8")
        wanted = vector["expected"][0] if vector["expected"] else None
        id_hits += parse_message(raw).message_id == wanted
    # Measured: 27/30 subjects (the misses want a space inserted before an
    # encoded word that follows "]"), 11/11 ids.
    assert subject_hits / len(unstructured) >= 0.85
    assert id_hits == len(ids)


@pytest.mark.parametrize("relative, subject, text_start", [
    ("bestpractical+rt/t/data/emails/new-ticket-from-gb18030", "测试", "测试"),
    ("SpamScope+mail-parser/tests/mails/mail_test_12", "代开各地增值税发票", "你好！我公司可代开各类增值税发票"),
    ("mikel+mail/spec/fixtures/emails/multi_charset/japanese_iso_2022.eml", "まみむめも", "すみません。"),
])
def test_cjk_corpus_samples_decode(relative: str, subject: str, text_start: str):
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"{relative} not in this corpus")
    parsed = parse_message(path.read_bytes())
    assert parsed.subject == subject
    assert parsed.text.startswith(text_start)
