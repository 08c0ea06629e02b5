"""Commands by mail end to end: Dovecot in, aiosmtpd out, the store on both databases.

An agent's reply that starts with command lines (#close, #分配 bob, ...)
changes the ticket as that agent, through the API's handlers, and the
history says it came by mail.  A forged sender, an unknown command and a
command the agent may not give are refused: nothing changes, the agent gets
one mail and the customer none.  Commands run once even when the daemon
died between filing the mail and running them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.desk.ingest import Batch, Fetched, Filer
from inboxd.store import folders
from inboxd.store.engine import open_store, reading, writing
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import db_count, show_json, store_engine, write_config

CUSTOMER = "lilei@example.cn"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PASS = "mx.example.com; dkim=pass header.d=example.com header.s=s1; spf=pass smtp.mailfrom=alice@example.com"

EXTRA = """
[[agents]]
name = "bob"
email = "bob@example.com"

[[agents]]
name = "sue"
email = "sue@example.com"
role = "supervisor"

[[macros]]
name = "重置密码"
body = "请点击链接重置密码。"
tags = ["password"]

[agent_mail]
trust = "auth-results"
authserv_id = "mx.example.com"
"""


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                          extra=EXTRA)
    first = make_message_id()
    dovecot.append(imap_user, "INBOX", make_mail(frm=f"Li Lei <{CUSTOMER}>", subject="Cannot log in",
                                                 message_id=first))
    once(config, T0)
    return config, imap_user, first


def once(config, now):
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses
    return report


def agent_mail(first: str, body: str, *, frm: str = "Alice <alice@example.com>",
               auth: str | list[str] | None = PASS) -> bytes:
    values = [auth] if isinstance(auth, str) else (auth or [])
    raw = make_mail(frm=frm, subject="Re: [T-1000] Cannot log in", in_reply_to=first, references=[first],
                    body=body)
    # Authentication-Results are trace headers: the receiving server puts them on top.
    head = b"".join(f"Authentication-Results: {v}\r\n".encode() for v in values)
    return head + raw


def to(smtp_sink, address: str) -> list:
    return [e for e in smtp_sink.envelopes if address in e.rcpt_tos]


def events(ticket: dict, action: str) -> list[dict]:
    return [e for e in ticket["events"] if e["action"] == action]


# (English line, Chinese line, the event the command writes, what the ticket shows afterwards)
COMMANDS = [
    ("#close", "#关闭", "close", lambda t: t["status"] == "closed"),
    ("#pending", "#待定", "status", lambda t: t["status"] == "pending"),
    ("#assign bob", "#分配 bob", "assign", lambda t: t["assignee"] == "bob"),
    ("#take", "#接手", "take", lambda t: t["assignee"] == "alice"),
    ("#tag vip", "#标签 vip", "tag", lambda t: "vip" in t["tags"]),
    ("#priority urgent", "#优先级 紧急", "priority", lambda t: t["priority"] == "urgent"),
    ("#escalate the customer is angry", "#升级 客户很生气", "escalate", lambda t: True),
    ("#macro 重置密码", "#宏 重置密码", "macro", lambda t: "password" in t["tags"]),
]


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("en,zh,action,check", COMMANDS, ids=[c[2] for c in COMMANDS])
def test_each_command_by_mail_changes_the_ticket_as_the_agent(desk, dovecot, smtp_sink, language, en, zh, action,
                                                               check):
    config, user, first = desk
    line = en if language == "en" else zh
    dovecot.append(user, "INBOX", agent_mail(first, f"{line}\n"))
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert check(ticket), ticket
    [event] = events(ticket, action)
    assert event["actor"] == "alice"
    assert event["detail"]["via"] == "mail"
    assert event["detail"]["origin"].startswith("mail from alice@example.com in support/INBOX")
    # The mail itself is kept as a note: command lines alone reach nobody.
    assert ticket["messages"][-1]["kind"] == "note"
    assert not [e for e in events(ticket, "relay")]
    if action not in ("macro", "escalate"):  # a macro's reply and an escalation's update go to the customer
        assert to(smtp_sink, CUSTOMER) == []
    assert to(smtp_sink, "alice@example.com") == []


def test_commands_then_text_relay_the_text_only(desk, dovecot, smtp_sink):
    config, user, first = desk
    dovecot.append(user, "INBOX", agent_mail(first, "#tag vip\n\n#优先级 高\nPlease try again now.\n"))
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert "vip" in ticket["tags"] and ticket["priority"] == "high"
    [relayed] = to(smtp_sink, CUSTOMER)
    body = relayed.message().get_body(("plain",)).get_content()
    assert "Please try again now." in body and "#" not in body


def test_note_command_with_other_commands(desk, dovecot, smtp_sink):
    config, user, first = desk
    dovecot.append(user, "INBOX", agent_mail(first, "#take\n#备注 打过电话，客户稍后回复\n还在查。\n"))
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert ticket["assignee"] == "alice"
    note = ticket["messages"][-1]
    assert note["kind"] == "note" and note["reply_text"].startswith("打过电话")
    assert to(smtp_sink, CUSTOMER) == []


FORGED = [
    pytest.param(None, id="no-authentication-results"),
    pytest.param("mx.evil.example; dmarc=pass header.from=example.com; dkim=pass header.d=example.com",
                 id="pass-from-another-server"),
    pytest.param("mx.example.com; spf=pass smtp.mailfrom=evil.example; dkim=pass header.d=evil.example",
                 id="pass-for-another-domain"),
    pytest.param(["mx.example.com; dmarc=fail header.from=example.com",
                  "mx.example.com; spf=pass smtp.mailfrom=alice@example.com"], id="dmarc-fail"),
]


@pytest.mark.parametrize("auth", FORGED)
def test_a_forged_sender_is_refused(desk, dovecot, smtp_sink, auth):
    config, user, first = desk
    before = show_json(config, "T-1000")
    dovecot.append(user, "INBOX", agent_mail(first, "#close\n#assign bob\nAll done, closing.\n", auth=auth))
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert (ticket["status"], ticket["assignee"], ticket["tags"]) == (before["status"], None, [])
    assert not events(ticket, "close") and not events(ticket, "assign")
    [refusal] = events(ticket, "mail-commands")
    assert [r["line"] for r in refusal["detail"]["refused"]] == ["#close", "#assign bob"]
    # One mail to the agent, saying why; nothing to the customer (not even the text below the commands).
    [told] = to(smtp_sink, "alice@example.com")
    body = told.message().get_body(("plain",)).get_content()
    assert "#close" in body and "not run" in body
    assert to(smtp_sink, CUSTOMER) == []
    assert db_count(config, "SELECT COUNT(*) FROM outbox WHERE recipients LIKE :c", c=f"%{CUSTOMER}%") == 0
    # Once: another cycle sends nothing more.
    once(config, T0 + timedelta(minutes=10))
    assert len(to(smtp_sink, "alice@example.com")) == 1


def test_commands_are_off_by_default(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port)
    first = make_message_id()
    dovecot.append(imap_user, "INBOX", make_mail(frm=f"Li Lei <{CUSTOMER}>", message_id=first,
                                                 subject="Cannot log in"))
    once(config, T0)
    dovecot.append(imap_user, "INBOX", agent_mail(first, "#close\n"))
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert ticket["status"] != "closed"
    [told] = to(smtp_sink, "alice@example.com")
    assert "[agent_mail] trust" in told.message().get_body(("plain",)).get_content()


@pytest.mark.parametrize("body,reason", [
    ("#assign alice\n", "supervisor"),          # bob's ticket: reassigning it needs a supervisor
    ("#frobnicate\n#close\n", "unknown command #frobnicate"),
    ("#priority someday\n", "unknown priority"),
])
def test_a_refused_command_tells_the_agent_once_and_the_customer_nothing(desk, dovecot, smtp_sink, body, reason):
    config, user, first = desk
    dovecot.append(user, "INBOX", agent_mail(first, "#assign bob\n"))
    once(config, T0 + timedelta(minutes=1))
    assert show_json(config, "T-1000")["assignee"] == "bob"
    told_bob = len(to(smtp_sink, "bob@example.com"))
    dovecot.append(user, "INBOX", agent_mail(first, body))
    once(config, T0 + timedelta(minutes=5))
    once(config, T0 + timedelta(minutes=10))
    ticket = show_json(config, "T-1000")
    assert ticket["assignee"] == "bob" and ticket["status"] != "closed"
    [told] = to(smtp_sink, "alice@example.com")
    assert reason in told.message().get_body(("plain",)).get_content()
    assert told.message()["Auto-Submitted"] == "auto-generated"
    assert to(smtp_sink, CUSTOMER) == []
    assert len(to(smtp_sink, "bob@example.com")) == told_bob


def test_commands_run_once_when_the_daemon_died_after_filing(desk, dovecot, smtp_sink):
    """Filed and committed, then killed before the commands ran: the next cycle runs them, once; and a run
    killed after its commands but before it marked the mail done does not run them again."""
    config, user, first = desk
    raw = agent_mail(first, "#tag vip\n#priority high\n")
    dovecot.append(user, "INBOX", raw)
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    try:
        # What the daemon does with the new UID, up to the commit of its batch (then it is killed).
        with reading(engine) as conn:
            known = folders.read_checkpoint(conn, "support", "INBOX")
        uid = known.last_uid + 1
        with writing(engine) as conn:
            result = Filer(settings).file_batch(
                conn, Batch("support", "INBOX", known.uidvalidity, uid, [Fetched(uid, raw, T0)], None), T0, None)
        assert result.commands == 1
    finally:
        engine.dispose()
    assert "vip" not in show_json(config, "T-1000")["tags"]
    # The restarted daemon finds nothing new in the folder, and runs what waited.
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert "vip" in ticket["tags"] and ticket["priority"] == "high"
    assert len(events(ticket, "tag")) == 1 and len(events(ticket, "priority")) == 1
    # Killed after running the commands, before marking the mail done: forget the mark.
    eng = store_engine(config)
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM duty WHERE duty = 'mail-commands-done'"))
    eng.dispose()
    once(config, T0 + timedelta(minutes=10))
    once(config, T0 + timedelta(minutes=15))
    ticket = show_json(config, "T-1000")
    assert len(events(ticket, "tag")) == 1 and len(events(ticket, "priority")) == 1
    assert to(smtp_sink, "alice@example.com") == []
    assert db_count(config, "SELECT COUNT(*) FROM duty WHERE duty = 'mail-commands-done'") == 1
    assert json.loads(json.dumps(events(ticket, "mail-commands")[0]["detail"]))["commands"] == [
        "#tag vip", "#priority high"]


def test_pending_above_an_answer_is_not_a_refusal(desk, dovecot, smtp_sink):
    """An answer moves the ticket to pending by itself; "#pending" above it asks for what is so: no refusal."""
    config, user, first = desk
    dovecot.append(user, "INBOX", agent_mail(first, "#pending\n#tag waiting\nCould you send a screenshot?\n"))
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert ticket["status"] == "pending" and "waiting" in ticket["tags"]
    assert len(to(smtp_sink, CUSTOMER)) == 1
    assert to(smtp_sink, "alice@example.com") == []


@pytest.mark.parametrize("body", ["#备注 客户是老客户\n", "＃note call them back\n"])
def test_a_note_alone_in_any_spelling_stays_internal_without_trust(desk, dovecot, smtp_sink, body):
    config, user, first = desk
    dovecot.append(user, "INBOX", agent_mail(first, body, auth=None))
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert ticket["messages"][-1]["kind"] == "note"
    assert to(smtp_sink, CUSTOMER) == [] and to(smtp_sink, "alice@example.com") == []
