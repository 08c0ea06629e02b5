"""Folders as commands, on a real Dovecot: a message an agent moves into Desk/Close closes its ticket,
once, and is moved back to the folder it was filed from."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from imapclient import IMAPClient
from sqlalchemy import text

from inboxd.config import ConfigError, load_settings
from inboxd.daemon import run_once
from inboxd.desk.foldercommands import act
from inboxd.store.engine import open_store
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import PASSWORD, show_json, store_engine, write_config

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def imap(dovecot, user: str) -> IMAPClient:
    """A plain imapclient session, as an agent's mail client would have."""
    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    client = IMAPClient(dovecot.host, port=dovecot.ssl_port, ssl=True, ssl_context=context)
    client.login(user, PASSWORD)
    return client


def message_ids(client: IMAPClient, folder: str) -> list[str]:
    client.select_folder(folder, readonly=True)
    uids = client.search(["ALL"])
    found = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
    return [found[u][b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split("<", 1)[1].split(">", 1)[0]
            for u in sorted(found)]


def move(dovecot, user: str, message_id: str, src: str, dst: str) -> None:
    """What an agent does in Thunderbird: drag the message into the folder."""
    with imap(dovecot, user) as client:
        client.select_folder(src)
        [uid] = client.search(["HEADER", "Message-ID", message_id])
        client.move([uid], dst)


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink):
    for folder in ("Desk/Close", "Desk/Spam"):
        dovecot.create_folder(imap_user, folder)
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port)
    text_ = config.read_text().replace(
        'folders = ["INBOX"]', 'folders = ["INBOX"]\ncommand_folders = { "Desk/Close" = "close", "Desk/Spam" = "spam" }')
    config.write_text(text_)
    return config, imap_user


def once(config, now):
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses


@pytest.mark.parametrize("folder,status,tags,survey", [
    ("Desk/Close", "closed", [], True),
    ("Desk/Spam", "closed", ["spam"], False),
])
def test_a_folder_command_runs_once_and_the_message_goes_back(desk, dovecot, folder, status, tags, survey):
    config, user = desk
    mid = make_message_id()
    dovecot.append(user, "INBOX", make_mail(message_id=mid))
    once(config, T0)
    assert show_json(config, "T-1000")["status"] == "new"
    move(dovecot, user, mid, "INBOX", folder)
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert ticket["status"] == status and ticket["tags"] == tags
    [close] = [e for e in ticket["events"] if e["action"] == "close"]
    assert close["actor"] == "support" and close["detail"]["via"] == "folder"
    assert close["detail"]["survey"] is survey
    # Back where it was filed from, and the command folder is empty again.
    with imap(dovecot, user) as client:
        assert message_ids(client, "INBOX") == [mid.strip("<>")]
        assert message_ids(client, folder) == []
    # Seen again in INBOX under its new UID: a sighting, not a second ticket or a second close.
    once(config, T0 + timedelta(minutes=10))
    ticket = show_json(config, "T-1000")
    assert [e["action"] for e in ticket["events"]].count("close") == 1
    assert len(ticket["messages"]) == 1


@pytest.mark.parametrize("claimed", [True, False], ids=["killed-before-move", "killed-before-claim"])
def test_a_daemon_killed_between_acting_and_moving_moves_without_acting_again(desk, dovecot, claimed):
    config, user = desk
    mid = make_message_id()
    dovecot.append(user, "INBOX", make_mail(message_id=mid))
    once(config, T0)
    move(dovecot, user, mid, "INBOX", "Desk/Close")
    with imap(dovecot, user) as client:
        uidvalidity = int(client.select_folder("Desk/Close", readonly=True)[b"UIDVALIDITY"])
        [uid] = client.search(["ALL"])
    # What the daemon does for that message before its MOVE; then it is killed.
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    try:
        act(engine, settings, settings.mailbox("support"), "Desk/Close", uidvalidity, uid, mid.strip("<>"),
            T0 + timedelta(minutes=1))
    finally:
        engine.dispose()
    if not claimed:
        # Killed after the close was committed but before the claim.
        eng = store_engine(config)
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM duty WHERE duty = 'folder-command'"))
        eng.dispose()
    assert show_json(config, "T-1000")["status"] == "closed"
    once(config, T0 + timedelta(minutes=5))
    ticket = show_json(config, "T-1000")
    assert [e["action"] for e in ticket["events"]].count("close") == 1
    with imap(dovecot, user) as client:
        assert message_ids(client, "INBOX") == [mid.strip("<>")]
        assert message_ids(client, "Desk/Close") == []


@pytest.mark.parametrize("value,problem", [
    ('{ "Desk/Close" = "delete" }', 'unknown folder command "delete"'),
    ('{ "INBOX" = "close" }', '"INBOX" is synced as mail'),
    ('"Desk/Close"', "must be a table"),
])
def test_folder_commands_are_checked_at_load(tmp_path, dovecot, imap_user, value, problem):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    config.write_text(config.read_text().replace('folders = ["INBOX"]',
                                                 f'folders = ["INBOX"]\ncommand_folders = {value}'))
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert "command_folders" in str(err.value) and problem in str(err.value)


def test_a_message_inboxd_never_filed_goes_to_the_first_folder_untouched(desk, dovecot):
    config, user = desk
    mid = make_message_id()
    dovecot.append(user, "Desk/Close", make_mail(message_id=mid))
    once(config, T0)
    with imap(dovecot, user) as client:
        assert message_ids(client, "Desk/Close") == []
        assert message_ids(client, "INBOX") == [mid.strip("<>")]
    engine = store_engine(config)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM duty WHERE duty = 'folder-command'")).scalar() == 0
    engine.dispose()
    # In INBOX it is mail like any other: the next sync files it as a new, open ticket.
    once(config, T0 + timedelta(minutes=5))
    assert show_json(config, "T-1000")["status"] == "new"
