"""待确认 end to end: a customer's reply to a solved ticket on real Dovecot closes it or reopens it.

Tickets are solved through the CLI; the customers' replies arrive in the
mailbox and a `run_once` cycle at an injected instant files them.  A
confirmation closes the ticket (closed_at set, the phrase in the history) and
the survey follows as for any close; any other reply reopens it; a mailbox
with confirm_closes = false reopens on every reply.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.testing.mail import make_mail
from tests.support import cli, list_json, show_json, write_config

EXTRA = """
[csat]
delay = "15m"
"""


def once(config, now: datetime) -> None:
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses


def real_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def confirm_events(config, ref: str) -> list[dict]:
    return [e["detail"] for e in show_json(config, ref)["events"] if e["action"] == "confirm"]


@pytest.fixture
def desk(tmp_path, dovecot, mail_user_factory, smtp_sink):
    support, plain = mail_user_factory(), mail_user_factory()
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": support}, {"name": "plain", "user": plain}],
                          smtp_port=smtp_sink.port, extra=EXTRA)
    text = config.read_text()
    assert 'name = "plain"\n' in text
    config.write_text(text.replace('name = "plain"\n', 'name = "plain"\nconfirm_closes = false\n'))
    return config, support, plain


def solved_ticket(config, dovecot, user: str, frm: str, subject: str) -> str:
    dovecot.append(user, "INBOX", make_mail(frm=frm, subject=subject))
    once(config, real_now())
    ref = next(t["id"] for t in list_json(config) if t["subject"] == subject)
    cli(config, "--as", "alice", "status", ref, "solved")
    return ref


def reply(dovecot, user: str, frm: str, subject: str, ref: str, text: str) -> None:
    body = f"{text}\n\nOn Mon, Support wrote:\n> We reset your password.\n"
    dovecot.append(user, "INBOX", make_mail(frm=frm, subject=f"Re: {subject} [{ref}]", body=body))


def test_confirmation_closes_other_replies_reopen(desk, dovecot, smtp_sink):
    config, support, plain = desk
    ann = solved_ticket(config, dovecot, support, "Ann <ann@example.org>", "Password reset")
    ben = solved_ticket(config, dovecot, support, "Ben <ben@example.org>", "Printer jam")
    cleo = solved_ticket(config, dovecot, plain, "Cleo <cleo@example.org>", "Invoice copy")
    # Each customer answers the solution, quoting our mail below the new text.
    reply(dovecot, support, "Ann <ann@example.org>", "Password reset", ann, "问题已经解决了，谢谢！")
    reply(dovecot, support, "Ben <ben@example.org>", "Printer jam", ben, "Thanks, but it still fails")
    reply(dovecot, plain, "Cleo <cleo@example.org>", "Invoice copy", cleo, "Thanks, that fixed it")
    now = real_now() + timedelta(minutes=1)
    once(config, now)

    tickets = {t["id"]: t for t in list_json(config)}
    assert (tickets[ann]["status"], tickets[ben]["status"], tickets[cleo]["status"]) == ("closed", "open", "open")
    assert confirm_events(config, ann) == [{"decision": "close", "phrase": "问题已经解决了",
                                            "reason": "a short confirmation ('问题已经解决了')"}]
    assert confirm_events(config, ben) == [{"decision": "reopen", "phrase": "thanks", "reason": "says 'still'"}]
    assert confirm_events(config, cleo) == [{"decision": "reopen", "reason": "confirm_closes is off for mailbox plain"}]
    message = [e for e in show_json(config, ann)["events"] if e["action"] == "message"][-1]["detail"]
    assert (message["status_before"], message["status_after"]) == ("solved", "closed")

    # The survey follows the confirmation's close as it follows any close, once its delay has passed.
    once(config, now + timedelta(minutes=20))
    surveys = [email.message_from_bytes(e.data, policy=email.policy.default) for e in smtp_sink.envelopes
               if "ann@example.org" in e.rcpt_tos]
    assert len(surveys) == 1 and ann in surveys[0]["Subject"]
    assert [e["action"] for e in show_json(config, ann)["events"]].count("survey") == 1
    assert not [e for e in smtp_sink.envelopes if "ben@example.org" in e.rcpt_tos]
