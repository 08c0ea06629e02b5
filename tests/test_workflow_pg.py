"""The agent workflow and the ticket views on both databases, PostgreSQL included.

Tickets are seeded with Core inserts (no ingest, no mail servers), then the
views (`list` and `show` as the contract's JSON shapes) and every kind of
workflow change run through `inboxd.desk.workflow.Workflow` at fixed
instants, once on SQLite and once on PostgreSQL (`store_url`).  Two agents
taking one ticket at the same moment on PostgreSQL is checked with a third
transaction holding the ticket until both are waiting for it: exactly one
wins and the other is refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text

from inboxd.config import load_settings
from inboxd.desk import views
from inboxd.desk.workflow import PermissionDenied, Workflow, WorkflowError
from inboxd.store import tickets as store
from inboxd.store.engine import create_store_engine, migrate, reading, writing
from inboxd.store.sql import t
from tests.support import wait_until

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

CONFIG = """
[store]
url = "{url}"
data_dir = "var"

[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "127.0.0.1"
username = "support"
password_file = "{pw}"

[[mailboxes]]
name = "billing"
address = "billing@example.com"
[mailboxes.imap]
host = "127.0.0.1"
username = "billing"
password_file = "{pw}"

[[agents]]
name = "alice"
email = "alice@example.com"
teams = ["support"]

[[agents]]
name = "bob"
email = "bob@example.com"
notify = "assigned"

[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"
teams = ["billing"]
"""


@pytest.fixture
def desk(store_url: str, tmp_path: Path):
    """(engine, settings) for a migrated, empty store of either kind."""
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    path = tmp_path / "inboxd.toml"
    path.write_text(CONFIG.format(url=store_url, pw=pw))
    engine = create_store_engine(store_url)
    migrate(engine)
    yield engine, load_settings(path)
    engine.dispose()


def seed(engine, ref: str, *, subject: str = "Cannot log in", status: str = "new", priority: str = "normal",
         mailbox: str = "support", assignee: str | None = None, tags: tuple[str, ...] = (), at: datetime = T0,
         messages: tuple[tuple[str, datetime | None], ...] = (("Hello, I cannot log in.", None),),
         seen_in: tuple[str, ...] = (), first_response_due: datetime | None = None) -> int:
    """A ticket with customer messages (text, Date header), each seen in the ticket's mailbox
    (and in `seen_in`); returns its pk."""
    with writing(engine) as conn:
        pk = conn.execute(insert(t.ticket).values(
            ref=ref, subject=subject, status=status, priority=priority, mailbox=mailbox,
            requester="lilei@example.cn", requester_name="Li Lei", assignee=assignee, tags=json.dumps(list(tags)),
            message_count=len(messages), created_at=at, updated_at=at, first_response_due=first_response_due,
        ).returning(t.ticket.c.id)).scalar_one()
        for i, (body, date) in enumerate(messages):
            data = f"{ref}:{i}:{body}".encode()
            digest = hashlib.sha256(data).hexdigest()
            conn.execute(insert(t.rawmessage).values(sha256=digest, size=len(data), data=data))
            mid = f"{ref.lower()}.{i}@example.cn"
            mpk = conn.execute(insert(t.message).values(
                message_key=mid, message_id=mid, ticket_id=pk, direction="in", kind="customer",
                from_addr="lilei@example.cn", from_name="Li Lei",
                to_addrs=json.dumps([{"name": "", "email": f"{mailbox}@example.com"}]), date=date, subject=subject,
                text=body, reply_text=body, raw_sha256=digest, size=len(data), created_at=at + timedelta(seconds=i),
            ).returning(t.message.c.id)).scalar_one()
            for uid, box in enumerate((mailbox, *seen_in), start=1):
                conn.execute(insert(t.sighting).values(message_pk=mpk, mailbox=box, folder="INBOX", uidvalidity=1,
                                                       uid=pk * 100 + i * 10 + uid, seen_at=at))
    return pk


def flow(desk, agent: str) -> Workflow:
    engine, settings = desk
    return Workflow(engine, settings, settings.agent(agent))


def listed(engine, **filters) -> list[dict]:
    with reading(engine) as conn:
        return views.list_tickets(conn, views.ListFilter(**filters))


def shown(engine, ref: str) -> dict:
    with reading(engine) as conn:
        return views.show_ticket(conn, ref)


def column(engine, ref: str, name: str):
    with reading(engine) as conn:
        return conn.execute(select(t.ticket.c[name]).where(t.ticket.c.ref == ref)).scalar_one()


# -- the views ----------------------------------------------------------------------------------------


def test_list_filters_sorts_and_shapes(desk):
    engine, _ = desk
    seed(engine, "T-1", subject="Invoice for October", priority="low", mailbox="billing", at=T0)
    seed(engine, "T-2", subject="订单 20481 还没有发货", priority="urgent", tags=("vip", "cn"),
         at=T0 + timedelta(hours=1), seen_in=("billing",))
    seed(engine, "T-3", subject="100% broken_thing", status="closed", assignee="alice", tags=("vip",),
         at=T0 + timedelta(hours=2), first_response_due=T0 + timedelta(hours=3))
    seed(engine, "T-4", subject="Password reset", status="open", assignee="alice", at=T0 + timedelta(hours=3),
         messages=(("the LINK expired", None),), first_response_due=T0 + timedelta(hours=4))

    rows = listed(engine)
    assert [r["id"] for r in rows] == ["T-4", "T-3", "T-2", "T-1"]
    t2 = rows[2]
    assert t2 == {
        "id": "T-2", "subject": "订单 20481 还没有发货", "status": "new", "priority": "urgent", "mailbox": "support",
        "mailboxes": ["billing", "support"], "requester": "lilei@example.cn", "requester_name": "Li Lei",
        "assignee": None, "tags": ["vip", "cn"], "message_count": 1, "created_at": "2026-11-23T10:00:00Z",
        "updated_at": "2026-11-23T10:00:00Z", "first_response_at": None, "team": None, "tier": 1,
        "escalated": False, "first_response_due": None, "resolution_due": None, "fields": {},
    }
    assert rows[0]["first_response_due"] == "2026-11-23T13:00:00Z"

    def ids(**f):
        return [r["id"] for r in listed(engine, **f)]

    assert ids(status=("new", "open")) == ["T-4", "T-2", "T-1"]
    # A ticket is in a mailbox it was opened in or where any of its mail was seen.
    assert ids(mailbox="billing") == ["T-2", "T-1"]
    assert ids(assignee="alice") == ["T-4", "T-3"]
    assert ids(unassigned=True) == ["T-2", "T-1"]
    assert ids(tag=("vip",)) == ["T-3", "T-2"]
    assert ids(tag=("vi",)) == []
    assert ids(priority=("urgent", "low")) == ["T-2", "T-1"]
    # LIKE's wildcards are literal; case is ignored (as SQLite's LIKE does), in subjects and bodies.
    assert ids(search="100%") == ["T-3"]
    assert ids(search="broken_t") == ["T-3"]
    assert ids(search="d_r") == []  # "Password reset" if "_" were a wildcard.
    assert ids(search="link EXPIRED") == ["T-4"]
    assert ids(sort="priority") == ["T-2", "T-4", "T-3", "T-1"]
    assert ids(sort="id") == ["T-1", "T-2", "T-3", "T-4"]
    assert ids(sort="created", limit=2) == ["T-4", "T-3"]
    assert ids(first_for="alice", status=("new", "open")) == ["T-4", "T-2", "T-1"]
    # With a limit, the agent's own tickets and the others are two queries; the order is the same.
    assert ids(first_for="alice", status=("new", "open"), limit=2) == ["T-4", "T-2"]
    assert ids(first_for="alice", status=("new", "open"), limit=1) == ["T-4"]
    assert ids(first_for="alice", sort="id", limit=3) == ["T-3", "T-4", "T-1"]
    assert ids(first_for="bob", sort="id", limit=3) == ["T-1", "T-2", "T-3"]
    # T-3's promise broke too, but it is closed.
    assert ids(overdue_at=T0 + timedelta(hours=5)) == ["T-4"]
    assert ids(overdue_at=T0 + timedelta(hours=3, minutes=30)) == []


def test_show_gives_the_thread_in_order_with_its_mailboxes(desk):
    engine, _ = desk
    # The second mail's Date header is earlier than the first's: the thread goes by Date.
    seed(engine, "T-1", messages=(("first", T0 + timedelta(minutes=5)), ("second", T0 + timedelta(minutes=1)),
                                  ("third, no Date", None)), seen_in=("billing",))
    t1 = shown(engine, "T-1")
    # Without a Date header, a mail takes its place by when the store learned of it (09:00:02).
    assert [m["text"] for m in t1["messages"]] == ["third, no Date", "second", "first"]
    assert t1["messages"][1] == {
        "message_id": "t-1.1@example.cn", "direction": "in", "kind": "customer", "from": "lilei@example.cn",
        "from_name": "Li Lei", "to": ["support@example.com"], "cc": [], "date": "2026-11-23T09:01:00Z",
        "subject": "Cannot log in", "text": "second", "reply_text": "second", "mailboxes": ["billing", "support"],
    }
    assert t1["messages"][0]["date"] == "2026-11-23T09:00:02Z"
    assert t1["mailboxes"] == ["billing", "support"]
    assert t1["events"] == [] and t1["csat"] is None and t1["merged_into"] is None
    with pytest.raises(views.NotFound):
        shown(engine, "T-404")


# -- the workflow -------------------------------------------------------------------------------------


def test_assignment_status_and_history(desk):
    engine, _ = desk
    seed(engine, "T-1")
    at = T0 + timedelta(hours=1)
    r = flow(desk, "alice").take("T-1", now=at)
    assert r == {"id": "T-1", "action": "take", "actor": "alice", "at": "2026-11-23T10:00:00Z",
                 "changes": {"status": {"before": "new", "after": "open"},
                             "assignee": {"before": None, "after": "alice"}}}
    with pytest.raises(WorkflowError, match="already yours"):
        flow(desk, "alice").take("T-1", now=at)
    with pytest.raises(PermissionDenied, match="taking T-1 from alice needs the supervisor"):
        flow(desk, "bob").take("T-1", now=at)
    with pytest.raises(PermissionDenied, match="assigned to alice"):
        flow(desk, "bob").set_status("T-1", "solved", now=at)
    # Alice hands it to Bob, who is notified (notify = "assigned").
    flow(desk, "alice").assign("T-1", "bob", now=at + timedelta(minutes=1))
    with reading(engine) as conn:
        note = conn.execute(select(t.outbox.c.kind, t.outbox.c.recipients)).all()
    assert [(k, json.loads(r)) for k, r in note] == [("notification", ["bob@example.com"])]

    solved_at = at + timedelta(minutes=2)
    flow(desk, "bob").set_status("T-1", "solved", now=solved_at)
    assert column(engine, "T-1", "solved_at") == solved_at
    with pytest.raises(WorkflowError, match="cannot go from solved to pending"):
        flow(desk, "bob").set_status("T-1", "pending", now=solved_at)
    closed_at = at + timedelta(minutes=3)
    flow(desk, "bob").close("T-1", now=closed_at)
    assert column(engine, "T-1", "closed_at") == closed_at
    flow(desk, "bob").reopen("T-1", now=at + timedelta(minutes=4))
    assert column(engine, "T-1", "closed_at") is None
    assert column(engine, "T-1", "updated_at") == at + timedelta(minutes=4)
    assert column(engine, "T-1", "version") == 6

    events = shown(engine, "T-1")["events"]
    assert [(e["actor"], e["action"]) for e in events] == [
        ("alice", "take"), ("alice", "assign"), ("bob", "status"), ("bob", "close"), ("bob", "reopen")]
    assert events[3] == {"at": "2026-11-23T10:03:00Z", "actor": "bob", "action": "close",
                         "detail": {"survey": True, "changes": {"status": {"before": "solved", "after": "closed"}}}}


def test_tags_priority_and_escalation(desk):
    engine, _ = desk
    seed(engine, "T-1", status="pending", assignee="alice")
    now = T0 + timedelta(hours=1)
    alice = flow(desk, "alice")
    alice.tag("T-1", ["billing", "vip", "billing"], now=now)
    with pytest.raises(WorkflowError, match="already has vip"):
        alice.tag("T-1", ["vip"], now=now)
    alice.untag("T-1", ["billing"], now=now)
    with pytest.raises(WorkflowError, match="has no tag nope"):
        alice.untag("T-1", ["nope"], now=now)
    alice.priority("T-1", "high", now=now)
    with pytest.raises(WorkflowError, match="unknown priority"):
        alice.priority("T-1", "asap", now=now)
    r = alice.escalate("T-1", "tier2", "needs a database fix", now=now)
    assert r["to"] == "tier2" and r["changes"]["tier"] == {"before": 1, "after": 2}
    (t1,) = listed(engine)
    assert (t1["tags"], t1["priority"], t1["tier"], t1["escalated"], t1["assignee"], t1["status"]) == (
        ["vip"], "high", 2, True, None, "open")
    assert listed(engine, tag=("vip",))[0]["id"] == "T-1"
    # Closing an escalated ticket waits for a supervisor's review.
    alice.take("T-1", now=now)
    with pytest.raises(PermissionDenied, match="supervisor's review"):
        alice.close("T-1", now=now)
    with pytest.raises(PermissionDenied):
        alice.approve("T-1", now=now)
    flow(desk, "carol").approve("T-1", now=now)
    alice.close("T-1", now=now)
    assert column(engine, "T-1", "escalated") is True
    assert column(engine, "T-1", "approved_by") == "carol"


def test_merge_moves_the_thread_and_points_the_old_ticket_on(desk):
    engine, _ = desk
    src = seed(engine, "T-1", tags=("a",), messages=(("one", None), ("two", None)))
    seed(engine, "T-2", tags=("b",), at=T0 + timedelta(hours=2))
    seed(engine, "T-3")
    now = T0 + timedelta(hours=1)  # Before T-2's last update: its updated_at stays.
    flow(desk, "carol").merge("T-3", "T-1", now=now)
    r = flow(desk, "carol").merge("T-1", "T-2", now=now)
    assert r == {"id": "T-1", "action": "merge", "actor": "carol", "at": "2026-11-23T10:00:00Z", "into": "T-2",
                 "messages": 3}
    t2 = shown(engine, "T-2")
    # In thread order: T-3's mail came in the same second as T-1's first, after it.
    assert [m["text"] for m in t2["messages"]] == ["one", "Hello, I cannot log in.", "two", "Hello, I cannot log in."]
    assert (t2["tags"], t2["message_count"], t2["updated_at"]) == (["b", "a"], 4, "2026-11-23T11:00:00Z")
    assert t2["events"][-1]["detail"] == {"from": "T-1", "messages": 3}
    t1 = shown(engine, "T-1")
    assert (t1["status"], t1["merged_into"], t1["message_count"], t1["messages"]) == ("closed", "T-2", 0, [])
    # What was merged into T-1 leads straight to T-2.
    assert shown(engine, "T-3")["merged_into"] == "T-2"
    with reading(engine) as conn:
        assert conn.execute(select(t.ticket.c.closed_at).where(t.ticket.c.id == src)).scalar_one() == now
    with pytest.raises(WorkflowError, match="T-1 was merged into T-2; act on T-2"):
        flow(desk, "carol").set_status("T-1", "open", now=now)
    with pytest.raises(WorkflowError, match="already merged"):
        flow(desk, "carol").merge("T-1", "T-2", now=now)
    with pytest.raises(WorkflowError, match="into itself"):
        flow(desk, "carol").merge("T-2", "T-2", now=now)


def test_note_and_reply_are_stored_and_the_reply_is_queued(desk):
    engine, _ = desk
    seed(engine, "T-1")
    now = T0 + timedelta(hours=1)
    flow(desk, "alice").note("T-1", "Checked the logs: locked after 5 attempts.", now=now)
    r = flow(desk, "alice").reply("T-1", "Your account is unlocked.", now=now + timedelta(minutes=1))
    with reading(engine) as conn:
        queued = conn.execute(select(t.outbox.c.kind, t.outbox.c.status, t.outbox.c.message_id,
                                     t.outbox.c.recipients)).all()
    assert [(k, s, m, json.loads(to)) for k, s, m, to in queued] == [
        ("reply", "queued", r["message_id"], ["lilei@example.cn"])]
    t1 = shown(engine, "T-1")
    assert [(m["kind"], m["direction"], m["text"]) for m in t1["messages"]] == [
        ("customer", "in", "Hello, I cannot log in."),
        ("note", "out", "Checked the logs: locked after 5 attempts."),
        ("agent", "out", "Your account is unlocked.")]
    # The reply answers the customer's mail and waits on them; it is the first response.
    assert (t1["status"], t1["assignee"], t1["first_response_at"], t1["message_count"]) == (
        "pending", "alice", "2026-11-23T10:01:00Z", 3)
    assert [e["action"] for e in t1["events"]] == ["note", "reply"]
    # A second reply is no first response.
    flow(desk, "alice").reply("T-1", "Anything else?", now=now + timedelta(minutes=2))
    assert shown(engine, "T-1")["first_response_at"] == "2026-11-23T10:01:00Z"


def test_quarantine_outbox_and_completion_reads(desk):
    engine, _ = desk
    seed(engine, "T-1", tags=("vip",))
    seed(engine, "T-2", status="closed")
    seed(engine, "X-3")
    flow(desk, "alice").reply("T-1", "Hello.", now=T0)
    with reading(engine) as conn:
        (o,) = views.list_outbox(conn, ("queued",))
        assert views.list_outbox(conn, ("sent",)) == []
        assert views.list_quarantine(conn) == []
        assert store.open_refs(conn, "T-") == ["T-1"]
        assert store.open_refs(conn, "t-") == ["T-1"]
        assert store.open_refs(conn, "T_") == []
        assert store.tag_sets(conn) == ['["vip"]']
    assert (o["kind"], o["ticket"], o["to"], o["created_at"], o["sent_at"]) == (
        "reply", "T-1", ["lilei@example.cn"], "2026-11-23T09:00:00Z", None)


# -- two agents at once --------------------------------------------------------------------------------


def test_two_agents_taking_one_ticket_at_once_one_wins(desk, store_url):
    engine, _ = desk
    seed(engine, "T-1")
    outcomes: dict[str, object] = {}

    def take(agent: str) -> None:
        try:
            outcomes[agent] = flow(desk, agent).take("T-1", now=T0)
        except WorkflowError as exc:
            outcomes[agent] = exc

    threads = [threading.Thread(target=take, args=(a,)) for a in ("alice", "bob")]
    if engine.dialect.name == "postgresql":
        # A third transaction holds the ticket until both takes wait for it, so they really race.
        with writing(engine) as holder:
            store.ticket_by_ref(holder, "T-1", lock=True)
            for th in threads:
                th.start()
            _wait_for_lock_waiters(engine, 2)
    else:
        for th in threads:
            th.start()
    for th in threads:
        th.join(60)
    winners = [a for a, r in outcomes.items() if isinstance(r, dict)]
    losers = [r for r in outcomes.values() if isinstance(r, WorkflowError)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    # The loser decided on the winner's result: the ticket is a colleague's now.
    assert f"taking T-1 from {winners[0]} needs the supervisor" in str(losers[0])
    assert column(engine, "T-1", "assignee") == winners[0]
    assert column(engine, "T-1", "version") == 2
    assert [e["action"] for e in shown(engine, "T-1")["events"]] == ["take"]


def _wait_for_lock_waiters(engine, n: int) -> None:
    """Until `n` sessions wait for a lock on the test's database."""

    def waiting() -> bool:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()")).scalar_one() >= n

    wait_until(waiting, what=f"{n} sessions waiting for the ticket's lock")
