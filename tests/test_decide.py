"""The pure stage of ingest: (raw mail, what the store knows, now) -> disposition.

No server and no database: the store is `Store`, a small in-memory
implementation of `inboxd.desk.decide.Lookup`, and each row of the table is
raw RFC 822 bytes, the facts that differ from the default store, and what
the disposition must say.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from inboxd.config import parse_settings
from inboxd.desk.decide import Desk, Done, Incoming, Quarantined, decide, joined_state
from inboxd.mail.message import parse_message
from inboxd.outbound.outbox import AckCounts, budget_key
from inboxd.store.lookup import TicketFacts

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
TOKEN = "abcdefghijklmnopqrst"
OLD_TOKEN = "bcdefghijklmnopqrstu"

CONFIG = """
[autoreply]
enabled = true
per_hour = 3

[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "imap.example.com"
username = "support"
sent_folder = "Sent"

[[agents]]
name = "alice"
email = "alice@example.com"
notify = "assigned"
[[agents]]
name = "bob"
email = "bob@example.com"
teams = ["billing"]
notify = "all"
[[agents]]
name = "erin"
email = "erin@example.com"
teams = ["billing"]
[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"

[[sla]]
name = "standard"
first_response = "4h"
resolution = "2d"
warn_before = "30m"
priority = ["normal"]

[[customer_groups]]
name = "vip"
members = ["ceo@bigcorp.example"]

[[teams]]
name = "billing"
agents = ["bob", "erin"]

[[rules]]
name = "vip"
if = { group = ["vip"] }
then = { priority = "urgent", tags = ["vip"], assign = "alice" }

[[rules]]
name = "invoices"
on = ["new"]
if = { subject = ["invoice", "发票"] }
then = { team = "billing", assign = "round-robin", tags = ["billing"] }

[[rules]]
name = "refunds"
on = ["new", "message"]
if = { subject = ["refund"] }
then = { team = "billing", assign = "least-loaded" }

[[rules]]
name = "quiet"
if = { from_domain = ["quiet.example"] }
then = { autoreply = false }

[[rules]]
name = "crash"
on = ["new", "message"]
if = { body = ["crash"] }
then = { escalate = true, tags = ["crash"] }

[csat]
enabled = true
"""


@pytest.fixture(scope="module")
def desk(tmp_path_factory) -> Desk:
    settings = parse_settings(tomllib.loads(CONFIG), tmp_path_factory.mktemp("decide") / "inboxd.toml")
    return Desk.of(settings, settings.policies)


# -- the store, in memory ---------------------------------------------------------------


def ticket(pk: int, status: str = "open", **kw) -> TicketFacts:
    kw.setdefault("created_at", NOW - timedelta(days=40))
    return TicketFacts(pk, f"T-{999 + pk}", status, **kw)


@dataclass
class Store:
    """What the store knows: tickets, which holds each Message-ID, surveys, the outbox's facts."""

    tickets: dict[int, TicketFacts] = field(default_factory=lambda: {
        1: ticket(1, "open"),
        2: ticket(2, "closed", closed_at=NOW - timedelta(days=3)),
        3: ticket(3, "closed", closed_at=NOW - timedelta(days=30), assignee="erin"),
        4: ticket(4, "pending", assignee="bob", team="billing"),
        5: ticket(5, "closed", closed_at=NOW - timedelta(days=1), assignee="erin", team="billing"),
        6: ticket(6, "new", priority="high", tags=("vip",)),
    })
    # Message-ID -> ticket (m1@customer.example is on T-1000, and so on).
    messages: dict[str, int] = field(default_factory=lambda: {f"m{pk}@customer.example": pk for pk in range(1, 7)})
    referencing: dict[str, set[int]] = field(default_factory=dict)
    surveys: dict[str, int] = field(default_factory=lambda: {TOKEN: 70, OLD_TOKEN: 71})
    survey_mail: dict[str, int] = field(default_factory=lambda: {"survey-70@example.com": 70,
                                                                "survey-72@example.com": 72})
    survey_ticket: dict[int, int] = field(default_factory=lambda: {70: 2, 71: 2, 72: 5})
    # Surveys sent before scores (their links carry positions, 1 = best).
    legacy_surveys: set[int] = field(default_factory=lambda: {71})
    open: dict[str, int] = field(default_factory=dict)
    last_assigned: dict[str | None, str] = field(default_factory=dict)
    sent: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "inboxd.ack.1@example.com": ("jane@customer.example",)})
    acks_sent: dict[str, int] = field(default_factory=dict)     # budget key -> in the last hour
    bouncing: set[str] = field(default_factory=set)

    def tickets_by_message_ids(self, ids):
        return {mid: self.messages[mid] for mid in ids if mid in self.messages}

    def ticket_by_ref(self, ref):
        return next((t.pk for t in self.tickets.values() if t.ref == ref), None)

    def tickets_referencing(self, mid):
        return self.referencing.get(mid, set())

    def tickets_sharing_refs(self, ids):
        return {}

    def ticket(self, pk):
        return self.tickets[pk]

    def tickets_to_join(self, pks):
        return {pk: self.tickets[pk] for pk in sorted(pks) if pk in self.tickets}

    def csat_by_token(self, token):
        return self.surveys.get(token)

    def csat_by_message_ids(self, ids):
        return next((self.survey_mail[mid] for mid in ids if mid in self.survey_mail), None)

    def csat_ticket(self, csat_id):
        return self.survey_ticket[csat_id]

    def csat_scored(self, csat_id):
        return csat_id not in self.legacy_surveys

    def open_counts(self, open_statuses):
        return dict(self.open)

    def last_rule_assignee(self, team):
        return self.last_assigned.get(team)

    def sent_to(self, message_id):
        return self.sent.get(message_id.strip("<>")) if message_id else None

    def ack_counts(self, address, now, *, count_domain):
        n = self.acks_sent.get(budget_key(address)[0], 0)
        return AckCounts(n, n, 0, 0)

    def bouncing_since(self, address, now, expiry):
        return now - timedelta(hours=1) if address in self.bouncing else None


# -- mail ------------------------------------------------------------------------------------


def mail(subject: str = "Printer on fire", *, frm: str | None = "Jane <jane@customer.example>",
         to: str = "support@example.com", mid: str = "new-1@customer.example", irt: str = "", refs: str = "",
         headers: str = "", body: str = "Hello, please help.\n") -> bytes:
    lines = [f"From: {frm}"] if frm else []
    lines += [f"To: {to}", f"Subject: {subject}", f"Message-ID: <{mid}>", "Date: Mon, 30 Nov 2026 09:00:00 +0000"]
    if irt:
        lines.append(f"In-Reply-To: <{irt}>")
    if refs:
        lines.append("References: " + " ".join(f"<{r}>" for r in refs.split()))
    if headers:
        lines += headers.strip().splitlines()
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


DSN = b"""From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r
To: support@example.com\r
Subject: Undelivered Mail Returned to Sender\r
Message-ID: <dsn-1@mx.customer.example>\r
Date: Mon, 30 Nov 2026 09:00:00 +0000\r
Auto-Submitted: auto-replied\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r
\r
--B\r
Content-Type: text/plain\r
\r
Your mail could not be delivered.\r
--B\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.customer.example\r
\r
Final-Recipient: rfc822; jane@customer.example\r
Action: failed\r
Status: 5.1.1\r
Diagnostic-Code: smtp; 550 5.1.1 no such user\r
--B\r
Content-Type: text/rfc822-headers\r
\r
From: support@example.com\r
To: jane@customer.example\r
Subject: [T-1000] Printer on fire\r
Message-ID: <inboxd.ack.1@example.com>\r
--B--\r
"""

# -- the table --------------------------------------------------------------------------------

# Each row: (name, raw mail, Incoming's place and time, changes to the default
# store, what the disposition must say: a dotted path into it -> the value;
# "reasons~" -> one of its reasons).
NEW = {"kind": "customer", "direction": "in", "ticket.pk": None, "ticket.status_after": "new"}

ROWS = [
    ("new ticket", mail(), {}, {},
     {**NEW, "ticket.subject": "Printer on fire", "ticket.requester": "jane@customer.example",
      "ack.send": True, "ack.template": "ack", "clock": True, "routing.matched": False, "notify": ()}),
    ("reply by In-Reply-To", mail("Re: Printer", irt="m1@customer.example"), {}, {},
     {"ticket.pk": 1, "ticket.reason": "In-Reply-To <m1@customer.example>", "ticket.status_before": "open",
      "ticket.status_after": "open", "ack": None}),
    ("reply by References, newest first", mail("Re: Printer", refs="m2@customer.example m1@customer.example"),
     {}, {}, {"ticket.pk": 1, "join.survivor.pk": 1, "join.others": (ticket(2, "closed"),)}),
    ("reply by the subject tag", mail("Re: [T-1003] Toner"), {}, {},
     {"ticket.pk": 4, "ticket.reason": "subject tag [T-1003]", "ticket.status_before": "pending",
      "ticket.status_after": "open", "notify": ("bob",)}),
    ("Chinese 回复: with the tag", mail("回复：[T-1000] 打印机"), {}, {},
     {"ticket.pk": 1, "ticket.status_after": "open"}),
    ("Chinese 答复: with the tag", mail("答复: [T-1003] 发票"), {}, {},
     {"ticket.pk": 4, "ticket.status_after": "open", "routing.assignee": None}),
    ("a subject alone joins nothing", mail("Re: Printer on fire"), {}, {}, {**NEW, "ack.send": True}),
    ("auto-reply: no acknowledgement", mail(headers="Auto-Submitted: auto-replied"), {}, {},
     {**NEW, "ack.send": False, "ack.rule": "auto_submitted"}),
    ("bulk mail: no acknowledgement", mail(headers="Precedence: bulk"), {}, {},
     {**NEW, "ack.send": False, "ack.rule": "precedence"}),
    ("mailing list: no acknowledgement", mail(headers="List-Id: <news.customer.example>"), {}, {},
     {**NEW, "ack.send": False, "ack.rule": "mailing_list"}),
    ("no-reply sender: no acknowledgement", mail(frm="Shop <no-reply@shop.example>"), {}, {},
     {**NEW, "ack.send": False, "ack.rule": "noreply_sender"}),
    ("our own looped mail", mail(frm="Support <support@example.com>"), {}, {},
     {**NEW, "ack.send": False, "ack.rule": "own_address"}),
    ("our own acknowledgement come back", mail("Re: [T-9999] We got your mail", frm="jane@customer.example",
                                               headers="X-Inboxd-Loop: inboxd; support@example.com"), {}, {},
     {**NEW, "ack.send": False, "ack.rule": "loop_header"}),
    ("our own mail come back: its Message-ID is ours", mail(mid="inboxd.x.7@example.com"), {}, {},
     {**NEW, "ack.send": False, "ack.rule": "own_message_id"}),
    ("a customer's answer to our acknowledgement is acknowledged", mail(irt="inboxd.x.7@example.com"), {}, {},
     {**NEW, "ack.send": True}),
    ("the budget is spent", mail(), {}, {"acks_sent": {"jane@customer.example": 3}},
     {**NEW, "ack.send": False, "ack.rule": "budget"}),
    ("the sender bounces", mail(), {}, {"bouncing": {"jane@customer.example"}},
     {**NEW, "ack.send": False, "ack.rule": "sender_bouncing"}),
    ("a bounce of our acknowledgement", DSN, {}, {},
     {"kind": "bounce", "ticket.pk": None, "bounce_marks.marked": ("jane@customer.example",),
      "bounce_marks.until": NOW + timedelta(days=30), "ack": None, "notify": (), "clock": False,
      "reasons~": "marks jane@customer.example as bouncing"}),
    ("history mail opens a closed ticket", mail(), {"history": True}, {},
     {**NEW, "ticket.status_after": "closed", "ticket.closed_at": NOW - timedelta(days=1), "ack": None,
      "clock": False, "notify": ()}),
    ("history mail on a ticket changes nothing", mail(irt="m2@customer.example"), {"history": True}, {},
     {"ticket.pk": 2, "ticket.status_before": "closed", "ticket.status_after": "closed", "clock": False}),
    ("reopen within reopen_window", mail(irt="m2@customer.example"), {}, {},
     {"ticket.pk": 2, "ticket.status_before": "closed", "ticket.status_after": "open", "ack": None,
      "reasons~": "status closed -> open"}),
    ("closed too long ago: a follow-up ticket", mail(irt="m3@customer.example"), {}, {},
     {**NEW, "ticket.follows.ref": "T-1002", "ticket.follows_reason": "In-Reply-To <m3@customer.example>",
      "ticket.reason": "follow-up to closed T-1002 (In-Reply-To <m3@customer.example>)", "ack.send": True,
      "reasons~": "follows up on T-1002: closed too long ago to reopen"}),
    ("an agent's answer is relayed", mail(frm="Alice <alice@example.com>", irt="m1@customer.example",
                                          body="Try turning it off.\n"), {}, {},
     {"kind": "agent", "direction": "out", "agent.name": "alice", "ticket.status_after": "pending",
      "relay.send": True, "reply_text": "Try turning it off.", "notify": ()}),
    ("an agent's empty answer is not relayed", mail(frm="alice@example.com", irt="m1@customer.example",
                                                    body="> quoted only\n"), {}, {},
     {"kind": "agent", "relay.send": False, "relay.reason": "the agent's mail has no new text",
      "reasons~": "not relayed: the agent's mail has no new text"}),
    ("an agent's #note", mail(frm="alice@example.com", irt="m1@customer.example", body="#note call back\n"),
     {}, {}, {"kind": "note", "direction": "in", "ticket.status_after": "open", "relay": None,
              "note_reason": "internal note by email"}),
    ("an agent writing about no ticket opens one", mail(frm="alice@example.com"), {}, {},
     {**NEW, "agent.name": "alice", "relay": None}),
    ("the team's Sent mail on a ticket", mail(frm="alice@example.com", irt="m1@customer.example"),
     {"folder": "Sent"}, {}, {"kind": "agent", "direction": "out", "relay": None, "ticket.status_after": "pending"}),
    ("a VIP: priority, tags, assignee", mail(frm="ceo@bigcorp.example"), {}, {},
     {**NEW, "routing.priority": "urgent", "routing.tags": ("vip",), "routing.assignee": "alice",
      "notify": ("alice",), "routing.reasons": ('rule vip: group "vip" matched ceo@bigcorp.example',)}),
    ("round-robin after bob", mail("Invoice 42"), {}, {"last_assigned": {"billing": "bob"}},
     {**NEW, "routing.team": "billing", "routing.assignee": "erin", "routing.tags": ("billing",)}),
    ("round-robin from the start", mail("发票 问题"), {}, {},
     {**NEW, "routing.team": "billing", "routing.assignee": "bob"}),
    ("least-loaded", mail("Refund please"), {}, {"open": {"bob": 3, "erin": 1}},
     {**NEW, "routing.assignee": "erin"}),
    ("least-loaded counts the ticket it reopens", mail("Re: refund", irt="m5@customer.example"), {},
     {"open": {"bob": 1, "erin": 1}},
     {"ticket.pk": 5, "ticket.status_after": "open", "routing.assignee": "bob"}),
    ("a rule suppresses the acknowledgement", mail(frm="x@quiet.example"), {}, {},
     {**NEW, "ack.send": False, "ack.rule": "routing"}),
    ("escalation on a ticket: tier up, tags kept", mail(irt="m6@customer.example", body="It crashed again"),
     {}, {}, {"ticket.pk": 6, "routing.tier": 2, "routing.escalate": True, "routing.tags": ("vip", "crash")}),
    ("survey answer by token", mail("Re: How did we do?", to=f"support+csat-{TOKEN}-5@example.com",
                                    body="Great, thanks\n"), {}, {},
     {"kind": "csat", "ticket.pk": 2, "csat.rating": 5, "csat.label": "Very satisfied",
      "csat.comment": "Great, thanks", "csat.low": False, "csat.followup": (), "ack": None}),
    ("low survey answer by reply", mail("Re: How did we do?", irt="survey-70@example.com", body="2 slow\n"), {}, {},
     {"kind": "csat", "ticket.pk": 2, "csat.rating": 2, "csat.comment": "slow", "csat.low": True,
      "csat.followup": ("carol",)}),
    ("a score with its unit by reply", mail("Re: How did we do?", irt="survey-70@example.com", body="4分，挺快的\n"),
     {}, {}, {"kind": "csat", "csat.rating": 4, "csat.label": "Satisfied", "csat.low": False}),
    ("a low answer in history is not followed up", mail(irt="survey-70@example.com", body="2\n"),
     {"history": True}, {}, {"kind": "csat", "csat.low": True, "csat.followup": ()}),
    ("an old survey's link carries its position", mail(to=f"support+csat-{OLD_TOKEN}-1@example.com", body=""),
     {}, {}, {"kind": "csat", "csat.rating": 5, "csat.low": False}),
    ("an old survey's bare digit is its position", mail(to=f"support+csat-{OLD_TOKEN}-4@example.com", body="4\n"),
     {}, {}, {"kind": "csat", "csat.rating": 2, "csat.low": True}),
    ("a survey reply without a rating is a comment; the closed ticket stays closed, the assignee is told",
     mail("Re: How did we do?", irt="survey-72@example.com", body="请问发票什么时候开？\n"), {}, {},
     {"kind": "csat", "ticket.pk": 5, "ticket.status_after": "closed", "csat.rating": None,
      "csat.comment": "请问发票什么时候开？", "csat.low": False, "csat.followup": ("erin",), "ack": None,
      "routing": None}),
    ("an unassigned ticket's survey comment goes to the supervisors",
     mail("Re: How did we do?", irt="survey-70@example.com", body="Thanks, that fixed it\n"), {}, {},
     {"kind": "csat", "ticket.pk": 2, "ticket.status_after": "closed", "csat.rating": None,
      "csat.followup": ("carol",)}),
    ("a survey comment from history tells nobody", mail(irt="survey-72@example.com", body="谢谢\n"),
     {"history": True}, {}, {"kind": "csat", "csat.rating": None, "csat.comment": "谢谢", "csat.followup": ()}),
    ("the survey token is unknown", mail(to="support+csat-zzzzzzzzzzzzzzzzzzzz-5@example.com"), {}, {},
     {**NEW}),
]


def resolve(obj, path: str):
    for part in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name, raw, place, facts, expected", ROWS, ids=[row[0] for row in ROWS])
def test_disposition(desk, name, raw, place, facts, expected):
    store = Store(**facts)
    msg = parse_message(raw)
    m = Incoming(msg, raw, place.get("mailbox", "support"), place.get("folder", "INBOX"),
                 at=NOW - timedelta(days=1) if place.get("history") else NOW, history=place.get("history", False),
                 key=msg.message_id)
    d = decide(m, store, desk, NOW)
    for path, want in expected.items():
        if path.endswith("~"):
            # One of the reasons, whatever the others say.
            assert want in resolve(d, path[:-1]), f"{name}: no reason {want!r} in {d.reasons}"
            continue
        got = resolve(d, path)
        if path == "join.others":
            got = tuple(o.pk for o in got)
            want = tuple(o.pk for o in want)
        assert got == want, f"{name}: {path} is {got!r}, expected {want!r} (reasons: {d.reasons})"
    assert d.reasons and all(isinstance(r, str) and r for r in d.reasons)


@pytest.mark.parametrize("name, raw, place, why", [
    ("Sent mail about no ticket", mail(frm="alice@example.com"), {"folder": "Sent"}, "Sent mail about no ticket"),
    ("an inboxd's automatic mail about no ticket", mail(headers="X-Inboxd-Loop: elsewhere"), {"folder": "Sent"},
     "automatic mail in the Sent folder about no ticket"),
])
def test_not_filed(desk, name, raw, place, why):
    msg = parse_message(raw)
    with pytest.raises(Done, match=why):
        decide(Incoming(msg, raw, "support", place["folder"], NOW, key=msg.message_id), Store(), desk, NOW)


def test_no_sender_is_quarantined(desk):
    # The parser refuses such mail unless it is the mail system's (an empty
    # Return-Path); deciding must refuse it too unless it is a bounce.
    raw = mail(frm=None, headers="Return-Path: <>")
    msg = parse_message(raw)
    with pytest.raises(Quarantined, match="no sender address"):
        decide(Incoming(msg, raw, "support", "INBOX", NOW, key=msg.message_id), Store(), desk, NOW)


def test_the_disposition_is_frozen(desk):
    raw = mail()
    msg = parse_message(raw)
    d = decide(Incoming(msg, raw, "support", "INBOX", NOW, key=msg.message_id), Store(), desk, NOW)
    with pytest.raises(AttributeError):
        d.kind = "agent"


def test_a_join_takes_the_most_active_status_and_highest_priority():
    parts = [ticket(1, "closed", closed_at=NOW, priority="low"), ticket(6, "open", priority="high", assignee="bob")]
    state = joined_state(parts)
    assert (state.status, state.priority, state.assignee, state.closed_at) == ("open", "high", "bob", None)


def test_a_join_of_new_and_pending_is_open():
    assert joined_state([ticket(1, "new"), ticket(4, "pending")]).status == "open"


def test_deciding_writes_nothing_and_is_repeatable(desk):
    """The same inputs give the same disposition: nothing in the store moved."""
    raw = mail("Refund", irt="m5@customer.example")
    msg = parse_message(raw)
    store = Store(open={"bob": 1, "erin": 1})
    m = Incoming(msg, raw, "support", "INBOX", NOW, key=msg.message_id)
    before = replace(store)
    assert decide(m, store, desk, NOW) == decide(m, store, desk, NOW)
    assert store == before

