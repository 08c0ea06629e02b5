"""The zh/zh-Hant choice on real-world Chinese mail from other projects' test suites.

Reads ../shared/corpus (see its README) and skips cleanly when it is absent.
The expected choices were read off the mails by hand: RT's gb18030 sample
says 测试 (two Simplified-only characters); the SpamScope and sina.com
samples are GB2312 in Simplified Chinese; the Ruby mail sample declares Big5.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inboxd.desk.language import choose
from inboxd.mail.message import parse_message
from inboxd.mail.quotes import reply_text

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"

CASES = [
    ("mikel+mail/spec/fixtures/emails/error_emails/content_transfer_encoding_empty.eml", "zh-Hant", "charset big5"),
    ("bestpractical+rt/t/data/emails/new-ticket-from-gb18030", "zh", "the text is mostly Simplified (2 to 0)"),
    ("SpamScope+mail-parser/tests/mails/mail_test_12", "zh", "the text is mostly Simplified"),
    ("wRAR+flufl.bounce/flufl/bounce/tests/data/sina_01.txt", "zh", "the text is mostly Simplified"),
]


@pytest.mark.parametrize("name, language, reason", CASES, ids=[c[0].split("/")[0] for c in CASES])
def test_real_chinese_mail(name, language, reason):
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared corpus is absent)")
    msg = parse_message(path.read_bytes())
    got = choose("zh", charsets=msg.charsets, content_language=msg.content_language, text=reply_text(msg.text))
    assert got.language == language, got
    assert got.reason.startswith(reason), got
