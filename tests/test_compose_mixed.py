"""compose() writes a header of plain words and one wide word (a subject "Re: [T-1001] 订单查询 #3", a
name "王小明 3") itself: it must be exactly what the email package writes.  Pure functions: no server."""

from __future__ import annotations

import random

import pytest

from inboxd.outbound import compose as composing

PLAIN = ["Re:", "[T-1001]", "#3", "3", "Alice", "O'Neil", "Dr.", "Smith,", "(team)", "\"Q\"", "a+b", "a\\b",
         "<x>", "@home", "late!", "x" * 30, "=", "?", "-", "Jr"]
WIDE = ["王小明", "订单查询", "發票", "ありがとう", "Ελένη", "😀", "é", "客服" * 12, "订单延误，请尽快处理", "Ünal"]


def _values(seed: int, n: int = 250) -> list[str]:
    rng = random.Random(seed)
    values = []
    for _ in range(n):
        words = [rng.choice(PLAIN) for _ in range(rng.randint(0, 6))]
        words.insert(rng.randint(0, len(words)), rng.choice(WIDE))
        if rng.random() < 0.1:
            words.insert(rng.randint(0, len(words)), rng.choice(WIDE))
        values.append(" ".join(words))
    return values


@pytest.mark.parametrize("seed", range(4))
def test_a_subject_with_one_wide_word_is_the_email_packages_line(seed):
    for value in _values(seed):
        assert composing._header("Subject", value) == composing._stdlib_header("Subject", value), value


@pytest.mark.parametrize("seed", range(4))
def test_a_name_with_one_wide_word_is_the_email_packages_line(seed):
    for value in _values(seed + 100):
        pair = [(value, "customer3@example.cn")]
        assert composing._header("To", pair) == composing._stdlib_header("To", pair), value


def test_the_common_chinese_acknowledgement_headers_take_the_direct_path(monkeypatch):
    # The shapes every Chinese acknowledgement has are written without the email package.
    def refuse(name, value):
        raise AssertionError(f"{name}: {value!r} went through the email package")

    expected = {("Subject", "Re: [T-1001] 订单查询 #3"): "Subject: Re: [T-1001] =?utf-8?b?6K6i5Y2V5p+l6K+i?= #3\r\n",
                ("To", "王小明 3"): "To: =?utf-8?b?546L5bCP5piO?= 3 <customer3@example.cn>\r\n"}
    monkeypatch.setattr(composing, "_stdlib_header", refuse)
    assert composing._header("Subject", "Re: [T-1001] 订单查询 #3") == expected["Subject", "Re: [T-1001] 订单查询 #3"]
    assert composing._header("To", [("王小明 3", "customer3@example.cn")]) == expected["To", "王小明 3"]
