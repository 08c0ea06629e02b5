"""The parser worker: parse a fetched batch in a second process.

It also puts attachment content on disk, so only the small parsed messages
travel back to the daemon.  It imports nothing but the parser, which keeps
the worker process small.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from inboxd.attachments import save_attachment
from inboxd.message import InboundMessage, MalformedMessage, parse_message


def parse_one(raw: bytes, max_attachment_bytes: int, data_dir: Path | None = None) -> InboundMessage | MalformedMessage:
    """Parse `raw`; with `data_dir`, attachments are saved and their content dropped.  Never raises."""
    try:
        msg = parse_message(raw, max_attachment_bytes=max_attachment_bytes)
    except MalformedMessage as exc:
        return exc
    except Exception as exc:  # A parser bug becomes a quarantine reason.
        return MalformedMessage(f"parse error: {type(exc).__name__}: {exc}")
    if data_dir is None or not msg.attachments:
        return msg
    for att in msg.attachments:
        if att.content is not None:
            save_attachment(data_dir, att.sha256, att.content)
    return replace(msg, attachments=tuple(replace(a, content=None) for a in msg.attachments))


def parse_many(raws: list[bytes], max_attachment_bytes: int, data_dir: Path) -> list[InboundMessage | MalformedMessage]:
    return [parse_one(raw, max_attachment_bytes, data_dir) for raw in raws]
