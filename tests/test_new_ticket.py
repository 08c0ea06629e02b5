"""`inboxd new`: a ticket opened by hand for a phone call or a walk-in, end to end.

Dovecot holds the mailbox, aiosmtpd receives what inboxd sends, the CLI runs
as an agent types it.  The ticket must take the path of a customer's first
mail (acknowledged through the outbox, threaded so that the customer's
answer to the acknowledgement lands on it) and say in its history that an
agent opened it by hand.
"""

from __future__ import annotations

import json

import pytest

from inboxd.testing.mail import make_message_id
from tests.support import write_config
from tests.test_workflow import AGENTS, Desk, body, refused

CUSTOMER = "li.lei@example.cn"

SLA = """
[[sla]]
name = "standard"
first_response = "8h"
priority = ["low", "normal"]

[[sla]]
name = "fast"
first_response = "1h"
priority = ["high", "urgent"]
"""

RULES = """
[[rules]]
name = "printers"
if = { subject = ["打印机"] }
then = { tags = ["hardware"] }
"""


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "sent_folder": "Sent"}],
                          smtp_port=smtp_sink.port, acks=True, extra=AGENTS + RULES + SLA)
    return Desk(config, dovecot, imap_user, smtp_sink)


def test_new_ticket_is_acknowledged_and_the_customers_answer_threads_onto_it(desk):
    created = desk.json("alice", "new", "--mailbox", "support", "--requester", "Li.Lei@Example.cn",
                        "--name", "李雷", "--subject", "打印机卡纸", "-m", "来电：办公室打印机一直卡纸。")
    ref = created["id"]
    # The `list --json` object of the new ticket.
    assert created["subject"] == "打印机卡纸"
    assert created["requester"] == CUSTOMER          # addresses are kept in lower case, as for mail
    assert created["status"] == "new" and created["assignee"] is None
    assert created["tags"] == ["hardware"]          # the routing rules ran
    # The SLA clock started as for mail: the normal priority's 8 hours (24x7).
    assert _hours(created["created_at"], created["first_response_due"]) == 8
    desk.flush()
    [ack] = desk.to(CUSTOMER)
    assert ref in ack["Subject"]
    assert ack["Auto-Submitted"] == "auto-replied"
    ticket = desk.show(ref)
    first = ticket["messages"][0]
    assert (first["kind"], first["direction"], first["from"]) == ("customer", "in", CUSTOMER)
    assert first["reply_text"].strip() == "来电：办公室打印机一直卡纸。"
    created_event = next(e for e in ticket["events"] if e["action"] == "created")
    assert created_event["actor"] == "alice"
    assert created_event["detail"]["via"] == "cli"
    assert any(e["action"] == "ack" for e in ticket["events"])
    # The customer answers the acknowledgement with no tag in the subject: the Message-ID threads it.
    desk.mail(frm=f"Li Lei <{CUSTOMER}>", subject="Re: 打印机", in_reply_to=ack["Message-ID"].strip("<>"),
              body="型号是 HP M404。\n")
    desk.ingest()
    tickets = desk.json(None, "list", "--requester", CUSTOMER)
    assert [t["id"] for t in tickets] == [ref]
    after = desk.show(ref)
    assert [m["kind"] for m in after["messages"]] == ["customer", "auto", "customer"]
    assert "HP M404" in after["messages"][-1]["reply_text"]


def test_new_without_ack_taken_with_priority(desk):
    ref = desk.as_("bob", "new", "--mailbox", "support", "--requester", CUSTOMER, "--subject", "Walk-in: broken laptop",
                   "-m", "Came to the desk with a laptop that does not boot.", "--no-ack", "--take",
                   "--priority", "high").stdout.strip()
    desk.flush()
    assert desk.to(CUSTOMER) == []
    ticket = desk.show(ref)
    assert (ticket["assignee"], ticket["status"], ticket["priority"]) == ("bob", "open", "high")
    # The agent's priority was applied before the clock: the high priority's policy of 1 hour.
    assert _hours(ticket["created_at"], ticket["first_response_due"]) == 1
    actions = [e["action"] for e in ticket["events"]]
    assert "no-ack" in actions and "ack" not in actions
    no_ack = next(e for e in ticket["events"] if e["action"] == "no-ack")
    assert no_ack["detail"]["rule"] == "cli"
    choice = next(e for e in ticket["events"] if e["action"] == "set")
    assert choice["actor"] == "bob" and choice["detail"]["changes"]["priority"] == {"before": "normal",
                                                                                     "after": "high"}


def test_new_assigned_to_a_colleague_notifies_them(desk):
    ref = desk.as_("carol", "new", "--mailbox", "support", "--requester", CUSTOMER, "--subject", "Phone: invoice",
                   "-m", "Asked for a copy of invoice 1234.", "--assign", "bob", "--no-ack").stdout.strip()
    desk.flush()
    [note] = desk.to("bob@example.com")
    assert ref in note["Subject"]
    assert "invoice 1234" in body(note)
    # Carol watches the team's new tickets, but an assigned ticket is bob's news, and carol typed it.
    assert desk.to("carol@example.com") == []


@pytest.mark.parametrize("args, needles", [
    (("--mailbox", "nowhere", "--requester", CUSTOMER, "--subject", "x", "-m", "y"), ("nowhere",)),
    (("--mailbox", "support", "--requester", "not-an-address", "--subject", "x", "-m", "y"), ("--requester",)),
    (("--mailbox", "support", "--requester", "alice@example.com", "--subject", "x", "-m", "y"), ("our own",)),
    (("--mailbox", "support", "--requester", CUSTOMER, "--subject", "x", "-m", "y", "--take", "--assign", "bob"),
     ("--take",)),
    (("--mailbox", "support", "--requester", CUSTOMER, "--subject", "x", "-m", "y", "--priority", "asap"),
     ("asap", "urgent")),
    (("--mailbox", "support", "--requester", CUSTOMER, "--subject", "x", "-m", "  "), ("-m",)),
])
def test_new_refuses_mistakes_in_one_line(desk, args, needles):
    desk.ingest()   # the store exists, so "nothing was opened" can be read back
    refused(desk.as_("alice", "new", *args, check=False), *needles)
    assert desk.json(None, "list") == []


def test_new_refuses_a_subject_that_names_a_ticket(desk):
    desk.mail(frm=f"Li Lei <{CUSTOMER}>", subject="Cannot log in", message_id=make_message_id())
    desk.ingest()
    [t] = desk.json(None, "list")
    line = refused(desk.as_("alice", "new", "--mailbox", "support", "--requester", CUSTOMER,
                            "--subject", f"[{t['id']}] more", "-m", "called again", check=False), t["id"])
    assert "note" in line
    assert len(desk.json(None, "list")) == 1


def test_new_with_editor(desk, tmp_path):
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nprintf 'Typed in the editor.\\n' >> \"$1\"\n")
    editor.chmod(0o755)
    ref = desk.as_("alice", "new", "--mailbox", "support", "--requester", CUSTOMER, "--subject", "Call",
                   "--no-ack", env={"EDITOR": str(editor)}).stdout.strip()
    ticket = desk.show(ref)
    assert ticket["messages"][0]["reply_text"].strip() == "Typed in the editor."
    assert json.dumps(ticket["fields"]) == "{}"


def _hours(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds() / 3600
