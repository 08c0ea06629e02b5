"""`inboxd list --json` and `show ID --json` against the contract in design.md ("JSON shapes").

The store is real: mail from Dovecot filed by `inboxd run --once` (an
English ticket, a Chinese one in GBK, a Big5 one, a reply that threads),
acknowledgements sent to aiosmtpd, an agent's reply and an internal note
from the CLI.  The schema check is written out by hand, key by key.
"""

from __future__ import annotations

import json
import re

import pytest

from inboxd.store import models

from inboxd.desk import views as tickets
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import cli, list_json, show_json, write_config

ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
STATUSES = {"new", "open", "pending", "solved", "closed"}
PRIORITIES = {"low", "normal", "high", "urgent"}
DIRECTIONS = {"in", "out"}
KINDS = {"customer", "agent", "auto", "note", "bounce"}

# key -> a check of its value; "at least" these keys, per the contract.
TICKET = {
    "id": lambda v: isinstance(v, str) and v,
    "subject": lambda v: isinstance(v, str),
    "status": lambda v: v in STATUSES,
    "priority": lambda v: v in PRIORITIES,
    "mailbox": lambda v: isinstance(v, str) and v,
    "requester": lambda v: isinstance(v, str) and "@" in v,
    "assignee": lambda v: v is None or (isinstance(v, str) and v),
    "tags": lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
    "message_count": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "created_at": lambda v: _iso(v),
    "updated_at": lambda v: _iso(v),
    "first_response_at": lambda v: v is None or _iso(v),
}
SHOWN = {
    **TICKET,
    "messages": lambda v: isinstance(v, list),
    "events": lambda v: isinstance(v, list),
    "first_response_due": lambda v: v is None or _iso(v),
    "resolution_due": lambda v: v is None or _iso(v),
    "csat": lambda v: v is None or (isinstance(v, dict) and {"rating", "label", "comment", "at"} <= set(v)),
}
MESSAGE = {
    "message_id": lambda v: v is None or (isinstance(v, str) and v and not v.startswith("<")),
    "direction": lambda v: v in DIRECTIONS,
    "kind": lambda v: v in KINDS,
    "from": lambda v: isinstance(v, str),
    "to": lambda v: isinstance(v, list) and all(isinstance(a, str) and "@" in a for a in v),
    "date": lambda v: _iso(v),
    "subject": lambda v: isinstance(v, str),
    "text": lambda v: isinstance(v, str),
    "reply_text": lambda v: isinstance(v, str),
    "mailboxes": lambda v: isinstance(v, list) and all(isinstance(b, str) for b in v),
}
EVENT = {
    "at": lambda v: _iso(v),
    "actor": lambda v: isinstance(v, str) and v,
    "action": lambda v: isinstance(v, str) and v,
    "detail": lambda v: isinstance(v, dict),
}


def _iso(value) -> bool:
    return isinstance(value, str) and ISO_Z.fullmatch(value) is not None


def check(obj: dict, schema: dict, where: str) -> list[str]:
    """Every way `obj` breaks `schema`, as readable lines (empty when it conforms)."""
    problems = [f"{where}: missing key {k!r}" for k in schema if k not in obj]
    problems += [f"{where}: {k} = {obj[k]!r} is not valid" for k, ok in schema.items() if k in obj and not ok(obj[k])]
    return problems


def test_the_checker_rejects_what_breaks_the_contract():
    good = {"id": "T-1", "subject": "", "status": "new", "priority": "normal", "mailbox": "support",
            "requester": "a@example.com", "assignee": None, "tags": [], "message_count": 1,
            "created_at": "2026-11-23T03:04:16Z", "updated_at": "2026-11-23T03:04:16Z", "first_response_at": None}
    assert check(good, TICKET, "t") == []
    for key, bad in (("status", "done"), ("priority", "p1"), ("created_at", "2026-11-23 03:04:16"),
                     ("created_at", "2026-11-23T03:04:16+00:00"), ("tags", "vip"), ("message_count", True),
                     ("assignee", ""), ("first_response_at", "yesterday")):
        assert check({**good, key: bad}, TICKET, "t") == [f"t: {key} = {bad!r} is not valid"]
    assert check({k: v for k, v in good.items() if k != "requester"}, TICKET, "t") == ["t: missing key 'requester'"]


def test_the_read_side_enumerations_are_the_stores():
    assert tickets.STATUSES == models.STATUSES
    assert tickets.PRIORITIES == models.PRIORITIES
    assert set(models.DIRECTIONS) == DIRECTIONS and set(models.KINDS) == KINDS


@pytest.fixture
def store(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          smtp_port=smtp_sink.port, acks=True)
    first = make_message_id()
    dovecot.append(imap_user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Cannot log in",
                                                 message_id=first))
    dovecot.append(imap_user, "INBOX", make_mail(frm="王芳 <wangfang@example.cn>", subject="订单没有收到",
                                                 body="你好，我的订单还没有收到。\n", charset="gbk"))
    dovecot.append(imap_user, "INBOX", make_mail(frm="陳大文 <chan@example.hk>", subject="發票抬頭需要更改",
                                                 body="請把發票抬頭改成公司名稱。\n", charset="big5"))
    cli(config, "run", "--once")
    dovecot.append(imap_user, "INBOX", make_mail(
        frm="Li Lei <lilei@example.cn>", subject="Re: [T-1000] Cannot log in", in_reply_to=first,
        references=[first], body="Still broken.\n\nOn Mon, 23 Nov 2026, Li Lei wrote:\n> Cannot log in\n"))
    cli(config, "run", "--once")
    cli(config, "--as", "alice", "note", "T-1000", "-m", "Checked the logs: locked after 5 attempts.")
    cli(config, "--as", "alice", "reply", "T-1000", "-m", "Unlocked; please try again.")
    cli(config, "--as", "alice", "tag", "T-1001", "shipping", "中文")
    cli(config, "run", "--once")
    return config


def test_list_and_show_json_follow_the_contract(store):
    listed = list_json(store)
    assert sorted(t["id"] for t in listed) == ["T-1000", "T-1001", "T-1002"]
    problems = []
    for t in listed:
        problems += check(t, TICKET, f"list {t.get('id')}")
    assert problems == []
    by_id = {t["id"]: t for t in listed}
    assert by_id["T-1001"]["subject"] == "订单没有收到" and by_id["T-1001"]["tags"] == ["shipping", "中文"]
    assert by_id["T-1002"]["subject"] == "發票抬頭需要更改"
    assert by_id["T-1000"]["first_response_at"] is not None and by_id["T-1000"]["assignee"] == "alice"

    for ref, summary in by_id.items():
        shown = show_json(store, ref)
        problems += check(shown, SHOWN, f"show {ref}")
        # show is the list object plus the thread: the shared keys agree.
        problems += [f"show {ref}: {k} differs from list" for k in TICKET if shown.get(k) != summary[k]]
        for i, m in enumerate(shown["messages"]):
            problems += check(m, MESSAGE, f"show {ref} message {i}")
        for i, e in enumerate(shown["events"]):
            problems += check(e, EVENT, f"show {ref} event {i}")
        dates = [m["date"] for m in shown["messages"]]
        if dates != sorted(dates):
            problems.append(f"show {ref}: messages not in date order: {dates}")
        if shown["message_count"] != len(shown["messages"]):
            problems.append(f"show {ref}: message_count {shown['message_count']} != {len(shown['messages'])}")
    assert problems == []

    t = show_json(store, "T-1000")
    kinds = [(m["direction"], m["kind"]) for m in t["messages"]]
    assert sorted(kinds) == sorted([("in", "customer"), ("out", "auto"), ("in", "customer"), ("out", "note"),
                                    ("out", "agent")])
    reply = next(m for m in t["messages"] if m["kind"] == "customer" and "Still broken" in m["text"])
    assert reply["reply_text"].strip() == "Still broken." and "> Cannot log in" in reply["text"]
    assert reply["mailboxes"] == ["support"]
    agent = next(m for m in t["messages"] if m["kind"] == "agent")
    assert agent["to"] == ["lilei@example.cn"] and agent["from"] == "support@example.com"
    assert [e["action"] for e in t["events"]][:2] == ["created", "ack"]
    # list --json is one JSON array however it is laid out, and `--limit` cuts it.
    raw = cli(store, "list", "--json", "--limit", "2").stdout
    assert len(json.loads(raw)) == 2
    assert json.loads(cli(store, "list", "--json", "--status", "solved").stdout) == []
