"""The acknowledgement's promise in the mailbox's zone, on real Dovecot and SMTP, compared as whole mails.

Two mailboxes, mail arriving at fixed instants (IMAP INTERNALDATE) and a
`run_once` at an injected `now`:
- kefu (zh, timezone Asia/Shanghai, a 24x7 4-hour promise): mail at
  14:00 UTC on 30 November is 22:00 in Beijing; the answer is due at 18:00
  UTC, which is 02:00 on 1 December in Beijing, across midnight;
- support (en, no timezone: its SLA calendar's, America/New_York, Mon-Fri
  09:00-17:00): mail on Saturday 31 October, the night before DST ends;
  the clock starts Monday 2 November 09:00 EST, so four business hours end
  at 13:00 EST (18:00 UTC).
Nobody reads "UTC" in either mail.  INBOXD_REGEN_GOLDEN=1 rewrites the golden files.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.testing.mail import make_mail
from tests.support import cli, list_json, write_config

GOLDEN = Path(__file__).parent / "golden"

EXTRA = """
[[calendars]]
name = "ny"
timezone = "America/New_York"
hours = { mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-17:00" }

[[sla]]
name = "ny"
first_response = "4h"
calendar = "ny"

[[sla]]
name = "always"
first_response = "4h"
"""


def masked(data: bytes) -> bytes:
    return re.sub(rb"(?m)^(Date|Message-ID): .*\r\n", rb"\1: <masked>\r\n", data)


def assert_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("INBOXD_REGEN_GOLDEN") == "1":  # Regenerate, review, commit.
        path.write_bytes(data)
    assert data == path.read_bytes(), f"{name} differs from its golden file"


def test_ack_promises_the_first_response_in_the_mailboxs_zone(tmp_path, dovecot, mail_user_factory, smtp_sink):
    kefu, support = mail_user_factory(), mail_user_factory()
    config = write_config(tmp_path, dovecot, [{"name": "kefu", "user": kefu}, {"name": "support", "user": support}],
                          smtp_port=smtp_sink.port, acks=True, extra=EXTRA)
    text = config.read_text()
    text = text.replace('address = "kefu@example.com"\n', 'address = "kefu@example.com"\nlanguage = "zh"\n'
                        'timezone = "Asia/Shanghai"\nsla = "always"\ndisplay_name = "示例客服中心"\n')
    text = text.replace('address = "support@example.com"\n', 'address = "support@example.com"\nsla = "ny"\n'
                        'display_name = "Example Support"\n')
    config.write_text(text)
    zh_at = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    en_at = datetime(2026, 10, 31, 20, 0, tzinfo=UTC)
    dovecot.append(support, "INBOX", make_mail(frm="Ann Lee <ann@example.org>", subject="Printer offline",
                                               message_id="<printer-1@example.org>"), when=en_at)
    once(config, en_at + timedelta(minutes=1))
    [en_mail] = smtp_sink.wait_for(1)
    dovecot.append(kefu, "INBOX", make_mail(frm="李雷 <lilei@example.cn>", subject="订单没有收到",
                                            body="你好，\n\n我的订单还没有收到。\n\n李雷\n",
                                            message_id="<order-1@example.cn>"), when=zh_at)
    # One minute after the Chinese mail arrived; the English ticket's own later duties mail only Ann.
    once(config, zh_at + timedelta(minutes=1))
    [zh_mail] = [e for e in smtp_sink.envelopes if e.rcpt_tos == ["lilei@example.cn"]]
    assert en_mail.rcpt_tos == ["ann@example.org"]

    zh = email.message_from_bytes(zh_mail.data, policy=email.policy.default)
    en = email.message_from_bytes(en_mail.data, policy=email.policy.default)
    zh_body, en_body = (m.get_body(("plain",)).get_content().replace("\r\n", "\n") for m in (zh, en))
    assert "我们会在 4 小时内回复您，最晚于 12月1日 02:00（北京时间）。" in zh_body
    assert "A member of our team will reply within 4 business hours,\nby Mon 2 Nov, 13:00 (EST)." in en_body
    assert "UTC" not in zh_body and "UTC" not in en_body
    assert_golden("ack_promise_zh.eml", masked(zh_mail.data))
    assert_golden("ack_promise_en.eml", masked(en_mail.data))


def once(config, now: datetime) -> None:
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses


AGENTS = """
[[agents]]
name = "wang"
email = "wang@example.com"
language = "zh"
timezone = "Asia/Shanghai"

[[agents]]
name = "nora"
email = "nora@example.com"
timezone = "America/New_York"
"""


def test_list_and_show_in_the_acting_agents_zone(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                          extra=EXTRA + AGENTS)
    config.write_text(config.read_text().replace('address = "support@example.com"\n',
                                                 'address = "support@example.com"\nsla = "always"\n'))
    at = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    dovecot.append(imap_user, "INBOX", make_mail(frm="Ann <ann@example.org>", subject="Login fails"), when=at)
    once(config, at + timedelta(minutes=1))

    # The contract keeps UTC.
    [t] = list_json(config)
    assert t["first_response_due"] == "2026-11-30T18:00:00Z" and t["created_at"] == "2026-11-30T14:00:00Z"
    # 18:00 UTC is 02:00 the next day in Beijing and 13:00 the same day in New York.
    wang = cli(config, "--as", "wang", "list", "--status", "new").stdout.splitlines()
    assert wang[0].split()[5] == "DUE" and "(北京时间)" in wang[0]
    assert "12月1日 02:00" in wang[1] and "UTC" not in "\n".join(wang)
    nora = cli(config, "--as", "nora", "list", "--status", "new").stdout.splitlines()
    assert "DUE (EST)" in nora[0] and "Mon 30 Nov, 13:00" in nora[1]

    shown = cli(config, "--as", "wang", "show", t["id"]).stdout
    assert "times in Asia/Shanghai (北京时间)" in shown
    assert "created 2026年11月30日 22:00" in shown and "first response 2026年12月1日 02:00" in shown
    assert "2026-11-30T" not in shown
    history = cli(config, "--as", "nora", "history", t["id"]).stdout
    assert history.startswith("Mon 30 Nov 2026, 09:00  inboxd") and "2026-11-30T" not in history
