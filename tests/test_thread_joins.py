"""One conversation, one ticket, whatever order its mail arrives in.

Round 2, 4 of 8, part 1.  On mailing-list archives about 16% of the message
pairs that belong together ended up on different tickets: a reply filed
before its parent opened a ticket of its own and stayed there, and two
replies to a message that never reached the mailbox were never joined.
The store-level tests file mail through the real pipeline on a fresh store,
once SQLite and once PostgreSQL; the last one drives a real Dovecot and `inboxd run --once`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.store.engine import open_store, writing
from inboxd.desk.ingest import Batch, Fetched, Filer
from inboxd.testing.mail import make_mail, make_message_id
from inboxd.testing.threadcheck import offline_config
from tests.support import list_json, show_json, write_config

NOW = datetime.now(UTC).replace(microsecond=0)


class Desk:
    """A store and the Filer that fills it, one message per batch."""

    def __init__(self, tmp_path, url: str):
        config = offline_config(tmp_path)
        config.write_text(config.read_text().replace('url = "sqlite:///inboxd.db"', f'url = "{url}"', 1))
        self.settings = load_settings(config)
        assert self.settings.store.url == url
        self.engine = open_store(url)
        self.filer = Filer(self.settings)
        self.uids: dict[str, int] = {}

    def file(self, raw: bytes, folder: str = "INBOX", arrived: datetime | None = None,
             history_before: datetime | None = None) -> None:
        uid = self.uids[folder] = self.uids.get(folder, 0) + 1
        batch = Batch("support", folder, 1, uid, [Fetched(uid, raw, arrived or NOW)], history_before)
        with writing(self.engine) as conn:
            self.filer.file_batch(conn, batch, NOW)

    def rows(self, sql: str, **params) -> list[tuple]:
        """The rows of portable `sql` (:named parameters)."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]

    def ticket_of(self, message_id: str) -> str:
        [(ref,)] = self.rows("SELECT t.ref FROM message m JOIN ticket t ON t.id = m.ticket_id"
                             " WHERE m.message_id = :mid", mid=message_id.strip("<>"))
        return ref

    def events(self, ref: str, action: str) -> list[dict]:
        return [json.loads(d) for (d,) in self.rows(
            "SELECT e.detail FROM event e JOIN ticket t ON t.id = e.ticket_id WHERE t.ref = :ref"
            " AND e.action = :action ORDER BY e.id", ref=ref, action=action)]


@pytest.fixture
def desk(tmp_path, store_url):
    d = Desk(tmp_path, store_url)
    yield d
    d.engine.dispose()


def mail(mid: str, parent: str | None = None, refs: tuple[str, ...] = (), frm: str = "Ann <ann@example.org>",
         subject: str = "Printer", body: str = "Hello.\n") -> bytes:
    return make_mail(message_id=mid, in_reply_to=parent, references=refs, frm=frm, subject=subject, body=body)


def test_parent_filed_last_joins_the_tickets_of_its_reply_and_its_parent(desk):
    a, b, c = make_message_id("x.example"), make_message_id("x.example"), make_message_id("x.example")
    # c answers b and names only b (a truncated References); it comes first, from another folder.
    desk.file(mail(c, b, (b,), frm="Bob <bob@example.net>"), folder="Archive")
    desk.file(mail(a))
    assert desk.ticket_of(c) != desk.ticket_of(a)
    first, second = desk.ticket_of(c), desk.ticket_of(a)

    desk.file(mail(b, a, (a,), frm="Carol <carol@example.com>"), folder="Archive")
    assert desk.ticket_of(a) == desk.ticket_of(b) == desk.ticket_of(c) == first
    assert desk.rows("SELECT status, merged_into IS NOT NULL, message_count FROM ticket WHERE ref = :ref",
                     ref=second) == [("closed", True, 0)]
    assert desk.rows("SELECT message_count, merged_into FROM ticket WHERE ref = :ref", ref=first) == [(3, None)]
    [into] = desk.events(second, "merge")
    [absorbed] = desk.events(first, "merge")
    bare = b.strip("<>")
    assert into == {"into": first, "reason": f"thread joined by <{bare}>", "link": f"In-Reply-To <{a.strip('<>')}>"}
    assert absorbed["from"] == second and absorbed["messages"] == 1
    assert absorbed["reason"] == f"thread joined by <{bare}>"
    # The moved message keeps where it was seen.
    assert desk.rows("SELECT s.folder, s.uid FROM sighting s JOIN message m ON m.id = s.message_pk"
                     " WHERE m.message_id = :mid", mid=a.strip("<>")) == [("INBOX", 1)]


def test_siblings_of_a_ghost_parent_share_a_ticket(desk):
    ghost = make_message_id("list.example")
    s1, s2 = make_message_id("x.example"), make_message_id("x.example")
    desk.file(mail(s1, ghost, (ghost,), frm="Ann <ann@example.org>"))
    desk.file(mail(s2, ghost, (ghost,), frm="Bob <bob@example.net>"), folder="Archive")
    assert desk.ticket_of(s1) == desk.ticket_of(s2)
    assert desk.rows("SELECT count(*) FROM ticket") == [(1,)]


def test_joined_ticket_is_live_and_as_active_as_its_most_active_part(desk):
    ghost = make_message_id("list.example")
    old, new, joiner = (make_message_id("x.example") for _ in range(3))
    # A history ticket (closed, yesterday) and a live one, then a mail that belongs to both.
    desk.file(mail(old, ghost, (ghost,)), arrived=NOW - timedelta(days=1), history_before=NOW - timedelta(hours=1))
    desk.file(mail(new, subject="Printer again", frm="Bob <bob@example.net>"))
    history, live = desk.ticket_of(old), desk.ticket_of(new)
    assert desk.rows("SELECT status, history FROM ticket ORDER BY id") == [("closed", True), ("new", False)]
    desk.file(mail(joiner, new, (ghost, new)))
    assert desk.ticket_of(joiner) == desk.ticket_of(new) == history
    assert desk.rows("SELECT status, history, closed_at, message_count FROM ticket WHERE ref = :ref",
                     ref=history) == [("new", False, None, 3)]
    [event] = desk.events(history, "merge")
    assert (event["from"], event["status_before"], event["status_after"]) == (live, "closed", "new")


def test_a_ticket_closed_beyond_the_reopen_window_is_left_alone(desk):
    root, finished_reply, live, joiner, late = (make_message_id("x.example") for _ in range(5))
    long_ago = NOW - timedelta(days=60)
    desk.file(mail(root), arrived=long_ago, history_before=NOW - timedelta(days=30))
    desk.file(mail(finished_reply, root, (root,)), arrived=long_ago, history_before=NOW - timedelta(days=30))
    finished = desk.ticket_of(root)
    desk.file(mail(live, subject="Other printer", frm="Bob <bob@example.net>"))
    # Live mail that names both: it joins the live ticket; the finished one keeps its mail.
    desk.file(mail(joiner, live, (root, live)))
    assert desk.ticket_of(joiner) == desk.ticket_of(live) != finished
    assert desk.rows("SELECT status, merged_into, message_count FROM ticket WHERE ref = :ref", ref=finished) == [
        ("closed", None, 2)]
    assert desk.events(finished, "merge") == []
    # Live mail that names only the finished ticket's mail follows up on it, as before.
    desk.file(mail(late, finished_reply, (finished_reply,)))
    assert desk.ticket_of(late) not in (finished, desk.ticket_of(live))
    assert desk.events(desk.ticket_of(late), "created")[0]["follows"] == finished


def test_a_repeated_message_id_is_kept_and_threads_nothing_through_it(desk):
    reused, reply, other_reply = (make_message_id("x.example") for _ in range(3))
    ghost = make_message_id("list.example")
    desk.file(mail(reused, ghost, (ghost,), body="The printer is on fire.\n"))
    desk.file(mail(reply, reused, (ghost, reused)))
    # A different mail under the same id, on another conversation: its own ticket.
    desk.file(mail(reused, subject="Refund", frm="Bob <bob@example.net>", body="Please refund order 88.\n"))
    assert desk.rows("SELECT count(*) FROM message") == [(3,)]
    refs = {ref for (ref,) in desk.rows("SELECT ref FROM ticket")}
    assert len(refs) == 2
    # More of the first conversation does not pull the repeat in.
    desk.file(mail(other_reply, ghost, (ghost,)))
    assert desk.rows("SELECT count(*) FROM ticket WHERE merged_into IS NULL") == [(2,)]
    assert desk.rows("SELECT count(*) FROM event WHERE action = 'merge'") == [(0,)]


def test_free_text_in_reply_to_joins_nothing_but_its_id(desk):
    parent, one, two = (make_message_id("x.example") for _ in range(3))
    desk.file(mail(parent))
    for mid, frm in ((one, "Bob <bob@example.net>"), (two, "Cy <cy@example.com>")):
        raw = mail(mid, frm=frm, subject="Re: something").replace(
            b"Subject:", b"In-Reply-To: Your message of Tue, 3 Jan 2006 10:00\r\nSubject:", 1)
        desk.file(raw)
    assert len({desk.ticket_of(m) for m in (parent, one, two)}) == 3
    three = make_message_id("x.example")
    desk.file(mail(three, frm="Dee <dee@example.com>").replace(
        b"Subject:", b"In-Reply-To: Your message of Tue, 3 Jan 2006 10:00 " + parent.encode() + b"\r\nSubject:", 1))
    assert desk.ticket_of(three) == desk.ticket_of(parent)


def test_same_subject_never_joins_two_customers(desk):
    ids = [make_message_id("x.example") for _ in range(3)]
    desk.file(mail(ids[0], subject="Help", frm="Ann <ann@example.org>"))
    desk.file(mail(ids[1], subject="Re: Help", frm="Bob <bob@example.net>"))
    desk.file(mail(ids[2], subject="Help", frm="Ann <ann@example.org>"))
    assert len({desk.ticket_of(m) for m in ids}) == 3


def test_out_of_order_thread_across_two_folders_on_a_real_server(tmp_path, dovecot, imap_user):
    """Children first, the parent last, across INBOX and Archive, each step its own sync."""
    dovecot.create_folder(imap_user, "Archive")
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user,
                                               "folders": ["INBOX", "Archive"]}])
    root, answer, grandchild, sibling = (make_message_id("list.example") for _ in range(4))
    steps = [
        ("INBOX", mail(grandchild, answer, (answer,), frm="Cy <cy@example.com>", subject="Re: Printer")),
        ("Archive", mail(sibling, root, (root,), frm="Bob <bob@example.net>", subject="Re: Printer")),
        ("INBOX", mail(root, subject="Printer")),
        ("Archive", mail(answer, root, (root,), frm="Dee <dee@example.com>", subject="Re: Printer")),
    ]
    for folder, raw in steps:
        dovecot.append(imap_user, folder, raw)
        report = run_once(load_settings(config), workers=0)
        assert report.failed == [], report.statuses

    tickets = list_json(config)
    live = [t for t in tickets if t["message_count"]]
    assert len(live) == 1, tickets
    [ticket] = live
    shown = show_json(config, ticket["id"])
    assert sorted(m["message_id"] for m in shown["messages"]) == sorted(
        m.strip("<>") for m in (root, answer, grandchild, sibling))
    [merge] = [e for e in shown["events"] if e["action"] == "merge"]
    assert merge["detail"]["reason"] == f"thread joined by <{answer.strip('<>')}>"
    [merged] = [t for t in tickets if t["id"] != ticket["id"]]
    assert merged["status"] == "closed"
    assert show_json(config, merged["id"])["merged_into"] == ticket["id"]
