"""`inboxd customer EMAIL` and `inboxd list --requester EMAIL`: one customer's record, on both stores.

The tickets come from real mail filed from Dovecot; the surveys are rows
as the survey duty writes them (one answered, one not), put in through the
store's own tables, so the satisfaction history is a hand-built fact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from inboxd.store.sql import t
from inboxd.testing.mail import make_message_id
from tests.support import store_engine, write_config
from tests.test_workflow import AGENTS, Desk, refused


@pytest.fixture
def desk(tmp_path: Path, dovecot, imap_user, smtp_sink) -> Desk:
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          smtp_port=smtp_sink.port, extra=AGENTS + '\n[[fields]]\nname = "问题类型"\n')
    return Desk(config, dovecot, imap_user, smtp_sink)


def _survey(desk: Desk, ref: str, sent: datetime, rating: int | None = None, label: str | None = None,
            comment: str | None = None, answered: datetime | None = None) -> None:
    engine = store_engine(desk.config)
    try:
        with engine.begin() as conn:
            pk = conn.execute(select(t.ticket.c.id).where(t.ticket.c.ref == ref)).scalar_one()
            conn.execute(insert(t.csat).values(ticket_id=pk, customer="lilei@example.cn", token=make_message_id(),
                                               message_id=make_message_id(), sent_at=sent, rating=rating,
                                               label=label, comment=comment, answered_at=answered))
    finally:
        engine.dispose()


def test_customer_shows_tickets_newest_first_with_satisfaction(desk: Desk) -> None:
    desk.mail(frm="Li Lei <LiLei@Example.CN>", subject="屏幕坏了", message_id=make_message_id())
    desk.ingest()
    desk.mail(frm="Han Meimei <hanmeimei@example.cn>", subject="Invoice", message_id=make_message_id())
    desk.mail(frm="Li Lei <lilei@example.cn>", subject="又坏了", message_id=make_message_id())
    desk.ingest()
    refs = {t["subject"]: t["id"] for t in desk.json(None, "list")}
    first, second = refs["屏幕坏了"], refs["又坏了"]
    desk.as_("alice", "set", first, "问题类型", "售后维修")
    _survey(desk, first, datetime(2026, 11, 20, 9, 0, tzinfo=UTC), 5, "非常满意", "很好，谢谢",
            datetime(2026, 11, 20, 10, 30, tzinfo=UTC))
    _survey(desk, second, datetime(2026, 11, 25, 9, 0, tzinfo=UTC))

    record = desk.json(None, "customer", "LILEI@example.cn")
    assert record["email"] == "lilei@example.cn"
    assert record["name"] == "Li Lei"
    assert [t["id"] for t in record["tickets"]] == [second, first]
    # Each ticket is the `list --json` object, custom fields included.
    assert record["tickets"] == desk.json(None, "list", "--requester", "lilei@EXAMPLE.cn", "--sort", "created")
    assert record["tickets"][1]["fields"] == {"问题类型": "售后维修"}
    assert record["csat"] == [
        {"ticket": second, "rating": None, "label": None, "comment": None, "at": None,
         "sent_at": "2026-11-25T09:00:00Z"},
        {"ticket": first, "rating": 5, "label": "非常满意", "comment": "很好，谢谢", "at": "2026-11-20T10:30:00Z",
         "sent_at": "2026-11-20T09:00:00Z"},
    ]
    assert record["summary"] == {"tickets": 2, "open": 2, "surveys": 2, "rated": 1, "average_rating": 5.0}

    text = desk.as_("alice", "customer", "lilei@example.cn").stdout
    lines = text.splitlines()
    assert lines[0] == "Li Lei <lilei@example.cn>"
    assert "2 ticket(s), 2 open; 1 of 2 survey(s) answered, average rating 5.0" in lines[1]
    assert lines.index(next(x for x in lines if x.startswith(second))) < lines.index(
        next(x for x in lines if x.startswith(first)))
    assert "[问题类型=售后维修]" in text
    assert f"{first}" in text and "5 非常满意" in text and "很好，谢谢" in text and "no answer" in text


def test_unknown_customer(desk: Desk) -> None:
    desk.ingest()
    assert desk.json(None, "customer", "nobody@example.org")["tickets"] == []
    refused(desk.as_("alice", "customer", "nobody@example.org", check=False), "no tickets from nobody@example.org")
    assert desk.json(None, "list", "--requester", "nobody@example.org") == []
