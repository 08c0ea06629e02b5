"""Reports, export, status, audit and quarantine on PostgreSQL: the same figures as on SQLite.

The store is filled through SQLAlchemy Core with the scripted history of
tests/test_reports.py (whose figures were worked out by hand; `CoreHistory`), plus the
folder, outbox, lease and quarantine rows `inboxd status` and `inboxd
quarantine` read.  Each test runs on both databases (the `store_url`
fixture), and one builds both stores side by side and compares every output
whole.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from inboxd.cli.reports import export_command, report_command
from inboxd.desk import quarantine
from inboxd.desk.views import list_quarantine
from inboxd.reports import export
from inboxd.reports.audit import compare
from inboxd.reports.metrics import compute_report, csat_trend
from inboxd.reports.status import read_status
from inboxd.store import health
from inboxd.store import quarantine as quarantine_rows
from inboxd.store.engine import create_store_engine, migrate, reading, writing
from inboxd.store.sql import t
from tests.test_reports import NOW, SINCE, UNTIL, CoreHistory, at, make_settings, script

BIG_UID = 2**32 - 1


def seed(conn: sa.Connection) -> None:
    h = CoreHistory(conn)
    script(h)

    # What `inboxd status` and `inboxd audit` read.  UIDs as large as IMAP allows.
    conn.execute(t.checkpoint.insert().values(mailbox="support", folder="INBOX", uidvalidity=BIG_UID,
                                              last_uid=BIG_UID - 1, synced_at=at(24, 11, 59),
                                              history_before=at(1, 0)))
    # (Rows of one executemany name the same columns: the first row's decide which are written.)
    conn.execute(t.folderstate.insert(), [
        {"mailbox": "support", "folder": "INBOX", "ok": True, "error": "", "last_ok_at": at(24, 11, 59),
         "failing_since": None, "owner": "web1:17"},
        {"mailbox": "billing", "folder": "INBOX", "ok": False, "error": "LOGIN failed", "last_ok_at": None,
         "failing_since": at(24, 11, 30), "owner": "web1:17"}])
    conn.execute(t.lease.insert().values(mailbox="support", folder="INBOX", holder="web1:17",
                                         expires_at=NOW + timedelta(seconds=20)))
    conn.execute(t.outbox.insert(), [
        {"ticket_id": 1, "mailbox": "support", "kind": "ack", "message_id": f"o{i}@x", "sender": "s@x",
         "data": b"", "status": status, "next_attempt_at": at(24, 10), "created_at": at(24, 9 + i)}
        for i, status in enumerate(("queued", "queued", "sending", "failed", "sent"))])
    for uid in (BIG_UID - 3, BIG_UID - 2):
        conn.execute(t.sighting.insert().values(message_pk=uid - BIG_UID + 4, mailbox="support", folder="INBOX",
                                                uidvalidity=BIG_UID, uid=uid, seen_at=at(24, 11)))
    conn.execute(t.skipped.insert().values(mailbox="support", folder="INBOX", uidvalidity=BIG_UID,
                                           uid=BIG_UID - 5, reason="history (skip)", at=at(24, 11)))
    # Quarantine: one mail whose bytes are in the store, one kept in a file (over max_message_bytes).
    broken = b"From: x@example.org\r\nSubject: broken\r\nMessage-ID: <q1@x>\r\n\r\n\x00\xff body\r\n"
    conn.execute(t.quarantine.insert(), [
        {"mailbox": "support", "folder": "INBOX", "uidvalidity": BIG_UID, "uid": BIG_UID - 1, "message_id": "q1@x",
         "reason": "parse error: boom", "raw_sha256": h.raw(broken), "raw_path": None, "at": at(24, 11, 0),
         "arrived_at": at(24, 10, 59, )},
        {"mailbox": "support", "folder": "INBOX", "uidvalidity": BIG_UID, "uid": BIG_UID - 4, "message_id": "q2@x",
         "reason": "larger than max_message_bytes", "raw_sha256": None, "raw_path": f"oversize/{BIG_SHA}.eml",
         "at": at(24, 11, 1), "arrived_at": None}])


BIG = b"From: big@example.org\r\nSubject: huge\r\nMessage-ID: <q2@x>\r\n\r\n" + b"x" * 200_000 + b"\r\n"
BIG_SHA = hashlib.sha256(BIG).hexdigest()


def open_seeded(url: str, tmp: Path):
    """(settings, engine) of a new store at `url` holding the seed; the oversize file under data_dir."""
    settings = make_settings(tmp)
    # The file's mail (BIG) is over the limit, so its retry does not file it.
    settings = replace(settings, store=replace(settings.store, max_message_bytes=100_000))
    engine = create_store_engine(url)
    migrate(engine)
    with writing(engine) as conn:
        seed(conn)
    spool = settings.store.data_dir / "oversize"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / f"{BIG_SHA}.eml").write_bytes(BIG)
    return settings, engine


@pytest.fixture
def seeded(store_url, tmp_path):
    settings, engine = open_seeded(store_url, tmp_path)
    yield settings, engine
    engine.dispose()


def outputs(settings, engine) -> dict:
    """Everything these commands show, as text or plain values."""
    out = {}
    with reading(engine) as conn:
        out["report"] = compute_report(conn, settings, since=SINCE, until=UNTIL, now=NOW, include_agents=True)
        out["report_scoped"] = compute_report(conn, settings, since=SINCE, until=UNTIL, now=NOW, mailbox="support",
                                              team="tier2", include_agents=False)
        out["trend"] = csat_trend(conn, settings, until=UNTIL)
        out["status"] = read_status(conn, settings, NOW)
        out["audit"] = compare(conn, "support", "INBOX", (BIG_UID, list(range(BIG_UID - 6, BIG_UID + 1))))
        out["quarantine"] = list_quarantine(conn)
        out["shown"] = [quarantine.load(conn, q["id"], settings.store.data_dir).describe()
                        for q in out["quarantine"]]
    carol, dave = settings.agent("carol"), settings.agent("dave")
    for fmt in ("json", "csv"):
        out[f"export_{fmt}"] = export_command(fmt=fmt, since=None, until=None, full=False, settings=settings,
                                              engine=engine, actor=carol)
        out[f"export_full_{fmt}"] = export_command(fmt=fmt, since="2026-11-17", until="2026-11-20", full=True,
                                                   settings=settings, engine=engine, actor=dave)
        out[f"report_{fmt}"] = report_command(since="2026-11-16", until="2026-11-24", mailbox=None, team=None,
                                              agent=None, fmt=fmt, per_agent=None, settings=settings, engine=engine,
                                              actor=carol, now=NOW)
    return out


def test_report_figures(seeded) -> None:
    settings, engine = seeded
    with reading(engine) as conn:
        r = compute_report(conn, settings, since=SINCE, until=UNTIL, now=NOW, include_agents=True)
        trend = csat_trend(conn, settings, until=UNTIL)
    # The figures tests/test_reports.py worked out by hand.
    assert r["tickets"] == {"created": 4, "solved": 2, "closed": 2, "resolved": 3, "reopened": 1,
                            "backlog": 2, "backlog_ratio": 2.0}
    assert r["resolution"] == {"count": 3, "median": 10800.0, "mean": 65400.0, "p90": 183600.0}
    assert r["sla"]["first_response"] == {"met": 1, "breached": 2, "pending": 0, "attainment": 0.3333}
    assert {k: r["csat"][k] for k in ("sent", "responses", "response_rate", "score", "mean", "distribution")} == {
        "sent": 3, "responses": 2, "response_rate": 0.6667, "score": 0.5, "mean": 4.0,
        "distribution": {"5": {"label": "Very satisfied", "count": 1}, "4": {"label": "Satisfied", "count": 0},
                         "3": {"label": "Neutral", "count": 1}, "2": {"label": "Unsatisfied", "count": 0}}}
    assert [d["responses"] for d in r["csat"]["trend"]] == [0, 0, 0, 0, 1, 0, 0, 1]
    assert r["agents"]["bob"]["csat"] == {"responses": 1, "score": 1.0, "mean": 5.0}
    assert r["time_in_status"] == {"new": 67.0, "open": 135.5, "pending": 214.0, "solved": 60.0, "closed": 193.5}
    assert [d["backlog"] for d in r["daily"]] == [1, 2, 2, 2, 3, 3, 3, 2]
    assert r["agents"]["alice"]["replies"] == 1 and r["agents"]["bob"]["replies"] == 2
    assert r["escalations"]["top_reasons"] == [{"reason": "server down", "count": 1}]
    assert [(w["responses"], w["score"]) for w in trend[-3:]] == [(1, 0.0), (0, None), (2, 0.5)]


def test_export_masks_and_keeps_times(seeded) -> None:
    settings, engine = seeded
    with reading(engine) as conn:
        records = export.export_records(conn, since=at(17, 0), until=at(21, 0), full=False,
                                        own_addresses=settings.own_addresses())
    assert [r["id"] for r in records["tickets"]] == ["T-1001", "T-1002", "T-1003", "T-1006"]
    t2 = records["tickets"][1]
    assert (t2["created_at"], t2["closed_at"], t2["escalated"], t2["tags"]) == (
        "2026-11-17T09:00:00Z", "2026-11-20T12:00:00Z", False, ["refund", "billing"])
    assert t2["updated_at"] == "2026-11-20T12:00:00Z"
    # Messages ticket by ticket, in the order they were written.
    assert [(m["ticket"], m["date"]) for m in records["messages"]][:4] == [
        ("T-1001", "2026-11-20T17:00:00Z"), ("T-1001", "2026-11-23T10:00:00Z"),
        ("T-1002", "2026-11-17T09:00:00Z"), ("T-1002", "2026-11-17T12:00:00Z")]
    assert records["messages"][0]["text"] == "[masked]" and records["messages"][0]["to"] == ["support@example.com"]
    assert export.to_csv(records).count("\nticket,") == 4


def test_status_and_audit(seeded) -> None:
    settings, engine = seeded
    with reading(engine) as conn:
        status = read_status(conn, settings, NOW)
        audit = compare(conn, "support", "INBOX", (BIG_UID, list(range(BIG_UID - 6, BIG_UID + 1))))
    support, billing = status["mailboxes"]
    assert support["folders"][0] == {
        "folder": "INBOX", "state": "ok", "error": "", "failing_since": None, "last_sync": "2026-11-24T11:59:00Z",
        "uidvalidity": BIG_UID, "last_uid": BIG_UID - 1, "history_before": "2026-11-01T00:00:00Z",
        # A checkpoint written before the folder's newest server UID was recorded (migration 0016) shows no lag.
        "server_uid": 0, "lag": 0,
        "owner": "web1:17", "lease": {"holder": "web1:17", "expires_at": "2026-11-24T12:00:20Z", "live": True},
        # write_back and seen_on_close are off: nothing is written to this folder.
        "write_back": None}
    assert billing["state"] == "failing" and billing["folders"][0]["failing_since"] == "2026-11-24T11:30:00Z"
    assert (status["state"], status["at"]) == ("failing", "2026-11-24T12:00:00Z")
    assert status["outbox"] == {"queued": 2, "sending": 1, "failed": 1, "oldest_queued_at": "2026-11-24T09:00:00Z"}
    assert status["quarantine"] == 2
    # UIDs -6 .. 0 below 2**32: -6 missing, -5 skipped as history, -4 and -1 quarantined,
    # -3 and -2 stored, the last one above the checkpoint.
    assert {k: audit[k] for k in ("on_server", "stored", "quarantined", "skipped_history", "not_filed", "unsynced",
                                  "missing")} == {
        "on_server": 7, "stored": 2, "quarantined": 2, "skipped_history": 1, "not_filed": 0, "unsynced": 1,
        "missing": [BIG_UID - 6]}


def test_quarantine_list_show_and_retry_of_a_mail_still_too_large(seeded) -> None:
    settings, engine = seeded
    with reading(engine) as conn:
        listed = list_quarantine(conn)
        first = quarantine.load(conn, listed[0]["id"], settings.store.data_dir)
        big = quarantine.load(conn, listed[1]["id"], settings.store.data_dir)
        assert quarantine.load(conn, 999, settings.store.data_dir) is None
    assert [(q["uid"], q["at"], q["reason"]) for q in listed] == [
        (BIG_UID - 1, "2026-11-24T11:00:00Z", "parse error: boom"),
        (BIG_UID - 4, "2026-11-24T11:01:00Z", "larger than max_message_bytes")]
    # The bytes come back exactly, NUL and 0xff included; the file's name is its hash.
    assert first.read_raw().endswith(b"\x00\xff body\r\n") and first.raw_path is None
    assert first.at == at(24, 11) and first.arrived_at == at(24, 10, 59)
    assert first.describe()["headers"].startswith("From: x@example.org\nSubject: broken\n")
    assert (listed[1]["raw_sha256"], big.raw_sha256, big.size) == (BIG_SHA, BIG_SHA, len(BIG))
    assert big.read_raw() == BIG

    # Over the limit still: the reason says so, the row and its file stay.
    [outcome] = quarantine.retry(engine, settings, big.id, NOW)
    assert not outcome["filed"] and "still too large" in outcome["reason"]
    with reading(engine) as conn:
        assert quarantine.load(conn, big.id, settings.store.data_dir).reason == outcome["reason"]
    assert big.raw_path.is_file()


def test_quarantine_rows_move_into_the_store_and_go(seeded) -> None:
    settings, engine = seeded
    with reading(engine) as conn:
        big_id = list_quarantine(conn)[1]["id"]
    with writing(engine) as conn:
        # Not while the store lacks the bytes.
        assert not quarantine_rows.point_at_stored_bytes(conn, big_id, BIG_SHA)
        CoreHistory(conn).raw(BIG)
        assert quarantine_rows.point_at_stored_bytes(conn, big_id, BIG_SHA)
        quarantine_rows.set_reason(conn, big_id, "again", at=NOW)
        assert not quarantine_rows.file_in_use(conn, f"oversize/{BIG_SHA}.eml")
    with reading(engine) as conn:
        item = quarantine.load(conn, big_id, settings.store.data_dir)
        assert (item.raw_path, item.read_raw(), item.reason, item.at) == (None, BIG, "again", NOW)
    with writing(engine) as conn:
        quarantine_rows.remove(conn, big_id)
    with reading(engine) as conn:
        assert [q["uid"] for q in list_quarantine(conn)] == [BIG_UID - 1]
        assert health.quarantine_count(conn) == 1


def test_the_same_output_on_postgresql_and_sqlite(pg_url, tmp_path) -> None:
    (tmp_path / "pg").mkdir()
    (tmp_path / "lite").mkdir()
    pg_settings, pg = open_seeded(pg_url, tmp_path / "pg")
    settings, lite = open_seeded(f"sqlite:///{tmp_path / 'lite' / 'inboxd.db'}", tmp_path / "lite")
    try:
        ours, theirs = outputs(pg_settings, pg), outputs(settings, lite)
    finally:
        pg.dispose()
        lite.dispose()
    for shown in (ours["shown"], theirs["shown"]):
        for item in shown:
            # The oversize file is under each store's own data_dir.
            if item["raw_path"]:
                item["raw_path"] = Path(item["raw_path"]).name
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == theirs[key], key
