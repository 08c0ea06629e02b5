"""Make tests/data/old-store-e9b6433.db: a SQLite store written by inboxd as of commit e9b6433.

That commit is the last main before the store's SQL moved to SQLAlchemy
Core (round 2), so the file is what an installation upgrading from it has
on disk.  tests/test_store_upgrade.py opens a copy with today's code and
checks that everything in it is still there.

Run it with the old code first on the path, from a checkout of e9b6433
(the script refuses to run against any other inboxd):

    git worktree add /tmp/oldmain e9b6433
    PYTHONPATH=/tmp/oldmain .venv/bin/python tests/data/make_old_store.py
    git worktree remove /tmp/oldmain

It starts a private Dovecot and an SMTP sink, files 36 mails into two
mailboxes (English and Chinese in GBK, Big5 and UTF-8, replies, one mail
sent to both mailboxes, HTML only, a vacation auto-reply, a broken mail
that is quarantined), acknowledges them, lets an agent take, reply to, note,
tag and close tickets, sends the satisfaction surveys a day later and files
two answers (one in Chinese).  It writes the store and, next to it, what
the old CLI showed (`list --json`, `show --json` per ticket, `outbox list --json`) and how many
rows each table held: the test compares today's view with that.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import inboxd

OLD = Path(inboxd.__file__).resolve().parents[1]
if not (OLD / "inboxd" / "ingest.py").is_file():
    raise SystemExit(f"this must run with inboxd as of e9b6433 first on PYTHONPATH, not {OLD}")

from inboxd.config import load_settings  # noqa: E402
from inboxd.daemon import run_once  # noqa: E402
from inboxd.testing.dovecot import Dovecot  # noqa: E402
from inboxd.testing.mail import make_mail  # noqa: E402
from inboxd.testing.smtp import SmtpSink  # noqa: E402

HERE = Path(__file__).resolve().parent
STORE = HERE / "old-store-e9b6433.db"
MANIFEST = HERE / "old-store-e9b6433.json"
TABLES = ("ticket", "customer", "rawmessage", "message", "messageref", "sighting", "checkpoint", "skipped",
          "folderstate", "attachment", "event", "quarantine", "outbox", "duty", "csat")

# `list` shows the open queue by default; every status, for every ticket.
ALL = [arg for status in ("new", "open", "pending", "solved", "closed") for arg in ("--status", status)]
OUTBOX_ALL = [arg for status in ("queued", "sending", "sent", "failed") for arg in ("--status", status)]

EXTRA = """
[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"

[csat]
delay = "1d"
min_interval = "1d"
"""


def config_text(dovecot: Dovecot, smtp_port: int, pw: Path) -> str:
    mailboxes = ""
    for name in ("support", "billing"):
        mailboxes += f"""
[[mailboxes]]
name = "{name}"
address = "{name}@example.com"
history_before = "1970-01-01T00:00Z"
[mailboxes.imap]
host = "{dovecot.host}"
port = {dovecot.ssl_port}
security = "tls"
username = "{name}"
password_file = "{pw}"
ca_file = "{dovecot.ca_file}"
"""
    return f"""
[store]
url = "sqlite:///inboxd.db"
data_dir = "var"

[autoreply]
enabled = true

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
{mailboxes}
[[agents]]
name = "alice"
email = "alice@example.com"
{EXTRA}"""


def seed(dovecot: Dovecot) -> None:
    """36 mails: 34 filed into tickets, 1 vacation reply (filed, never acknowledged), 1 broken (quarantined)."""
    add = dovecot.append
    order = "<order-20481@example.cn>"
    add("support", "INBOX", make_mail(
        frm="李雷 <lilei@example.cn>", subject="订单 20481 还没有发货", charset="gbk", message_id=order,
        body="您好，\n\n我在 11 月 18 日下的订单 20481 到现在还没有发货，请帮忙查一下。\n\n谢谢！\n李雷\n"))
    add("support", "INBOX", make_mail(
        frm="李雷 <lilei@example.cn>", subject="回复: 订单 20481 还没有发货", charset="gbk",
        message_id="<order-20481-2@example.cn>", in_reply_to=order, references=[order],
        body="补充一下：收货地址是上海市浦东新区。\n\n> 我在 11 月 18 日下的订单 20481 到现在还没有发货\n"))
    add("support", "INBOX", make_mail(
        frm="Emma Schmidt <emma@example.de>", subject="Cannot reset my password", message_id="<emma-1@example.de>",
        body="Hi,\n\nthe reset link in your mail says it expired, even when I click it at once.\n\nEmma\n"))
    both = make_mail(frm="Carlos Ruiz <carlos@example.es>", to=["support@example.com", "billing@example.com"],
                     subject="Charged twice for order 7731", message_id="<carlos-1@example.es>",
                     body="Hello, my card was charged twice for order 7731. Please refund one charge.\n")
    add("support", "INBOX", both)
    add("billing", "INBOX", both)
    add("billing", "INBOX", make_mail(
        frm="陳大文 <chan@example.hk>", to="billing@example.com", subject="發票抬頭需要更改", charset="big5",
        message_id="<chan-1@example.hk>", body="你好，\n\n請把發票抬頭改為「大文貿易有限公司」。\n\n陳大文\n"))
    add("billing", "INBOX", make_mail(
        frm="Priya Natarajan <priya@example.in>", to="billing@example.com", subject="Invoice for October",
        message_id="<priya-1@example.in>", body=None,
        html="<p>Hello,</p><p>could you send me the <b>invoice for October</b> as a PDF?</p>"))
    add("support", "INBOX", make_mail(
        frm="王芳 <wangfang@example.com.cn>", subject="无法登录账户", message_id="<wangfang-1@example.com.cn>",
        body="你好，我从昨天开始就无法登录我的账户，提示密码错误。\n"))
    add("support", "INBOX", make_mail(
        frm="Out of office <ooo@example.org>", subject="Automatic reply: Cannot reset my password",
        message_id="<ooo-1@example.org>", headers={"Auto-Submitted": "auto-replied"},
        body="I am out of the office until Monday.\n"))
    for i in range(24):
        first = f"<customer{i}-1@customers.example>"
        add("support" if i % 2 else "billing", "INBOX", make_mail(
            frm=f"Customer {i} <customer{i}@customer{i}.example>", to=f"{'support' if i % 2 else 'billing'}@example.com",
            subject=f"Question {i}", message_id=first, body=f"Hello, this is question {i}.\n"))
        if i % 4 == 0:
            add("support" if i % 2 else "billing", "INBOX", make_mail(
                frm=f"Customer {i} <customer{i}@customer{i}.example>", to=f"{'support' if i % 2 else 'billing'}@example.com",
                subject=f"Re: Question {i}", message_id=f"<customer{i}-2@customers.example>", in_reply_to=first,
                references=[first], body=f"Any news about question {i}?\n"))
    add("billing", "INBOX", b"this is not a mail, just bytes that arrived broken\r\n")


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="inboxd-oldstore-"))
    root.chmod(0o711)
    env = {**os.environ, "PYTHONPATH": str(OLD)}

    def cli(*args: str) -> str:
        # Not in the current directory: `python -m` puts it first on the path, ahead of PYTHONPATH.
        done = subprocess.run([sys.executable, "-m", "inboxd", "--config", str(config), *args], env=env, cwd=root,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"inboxd {' '.join(args)}: {done.stderr}")
        return done.stdout

    def once(now: datetime) -> None:
        report = run_once(load_settings(config), workers=0, now=now)
        assert report.failed == [], report.statuses

    try:
        with Dovecot(root / "dovecot") as dovecot, SmtpSink() as sink:
            for user in ("support", "billing"):
                dovecot.add_user(user, "secret")
            pw = root / "pw"
            pw.write_text("secret\n")
            pw.chmod(0o600)
            config = root / "inboxd.toml"
            config.write_text(config_text(dovecot, sink.port, pw))
            seed(dovecot)
            now = datetime.now(UTC).replace(microsecond=0)
            once(now)
            refs = {t["subject"]: t["id"] for t in json.loads(cli("list", "--json"))}
            # An agent at work: replies (outbox rows), a note, tags, a priority, closes and a solve (events).
            for subject in ("订单 20481 还没有发货", "Cannot reset my password", "發票抬頭需要更改", "Question 3"):
                cli("--as", "alice", "take", refs[subject])
            cli("--as", "alice", "reply", refs["订单 20481 还没有发货"], "-m", "您好，您的订单已于今天发货。")
            cli("--as", "alice", "note", refs["Cannot reset my password"], "-m", "Reset links expire after 10 minutes.")
            cli("--as", "alice", "reply", refs["Cannot reset my password"], "-m", "Please try the new link.")
            cli("--as", "alice", "tag", refs["發票抬頭需要更改"], "invoice", "發票")
            cli("--as", "carol", "priority", refs["Question 3"], "high")
            cli("--as", "alice", "close", refs["订单 20481 还没有发货"])
            cli("--as", "alice", "close", refs["Cannot reset my password"])
            cli("--as", "alice", "status", refs["Question 3"], "solved")
            # A day later the surveys go out; two customers answer them.
            once(datetime.now(UTC).replace(microsecond=0) + timedelta(days=1, minutes=1))
            surveys = {e.rcpt_tos[0]: e.message() for e in sink.envelopes if b"mailto:" in e.data}
            for address, frm, answer, charset in (
                    ("lilei@example.cn", "李雷 <lilei@example.cn>", "满意 处理得很快\n", "gbk"),
                    ("emma@example.de", "Emma Schmidt <emma@example.de>", "1 - great help, thanks\n", "utf-8")):
                survey = surveys[address]
                dovecot.append("support", "INBOX", make_mail(frm=frm, subject=f"Re: {survey['Subject']}",
                                                             in_reply_to=survey["Message-ID"], charset=charset,
                                                             body=answer))
            once(datetime.now(UTC).replace(microsecond=0) + timedelta(days=1, minutes=2))

            tickets = json.loads(cli("list", "--json", "--sort", "id", *ALL))
            shown = {t["id"]: json.loads(cli("show", t["id"], "--json")) for t in tickets}
            outbox = json.loads(cli("outbox", "list", "--json", *OUTBOX_ALL))
            store = root / "inboxd.db"
            db = sqlite3.connect(store)
            counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
            revision = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
            db.close()
        # One file, without its WAL: the backup API writes a consistent, self-contained copy.
        STORE.unlink(missing_ok=True)
        src, dst = sqlite3.connect(store), sqlite3.connect(STORE)
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.execute("VACUUM")
        src.close()
        dst.close()
        MANIFEST.write_text(json.dumps({"commit": "e9b6433", "revision": revision, "counts": counts,
                                        "list": tickets, "show": shown,
                                        "outbox": outbox}, ensure_ascii=False, indent=1) + "\n")
        print(f"wrote {STORE.name} ({STORE.stat().st_size} bytes, schema {revision}) and {MANIFEST.name}: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
