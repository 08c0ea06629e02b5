"""Terminal escape injection: what the CLI prints from customers' mail."""

from __future__ import annotations

import base64
import json
import re

from sqlalchemy import select

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.cli.terminal import printable
from inboxd.store.sql import t
from tests.support import cli, store_engine, write_config

# Everything a terminal would act on: C0 controls but tab and newline, DEL,
# C1 controls, line separators and the bidirectional overrides.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_printable_shows_controls_as_visible_escapes():
    """Defect: raw ESC, C1 and bidi characters from mail reached the agent's terminal."""
    assert printable("a\x1b]52;c;ZXZpbA==\x07b") == "a\\x1b]52;c;ZXZpbA==\\x07b"
    assert printable("\x9b2J\x7f\r") == "\\x9b2J\\x7f\\x0d"
    assert printable("abc\u202etxt.exe\u2066") == "abc\\u202etxt.exe\\u2066"
    # Newline and tab are text; everything else printable stays as it is.
    assert printable("line 1\n\tline 2 订单 «ok»") == "line 1\n\tline 2 订单 «ok»"


def _b(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


# OSC 52 writes the clipboard, CSI 2J clears the screen, then a fake prompt.
SUBJECT = "Invoice \x1b]52;c;cm0gLXJmIH4=\x07 \x1b[2J\x1b[H$ sudo ls \x9b1m\u202etxt.exe"
NAME = "\x1b[8mEvil\x1b[0m \x9d0;title\x07Corp"
BODY = "Hello,\r\n\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x1b[Huser@host:~$ \x1b[?25l\r\nthanks \u202egnp.exe\r\n"


def _hostile_mail() -> bytes:
    head = (
        f"From: {_b(NAME)} <evil@escape.example>\r\n"
        "To: support@example.com\r\n"
        f"Subject: {_b(SUBJECT)}\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        "Message-ID: <escape-1@escape.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return head.encode() + BODY.encode()


def test_show_and_list_print_no_terminal_escapes_but_json_is_exact(tmp_path, dovecot, imap_user):
    """Defect: `inboxd show` printed raw ESC sequences from customer mail (OSC 52
    clipboard write, screen clear, fake prompt) and `list` printed one."""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    dovecot.append(imap_user, "INBOX", _hostile_mail())
    assert run_once(load_settings(config), workers=0).failed == []

    listed = cli(config, "list").stdout
    shown = cli(config, "show", "T-1000").stdout
    history = cli(config, "history", "T-1000").stdout
    for output in (listed, shown, history):
        assert not UNSAFE.search(output), [c for c in UNSAFE.findall(output)]
    # The agent still sees that something was there.
    assert "\\x1b]52;" in listed and "\\x1b[2J" in shown and "\\x9d0;title" in shown
    assert "\\u202egnp.exe" in shown

    # JSON carries the mail exactly as it was received (json escapes the controls itself).
    as_json = json.loads(cli(config, "show", "T-1000", "--json").stdout)
    m = t.message.c
    with store_engine(config).connect() as conn:
        stored_text, stored_subject, stored_name = conn.execute(select(m.text, m.subject, m.from_name)).one()
    [message] = as_json["messages"]
    assert message["text"] == stored_text and "\x1b]52;c;" in message["text"]
    assert message["subject"] == stored_subject and "\x1b[2J" in message["subject"]
    assert message["from_name"] == stored_name and "\x9d0;title" in message["from_name"]
    assert as_json["subject"] == SUBJECT
    listed_json = json.loads(cli(config, "list", "--json").stdout)
    assert listed_json[0]["subject"] == SUBJECT
