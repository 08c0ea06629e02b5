"""Rules, SLAs and the scheduled duties end to end, with the durations a desk really uses.

Real Dovecot in, real aiosmtpd out.  No test waits for time to pass: a
cycle runs at the instant the test passes (`run_once(now=...)`, the duties'
`run_due(now)`), so "three days later" is an argument, and mail that must
already be overdue when a daemon sees it arrived in the past (its
INTERNALDATE).  The daemon tests wait only for outcomes, with a deadline
that guards against hanging.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import signal
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.store.engine import open_store
from inboxd.desk.duties import Duties
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import (cli, db_count, list_json, show_json, start_daemon, stop_daemon, store_engine, wait_until,
                           write_config)

DESK = """
[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"

[[sla]]
name = "fast"
first_response = "1h"
resolution = "2h"
warn_before = "30m"

[[rules]]
name = "vip"
if = { from_domain = ["vip.example"] }
then = { priority = "urgent", tags = ["vip"], assign = "alice", sla = "fast" }

[scheduler]
interval = "1s"
unassigned_after = "30d"
unassigned_after_urgent = "30d"
pending_reminder = "2d"
autoclose_after = "3d"

[csat]
delay = "1d"
min_interval = "1d"
"""


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink):
    # Six people at one company (vip.example) write within a minute: more
    # than the default per-domain ceiling of acknowledgements allows.
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          smtp_port=smtp_sink.port, acks=True, extra=DESK, autoreply="per_domain_per_minute = 20")
    return config, imap_user


def once(config, now: datetime | None = None):
    """One `run --once` cycle at `now` (the real time if None)."""
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses


def real_now() -> datetime:
    """The real time, read once by a test to place its instants; whole seconds, as INTERNALDATE has."""
    return datetime.now(UTC).replace(microsecond=0)


def mails_to(sink, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(e.data, policy=email.policy.default) for e in sink.envelopes
            if address in e.rcpt_tos]


def body(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def events(config, ref: str, action: str) -> list[dict]:
    return [e for e in show_json(config, ref)["events"] if e["action"] == action]


def rows(config, sql: str, **params) -> list[tuple]:
    """The rows of portable SQL (:named parameters) on whichever store the config names."""
    engine = store_engine(config)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def test_vip_rule_routes_and_the_ack_publishes_the_promise(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Boss <boss@vip.example>", subject="Server down"))
    once(config)
    [t] = list_json(config)
    assert (t["priority"], t["tags"], t["assignee"]) == ("urgent", ["vip"], "alice")
    full = show_json(config, t["id"])
    rule = events(config, t["id"], "rule")[0]["detail"]["reason"]
    assert rule.startswith("rule vip:") and "vip.example" in rule
    assert rows(config, "select sla_policy, first_response_due is not null from ticket") == [("fast", True)]
    ack = mails_to(smtp_sink, "boss@vip.example")[0]
    assert "within 1 hour" in body(ack)
    # A normal customer gets no promise (no policy applies to normal priority).
    dovecot.append(user, "INBOX", make_mail(frm="Ann <ann@example.org>", subject="Question"))
    once(config)
    assert full["status"] == "open"
    ack = mails_to(smtp_sink, "ann@example.org")[0]
    assert "as soon as possible" in body(ack)


def test_warning_breach_and_escalation_happen_once(desk, dovecot, smtp_sink):
    # Mail that arrived in the past (its INTERNALDATE) and cycles at given
    # instants put each ticket exactly where the test wants it.
    config, user = desk
    now = real_now()
    # Due 20 minutes after `now`: inside the 30-minute warning window.
    dovecot.append(user, "INBOX", make_mail(frm="Boss <boss@vip.example>", subject="Invoices missing"),
                   when=now - timedelta(minutes=40))
    # Both promises broken an hour or more before `now`.
    dovecot.append(user, "INBOX", make_mail(frm="Chief <chief@vip.example>", subject="Server down"),
                   when=now - timedelta(hours=3))
    once(config, now)
    once(config, now + timedelta(minutes=1))
    once(config, now + timedelta(minutes=2))
    refs = {t["subject"]: t["id"] for t in list_json(config)}
    warned, broken = refs["Invoices missing"], refs["Server down"]
    warnings = [m for m in mails_to(smtp_sink, "alice@example.com") if "SLA warning" in body(m)]
    assert len(warnings) == 1 and warned in warnings[0]["Subject"]
    alice = [m for m in mails_to(smtp_sink, "alice@example.com") if "SLA breach" in body(m)]
    assert len(alice) == 2 and all(broken in m["Subject"] for m in alice)  # one per broken promise, each once
    escalations = events(config, broken, "escalate")
    assert [e["detail"]["to"] for e in escalations] == ["tier2", "supervisor"]
    assert all("SLA breached" in e["detail"]["reason"] for e in escalations)
    assert not events(config, warned, "escalate")
    carol = [m for m in mails_to(smtp_sink, "carol@example.com") if "escalated to the supervisors" in body(m)]
    assert len(carol) == 1
    t = show_json(config, broken)
    assert t["tier"] == 3 and t["escalated"] is True
    # It is overdue; a ticket whose promise still stands is not, nor one with no promise.
    dovecot.append(user, "INBOX", make_mail(frm="Ann <ann@example.org>", subject="No rush"))
    once(config, now + timedelta(minutes=3))
    assert [x["id"] for x in list_json(config, "--overdue")] == [broken]
    # The customer was told, once per escalation, never more.
    updates = [m for m in mails_to(smtp_sink, "chief@vip.example") if "senior member" in body(m)]
    assert len(updates) == 2
    # Notifications never went to the customers.
    customers = mails_to(smtp_sink, "chief@vip.example") + mails_to(smtp_sink, "boss@vip.example")
    assert customers and all("SLA" not in body(m) for m in customers)


def test_pending_reminder_and_auto_close(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Ann <ann@example.org>", subject="Password reset"))
    dovecot.append(user, "INBOX", make_mail(frm="Ben <ben@example.org>", subject="Refund"))
    once(config)
    cli(config, "--as", "alice", "take", "T-1000")
    cli(config, "--as", "alice", "reply", "T-1000", "-m", "Please try the link again.")
    cli(config, "--as", "alice", "take", "T-1001")
    cli(config, "--as", "alice", "status", "T-1001", "solved")
    # Three days on: past the 2-day reminder and the 3-day auto-close (the CLI acted at the real time).
    later = real_now() + timedelta(days=3, hours=1)
    once(config, later)
    once(config, later + timedelta(hours=1))
    reminders = [m for m in mails_to(smtp_sink, "alice@example.com") if "waiting on the customer" in body(m)]
    assert len(reminders) == 1 and "T-1000" in reminders[0]["Subject"]
    assert "3 days" in body(reminders[0])
    tickets = {t["id"]: t for t in list_json(config)}
    assert tickets["T-1001"]["status"] == "closed"
    assert len(events(config, "T-1001", "autoclose")) == 1
    # An auto-closed ticket gets no survey by default, once the survey would be due (a day later).
    once(config, later + timedelta(days=1, hours=1))
    assert not [m for m in mails_to(smtp_sink, "ben@example.org") if "T-1001" in m["Subject"] and "1" in body(m)
                and "mailto:" in body(m)]
    assert events(config, "T-1001", "no-survey")[0]["detail"]["reason"] == "closed automatically"


def _closed_ticket_with_survey(config, dovecot, user, smtp_sink, frm: str, subject: str) -> tuple[str, email.message.EmailMessage]:
    dovecot.append(user, "INBOX", make_mail(frm=frm, subject=subject))
    once(config)
    ref = next(t["id"] for t in list_json(config) if t["subject"] == subject)
    cli(config, "--as", "alice", "take", ref)
    cli(config, "--as", "alice", "close", ref)
    # The survey is due a day after the close (the CLI closed it at the real time).
    once(config, real_now() + timedelta(days=1, minutes=1))
    address = email.utils.parseaddr(frm)[1]
    surveys = [m for m in mails_to(smtp_sink, address) if "mailto:" in body(m)]
    assert len(surveys) == 1, [m["Subject"] for m in mails_to(smtp_sink, address)]
    return ref, surveys[0]


def test_survey_after_delay_and_ratings_by_reply_and_by_mailto(desk, dovecot, smtp_sink):
    config, user = desk
    # Chinese, by reply.
    ref1, survey1 = _closed_ticket_with_survey(config, dovecot, user, smtp_sink, "李雷 <lilei@example.cn>", "发票问题")
    dovecot.append(user, "INBOX", make_mail(frm="李雷 <lilei@example.cn>", subject=f"回复: {survey1['Subject']}",
                                            in_reply_to=survey1["Message-ID"], charset="gbk",
                                            body="满意 处理得很快\n"))
    # English, by reply.
    ref2, survey2 = _closed_ticket_with_survey(config, dovecot, user, smtp_sink, "Ann <ann@example.org>", "Login")
    dovecot.append(user, "INBOX", make_mail(frm="Ann <ann@example.org>", subject=f"Re: {survey2['Subject']}",
                                            in_reply_to=survey2["Message-ID"], body="5 - great help, thanks\n"))
    # By the mailto link for the lowest level (no threading headers at all).
    ref3, survey3 = _closed_ticket_with_survey(config, dovecot, user, smtp_sink, "Ben <ben@example.org>", "Broken")
    [(token,)] = rows(config, "select token from csat where ticket_id = (select id from ticket where ref = :ref)",
                     ref=ref3)
    link = f"support+csat-{token}-2@example.com"
    assert link in body(survey3)
    dovecot.append(user, "INBOX", make_mail(frm="Ben <ben@example.org>", to=link, subject="2",
                                            body="Took a week.\n"))
    once(config)
    ratings = {ref: show_json(config, ref)["csat"] for ref in (ref1, ref2, ref3)}
    assert (ratings[ref1]["rating"], ratings[ref1]["label"], ratings[ref1]["comment"]) == (4, "Satisfied", "处理得很快")
    assert (ratings[ref2]["rating"], ratings[ref2]["comment"]) == (5, "great help, thanks")
    assert (ratings[ref3]["rating"], ratings[ref3]["comment"]) == (2, "Took a week.")
    assert all(ratings[r]["at"] for r in ratings)
    # Answers never reopen.
    assert {t["id"]: t["status"] for t in list_json(config)} == {ref1: "closed", ref2: "closed", ref3: "closed"}
    # The low rating notified the supervisor and left a follow-up task.
    assert len(events(config, ref3, "csat-followup")) == 1
    carol = [m for m in mails_to(smtp_sink, "carol@example.com") if "Low satisfaction" in body(m)]
    assert len(carol) == 1 and ref3 in carol[0]["Subject"]
    assert not events(config, ref1, "csat-followup")


def test_restart_in_the_middle_resends_nothing(desk, dovecot, smtp_sink, tmp_path):
    config, user = desk
    # Mail that arrived three hours ago: both its promises are broken when the daemon first looks.
    arrived = real_now() - timedelta(hours=3)
    for i in range(3):
        dovecot.append(user, "INBOX", make_mail(frm=f"Boss {i} <boss{i}@vip.example>", subject=f"Outage {i}"),
                       when=arrived)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        # Acks, then breach notices and escalation updates go out.
        wait_until(lambda: len([m for m in mails_to(smtp_sink, "alice@example.com") if "SLA breach" in body(m)]) >= 3,
                   timeout=180, what="the breach notices")
    finally:
        stop_daemon(daemon, signal.SIGKILL)
    before = sorted((e.rcpt_tos[0], email.message_from_bytes(e.data)["Message-ID"]) for e in smtp_sink.envelopes)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        # A ticket of the restarted daemon's own: the duties pass that announces
        # its broken promises looks at every older ticket too, so once those
        # notices and the queue are out, anything a restart would resend has gone.
        dovecot.append(user, "INBOX", make_mail(frm="Boss 3 <boss3@vip.example>", subject="Outage 3"),
                       when=arrived)
        wait_until(lambda: len([m for m in mails_to(smtp_sink, "alice@example.com")
                                if "SLA breach" in body(m) and "Outage 3" in m["Subject"]]) >= 2,
                   timeout=180, what="the breach notices of the ticket filed after the restart")
        # (A mail the killed daemon had claimed stays "sending" until its lease
        # runs out, minutes from now; that resend is the outbox tests' subject.)
        wait_until(lambda: db_count(config, "select count(*) from outbox where status = 'queued'") == 0,
                   timeout=180, what="the queued mail to go out")
    finally:
        assert stop_daemon(daemon) == 0
    after = [(e.rcpt_tos[0], email.message_from_bytes(e.data)["Message-ID"]) for e in smtp_sink.envelopes]
    # Nothing was sent twice (each Message-ID once), and every breach notice exactly once per target.
    assert len(after) == len(set(after))
    notices = [m for m in mails_to(smtp_sink, "alice@example.com") if "SLA breach" in body(m)]
    keys = [(m["Subject"], "resolution" in body(m)) for m in notices]
    assert len(keys) == len(set(keys))
    # A notice the killed daemon had claimed but not sent waits in "sending"
    # for its lease to run out, then goes once: late, never lost.  (One the
    # server had accepted when the kill took the commit of its "sent" is
    # received and also still "sending": the SMTP window the outbox tests and
    # docs/practices/acknowledgements.md describe.  It counts once here.)
    received = {m["Message-ID"] for m in notices}
    claimed = [m for (data,) in rows(config, "select data from outbox where status = 'sending'")
               if data and "SLA breach" in body(m := email.message_from_bytes(data, policy=email.policy.default))
               and "alice@example.com" in str(m["To"]) and m["Message-ID"] not in received]
    assert len(notices) + len(claimed) == 8  # four tickets, two broken promises each
    assert set(before) <= set(after)


def test_weekly_report_goes_to_the_supervisors_once_a_week(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Ann <ann@example.org>", subject="Hello"))
    once(config, datetime(2026, 11, 8, 12, 0, tzinfo=UTC))  # a Sunday: no report is due
    settings = load_settings(config)
    duties = Duties(open_store(settings.store.url), settings)
    monday = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)  # after the default 08:00 on a Monday
    next_monday = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    assert duties.run_due(monday)["weekly"] == 1
    assert duties.run_due(monday.replace(hour=15))["weekly"] == 0  # the same week: nothing more
    assert duties.run_due(datetime(2026, 11, 10, 9, 0, tzinfo=UTC))["weekly"] == 0  # not the report day
    assert duties.run_due(next_monday)["weekly"] == 1  # the next week
    found = rows(config, "select recipients from outbox where kind = 'report' order by id")
    assert [json.loads(r[0]) for r in found] == [["carol@example.com"], ["carol@example.com"]]
    once(config, next_monday + timedelta(hours=1))  # sends them, and that week's report is out already
    report = [m for m in mails_to(smtp_sink, "carol@example.com") if m.get_content_type() == "multipart/alternative"]
    assert [email.utils.parsedate_to_datetime(m["Date"]) for m in report] == [monday, next_monday]
    html = report[0].get_body(("html",))
    assert html is not None and "<script" not in html.get_content().lower()


def test_two_daemons_on_one_store_never_double_send(desk, dovecot, smtp_sink, tmp_path):
    config, user = desk
    # Mail that arrived three hours ago: both its promises are broken when a daemon first looks.
    arrived = real_now() - timedelta(hours=3)
    first = start_daemon(config, tmp_path / "a.log")
    second = start_daemon(config, tmp_path / "b.log")
    try:
        for i in range(6):
            dovecot.append(user, "INBOX", make_mail(frm=f"Boss {i} <boss{i}@vip.example>", subject=f"Down {i}"),
                           when=arrived)
        # Acknowledgements, then breach notices and escalation updates.
        wait_until(lambda: len([m for m in mails_to(smtp_sink, "alice@example.com") if "SLA breach" in body(m)]) >= 12,
                   timeout=60, what="the breach notices")
        # Everything either daemon queued has gone out; a double claim would show below.
        wait_until(lambda: db_count(config, "select count(*) from outbox where status != 'sent'") == 0,
                   timeout=60, what="the outbox to be empty")
    finally:
        assert stop_daemon(first) == 0
        assert stop_daemon(second) == 0
    ids = [email.message_from_bytes(e.data)["Message-ID"] for e in smtp_sink.envelopes]
    assert len(ids) == len(set(ids)), "a mail was sent twice"
    notices = [m for m in mails_to(smtp_sink, "alice@example.com") if "SLA breach" in body(m)]
    assert len(notices) == 12  # six tickets, two broken promises each, each announced once
    acks = [e for e in smtp_sink.envelopes if e.rcpt_tos[0].startswith("boss") and b"opened ticket" in e.data]
    assert len(acks) == 6
    assert db_count(config, "select count(*) from message where direction = 'in'") == 6


def test_daily_digest_once_per_agent_per_day(desk, dovecot, smtp_sink):
    config, user = desk
    early = datetime(2026, 11, 10, 7, 0, tzinfo=UTC)  # before the default 08:00 digest time
    dovecot.append(user, "INBOX", make_mail(frm="Boss <boss@vip.example>", subject="Printer jam"))
    once(config, early - timedelta(hours=1))  # The VIP rule assigns it to alice.
    settings = load_settings(config)
    duties = Duties(open_store(settings.store.url), settings)
    assert duties.run_due(early)["digest"] == 0
    morning = early.replace(hour=8, minute=30)
    assert duties.run_due(morning)["digest"] == len(settings.agents)  # one claim per agent
    assert duties.run_due(morning.replace(hour=17))["digest"] == 0   # once a day
    found = rows(config, "select recipients, data from outbox where kind = 'digest'")
    # Only alice has open tickets, so only she gets a mail, listing the ticket.
    assert [json.loads(r[0]) for r in found] == [["alice@example.com"]]
    assert b"T-1000" in bytes(found[0][1])
