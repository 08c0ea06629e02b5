"""The satisfaction survey end to end on a Chinese desk: real Dovecot in, real aiosmtpd out, an injected clock.

A ticket closed at T gets its survey at T + 15 minutes (the default delay),
so it is out well within the hour the team's checklist asks for.  Customers
answer the way they do: a question to the survey (kept as a comment, the
assignee told, the ticket not reopened), "4分" a little later (a 4 on the
5..2 scale, the question kept in the comment), and a click on the lowest
level's short link (the supervisor told, in Chinese).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
from datetime import UTC, datetime, timedelta

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.testing.mail import make_mail
from tests.support import cli, list_json, show_json, write_config

DESK = """
[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"
language = "zh"
"""


def once(config, now: datetime) -> None:
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses


def mails_to(sink, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(e.data, policy=email.policy.default) for e in sink.envelopes
            if address in e.rcpt_tos]


def body(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def surveys_to(sink, address: str) -> list[email.message.EmailMessage]:
    return [m for m in mails_to(sink, address) if "mailto:" in body(m)]


def test_survey_timing_comments_and_scores(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                          extra=DESK)
    # A Chinese mailbox: its customer mail is in zh.
    text = config.read_text()
    config.write_text(text.replace('address = "support@example.com"\n',
                                   'address = "support@example.com"\nlanguage = "zh"\n', 1))
    dovecot.append(imap_user, "INBOX", make_mail(frm="李雷 <lilei@example.cn>", subject="发票问题",
                                                 body="你好，发票一直没有收到。\n"))
    dovecot.append(imap_user, "INBOX", make_mail(frm="Ben <ben@example.org>", subject="Broken",
                                                 body="It broke again.\n"))
    start = datetime.now(UTC).replace(microsecond=0)
    once(config, start)
    refs = {t["subject"]: t["id"] for t in list_json(config)}
    lilei, ben = refs["发票问题"], refs["Broken"]
    for ref in (lilei, ben):
        cli(config, "--as", "alice", "take", ref)
        cli(config, "--as", "alice", "close", ref)
    # The CLI closed them at the real time; the clock the cycles get starts after that.
    closed = datetime.now(UTC).replace(microsecond=0)

    # Not before the delay ...
    once(config, closed + timedelta(minutes=10))
    assert surveys_to(smtp_sink, "lilei@example.cn") == []
    # ... and out within the hour.
    once(config, closed + timedelta(minutes=16))
    [survey] = surveys_to(smtp_sink, "lilei@example.cn")
    text = body(survey)
    assert "请您对本次服务进行评价（分数越高表示越满意）" in text
    lines = [line.strip() for line in text.splitlines()]
    assert ["5 非常满意", "4 满意", "3 一般", "2 不满意"] == [line for line in lines if line in (
        "5 非常满意", "4 满意", "3 一般", "2 不满意")]
    links = [line for line in lines if line.startswith("mailto:")]
    assert len(links) == 4 and all(len(link) < 100 and link.isascii() for link in links)
    assert links[0].startswith("mailto:support+csat-") and "-5@example.com?subject=" in links[0]

    # A question to the survey: kept as a comment, the ticket is not reopened, alice is told.
    dovecot.append(imap_user, "INBOX", make_mail(
        frm="李雷 <lilei@example.cn>", subject=f"回复: {survey['Subject']}", in_reply_to=survey["Message-ID"],
        body=f"请问发票什么时候开？\n\n> {text.splitlines()[0]}\n"))
    once(config, closed + timedelta(minutes=20))
    shown = show_json(config, lilei)
    assert shown["status"] == "closed"
    assert (shown["csat"]["rating"], shown["csat"]["label"], shown["csat"]["comment"]) == (
        None, None, "请问发票什么时候开？")
    assert [e["detail"] for e in shown["events"] if e["action"] == "csat-comment"] == [
        {"comment": "请问发票什么时候开？"}]
    told = [m for m in mails_to(smtp_sink, "alice@example.com") if "without a rating" in body(m)]
    assert len(told) == 1 and lilei in told[0]["Subject"] and "请问发票什么时候开？" in body(told[0])

    # Then "4分": a 4 (满意), not the lowest level; the question stays in the comment.
    dovecot.append(imap_user, "INBOX", make_mail(
        frm="李雷 <lilei@example.cn>", subject=f"回复: {survey['Subject']}", in_reply_to=survey["Message-ID"],
        body="4分，谢谢\n"))
    once(config, closed + timedelta(minutes=25))
    shown = show_json(config, lilei)
    assert shown["status"] == "closed"
    assert (shown["csat"]["rating"], shown["csat"]["label"], shown["csat"]["comment"]) == (
        4, "满意", "请问发票什么时候开？\n\n谢谢")
    assert not [e for e in shown["events"] if e["action"] == "csat-followup"]

    # Ben clicks the lowest level's link: a 2 (不满意), and carol is told in Chinese.
    [ben_survey] = surveys_to(smtp_sink, "ben@example.org")
    low = next(line.strip() for line in body(ben_survey).splitlines() if "-2@example.com" in line)
    address = low.removeprefix("mailto:").split("?", 1)[0]
    dovecot.append(imap_user, "INBOX", make_mail(frm="Ben <ben@example.org>", to=address,
                                                 subject=f"{ben_survey['Subject']} 2", body=""))
    once(config, closed + timedelta(minutes=30))
    shown = show_json(config, ben)
    assert shown["status"] == "closed"
    assert (shown["csat"]["rating"], shown["csat"]["label"]) == (2, "不满意")
    carol = [m for m in mails_to(smtp_sink, "carol@example.com") if "满意度评价较低" in body(m)]
    assert len(carol) == 1 and ben in carol[0]["Subject"]

    # The report: distribution on the scale, score = share of 5 and 4, per-agent for the supervisor.
    # The answers came at instants after the real time: the period runs to the day after tomorrow.
    period = ("--until", (closed + timedelta(days=2)).date().isoformat())
    report = json.loads(cli(config, "--as", "carol", "report", "--format", "json", *period).stdout)
    csat = report["csat"]
    assert {k: v["count"] for k, v in csat["distribution"].items()} == {"5": 0, "4": 1, "3": 0, "2": 1}
    assert (csat["responses"], csat["score"], csat["sent"]) == (2, 0.5, 2)
    assert report["agents"]["alice"]["csat"] == {"responses": 2, "score": 0.5, "mean": 3.0}
    mine = json.loads(cli(config, "--as", "alice", "report", "--format", "json", *period).stdout)
    assert "agents" not in mine
