"""Turn an outgoing mail's parts into the exact bytes the sender will hand to SMTP.

This module is pure: no I/O, no clock, no randomness.  The caller passes `now`
and the unique part of the Message-ID, so the same inputs always give the same
bytes (which is what lets the tests compare whole messages with golden files).

Much of what goes into a header here comes from customers (their names, their
subjects, the ids of their messages), so every header value is sanitised before
it is set and every address is validated: a value can never start a header of
its own, and a bad address is a ValueError rather than a malformed message.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import _encoded_words as _ew
from email import _header_value_parser as parser
from email import policy
from email.contentmanager import _encode_text
from email.header import Header
from email.headerregistry import (Address, AddressHeader, DateHeader, HeaderRegistry, MIMEVersionHeader,
                                  UnstructuredHeader)
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote, unquote

from inboxd.outbound.loop import HEADER_NAMES, loop_headers
from inboxd.desk.threads import TicketTag

# RFC 5322 advises keeping References short; clients cope with 20 at most.
MAX_REFERENCES = 20

# A display name longer than this is cut, ending in an ellipsis: nobody's
# name is longer, and a customer's 200 KB "name" made a header no server takes.
MAX_DISPLAY_NAME = 200

# RFC 5322 2.1.1: a line SHOULD be at most 78 characters and MUST be at most
# 998, without its CRLF.  Servers refuse longer ones ("500 Line too long").
MAX_LINE = 998
# Message ids from customers' mail longer than this are dropped: " <id>" must
# fit one line, and no mail client writes ids anywhere near this long.
MAX_ID_LENGTH = 900

# Headers compose() sets itself; an extra header must not replace or repeat them.
_RESERVED = frozenset(h.lower() for h in (
    "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
    *HEADER_NAMES, "Return-Path", "Sender",
))

# An RFC 5322 field name: printable ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")

# Addresses we send to: a dot-atom local part and an ASCII domain.  Quoted local
# parts and internationalised addresses would need SMTPUTF8, which we don't rely on.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_DOMAIN}")
_DOMAIN_RE = re.compile(_DOMAIN)

# A message id we are willing to write: printable ASCII, no spaces, no angle brackets.
_MSG_ID = re.compile(r"[!-;=?-~]+")

_OUR_ID = re.compile(r"<?inboxd\.((?:[A-Za-z0-9-]|%[0-9A-F]{2})+)\.[A-Za-z0-9_-]+@[^\s<>@]+>?")
_UNIQUE = re.compile(r"[A-Za-z0-9_-]+")


def new_message_id(ticket_ref: str, domain: str, *, unique: str) -> str:
    """Our Message-ID, without <>, e.g. "inboxd.T-1000.3f2a@example.com".

    The ticket is encoded in the id so that a reply threads even when the
    customer's client drops the subject tag.
    """
    if not ticket_ref:
        raise ValueError("a Message-ID needs a ticket reference")
    if not _UNIQUE.fullmatch(unique):
        raise ValueError(f"unique part {unique!r} must be letters, digits, '-' or '_'")
    if not _DOMAIN_RE.fullmatch(domain):
        raise ValueError(f"{domain!r} is not a domain name")
    # Only [A-Za-z0-9-] stays as it is, so the ref never contains the dots that delimit it.
    safe_ref = quote(ticket_ref, safe="-").replace(".", "%2E").replace("_", "%5F").replace("~", "%7E")
    return f"inboxd.{safe_ref}.{unique}@{domain}"


def ticket_ref_from_message_id(message_id: str) -> str | None:
    """The ticket reference encoded by new_message_id, or None for anyone else's id."""
    match = _OUR_ID.fullmatch(message_id.strip())
    if not match:
        return None
    try:
        return unquote(match.group(1), errors="strict")
    except UnicodeDecodeError:
        return None


def tagged_subject(subject: str, ticket_ref: str, tag: TicketTag, *, reply: bool = True) -> str:
    """The subject with the ticket's tag exactly once, e.g. "Re: [T-1000] Order late".

    Every reply/forward prefix and every ticket tag already in the subject are
    removed first, wherever they are, so the result never doubles either.  A
    reply gets one "Re: "; a message that is not a reply gets no prefix at all.
    """
    rest = tag.display_subject(sanitize(subject))
    rest = " ".join(rest.split())
    tagged = f"{tag.tag(ticket_ref)} {rest}".rstrip()
    return f"Re: {tagged}" if reply else tagged


# C0 and C1 controls (including CR, LF and TAB), and the Unicode line and
# paragraph separators, which str.splitlines() would also treat as line ends:
# every character of Unicode's categories Cc, Zl and Zp.  Unicode's stability
# policy fixes the Cc set, and the separators are the only Zl and Zp
# characters (tests/test_compose_sanitize.py checks the class against
# unicodedata).  One regular expression instead of a category lookup per
# character: sanitising was a tenth of the sender's time per acknowledgement.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def sanitize(value: str) -> str:
    """A header value with every control and line-breaking character replaced by a space."""
    return _CONTROL.sub(" ", value).strip()


def display_name(name: str) -> str:
    """A display name fit for a header: sanitised, and at most MAX_DISPLAY_NAME characters."""
    name = sanitize(name)
    if len(name) > MAX_DISPLAY_NAME:
        name = name[:MAX_DISPLAY_NAME - 1].rstrip() + "\u2026"
    return name


def check_address(address: str) -> str:
    """`address` if it is a plain ASCII address we can put on an envelope, else ValueError."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise ValueError(f"invalid email address {address!r}")
    return address


@dataclass(frozen=True)
class InlineImage:
    """A PNG the HTML part shows by "cid:<cid>" (a chart in the weekly report)."""

    cid: str
    filename: str
    png: bytes


@dataclass(frozen=True)
class Outgoing:
    message_id: str            # without <>
    sender: str                # envelope MAIL FROM (the mailbox address)
    recipients: tuple[str, ...]
    data: bytes                # the full RFC 5322 message, CRLF line endings, ready for SMTP


def compose(
    *,
    mailbox_address: str,
    from_name: str,
    to: Sequence[tuple[str, str]],
    subject: str,
    text: str,
    html: str | None = None,
    images: Sequence[InlineImage] = (),
    message_id: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    automatic: str | None = None,
    loop_value: str | None = None,
    extra_headers: Mapping[str, str] = {},
    now: datetime,
) -> Outgoing:
    """One outgoing message, as bytes for SMTP plus its envelope.

    `automatic` is the Auto-Submitted keyword of automatic mail (None for a
    person's) and `loop_value` our loop header's value; inboxd.outbound.loop says
    which headers they give.  `images` are shown by the HTML part, which
    they follow as related parts.
    """
    sender = check_address(mailbox_address)
    if not to:
        raise ValueError("a message needs at least one recipient")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    own_id = _strip_brackets(message_id)
    if not _MSG_ID.fullmatch(own_id):
        raise ValueError(f"invalid Message-ID {message_id!r}")
    for name in extra_headers:
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _RESERVED:
            raise ValueError(f"extra header {name!r} is not allowed")

    recipients: list[str] = []
    to_header: list[tuple[str, str]] = []
    for name, address in to:
        check_address(address)
        to_header.append((display_name(name), address))
        if address.lower() not in (r.lower() for r in recipients):
            recipients.append(address)
    if images and html is None:
        raise ValueError("inline images need an HTML part to show them")

    headers: list[tuple[str, object]] = [
        ("From", [(display_name(from_name), sender)]),
        ("To", to_header),
        ("Subject", sanitize(subject)),
        ("Date", format_datetime(now)),
        ("Message-ID", f"<{own_id}>"),
    ]
    parent, refs = _thread_ids(in_reply_to, references)
    if parent:
        headers.append(("In-Reply-To", f"<{parent}>"))
    if refs:
        headers.append(("References", " ".join(f"<{r}>" for r in refs)))
    headers.append(("MIME-Version", "1.0"))
    for name, value in loop_headers(automatic, None if loop_value is None else sanitize(loop_value)):
        headers.append((name, value))
    for name, value in extra_headers.items():
        headers.append((name, sanitize(value)))

    boundary = None
    if html is not None:
        # The generator would pick a random boundary; a digest of the content
        # keeps the bytes reproducible and cannot occur inside that content.
        seed = hashlib.sha256(f"{own_id}\0{text}\0{html}".encode())
        for image in images:
            seed.update(b"\0" + image.cid.encode() + b"\0" + image.png)
        boundary = f"=_inboxd_{seed.hexdigest()[:32]}"
    if images:
        data = _stdlib_bytes(headers, text, html, images, boundary)
    else:
        data = _direct_bytes(headers, text, html, boundary)
    _check_line_lengths(data)
    return Outgoing(message_id=own_id, sender=sender, recipients=tuple(recipients), data=data)


def _stdlib_bytes(headers: list[tuple[str, object]], text: str, html: str | None,
                  images: Sequence[InlineImage], boundary: str | None) -> bytes:
    """The message written by the email package: the reference that _direct_bytes matches byte for byte."""
    msg = EmailMessage(policy=_POLICY)
    for name, value in headers:
        msg[name] = _stdlib_value(value)
    msg.set_content(text, charset="utf-8")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
        html_part = msg.get_payload()[1]
        for image in images:
            html_part.add_related(image.png, maintype="image", subtype="png", cid=f"<{image.cid}>",
                                  filename=image.filename, disposition="inline")
        # The stdlib gives each part its own MIME-Version; only the top level needs one.
        for part in msg.walk():
            if part is not msg:
                del part["MIME-Version"]
        msg.set_boundary(boundary)
        if images:
            html_part.set_boundary(f"{boundary}_related")
    return msg.as_bytes()


# --- Writing the bytes directly.
#
# Building an EmailMessage costs milliseconds per mail, nearly all of it
# header objects parsed and folded again, and the same From, loop and MIME
# headers are rebuilt for every acknowledgement.  _direct_bytes writes what
# the email package would write (the tests compare the two on the golden
# mails and on many generated ones): a header whose folded form is plainly
# "Name: value" is written so, the constant ones are folded by the email
# package once and remembered, and only the rest (a long References list, a
# subject in Chinese) go through the email package, one header at a time.
# The bodies are encoded by the same function EmailMessage.set_content uses.

_LINESEP = "\r\n"
_NEWLINE = re.compile(r"\r\n|\r|\n")
# A value the email package writes as it is when it fits on the line: printable
# ASCII words separated by single spaces, nothing that looks like an encoded word.
_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")
# A display name written as it is: atext words separated by single spaces.
_ATOM_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A word of an unstructured value written as it is (see _PLAIN_VALUE).
_PLAIN_WORD = re.compile(r"[!-~]+")
# A word of a display name written as it is.
_ATOM_WORD = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
# A display name that is one encoded word: no ASCII and no space of any kind.
_WIDE_NAME = re.compile(r"[^\x00-\x7f\s\u0080-\u00a0\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]+")


def _stdlib_value(value: object) -> object:
    """A header's value as the email package takes it: the (name, address) pairs as Address objects."""
    if isinstance(value, list):
        return [Address(display_name=shown, addr_spec=addr_spec) for shown, addr_spec in value]
    return value


def _stdlib_header(name: str, value: object) -> str:
    """One header line as the email package writes it (CRLF included)."""
    return _POLICY.fold_binary(name, _POLICY.header_store_parse(name, _stdlib_value(value))[1]).decode("ascii")


@functools.lru_cache(maxsize=4096)
def _remembered_address(name: str, display: str, addr_spec: str) -> str:
    return _stdlib_header(name, [(display, addr_spec)])


@functools.lru_cache(maxsize=256)
def _written_as_given(name: str) -> bool:
    """Whether the email package writes a short plain value of this header as it is given:
    unstructured text, message ids, a date from format_datetime, the MIME version (not addresses)."""
    return issubclass(_HEADERS[name], (UnstructuredHeader, _MessageIdsHeader, DateHeader, MIMEVersionHeader))


def _header(name: str, value: object) -> str:
    if isinstance(value, str):
        if len(name) + 2 + len(value) <= 78 and _written_as_given(name) and "=?" not in value:
            if _PLAIN_VALUE.fullmatch(value):
                return f"{name}: {value}{_LINESEP}"
            # Plain words and one word of Chinese (say) with no space in it,
            # anywhere among them ("Re: [T-1001] 订单查询 #3"): that word alone
            # is written as an encoded word.
            written = _one_wide_word(value, _PLAIN_WORD)
            if written is not None and len(name) + 2 + len(written) <= 78:
                return f"{name}: {written}{_LINESEP}"
        return _stdlib_header(name, value)
    if name == "From" and len(value) == 1:
        return _remembered_address(name, *value[0])
    if len(value) == 1:
        line = _one_address(name, *value[0])
        if line is not None:
            return line
    return _stdlib_header(name, value)


def _one_wide_word(value: str, plain_word: re.Pattern) -> str | None:
    """`value` with its one wide word (see _WIDE_NAME) as an encoded word, if every other word
    (single spaces apart) matches `plain_word`; else None."""
    words = value.split(" ")
    wide = [i for i, word in enumerate(words) if not plain_word.fullmatch(word)]
    if len(wide) != 1 or not _WIDE_NAME.fullmatch(words[wide[0]]):
        return None
    words[wide[0]] = _ew.encode(words[wide[0]], charset="utf-8")
    return " ".join(words)


def _one_address(name: str, shown: str, addr_spec: str) -> str | None:
    """A one-address header the email package would write on one line, or None."""
    if not shown:
        value = addr_spec
    elif _ATOM_NAME.fullmatch(shown) and "=?" not in shown:
        value = f"{shown} <{addr_spec}>"
    elif _WIDE_NAME.fullmatch(shown):
        value = f"{_ew.encode(shown, charset='utf-8')} <{addr_spec}>"
    elif "=?" not in shown and (written := _one_wide_word(shown, _ATOM_WORD)) is not None:
        # Atoms and one wide word ("王小明 3"): that word alone is an encoded word.
        value = f"{written} <{addr_spec}>"
    else:
        return None
    if len(name) + 2 + len(value) > 78:
        return None
    return f"{name}: {value}{_LINESEP}"


@functools.lru_cache(maxsize=8)
def _boundary_header(length: int) -> str:
    """The multipart Content-Type line for a boundary of `length` characters, "0" where each one goes."""
    return _stdlib_header("Content-Type", f'multipart/alternative; boundary="{"0" * length}"')


def _text_part(text: str, subtype: str) -> str:
    """A text part's headers, blank line and body, as set_content(text, charset="utf-8") writes them."""
    cte, payload = _encode_text(text, "utf-8", None, _POLICY)
    return (f'Content-Type: text/{subtype}; charset="utf-8"{_LINESEP}'
            f"Content-Transfer-Encoding: {cte}{_LINESEP}{_LINESEP}" + _NEWLINE.sub(_LINESEP, payload))


def _direct_bytes(headers: list[tuple[str, object]], text: str, html: str | None, boundary: str | None) -> bytes:
    head = "".join(_header(name, value) for name, value in headers)
    if html is None:
        return (head + _text_part(text, "plain")).encode("ascii")
    assert boundary is not None
    # The boundary is ASCII letters, digits, "_" and "=": it folds the same whatever its characters.
    template = _boundary_header(len(boundary))
    head += template.replace("0" * len(boundary), boundary)
    body = (f"{_LINESEP}--{boundary}{_LINESEP}" + _text_part(text, "plain")
            + f"{_LINESEP}--{boundary}{_LINESEP}" + _text_part(html, "html")
            + f"{_LINESEP}--{boundary}--{_LINESEP}")
    return (head + body).encode("ascii")


def _check_line_lengths(data: bytes) -> None:
    # The folding below keeps header lines within 78 characters; this is the
    # guarantee, so a mail no server would take is never queued for sending.
    head = data.split(b"\r\n\r\n", 1)[0]
    longest = max(len(line) for line in head.split(b"\r\n"))
    if longest > MAX_LINE:
        raise ValueError(f"a header line of {longest} characters is longer than {MAX_LINE}")


def _strip_brackets(message_id: str) -> str:
    value = message_id.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value


def _thread_ids(in_reply_to: str | None, references: Sequence[str]) -> tuple[str | None, list[str]]:
    """The parent id and the References list, keeping only ids that are safe to write.

    These ids come from customers' mail, so a malformed one is dropped rather
    than failing the whole message; the parent ends the References chain as
    RFC 5322 asks, and only the newest MAX_REFERENCES are kept.
    """
    parent = _strip_brackets(in_reply_to) if in_reply_to else None
    if parent is not None and not _writable_id(parent):
        parent = None
    refs = [r for r in (_strip_brackets(r) for r in references) if _writable_id(r)]
    if parent and (not refs or refs[-1] != parent):
        refs.append(parent)
    return parent, refs[-MAX_REFERENCES:]


def _writable_id(value: str) -> bool:
    return len(value) <= MAX_ID_LENGTH and bool(_MSG_ID.fullmatch(value))


# --- How the email package writes message ids.
#
# The stdlib treats In-Reply-To and References as unstructured text, so an id
# longer than a line (Outlook's often are) gets RFC 2047-encoded and no
# client can match it any more.  These headers are written as a list of
# opaque ids instead: folded only between ids, never encoded, never re-parsed.

class _IdList(parser.TokenList):
    token_type = "msg-id-list"
    as_ew_allowed = False


class _Id(parser.ValueTerminal):
    as_ew_allowed = False


def _parse_ids(value: str) -> _IdList:
    tree = _IdList()
    for index, part in enumerate(value.split()):
        if index:
            tree.append(parser.WhiteSpaceTerminal(" ", "fws"))
        tree.append(_Id(part, "msg-id"))
    return tree


class _MessageIdsHeader:
    """A header class for HeaderRegistry (see email.headerregistry's protocol)."""

    max_count = 1

    @classmethod
    def parse(cls, value: str, kwds: dict) -> None:
        kwds["parse_tree"] = tree = _parse_ids(value)
        kwds["decoded"] = str(tree)
        kwds["defects"].extend(tree.all_defects)


class _FoldedAddressHeader(AddressHeader):
    """From and To, folded within 78 characters whatever the display names.

    The stdlib cannot fold a display name without spaces (a long ASCII word
    next to an address is never split or encoded), and writes it on one
    line of any length.  Such a header is written again with every display
    name as RFC 2047 encoded words, each line within 78 characters; they
    decode to exactly the same name.  Headers the stdlib folds well are
    left as it writes them.
    """

    def fold(self, *, policy) -> str:
        folded = super().fold(policy=policy)
        if all(len(line) <= 78 for line in folded.split(policy.linesep)):
            return folded
        entries = []
        for address in self.addresses:
            angle = f"<{address.addr_spec}>"
            if address.display_name:
                words = Header(address.display_name, "utf-8", maxlinelen=78, header_name=self.name)
                angle = f"{words.encode(linesep=policy.linesep)}{policy.linesep} {angle}"
            entries.append(angle)
        return f"{self.name}: " + f",{policy.linesep} ".join(entries) + policy.linesep


_HEADERS = HeaderRegistry()
for _name in ("message-id", "in-reply-to", "references"):
    _HEADERS.map_to_type(_name, _MessageIdsHeader)
for _name in ("from", "to"):
    _HEADERS.map_to_type(_name, _FoldedAddressHeader)

# CRLF for SMTP, and cte_type="7bit" so non-ASCII bodies are quoted-printable or
# base64: we never rely on the server offering 8BITMIME.
_POLICY = policy.SMTP.clone(cte_type="7bit", header_factory=_HEADERS)
