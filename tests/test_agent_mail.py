"""A Chinese desk's day, end to end: customers answered in their own script, agents in their own language.

Real Dovecot in, real aiosmtpd out, the clock injected (`run_once(now=...)`,
the workflow's `now=`).  The mailbox writes Chinese as 示例科技客服中心; 陳大文
writes from Taiwan in Big5, 李雷 in Simplified Chinese.  小王 (zh, Shanghai)
answers, 李华 (zh), 老陳 (zh-Hant, Taipei) and carol (en, UTC) supervise.

The times in the expected text were worked out by hand: 陳大文's mail
arrives at 07:00 UTC, 15:00 in Shanghai; the 4-hour first-response promise
is due at 11:00 UTC, which 小王 reads as "11月30日 19:00".
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.desk.workflow import Workflow
from inboxd.store.engine import open_store
from inboxd.testing.mail import make_mail
from tests.support import cli, show_json, write_config

DESK = """
[[agents]]
name = "xiaowang"
email = "xiaowang@example.com"
display_name = "小王"
language = "zh"
timezone = "Asia/Shanghai"

[[agents]]
name = "laochen"
email = "laochen@example.com"
display_name = "老陳"
role = "supervisor"
language = "zh-Hant"
timezone = "Asia/Taipei"

[[agents]]
name = "lihua"
email = "lihua@example.com"
display_name = "李华"
role = "supervisor"
language = "zh"
timezone = "Asia/Shanghai"

[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"
timezone = "UTC"

[[sla]]
name = "std"
first_response = "4h"
warn_before = "1h"

[[rules]]
name = "taiwan"
if = { from_domain = ["example.com.tw"] }
then = { assign = "xiaowang", sla = "std" }

[scheduler]
interval = "1s"
timezone = "UTC"
unassigned_after = "1d"
unassigned_after_urgent = "1d"
pending_reminder = "2d"
pending_followup = true
autoclose_after = "30d"
"""

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
TRADITIONAL = "您好，我的訂單還沒有到，請幫忙查詢。\n\n陳大文\n"
SIMPLIFIED = "您好，我的订单还没有到，请帮忙查询。\n\n李雷\n"


def chinese_desk(tmp_path, dovecot, user, smtp_port):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": user}], smtp_port=smtp_port, acks=True,
                          extra=DESK)
    text = config.read_text()
    # write_config names no language or display name: the mailbox's own lines get them.
    text = text.replace('address = "support@example.com"\n',
                        'address = "support@example.com"\nlanguage = "zh"\ndisplay_name = "示例科技客服中心"\n'
                        'timezone = "Asia/Shanghai"\n', 1)
    config.write_text(text)
    return config


def once(config, now):
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses


def mails_to(sink, address):
    return [email.message_from_bytes(e.data, policy=email.policy.default) for e in sink.envelopes
            if address in e.rcpt_tos]


def body(msg) -> str:
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink):
    config = chinese_desk(tmp_path, dovecot, imap_user, smtp_sink.port)
    dovecot.append(imap_user, "INBOX", make_mail(frm="陳大文 <tai@example.com.tw>", subject="查詢訂單",
                                                 body=TRADITIONAL, charset="big5", message_id="<tai-1@example.com.tw>"),
                   when=T0)
    dovecot.append(imap_user, "INBOX", make_mail(frm="李雷 <lilei@example.cn>", subject="查询订单",
                                                 body=SIMPLIFIED), when=T0)
    once(config, T0 + timedelta(minutes=1))
    return config


def test_each_customer_is_answered_in_their_script(desk, smtp_sink):
    config = desk
    [tai] = mails_to(smtp_sink, "tai@example.com.tw")
    assert tai["From"] == "示例科技客服中心 <support@example.com>"
    text = body(tai)
    assert text.startswith("尊敬的陳大文：\n\n您好！感謝您聯絡示例科技客服中心。")
    assert "此致\n敬禮！\n\n示例科技客服中心\n" in text
    # The promise in the mailbox's zone (Shanghai) and in Traditional Chinese words.
    assert "我們會在 4 小時內回覆您" in text and "11月30日 19:00" in text
    [lei] = mails_to(smtp_sink, "lilei@example.cn")
    assert body(lei).startswith("尊敬的李雷：\n\n您好！感谢您联系示例科技客服中心。")
    # The choice and its reason are in the ticket's history.
    created = {t["requester"]: next(e for e in show_json(config, t["id"])["events"] if e["action"] == "created")
               for t in (show_json(config, "T-1000"), show_json(config, "T-1001"))}
    assert created["tai@example.com.tw"]["detail"]["language"] == "zh-Hant"
    assert created["tai@example.com.tw"]["detail"]["language_reason"] == "charset big5"
    assert created["lilei@example.cn"]["detail"]["language"] == "zh"
    # --json keeps the handle; people read the display name.
    assert show_json(config, "T-1000")["assignee"] == "xiaowang"
    shown = cli(config, "--as", "xiaowang", "show", "T-1000").stdout
    assert "assignee 小王 (xiaowang)" in shown


def test_the_chinese_agent_reads_notifications_digest_and_alerts_in_chinese(desk, smtp_sink):
    config = desk
    [note] = mails_to(smtp_sink, "xiaowang@example.com")
    assert note["To"] == "小王 <xiaowang@example.com>"
    text = body(note)
    assert text.startswith("示例科技客服中心有新工单 T-1000。\n\n工单：    T-1000  查詢訂單\n")
    assert "状态：    处理中   优先级：普通   处理人：小王\n" in text
    assert "客户最新来信：\n\n    您好，我的訂單還沒有到，請幫忙查詢。\n" in text
    # The morning digest (08:00 UTC, the scheduler's zone), times in Shanghai's.
    once(config, T0 + timedelta(hours=1, minutes=30))
    digest = [m for m in mails_to(smtp_sink, "xiaowang@example.com") if m["Subject"].startswith("您今天的工单")]
    assert [m["Subject"] for m in digest] == ["您今天的工单（2026-11-30）"]
    text = body(digest[0])
    assert text.startswith("小王，早上好！\n\n您有 1 个未结工单：0 个已超时，1 个将在一天内到期。\n")
    assert "  T-1000  处理中  普通  【今日到期】时限 11月30日 19:00  查詢訂單\n" in text
    assert "UTC" not in text
    # An hour before the promise is due: the warning, in Shanghai's time.
    once(config, T0 + timedelta(hours=3, minutes=5))
    warnings = [body(m) for m in mails_to(smtp_sink, "xiaowang@example.com") if "SLA 预警" in body(m)]
    assert len(warnings) == 1
    assert warnings[0].startswith("SLA 预警：工单 T-1000 的首次响应时限为 11月30日 19:00。\n")


def test_reply_from_name_reminders_and_follow_up_in_each_language(desk, smtp_sink):
    config = desk
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    replied = T0 + timedelta(hours=3, minutes=30)
    try:
        Workflow(engine, settings, settings.agent("xiaowang")).reply("T-1000", "您好，訂單已發出。", now=replied)
    finally:
        engine.dispose()
    once(config, replied + timedelta(minutes=1))
    answer = [m for m in mails_to(smtp_sink, "tai@example.com.tw") if "訂單已發出" in body(m)]
    assert len(answer) == 1
    assert answer[0]["From"] == "小王（示例科技客服中心） <support@example.com>"
    # Two days pending: 小王 is reminded in Chinese, 陳大文 followed up in Traditional Chinese.
    once(config, replied + timedelta(days=2))
    reminders = [body(m) for m in mails_to(smtp_sink, "xiaowang@example.com") if "已等待客户回复" in body(m)]
    assert len(reminders) == 1 and reminders[0].startswith("工单 T-1000 已等待客户回复 2 天。\n")
    followup = [body(m) for m in mails_to(smtp_sink, "tai@example.com.tw") if "我們仍在等待" in body(m)]
    assert len(followup) == 1
    assert followup[0].startswith("尊敬的陳大文：\n\n您好！我們仍在等待您關於工單 T-1000 的回覆。")
    # 李雷's ticket waited without an assignee: each supervisor is told in their language.
    # Created at 07:00 on the 30th, seen at 10:30 on 2 December: 2 days 3 hours 30 minutes.
    [chen] = [body(m) for m in mails_to(smtp_sink, "laochen@example.com") if "T-1001" in body(m)]
    assert chen.startswith("工單 T-1001（普通優先級）已等待 2 天 3 小時 30 分鐘，仍無人處理。\n")
    assert "狀態：    新建" in chen
    [carol] = [body(m) for m in mails_to(smtp_sink, "carol@example.com") if "T-1001" in body(m)]
    assert carol.startswith("T-1001 (normal) has waited 2 days 3 hours 30 minutes without an assignee.\n")


def test_the_weekly_report_goes_to_each_supervisor_in_their_language(desk, smtp_sink):
    config = desk
    # Monday 30 November, 08:30 UTC: after the default Monday 08:00 of the report.
    once(config, T0 + timedelta(hours=1, minutes=30))
    reports = {}
    for who in ("lihua", "laochen", "carol"):
        [mail] = [m for m in mails_to(smtp_sink, f"{who}@example.com") if m.get_content_type() == "multipart/alternative"]
        reports[who] = mail
    assert reports["lihua"]["Subject"].startswith("客服工作周报 2026-11-23 至 2026-11-30：新建 2，")
    assert reports["laochen"]["Subject"].startswith("客服工作週報 2026-11-23 至 2026-11-30：新建 2，")
    assert reports["carol"]["Subject"].strip().startswith("Helpdesk weekly report 2026-11-23 to 2026-11-30: 2 new,")
    assert reports["lihua"]["To"] == "李华 <lihua@example.com>"
    html = reports["lihua"].get_body(("html",)).get_content()
    assert '<html lang="zh-CN">' in html and "<h1" in html and "客服工作周报</h1>" in html
    assert "客户满意度" in html and "各环节处理时长占比" in html and "投诉重复率" in html
    # The per-agent table names people by their display names; the handles stay in the JSON.
    assert ">小王</td>" in html and ">xiaowang</td>" not in html
    text = reports["lihua"].get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("客服工作周报，2026-11-23 至 2026-11-30\n")
    assert "  小王：1 / 0 / 0 / " in text
    assert "客服工作週報</h1>" in reports["laochen"].get_body(("html",)).get_content()
    # The scale's labels in each reader's script, the repeat window in whole days.
    assert "  5 非常满意：0\n" in text and "在 7 天内再次提交工单" in text
    hant = reports["laochen"].get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "  5 非常滿意：0\n" in hant and "满意" not in hant
    # Each reader's charts are titled in their language: the same Content-IDs, other pictures.
    def charts(msg):
        return {part["Content-ID"]: part.get_content() for part in msg.walk() if part.get_content_type() == "image/png"}
    zh, zh_hant, en = charts(reports["lihua"]), charts(reports["laochen"]), charts(reports["carol"])
    assert set(zh) == set(en) == set(zh_hant) == {f"<chart-{n}@inboxd.report>" for n in
                                                   ("volume", "first_response", "csat", "backlog")}
    assert zh["<chart-volume@inboxd.report>"] != en["<chart-volume@inboxd.report>"]
    assert zh["<chart-volume@inboxd.report>"] != zh_hant["<chart-volume@inboxd.report>"]
    # `inboxd report --format html` speaks the acting agent's language too, charts embedded.
    page = cli(config, "--as", "lihua", "report", "--format", "html", "--since", "2026-11-23",
               "--until", "2026-11-30").stdout
    assert "客服工作周报</h1>" in page and ">小王</td>" in page and 'src="data:image/png;base64,' in page


def test_the_survey_reaches_a_traditional_chinese_customer_in_traditional_chinese(desk, smtp_sink):
    config = desk
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    closed = T0 + timedelta(hours=2)
    try:
        Workflow(engine, settings, settings.agent("xiaowang")).close("T-1000", now=closed)
    finally:
        engine.dispose()
    once(config, closed + timedelta(hours=1))
    [survey] = [body(m) for m in mails_to(smtp_sink, "tai@example.com.tw") if "評價" in body(m)]
    assert survey.startswith("尊敬的陳大文，您好：\n\n感謝您聯絡示例科技客服中心。")
    # The scale's labels are configured in Simplified Chinese; this reader gets them converted.
    assert "    5 非常滿意\n" in survey and "    2 不滿意\n" in survey
    assert "满意" not in survey


def test_the_traditional_acknowledgement_as_sent_matches_its_golden_file(desk, smtp_sink):
    # The whole mail as the SMTP server received it, only its random Message-ID masked.
    # The Date is the injected clock's, which runs on with the cycle: on a loaded
    # machine the cycle may pass a second or two before the mail is composed, so
    # the seconds are checked for being early in that minute and then masked.
    [env] = [e for e in smtp_sink.envelopes if e.rcpt_tos == ["tai@example.com.tw"]]
    normalised = re.sub(rb"(?m)^Message-ID: .*\r\n", rb"Message-ID: <masked>\r\n", env.data)
    date = re.search(rb"(?m)^Date: Mon, 30 Nov 2026 07:01:(\d\d) \+0000\r\n", normalised)
    assert date is not None and int(date.group(1)) < 30
    normalised = normalised.replace(date.group(0), b"Date: Mon, 30 Nov 2026 07:01:00 +0000\r\n")
    golden = GOLDEN / "ack_received_zh-Hant.eml"
    if os.environ.get("INBOXD_REGEN_GOLDEN") == "1":  # Regenerate, review, commit.
        golden.write_bytes(normalised)
    assert normalised == golden.read_bytes()
