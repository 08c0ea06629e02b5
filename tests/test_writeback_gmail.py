"""Gmail labels instead of keywords (issue 16, item 6), checked against a scripted IMAP responder.

No Gmail is reachable from CI.  The responder below is a small IMAP server
on loopback that announces X-GM-EXT-1 and answers what a sync sends (LOGIN,
CAPABILITY, SELECT/EXAMINE, UID SEARCH, UID FETCH, UID STORE, LOGOUT) the
way Google's IMAP extension documentation describes; it records every
command and keeps each message's labels and flags.  The poller, the store
and imapclient run unchanged: only the server is small.  What it proves:
on a server with X-GM-EXT-1 inboxd writes `UID STORE ... +X-GM-LABELS.SILENT`
/ `-X-GM-LABELS.SILENT` with the "inboxd/..." labels and never a keyword,
\\Seen still goes through FLAGS, and the sync fetches with BODY.PEEK.
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import cli, db_count, write_config

_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r\n\Z")
_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"|([^\s()]+)')


class GmailResponder:
    """A scripted IMAP server with one folder (INBOX) and the Gmail extension."""

    def __init__(self, messages: list[bytes]):
        self.messages = {uid: raw for uid, raw in enumerate(messages, start=1)}
        self.labels: dict[int, set[str]] = {uid: {"\\Inbox"} for uid in self.messages}
        self.flags: dict[int, set[str]] = {uid: set() for uid in self.messages}
        self.commands: list[str] = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        send = conn.sendall
        send(b"* OK Gimap ready for requests\r\n")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                while (m := _LITERAL.search(line)):
                    if not m.group(2):
                        send(b"+ go ahead\r\n")
                    line = line[:m.start()] + b'"' + reader.read(int(m.group(1))) + b'"' + reader.readline()
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                with self.lock:
                    self.commands.append(rest.decode())
                if not self._answer(tag, rest, send):
                    return
        finally:
            conn.close()

    def _answer(self, tag: bytes, rest: bytes, send) -> bool:
        words = rest.split(b" ")
        cmd = words[0].upper()
        if cmd == b"CAPABILITY":
            send(b"* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS"
                 b" AUTH=PLAIN\r\n")
        elif cmd in (b"SELECT", b"EXAMINE"):
            send(b"* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing)\r\n"
                 b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing"
                 b" \\*)] Flags permitted.\r\n"
                 b"* OK [UIDVALIDITY 11] UIDs valid.\r\n"
                 + f"* {len(self.messages)} EXISTS\r\n* 0 RECENT\r\n* OK [UIDNEXT {len(self.messages) + 1}]"
                   " Predicted next UID.\r\n".encode())
            send(tag + (b" OK [READ-ONLY] " if cmd == b"EXAMINE" else b" OK [READ-WRITE] ") + cmd + b" done\r\n")
            return True
        elif cmd == b"UID" and words[1].upper() == b"SEARCH":
            send(b"* SEARCH " + b" ".join(str(u).encode() for u in sorted(self.messages)) + b"\r\n")
        elif cmd == b"UID" and words[1].upper() == b"FETCH":
            self._fetch(self._uids(words[2]), b" ".join(words[3:]).upper(), send)
        elif cmd == b"UID" and words[1].upper() == b"STORE":
            self._store(self._uids(words[2]), words[3].decode(), b" ".join(words[4:]))
        elif cmd == b"LOGOUT":
            send(b"* BYE LOGOUT Requested\r\n" + tag + b" OK 73 good day (Success)\r\n")
            return False
        send(tag + b" OK Success\r\n")
        return True

    def _uids(self, spec: bytes) -> list[int]:
        out: list[int] = []
        top = max(self.messages)
        for part in spec.decode().split(","):
            lo, _, hi = part.partition(":")
            lo_n = top if lo == "*" else int(lo)
            hi_n = lo_n if not hi else (top if hi == "*" else int(hi))
            out += [u for u in range(min(lo_n, hi_n), max(lo_n, hi_n) + 1) if u in self.messages]
        return out

    def _fetch(self, uids: list[int], items: bytes, send) -> None:
        for uid in uids:
            raw = self.messages[uid]
            head = f"* {uid} FETCH (UID {uid}"
            if b"RFC822.SIZE" in items:
                head += f' RFC822.SIZE {len(raw)} INTERNALDATE "30-Nov-2026 10:00:00 +0000"'
            if b"FLAGS" in items:
                head += f" FLAGS ({' '.join(sorted(self.flags[uid]))})"
            if b"BODY.PEEK[]" in items:
                send(f"{head} BODY[] {{{len(raw)}}}\r\n".encode() + raw + b")\r\n")
            else:
                send(head.encode() + b")\r\n")

    def _store(self, uids: list[int], op: str, args: bytes) -> None:
        names = [(q or a).decode() for q, a in _TOKEN.findall(args)]
        target = self.labels if "X-GM-LABELS" in op.upper() else self.flags
        for uid in uids:
            if op.startswith("+"):
                target[uid] |= set(names)
            else:
                target[uid] -= set(names)


@pytest.fixture
def gmail():
    first = make_message_id()
    server = GmailResponder([
        make_mail(message_id=first),
        make_mail(subject="Re: Cannot log in to my account", in_reply_to=first, references=[first],
                  message_id=make_message_id()),
        make_mail(frm="Han Meimei <han@example.cn>", subject="Invoice missing"),
    ])
    yield server
    server.close()


def configure(tmp_path: Path, server: GmailResponder) -> Path:
    fake = SimpleNamespace(host="127.0.0.1", port=server.port, ssl_port=server.port, ca_file="")
    config = write_config(tmp_path, fake, [{"name": "support", "user": "desk@gmail.example"}], security="none",
                          idle=False)
    config.write_text(config.read_text().replace(
        "[mailboxes.imap]\n", "[mailboxes.imap]\nwrite_back = true\nseen_on_close = true\n"))
    return config


def cycle(config: Path) -> None:
    report = run_once(load_settings(config), workers=0)
    assert report.failed == [], report.statuses


def test_gmail_gets_labels_not_keywords_and_seen_through_flags(tmp_path, gmail):
    config = configure(tmp_path, gmail)
    cycle(config)
    stores = [c for c in gmail.commands if c.upper().startswith("UID STORE")]
    assert stores, gmail.commands
    assert all("X-GM-LABELS.SILENT" in c for c in stores), stores
    assert gmail.labels[1] == gmail.labels[2] == {"\\Inbox", "inboxd/T-1000", "inboxd/open"}
    assert gmail.labels[3] == {"\\Inbox", "inboxd/T-1001", "inboxd/open"}
    # Syncing reads with BODY.PEEK (never setting \Seen) and writes no keyword or flag.
    assert any("BODY.PEEK[]" in c for c in gmail.commands)
    assert all(flags == set() for flags in gmail.flags.values())
    # Messages with the same change share one STORE: both of T-1000's messages in one command.
    assert any(re.match(r"UID STORE 1[,:]2 \+X-GM-LABELS\.SILENT", c) for c in stores), stores

    cli(config, "--as", "alice", "tag", "T-1000", "退款")
    cli(config, "--as", "alice", "status", "T-1000", "solved")
    cycle(config)
    # The label "inboxd/退款" on the wire: modified UTF-7, which Gmail shows decoded.
    assert gmail.labels[1] == {"\\Inbox", "inboxd/T-1000", "inboxd/solved", "inboxd/&kABrPg-"}
    assert gmail.flags[1] == gmail.flags[2] == {"\\Seen"} and gmail.flags[3] == set()
    later = [c for c in gmail.commands if c.upper().startswith("UID STORE")][len(stores):]
    # Non-ASCII labels travel in modified UTF-7, as Gmail expects; \Seen goes through FLAGS.
    assert any("-X-GM-LABELS.SILENT" in c and "inboxd/open" in c for c in later), later
    assert any(re.search(r"\+FLAGS\.SILENT \(\\Seen\)", c) for c in later), later

    # A further cycle writes nothing (the store knows what Gmail has).
    count = len(gmail.commands)
    cycle(config)
    assert not any(c.upper().startswith("UID STORE") for c in gmail.commands[count:])


def test_one_gmail_mail_in_two_labels_is_one_message(tmp_path, gmail):
    """Gmail shows a mail once per label (folder); the responder gives every folder the same mails.

    The store keys a message by its Message-ID (or content hash), so the
    same mail under INBOX and the "Support" label is one message with two
    sightings, on one ticket; writing its labels through either folder
    changes the one Gmail message.
    """
    config = configure(tmp_path, gmail)
    config.write_text(config.read_text().replace('folders = ["INBOX"]', 'folders = ["INBOX", "Support"]'))
    cycle(config)
    assert db_count(config, "SELECT COUNT(*) FROM message") == 3
    assert db_count(config, "SELECT COUNT(*) FROM sighting") == 6
    assert db_count(config, "SELECT COUNT(*) FROM ticket") == 2
    assert gmail.labels[1] == {"\\Inbox", "inboxd/T-1000", "inboxd/open"}
