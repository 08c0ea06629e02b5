"""compose() writes its bytes directly; they must be exactly what the email package writes.

The golden files pin a few whole acknowledgements.  These tests compare the
direct writer with the email package (inboxd.outbound.compose._stdlib_bytes,
the way compose() built every mail before) on many generated mails: names
and subjects in ASCII, Chinese and both, with the characters that make a
header need quoting, encoding or folding; long and short bodies; HTML or
not; long thread-id lists.  Pure functions: no server.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from inboxd.outbound import compose as composing
from inboxd.outbound.loop import AUTO_GENERATED, AUTO_REPLIED

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)

ASCII_WORDS = ["Alice", "Bob", "O'Neil", "Li", "Dr.", "Smith,", "Jr", "(team)", "\"Q\"", "a+b", "x=?y", "Ünal",
               "support", "Order", "#2291", "[T-1000]", "Re:", "late!", "=?utf-8?q?hi?=", "a\\b", "<x>", "@home"]
WIDE_WORDS = ["李雷", "韩梅梅", "王小明", "示例客服中心", "订单延误，请尽快处理", "发票", "退款", "無法登入", "ありがとう",
              "Ελένη", "Привет", "😀", "客服" * 12, "é"]


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(ASCII_WORDS if rng.random() < 0.5 else WIDE_WORDS) for _ in range(n)]


def _name(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.15:
        return ""
    if kind < 0.4:
        return rng.choice(WIDE_WORDS)
    if kind < 0.6:
        return " ".join(rng.choice(["Alice", "Bob", "Smith", "Li", "Wei", "Zhang"]) for _ in range(rng.randint(1, 3)))
    joiner = rng.choice([" ", "", "  "])
    return joiner.join(_words(rng, rng.randint(1, 6)))


def _subject(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return f"Re: [T-{rng.randint(1000, 99999)}] {rng.choice(WIDE_WORDS)}"
    if kind < 0.5:
        return "Re: [T-1000] " + " ".join(rng.choice(ASCII_WORDS) for _ in range(rng.randint(1, 20)))
    return " ".join(_words(rng, rng.randint(1, 12)))


def _text(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(1, 30)):
        words = _words(rng, rng.randint(0, 25)) if rng.random() < 0.5 else \
            [rng.choice(["Hello", "thanks", "your", "order", "is", "late."]) for _ in range(rng.randint(0, 25))]
        lines.append(" ".join(words))
    newline = rng.choice(["\n", "\n", "\r\n"])
    return newline.join(lines) + rng.choice(["", newline])


def _case(rng: random.Random, index: int) -> dict:
    text = _text(rng)
    refs = [f"{'r' * rng.randint(1, 60)}{i}@mail.example.org" for i in range(rng.choice([0, 0, 1, 2, 5, 25]))]
    extra = {"Reply-To": rng.choice(["help@example.com", "Help Desk <help@example.com>", "李雷 <li@example.cn>"])} \
        if rng.random() < 0.2 else {}
    return dict(
        mailbox_address=rng.choice(["support@example.com", "kefu@example.cn"]),
        from_name=_name(rng),
        to=[(_name(rng), f"c{index}.{n}@example.org") for n in range(rng.choice([1, 1, 1, 2, 3]))],
        subject=_subject(rng), text=text,
        html=f"<p>{text}</p>" if rng.random() < 0.4 else None,
        message_id=f"inboxd.T-{index}.{index:06x}@example.com",
        in_reply_to=f"{'q' * rng.randint(1, 80)}@mail.example.org" if rng.random() < 0.7 else None,
        references=refs,
        automatic=rng.choice([None, AUTO_REPLIED, AUTO_GENERATED]),
        loop_value=rng.choice([None, "support", "kefu@example.cn"]),
        extra_headers=extra,
        now=NOW.astimezone(timezone(timedelta(hours=rng.choice([0, 8, -5])))) + timedelta(seconds=index),
    )


def _by_the_email_package(monkeypatch: pytest.MonkeyPatch, case: dict) -> bytes:
    with monkeypatch.context() as patch:
        patch.setattr(composing, "_direct_bytes",
                      lambda headers, text, html, boundary: composing._stdlib_bytes(headers, text, html, (), boundary))
        return composing.compose(**case).data


@pytest.mark.parametrize("seed", range(8))
def test_direct_bytes_are_the_email_packages_bytes(monkeypatch, seed):
    rng = random.Random(seed)
    for index in range(150):
        case = _case(rng, seed * 1000 + index)
        try:
            direct = composing.compose(**case).data
        except ValueError:
            # A header no server would take (the same check runs on both ways).
            with pytest.raises(ValueError):
                _by_the_email_package(monkeypatch, case)
            continue
        assert direct == _by_the_email_package(monkeypatch, case), case


def test_the_direct_writer_is_what_composes_an_acknowledgement(monkeypatch):
    """The comparison above is not vacuous: a plain acknowledgement never builds an EmailMessage."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the email package's generator was used")

    monkeypatch.setattr(composing, "_stdlib_bytes", refuse)
    out = composing.compose(mailbox_address="kefu@example.cn", from_name="示例客服中心", to=[("李雷", "li@example.cn")],
                            subject="Re: [T-1000] 订单延误", text="您好\n", html="<p>您好</p>\n",
                            message_id="inboxd.T-1000.a1@example.cn", automatic=AUTO_REPLIED, loop_value="kefu",
                            now=NOW)
    assert out.data.startswith(b"From: =?utf-8?b?")
