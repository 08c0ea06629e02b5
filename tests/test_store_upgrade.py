"""A SQLite store written by the last main before round 2 (e9b6433) migrates and keeps every ticket.

tests/data/old-store-e9b6433.db was made by that commit's own code
(tests/data/make_old_store.py says how): 31 tickets from 36 mails in
English and Chinese, replies, a quarantined mail, acknowledgements, agent
replies, notes, tags, closes, surveys and two ratings.  Next to it,
old-store-e9b6433.json holds what that code's CLI showed for it.  Today's
code opens a copy (the migrations run), shows the same tickets, messages,
events, ratings and outgoing mail through the CLI, and files a new mail
under the next ticket number.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import text

from inboxd.store.engine import SCHEMA_HEAD
from inboxd.testing.mail import make_mail
from tests.support import cli, list_json, show_json, store_engine, write_config

DATA = Path(__file__).parent / "data"
OLD = json.loads((DATA / "old-store-e9b6433.json").read_text(encoding="utf-8"))
ALL_STATUSES = [arg for status in ("new", "open", "pending", "solved", "closed") for arg in ("--status", status)]
ALL_OUTBOX = [arg for status in ("queued", "sending", "sent", "failed") for arg in ("--status", status)]

# What each view must keep, field by field (newer code may add fields; none may change or go).
TICKET_FIELDS = ("id", "subject", "status", "priority", "mailbox", "mailboxes", "requester", "requester_name",
                 "assignee", "tags", "message_count", "created_at", "updated_at", "first_response_at", "team", "tier",
                 "escalated", "first_response_due", "resolution_due", "merged_into")
MESSAGE_FIELDS = ("message_id", "direction", "kind", "from", "from_name", "to", "cc", "date", "subject", "text",
                  "reply_text", "mailboxes")
EVENT_FIELDS = ("at", "actor", "action", "detail")
OUTBOX_FIELDS = ("id", "status", "kind", "ticket", "mailbox", "message_id", "to", "attempts", "last_error",
                 "created_at", "sent_at")


def _pick(record: dict, fields: tuple[str, ...]) -> dict:
    return {k: record.get(k, "<missing>") for k in fields}


def _as_score(record: dict | None) -> dict | None:
    """A rating as the old code showed it (1 = best) -> as a score (migration 0013: 6 - n, higher is better)."""
    if record is None or not isinstance(record.get("rating"), int):
        return record
    return {**record, "rating": 6 - record["rating"]}


def _old_event(event: dict) -> dict:
    if event["action"] in ("csat", "csat-followup"):
        return {**event, "detail": _as_score(event["detail"])}
    return event


def _counts(config: Path) -> dict[str, int]:
    engine = store_engine(config)
    try:
        with engine.connect() as conn:
            return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() for table in OLD["counts"]}
    finally:
        engine.dispose()


def _revision(config: Path) -> str:
    engine = store_engine(config)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def test_a_store_of_e9b6433_migrates_and_keeps_every_ticket(tmp_path, dovecot, mail_user_factory):
    support, billing = mail_user_factory(), mail_user_factory()
    store = tmp_path / "inboxd.db"
    shutil.copyfile(DATA / "old-store-e9b6433.db", store)
    store.chmod(0o600)
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": support}, {"name": "billing", "user": billing}],
                          url=f"sqlite:///{store}")
    assert OLD["revision"] != SCHEMA_HEAD

    # Every ticket, as the old code listed it (the first command migrates the store).
    tickets = json.loads(cli(config, "list", "--json", "--sort", "id", *ALL_STATUSES).stdout)
    assert _revision(config) == SCHEMA_HEAD
    assert [_pick(t, TICKET_FIELDS) for t in tickets] == [_pick(t, TICKET_FIELDS) for t in OLD["list"]]
    # Every row is still there: the migrations dropped nothing.
    assert _counts(config) == OLD["counts"]

    # Each ticket in full: its messages (Chinese text included), its history and its rating.
    for ref, old in OLD["show"].items():
        new = show_json(config, ref)
        assert _pick(new, TICKET_FIELDS) == _pick(old, TICKET_FIELDS), ref
        assert [_pick(m, MESSAGE_FIELDS) for m in new["messages"]] == [_pick(m, MESSAGE_FIELDS) for m in old["messages"]], ref
        assert [_pick(e, EVENT_FIELDS) for e in new["events"]] == \
            [_pick(_old_event(e), EVENT_FIELDS) for e in old["events"]], ref
        # Ratings became scores: the old 2 满意 is 4, the old 1 非常满意 is 5; label, comment and time kept.
        assert new["csat"] == _as_score(old["csat"]), ref
    assert sum(1 for t in OLD["show"].values() if t["csat"]) == 2
    assert any("处理得很快" == (t["csat"] or {}).get("comment") for t in OLD["show"].values())
    assert sorted(show_json(config, ref)["csat"]["rating"] for ref, t in OLD["show"].items() if t["csat"]) == [4, 5]

    # Every outgoing mail: acknowledgements, agents' replies, surveys.
    outbox = json.loads(cli(config, "outbox", "list", "--json", *ALL_OUTBOX).stdout)
    assert [_pick(o, OUTBOX_FIELDS) for o in outbox] == [_pick(o, OUTBOX_FIELDS) for o in OLD["outbox"]]
    assert len(outbox) == OLD["counts"]["outbox"]
    # The quarantined mail too.
    assert len(json.loads(cli(config, "quarantine", "list", "--json").stdout)) == OLD["counts"]["quarantine"] == 1

    # New mail gets the next number after the old ones.
    last = max(int(t["id"].split("-")[1]) for t in OLD["list"])
    dovecot.append(support, "INBOX", make_mail(frm="Zhao Min <zhaomin@example.cn>", subject="新的问题",
                                               body="你好，这是升级之后的第一封邮件。\n"))
    cli(config, "run", "--once")
    [new] = [t for t in list_json(config, "--sort", "id", *ALL_STATUSES) if t["subject"] == "新的问题"]
    assert new["id"] == f"T-{last + 1}"
