"""State written back to the mailbox (issue 16): keywords, \\Seen on close, folders that refuse keywords.

Real Dovecot, the real CLI to change tickets, `run_once` for each cycle,
and a plain imapclient session (as an agent's mail client) to read FLAGS
and MODSEQ back.  CONDSTORE is on in Dovecot: a folder's HIGHESTMODSEQ that
does not move proves nothing was written, whatever inboxd's own counts say.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imapclient import IMAPClient

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.testing.dovecot import MAIL_USER, Dovecot
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import cli, db_count, write_config

SLA = """
[[sla]]
name = "standard"
first_response = "4h"
priority = ["low", "normal", "high", "urgent"]
"""


def configure(tmp_path: Path, dovecot: Dovecot, user: str, *, write_back: bool, seen_on_close: bool,
              folders: tuple[str, ...] = ("INBOX",), extra: str = "") -> Path:
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": user, "folders": list(folders),
                                               "sent_folder": "Sent"}], extra=extra)
    text = config.read_text().replace(
        "[mailboxes.imap]\n",
        f"[mailboxes.imap]\nwrite_back = {str(write_back).lower()}\nseen_on_close = {str(seen_on_close).lower()}\n")
    config.write_text(text)
    return config


def cycle(config: Path, now: datetime | None = None) -> None:
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses


def as_alice(config: Path, *args: str) -> None:
    cli(config, "--as", "alice", *args)


class Client:
    """A mail client's view of one folder: FLAGS (without \\Recent) and MODSEQ per UID, and HIGHESTMODSEQ."""

    def __init__(self, dovecot: Dovecot, user: str, folder: str = "INBOX"):
        self.dovecot, self.user, self.folder = dovecot, user, folder

    def _session(self) -> IMAPClient:
        client = IMAPClient(self.dovecot.host, port=self.dovecot.port, ssl=False)
        client.login(self.user, "secret")
        return client

    def flags(self) -> dict[int, set[str]]:
        client = self._session()
        try:
            client.select_folder(self.folder, readonly=True)
            data = client.fetch(client.search(["ALL"]), ["FLAGS"])
        finally:
            client.logout()
        return {uid: {f.decode() for f in d[b"FLAGS"]} - {"\\Recent"} for uid, d in data.items()}

    def modseqs(self) -> dict[int, int]:
        client = self._session()
        try:
            client.select_folder(self.folder, readonly=True)
            data = client.fetch(client.search(["ALL"]), ["MODSEQ"])
        finally:
            client.logout()
        return {uid: d[b"MODSEQ"][0] for uid, d in data.items()}

    def highest(self) -> int:
        client = self._session()
        try:
            return int(client.folder_status(self.folder, [b"HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"])
        finally:
            client.logout()

    def set(self, uid: int, *flags: str) -> None:
        client = self._session()
        try:
            client.select_folder(self.folder)
            client.add_flags([uid], [f.encode() for f in flags])
        finally:
            client.logout()


def ours(flags: set[str]) -> set[str]:
    return {f for f in flags if f.startswith(("$inboxd-", "T-"))}


def stores(config: Path) -> int:
    return db_count(config, "SELECT COALESCE(SUM(stores), 0) FROM writeback_folder")


def test_keywords_follow_status_assignee_and_tags_and_a_restart_rewrites_nothing(tmp_path, dovecot, imap_user):
    config = configure(tmp_path, dovecot, imap_user, write_back=True, seen_on_close=False)
    first = make_message_id()
    dovecot.append(imap_user, "INBOX", make_mail(message_id=first))
    dovecot.append(imap_user, "INBOX", make_mail(subject="Re: Cannot log in to my account", in_reply_to=first,
                                                  references=[first], message_id=make_message_id()))
    dovecot.append(imap_user, "INBOX", make_mail(frm="Han Meimei <han@example.cn>", subject="Invoice missing"))
    # Mail in the Sent folder is never written to.
    dovecot.append(imap_user, "Sent", make_mail(frm="Alice <alice@example.com>", to="lilei@example.cn",
                                                 subject="Your other question", message_id=make_message_id()))
    box = Client(dovecot, imap_user)
    # The agent's own keyword and flag, which inboxd must never touch.
    box.set(1, "$label1", "\\Flagged")
    cycle(config)
    flags = box.flags()
    assert ours(flags[1]) == ours(flags[2]) == {"T-1000", "$inboxd-open"}
    assert ours(flags[3]) == {"T-1001", "$inboxd-open"}
    assert {"$label1", "\\Flagged"} <= flags[1]
    assert not any("\\Seen" in f for f in flags.values())

    as_alice(config, "take", "T-1000")
    as_alice(config, "tag", "T-1000", "vip", "退款")
    cycle(config)
    flags = box.flags()
    assert ours(flags[1]) == ours(flags[2]) == {"T-1000", "$inboxd-open", "$inboxd-mine-alice", "$inboxd-vip",
                                                "$inboxd-&kABrPg-"}
    assert ours(flags[3]) == {"T-1001", "$inboxd-open"}

    as_alice(config, "status", "T-1000", "pending")
    as_alice(config, "untag", "T-1000", "vip")
    as_alice(config, "assign", "T-1001", "alice")
    cycle(config)
    flags = box.flags()
    assert ours(flags[1]) == {"T-1000", "$inboxd-pending", "$inboxd-mine-alice", "$inboxd-&kABrPg-"}
    assert ours(flags[3]) == {"T-1001", "$inboxd-open", "$inboxd-mine-alice"}
    assert {"$label1", "\\Flagged"} <= flags[1] and "\\Seen" not in flags[1]

    # A new cycle (a restarted daemon: new poller, new sink) writes nothing: Dovecot's
    # HIGHESTMODSEQ stays where it was, and so does inboxd's own STORE count.
    before, sent = box.highest(), stores(config)
    assert sent > 0
    cycle(config)
    cycle(config)
    assert (box.highest(), stores(config)) == (before, sent)

    assert Client(dovecot, imap_user, "Sent").flags() == {1: set()}
    status = json.loads(cli(config, "status", "--json").stdout)
    inbox = next(f for f in status["mailboxes"][0]["folders"] if f["folder"] == "INBOX")
    assert inbox["write_back"]["keywords"] == "keywords" and inbox["write_back"]["stores"] == sent
    sent_folder = next(f for f in status["mailboxes"][0]["folders"] if f["folder"] == "Sent")
    assert sent_folder["write_back"] is None

    # Merged: the message moves to the other ticket and takes its keywords; the old ref goes.
    as_alice(config, "merge", "T-1001", "T-1000")
    cycle(config)
    assert ours(box.flags()[3]) == ours(box.flags()[1]) == {"T-1000", "$inboxd-pending", "$inboxd-mine-alice",
                                                            "$inboxd-&kABrPg-"}


def test_overdue_appears_when_the_promise_breaks_and_leaves_when_answered(tmp_path, dovecot, imap_user):
    config = configure(tmp_path, dovecot, imap_user, write_back=True, seen_on_close=False, extra=SLA)
    now = datetime.now(UTC).replace(microsecond=0)
    dovecot.append(imap_user, "INBOX", make_mail(), when=now)
    cycle(config, now)
    box = Client(dovecot, imap_user)
    cycle(config, now + timedelta(hours=1))
    assert "$inboxd-overdue" not in box.flags()[1]
    cycle(config, now + timedelta(hours=5))
    assert "$inboxd-overdue" in box.flags()[1]
    as_alice(config, "status", "T-1000", "solved")
    cycle(config, now + timedelta(hours=6))
    assert ours(box.flags()[1]) == {"T-1000", "$inboxd-solved"}


def test_seen_follows_close_and_reopen_and_nothing_else(tmp_path, dovecot, imap_user):
    config = configure(tmp_path, dovecot, imap_user, write_back=False, seen_on_close=True)
    dovecot.append(imap_user, "INBOX", make_mail(subject="Printer on fire"))
    dovecot.append(imap_user, "INBOX", make_mail(frm="Han Meimei <han@example.cn>", subject="Invoice missing"))
    box = Client(dovecot, imap_user)
    cycle(config)
    # Syncing never sets \Seen (BODY.PEEK), and write_back is off: no keywords.
    assert box.flags() == {1: set(), 2: set()}
    # A reader opens the second mail: its \Seen is the reader's, and stays.
    box.set(2, "\\Seen")

    as_alice(config, "status", "T-1000", "solved")
    cycle(config)
    assert box.flags() == {1: {"\\Seen"}, 2: {"\\Seen"}}

    mod2 = box.modseqs()[2]
    as_alice(config, "tag", "T-1001", "billing")
    as_alice(config, "status", "T-1001", "pending")
    cycle(config)
    # An open ticket's message is never touched: same flags, same MODSEQ.
    assert box.flags()[2] == {"\\Seen"} and box.modseqs()[2] == mod2

    as_alice(config, "reopen", "T-1000")
    cycle(config)
    assert box.flags()[1] == set()
    dovecot.append(imap_user, "INBOX", make_mail(frm="Wang Fang <wang@example.cn>", subject="New question"))
    cycle(config)
    assert box.flags()[3] == set()
    before = box.highest()
    cycle(config)
    assert box.highest() == before


def test_with_write_back_off_nothing_is_written(tmp_path, dovecot, imap_user):
    config = configure(tmp_path, dovecot, imap_user, write_back=False, seen_on_close=False)
    dovecot.append(imap_user, "INBOX", make_mail())
    box = Client(dovecot, imap_user)
    before = box.highest()
    cycle(config)
    as_alice(config, "take", "T-1000")
    as_alice(config, "tag", "T-1000", "vip")
    as_alice(config, "status", "T-1000", "solved")
    cycle(config)
    assert box.flags() == {1: set()}
    assert box.highest() == before
    assert db_count(config, "SELECT COUNT(*) FROM writeback") == 0
    status = json.loads(cli(config, "status", "--json").stdout)
    assert all(f["write_back"] is None for f in status["mailboxes"][0]["folders"])


# The acl plugin with a folder whose ACL lacks "w" (write flags other than \Seen and \Deleted): Dovecot then
# answers SELECT with PERMANENTFLAGS (\Deleted \Seen), no \*, and ignores keywords in STORE, as a
# server without custom keywords does (Exchange / Microsoft 365 IMAP).
ACL = """
mail_plugins = $mail_plugins acl
plugin {
  acl = vfile
}
"""


@pytest.fixture
def acl_dovecot():
    root = Path(tempfile.mkdtemp(prefix="inboxd-dovecot-"))
    server = Dovecot(root, extra_config=ACL)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_a_folder_that_refuses_keywords_gets_none_and_status_says_so(tmp_path, acl_dovecot):
    user = "shared"
    acl_dovecot.add_user(user)
    acl_dovecot.create_folder(user, "Locked")
    acl = acl_dovecot.root / "home" / user / "Maildir" / ".Locked" / "dovecot-acl"
    acl.write_text("owner lrsipkxtea\n")
    mail_user = pwd.getpwnam(MAIL_USER)
    os.chown(acl, mail_user.pw_uid, mail_user.pw_gid)
    config = configure(tmp_path, acl_dovecot, user, write_back=True, seen_on_close=True, folders=("INBOX", "Locked"))
    acl_dovecot.append(user, "INBOX", make_mail(subject="In the inbox"))
    acl_dovecot.append(user, "Locked", make_mail(frm="Han Meimei <han@example.cn>", subject="In the locked folder"))
    cycle(config)
    inbox, locked = Client(acl_dovecot, user), Client(acl_dovecot, user, "Locked")
    assert ours(inbox.flags()[1]) == {"T-1000", "$inboxd-open"}
    assert locked.flags() == {1: set()}

    status = json.loads(cli(config, "status", "--json").stdout)
    rows = {f["folder"]: f["write_back"] for f in status["mailboxes"][0]["folders"]}
    assert rows["INBOX"]["keywords"] == "keywords"
    assert rows["Locked"]["keywords"] == "refused" and rows["Locked"]["seen"] == "written"
    text = cli(config, "status").stdout
    assert "refuses custom keywords" in text

    # \Seen is still allowed there, so seen_on_close works; keywords stay off and nothing is retried.
    ticket = "T-1001"
    as_alice(config, "status", ticket, "solved")
    cycle(config)
    assert locked.flags() == {1: {"\\Seen"}}
    before = locked.highest()
    cycle(config)
    assert locked.highest() == before


def test_a_large_backlog_is_written_over_several_passes(tmp_path, dovecot, imap_user, monkeypatch):
    """Turning write_back on for a folder of old mail writes a bounded number of STOREs per pass."""
    import inboxd.sync.imap as imap

    monkeypatch.setattr(imap, "WRITE_BUDGET", 1)
    config = configure(tmp_path, dovecot, imap_user, write_back=True, seen_on_close=False)
    for who in ("a", "b", "c"):
        dovecot.append(imap_user, "INBOX", make_mail(frm=f"{who} <{who}@example.cn>", subject=f"Question {who}"))
    box = Client(dovecot, imap_user)
    written = []
    for _ in range(4):
        cycle(config)
        written.append(sum(1 for f in box.flags().values() if ours(f)))
    assert written == [1, 2, 3, 3]


def test_a_refused_store_is_retried_and_never_stops_the_others(tmp_path):
    """Dovecot refuses keywords over mail_max_keyword_length with NO [CANNOT]: that ticket's write waits
    (status shows the error), the other ticket's goes through, and once the server takes it, it is written."""
    root = Path(tempfile.mkdtemp(prefix="inboxd-dovecot-"))
    server = Dovecot(root, extra_config="mail_max_keyword_length = 20\n")
    try:
        server.start()
        user = "shared"
        server.add_user(user)
        config = configure(tmp_path, server, user, write_back=True, seen_on_close=False)
        server.append(user, "INBOX", make_mail(subject="First"))
        server.append(user, "INBOX", make_mail(frm="Han Meimei <han@example.cn>", subject="Second"))
        cycle(config)
        box = Client(server, user)
        as_alice(config, "tag", "T-1000", "a-rather-long-tag")
        as_alice(config, "tag", "T-1001", "vip")
        cycle(config)
        flags = box.flags()
        assert ours(flags[1]) == {"T-1000", "$inboxd-open"}
        assert ours(flags[2]) == {"T-1001", "$inboxd-open", "$inboxd-vip"}
        status = json.loads(cli(config, "status", "--json").stdout)
        inbox = status["mailboxes"][0]["folders"][0]
        assert inbox["state"] == "ok" and "too long" in inbox["write_back"]["error"]

        server.extra_config = ""
        server.restart()
        cycle(config)
        assert ours(box.flags()[1]) == {"T-1000", "$inboxd-open", "$inboxd-a-rather-long-tag"}
        status = json.loads(cli(config, "status", "--json").stdout)
        assert status["mailboxes"][0]["folders"][0]["write_back"]["error"] == ""
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)
