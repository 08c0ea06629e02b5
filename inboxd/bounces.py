"""Tell whether one inbound mail is a bounce, whose address failed, and whether for good.

Pure: raw bytes in, a ``Bounce`` or None out, never an exception.  A mail is
only considered when it looks like it comes from the mail system (a delivery
status report, a mailer-daemon or postmaster sender, or a bounce subject), so
an ordinary customer mail is never taken for a bounce.  The failed addresses
come first from the RFC 3464 delivery-status blocks, which are the most
reliable; then from flufl.bounce's detectors for the many non-standard
formats; then from a few text patterns those miss (Chinese providers, Exim's
"following addresses failed" list).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32

from flufl.bounce import all_failures

from inboxd.message import InboundMessage, decode_bytes, decode_header_text, extract_message_id, html_to_text

__all__ = ["Bounce", "detect_bounce"]

log = logging.getLogger("inboxd.bounces")


@dataclass(frozen=True)
class Bounce:
    recipients: tuple[str, ...]      # failed addresses, lowercased
    permanent: bool                  # 5.x.x / hard; False for 4.x.x / delayed / temporary
    original_message_id: str | None  # Message-ID (without <>) of the mail that bounced, when the report carries it
    reason: str                      # short text (the Diagnostic-Code or status), may be ""


_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
# MDaemon is a mail server whose system mailbox carries its name.
_DAEMON = re.compile(r"(?<![\w.+-])(?:mailer-daemon|postmaster|mdaemon|mail\.delivery\.system)(?![\w-])", re.I)
# Anchored at the start, so "Fwd: Undeliverable: ..." from a customer who
# asks why their mail bounced stays an ordinary mail.
_BOUNCE_SUBJECT = re.compile(
    r"^\W*(?:undelivered mail returned to sender|undeliver(?:ed|able)\b|delivery status notification"
    r"|mail delivery (?:failed|failure|system)"
    r"|(?:permanent |temporary )?delivery (?:failure|failed|has failed|notification)"
    r"|returned mail\b|failure notice|(?:mail|message) could not be delivered|non[- ]?deliver"
    r"|warning: could not send|mail system error"
    r"|(?:系统)?退信|(?:邮件)?投递失败|(?:邮件)?被退回|未能送达)",
    re.I)
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ID = re.compile(r"<([^<>\s]+)>")
_BODY_MESSAGE_ID = re.compile(r"^[ \t>]*(?:x-)?(?:original-)?message-id[ \t]*:[ \t]*(<[^<>\s]+>|\S+@\S+)", re.I | re.M)
# A recipient named after a label: Chinese providers ("收件人：a@b") and some MTAs.
_LABELLED = re.compile(
    r"(?:收件人|收信人|收件人地址|收信地址|failed recipient|original recipient|recipient(?: address)?)"
    r"\s*[:：]\s*<?(" + _ADDRESS.pattern + r")>?", re.I)
# Gmail's and Outlook's prose: "Your message wasn't delivered to a@b because ...".
_DELIVERED_TO = re.compile(r"(?:wasn't|was not|couldn't be|could not be) delivered to\s+<?("
                           + _ADDRESS.pattern + r")>?", re.I)
# "The following addresses failed:" followed by an indented list of addresses.
_LIST_INTRO = re.compile(r"following (?:e-?mail )?(?:address(?:es)?|recipients?)\b[^\n]*\n", re.I)
_LIST_LINE = re.compile(r"^[ \t]*[*\-]?[ \t]*(?:\((?:generated|expanded) from:?[ \t]*)?<?("
                        + _ADDRESS.pattern + r")>?\)?[ \t:,;]*$", re.I)
# Lines of prose allowed between the introduction and the first address.
_LIST_LEAD_IN = 3
# Sendmail names the alias target, then "(expanded from: the address we wrote to)".
_EXPANDED = re.compile(r"(" + _ADDRESS.pattern + r")>?\s*\(expanded from:?\s*<?(" + _ADDRESS.pattern + r")>?\)", re.I)
# A reason after a label, or else the first SMTP reply line in the text.
_REASON = re.compile(r"(?:退信原因|失败原因|原因|reason|diagnostic-code)\s*[:：]\s*(.+)", re.I)
_SMTP_LINE = re.compile(r"^[ \t]*([45])\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3}\b)?.*$", re.M)
# RFC 3463 enhanced status codes: the class digit says permanent (5) or temporary (4).
_ENHANCED = re.compile(r"\b([45])\.\d{1,3}\.\d{1,3}\b")
_TEMPORARY_WORDS = re.compile(
    r"\bdelayed\b|will (?:continue|keep|be) (?:to )?(?:try|retr)|not yet been delivered|\bwarning\b"
    r"|暂时|延迟|稍后重试", re.I)


def detect_bounce(raw: bytes, msg: InboundMessage | None = None) -> Bounce | None:
    """The bounce `raw` reports, or None for anything that is not a bounce; never raises.

    `msg`, when the caller has parsed it already, saves decoding the subject again.
    """
    try:
        if msg is not None and not _may_be_bounce(msg):
            return None
        return _detect(raw, msg)
    except Exception:  # noqa: BLE001 - a detector bug must not stop the ingest
        log.exception("<%s> bounce detection failed; the mail is treated as ordinary", extract_message_id(raw))
        return None


def _may_be_bounce(msg: InboundMessage) -> bool:
    """The gate below, from facts the parser already has: ordinary mail is
    turned away without parsing it a second time."""
    senders = [v for a in (msg.from_,) if a is not None for v in (a.email, a.name)]
    if msg.auto.return_path:
        senders.append(msg.auto.return_path)
    system = msg.from_ is None or msg.auto.return_path == "" or any(_DAEMON.search(s) for s in senders)
    return msg.auto.delivery_status or system or bool(_BOUNCE_SUBJECT.search(msg.subject))


# A report comes first and the returned mail last; the returned mail may be
# as large as the mail it returns (attachments and all), and the stdlib
# parser holds several copies of what it reads.  The first 256 KiB have the
# report and the returned mail's headers, which is all detection reads.
_READ_BYTES = 256 * 1024


def _detect(raw: bytes, msg: InboundMessage | None) -> Bounce | None:
    email = BytesParser(policy=compat32).parsebytes(raw[:_READ_BYTES])
    is_dsn = _is_dsn(email)
    bounce_subject = _bounce_subject(email, msg)
    if not (is_dsn or bounce_subject or _from_mail_system(email)):
        return None

    text = _report_text(email)
    original_id = _original_message_id(email, text)
    blocks = _dsn_blocks(email)
    if blocks:
        found = _from_dsn(blocks)
        if found is None:
            # Every recipient was delivered, relayed or expanded: a success report.
            return None
        permanent, recipients, reason = found
        return Bounce(recipients, permanent, original_id, reason)

    temporary, permanent = _from_flufl(email, text)
    if not temporary and not permanent:
        found_text = _from_text(text)
        if _is_temporary(text):
            temporary = found_text
        else:
            permanent = found_text
    reason = _text_reason(text)
    if permanent:
        return Bounce(tuple(sorted(permanent)), True, original_id, reason)
    if temporary:
        return Bounce(tuple(sorted(temporary)), False, original_id, reason)
    if is_dsn or bounce_subject:
        # Clearly a bounce, but naming nobody we can read.
        return Bounce((), not _is_temporary(text), original_id, reason)
    # A postmaster writing in person is not a bounce.
    return None


# ---------------------------------------------------------------------------
# Is it a bounce at all?
# ---------------------------------------------------------------------------

def _is_dsn(email: Message) -> bool:
    for part in email.walk():
        ctype = part.get_content_type()
        if ctype in _DSN_TYPES:
            return True
        if ctype == "multipart/report" and str(part.get_param("report-type", "")).lower() == "delivery-status":
            return True
    return False


def _from_mail_system(email: Message) -> bool:
    # A null Return-Path alone proves nothing: RFC 3834 asks out-of-office
    # responders to send with one too.
    from_ = email.get("from")
    if from_ is not None and re.fullmatch(r"[^<>]*<\s*>\s*", str(from_)):
        # "From: Mail Delivery System <>": nobody but the mail system writes an empty address.
        return True
    values = [str(email.get(name, "")) for name in ("from", "sender", "return-path")]
    return any(_DAEMON.search(decode_header_text(value)) for value in values)


def _bounce_subject(email: Message, msg: InboundMessage | None) -> bool:
    subject = msg.subject if msg is not None else decode_header_text(str(email.get("subject", "")))
    return bool(_BOUNCE_SUBJECT.search(subject))


# ---------------------------------------------------------------------------
# RFC 3464 delivery-status blocks
# ---------------------------------------------------------------------------

def _dsn_blocks(email: Message) -> list[dict[str, str]]:
    """The per-recipient field blocks of every delivery-status part (lowercased names)."""
    blocks: list[dict[str, str]] = []
    for part in email.walk():
        if part.get_content_type() not in _DSN_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            # compat32 already split the part into header blocks.
            chunks = [block.as_string() if isinstance(block, Message) else str(block) for block in payload]
        else:
            data = part.get_payload(decode=True) or b""
            chunks = re.split(r"\r?\n[ \t]*\r?\n", decode_bytes(data, part.get_content_charset()))
        for chunk in chunks:
            fields = HeaderParser(policy=compat32).parsestr(chunk.strip() + "\n")
            block = {name.lower(): _unfold(str(value)) for name, value in fields.items()}
            if "final-recipient" in block or "original-recipient" in block:
                blocks.append(block)
    return blocks


def _unfold(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


def _recipient(block: dict[str, str]) -> str | None:
    # Original-Recipient is the address we wrote to; Final-Recipient may be
    # an alias it expanded to.  Both are "type; address".
    for name in ("original-recipient", "final-recipient"):
        value = block.get(name, "")
        address = value.split(";", 1)[1] if ";" in value else value
        match = _ADDRESS.search(address)
        if match:
            return match.group(0).lower()
    return None


def _from_dsn(blocks: list[dict[str, str]]) -> tuple[bool, tuple[str, ...], str] | None:
    """(permanent, recipients, reason) of the failed or delayed blocks, or None when none failed."""
    permanent: dict[str, str] = {}
    temporary: dict[str, str] = {}
    for block in blocks:
        action = block.get("action", "").lower()
        status = block.get("status", "").strip()
        # The Action decides, as RFC 3464 means it: "failed" is final even
        # with a 4.x.x status (the queue lifetime expired: the mail will not
        # arrive), "delayed" is a warning even when it quotes a 5.x.x reply.
        # Without an Action, the status class decides.
        if action.startswith(("fail", "error")) or (not action and status.startswith("5")):
            target = permanent
        elif action.startswith("delayed") or (not action and status.startswith("4")):
            target = temporary
        else:
            continue
        address = _recipient(block)
        if address is not None:
            target.setdefault(address, _dsn_reason(block))
    chosen = permanent or temporary
    if not chosen:
        return None
    return bool(permanent), tuple(sorted(chosen)), next(iter(chosen.values()))


def _dsn_reason(block: dict[str, str]) -> str:
    diagnostic = block.get("diagnostic-code", "")
    if ";" in diagnostic:
        diagnostic = diagnostic.split(";", 1)[1].strip()
    return (diagnostic or block.get("status", "")).strip()[:300]


# ---------------------------------------------------------------------------
# Everything else: flufl.bounce and text patterns
# ---------------------------------------------------------------------------

def _from_flufl(email: Message, text: str) -> tuple[set[str], set[str]]:
    try:
        temporary, permanent = all_failures(email)
    except Exception:  # noqa: BLE001 - one broken detector must not lose the mail
        log.warning("flufl.bounce failed on this report", exc_info=True)
        return set(), set()
    return _originals(_as_text(temporary), text), _originals(_as_text(permanent), text)


def _as_text(addresses) -> set[str]:
    result = set()
    for address in addresses:
        value = address.decode("ascii", "replace") if isinstance(address, bytes) else str(address)
        value = value.strip().strip("<>").lower()
        if "@" in value:
            result.add(value)
    return result


def _originals(addresses: set[str], text: str) -> set[str]:
    """Swap an alias target for the address we wrote to, when sendmail says "(expanded from: ...)"."""
    if not addresses:
        return addresses
    expanded = {target.lower(): original.lower() for target, original in _EXPANDED.findall(text)}
    mapped = {expanded.get(address, address) for address in addresses}
    return mapped


def _from_text(text: str) -> set[str]:
    for pattern in (_LABELLED, _DELIVERED_TO):
        found = {match.lower() for match in pattern.findall(text)}
        if found:
            return found
    for intro in _LIST_INTRO.finditer(text):
        lead_in = _LIST_LEAD_IN
        for line in text[intro.end():].splitlines():
            if not line.strip():
                if found:
                    break
                continue
            match = _LIST_LINE.match(line)
            if match is not None:
                found.add(match.group(1).lower())
            elif found or lead_in == 0:
                break
            else:
                # "failed:" on its own line, or Exim's "an undisclosed address".
                lead_in -= 1
        if found:
            return found
    return found


def _is_temporary(text: str) -> bool:
    codes = [m.group(1) for m in _SMTP_LINE.finditer(text)] + _ENHANCED.findall(text)
    if "5" in codes:
        return False
    if "4" in codes:
        return True
    return bool(_TEMPORARY_WORDS.search(text))


def _text_reason(text: str) -> str:
    for pattern in (_REASON, _SMTP_LINE):
        match = pattern.search(text)
        if match:
            return _unfold(match.group(1) if pattern is _REASON else match.group(0))[:300]
    return ""


def _report_text(email: Message) -> str:
    """The human-readable part of the report, outside any returned message."""
    plain: list[str] = []
    html: list[str] = []
    stack = [email]
    while stack:
        part = stack.pop(0)
        ctype = part.get_content_type()
        if ctype == "message/rfc822" or ctype in _DSN_TYPES:
            continue
        if part.is_multipart():
            stack.extend(p for p in part.get_payload() if isinstance(p, Message))
            continue
        if ctype not in ("text/plain", "text/html"):
            continue
        data = part.get_payload(decode=True) or b""
        text = decode_bytes(data, part.get_content_charset())
        (plain if ctype == "text/plain" else html).append(text)
    if plain:
        return "\n".join(plain).replace("\r\n", "\n")
    return "\n".join(html_to_text(h) for h in html)


def _original_message_id(email: Message, text: str) -> str | None:
    for part in email.walk():
        ctype = part.get_content_type()
        if ctype in _DSN_TYPES:
            for block in _payload_blocks(part):
                found = _clean_id(block.get("original-message-id") or block.get("x-original-message-id"))
                if found:
                    return found
    for part in email.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found = _clean_id(inner[0].get("message-id"))
                if found:
                    return found
        elif ctype == "text/rfc822-headers":
            data = part.get_payload(decode=True) or b""
            headers = HeaderParser(policy=compat32).parsestr(decode_bytes(data, part.get_content_charset()))
            found = _clean_id(headers.get("message-id"))
            if found:
                return found
    match = _BODY_MESSAGE_ID.search(text)
    return _clean_id(match.group(1)) if match else None


def _payload_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [block for block in payload if isinstance(block, Message)] if isinstance(payload, list) else []


def _clean_id(value: object) -> str | None:
    if not value:
        return None
    text = str(value)
    match = _ID.search(text)
    found = match.group(1) if match else text.strip().split()[0] if text.strip() else ""
    return found or None
