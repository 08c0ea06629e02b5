"""The inbound path end to end against a real Dovecot: sync, parse, thread, file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.store.sql import t
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import cli, config_store_url, db_count, list_json, show_json, store_engine, write_config


@pytest.fixture
def two_mailboxes(tmp_path, dovecot, mail_user_factory):
    support, billing = mail_user_factory(), mail_user_factory()
    dovecot.create_folder(support, "Escalations")
    dovecot.create_folder(billing, "Archive")
    config = write_config(tmp_path, dovecot, [
        {"name": "support", "user": support, "folders": ["INBOX", "Escalations"]},
        {"name": "billing", "user": billing, "folders": ["INBOX", "Archive"]},
    ])
    return config, support, billing


def once(config):
    report = run_once(load_settings(config), workers=0)
    assert report.failed == [], report.statuses
    return report


def by_subject(config) -> dict[str, dict]:
    return {t["subject"]: t for t in list_json(config)}


def test_two_mailboxes_two_folders_and_incremental(two_mailboxes, dovecot):
    config, support, billing = two_mailboxes
    dovecot.append(support, "INBOX", make_mail(subject="Login broken"))
    dovecot.append(support, "Escalations", make_mail(subject="Outage in EU"))
    dovecot.append(billing, "INBOX", make_mail(subject="Invoice wrong", to="billing@example.com"))
    dovecot.append(billing, "Archive", make_mail(subject="Refund please", to="billing@example.com"))

    report = once(config)
    assert sum(s.synced for s in report.statuses.values()) == 4
    tickets = by_subject(config)
    assert set(tickets) == {"Login broken", "Outage in EU", "Invoice wrong", "Refund please"}
    assert tickets["Login broken"]["mailbox"] == "support"
    assert tickets["Refund please"]["mailbox"] == "billing"
    assert all(t["status"] == "new" and t["message_count"] == 1 for t in tickets.values())
    assert len({t["id"] for t in tickets.values()}) == 4

    # A second cycle fetches nothing at all.
    report = once(config)
    assert sum(s.synced for s in report.statuses.values()) == 0
    assert db_count(config, "select count(*) from message") == 4

    # New mail after that is picked up, and only it.
    dovecot.append(billing, "INBOX", make_mail(subject="Second invoice", to="billing@example.com"))
    report = once(config)
    assert report.statuses["billing"].synced == 1 and report.statuses["support"].synced == 0
    assert db_count(config, "select count(*) from message") == 5


def test_replies_thread_by_in_reply_to_references_and_tag(two_mailboxes, dovecot):
    config, support, _ = two_mailboxes
    first = make_message_id()
    dovecot.append(support, "INBOX", make_mail(subject="订单没有收到", message_id=first, charset="gbk",
                                               body="您好，我的订单没有收到。\n"))
    once(config)
    [ticket] = list_json(config)

    second = make_message_id()
    dovecot.append(support, "INBOX", make_mail(subject="回复: 订单没有收到", message_id=second,
                                               in_reply_to=first, references=[first], charset="gbk"))
    # References only, no In-Reply-To (some clients drop it).
    third = make_message_id()
    dovecot.append(support, "INBOX", make_mail(subject="Re: 订单没有收到", message_id=third,
                                               references=[first, second]))
    # No threading headers at all: only the tag in the subject.
    dovecot.append(support, "INBOX", make_mail(subject=f"回复: [{ticket['id']}] 订单没有收到", charset="gbk"))
    # And a look-alike without headers or tag is a new ticket.
    dovecot.append(support, "INBOX", make_mail(subject="回复: 订单没有收到"))
    once(config)

    tickets = list_json(config)
    assert len(tickets) == 2
    t = show_json(config, ticket["id"])
    assert t["message_count"] == 4 and len(t["messages"]) == 4
    reasons = [e["detail"]["reason"] for e in t["events"]]
    assert reasons == ["new ticket", f"In-Reply-To <{first[1:-1]}>", f"References <{second[1:-1]}>",
                       f"subject tag [{ticket['id']}]"]
    assert t["subject"] == "订单没有收到"


@pytest.mark.parametrize("charset, subject, body", [
    ("gbk", "发票抬头错误", "您好，发票抬头写错了，请重新开具。"),
    ("gb18030", "退款进度查询", "您好，我想查询退款进度。𠀀"),
    ("big5", "帳號無法登入", "您好，我的帳號無法登入，請協助。"),
    ("iso-2022-jp", "注文が届きません", "こんにちは、注文がまだ届きません。"),
])
def test_charsets(tmp_path, dovecot, imap_user, charset, subject, body):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    dovecot.append(imap_user, "INBOX", make_mail(subject=subject, body=body + "\n", charset=charset,
                                                 frm="王小明 <wang@example.cn>"))
    once(config)
    [t] = list_json(config)
    assert t["subject"] == subject
    full = show_json(config, t["id"])
    assert full["messages"][0]["text"].strip() == body
    assert full["requester"] == "wang@example.cn" and full["requester_name"] == "王小明"


def test_html_only_mail_becomes_readable_text(tmp_path, dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    html = "<html><body><p>Hello,</p><p>My <b>order 4711</b> is late. <a href='https://shop.example/o/4711'>Order</a></p></body></html>"
    dovecot.append(imap_user, "INBOX", make_mail(subject="Late order", body=None, html=html))
    once(config)
    [t] = list_json(config)
    text = show_json(config, t["id"])["messages"][0]["text"]
    assert "order 4711" in text and "<b>" not in text and "https://shop.example/o/4711" in text


def test_one_mail_in_two_mailboxes_is_one_message(two_mailboxes, dovecot):
    config, support, billing = two_mailboxes
    raw = make_mail(subject="Charged twice", to=["support@example.com", "billing@example.com"])
    dovecot.append(support, "INBOX", raw)
    dovecot.append(billing, "INBOX", raw)
    once(config)
    [t] = list_json(config)
    assert sorted(t["mailboxes"]) == ["billing", "support"]
    full = show_json(config, t["id"])
    assert len(full["messages"]) == 1
    assert full["messages"][0]["mailboxes"] == ["billing", "support"]
    assert db_count(config, "select count(*) from sighting") == 2


def test_malformed_mail_is_quarantined_and_the_rest_filed(tmp_path, dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    dovecot.append(imap_user, "INBOX", make_mail(subject="Before"))
    garbage = b"this is not an email at all\r\njust some text\r\n"
    dovecot.append(imap_user, "INBOX", garbage)
    no_sender = make_mail(subject="Nobody", headers={"From": None})
    dovecot.append(imap_user, "INBOX", no_sender)
    dovecot.append(imap_user, "INBOX", make_mail(subject="After"))
    once(config)
    assert set(by_subject(config)) == {"Before", "After"}
    import json
    rows = json.loads(cli(config, "quarantine", "list", "--json").stdout)
    assert [r["uid"] for r in rows] == [2, 3]
    assert all(r["reason"] for r in rows)
    assert "sender" in rows[1]["reason"]
    # The raw bytes are kept, byte for byte.
    with store_engine(config).connect() as conn:
        data = conn.execute(select(t.rawmessage.c.data)
                            .where(t.rawmessage.c.sha256 == rows[0]["raw_sha256"])).scalar_one()
    assert data.replace(b"\r\n", b"\n") == garbage.replace(b"\r\n", b"\n")
    # A second cycle does not quarantine them again.
    once(config)
    assert len(json.loads(cli(config, "quarantine", "list", "--json").stdout)) == 2


def test_mailbox_is_untouched(two_mailboxes, dovecot):
    config, support, _ = two_mailboxes
    for i in range(5):
        dovecot.append(support, "INBOX", make_mail(subject=f"Question {i}"))
    dovecot.append(support, "INBOX", make_mail(subject="Already read"), flags=("\\Seen",))
    before = dovecot.fetch_flags(support, "INBOX")
    once(config)
    assert len(list_json(config)) == 6
    after = dovecot.fetch_flags(support, "INBOX")
    assert after == before
    assert sum("\\Seen" in flags for flags in after.values()) == 1
    assert dovecot.message_count(support, "INBOX") == 6


def test_uidvalidity_change_resyncs_without_duplicates(tmp_path, dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "folders": ["INBOX", "Work"]}])
    dovecot.create_folder(imap_user, "Work")
    raws = [make_mail(subject=f"Work item {i}") for i in range(3)]
    no_id = make_mail(subject="No message id", headers={"Message-ID": None})
    for raw in [*raws, no_id]:
        dovecot.append(imap_user, "Work", raw)
    once(config)
    old = dovecot.uidvalidity(imap_user, "Work")
    dovecot.delete_folder(imap_user, "Work")
    dovecot.create_folder(imap_user, "Work")
    assert dovecot.uidvalidity(imap_user, "Work") != old
    for raw in [*raws, no_id, make_mail(subject="Work item new")]:
        dovecot.append(imap_user, "Work", raw)
    once(config)
    assert db_count(config, "select count(*) from message") == 5
    assert db_count(config, "select count(*) from ticket") == 5
    assert db_count(config, "select count(*) from checkpoint where folder = 'Work' and last_uid = 5") == 1


def test_failing_mailbox_does_not_stop_the_others(tmp_path, dovecot, mail_user_factory):
    good, bad = mail_user_factory(), mail_user_factory()
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    config = write_config(tmp_path, dovecot, [
        {"name": "broken", "user": bad, "password_file": str(wrong)},
        {"name": "support", "user": good},
    ])
    dovecot.append(good, "INBOX", make_mail(subject="Still filed"))
    proc = cli(config, "run", "--once", check=False)
    assert proc.returncode == 1
    assert "broken" in proc.stderr and "not-the-password" not in proc.stderr
    assert [t["subject"] for t in list_json(config)] == ["Still filed"]


def test_store_files_are_private(tmp_path, dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    dovecot.append(imap_user, "INBOX", make_mail(subject="With file", attachments=[("a.pdf", b"%PDF-1.4 x" * 100, "application/pdf")]))
    cli(config, "run", "--once")
    url = config_store_url(config)
    if url.startswith("sqlite"):
        # A SQLite store is a file of ours; a PostgreSQL server keeps its own files.
        assert stat.S_IMODE(os.stat(url.split("///", 1)[1]).st_mode) & 0o077 == 0
    files = [p for p in (config.parent / "var").rglob("*") if p.is_file()]
    assert files, "the attachment was stored"
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in files)


def test_cli_errors_are_one_line(tmp_path, dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    url = config_store_url(config)
    if url.startswith("sqlite"):
        # Before the first run there is no SQLite file, and reading one does not make one.
        # (A PostgreSQL database exists before the first run: there is nothing to make.)
        proc = cli(config, "show", "T-9999", check=False)
        assert proc.returncode != 0 and "store.url: no store at" in proc.stderr
        assert not Path(url.split("///", 1)[1]).exists()
    cli(config, "run", "--once")
    for args, needle in [(("show", "T-9999"), "no ticket T-9999"),
                         (("lst",), "No such command"),
                         (("list", "--status", "bogus"), "unknown status"),
                         (("list", "--mailbox", "nope"), "unknown mailbox")]:
        proc = cli(config, *args, check=False)
        assert proc.returncode != 0
        assert needle in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
