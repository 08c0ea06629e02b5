"""Filing a batch in runs (inboxd.desk.ingest.Filer._run), on SQLite and PostgreSQL.

A batch is filed under one savepoint per run rather than one per message;
a message that fails undoes its run, which is filed again up to it, and is
then quarantined alone.  The batch's Message-IDs are looked up once
(`BatchFacts`), and the SLA clocks of a run are refreshed at its end.
These tests hold the result to what filing one message at a time gives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inboxd.config import load_settings
from inboxd.desk import slaclock
from inboxd.desk.ingest import Batch, Fetched, Filer
from inboxd.mail.message import MalformedMessage
from inboxd.store.engine import create_store_engine, migrate, reading, writing
from inboxd.store.sql import t
from inboxd.sync.worker import parse_one
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
enabled = false

[[mailboxes]]
name = "support"
address = "support@example.com"
history_before = "1970-01-01T00:00Z"
[mailboxes.imap]
host = "127.0.0.1"
username = "support"
password_file = "{secret}"

[[sla]]
name = "std"
first_response = "4h"
next_response = "8h"
resolution = "3d"
priority = ["low", "normal", "high", "urgent"]
""")
    return path


class Store:
    def __init__(self, tmp: Path, url: str):
        self.settings = load_settings(config(tmp, url))
        self.engine = create_store_engine(url)
        migrate(self.engine)
        self.filer = Filer(self.settings)
        self.uid = 0

    def file(self, raws: list[bytes], parsed: list | None = None, at: datetime = NOW):
        """One batch of `raws`, parsed ahead (as the worker does) unless `parsed` is given."""
        if parsed is None:
            parsed = [parse_one(raw, 1 << 20) for raw in raws]
        fetched = []
        for raw in raws:
            self.uid += 1
            fetched.append(Fetched(self.uid, raw, at))
        with writing(self.engine) as conn:
            return self.filer.file_batch(conn, Batch("support", "INBOX", 1, self.uid, fetched), at, parsed)

    def rows(self, stmt) -> list[tuple]:
        with reading(self.engine) as conn:
            return [tuple(row) for row in conn.execute(stmt)]


@pytest.fixture
def store(tmp_path, store_url):
    s = Store(tmp_path, store_url)
    yield s
    s.engine.dispose()


def test_a_failing_message_is_quarantined_alone_and_the_run_is_filed_once(store):
    raws = [mail(f"Question {i}", mid=f"q{i}@customer.example", frm=f"C{i} <c{i}@customer.example>")
            for i in range(6)]
    parsed = [parse_one(raw, 1 << 20) for raw in raws]
    # The fourth mail fails after its raw bytes were written (in the parse step).
    parsed[3] = MalformedMessage("unreadable for the test")
    result = store.file(raws, parsed)
    assert (result.filed, result.quarantined, result.new_tickets) == (5, 1, 5)
    # Every good mail once: one message, one sighting, one 'created' event each;
    # the ticket numbers have no gap, the undone run's numbers were used again.
    assert store.rows(select(t.ticket.c.ref, t.ticket.c.subject).order_by(t.ticket.c.id)) == [
        (f"T-{1000 + n}", f"Question {i}") for n, i in enumerate([0, 1, 2, 4, 5])]
    assert store.rows(select(func.count()).select_from(t.message)) == [(5,)]
    assert store.rows(select(func.count()).select_from(t.sighting)) == [(5,)]
    assert store.rows(select(t.event.c.action, func.count()).group_by(t.event.c.action)) == [("created", 5)]
    assert store.rows(select(t.quarantine.c.uid, t.quarantine.c.reason)) == [(4, "unreadable for the test")]
    # The next batch numbers on from there.
    store.file([mail("Later", mid="later@customer.example")])
    assert store.rows(select(t.ticket.c.ref).where(t.ticket.c.subject == "Later")) == [("T-1005",)]


def test_two_failing_messages_in_one_batch(store):
    raws = [mail(f"Question {i}", mid=f"q{i}@customer.example") for i in range(5)]
    parsed = [parse_one(raw, 1 << 20) for raw in raws]
    parsed[0] = MalformedMessage("first")
    parsed[4] = MalformedMessage("last")
    result = store.file(raws, parsed)
    assert (result.filed, result.quarantined) == (3, 2)
    assert store.rows(select(t.quarantine.c.uid).order_by(t.quarantine.c.uid)) == [(1,), (5,)]
    assert [ref for (ref,) in store.rows(select(t.ticket.c.ref).order_by(t.ticket.c.id))] == [
        "T-1000", "T-1001", "T-1002"]


def test_a_reply_filed_before_its_parent_in_the_same_batch_joins_it(store):
    """The parent asks the store who names it (the batch's lookup found nobody, but the
    reply before it in the batch does)."""
    reply = mail("Re: Printer on fire", mid="reply-1@customer.example", irt="parent-1@customer.example",
                 refs="parent-1@customer.example")
    parent = mail("Printer on fire", mid="parent-1@customer.example")
    store.file([reply, parent])
    assert store.rows(select(func.count()).select_from(t.ticket)) == [(1,)]
    assert store.rows(select(t.ticket.c.message_count)) == [(2,)]
    # And a copy of a mail in the same batch is one message with two sightings.
    again = mail("Other", mid="other-1@customer.example")
    result = store.file([again, again])
    assert (result.filed, result.duplicates) == (1, 1)
    assert store.rows(select(func.count()).select_from(t.sighting)) == [(4,)]


def test_the_clocks_left_to_the_end_of_the_run_are_the_ones_each_message_would_set(store):
    first = mail("Printer on fire", mid="p1@customer.example")
    store.file([first])
    later = NOW + timedelta(hours=1)
    raws = [mail("Re: Printer on fire", mid="p2@customer.example", irt="p1@customer.example"),
            mail("Another", mid="a1@customer.example"),
            mail("Re: Another", mid="a2@customer.example", irt="a1@customer.example")]
    store.file(raws, at=later)
    due = select(t.ticket.c.id, t.ticket.c.sla_policy, t.ticket.c.first_response_due, t.ticket.c.next_response_due,
                 t.ticket.c.resolution_due, t.ticket.c.sla_version, t.ticket.c.version).order_by(t.ticket.c.id)
    filed = store.rows(due)
    assert len(filed) == 2 and all(row[1] == "std" and row[2] is not None and row[5] == row[6] for row in filed)
    # Refreshing each ticket again, one at a time, changes nothing.
    with writing(store.engine) as conn:
        for pk, *_rest in filed:
            slaclock.refresh(conn, pk, store.settings, store.settings.policies, later)
    assert store.rows(due) == filed
