"""Stored SLA due times equal the computed ones: after every kind of ticket change, after an upgrade's
backfill, and after a change of the SLA settings, on SQLite and PostgreSQL.

"Computed" is `slaclock.refresh` run for that one ticket in a transaction that is then rolled back
(the per-ticket path, read from the ticket's own rows); "stored" is what the workflow kept in step
in the change's own transaction, or what the scheduler's bulk refresh (`refresh_many`) wrote.
Tickets are seeded with Core inserts and changed through `Workflow` at fixed instants.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from inboxd.config import load_settings
from inboxd.desk import duties as duties_module
from inboxd.desk import slaclock
from inboxd.desk.duties import Duties
from inboxd.desk.workflow import Workflow
from inboxd.store.engine import create_store_engine, migrate, reading, writing
from inboxd.store.sql import t

# A Monday morning in Shanghai (01:00 UTC is 09:00 there).
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)

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

[[agents]]
name = "alice"
email = "alice@example.com"

[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"

[[calendars]]
name = "office"
timezone = "Asia/Shanghai"
holidays = "CN"
hours = {{ mon = "09:00-12:00,13:00-18:00", tue = "09:00-12:00,13:00-18:00", wed = "09:00-12:00,13:00-18:00", thu = "09:00-12:00,13:00-18:00", fri = "09:00-12:00,13:00-18:00" }}

[[sla]]
name = "std"
first_response = "4h"
next_response = "8h"
resolution = "{resolution}"
calendar = "office"
priority = ["low", "normal"]

[[sla]]
name = "fast"
first_response = "1h"
next_response = "2h"
resolution = "1d"
calendar = "office"
priority = ["high", "urgent"]

[scheduler]
digest_time = "23:59"
"""

DUES = (t.ticket.c.sla_policy, t.ticket.c.first_response_due, t.ticket.c.next_response_due,
        t.ticket.c.resolution_due)


def write_config(tmp_path: Path, url: str, resolution: str = "3d"):
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    path = tmp_path / f"inboxd-{resolution}.toml"
    path.write_text(CONFIG.format(url=url, pw=pw, resolution=resolution))
    return load_settings(path)


@pytest.fixture
def desk(store_url: str, tmp_path: Path):
    engine = create_store_engine(store_url)
    migrate(engine)
    yield engine, write_config(tmp_path, store_url)
    engine.dispose()


def seed(engine, ref: str, *, at: datetime, status: str = "new", priority: str = "normal",
         assignee: str | None = None, pending_since: datetime | None = None) -> int:
    """A ticket with one customer message whose due times were never computed (as after an upgrade)."""
    with writing(engine) as conn:
        pk = conn.execute(insert(t.ticket).values(
            ref=ref, subject=f"question {ref}", status=status, priority=priority, mailbox="support",
            requester="lilei@example.cn", requester_name="Li Lei", assignee=assignee, tags="[]", message_count=1,
            created_at=at, updated_at=at, version=1, sla_version=0,
            solved_at=at + timedelta(hours=5) if status in ("solved", "closed") else None,
            closed_at=at + timedelta(hours=5) if status == "closed" else None,
        ).returning(t.ticket.c.id)).scalar_one()
        conn.execute(insert(t.event).values(ticket_id=pk, at=at, actor="inboxd", action="created",
                                            detail=json.dumps({"mailbox": "support"})))
        if pending_since is not None:
            conn.execute(insert(t.event).values(
                ticket_id=pk, at=pending_since, actor="alice", action="status",
                detail=json.dumps({"changes": {"status": {"before": "open", "after": "pending"}}})))
        data = f"{ref}: hello".encode()
        digest = hashlib.sha256(data).hexdigest()
        conn.execute(insert(t.rawmessage).values(sha256=digest, size=len(data), data=data))
        conn.execute(insert(t.message).values(
            message_key=f"{ref}@example.cn", message_id=f"{ref}@example.cn", ticket_id=pk, direction="in",
            kind="customer", from_addr="lilei@example.cn", from_name="Li Lei", date=at, subject=f"question {ref}",
            text="hello", reply_text="hello", raw_sha256=digest, size=len(data), created_at=at))
    return pk


class _Undo(Exception):
    pass


def computed(engine, settings, pk: int, now: datetime) -> tuple:
    """The ticket's due times as the per-ticket path computes them now (nothing stored)."""
    found = None
    try:
        with writing(engine) as conn:
            slaclock.refresh(conn, pk, settings, settings.policies, now)
            found = tuple(conn.execute(select(*DUES).where(t.ticket.c.id == pk)).one())
            raise _Undo
    except _Undo:
        pass
    return found


def stored(engine, pk: int) -> tuple:
    with reading(engine) as conn:
        return tuple(conn.execute(select(*DUES).where(t.ticket.c.id == pk)).one())


def is_current(engine, pk: int) -> bool:
    with reading(engine) as conn:
        version, sla_version = conn.execute(select(t.ticket.c.version, t.ticket.c.sla_version)
                                            .where(t.ticket.c.id == pk)).one()
    return version == sla_version


def computed_once(engine, pk: int) -> bool:
    with reading(engine) as conn:
        return conn.execute(select(t.ticket.c.sla_version).where(t.ticket.c.id == pk)).scalar_one() > 0


def test_each_change_keeps_the_stored_due_times_in_step(desk):
    engine, settings = desk
    one = seed(engine, "T-1", at=T0)
    two = seed(engine, "T-2", at=T0 + timedelta(minutes=30))
    Duties(engine, settings).run_due(T0 + timedelta(hours=1))
    for pk in (one, two):
        assert stored(engine, pk) == computed(engine, settings, pk, T0)
        assert stored(engine, pk)[0] == "std" and stored(engine, pk)[1] is not None
    alice = Workflow(engine, settings, settings.agent("alice"))
    carol = Workflow(engine, settings, settings.agent("carol"))
    now = T0 + timedelta(hours=2)
    seen = []
    steps = [
        ("take", lambda: alice.take("T-1", now=now)),
        ("reply, which makes it pending", lambda: alice.reply("T-1", "We are on it.", now=now + timedelta(minutes=1))),
        ("open again", lambda: alice.set_status("T-1", "open", now=now + timedelta(hours=30))),
        ("priority", lambda: alice.priority("T-1", "urgent", now=now + timedelta(hours=31))),
        ("close", lambda: alice.close("T-1", survey=False, now=now + timedelta(hours=32))),
        ("reopen", lambda: alice.reopen("T-1", now=now + timedelta(hours=33))),
        ("merge", lambda: carol.merge("T-2", "T-1", now=now + timedelta(hours=34))),
    ]
    for name, change in steps:
        change()
        after = stored(engine, one)
        assert is_current(engine, one), name
        assert after == computed(engine, settings, one, now), name
        seen.append(after)
    # The changes did move the clock: the pause, the new policy and the reopening each show.
    assert seen[1][3] is None and seen[2][3] is not None     # pending stops the resolution clock
    assert seen[0][3] < seen[2][3]                           # back from pending: due later than before
    # (A ticket keeps the policy it was first given, as a rule's choice: a new priority does not move it.)
    assert seen[3][0] == "std"
    assert seen[4][3] is not None and seen[5][3] is not None
    assert len(set(seen)) >= 3


def test_the_first_pass_after_an_upgrade_computes_what_each_ticket_would(desk, monkeypatch):
    """Every ticket stale (sla_version behind), some pending, some solved: the bulk refresh stores exactly
    what the per-ticket path computes; unresolved tickets all in the first pass, resolved ones by turns."""
    engine, settings = desk
    monkeypatch.setattr(duties_module, "BACKFILL_RESOLVED", 2)
    pks = []
    for i in range(12):
        at = T0 + timedelta(hours=7 * i, minutes=13 * i)
        status = ("new", "open", "pending", "solved", "closed", "open")[i % 6]
        pks.append(seed(engine, f"T-{i + 1}", at=at, status=status, priority=("normal", "high", "low")[i % 3],
                        assignee="alice" if status != "new" else None,
                        pending_since=at + timedelta(hours=3) if status == "pending" else None))
    now = T0 + timedelta(days=5)
    expected = {pk: computed(engine, settings, pk, now) for pk in pks}
    resolved = [pk for i, pk in enumerate(pks) if i % 6 in (3, 4)]
    duties = Duties(engine, settings)
    duties.run_due(now)
    # (A breach's escalation then moves a ticket's version on, so "computed" is sla_version > 0 here.)
    for pk in pks:
        if pk not in resolved:
            assert computed_once(engine, pk) and stored(engine, pk) == expected[pk]
    assert sum(computed_once(engine, pk) for pk in resolved) == 2
    duties.run_due(now)
    duties.run_due(now)
    for pk in pks:
        assert is_current(engine, pk) and stored(engine, pk) == expected[pk]
    # A pending ticket's resolution clock is stopped: no due time while it waits.
    assert stored(engine, pks[2])[3] is None and stored(engine, pks[0])[3] is not None


def test_a_change_of_the_sla_settings_computes_every_ticket_again(desk, tmp_path, store_url):
    engine, settings = desk
    pks = [seed(engine, f"T-{i}", at=T0 + timedelta(hours=i)) for i in range(1, 4)]
    now = T0 + timedelta(hours=6)
    Duties(engine, settings).run_due(now)
    before = {pk: stored(engine, pk) for pk in pks}
    # The same settings again: nothing is stale, nothing recomputed.
    Duties(engine, settings).run_due(now)
    assert all(is_current(engine, pk) for pk in pks)
    longer = write_config(tmp_path, store_url, resolution="5d")
    with reading(engine) as conn:
        versions = dict(conn.execute(select(t.ticket.c.id, t.ticket.c.version)).all())
    Duties(engine, longer).run_due(now)
    for pk in pks:
        assert is_current(engine, pk)
        assert stored(engine, pk) == computed(engine, longer, pk, now)
        assert stored(engine, pk)[3] > before[pk][3]            # five days of business time, not three
        assert stored(engine, pk)[1] == before[pk][1]
    with reading(engine) as conn:
        assert dict(conn.execute(select(t.ticket.c.id, t.ticket.c.version)).all()) == versions
    # And back: the first settings are a change too (their digest was replaced, not kept).
    Duties(engine, settings).run_due(now)
    assert all(stored(engine, pk) == before[pk] for pk in pks)


def test_a_store_without_a_recorded_digest_only_records_it(desk):
    """Due times written before the digest was kept (say, by hand or by an older version) stay as they are."""
    engine, settings = desk
    pk = seed(engine, "T-1", at=T0)
    odd = T0 + timedelta(days=40)
    with writing(engine) as conn:
        conn.execute(update(t.ticket).where(t.ticket.c.id == pk).values(
            sla_policy="std", first_response_due=odd, sla_version=t.ticket.c.version))
    Duties(engine, settings).run_due(T0 + timedelta(hours=1))
    assert stored(engine, pk)[1] == odd
    with reading(engine) as conn:
        assert conn.execute(select(t.duty.c.key).where(t.duty.c.duty == "sla-settings")).scalars().all() == [
            slaclock.settings_digest(settings.policies, settings)]
