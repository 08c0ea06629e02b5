"""Macros: [[macros]] read with the config, and the last customer message they quote, on SQLite and PostgreSQL."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from inboxd.config import ConfigError, parse_settings
from inboxd.desk.macros import macro_variables, variables
from inboxd.store.engine import create_store_engine, migrate, reading, writing
from inboxd.store.messages import last_customer_message
from inboxd.store.sql import t

CONFIG = """
[[mailboxes]]
name = "support"
address = "support@example.com"
display_name = "Example Support"
[mailboxes.imap]
host = "imap.example.com"
username = "support"

[[agents]]
name = "alice"
email = "alice@example.com"

[[macros]]
name = "reset"
template = "password_reset.txt"
status = "solved"
priority = "high"
tags = ["password"]

[[macros]]
name = "thanks"
body = "Thank you, {{ ticket.requester.name }}."
assign = "alice"
"""

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def settings(tmp_path: Path, text: str = CONFIG):
    return parse_settings(tomllib.loads(text), tmp_path / "inboxd.toml")


def test_macros_are_read_with_the_config(tmp_path):
    loaded = settings(tmp_path)
    macros = loaded.macros
    assert list(macros) == ["reset", "thanks"]
    reset, thanks = macros["reset"], macros["thanks"]
    assert (reset.template, reset.body, reset.status, reset.priority, reset.tags, reset.assign) == (
        "password_reset.txt", None, "solved", "high", ("password",), None)
    assert (thanks.template, thanks.body, thanks.status, thanks.tags, thanks.assign) == (
        None, "Thank you, {{ ticket.requester.name }}.", None, (), "alice")


def test_a_broken_macro_fails_the_load_not_the_command(tmp_path):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, CONFIG + '\n[[macros]]\nname = "later"\nbody = "x"\npriority = "asap"\n')
    assert str(caught.value) == ('inboxd.toml: macros[2].priority: must be one of "low", "normal", "high",'
                                 ' "urgent", got "asap"')


@pytest.fixture
def store(store_url):
    engine = create_store_engine(store_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _ticket(conn, ref: str) -> int:
    return conn.execute(t.ticket.insert().values(
        ref=ref, subject="Password", mailbox="support", requester="li@example.net", requester_name="Li Lei",
        created_at=T0, updated_at=T0)).inserted_primary_key[0]


def _message(conn, ticket_pk: int, key: str, *, kind: str = "customer", date: datetime | None,
             created_at: datetime = T0, text: str = "") -> None:
    conn.execute(t.rawmessage.insert().values(sha256=key, size=1, data=b"x"))
    conn.execute(t.message.insert().values(
        message_key=key, ticket_id=ticket_pk, kind=kind, direction="out" if kind == "agent" else "in",
        from_addr="li@example.net" if kind == "customer" else "alice@example.com", from_name="Li Lei",
        date=date, subject=f"subject {key}", text=text, reply_text=f"reply {key}", raw_sha256=key,
        created_at=created_at))


def test_last_customer_message_in_thread_order(store):
    with writing(store) as conn:
        pk = _ticket(conn, "T-1")
        empty = _ticket(conn, "T-2")
        # Stored first, but its Date header is the latest second of the thread.
        _message(conn, pk, "late-date", date=T0 + timedelta(hours=2, microseconds=900_000), text="late")
        _message(conn, pk, "early", date=T0)
        # An agent's reply after it does not count, nor does mail on another ticket.
        _message(conn, pk, "agent", kind="agent", date=T0 + timedelta(hours=3))
        # The same second as that one (if an earlier instant), stored later: the thread
        # is ordered by whole seconds and the id breaks the tie, so this one is last.
        _message(conn, pk, "same-second", date=T0 + timedelta(hours=2, microseconds=100), text="tie")
        # No Date header: when the store learned of it, which is earlier.
        _message(conn, pk, "undated", date=None, created_at=T0 + timedelta(hours=1))
        _message(conn, empty, "elsewhere", kind="agent", date=T0 + timedelta(days=1))
    with reading(store) as conn:
        last = last_customer_message(conn, pk)
        assert (last.subject, last.text, last.reply_text, last.from_addr) == (
            "subject same-second", "tie", "reply same-second", "li@example.net")
        assert last.date == T0 + timedelta(hours=2, microseconds=100)
        assert last_customer_message(conn, empty) is None


def test_undated_mail_is_ordered_by_when_it_was_stored(store):
    with writing(store) as conn:
        pk = _ticket(conn, "T-1")
        _message(conn, pk, "dated", date=T0)
        _message(conn, pk, "undated", date=None, created_at=T0 + timedelta(minutes=5))
    with reading(store) as conn:
        last = last_customer_message(conn, pk)
    assert (last.subject, last.date) == ("subject undated", None)


def test_variables_quote_the_last_customer_message(store, tmp_path):
    loaded = settings(tmp_path)
    with writing(store) as conn:
        pk = _ticket(conn, "T-1")
        _message(conn, pk, "m1", date=T0 + timedelta(seconds=5, microseconds=7), text="I forgot it")
    ticket = SimpleNamespace(pk=pk, ref="T-1", mailbox="support", subject="Password", status="open",
                             priority="normal", tags=("password",), assignee="alice",
                             requester="li@example.net", requester_name="Li Lei")
    agent = loaded.agent("alice")
    with reading(store) as conn:
        values = variables(conn, loaded, ticket, agent)
    assert values["message"] == {
        "from": "li@example.net", "from_name": "Li Lei", "date": "2026-11-30 10:00:05.000007",
        "subject": "subject m1", "text": "I forgot it", "reply_text": "reply m1",
    }
    assert values["ticket"]["requester"] == {"name": "Li Lei", "email": "li@example.net"}
    assert values["mailbox"] == {"name": "support", "address": "support@example.com",
                                 "display_name": "Example Support"}
    assert values == macro_variables(values["ticket"], agent, loaded.mailbox("support"), values["message"])
