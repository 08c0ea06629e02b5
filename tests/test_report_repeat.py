"""The report's desk figures on a hand-built history: repeat complaints (投诉重复率), figures by custom field,
and time per status as a share (各环节处理时长占比).  Every expected number is worked out below, by hand.

The rows are written with SQLAlchemy Core in the shapes ingest and the workflow write (tests/test_reports.py's
CoreHistory), on SQLite and PostgreSQL.  Period: Mon 2026-11-16 00:00Z to Mon 2026-11-23 00:00Z; now is
Tue 2026-11-24 12:00Z.  Field 问题类型 has the choices 售后维修, 退换货, 咨询.

  A1 li     created 16 09:00 [hardware] 售后维修; taken 10:00 (open); solved 17 09:00.  Survey: 5, answered 17 12:00.
  A2 LiLei@Example.CN (li again) created 18 09:00, 售后维修; taken 10:00 (open), open at the end.
  B1 wang   created 16 12:00 [billing] 退换货; closed 18:00.  Survey: 2, answered 17 09:00.
  B2 wang   created 20 12:00, no field; new at the end.
  C1 zhao   created 19 09:00 [hardware] 咨询; solved 21 09:00.  Survey: 4, answered 21 12:00.
  C2 zhao   created 23 10:00 (after the period, before now).
  D1 sun    created 17 09:00 [hardware] 售后维修; solved 10:00.
  D2 sun    created 17 11:00, merged into D1 at 12:00 (the same conversation, closed by the merge).

Resolved in the period: A1 (17 09:00), B1 (16 18:00), C1 (21 09:00), D1 (17 10:00), D2 (17 12:00): customers
li, wang, zhao, sun.  With a 3-day window: li repeats (A2 at 18 09:00 <= 20 09:00), zhao repeats (C2 at 23 10:00
<= 24 09:00, counted though after the period), wang does not (B2 at 20 12:00 > 19 18:00), sun does not (D2 was
merged into D1; D1 was opened before D2 was resolved): 2 of 4.  With the default 7 days wang repeats too
(20 12:00 <= 23 18:00): 3 of 4.

Time per status inside [16 00:00, 23 00:00), hours: new A1 1 + A2 1 + B1 6 + B2 60 + C1 48 + D1 1 + D2 1 = 118;
open A1 23 + A2 110 = 133; pending 0; solved A1 135 + C1 39 + D1 134 = 308; of 559 handling hours.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from inboxd.cli.reports import report_csv, report_table
from inboxd.config import parse_settings
from inboxd.reports.breakdowns import Contact, repeated_tickets, status_shares
from inboxd.reports.metrics import compute_report, mail_variables
from inboxd.store.engine import open_store, reading, writing
from inboxd.store.sql import t
from tests.test_reports import CoreHistory

SINCE = datetime(2026, 11, 16, tzinfo=UTC)
UNTIL = datetime(2026, 11, 23, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
KIND = "问题类型"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def settings_for(tmp_path: Path, url: str, window: str | None):
    imap = {"host": "imap.example.com", "username": "u", "password_env": "X"}
    data = {
        "store": {"url": url},
        "mailboxes": [{"name": "support", "address": "support@example.com", "imap": imap}],
        "agents": [{"name": "alice", "email": "alice@example.com", "role": "supervisor"}],
        "fields": [{"name": KIND, "choices": ["售后维修", "退换货", "咨询"]}, {"name": "order"}],
        "reports": {"repeat_window": window} if window else {},
    }
    return parse_settings(data, tmp_path / "inboxd.toml")


def script(conn) -> None:
    h = CoreHistory(conn)

    def ticket(pk, requester, created, status, tags=(), value=None):
        h.ticket(pk, mailbox="support", created=created, status=status, tags=tags, requester=requester)
        if value is not None:
            conn.execute(t.ticket_field.insert().values(ticket_id=pk, name=KIND, value=value, set_at=created,
                                                        set_by="alice"))

    li, wang, zhao, sun = "lilei@example.cn", "wang@example.com", "zhao@example.com", "sun@example.com"
    ticket(1, li, at(16, 9), "solved", ["hardware"], "售后维修")
    h.cli(1, at(16, 10), "alice", "take", "new", "open")
    h.cli(1, at(17, 9), "alice", "status", "open", "solved")
    h.csat(1, at(17, 9), rating=5, label="非常满意", answered=at(17, 12))
    ticket(2, "LiLei@Example.CN", at(18, 9), "open", (), "售后维修")
    h.cli(2, at(18, 10), "alice", "take", "new", "open")
    ticket(3, wang, at(16, 12), "closed", ["billing"], "退换货")
    h.cli(3, at(16, 18), "alice", "close", "new", "closed")
    h.csat(3, at(16, 18), rating=2, label="不满意", answered=at(17, 9))
    ticket(4, wang, at(20, 12), "new")
    ticket(5, zhao, at(19, 9), "solved", ["hardware"], "咨询")
    h.cli(5, at(21, 9), "alice", "status", "new", "solved")
    h.csat(5, at(21, 9), rating=4, label="满意", answered=at(21, 12))
    ticket(6, zhao, at(23, 10), "new")
    ticket(7, sun, at(17, 9), "solved", ["hardware"], "售后维修")
    h.cli(7, at(17, 10), "alice", "status", "new", "solved")
    ticket(8, sun, at(17, 11), "closed")
    h.event(8, at(17, 12), "alice", "merge", {"into": "T-1007"})
    h.event(7, at(17, 12), "alice", "merge", {"from": "T-1008", "messages": 0})
    conn.execute(update(t.ticket).where(t.ticket.c.id == 8).values(merged_into=7))


@pytest.fixture
def store(store_url, tmp_path):
    engine = open_store(store_url)
    with writing(engine) as conn:
        script(conn)
    yield engine
    engine.dispose()


def report(engine, settings) -> dict:
    with reading(engine) as conn:
        return compute_report(conn, settings, since=SINCE, until=UNTIL, now=NOW, include_agents=False)


def test_repeat_complaints_with_a_three_day_window(store, store_url, tmp_path) -> None:
    r = report(store, settings_for(tmp_path, store_url, "3d"))
    assert r["tickets"]["resolved"] == 5
    assert r["repeat_complaints"] == {
        "window_days": 3.0, "customers": 4, "repeated": 2, "rate": 0.5,
        "by_field": {KIND: {"售后维修": {"customers": 2, "repeated": 1, "rate": 0.5},
                            "咨询": {"customers": 1, "repeated": 1, "rate": 1.0},
                            "退换货": {"customers": 1, "repeated": 0, "rate": 0.0}},
                     "order": {}},
        "by_tag": {"hardware": {"customers": 3, "repeated": 2, "rate": 0.6667},
                   "billing": {"customers": 1, "repeated": 0, "rate": 0.0}},
    }


def test_repeat_complaints_default_window_is_seven_days(store, store_url, tmp_path) -> None:
    rc = report(store, settings_for(tmp_path, store_url, None))["repeat_complaints"]
    assert (rc["window_days"], rc["customers"], rc["repeated"], rc["rate"]) == (7.0, 4, 3, 0.75)
    assert rc["by_tag"]["billing"] == {"customers": 1, "repeated": 1, "rate": 1.0}
    assert rc["by_field"][KIND]["退换货"] == {"customers": 1, "repeated": 1, "rate": 1.0}


def test_figures_by_field_and_time_per_status(store, store_url, tmp_path) -> None:
    r = report(store, settings_for(tmp_path, store_url, "3d"))
    # Created in the period: A1 A2 D1 售后维修, B1 退换货, C1 咨询 (B2, D2 have none; C2 is after the period).
    # Resolved: A1 D1, B1, C1.  Answers: A1 5 (top two), B1 2, C1 4 (top two).
    assert r["by_field"] == {
        KIND: {"售后维修": {"created": 3, "resolved": 2, "csat_responses": 1, "csat_score": 1.0},
               "退换货": {"created": 1, "resolved": 1, "csat_responses": 1, "csat_score": 0.0},
               "咨询": {"created": 1, "resolved": 1, "csat_responses": 1, "csat_score": 1.0}},
        "order": {},
    }
    # 118, 133, 0 and 308 of 559 hours.
    assert r["time_in_status_share"] == {"new": 0.2111, "open": 0.2379, "pending": 0.0, "solved": 0.551}
    # The hours themselves, as time_in_status has them.
    assert {k: r["time_in_status"][k] for k in ("new", "open", "pending", "solved")} == {
        "new": 118.0, "open": 133.0, "pending": 0.0, "solved": 308.0}


def test_the_new_sections_in_table_csv_and_mail(store, store_url, tmp_path) -> None:
    r = report(store, settings_for(tmp_path, store_url, "3d"))
    table = report_table(r)
    assert "repeat complaints (within 3.0 days): 2 of 4 customers (50.0%); tag hardware 2/3; tag billing 0/1" in table
    assert "by 问题类型: 售后维修 1/2 (50.0%), 咨询 1/1 (100.0%), 退换货 0/1 (0.0%)" in table
    assert "share of time in status: new 21.1%, open 23.8%, pending 0.0%, solved 55.1%" in table
    rows = {(s, k): v for s, k, v in csv.reader(io.StringIO(report_csv(r)))}
    assert rows[("repeat_complaints", "rate")] == "0.5"
    assert rows[("repeat_complaints", f"by_field.{KIND}.咨询.repeated")] == "1"
    assert rows[("by_field", f"{KIND}.售后维修.created")] == "3"
    assert rows[("time_in_status_share", "solved")] == "0.551"
    fmt = mail_variables(r, [], cids={})["fmt"]
    assert fmt["percent"]["repeat"] == "50.0%"
    assert fmt["repeat_by_field"][KIND] == {"售后维修": "50.0%", "咨询": "100.0%", "退换货": "0.0%"}
    assert fmt["status_share"]["open"] == "23.8%"
    assert fmt["field_csat"][KIND]["退换货"] == "0.0%"
    json.dumps(r, ensure_ascii=False)   # the JSON report stays plain data


def test_pure_rules_of_repeats_and_shares() -> None:
    contacts = [Contact(1, "a@x", at(16, 9), None), Contact(2, "a@x", at(16, 10), 1), Contact(3, "a@x", at(20, 9), None)]
    window = datetime(2026, 11, 3) - datetime(2026, 11, 1)
    # Ticket 2 was merged into 1: not a repeat; ticket 3 is exactly 2 days after 1's resolution: the window's
    # end counts.
    assert repeated_tickets({1: at(18, 9)}, {1: "a@x"}, contacts, window, NOW) == {1}
    assert repeated_tickets({1: at(18, 9)}, {1: "a@x"}, contacts[:2], window, NOW) == set()
    # Up to now only.
    assert repeated_tickets({1: at(18, 9)}, {1: "a@x"}, contacts, window, at(19, 0)) == set()
    # Another customer's ticket is not a repeat.
    assert repeated_tickets({1: at(18, 9)}, {1: "b@x"}, contacts, window, NOW) == set()
    assert status_shares([], SINCE, UNTIL) == {"new": None, "open": None, "pending": None, "solved": None}
    assert status_shares([[("closed", SINCE, UNTIL)]], SINCE, UNTIL)["solved"] is None
