"""The parser worker: parse a fetched batch in a second process.

It also puts attachment content on disk, so only the small parsed messages
travel back to the daemon.  It imports nothing but the parser, which keeps
the worker process small.  A large mail (over largemail.LARGE_MESSAGE_BYTES)
is parsed by `largemail.parse_large`, which decodes its big attachments
straight to disk; the store parses those in the daemon rather than copy
them to the worker.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from inboxd.mail.attachments import save_attachment
from inboxd.mail.largemail import LARGE_MESSAGE_BYTES, parse_large
from inboxd.mail.message import InboundMessage, MalformedMessage, parse_message
from inboxd.mail.quotes import reply_text


def parse_one(raw: bytes, max_attachment_bytes: int, data_dir: Path | None = None) -> InboundMessage | MalformedMessage:
    """Parse `raw` and find its reply text; with `data_dir`, attachments are saved and their content dropped.  Never raises."""
    try:
        if data_dir is not None and len(raw) > LARGE_MESSAGE_BYTES:
            msg = parse_large(raw, max_attachment_bytes, data_dir)
        else:
            msg = parse_message(raw, max_attachment_bytes=max_attachment_bytes)
    except MalformedMessage as exc:
        return exc
    except Exception as exc:  # A parser bug becomes a quarantine reason.
        return MalformedMessage(f"parse error: {type(exc).__name__}: {exc}")
    # The quote stripping is a tenth of filing a mail; here it runs in the
    # worker, beside the filing thread.  (It never raises: a body it cannot
    # read is kept whole.)
    msg = replace(msg, reply_text=reply_text(msg.text))
    if data_dir is None or not msg.attachments:
        return msg
    for att in msg.attachments:
        if att.content is not None:
            save_attachment(data_dir, att.sha256, att.content)
    return replace(msg, attachments=tuple(replace(a, content=None) for a in msg.attachments))


# How often a worker checks that the daemon that started it is still there.
PARENT_CHECK_SECONDS = 0.2


def watch_parent(parent_pid: int) -> None:
    """Pool initializer: end this worker within a fraction of a second of its daemon's death.

    A pool worker waits on a pipe that only the daemon writes to; when the
    daemon is SIGKILLed nothing ever closes it, so the worker (and with it
    multiprocessing's resource tracker, which waits for every process that
    holds its pipe) would stay for ever.  A daemon thread compares the
    parent pid with the one that started us; an orphan is adopted by
    another process, and then exits at once.

    Linux could signal us instead (prctl PR_SET_PDEATHSIG), but that fires
    when the *thread* that started the worker ends, and the pool starts its
    workers from whichever thread submits first: a prefetch thread that
    ends with its folder's sync.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def parse_many(raws: list[bytes], max_attachment_bytes: int, data_dir: Path) -> list[InboundMessage | MalformedMessage]:
    return [parse_one(raw, max_attachment_bytes, data_dir) for raw in raws]
