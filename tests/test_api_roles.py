"""Who sees and does what through the API's operations (inboxd.api.handlers), on a real store.

The operations run in-process here, exactly as the daemon runs them for a
caller it has identified (the socket and token tests prove the
identification; this file proves the decisions): an agent limited to their
teams sees only their teams' and mailboxes' tickets and their own, and
another ticket is "not found"; exports and per-agent numbers are for
supervisors and admins and land in the access log; every change records who,
how and from where; `--as` is for admins.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inboxd.api.handlers import ApiError, handle
from inboxd.api.identity import Caller, Refused, for_unix_user
from inboxd.config import load_settings
from inboxd.store.engine import open_store
from tests.support import store_url_for

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

CONFIG = """
[store]
url = "{url}"

[[mailboxes]]
name = "support"
address = "support@example.com"
team = "frontline"
[mailboxes.imap]
host = "127.0.0.1"
username = "support"
password_env = "UNUSED_PASSWORD"

[[mailboxes]]
name = "billing"
address = "billing@example.com"
team = "billing"
[mailboxes.imap]
host = "127.0.0.1"
username = "billing"
password_env = "UNUSED_PASSWORD"

[[mailboxes]]
name = "general"
address = "hello@example.com"
[mailboxes.imap]
host = "127.0.0.1"
username = "general"
password_env = "UNUSED_PASSWORD"

[[teams]]
name = "frontline"
agents = ["alice", "carol"]

[[teams]]
name = "billing"
agents = ["bob"]

[[agents]]
name = "alice"
email = "alice@example.com"
teams = ["frontline"]

[[agents]]
name = "bob"
email = "bob@example.com"
login = "robert"
teams = ["billing"]

[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"
teams = ["frontline"]

[[agents]]
name = "dan"
email = "dan@example.com"

[[agents]]
name = "root"
email = "root@example.com"
role = "admin"
"""


@pytest.fixture
def desk(tmp_path: Path):
    config = tmp_path / "inboxd.toml"
    config.write_text(CONFIG.format(url=store_url_for(tmp_path)))
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    yield settings, engine
    engine.dispose()


def caller(settings, name: str, acting_as: str | None = None) -> Caller:
    agent = settings.agent(name)
    return for_unix_user(settings, agent.unix_login, 1000, acting_as)


def run(desk, who, op: str, now: datetime = NOW, **params):
    settings, engine = desk
    c = who if isinstance(who, Caller) else caller(settings, who)
    return handle(op, params, c, settings=settings, engine=engine, now=now)


def opened(desk, mailbox: str, requester: str, subject: str) -> str:
    row = run(desk, "root", "new", mailbox=mailbox, requester=requester, subject=subject, message="Help, please.",
              ack=False)
    return row["id"]


def test_an_agent_with_teams_sees_only_their_teams_mailboxes_and_own_tickets(desk) -> None:
    support = opened(desk, "support", "ann@example.org", "Printer jams")
    invoice = opened(desk, "billing", "ann@example.org", "Invoice 1234 is wrong")
    refund = opened(desk, "billing", "ben@example.org", "Refund please")
    run(desk, "root", "assign", id=refund, agent="alice")

    def ids(who, **flt):
        return sorted(t["id"] for t in run(desk, who, "list", **flt))

    # alice works the frontline: the support mailbox, plus what is assigned to her.
    assert ids("alice") == sorted([support, refund])
    assert ids("bob") == sorted([invoice, refund])
    # An agent with no teams, a supervisor and an admin see the whole queue.
    assert ids("dan") == ids("carol") == ids("root") == sorted([support, invoice, refund])
    # A mailbox no team works is everyone's: its tickets belong to no team.
    hello = opened(desk, "general", "cy@example.org", "Hello")
    assert hello in ids("alice") and hello in ids("bob")
    assert run(desk, "bob", "show", id=hello)["id"] == hello
    # A ticket alice may not see does not exist for her: not shown, not changed, not in a customer's record.
    for op, extra in (("show", {}), ("history", {}), ("take", {}), ("note", {"message": "x"}),
                      ("tag", {"tags": ["vip"]}), ("macro_show", {"name": "none"})):
        with pytest.raises(ApiError) as refused:
            run(desk, "alice", op, id=invoice, **extra)
        assert refused.value.status in (400, 404), op
        if refused.value.status == 404:
            assert str(refused.value) == f"no ticket {invoice}"
    record = run(desk, "alice", "customer", email="ann@example.org")
    assert [t["id"] for t in record["tickets"]] == [support]
    assert len(run(desk, "bob", "customer", email="ann@example.org")["tickets"]) == 1
    # And she cannot open one in a mailbox that is not hers.
    with pytest.raises(ApiError) as refused:
        run(desk, "alice", "new", mailbox="billing", requester="cy@example.org", subject="x", message="y")
    assert refused.value.status == 403
    # Bob takes the invoice: his, and still invisible to alice.
    assert run(desk, "bob", "take", id=invoice)["actor"] == "bob"
    assert invoice not in ids("alice")


def test_every_change_records_who_how_and_from_where(desk) -> None:
    settings, _ = desk
    ref = opened(desk, "support", "ann@example.org", "Printer jams")
    run(desk, "alice", "take", id=ref)
    run(desk, caller(settings, "root", acting_as="alice"), "note", id=ref, message="Called her back.")
    events = run(desk, "carol", "history", id=ref)
    take = next(e for e in events if e["action"] == "assign" or e["action"] == "take")
    assert take["actor"] == "alice"
    assert (take["detail"]["via"], take["detail"]["origin"]) == ("api", "unix user alice (uid 1000)")
    assert "by" not in take["detail"]
    note = next(e for e in events if e["action"] == "note")
    assert note["actor"] == "alice"
    assert note["detail"]["by"] == "admin root acting as alice"
    # Opened by hand: the "opened" event names the admin and how.
    opened_event = next(e for e in events if e["action"] == "opened")
    assert (opened_event["actor"], opened_event["detail"]["via"]) == ("root", "api")


def test_as_is_for_admins_only(desk) -> None:
    settings, _ = desk
    with pytest.raises(Refused, match="--as is for admins; carol is an supervisor|--as is for admins"):
        caller(settings, "carol", acting_as="alice")
    with pytest.raises(Refused) as unknown:
        caller(settings, "root", acting_as="nobody")
    assert unknown.value.status == 400
    # Bob's Unix login is robert: the kernel's user name, not the agent's, is what the socket knows.
    assert for_unix_user(settings, "robert", 1001).agent.name == "bob"
    with pytest.raises(Refused) as stranger:
        for_unix_user(settings, "bob", 1002)
    assert stranger.value.status == 401 and "not an agent" in str(stranger.value)


def test_exports_and_per_agent_numbers_are_for_supervisors_and_recorded(desk) -> None:
    opened(desk, "support", "ann@example.org", "Printer jams")
    with pytest.raises(ApiError) as refused:
        run(desk, "alice", "export", format="json")
    assert refused.value.status == 403 and "supervisor" in str(refused.value)
    with pytest.raises(ApiError) as refused:
        run(desk, "alice", "report", format="json", per_agent=True)
    assert refused.value.status == 403
    with pytest.raises(ApiError):
        run(desk, "alice", "access_log")
    # Unmasked data stays with admins; a supervisor's masked export is served and recorded.
    with pytest.raises(ApiError) as refused:
        run(desk, "carol", "export", format="json", full=True)
    assert refused.value.status == 403
    exported = run(desk, "carol", "export", format="json", now=NOW + timedelta(minutes=1))
    assert "ann@example.org" not in exported.body and json.loads(exported.body)
    report = run(desk, "carol", "report", format="json", now=NOW + timedelta(minutes=2))
    assert "agents" in report
    run(desk, "root", "export", format="csv", full=True, now=NOW + timedelta(minutes=3))
    # The agent's own numbers without the per-agent section are not recorded.
    run(desk, "alice", "report", format="json", now=NOW + timedelta(minutes=4))
    log = run(desk, "carol", "access_log")
    assert [(e["actor"], e["action"], e["detail"].get("full")) for e in log] == [
        ("root", "export", True), ("carol", "report-agents", None), ("carol", "export", False)]
    assert log[0]["at"] == "2026-11-30T09:03:00Z"
    assert {e["detail"]["via"] for e in log} == {"api"}
    assert log[2]["detail"]["origin"] == "unix user carol (uid 1000)"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_store_owner_is_the_sqlite_files_or_for_postgresql_the_data_dirs(tmp_path: Path) -> None:
    from inboxd.cli.main import store_owner

    config = tmp_path / "inboxd.toml"
    config.write_text('[store]\nurl = "sqlite:///desk.db"\n')
    # Before the store exists, its folder's owner; then the file's.
    assert store_owner(config) == tmp_path.stat().st_uid
    (tmp_path / "desk.db").write_bytes(b"")
    os.chown(tmp_path / "desk.db", 65534, 65534)
    assert store_owner(config) == 65534
    # PostgreSQL: the service user's private data_dir decides, not the (root's) config.
    config.write_text('[store]\nurl = "postgresql+psycopg://inboxd@db/inboxd"\ndata_dir = "files"\n')
    assert store_owner(config) == config.stat().st_uid
    (tmp_path / "files").mkdir()
    os.chown(tmp_path / "files", 65534, 65534)
    assert store_owner(config) == 65534
