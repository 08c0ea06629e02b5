"""Which file serves a template name is looked up once per LOOKUP_SECONDS; an edited file counts at once.

Pure: a folder of templates and the module's clock (time.monotonic as the
templates module sees it), no server, no sleeping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inboxd.outbound import templates as module
from inboxd.outbound.templates import TemplateError, Templates


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(module.time, "monotonic", clock.monotonic)
    return clock


def put(root: Path, name: str, text: str, *, mtime: float | None = None) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_an_override_added_later_serves_once_the_lookup_expires(tmp_path, clock):
    put(tmp_path, "en/ack/body.txt", "english")
    templates = Templates(tmp_path)
    assert templates.render("ack/body.txt", {}, mailbox="billing") == "english"
    put(tmp_path, "mailboxes/billing/ack/body.txt", "billing")
    clock.now += module.LOOKUP_SECONDS - 0.5
    assert templates.render("ack/body.txt", {}, mailbox="billing") == "english"
    clock.now += 1
    assert templates.render("ack/body.txt", {}, mailbox="billing") == "billing"


def test_an_edited_template_counts_at_once(tmp_path, clock):
    put(tmp_path, "en/ack/body.txt", "before", mtime=1_700_000_000)
    templates = Templates(tmp_path)
    assert templates.render("ack/body.txt", {}) == "before"
    put(tmp_path, "en/ack/body.txt", "after", mtime=1_700_000_100)
    assert templates.render("ack/body.txt", {}) == "after"


def test_a_removed_template_is_missed_once_the_lookup_expires(tmp_path, clock):
    put(tmp_path, "en/ack/body.txt", "english")
    put(tmp_path, "mailboxes/billing/ack/body.txt", "billing")
    templates = Templates(tmp_path)
    assert templates.render("ack/body.txt", {}, mailbox="billing") == "billing"
    (tmp_path / "mailboxes/billing/ack/body.txt").unlink()
    clock.now += module.LOOKUP_SECONDS
    assert templates.render("ack/body.txt", {}, mailbox="billing") == "english"
    (tmp_path / "en/ack/body.txt").unlink()
    clock.now += module.LOOKUP_SECONDS
    with pytest.raises(TemplateError, match="no template found"):
        templates.render("ack/body.txt", {}, mailbox="billing")


def test_the_html_part_follows_the_same_lookup(tmp_path, clock):
    for name, text in {"en/ack/subject.txt": "s", "en/ack/body.txt": "t"}.items():
        put(tmp_path, name, text)
    templates = Templates(tmp_path)
    assert templates.render_ack({}, mailbox="support", language="en")[2] is None
    put(tmp_path, "en/ack/body.html", "<p>h</p>")
    assert templates.render_ack({}, mailbox="support", language="en")[2] is None
    clock.now += module.LOOKUP_SECONDS
    assert templates.render_ack({}, mailbox="support", language="en")[2] == "<p>h</p>"
