"""The agent workflow end to end: Dovecot in, the CLI as a subprocess, aiosmtpd out.

The store is filled by a real ingest (`inboxd run --once` against Dovecot);
every workflow command then runs through the real command line with the
arguments an agent would type, and every mail it causes is read back from
the SMTP sink.  Nothing here mocks IMAP, SMTP or the database.

Most commands run the CLI's `main()` in this process (same parser, same
error handling, same store; 20 times faster than starting Python, which
keeps this file near half a minute); `fork=True` runs `python -m inboxd`
as a subprocess, and the tests of the acting agent and of one-line errors
use it, so the process boundary (exit status, stderr, environment) is
covered too.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import write_config

CUSTOMER = "lilei@example.cn"

# Four agents: alice (written by write_config, role agent, notify "assigned"),
# bob (agent), carol (supervisor, watches the support team's new tickets) and
# dave (admin, never notified).
AGENTS = """
[[agents]]
name = "bob"
email = "bob@example.com"
role = "agent"
notify = "assigned"

[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"
teams = ["support"]
notify = "all"

[[agents]]
name = "dave"
email = "dave@example.com"
role = "admin"
notify = "none"

[[macros]]
name = "password_reset"
template = "password_reset.txt"
status = "solved"
priority = "high"
tags = ["password", "self-service"]

[[macros]]
name = "thanks"
body = "Thank you, {{ ticket.requester.name }}. {{ agent.name | capitalize }} from {{ mailbox.display_name }}."
tags = ["thanked"]

[[macros]]
name = "broken"
body = "Dear {{ ticket.requester.nmae }}, your ticket {{ ticket.id }} is fixed."
status = "solved"
tags = ["never-applied"]
"""


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink):
    """A support mailbox with a Sent folder, acks on, SMTP to the sink, four agents and three macros."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "sent_folder": "Sent"}],
                          smtp_port=smtp_sink.port, acks=True, extra=AGENTS)
    return Desk(config, dovecot, imap_user, smtp_sink)


class Desk:
    """The test's view of one deployment: append mail, run inboxd, read what was sent."""

    def __init__(self, config: Path, dovecot, user: str, sink):
        self.config, self.dovecot, self.user, self.sink = config, dovecot, user, sink

    def mail(self, **kwargs) -> str:
        """Append a customer mail (or any mail) to the support INBOX; returns its Message-ID."""
        kwargs.setdefault("message_id", make_message_id())
        self.dovecot.append(self.user, "INBOX", make_mail(**kwargs))
        return kwargs["message_id"]

    def ingest(self, fork: bool = False) -> None:
        """One full cycle: sync Dovecot, file, send what is queued to the sink; with `fork`,
        as `inboxd run --once` in a subprocess, else the same `run_once` in this process."""
        if fork:
            inboxd(self.config, None, "run", "--once", fork=True)
            return
        report = run_once(load_settings(self.config), workers=0)
        assert report.failed == [], report.statuses

    flush = ingest  # Sending what the CLI queued is the same cycle.

    def to(self, address: str) -> list[email.message.EmailMessage]:
        """The mail `address` got, without the daily digest and the weekly report (see `unscheduled`)."""
        return [parsed(e) for e in self.unscheduled() if address in e.rcpt_tos]

    def unscheduled(self) -> list:
        """The sink's envelopes but the daily digest and the weekly report.

        Each cycle runs the scheduled duties at the real time, so those two
        arrive or not depending on the hour and weekday the tests run at;
        tests/test_scheduler.py tests them at fixed instants.
        """
        return [e for e in self.sink.envelopes
                if not parsed(e)["Message-ID"].startswith(("<inboxd-report.", "<inboxd.digest."))]

    def as_(self, agent: str | None, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return inboxd(self.config, agent, *args, **kwargs)

    def json(self, agent: str | None, *args: str):
        return json.loads(inboxd(self.config, agent, *args, "--json").stdout)

    def show(self, ref: str) -> dict:
        return self.json(None, "show", ref)


def inboxd(config: Path, agent: str | None, *args: str, env: dict | None = None, check: bool = True,
           fork: bool = False) -> subprocess.CompletedProcess:
    """The CLI as an agent runs it, as --as `agent`; `env` adds to (or, with None values, removes
    from) the environment.  In this process unless `fork`."""
    environ = {k: v for k, v in os.environ.items() if k not in ("INBOXD_AGENT", "INBOXD_CONFIG", "VISUAL")}
    environ["USER"] = "nobody-in-particular"
    for k, v in (env or {}).items():
        if v is None:
            environ.pop(k, None)
        else:
            environ[k] = v
    argv = ["--config", str(config), *(("--as", agent) if agent else ()), *args]
    if fork:
        proc = subprocess.run([sys.executable, "-m", "inboxd", *argv], capture_output=True, text=True,
                              timeout=120, env=environ)
    else:
        proc = _in_process(argv, environ)
    if check and proc.returncode != 0:
        raise AssertionError(f"inboxd {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def _in_process(argv: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess:
    from inboxd.cli.main import main

    saved_env, saved_umask = dict(os.environ), os.umask(0o022)
    os.umask(saved_umask)
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(environ)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.umask(saved_umask)  # main() makes everything private; the other tests' files must not be.
    return subprocess.CompletedProcess(["inboxd", *argv], code, out.getvalue(), err.getvalue())


def refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert a one-line refusal on stderr (no traceback, non-zero exit) that says each needle."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("inboxd: "), lines[0]
    assert "internal error" not in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def parsed(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.data, policy=email.policy.default)


def body(msg: email.message.EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")


def events(desk: Desk, ref: str, action: str) -> list[dict]:
    return [e for e in desk.show(ref)["events"] if e["action"] == action]


@pytest.fixture
def filled(desk):
    """Two tickets from two customers, filed by a real ingest: T-1000 (Li Lei) and T-1001 (Emma)."""
    first = desk.mail(frm=f"Li Lei <{CUSTOMER}>", subject="Cannot log in",
                      body="Hello,\n\nI cannot log in since yesterday.\n\nLi Lei\n")
    desk.mail(frm="Emma <emma@example.de>", subject="Invoice for October", body="Where is my invoice?\n")
    desk.ingest(fork=True)
    desk.first_message_id = first
    assert [t["id"] for t in desk.json("alice", "list", "--sort", "id")] == ["T-1000", "T-1001"]
    return desk


# -- who is acting --------------------------------------------------------------------


def test_the_acting_agent_comes_from_as_then_env_then_user(filled):
    d = filled
    refused(d.as_(None, "take", "T-1000", check=False, fork=True), "--as AGENT", "$INBOXD_AGENT")
    refused(d.as_("zed", "take", "T-1000", check=False), "unknown agent 'zed'", "alice")
    refused(d.as_(None, "take", "T-1000", env={"INBOXD_AGENT": "zed"}, check=False), "unknown agent 'zed'")
    # $USER counts only when it names an agent.
    d.as_(None, "tag", "T-1000", "from-user", env={"USER": "bob"}, fork=True)
    d.as_(None, "tag", "T-1001", "from-env", env={"INBOXD_AGENT": "carol", "USER": "bob"}, fork=True)
    # --as wins over the environment.
    d.as_("dave", "tag", "T-1001", "from-as", env={"INBOXD_AGENT": "carol"}, fork=True)
    actors = {e["detail"]["changes"]["tags"]["after"][-1]: e["actor"]
              for ref in ("T-1000", "T-1001") for e in events(d, ref, "tag")}
    assert actors == {"from-user": "bob", "from-env": "carol", "from-as": "dave"}


# -- assignment and roles --------------------------------------------------------------


def test_assignment_roles_and_audit(filled):
    d = filled
    out = d.as_("alice", "take", "T-1000")
    assert out.stdout.strip() == "T-1000 is now yours"
    t = d.show("T-1000")
    assert (t["assignee"], t["status"]) == ("alice", "open")
    [take] = events(d, "T-1000", "take")
    assert take["actor"] == "alice" and take["at"].endswith("Z")
    assert take["detail"]["changes"]["assignee"] == {"before": None, "after": "alice"}
    assert take["detail"]["changes"]["status"] == {"before": "new", "after": "open"}

    # An agent cannot take, reassign or touch a colleague's ticket; the refusal names the role.
    refused(d.as_("bob", "take", "T-1000", check=False), "supervisor or admin role")
    refused(d.as_("bob", "assign", "T-1000", "bob", check=False), "reassigning", "supervisor or admin role")
    refused(d.as_("bob", "tag", "T-1000", "mine", check=False), "assigned to alice", "supervisor or admin role")
    refused(d.as_("bob", "priority", "T-1000", "high", check=False), "supervisor or admin role")
    refused(d.as_("bob", "unassign", "T-1000", check=False), "supervisor or admin role")
    refused(d.as_("bob", "reply", "T-1000", "-m", "hi", check=False), "supervisor or admin role")
    assert d.show("T-1000")["assignee"] == "alice" and events(d, "T-1000", "assign") == []

    # An agent may assign an unassigned ticket to anybody, and hand on their own.
    r = d.json("bob", "assign", "T-1001", "alice")
    assert r["id"] == "T-1001" and r["actor"] == "bob" and r["changes"]["assignee"]["after"] == "alice"
    d.as_("alice", "assign", "T-1001", "bob")
    # A supervisor and an admin may reassign anybody's ticket.
    d.as_("carol", "assign", "T-1000", "bob")
    d.as_("dave", "unassign", "T-1001")
    assert d.show("T-1000")["assignee"] == "bob" and d.show("T-1001")["assignee"] is None
    refused(d.as_("carol", "assign", "T-1000", "zed", check=False), "unknown agent 'zed'")
    refused(d.as_("carol", "unassign", "T-1001", check=False), "not assigned")
    # history: every change, who and when, before and after.
    hist = d.json(None, "history", "T-1000")
    assert [(e["action"], e["actor"]) for e in hist if e["action"] in ("take", "assign")] == [
        ("take", "alice"), ("assign", "carol")]
    assert hist[-1]["detail"]["changes"]["assignee"] == {"before": "alice", "after": "bob"}
    text = d.as_(None, "history", "T-1000").stdout
    assert "carol" in text and "assign" in text


def test_lifecycle_is_enforced_and_explained(filled):
    d = filled
    d.as_("alice", "take", "T-1000")
    assert d.as_("alice", "status", "T-1000", "pending").stdout.strip() == "T-1000 is now pending"
    refused(d.as_("alice", "status", "T-1000", "pending", check=False), "already pending")
    refused(d.as_("alice", "status", "T-1000", "new", check=False),
            "cannot go from pending to new", "open, solved, closed")
    refused(d.as_("alice", "status", "T-1000", "bogus", check=False), "unknown status 'bogus'")
    d.as_("alice", "status", "T-1000", "solved")
    refused(d.as_("alice", "status", "T-1000", "pending", check=False), "reopen it first")
    r = d.json("alice", "close", "T-1000", "--no-survey")
    assert r["survey"] is False and r["changes"]["status"] == {"before": "solved", "after": "closed"}
    refused(d.as_("alice", "reply", "T-1000", "-m", "one more thing", check=False), "closed", "reopen")
    d.as_("alice", "reopen", "T-1000")
    refused(d.as_("alice", "reopen", "T-1000", check=False), "is open", "nothing to reopen")
    assert d.show("T-1000")["status"] == "open"
    # Priority is checked too.
    assert d.json("alice", "priority", "T-1000", "urgent")["changes"]["priority"]["after"] == "urgent"
    refused(d.as_("alice", "priority", "T-1000", "urgent", check=False), "already urgent")
    refused(d.as_("alice", "priority", "T-1000", "asap", check=False), "unknown priority 'asap'")
    statuses = [e["detail"]["changes"]["status"]["after"] for e in d.show("T-1000")["events"]
                if "status" in e["detail"].get("changes", {})]
    assert statuses == ["open", "pending", "solved", "closed", "open"]


def test_escalated_ticket_needs_a_supervisors_approval_before_an_agent_closes_it(filled):
    d = filled
    d.as_("alice", "take", "T-1000")
    refused(d.as_("alice", "escalate", "T-1000", "--to", "tier2", "--reason", " ", check=False), "reason")
    refused(d.as_("alice", "escalate", "T-1000", "--to", "nowhere", "--reason", "x", check=False),
            "unknown escalation target 'nowhere'")
    r = d.json("alice", "escalate", "T-1000", "--to", "tier2", "--reason", "needs a database fix")
    assert r["to"] == "tier2" and r["reason"] == "needs a database fix"
    t = d.show("T-1000")
    assert t["escalated"] is True and t["tier"] == 2 and t["assignee"] is None
    d.as_("alice", "take", "T-1000")
    refused(d.as_("alice", "close", "T-1000", check=False), "escalated", "supervisor", "inboxd approve T-1000")
    refused(d.as_("alice", "approve", "T-1000", check=False), "supervisor or admin role")
    refused(d.as_("carol", "approve", "T-1001", check=False), "not escalated")
    d.as_("carol", "approve", "T-1000")
    d.as_("alice", "close", "T-1000")
    assert d.show("T-1000")["status"] == "closed"
    # A supervisor needs no review of their own: escalate to a team, close at once.
    d.as_("carol", "escalate", "T-1001", "--to", "support", "--reason", "billing question")
    assert d.show("T-1001")["team"] == "support"
    d.as_("carol", "close", "T-1001")


# -- notes and replies ----------------------------------------------------------------


def test_note_stays_internal_and_reply_reaches_the_customer_threaded(filled):
    d = filled
    assert len(d.to(CUSTOMER)) == 1  # the acknowledgement
    ack = d.to(CUSTOMER)[0]
    assert d.as_("alice", "note", "T-1000", "-m", "Customer is a VIP; be quick.").stdout.strip() == \
        "note added to T-1000"
    r = d.json("alice", "reply", "T-1000", "-m", "Please try the reset link again.")
    assert r["changes"]["status"] == {"before": "new", "after": "pending"}
    d.flush()
    [_, reply] = d.to(CUSTOMER)
    assert reply["From"].addresses[0].display_name == "Alice via Support"
    assert reply["From"].addresses[0].addr_spec == "support@example.com"
    assert reply["Subject"] == "Re: [T-1000] Cannot log in"
    assert reply["In-Reply-To"] == d.first_message_id
    refs = str(reply["References"]).split()
    assert refs[0] == d.first_message_id and ack["Message-ID"] in refs
    assert reply["Message-ID"] == f"<{r['message_id']}>"  # The store keeps ids without brackets.
    assert "Auto-Submitted" not in reply  # A person's answer, not an auto-reply.
    assert body(reply).strip() == "Please try the reset link again."
    everything = b"".join(e.data for e in d.sink.envelopes)
    assert b"VIP" not in everything
    t = d.show("T-1000")
    assert [m["kind"] for m in t["messages"]] == ["customer", "auto", "note", "agent"]
    assert t["status"] == "pending" and t["assignee"] == "alice" and t["first_response_at"]
    # The customer's answer to our reply threads back and reopens the ticket.
    d.mail(frm=f"Li Lei <{CUSTOMER}>", subject=f"Re: {reply['Subject']}", in_reply_to=reply["Message-ID"],
           references=[*refs, reply["Message-ID"]], body="It works now, thanks!\n")
    d.ingest()
    t = d.show("T-1000")
    # (A Date header has whole seconds, so within one second the order of arrival is not the date order.)
    assert t["status"] == "open"
    assert [m["reply_text"].strip() for m in t["messages"] if m["kind"] == "customer"][-1] == "It works now, thanks!"


def test_reply_without_m_opens_the_editor_on_a_quoting_template(filled, tmp_path):
    d = filled
    seen = tmp_path / "template-seen.txt"
    editor = tmp_path / "editor.sh"
    editor.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        cp "$1" {seen}
        {{ printf 'Hi Li Lei,\\n\\nYour account is unlocked.\\n'; cat "$1"; }} > "$1.new" && mv "$1.new" "$1"
        """))
    editor.chmod(0o755)
    d.as_("alice", "reply", "T-1000", env={"EDITOR": str(editor)})
    template = seen.read_text()
    assert "# Reply to T-1000: Cannot log in" in template
    assert "> I cannot log in since yesterday." in template
    d.flush()
    reply = d.to(CUSTOMER)[-1]
    text = body(reply)
    assert text.startswith("Hi Li Lei,\n\nYour account is unlocked.\n")
    assert "# Reply to" not in text  # Comment lines are dropped.
    assert reply["In-Reply-To"] == d.first_message_id
    # An editor that leaves the template untouched sends nothing.
    untouched = tmp_path / "true.sh"
    untouched.write_text("#!/bin/sh\nexit 0\n")
    untouched.chmod(0o755)
    before = len(d.sink.envelopes)
    refused(d.as_("alice", "reply", "T-1001", env={"EDITOR": str(untouched)}, check=False), "nothing was sent")
    refused(d.as_("alice", "reply", "T-1001", env={"EDITOR": None}, check=False), "$EDITOR")
    d.flush()
    assert len(d.sink.envelopes) == before


# -- macros ---------------------------------------------------------------------------


def test_macros_render_send_and_act_and_a_broken_one_sends_nothing(filled, tmp_path):
    d = filled
    names = [m["name"] for m in d.json(None, "macro", "list")]
    assert names == ["password_reset", "thanks", "broken"]
    shown = d.as_("alice", "macro", "show", "password_reset", "T-1000").stdout
    assert "Li Lei" in shown and "T-1000" in shown and "Alice" in shown
    assert "{{" not in shown
    d.flush()
    assert len(d.to(CUSTOMER)) == 1 and events(d, "T-1000", "macro") == []  # show sends and changes nothing

    # A macro with an undefined variable fails before anything is queued.
    before = d.show("T-1000")
    refused(d.as_("alice", "macro", "apply", "T-1000", "broken", check=False), "nmae")
    refused(d.as_("alice", "macro", "show", "broken", "T-1000", check=False), "nmae")
    refused(d.as_("alice", "macro", "apply", "T-1000", "nosuch", check=False), "unknown macro 'nosuch'",
            "password_reset")
    d.flush()
    assert len(d.to(CUSTOMER)) == 1
    after = d.show("T-1000")
    assert after["tags"] == [] and after["status"] == "new" and len(after["messages"]) == len(before["messages"])

    r = d.json("alice", "macro", "apply", "T-1000", "password_reset")
    assert r["macro"] == "password_reset"
    d.flush()
    [_, sent] = d.to(CUSTOMER)
    assert body(sent) == shown
    assert sent["Subject"] == "Re: [T-1000] Cannot log in" and sent["In-Reply-To"] == d.first_message_id
    assert sent["From"].addresses[0].display_name == "Alice via Support"
    t = d.show("T-1000")
    assert (t["status"], t["priority"], t["tags"], t["assignee"]) == (
        "solved", "high", ["password", "self-service"], "alice")

    # --edit: the rendered text goes through $EDITOR first.
    editor = tmp_path / "edit.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/^Thank you/Many thanks/' \"$1\"\n")
    editor.chmod(0o755)
    d.as_("bob", "macro", "apply", "T-1001", "thanks", "--edit", env={"EDITOR": str(editor)})
    d.flush()
    [_, thanks] = d.to("emma@example.de")
    assert body(thanks).strip() == "Many thanks, Emma. Bob from Support."
    assert d.show("T-1001")["tags"] == ["thanked"]


# -- merge ----------------------------------------------------------------------------


def test_merge_moves_messages_and_the_old_ids_replies_thread_to_the_new_ticket(filled):
    d = filled
    # Li Lei writes again about the same problem, with a fresh subject: a second ticket.
    d.mail(frm=f"Li Lei <{CUSTOMER}>", subject="Still locked out", body="Any news?\n")
    d.ingest()
    ack_1002 = d.to(CUSTOMER)[-1]
    assert ack_1002["Subject"].startswith("Re: [T-1002]")
    d.as_("alice", "take", "T-1000")
    refused(d.as_("alice", "merge", "T-1002", "T-1002", check=False), "into itself")
    out = d.as_("alice", "merge", "T-1002", "T-1000")
    assert out.stdout.strip() == "T-1002 merged into T-1000 (2 message(s) moved)"
    old, new = d.show("T-1002"), d.show("T-1000")
    assert old["status"] == "closed" and old["messages"] == []
    assert [m["reply_text"].strip() for m in new["messages"] if m["kind"] == "customer"] == [
        "Hello,\n\nI cannot log in since yesterday.\n\nLi Lei", "Any news?"]
    assert new["message_count"] == 4
    refused(d.as_("alice", "tag", "T-1002", "x", check=False), "merged into T-1000")
    refused(d.as_("alice", "merge", "T-1002", "T-1000", check=False), "already merged")
    # Replies to the old ticket's mail, by header or by subject tag, land on the new one.
    d.mail(frm=f"Li Lei <{CUSTOMER}>", subject=f"Re: {ack_1002['Subject']}", in_reply_to=ack_1002["Message-ID"],
           body="Hello?\n")
    d.mail(frm=f"Li Lei <{CUSTOMER}>", subject="Re: [T-1002] Still locked out", body="Anyone there?\n")
    d.ingest()
    assert {t["id"] for t in d.json("alice", "list", "--status", "new")} == {"T-1001"}
    customer = [m["reply_text"].strip() for m in d.show("T-1000")["messages"] if m["kind"] == "customer"]
    assert len(customer) == 4 and {"Hello?", "Anyone there?"} <= set(customer)
    # And our answer on the merged ticket carries the new tag.
    d.as_("alice", "reply", "T-1000", "-m", "Fixed.")
    d.flush()
    assert d.to(CUSTOMER)[-1]["Subject"] == "Re: [T-1000] Cannot log in"


# -- notifications --------------------------------------------------------------------


def test_notifications_reach_the_assignee_and_answers_reach_the_customer(filled):
    d = filled
    # carol watches the support team: she heard of both new tickets; nobody else did.
    assert sorted(m["Subject"] for m in d.to("carol@example.com")) == [
        "[T-1000] Cannot log in", "[T-1001] Invoice for October"]
    assert d.to("bob@example.com") == [] and d.to("dave@example.com") == []

    d.as_("carol", "assign", "T-1000", "bob")
    d.as_("carol", "assign", "T-1001", "dave")  # dave's notify is "none"
    d.flush()
    [assigned] = d.to("bob@example.com")
    assert assigned["Subject"] == "[T-1000] Cannot log in"
    # Generated by an event, not an answer to a mail (RFC 3834), and no out-of-office reply answers it.
    assert (assigned["Auto-Submitted"], assigned["X-Auto-Response-Suppress"]) == ("auto-generated", "All")
    assert assigned["Reply-To"] == "support@example.com"
    text = body(assigned)
    assert "carol assigned T-1000 to you." in text
    assert "I cannot log in since yesterday." in text and "Assignee: bob" in text
    assert "inboxd reply T-1000" in text
    assert d.to("dave@example.com") == []

    # The customer writes again: bob hears of it, in the same thread, with the new text.
    d.mail(frm=f"Li Lei <{CUSTOMER}>", subject="Re: [T-1000] Cannot log in", body="It is still broken!\n")
    d.ingest()
    [_, again] = d.to("bob@example.com")
    assert "It is still broken!" in body(again)
    assert again["In-Reply-To"] == assigned["In-Reply-To"] and again["In-Reply-To"].startswith("<inboxd.T-1000.")
    assert again["Message-ID"] != assigned["Message-ID"]

    # bob answers the notification from his mail client: it reaches the customer via the relay.
    acks_before = len([m for m in d.to(CUSTOMER) if m["Auto-Submitted"]])
    d.mail(frm="Bob <bob@example.com>", subject=f"Re: {again['Subject']}", in_reply_to=again["Message-ID"],
           references=[again["In-Reply-To"], again["Message-ID"]],
           body="Please clear your browser cache and try again.\n\n"
                "On Mon, 23 Nov 2026 at 10:00, Support (inboxd) <support@example.com> wrote:\n"
                "> The customer wrote again on T-1000.\n> It is still broken!\n")
    # And a #note answer, which must stay internal.
    d.mail(frm="Bob <bob@example.com>", subject=f"Re: {again['Subject']}", in_reply_to=again["Message-ID"],
           body="#note I think their SSO is misconfigured\n")
    d.ingest()
    d.flush()
    relayed = d.to(CUSTOMER)[-1]
    assert relayed["From"].addresses[0].display_name == "Bob via Support"
    assert relayed["Subject"] == "Re: [T-1000] Cannot log in"
    assert body(relayed).strip() == "Please clear your browser cache and try again."
    everything = b"".join(e.data for e in d.sink.envelopes)
    assert b"SSO" not in everything
    t = d.show("T-1000")
    assert [m["kind"] for m in t["messages"]][-2:] == ["agent", "note"]
    # Notifications never go to the customer, and nothing bob wrote was acknowledged.
    for m in d.to(CUSTOMER):
        assert "Latest message from the customer" not in body(m)
    assert len([m for m in d.to(CUSTOMER) if m["Auto-Submitted"]]) == acks_before == 1
    assert len(d.to("bob@example.com")) == 2  # bob's own mail notifies nobody
    recipients = {r for e in d.unscheduled() for r in e.rcpt_tos}
    assert recipients == {CUSTOMER, "emma@example.de", "bob@example.com", "carol@example.com"}


# -- list, show, completion, mistakes --------------------------------------------------


def test_list_filters_default_view_and_show(filled):
    d = filled
    d.mail(frm="王芳 <wangfang@example.cn>", subject="发票抬头需要更改", body="请把发票抬头改成公司名称。\n")
    d.ingest()
    d.as_("bob", "take", "T-1001")
    d.as_("bob", "tag", "T-1001", "billing", "vip")
    d.as_("carol", "priority", "T-1002", "urgent")
    d.as_("carol", "escalate", "T-1002", "--to", "support", "--reason", "VIP customer")

    def ids(*args: str, agent: str = "alice") -> list[str]:
        return [t["id"] for t in d.json(agent, "list", *args)]

    assert ids("--sort", "id") == ["T-1000", "T-1001", "T-1002"]
    assert ids("--mine", agent="bob") == ["T-1001"]
    assert ids("--assignee", "bob") == ["T-1001"]
    assert ids("--unassigned", "--sort", "id") == ["T-1000", "T-1002"]
    assert ids("--tag", "vip") == ["T-1001"] and ids("--tag", "vi") == []
    assert ids("--team", "support") == ["T-1002"]
    assert ids("--priority", "urgent") == ["T-1002"]
    assert ids("--search", "发票") == ["T-1002"] and ids("--search", "invoice") == ["T-1001"]
    assert ids("--status", "open", "--sort", "id") == ["T-1001", "T-1002"]
    assert ids("--mailbox", "support", "--limit", "2", "--sort", "id") == ["T-1000", "T-1001"]
    assert ids("--sort", "priority")[0] == "T-1002"
    refused(d.as_("alice", "list", "--status", "done", check=False), "unknown status 'done'")
    refused(d.as_("alice", "list", "--mailbox", "nope", check=False), "unknown mailbox 'nope'")

    # The default view: the acting agent's open work first, with age and due columns.
    lines = d.as_("bob", "list").stdout.splitlines()
    assert lines[0].split()[:6] == ["ID", "STATUS", "PRI", "AGE", "ASSIGNEE", "DUE"]
    assert lines[1].split()[0] == "T-1001" and lines[-1] == "3 ticket(s)"

    text = d.as_(None, "show", "T-1001").stdout
    assert "assignee bob" in text and "tags billing, vip" in text
    assert "Where is my invoice?" in text and "History:" in text and "take" in text
    assert "due: first response" in text


def test_completion_offers_ticket_ids_from_the_store(filled, monkeypatch):
    from inboxd.cli import main as cli

    monkeypatch.setenv("INBOXD_CONFIG", str(filled.config))
    assert cli._complete_ids("T-100") == ["T-1001", "T-1000"]
    assert cli._complete_ids("T-1001") == ["T-1001"]
    assert cli._complete_agents("") == ["alice", "bob", "carol", "dave"]
    assert cli._complete_macros("pa") == ["password_reset"]


def test_every_mistake_is_one_line_and_a_non_zero_exit(filled):
    d = filled
    d.as_("alice", "take", "T-1000")
    cases = [
        (("alice", "take", "T-9999"), "no ticket T-9999"),
        (("alice", "show", "T-9999"), "no ticket T-9999"),
        (("alice", "history", "T-9999"), "no ticket T-9999"),
        (("alice", "reply", "T-9999", "-m", "x"), "no ticket T-9999"),
        (("alice", "reply", "T-9999"), "no ticket T-9999"),
        (("alice", "macro", "show", "thanks", "T-9999"), "no ticket T-9999"),
        (("alice", "take", "T-1000"), "already yours"),
        (("alice", "note", "T-1000", "-m", "  "), "needs text"),
        (("alice", "untag", "T-1000", "nope"), "no tag nope"),
        (("alice", "status", "T-1000", "new"), "cannot go from open to new"),
        (("alice", "macro", "apply", "T-1000", "nosuch"), "unknown macro"),
        (("bob", "close", "T-1000"), "supervisor or admin role"),
        (("alice", "merge", "T-1000", "T-9999"), "no ticket T-9999"),
        (("alice", "frobnicate", "T-1000"), "No such command"),
    ]
    for i, ((agent, *args), needle) in enumerate(cases):
        # A few as real processes: the exit status and stderr are the process's own.
        refused(d.as_(agent, *args, check=False, fork=i % 5 == 0), needle)


def test_tag_rule_escalates_system_crash_to_tier_two(tmp_path, dovecot, imap_user, smtp_sink):
    """The seed's example: tagging system_crash escalates to tier 2, once, with the rule recorded."""
    from tests.support import cli as run_cli
    from tests.support import show_json as show
    from tests.support import write_config as config_for

    rule = '\n[[rules]]\nname = "crash"\non = ["tag"]\nif = { tags_any = ["system_crash"] }\nthen = { tier = 2, escalate = true }\n'
    config = config_for(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                        extra=rule)
    from inboxd.testing.mail import make_mail as mail

    dovecot.append(imap_user, "INBOX", mail(subject="App crashes on start"))
    run_cli(config, "run", "--once")
    result = json.loads(run_cli(config, "--as", "alice", "tag", "T-1000", "system_crash", "--json").stdout)
    assert result["rules"] and result["rules"][0].startswith("rule crash:")
    t = show(config, "T-1000")
    assert (t["tier"], t["escalated"]) == (2, True)
    # Another tag later does not fire the rule again.
    run_cli(config, "--as", "alice", "tag", "T-1000", "android")
    assert show(config, "T-1000")["tier"] == 2
