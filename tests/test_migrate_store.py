"""`inboxd migrate-store`: a real SQLite store, made by the daemon from real mail, copied to PostgreSQL and back.

The store is built by `inboxd run --once` against Dovecot and the SMTP sink
(history and live tickets, threads, acknowledgements, an attachment, an
oversized mail in quarantine) and by agents' commands (notes, tags, a merge),
so every table has rows written the way inboxd writes them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

import inboxd.store.models  # noqa: F401
from inboxd.store import leases
from inboxd.store.engine import create_store_engine, migrate, open_store, reading, writing
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import cli, list_json, show_json, write_config

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink) -> Path:
    """A config whose SQLite store holds a little of everything."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user, "sent_folder": "Sent"}],
                          acks=True, smtp_port=smtp_sink.port, history_before=(NOW - timedelta(days=1)).isoformat())
    config.write_text(config.read_text().replace('data_dir = "var"', 'data_dir = "var"\nmax_message_bytes = 65536'))
    # History: mail that was there before the cut-off.
    for i in range(3):
        when = NOW - timedelta(days=30 - i)
        dovecot.append(imap_user, "INBOX", make_mail(frm=f"Old {i} <old{i}@h{i}.example.org>", subject=f"Old {i}",
                                                     date=when), when=when)
    first = make_message_id("c0.example.org")
    for i in range(8):
        dovecot.append(imap_user, "INBOX", make_mail(
            frm=f"Customer {i} <c{i}@c{i}.example.org>", subject=f"Question {i}",
            message_id=first if i == 0 else None, body=f"Question number {i}.\n"))
    dovecot.append(imap_user, "INBOX", make_mail(frm="王芳 <wang@c9.example.cn>", subject="发票问题",
                                                 charset="gbk", body="您好，发票有问题。\n"))
    dovecot.append(imap_user, "INBOX", make_mail(frm="Ann <ann@c10.example.org>", subject="Screenshot",
                                                 attachments=[("screen.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
                                                               "image/png")]))
    dovecot.append(imap_user, "INBOX", make_mail(frm="Big <big@c11.example.org>", subject="Huge",
                                                 body="x" * 100_000 + "\n"))
    cli(config, "run", "--once", check=False)
    dovecot.append(imap_user, "INBOX", make_mail(frm="Customer 0 <c0@c0.example.org>", subject="Re: Question 0",
                                                 in_reply_to=first, references=[first], body="More detail.\n"))
    cli(config, "run", "--once", check=False)
    tickets = {t["subject"]: t["id"] for t in list_json(config)}
    cli(config, "--as", "alice", "assign", tickets["Question 1"], "alice")
    cli(config, "--as", "alice", "tag", tickets["Question 1"], "vip", "billing")
    cli(config, "--as", "alice", "note", tickets["Question 2"], "-m", "Called the customer.")
    cli(config, "--as", "alice", "close", tickets["Question 3"])
    # A merge makes a ticket point at another (ticket.merged_into refers to its own table).
    cli(config, "--as", "alice", "merge", tickets["Question 5"], tickets["Question 4"])
    return config


def rows(engine, name: str) -> list[dict]:
    table = SQLModel.metadata.tables[name]
    with reading(engine) as conn:
        return [dict(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns)).mappings()]


def counts(engine) -> dict[str, int]:
    with reading(engine) as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                for t in SQLModel.metadata.sorted_tables}


def test_a_real_sqlite_store_is_copied_to_postgresql_row_for_row_and_back(desk, pg_url, tmp_path):
    config = desk
    sqlite_url = f"sqlite:///{config.parent / 'inboxd.db'}"
    proc = cli(config, "migrate-store", "--to", pg_url)
    source, target = open_store(sqlite_url), open_store(pg_url)
    try:
        before = counts(source)
        for table in ("ticket", "message", "messageref", "sighting", "rawmessage", "attachment", "event", "outbox",
                      "quarantine", "checkpoint", "folderstate", "customer"):
            assert before[table] > 0, f"the test store should have {table} rows"
        assert counts(target) == before
        for table, count in before.items():
            assert f"  {table:<14}{count:>10} row(s)" in proc.stdout
        assert "every table's count and the checksums of ticket, message, event, rawmessage are equal" in proc.stdout
        # Row by row, each value as its column's type reads it: timestamps as
        # aware UTC datetimes on both sides (text in SQLite, timestamptz in PostgreSQL).
        for table in ("ticket", "message", "event", "rawmessage", "quarantine", "outbox", "checkpoint"):
            assert rows(target, table) == rows(source, table), table
        merged = [t for t in rows(target, "ticket") if t["merged_into"] is not None]
        assert merged and all(isinstance(t["created_at"], datetime) and t["created_at"].tzinfo for t in merged)

        # The sequences continue after the copied ids.
        event = SQLModel.metadata.tables["event"]
        with writing(target) as conn:
            new_id = conn.execute(event.insert().values(at=NOW, actor="test", action="note")
                                  .returning(event.c.id)).scalar()
            conn.execute(event.delete().where(event.c.id == new_id))
        assert new_id == max(e["id"] for e in rows(source, "event")) + 1

        # A second copy into the same database is refused, and changes nothing.
        again = cli(config, "migrate-store", "--to", pg_url, check=False)
        assert again.returncode == 1
        assert again.stderr.startswith("inboxd: the target store is not empty (table ")
        assert counts(target) == before

        # And back to SQLite: a store the CLI shows exactly as it showed the original.
        back = tmp_path / "back"
        back.mkdir()
        cli(config, "migrate-store", "--from", pg_url, "--to", f"sqlite:///{back / 'inboxd.db'}")
        copy = back / "inboxd.toml"
        copy.write_text(config.read_text().replace(f'data_dir = "var"', f'data_dir = "{config.parent / "var"}"'))
        (back / "imap-password").write_text((config.parent / "imap-password").read_text())
        assert list_json(copy) == list_json(config)
        for ticket in list_json(config):
            assert show_json(copy, ticket["id"]) == show_json(config, ticket["id"])
    finally:
        source.dispose()
        target.dispose()


def test_migrate_store_refuses_while_a_daemon_holds_a_folder_and_names_a_missing_source(desk, pg_url, tmp_path):
    config = desk
    engine = create_store_engine(f"sqlite:///{config.parent / 'inboxd.db'}")
    with writing(engine) as conn:
        leases.acquire(conn, "support", "INBOX", "web1:4242", datetime.now(UTC), timedelta(minutes=5))
    proc = cli(config, "migrate-store", "--to", pg_url, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("inboxd: a daemon still syncs the source store (support/INBOX by web1:4242 until ")
    target = create_store_engine(pg_url)
    with reading(target) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(SQLModel.metadata.tables["ticket"])).scalar() == 0
    target.dispose()
    engine.dispose()

    missing = cli(config, "migrate-store", "--from", f"sqlite:///{tmp_path / 'nope.db'}", "--to", pg_url, check=False)
    assert (missing.returncode, missing.stderr) == (1, f"inboxd: --from: no store at {tmp_path / 'nope.db'}\n")
    same = cli(config, "migrate-store", "--to", f"sqlite:///{config.parent / 'inboxd.db'}", check=False)
    assert (same.returncode, same.stderr) == (1, "inboxd: --from and --to are the same store\n")


def test_checksums_see_a_changed_value(desk, pg_url):
    from inboxd.store.copy import checksum

    cli(desk, "migrate-store", "--to", pg_url)
    target = create_store_engine(pg_url)
    message = SQLModel.metadata.tables["message"]
    with reading(target) as conn:
        before = checksum(conn, message)
    with writing(target) as conn:
        conn.execute(message.update().where(message.c.id == 1).values(text=message.c.text + " "))
    with reading(target) as conn:
        assert checksum(conn, message) != before
    target.dispose()



# -- every table, value for value, SQLite -> PostgreSQL -> SQLite ----------------------------------

# Timestamps with every microsecond digit used, at the ends of the range both databases hold.
T1 = datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)
T2 = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
T3 = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
BLOB = bytes(range(256)) * 3 + b"\x00\r\n\x00"
UID = 2**32 - 1


def every_table(conn) -> None:
    """One or more rows in every table of the models, with awkward values: NUL and high bytes in blobs,
    IMAP's largest UID, microseconds, booleans both ways, text in several scripts."""
    tables = SQLModel.metadata.tables
    sha = "a" * 64
    rows = {
        "rawmessage": [{"sha256": sha, "size": len(BLOB), "data": BLOB},
                       {"sha256": "b" * 64, "size": 0, "data": b""}],
        "customer": [{"email": "王芳@example.cn", "name": "王芳", "created_at": T1, "bouncing": True,
                      "bounced_at": T3}],
        # Ticket 1 is merged into ticket 2, which is written after it.
        "ticket": [{"id": 1, "ref": "T-1", "mailbox": "support", "requester": "a@x", "created_at": T2,
                    "updated_at": T1, "escalated": True, "history": False, "merged_into": 2, "first_response_due": T3},
                   {"id": 2, "ref": "T-2", "mailbox": "support", "requester": "b@x", "created_at": T1,
                    "updated_at": T1, "escalated": False, "history": True, "merged_into": None,
                    "first_response_due": None}],
        "message": [{"id": 7, "message_key": "<k@x>", "message_id": "k@x", "ticket_id": 2, "date": T1,
                     "html_only": True, "raw_sha256": sha, "created_at": T2, "text": "Grüße, 你好 🙂\r\n"}],
        "messageref": [{"message_pk": 7, "ref": "parent@x"}],
        "sighting": [{"message_pk": 7, "mailbox": "support", "folder": "INBOX", "uidvalidity": UID, "uid": UID,
                      "seen_at": T1}],
        "checkpoint": [{"mailbox": "support", "folder": "INBOX", "uidvalidity": UID, "last_uid": UID,
                        "synced_at": T1, "history_before": T2, "server_uid": UID}],
        "skipped": [{"mailbox": "support", "folder": "Sent", "uidvalidity": UID, "uid": 3, "reason": "ours",
                     "at": T1}],
        "folderstate": [{"mailbox": "support", "folder": "INBOX", "ok": False, "error": "x", "last_ok_at": T1,
                         "failing_since": T3, "owner": "web1:1"}],
        "attachment": [{"message_pk": 7, "filename": "a.png", "sha256": sha, "stored": False, "inline": True}],
        "event": [{"ticket_id": 2, "at": T1, "actor": "alice", "action": "note", "detail": '{"text": "é"}'}],
        "quarantine": [{"mailbox": "support", "folder": "INBOX", "uidvalidity": UID, "uid": UID - 1,
                        "reason": "boom", "raw_sha256": sha, "raw_path": None, "at": T1, "arrived_at": T2}],
        "outbox": [{"ticket_id": 2, "mailbox": "support", "kind": "ack", "message_id": "o@x", "sender": "s@x",
                    "data": BLOB, "next_attempt_at": T1, "created_at": T2, "sent_at": T3, "spec": None}],
        "duty": [{"ticket_id": 2, "duty": "breach", "key": "2:first_response", "at": T1}],
        "csat": [{"ticket_id": 2, "customer": "b@x", "token": "tok", "message_id": "c@x", "sent_at": T1,
                  "rating": 1, "answered_at": T3}],
        # An expired lease: a live one would make the copy refuse.
        "lease": [{"mailbox": "support", "folder": "Sent", "holder": "web1:1", "expires_at": T2}],
        "counter": [{"name": "ticket_number", "value": 2}],
        "ticket_field": [{"ticket_id": 2, "name": "问题类型", "value": "售后维修", "set_at": T1, "set_by": "alice"}],
        "api_token": [{"id": 3, "agent": "alice", "label": "小王的笔记本", "secret_hash": "c" * 64, "created_at": T2,
                       "created_by": "alice (admin root)", "expires_at": T3, "revoked_at": T1, "revoked_by": "root",
                       "last_used_at": None}],
        "writeback": [{"mailbox": "support", "folder": "INBOX", "uidvalidity": UID, "uid": UID, "ticket_id": 2,
                       "version": 3, "mode": "ks", "overdue": True, "keywords": '["$inboxd-&kABrPg-", "T-2"]',
                       "seen": None, "written_at": T1}],
        "writeback_folder": [{"mailbox": "support", "folder": "INBOX", "keywords": False, "seen": True,
                              "gmail": False, "checked_at": T2, "stores": 2 ** 40, "error": "NO 写入失败"}],
        "report_rollup": [{"fingerprint": "f" * 24, "kind": "escalations", "day": T1,
                           "data": '{"reasons": {"服务器宕机": 1}}', "watermark": 2 ** 40, "computed_at": T3}],
        "report_ticket": [{"ticket_id": 1, "version": 3, "watermark": 2 ** 40,
                           "data": '[1, 1700000000000000, 1700000000500000, "solved"]', "computed_at": T3}],
    }
    missing = set(tables) - set(rows)
    assert not missing, f"add rows of the new table(s) {sorted(missing)} to this test"
    rows["ticket"][0]["merged_into"] = None
    for table in SQLModel.metadata.sorted_tables:
        conn.execute(table.insert(), rows[table.name])
    conn.execute(tables["ticket"].update().where(tables["ticket"].c.id == 1).values(merged_into=2))


def test_every_table_is_copied_exactly_both_ways_and_ticket_numbers_continue(pg_url, tmp_path):
    from inboxd.store.copy import copy_rows
    from inboxd.store.counters import next_ticket_number

    engines = []
    for url in (f"sqlite:///{tmp_path / 'a.db'}", pg_url, f"sqlite:///{tmp_path / 'b.db'}"):
        engines.append(create_store_engine(url))
        migrate(engines[-1])
    first, pg, back = engines
    try:
        with writing(first) as conn:
            every_table(conn)
        copy_rows(first, pg, NOW)
        copy_rows(pg, back, NOW)
        for table in SQLModel.metadata.sorted_tables:
            original = rows(first, table.name)
            assert rows(pg, table.name) == original, table.name
            assert rows(back, table.name) == original, table.name
        assert rows(back, "rawmessage")[0]["data"] == BLOB
        assert rows(back, "ticket")[0]["first_response_due"] == T3
        # The next ticket after the copy is numbered after the copied ones, on each side.
        for engine in (pg, back):
            with writing(engine) as conn:
                assert next_ticket_number(conn) == 3
    finally:
        for engine in engines:
            engine.dispose()
