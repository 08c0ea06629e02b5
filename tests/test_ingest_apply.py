"""Decide, then apply, on SQLite and PostgreSQL: mail filed through the real
pipeline (`Filer.file_batch`, no server) writes what `decide` decided, and the
store's lookup (`FilingLookup`) gives deciding the facts the in-memory one of
tests/test_decide.py stands in for."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from inboxd.config import load_settings
from inboxd.desk.decide import Desk, Incoming, decide
from inboxd.desk.ingest import Batch, Fetched, Filer, FilingLookup
from inboxd.mail.message import parse_message
from inboxd.store.engine import create_store_engine, migrate, reading, writing
from inboxd.store.sql import t
from tests.test_decide import mail

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def config(tmp: Path, url: str) -> Path:
    secret = tmp / "imap-password"
    secret.write_text("unused\n")
    secret.chmod(0o600)
    path = tmp / "inboxd.toml"
    path.write_text(f"""
[store]
url = "{url}"
data_dir = "var"

[autoreply]
enabled = true

[[mailboxes]]
name = "support"
address = "support@example.com"
history_before = "1970-01-01T00:00Z"
[mailboxes.imap]
host = "127.0.0.1"
username = "support"
password_file = "{secret}"
sent_folder = "Sent"

[[agents]]
name = "alice"
email = "alice@example.com"
[[agents]]
name = "bob"
email = "bob@example.com"
[[agents]]
name = "erin"
email = "erin@example.com"

[[teams]]
name = "billing"
agents = ["bob", "erin"]

[[rules]]
name = "refunds"
on = ["new", "message"]
if = {{ subject = ["refund"] }}
then = {{ team = "billing", assign = "least-loaded" }}
""")
    return path


class Store:
    """A fresh store and the Filer that fills it, one message per batch."""

    def __init__(self, tmp: Path, url: str):
        self.settings = load_settings(config(tmp, url))
        self.engine = create_store_engine(url)
        migrate(self.engine)
        self.filer = Filer(self.settings)
        self.uid = 0

    def file(self, raw: bytes, folder: str = "INBOX", at: datetime = NOW):
        self.uid += 1
        with writing(self.engine) as conn:
            return self.filer.file_batch(conn, Batch("support", folder, 1, self.uid, [Fetched(self.uid, raw, at)]), at)

    def ticket(self, ref: str):
        with reading(self.engine) as conn:
            return conn.execute(select(t.ticket).where(t.ticket.c.ref == ref)).one()

    def actions(self, ref: str) -> list[tuple[str, dict]]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.event.c.action, t.event.c.detail).join(
                t.ticket, t.ticket.c.id == t.event.c.ticket_id).where(t.ticket.c.ref == ref).order_by(t.event.c.id))
            return [(action, json.loads(detail)) for action, detail in rows]

    def outbox_kinds(self) -> list[str]:
        with reading(self.engine) as conn:
            return list(conn.execute(select(t.outbox.c.kind).order_by(t.outbox.c.id)).scalars())


@pytest.fixture
def store(tmp_path, store_url):
    s = Store(tmp_path, store_url)
    yield s
    s.engine.dispose()


def test_a_conversation_is_applied_as_decided(store):
    store.file(mail(mid="q1@customer.example"))
    assert store.ticket("T-1000").status == "new"
    assert [a for a, _ in store.actions("T-1000")] == ["created", "ack"]
    # The agent answers from her own client: a relay, and the ticket waits on the customer.
    store.file(mail("Re: [T-1000] Printer on fire", frm="alice@example.com", mid="a1@example.com",
                    irt="q1@customer.example", body="Turn it off.\n"), at=NOW + timedelta(minutes=5))
    ticket = store.ticket("T-1000")
    assert (ticket.status, ticket.first_response_at) == ("pending", NOW + timedelta(minutes=5))
    # The customer writes again: open, and no second acknowledgement.
    store.file(mail("Re: [T-1000] Printer on fire", mid="q2@customer.example", irt="a1@example.com",
                    body="Still burning.\n"), at=NOW + timedelta(minutes=9))
    actions = store.actions("T-1000")
    assert [a for a, _ in actions] == ["created", "ack", "message", "relay", "message"]
    assert actions[-1][1] == {"reason": "In-Reply-To <a1@example.com>", "mailbox": "support",
                              "from": "jane@customer.example", "kind": "customer",
                              "status_before": "pending", "status_after": "open"}
    assert store.ticket("T-1000").status == "open"
    assert store.outbox_kinds() == ["ack", "relay"]


def test_an_automatic_mail_is_not_acknowledged_and_says_which_rule(store):
    store.file(mail(headers="Auto-Submitted: auto-replied"))
    assert store.actions("T-1000")[-1] == ("no-ack", {"rule": "auto_submitted",
                                                      "reason": 'Auto-Submitted is "auto-replied"'})
    assert store.outbox_kinds() == []


def test_least_loaded_counts_the_ticket_the_message_reopens(store):
    """The store's counts are read before the message reopens its ticket;
    deciding counts the reopened ticket as the old order of steps did."""
    store.file(mail("Refund 1", mid="r1@customer.example"))
    store.file(mail("Refund 2", mid="r2@customer.example", frm="kim@customer.example"))
    assert [store.ticket(ref).assignee for ref in ("T-1000", "T-1001")] == ["bob", "erin"]
    with writing(store.engine) as conn:
        conn.execute(update(t.ticket).where(t.ticket.c.ref == "T-1001")
                     .values(status="closed", closed_at=NOW - timedelta(days=1)))
    # bob has one open ticket, erin none; reopening T-1001 gives erin one: a tie, bob first.
    store.file(mail("Re: Refund 2", mid="r3@customer.example", irt="r2@customer.example",
                    frm="kim@customer.example"))
    ticket = store.ticket("T-1001")
    assert (ticket.status, ticket.assignee) == ("open", "bob")
    assert store.actions("T-1001")[-1] == ("rule-assign", {"assign": "bob", "team": "billing"})


def test_the_store_lookup_gives_deciding_its_facts(store):
    store.file(mail("Refund 1", mid="r1@customer.example"))
    store.file(mail("Other", mid="o1@customer.example", frm="kim@customer.example"))
    with writing(store.engine) as conn:
        lookup = FilingLookup(conn)
        first = lookup.ticket(1)
        assert (first.ref, first.status, first.assignee, first.team, first.tags) == ("T-1000", "open", "bob",
                                                                                      "billing", ())
        assert first.created_at == NOW
        assert set(lookup.tickets_to_join([1, 2, 99])) == {1, 2}
        assert lookup.open_counts(("new", "open", "pending")) == {"bob": 1}
        assert lookup.last_rule_assignee("billing") == "bob"
        assert lookup.last_rule_assignee(None) is None
        assert lookup.tickets_by_message_ids(["o1@customer.example"]) == {"o1@customer.example": 2}
        assert lookup.csat_by_token("abcdefghijklmnopqrst") is None
        assert lookup.ack_counts("jane@customer.example", NOW, count_domain=True).address_hour == 1
        assert lookup.bouncing_since("jane@customer.example", NOW, timedelta(days=30)) is None
        # A message that threads onto both tickets joins them; nothing is written by deciding.
        raw = mail("Re: both", mid="j1@customer.example", refs="r1@customer.example o1@customer.example")
        msg = parse_message(raw)
        d = decide(Incoming(msg, raw, "support", "INBOX", NOW, key=msg.message_id), lookup,
                   Desk.of(store.settings, store.settings.policies), NOW)
        assert (d.ticket.pk, [o.ref for o in d.join.others], d.join.state.assignee) == (1, ["T-1001"], "bob")
    assert store.ticket("T-1001").merged_into is None
