"""API tokens: the secret and its hash, when a token may be used (pure), the
api_token table (inboxd.store.tokens) and the API's token operations
(inboxd.desk.tokens) on SQLite and PostgreSQL.

The TCP/TLS path that uses them end to end is tests/test_api_tls.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from inboxd.api.identity import Caller, Refused
from inboxd.config import parse_settings
from inboxd.desk import tokens
from inboxd.desk.workflow import PermissionDenied, WorkflowError
from inboxd.store import tokens as store
from inboxd.store.engine import open_store, reading, writing
from inboxd.store.sql import t

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)

CONFIG = """
[store]
url = "sqlite:///unused.db"
[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "127.0.0.1"
username = "support"
password_env = "UNUSED"
[[agents]]
name = "alice"
email = "alice@example.com"
[[agents]]
name = "bob"
email = "bob@example.com"
[[agents]]
name = "root"
email = "root@example.com"
role = "admin"
[api]
token_days = 30
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return parse_settings(tomllib.loads(CONFIG), tmp_path_factory.mktemp("tokens") / "inboxd.toml")


@pytest.fixture
def engine(store_url):
    engine = open_store(store_url)
    yield engine
    engine.dispose()


def caller(settings, name: str, by: str | None = None) -> Caller:
    return Caller(settings.agent(name), "api", "token 1 from 10.0.0.5", by=by)


# -- pure -------------------------------------------------------------------------------------------


def test_a_secret_is_prefixed_random_and_url_safe():
    made = {tokens.new_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert re.fullmatch(r"ibx_[A-Za-z0-9_-]{43}", secret), secret


def test_the_hash_is_the_hex_sha256_of_the_secret():
    assert tokens.hash_secret("ibx_abc") == hashlib.sha256(b"ibx_abc").hexdigest()
    assert tokens.hash_secret("ibx_abc") != tokens.hash_secret("ibx_abd")


@pytest.mark.parametrize("revoked_at, expires_at, why", [
    (None, NOW + timedelta(seconds=1), None),
    (None, NOW, "expired on 2026-12-02T09:30:00Z"),
    (None, NOW - timedelta(days=3), "expired on 2026-11-29T09:30:00Z"),
    (NOW - timedelta(hours=1), NOW + timedelta(days=3), "revoked on 2026-12-02T08:30:00Z by root"),
    # Revoked and expired: the revocation is the reason worth telling.
    (NOW - timedelta(days=5), NOW - timedelta(days=1), "revoked on 2026-11-27T09:30:00Z by root"),
])
def test_why_a_token_may_not_be_used(revoked_at, expires_at, why):
    row = {"id": 1, "agent": "alice", "revoked_at": revoked_at, "revoked_by": "root" if revoked_at else None,
           "expires_at": expires_at}
    assert tokens.refusal(row, NOW) == why


# -- the table ----------------------------------------------------------------------------------------


def _make(conn, agent="alice", secret="ibx_one", at=NOW, days=30) -> int:
    return store.create(conn, agent=agent, label=f"{agent}'s laptop", secret_hash=tokens.hash_secret(secret),
                        created_by="root", now=at, expires_at=at + timedelta(days=days))


def test_store_creates_finds_lists_and_never_shows_the_hash(engine):
    with writing(engine) as conn:
        first = _make(conn, "alice", "ibx_one", NOW - timedelta(hours=2))
        second = _make(conn, "bob", "ibx_two", NOW - timedelta(hours=1))
        third = _make(conn, "alice", "ibx_three", NOW)
    with reading(engine) as conn:
        found = store.find(conn, tokens.hash_secret("ibx_two"))
        assert found["id"] == second and found["agent"] == "bob"
        assert found["expires_at"] == NOW - timedelta(hours=1) + timedelta(days=30)
        assert found["expires_at"].tzinfo is not None
        assert store.find(conn, tokens.hash_secret("ibx_nope")) is None
        assert store.get(conn, first)["label"] == "alice's laptop"
        assert store.get(conn, 999) is None
        everyone = store.list_tokens(conn, None)
        alices = store.list_tokens(conn, "alice")
    assert [r["id"] for r in everyone] == [third, second, first]
    assert [r["id"] for r in alices] == [third, first]
    assert alices[1] == {"id": first, "agent": "alice", "label": "alice's laptop",
                         "created_at": "2026-12-02T07:30:00Z", "created_by": "root",
                         "expires_at": "2027-01-01T07:30:00Z", "revoked_at": None, "revoked_by": None,
                         "last_used_at": None}
    for row in everyone + [found]:
        assert "secret_hash" not in row and tokens.hash_secret("ibx_one") not in json.dumps(row, default=str)


def test_the_hash_is_unique(engine):
    from sqlalchemy.exc import IntegrityError

    with writing(engine) as conn:
        _make(conn, "alice", "ibx_same")
    with pytest.raises(IntegrityError):
        with writing(engine) as conn:
            _make(conn, "bob", "ibx_same")


def test_a_revocation_is_recorded_once(engine):
    with writing(engine) as conn:
        tid = _make(conn)
        assert store.revoke(conn, tid, "root", NOW)
        assert not store.revoke(conn, tid, "bob", NOW + timedelta(hours=1))
        assert not store.revoke(conn, 999, "root", NOW)
    with reading(engine) as conn:
        row = store.get(conn, tid)
    assert (row["revoked_at"], row["revoked_by"]) == (NOW, "root")


def test_last_use_is_written_at_most_once_a_minute(engine):
    with writing(engine) as conn:
        tid = _make(conn)
        store.touch(conn, tid, NOW)
        store.touch(conn, tid, NOW + timedelta(seconds=59))
    with reading(engine) as conn:
        assert store.get(conn, tid)["last_used_at"] == NOW
    with writing(engine) as conn:
        store.touch(conn, tid, NOW + timedelta(seconds=60))
    with reading(engine) as conn:
        assert store.get(conn, tid)["last_used_at"] == NOW + timedelta(seconds=60)


# -- the API's operations -------------------------------------------------------------------------


def _audit(engine) -> list[tuple]:
    e = t.event
    with reading(engine) as conn:
        rows = conn.execute(select(e.c.ticket_id, e.c.actor, e.c.action, e.c.detail).order_by(e.c.id)).all()
    return [(r.ticket_id, r.actor, r.action, json.loads(r.detail)) for r in rows]


def test_an_agent_makes_a_token_for_themselves_and_it_verifies(engine, settings):
    made = tokens.create_token(engine, caller(settings, "alice"), agent=None, days=None, label=" my  laptop ",
                               settings=settings, now=NOW)
    assert set(made) == {"id", "agent", "label", "token", "expires_at"}
    assert made["agent"] == "alice" and made["label"] == "my laptop"
    # [api] token_days = 30 when --days is not given.
    assert made["expires_at"] == "2027-01-01T09:30:00Z"
    assert tokens.verify(engine, made["token"], NOW + timedelta(days=1)) == ("alice", made["id"])
    with reading(engine) as conn:
        assert store.get(conn, made["id"])["last_used_at"] == NOW + timedelta(days=1)
        # Only the hash is stored.
        hashes = conn.execute(select(t.api_token.c.secret_hash)).scalars().all()
    assert hashes == [tokens.hash_secret(made["token"])]
    assert _audit(engine) == [(None, "alice", "token-create",
                               {"token": made["id"], "agent": "alice", "label": "my laptop",
                                "expires_at": "2027-01-01T09:30:00Z", "via": "api",
                                "origin": "token 1 from 10.0.0.5"})]


def test_only_an_admin_makes_tokens_for_others(engine, settings):
    with pytest.raises(PermissionDenied, match="alice may make tokens for themselves only"):
        tokens.create_token(engine, caller(settings, "alice"), agent="bob", days=None, label="",
                            settings=settings, now=NOW)
    made = tokens.create_token(engine, caller(settings, "root"), agent="bob", days=7, label="",
                               settings=settings, now=NOW)
    assert made["agent"] == "bob" and made["expires_at"] == "2026-12-09T09:30:00Z"
    # An admin acting as alice is alice: recorded with who was behind it.
    as_alice = tokens.create_token(engine, caller(settings, "alice", by="admin root"), agent=None, days=1,
                                   label="", settings=settings, now=NOW)
    assert as_alice["agent"] == "alice"
    assert _audit(engine)[-1][3]["by"] == "admin root acting as alice"
    with reading(engine) as conn:
        assert store.get(conn, made["id"])["created_by"] == "root"
        assert store.get(conn, as_alice["id"])["created_by"] == "alice (admin root)"


@pytest.mark.parametrize("agent, days, label, problem", [
    ("mallory", None, "", "unknown agent 'mallory'"),
    (None, 0, "", "days must be from 1 to 3650, got 0"),
    (None, 3651, "", "days must be from 1 to 3650, got 3651"),
    (None, None, "x" * 201, "the label is 201 characters long"),
])
def test_a_token_request_that_makes_no_sense_is_refused(engine, settings, agent, days, label, problem):
    with pytest.raises(WorkflowError, match=re.escape(problem)):
        tokens.create_token(engine, caller(settings, "root"), agent=agent, days=days, label=label,
                            settings=settings, now=NOW)
    assert _audit(engine) == []


def test_revoked_expired_and_unknown_tokens_are_refused_without_the_secret(engine, settings):
    root = caller(settings, "root")
    revoked = tokens.create_token(engine, root, agent="alice", days=30, label="", settings=settings, now=NOW)
    # Made in the past, so that it has expired by NOW.
    expired = tokens.create_token(engine, root, agent="alice", days=1, label="", settings=settings,
                                  now=NOW - timedelta(days=2))
    tokens.revoke_token(engine, root, revoked["id"], NOW)
    cases = [(revoked["token"], f"API token {revoked['id']} of alice was revoked on 2026-12-02T09:30:00Z by root"),
             (expired["token"], f"API token {expired['id']} of alice expired on 2026-12-01T09:30:00Z"),
             ("ibx_" + "A" * 43, "unknown API token"),
             ("", "no API token")]
    for secret, start in cases:
        with pytest.raises(Refused) as refused:
            tokens.verify(engine, secret, NOW + timedelta(minutes=5))
        assert refused.value.status == 401
        assert str(refused.value).startswith(start), str(refused.value)
        if secret:
            assert secret not in str(refused.value) and secret[4:] not in str(refused.value)
    with reading(engine) as conn:
        # A refused token is not marked as used.
        assert store.get(conn, revoked["id"])["last_used_at"] is None


def test_agents_list_and_revoke_their_own_tokens_admins_everyones(engine, settings):
    alice, bob, root = (caller(settings, n) for n in ("alice", "bob", "root"))
    a = tokens.create_token(engine, alice, agent=None, days=None, label="a", settings=settings, now=NOW)
    b = tokens.create_token(engine, bob, agent=None, days=None, label="b", settings=settings,
                            now=NOW + timedelta(seconds=1))
    assert [r["id"] for r in tokens.list_for(engine, alice)] == [a["id"]]
    assert [r["id"] for r in tokens.list_for(engine, root)] == [b["id"], a["id"]]
    assert all("token" not in r for r in tokens.list_for(engine, root))

    with pytest.raises(PermissionDenied, match=f"token {b['id']} belongs to bob"):
        tokens.revoke_token(engine, alice, b["id"], NOW)
    with pytest.raises(LookupError, match="no token 999"):
        tokens.revoke_token(engine, root, 999, NOW)
    done = tokens.revoke_token(engine, alice, a["id"], NOW + timedelta(hours=1))
    assert (done["id"], done["revoked_at"], done["revoked_by"]) == (a["id"], "2026-12-02T10:30:00Z", "alice")
    # Revoking again keeps the first revocation and records nothing new.
    again = tokens.revoke_token(engine, root, a["id"], NOW + timedelta(hours=2))
    assert again == done
    tokens.revoke_token(engine, root, b["id"], NOW + timedelta(hours=3))
    assert [(e[1], e[2], e[3]["token"], e[3]["agent"]) for e in _audit(engine)] == [
        ("alice", "token-create", a["id"], "alice"), ("bob", "token-create", b["id"], "bob"),
        ("alice", "token-revoke", a["id"], "alice"), ("root", "token-revoke", b["id"], "bob")]


def test_the_api_answers_404_for_an_unknown_token_and_403_for_someone_elses(engine, settings):
    from inboxd.api.handlers import ApiError, handle

    b = tokens.create_token(engine, caller(settings, "bob"), agent=None, days=None, label="", settings=settings,
                            now=NOW)
    for who, tid, status in (("root", 999, 404), ("root", 2 ** 70, 404), ("alice", b["id"], 403)):
        with pytest.raises(ApiError) as refused:
            handle("token_revoke", {"tid": tid}, caller(settings, who), settings=settings, engine=engine, now=NOW)
        assert refused.value.status == status, str(refused.value)
    with pytest.raises(ApiError) as refused:
        handle("token_create", {"agent": "bob", "days": None, "label": ""}, caller(settings, "alice"),
               settings=settings, engine=engine, now=NOW)
    assert refused.value.status == 403
    with pytest.raises(ApiError) as refused:
        handle("token_create", {"agent": "mallory", "days": None, "label": ""}, caller(settings, "root"),
               settings=settings, engine=engine, now=NOW)
    assert refused.value.status == 400


def test_the_store_owner_manages_everyones_tokens(engine, settings):
    owner = Caller(settings.agent("alice"), "cli", "store owner root", by="store owner root", owner=True)
    made = tokens.create_token(engine, owner, agent="bob", days=None, label="", settings=settings, now=NOW)
    assert [r["id"] for r in tokens.list_for(engine, owner)] == [made["id"]]
    assert tokens.revoke_token(engine, owner, made["id"], NOW)["revoked_by"] == "alice (store owner root)"



# -- the command line, for the store's owner ------------------------------------------------------------


def test_the_cli_shows_the_secret_once_with_how_to_use_it(tmp_path, dovecot):
    from tests.support import cli, write_config

    # The mailbox is never synced: these commands only touch the token table.
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": "nobody"}],
                          extra='[[agents]]\nname = "boss"\nemail = "boss@example.com"\nrole = "admin"\n')
    made = cli(config, "--as", "boss", "token", "create", "alice", "--days", "7", "--label", "home").stdout
    secret = next(word for word in made.split() if word.startswith("ibx_"))
    assert "not shown again" in made
    assert f"export INBOXD_URL=https://HOST:8443 INBOXD_TOKEN={secret}" in made
    listed = cli(config, "--as", "boss", "token", "list").stdout
    assert "alice" in listed and "home" in listed and "active" in listed and secret not in listed
    tid = json.loads(cli(config, "--as", "boss", "token", "list", "--json").stdout)[0]["id"]
    assert cli(config, "--as", "boss", "token", "revoke", str(tid)).stdout.startswith(f"token {tid} of alice revoked")
    assert "revoked" in cli(config, "--as", "boss", "token", "list").stdout
    wrong = cli(config, "--as", "alice", "token", "revoke", "999", check=False)
    assert wrong.returncode != 0 and wrong.stderr.strip() == "inboxd: no token 999"
