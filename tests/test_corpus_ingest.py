"""Every corpus email through a real Dovecot and `inboxd run --once`.

Each one must end up as a message (or a sighting of one already filed) or in
quarantine with a reason; none may crash the run or be skipped.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.support import cli, write_config
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

    conn = sqlite3.connect(config.parent / "inboxd.db")
    sighted = conn.execute("select count(distinct uid) from sighting").fetchone()[0]
    quarantined = json.loads(cli(config, "quarantine", "list", "--json").stdout)
    # Every UID became a sighting of a filed message or a quarantine entry.
    assert sighted + len(quarantined) == appended
    assert all(q["reason"] for q in quarantined)
    assert conn.execute("select count(*) from message").fetchone()[0] > 300
    assert conn.execute("select last_uid from checkpoint").fetchone()[0] == appended
    # The raw bytes of every quarantined mail are kept.
    kept = conn.execute("select count(*) from quarantine q join rawmessage r on r.sha256 = q.raw_sha256").fetchone()[0]
    assert kept == len(quarantined)
