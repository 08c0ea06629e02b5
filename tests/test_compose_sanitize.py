"""compose.sanitize: the characters it blanks are exactly Unicode's control and separator categories."""

from __future__ import annotations

import sys
import unicodedata

from inboxd.outbound.compose import display_name, sanitize


def test_the_blanked_characters_are_exactly_categories_cc_zl_zp() -> None:
    # sanitize uses a fixed character class; this compares it with the
    # categories it stands for over every code point this Python knows.
    blanked = [c for c in map(chr, range(sys.maxunicode + 1)) if sanitize(f"a{c}b") != f"a{c}b"]
    expected = [c for c in map(chr, range(sys.maxunicode + 1))
                if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
    assert blanked == expected
    assert all(sanitize(f"a{c}b") == "a b" for c in expected)


def test_a_header_value_with_breaks_becomes_one_line() -> None:
    assert sanitize("Order\r\nBcc: evil@example.com") == "Order  Bcc: evil@example.com"
    assert sanitize("\t订单\u2028还没有发货\u0085 ") == "订单 还没有发货"
    assert sanitize("plain") == "plain"


def test_a_display_name_is_sanitised_too() -> None:
    assert display_name("王小明\n<evil@example.com>") == "王小明 <evil@example.com>"
