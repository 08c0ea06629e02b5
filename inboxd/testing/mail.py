"""Build realistic raw email messages (bytes) for tests, in any charset a mail client uses.

The message is built with the compat32 API on purpose: `email.policy.default`
re-encodes every header as UTF-8, while real Chinese and Japanese mail carries
RFC 2047 words in GBK, Big5 or ISO-2022-JP, and inboxd must read those.
"""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from email import encoders, policy
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, getaddresses, parseaddr

# Unique Message-IDs within one test run, and across runs thanks to the pid and time.
_counter = itertools.count(1)


def make_message_id(domain: str = "example.cn") -> str:
    """A new unique Message-ID such as <20250101.1234.7@example.cn>."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")
    return f"<{stamp}.{os.getpid()}.{next(_counter)}@{domain}>"


def make_mail(
    *,
    frm: str = "Li Lei <lilei@example.cn>",
    to: str | Sequence[str] = "support@example.com",
    subject: str = "Cannot log in to my account",
    body: str | None = "Hello,\n\nI cannot log in since yesterday.\n\nLi Lei\n",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Iterable[str] = (),
    charset: str = "utf-8",
    html: str | None = None,
    headers: Mapping[str, str | None] | None = None,
    date: datetime | None = None,
    attachments: Iterable[tuple[str, bytes, str]] = (),
) -> bytes:
    """Return one RFC 5322 message as CRLF bytes, as a mail client would send it.

    Subject and display names are RFC 2047 words in `charset` (when not ASCII)
    and the text parts are encoded in `charset`.  With both `body` and `html`
    the text is multipart/alternative; with `body=None` it is HTML only.
    `attachments` are (filename, content, "type/subtype").  `headers` adds
    headers or replaces default ones; a value of None removes the header (e.g.
    {"Message-ID": None} for a message without one).
    """
    if body is None and html is None:
        raise ValueError("a message needs a body or html")
    message = _text_part(body, html, charset)
    attachments = list(attachments)
    if attachments:
        mixed = MIMEMultipart("mixed")
        _attach(mixed, message)
        for filename, content, mimetype in attachments:
            _attach(mixed, _attachment(filename, content, mimetype))
        message = mixed

    sender_domain = parseaddr(frm)[1].rpartition("@")[2] or "example.com"
    recipients = [to] if isinstance(to, str) else list(to)
    when = date if date is not None else datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    values: dict[str, str | None] = {
        "From": _addresses([frm], charset),
        "To": _addresses(recipients, charset),
        "Subject": _encoded_words(subject, charset),
        "Date": format_datetime(when),
        "Message-ID": message_id or make_message_id(sender_domain),
    }
    if in_reply_to:
        values["In-Reply-To"] = in_reply_to
    references = list(references)
    if references:
        values["References"] = " ".join(references)
    values.update(headers or {})

    # The MIME headers were set by the part constructors; put the envelope headers first, as clients do.
    mime_headers = [(name, value) for name, value in message.items() if name != "MIME-Version"]
    for name in set(message.keys()):
        del message[name]
    for name, value in values.items():
        if value is not None:
            message[name] = value
    if "MIME-Version" not in message:
        message["MIME-Version"] = "1.0"
    for name, value in mime_headers:
        if name not in message:
            message[name] = value
    return message.as_bytes(policy=policy.compat32.clone(linesep="\r\n"))


def _text_part(body: str | None, html: str | None, charset: str) -> Message:
    parts = [MIMEText(text, subtype, charset) for text, subtype in ((body, "plain"), (html, "html")) if text is not None]
    if len(parts) == 1:
        return parts[0]
    alternative = MIMEMultipart("alternative")
    for part in parts:
        _attach(alternative, part)
    return alternative


def _attach(container: Message, part: Message) -> None:
    # The email.mime classes give every part a MIME-Version; clients put it only at the top.
    del part["MIME-Version"]
    container.attach(part)


def _attachment(filename: str, content: bytes, mimetype: str) -> Message:
    maintype, _, subtype = mimetype.partition("/")
    part = MIMEBase(maintype, subtype or "octet-stream")
    part.set_payload(content)
    encoders.encode_base64(part)
    # Non-ASCII names use RFC 2231 (filename*=utf-8''...), as modern clients write them.
    name: str | tuple[str, str, str] = filename if filename.isascii() else ("utf-8", "", filename)
    part.add_header("Content-Disposition", "attachment", filename=name)
    return part


def _addresses(addresses: Sequence[str], charset: str) -> str:
    formatted = []
    for name, address in getaddresses(list(addresses)):
        if name.isascii():
            formatted.append(formataddr((name, address)))
        else:
            formatted.append(f"{_encoded_words(name, charset)} <{address}>")
    return ", ".join(formatted)


def _encoded_words(text: str, charset: str) -> str:
    """RFC 2047 B-encoded words in `charset`, short enough to share a line with "Subject: ".

    Written by hand because email.header labels some charsets with Python's
    codec name (big5 becomes "big5_tw"), which real clients never send.  Each
    word is encoded on its own, so ISO-2022-JP words end in ASCII state.
    """
    if text.isascii():
        return text
    words: list[str] = []
    chunk = ""
    for char in text:
        if chunk and len(_b_word(chunk + char, charset)) > 66:
            words.append(_b_word(chunk, charset))
            chunk = ""
        chunk += char
    words.append(_b_word(chunk, charset))
    return " ".join(words)


def _b_word(text: str, charset: str) -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode('ascii')}?="
