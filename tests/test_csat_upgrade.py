"""Migration 0013 on SQLite and PostgreSQL: a 0012 store's ratings (1 = best) become scores (5 = best).

The store is built at revision 0012 with the rows the code of that time
wrote (surveys rated 1..4 on the old default scale, one unanswered, and the
history's rating events), then brought to the head by `migrate`, as a
daemon does at start-up.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from inboxd.desk.views import show_ticket
from inboxd.store.engine import MIGRATIONS, create_store_engine, is_sqlite, migrate, reading
from inboxd.store.lookup import csat_scored

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)

TICKET = sa.table("ticket", *(sa.column(c) for c in (
    "id", "ref", "subject", "status", "priority", "mailbox", "requester", "requester_name", "tags", "message_count",
    "version")), sa.column("created_at", sa.DateTime), sa.column("updated_at", sa.DateTime))
CSAT = sa.table("csat", *(sa.column(c) for c in ("id", "ticket_id", "customer", "token", "message_id", "rating",
                                                 "label", "comment")),
                sa.column("sent_at", sa.DateTime), sa.column("answered_at", sa.DateTime))
EVENT = sa.table("event", *(sa.column(c) for c in ("ticket_id", "actor", "action", "detail")),
                 sa.column("at", sa.DateTime))
# (position rated on the old best-first scale, its label then); None: not answered.
OLD_RATINGS = {1: (1, "非常满意"), 2: (2, "满意"), 3: (3, "一般"), 4: (4, "不满意"), 5: (None, None)}


def _store_at_0012(url: str) -> sa.Engine:
    engine = create_store_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        if is_sqlite(engine):
            # As migrate() does: SQLite's table copies need the foreign keys off.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        conn.begin()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0012")
        for pk, (rating, label) in OLD_RATINGS.items():
            conn.execute(TICKET.insert().values(
                id=pk, ref=f"T-{999 + pk}", subject=f"问题 {pk}", status="closed", priority="normal",
                mailbox="support", requester=f"c{pk}@example.cn", requester_name="", tags="[]", message_count=1,
                version=1, created_at=NOW, updated_at=NOW))
            conn.execute(CSAT.insert().values(
                id=pk, ticket_id=pk, customer=f"c{pk}@example.cn", token=f"abcdefghijklmnopqrs{chr(96 + pk)}",
                message_id=f"survey-{pk}@example.com", rating=rating, label=label,
                comment="慢" if rating == 4 else None, sent_at=NOW, answered_at=NOW if rating else None))
            if rating is not None:
                detail = json.dumps({"rating": rating, "label": label, "comment": ""}, ensure_ascii=False)
                conn.execute(EVENT.insert().values(ticket_id=pk, actor="inboxd", action="csat", at=NOW, detail=detail))
            if rating == 4:
                conn.execute(EVENT.insert().values(ticket_id=pk, actor="inboxd", action="csat-followup", at=NOW,
                                                   detail=json.dumps({"rating": 4, "label": label, "task": "x"})))
        # Another event that happens to have a "rating" is left alone.
        conn.execute(EVENT.insert().values(ticket_id=1, actor="bob", action="note", at=NOW,
                                           detail=json.dumps({"rating": 1})))
        conn.commit()
        if is_sqlite(engine):
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
    return engine


def test_a_0012_store_gets_scores_in_surveys_history_and_show(store_url):
    engine = _store_at_0012(store_url)
    try:
        migrate(engine)
        with reading(engine) as conn:
            rows = conn.execute(sa.text("SELECT ticket_id, rating, label, comment FROM csat ORDER BY ticket_id")).all()
            assert [tuple(r) for r in rows] == [(1, 5, "非常满意", None), (2, 4, "满意", None), (3, 3, "一般", None),
                                                (4, 2, "不满意", "慢"), (5, None, None, None)]
            # The surveys already sent carry positions in their links: they are read as such.
            assert not any(csat_scored(conn, pk) for pk in OLD_RATINGS)
            events = conn.execute(sa.text("SELECT ticket_id, action, detail FROM event ORDER BY id")).all()
            ratings = [(pk, action, json.loads(detail)["rating"]) for pk, action, detail in events]
            assert ratings == [(1, "csat", 5), (2, "csat", 4), (3, "csat", 3), (4, "csat", 2),
                               (4, "csat-followup", 2), (1, "note", 1)]
            shown = show_ticket(conn, "T-1003")["csat"]
            assert (shown["rating"], shown["label"], shown["comment"]) == (2, "不满意", "慢")
    finally:
        engine.dispose()
