"""Every corpus email through a real Dovecot and `inboxd run --once`.

Each one must end up as a message (or a sighting of one already filed) or in
quarantine with a reason; none may crash the run or be skipped.
"""

from __future__ import annotations

import json

import pytest

from tests.support import cli, db_count, write_config
from tests.test_corpus_parse import CORPUS, _mail_files

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is absent")


def test_every_corpus_mail_is_filed_or_quarantined(tmp_path, dovecot, imap_user):
    appended = 0
    for path in _mail_files():
        raw = path.read_bytes()
        if not raw.strip():
            continue
        try:
            dovecot.append(imap_user, "INBOX", raw)
        except Exception:
            # A few files are not even acceptable to an IMAP server (e.g. NUL
            # bytes); they can never reach inboxd, so they are not counted.
            continue
        appended += 1
    assert appended > 500
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], batch_size=100)
    proc = cli(config, "run", "--once", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]

    sighted = db_count(config, "select count(distinct uid) from sighting")
    quarantined = json.loads(cli(config, "quarantine", "list", "--json").stdout)
    # Every UID became a sighting of a filed message or a quarantine entry.
    assert sighted + len(quarantined) == appended
    assert all(q["reason"] for q in quarantined)
    assert db_count(config, "select count(*) from message") > 300
    assert db_count(config, "select last_uid from checkpoint") == appended
    # The raw bytes of every quarantined mail are kept.
    kept = db_count(config, "select count(*) from quarantine q join rawmessage r on r.sha256 = q.raw_sha256")
    assert kept == len(quarantined)
