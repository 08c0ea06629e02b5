"""Micro-benchmark: CPU time to compose one acknowledgement with `inboxd.outbound.compose.compose`.

It composes the English and the Chinese acknowledgement of the golden-mail
tests (text only, and text plus HTML), each a new customer with a new name
and subject, as the sender does for every new ticket, and prints the CPU
time per mail in µs (process time, so the other load on the machine counts
less than in wall time).  Each figure is the best of `--rounds` rounds.

Usage: python bench/compose.py [--n 2000] [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inboxd.outbound.compose import compose, new_message_id  # noqa: E402

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
TEXT = {
    "en": ("Dear {name},\n\nThank you for contacting Example Support. We have received your message and "
           "opened ticket T-{n}:\n\n    {subject}\n\nWe will answer within 4 hours.\n\n-- \nThis mail was sent"
           " automatically.\n"),
    "zh": ("尊敬的{name}：\n\n您好！感谢您联系示例客服中心。我们已收到您的来信，并为您创建了工单，工单编号为 T-{n}：\n\n"
           "    {subject}\n\n我们会在 4 小时内回复您。\n\n-- \n此邮件为系统自动发送。\n"),
}
NAMES = {"en": ["Alice Smith", "Bob", "Carol O'Neil", "Dan Li"], "zh": ["李雷", "韩梅梅", "王小明", "张伟"]}
SUBJECTS = {"en": ["Order late", "Refund for invoice 2291", "Cannot log in"],
            "zh": ["订单延误，请尽快处理", "发票 2291 退款", "无法登录"]}
SENDER = {"en": ("support@example.com", "Example Support"), "zh": ("kefu@example.cn", "示例客服中心")}


def one(language: str, i: int, html: bool):
    address, from_name = SENDER[language]
    name = NAMES[language][i % 4]
    subject = SUBJECTS[language][i % 3]
    text = TEXT[language].format(name=name, n=1000 + i, subject=subject)
    return compose(
        mailbox_address=address, from_name=from_name, to=[(name, f"customer{i}@mail.example.org")],
        subject=f"Re: [T-{1000 + i}] {subject}", text=text,
        html=f"<p>{text}</p>" if html else None,
        message_id=new_message_id(f"T-{1000 + i}", address.split("@")[1], unique=f"{i:08x}"),
        in_reply_to=f"question{i}@mail.example.org", references=[f"older{i}@mail.example.org"],
        automatic="auto-replied", loop_value="support", now=NOW,
    )


def measure(language: str, html: bool, n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for i in range(n):
            one(language, i, html)
        best = min(best, time.process_time() - start)
    return best / n * 1e6


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="run the Chinese text+HTML case under cProfile")
    args = ap.parse_args(argv)
    if args.profile:
        import cProfile
        import pstats
        cProfile.runctx("for i in range(args.n): one('zh', i, True)", globals(), {"args": args, "one": one},
                        "/tmp/compose.prof")
        pstats.Stats("/tmp/compose.prof").sort_stats("cumulative").print_stats(25)
        return 0
    for language in ("en", "zh"):
        for html in (False, True):
            us = measure(language, html, args.n, args.rounds)
            print(f"{language} {'text+html' if html else 'text     '}: {us:7.1f} µs CPU per ack", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
