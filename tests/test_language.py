"""Simplified or Traditional Chinese for each customer (inboxd.desk.language), from real mail bytes.

The expected choices and character counts were worked out by hand: in
"您好，我的訂單還沒有到" the characters only Traditional Chinese writes are
訂 單 還 沒 (4), and none is only Simplified; 您 好 我 的 有 到 are written
alike in both scripts.  The mails are parsed by the real parser, so the
charset and Content-Language the choice reads are the ones filing sees.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from inboxd.desk.language import agent_headline, choose, reply_from_name, script_counts, ticket_language
from inboxd.desk.threads import TicketTag
from inboxd.mail.message import parse_message
from inboxd.mail.quotes import reply_text
from inboxd.outbound.compose import compose, new_message_id, tagged_subject
from inboxd.outbound.loop import AUTO_REPLIED
from inboxd.outbound.templates import Templates
from inboxd.testing.mail import make_mail

GOLDEN = Path(__file__).parent / "golden"
TEMPLATES = Templates(Path(__file__).parent.parent / "templates")
TAGS = TicketTag("T-{seq}", "[{id}]")

TRADITIONAL = "您好，我的訂單還沒有到，請幫忙查詢。\n\n陳大文\n"
SIMPLIFIED = "您好，我的订单还没有到，请帮忙查询。\n\n李雷\n"
NEUTRAL = "您好，我是王大明。\n"


def test_script_counts_by_hand():
    # 訂 單 還 沒 / 请 帮 询 ... counted by hand from the two sentences above.
    assert script_counts("您好，我的訂單還沒有到") == (4, 0)
    assert script_counts("您好，我的订单还没有到") == (0, 4)
    # 請 幫 詢 陳 (Traditional only) and 查 大 文 (both) added.
    assert script_counts(TRADITIONAL) == (8, 0)
    assert script_counts(SIMPLIFIED) == (0, 7)  # 订 单 还 没 请 帮 询; 李 雷 查 are both
    assert script_counts("Hello, my order is late.") == (0, 0)


# (case, the mail's bytes, the mailbox's language) -> (language, the start of the reason)
CASES = [
    ("Big5 mail", dict(body=TRADITIONAL, charset="big5"), "zh", "zh-Hant", "charset big5"),
    ("Big5-HKSCS mail", dict(body="你好，我想查詢賬單。\n", charset="big5-hkscs"), "zh", "zh-Hant",
     "charset big5-hkscs"),
    # A Big5 charset decides even when every word is written alike in both scripts.
    ("Big5 mail with neutral words", dict(body=NEUTRAL, charset="big5"), "zh", "zh-Hant", "charset big5"),
    # 您 好 我 是 王 大 明 are written alike in both scripts: only the header can tell.
    ("Content-Language zh-TW", dict(body=NEUTRAL, headers={"Content-Language": "zh-TW"}), "zh", "zh-Hant",
     "Content-Language zh-TW"),
    ("Content-Language zh-HK in a list", dict(body=NEUTRAL, headers={"Content-Language": "en, zh-HK"}),
     "zh", "zh-Hant", "Content-Language zh-HK"),
    # The header outweighs the text: 个 问 题 are Simplified, but the writer's client says Taiwan.
    ("Content-Language zh-Hant, Simplified words", dict(body="我有一个问题\n", headers={"Content-Language": "zh-Hant"}),
     "zh", "zh-Hant", "Content-Language zh-Hant"),
    ("Traditional text in UTF-8", dict(body=TRADITIONAL), "zh", "zh-Hant", "the text is mostly Traditional (8 to 0)"),
    ("Simplified text in UTF-8", dict(body=SIMPLIFIED), "zh", "zh", "the text is mostly Simplified (7 to 0)"),
    # Mixed: 訂 單 還 沒 請 幫 詢 (7) against 问 题 (2): Traditional by majority.
    ("mixed, mostly Traditional", dict(body="請幫忙查詢訂單還沒到的问题\n"), "zh", "zh-Hant",
     "the text is mostly Traditional (7 to 2)"),
    # 订 单 还 没 请 帮 询 (7) against 問 題 (2): Simplified.
    ("mixed, mostly Simplified", dict(body="请帮忙查询订单还没到的問題\n"), "zh", "zh",
     "the text is mostly Simplified (7 to 2)"),
    ("English text", dict(body="Hello, my order is late.\n", subject="Order late"), "zh", "zh",
     "nothing says otherwise"),
    # A GB charset settles only what the text leaves open.
    ("GB2312, neutral words, zh-Hant mailbox", dict(body=NEUTRAL, charset="gb2312"), "zh-Hant", "zh",
     "charset gb2312"),
    ("neutral words, zh-Hant mailbox", dict(body=NEUTRAL), "zh-Hant", "zh-Hant", "nothing says otherwise"),
    ("Simplified text to a zh-Hant mailbox", dict(body=SIMPLIFIED), "zh-Hant", "zh", "the text is mostly Simplified"),
    ("Content-Language zh-CN to a zh-Hant mailbox", dict(body=NEUTRAL, headers={"Content-Language": "zh-CN"}),
     "zh-Hant", "zh", "Content-Language zh-CN"),
    ("Big5 mail to an English mailbox", dict(body=TRADITIONAL, charset="big5"), "en", "en", "the mailbox writes en"),
]


@pytest.mark.parametrize("case, mail, mailbox_language, language, reason", CASES, ids=[c[0] for c in CASES])
def test_choice_table(case, mail, mailbox_language, language, reason):
    msg = parse_message(make_mail(**{"subject": "Order", **mail}))
    got = choose(mailbox_language, charsets=msg.charsets, content_language=msg.content_language,
                 text=reply_text(msg.text))
    assert got.language == language, got
    assert got.reason.startswith(reason), got


def test_parsed_message_reports_its_charsets_and_content_language():
    msg = parse_message(make_mail(frm="陳大文 <tai@example.com.tw>", body=TRADITIONAL, charset="big5",
                                  headers={"Content-Language": "zh-TW"}))
    assert "big5" in msg.charsets
    assert msg.content_language == "zh-TW"
    assert msg.text.startswith("您好，我的訂單")
    plain = parse_message(make_mail(body="Hello\n"))
    assert plain.content_language is None


def test_the_recorded_script_holds_while_the_mailbox_writes_chinese():
    assert ticket_language("zh", "zh-Hant") == "zh-Hant"
    assert ticket_language("zh-Hant", "zh") == "zh"
    assert ticket_language("zh", None) == "zh"
    # The admin made the mailbox English since: English.
    assert ticket_language("en", "zh-Hant") == "en"


def test_headlines_in_the_agent_language():
    both = {"en": "T-1 was escalated.", "zh": "工单 T-1 已升级，请尽快处理。"}
    assert agent_headline(both, "zh") == "工单 T-1 已升级，请尽快处理。"
    assert agent_headline(both, "en") == "T-1 was escalated."
    # A zh-Hant reader of a sentence given only in Simplified gets it converted (OpenCC).
    assert agent_headline(both, "zh-Hant") == "工單 T-1 已升級，請儘快處理。"
    assert agent_headline("plain", "zh") == "plain"


def test_reply_from_names():
    assert reply_from_name("小王", "xiaowang", "示例科技客服中心", "zh") == "小王（示例科技客服中心）"
    assert reply_from_name("", "alice", "Example Support", "en") == "Alice via Example Support"
    assert reply_from_name("Alice Smith", "alice", "Example Support", "en") == "Alice Smith via Example Support"


def test_shipped_templates_have_every_customer_mail_in_traditional():
    root = Path(__file__).parent.parent / "templates"
    for name in ("ack/subject.txt", "ack/body.txt", "escalation/subject.txt", "escalation/body.txt",
                 "followup/subject.txt", "followup/body.txt", "csat/subject.txt", "csat/body.txt"):
        assert (root / "zh-Hant" / name).is_file(), name
    # And the Traditional texts are Traditional: not one Simplified-only character.
    for path in (root / "zh-Hant").rglob("*.*"):
        text = path.read_text(encoding="utf-8")
        assert script_counts(text)[1] == 0, (path, text)


def test_zh_hant_falls_back_to_zh_then_english(tmp_path):
    (tmp_path / "zh" / "x").mkdir(parents=True)
    (tmp_path / "en" / "x").mkdir(parents=True)
    (tmp_path / "zh" / "x" / "a.txt").write_text("简体\n", encoding="utf-8")
    (tmp_path / "en" / "x" / "b.txt").write_text("English\n")
    templates = Templates(tmp_path)
    assert templates.render("x/a.txt", {}, language="zh-Hant") == "简体\n"
    assert templates.render("x/b.txt", {}, language="zh-Hant") == "English\n"


NOW = datetime(2024, 5, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))


def zh_hant_ack(sla: bool = True):
    variables = {
        "ticket": {"id": "T-1000", "tag": "[T-1000]", "subject": TAGS.display_subject("查詢訂單 5521 的進度"),
                   "status": "new", "priority": "normal", "created_at": "2024-05-01 09:30"},
        "customer": {"name": "陳大文", "email": "tai@example.com.tw"},
        "mailbox": {"name": "support", "address": "kefu@example.cn", "display_name": "示例科技客服中心"},
        "sla": {"first_response": "4 小時", "first_response_due": "5月1日 13:30"} if sla
        else {"first_response": None, "first_response_due": None},
    }
    subject, text, html = TEMPLATES.render_ack(variables, mailbox="support", language="zh-Hant")
    return compose(
        mailbox_address="kefu@example.cn", from_name="示例科技客服中心", to=[("陳大文", "tai@example.com.tw")],
        subject=tagged_subject(subject, "T-1000", TAGS), text=text, html=html,
        message_id=new_message_id("T-1000", "example.cn", unique="0f3a9c"),
        in_reply_to="customer-zh-hant@mail.example.com.tw", automatic=AUTO_REPLIED, loop_value="support", now=NOW)


def test_zh_hant_ack_matches_golden_file():
    data = zh_hant_ack().data
    path = GOLDEN / "ack_zh-Hant.eml"
    if os.environ.get("INBOXD_REGEN_GOLDEN") == "1":
        path.write_bytes(data)
    assert data == path.read_bytes(), "ack_zh-Hant.eml differs from its golden file"


def test_zh_hant_ack_text():
    import email
    import email.policy

    msg = email.message_from_bytes(zh_hant_ack().data, policy=email.policy.default)
    assert msg["From"] == "示例科技客服中心 <kefu@example.cn>"
    assert msg["Subject"] == "Re: [T-1000] 查詢訂單 5521 的進度"
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("尊敬的陳大文：\n\n您好！感謝您聯絡示例科技客服中心。")
    assert "我們會在 4 小時內回覆您，最晚於 5月1日 13:30。" in text
    assert "此致\n敬禮！\n\n示例科技客服中心\n" in text
    # Every paragraph is one line: nothing is wrapped inside a sentence.
    assert all(len(line) < 80 or line.endswith(("。", "：")) for line in text.splitlines())
    without = email.message_from_bytes(zh_hant_ack(sla=False).data, policy=email.policy.default)
    assert "我們會盡快回覆您。" in without.get_body(("plain",)).get_content()
