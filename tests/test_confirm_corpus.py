"""待确认 on real-world replies: the reply-parser corpora's texts, read as replies to a solved ticket.

Skipped when ../shared/corpus is absent.  Of the 266 reply texts of the five
reply-parser test suites, exactly the five below are nothing but a thanks
(checked by hand); every other one (questions, bug reports, "Oh thanks.
Having the function would be great.") reopens.  And a plain mail that hopes
rather than confirms ("Hope it works well!") reopens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inboxd.desk.confirm import decide
from inboxd.mail.message import parse_message
from inboxd.mail.quotes import reply_text

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
REPLY_SUITES = ("mailgun+talon", "crisp-oss+email-reply-parser", "EdgeTier+email-reply-parser",
                "zapier+email-reply-parser", "github+email_reply_parser")
CODE = {".json", ".py", ".rb", ".js", ".md", ".php", ".go", ".java", ".ts"}
HEADERS = ("From", "Return", "Received", "Delivered", "MIME", "Message", "Date", "To", "Subject", "Content", "X-")

ONLY_THANKS = {
    "mailgun+talon/tests/fixtures/signature/emails/stripped/short_url_signature",          # "Thank you, / Noam"
    "crisp-oss+email-reply-parser/test/fixtures/email_custom_quote_header.txt",            # "Thank you!"
    "crisp-oss+email-reply-parser/test/fixtures/email_customer_quote_header_2.txt",        # "Thank you very much."
    "crisp-oss+email-reply-parser/test/fixtures/email_tricky_11_double_signature.txt",     # "Thanks for your help!"
    "crisp-oss+email-reply-parser/test/fixtures/email_with_date_headers.txt",              # "Thank you very much."
}

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is absent")


def _texts():
    for suite in REPLY_SUITES:
        for path in sorted((CORPUS / suite).rglob("*")):
            if not path.is_file() or path.suffix in CODE or path.name == "SOURCE_COMMIT":
                continue
            text = path.read_text(errors="replace")
            # Some fixtures are whole mails: the body is after the first blank line.
            if text.startswith(HEADERS) and "\n\n" in text:
                text = text.split("\n\n", 1)[1]
            yield str(path.relative_to(CORPUS)), text


def test_only_a_thanks_closes_among_real_replies():
    texts = list(_texts())
    assert len(texts) > 200
    closing = {name for name, text in texts if decide(reply_text(text)).close}
    assert closing == ONLY_THANKS


def test_a_hope_is_not_a_confirmation():
    path = CORPUS / "mikel+mail/spec/fixtures/emails/plain_emails/basic_email.eml"
    if not path.exists():
        pytest.skip("mikel+mail is absent")
    msg = parse_message(path.read_bytes())
    decision = decide(reply_text(msg.text))
    assert "Hope it works well!" in msg.text
    assert not decision.close and decision.reason == "says 'hope'"
