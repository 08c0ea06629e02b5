"""Tell whether one inbound mail is a bounce, whose address failed, and whether for good.

Pure: raw bytes in, a ``Bounce`` or None out, never an exception.  A mail is
only considered when it looks like it comes from the mail system (a delivery
status report, a mailer-daemon or postmaster sender, or a bounce subject), so
an ordinary customer mail is never taken for a bounce.  The failed addresses
come first from the RFC 3464 delivery-status blocks, which are the most
reliable; then from flufl.bounce's detectors for the many non-standard
formats; then from a few text patterns those miss (Chinese providers, Exim's
"following addresses failed" list).

``notice_reason`` tells, from the parsed mail alone, whether it reads as a
delivery failure notice although it has no RFC 3464 structure (qmail, Exim,
old sendmail, Lotus Notes, GroupWise, Apache James, SMS gateways, localised
Exchange and Chinese providers).  The auto-reply rules use it, so that no
bounce is ever acknowledged, whether or not its failed address can be read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32

from inboxd.mail.lazypattern import LazyPattern
from inboxd.mail.message import (InboundMessage, MalformedMessage, decode_bytes, decode_header_text, extract_message_id,
                            html_to_text, parse_message)

__all__ = ["Bounce", "detect_bounce", "notice_reason"]

log = logging.getLogger("inboxd.mail.bounces")


@dataclass(frozen=True)
class Bounce:
    recipients: tuple[str, ...]      # failed addresses, lowercased
    permanent: bool                  # 5.x.x / hard; False for 4.x.x / delayed / temporary
    original_message_id: str | None  # Message-ID (without <>) of the mail that bounced, when the report carries it
    reason: str                      # short text (the Diagnostic-Code or status), may be ""


_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
# MDaemon is a mail server whose system mailbox carries its name.
_DAEMON = re.compile(r"(?<![\w.+-])(?:mailer-daemon|postmaster|mdaemon|mail\.delivery\.system)(?![\w-])", re.I)

# --- Delivery failure notices without RFC 3464 structure (notice_reason) ----

# Subjects only mail systems write, at the start of the subject.  Whole MTA
# phrases may be followed by anything; the short ones must end the subject
# or come before the colon (or bracket) that Exchange and Notes put before
# the returned subject: "Undeliverable: Re: ...", but not "Undeliverable
# parcel".  CJK has no word boundaries, so this also keeps "邮件投递失败怎么办"
# (a customer's question) from being a notice.
_NOTICE_SUBJECT = re.compile(
    r"^\W*(?:"
    r"(?:undelivered mail returned to sender|delivery status notification|mail system error"
    r"|delivery notification\s*:\s*delivery has failed"
    r"|warning: (?:could not send message|message has not yet been delivered)"
    r"|\[bounce\]"
    r"|message status\s*-\s*undeliverable|non[- ]?delivery (?:report|notification)|(?-i:DELIVERY FAILURE:))"
    r"|(?:undelivered (?:mail|message)|undeliverable(?: (?:mail|message|e-?mail))?"
    r"|(?:mail|message|e-?mail|sms) delivery (?:failed|failure|has failed|warning)"
    r"|delivery (?:failure|status) (?:notification|report|notice)|delivery report|returned mail|failure notice"
    r"|your (?:message|e-?mail|mail) to .{1,100} (?:could not|couldn't|was not|wasn't) (?:be )?delivered\.?"
    r"|non[- ]?deliverable (?:mail|message|e-?mail)|(?:mail|message|e-?mail) (?:could not|couldn't|cannot) be delivered"
    r"|(?:message|sms) not delivered|delayed mail"
    # Exchange's "Undeliverable:" in its other languages.
    r"|unzustellbar|nicht zustellbar|non remis|non distribuable|no se puede entregar|no entregado"
    r"|não entregue|não é possível entregar|onbestelbaar|non recapitabile|non è possibile recapitare"
    r"|olevererbart|ej levererbart|ikke leveret|kan ikke leveres|ei voida toimittaa|kézbesíthetetlen"
    r"|nie można dostarczyć|niedostarczalne|nedoručitelné|nedoručiteľné|teslim edilemedi|teslim edilemiyor"
    r"|недоставленное сообщение|недоставляемое|не удается доставить|не доставлено"
    r"|無法傳遞|无法传递|无法投递|配信不能|배달되지 않음|전달되지 않음|배달 못 함"
    r"|(?:系统|邮件)?退信(?:通知)?|退回邮件|(?:邮件)?投递失败(?:通知)?|(?:邮件)?被退回|未能送达|邮件发送失败"
    r"|(?:メール)?配信エラー|配信失敗|送信エラー|배달 실패)"
    r"\s*(?:$|[:：(（\[【]))",
    re.I)
# Bounce words anywhere in the subject: a hint that needs another.
_NOTICE_SUBJECT_HINT = re.compile(
    r"undeliver|not delivered|delivery (?:failure|failed|notification|status)|returned mail"
    r"|mail delivery|could not be delivered|non[- ]?deliver|non remis|unzustellbar|nicht zugestellt"
    r"|no se puede entregar|no entregado|退信|投递失败|被退回|配信エラー|配信できません|配信失敗|не ?доставлен",
    re.I)
# The first sentence of a notice: what mail systems open their text with,
# matched at the start of one of its first lines.
_NOTICE_OPENER = re.compile(
    r"(?:(?:hi|hello)[.,!]?[ \t]+|您好[，,]?[ \t]*)?(?:"
    r"this is the mail system at host|this is the qmail-send program"
    r"|this (?:is an? )?(?:automated |automatic )?(?:message|e-?mail|notification)(?: was| is)?"
    r" (?:created|generated|sent) (?:automatically )?by (?:the )?mail delivery (?:software|system|subsystem)"
    r"|this is the (?:\S+ )?(?:e-?)?mail (?:server|delivery (?:agent|system)|transport (?:agent|system))\b"
    r"|the original message was received at"
    r"|-+ ?the following addresses (?:had (?:permanent )?fatal errors|have delivery notifications)"
    r"|(?:i'm|i am|we're|we are) sorry,? (?:to (?:have to )?inform you that your (?:message|mail)"
    r"|but your (?:message|mail) (?:could not|couldn't|was not|wasn't|cannot))|sorry,? we were unable to deliver"
    r"|(?:your|a|the|this) (?:message|e-?mail|mail|sms)(?: to .{1,160}?)? (?:could not|couldn't|cannot|can't|was not"
    r"|wasn't|has not been|has not yet been) (?:be )?(?:delivered|sent)|your message has encountered delivery problems"
    r"|your message did not reach some or all of the intended recipients"
    r"|delivery has failed to these recipients|delivery to the following recipients? (?:failed|has been delayed)"
    r"|this is an automatically generated delivery status notification|unable to deliver (?:your )?message to"
    r"|the following message to .{1,200} was undeliverable|message delivery to .{1,200} failed"
    r"|(?:the )?message (?:that )?you sent (?:was|could not be|has not been) (?:undeliverable|delivered)"
    r"|user .{1,160} not listed in (?:the )?(?:domino directory|public name & address book)"
    r"|address not found\s*$|message not delivered\s*$|mail delivery failed|undeliverable message"
    r"|ihre nachricht(?: an .{1,160}?)? (?:konnte nicht|wurde nicht) (?:zugestellt|übermittelt)"
    r"|ihre nachricht hat einige oder alle empfänger nicht erreicht"
    r"|votre message(?: (?:à|a) .{1,160}?)? n'a pas pu (?:être|etre) (?:remis|d[ée]livr)"
    r"|votre message n'a pas atteint certains ou la totalit[ée] de ses destinataires"
    r"|su mensaje no (?:pudo ser entregado|se pudo entregar|llegó a algunos o a todos los destinatarios)"
    r"|no se (?:pudo|puede) entregar|il messaggio non è stato recapitato|impossibile recapitare"
    r"|uw bericht (?:kon niet worden bezorgd|heeft sommige of alle geadresseerden niet bereikt)"
    r"|ваше (?:сообщение|письмо) не (?:было |может быть )?доставлено|сообщение не (?:было )?доставлено"
    r"|это (?:письмо|сообщение) (?:создано|сгенерировано) автоматически"
    r"|您发送的邮件(?:被退回|未能成功|无法送达|投递失败|没有成功)|很抱歉.{0,20}邮件.{0,10}(?:无法|未能|不能)(?:投递|送达)"
    r"|这是(?:系统自动生成|一封)的?退信|系统退信|退信原因"
    r"|送信されたメールは(?:配信|送信)できませんでした|(?:メールを|メールは)配信できませんでした|配信できませんでした)",
    re.I | re.M)
_OPENER_LINES = 3
# Mail-system wording anywhere in the text: a hint that needs another.
_NOTICE_TEXT_HINT = re.compile(
    r"^[ \t>]*[245]\d\d[ -]#?[45]\.\d{1,3}\.\d{1,3}\b|\b[45]\d\d[ -]#?[45]\.\d{1,3}\.\d{1,3}\b"
    r"|smtp(?: error|;)\s*\d{3}"
    r"|^[ \t]*(?:final-recipient|original-recipient|diagnostic-code|remote-mta|reporting-mta)\s*:"
    r"|transcript of session follows|original message follows|this is a copy of the message"
    r"|undelivered message (?:headers|attached)|returned message|unsent message below"
    r"|permanent (?:fatal )?errors?\b|user unknown|unknown user|no such user|mailbox (?:unavailable|not found|full)"
    r"|recipient address rejected|host or domain name not found|relay access denied"
    r"|not listed in (?:the )?(?:domino directory|public name & address book|names\.nsf)"
    r"|the following (?:address(?:es)?|recipients?) (?:had permanent fatal errors|failed)"
    r"|wasn't able to deliver|retry timeout exceeded|giving up on"
    r"|empfänger unbekannt|unbekannter empfänger|destinataire inconnu|usuario desconocido"
    r"|退信原因|收件人(?:邮箱)?不存在|无法(?:投递|送达)|配信できません|宛先不明|адрес не существует|пользователь не найден",
    re.I | re.M)
# Senders that look like the mail system without being its standard mailboxes
# (those decide alone: rules.mailer_daemon).  A hint that needs another.
_SYSTEM_LOCAL = re.compile(
    r"^(?:mailer|mail|mailadmin|mail[-_.]admin|mailsystem|mail[-_.]system|sysadmin|admin(?:istrator)?|system"
    r"|notes|domino|lotus|groupwise|gwia|smtp|smtpgw|gateway|sms|sms[-_.]?gateway|james|exchange(?:admin)?)$"
    r"|[-_.](?:admin|daemon|gateway|gw)$",
    re.I)
_SYSTEM_NAME = re.compile(
    r"mail delivery|mail system|system administrator|mail administrator|mailer|postmaster|mail router"
    r"|domino|groupwise|delivery subsystem|mail server|sms gateway|internet mail service",
    re.I)
# A text that opens by greeting someone was written by a person (qmail's
# and James's "Hi. This is ..." are openers, tried first).
_GREETING = re.compile(
    r"(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|hallo|guten (?:tag|morgen)|sehr geehrte"
    r"|bonjour|bonsoir|hola|buenos d[ií]as|estimad[oa]|buongiorno|gentile|ol[áa]|bom dia|hej|hei|dag"
    r"|здравствуйте|добрый день|привет)\b|^(?:您好|你好|尊敬的|こんにちは|お世話になって|안녕하세요)",
    re.I)
# The text a notice is judged by: its start, where mail systems write.
_NOTICE_TEXT_BYTES = 8 * 1024
_OPENER_CHARS = 400
_FORWARDED = re.compile(r"^\s*(?:fwd?|fw|tr|wg|rv|enc|转发|轉寄|転送)\s*[:：]", re.I)
_RETURNED_TYPES = frozenset(("message/rfc822", "text/rfc822-headers", "message/delivery-status",
                             "message/global-delivery-status", "message/global", "message/global-headers"))
# What follows reads the failed addresses out of a mail that is a bounce: only a
# bounce needs it, so it is compiled at its first use (inboxd.mail.lazypattern).
_ADDRESS = LazyPattern(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ID = LazyPattern(r"<([^<>\s]+)>")
_BODY_MESSAGE_ID = LazyPattern(r"^[ \t>]*(?:x-)?(?:original-)?message-id[ \t]*:[ \t]*(<[^<>\s]+>|\S+@\S+)", re.I | re.M)
# A recipient named after a label: Chinese providers ("收件人：a@b") and some MTAs.
_LABELLED = LazyPattern(
    r"(?:收件人|收信人|收件人地址|收信地址|宛先|受信者|failed recipient|original recipient|recipient(?: address)?)"
    r"\s*[:：]\s*<?(" + _ADDRESS.pattern + r")>?", re.I)
# Gmail's and Outlook's prose: "Your message wasn't delivered to a@b because ...".
_DELIVERED_TO = LazyPattern(r"(?:wasn't|was not|couldn't be|could not be) delivered to\s+<?("
                           + _ADDRESS.pattern + r")>?", re.I)
# Postfix's and qmail's "<a@b>: host ... said: 550 ..." at the start of a line.
_ANGLE_LINE = LazyPattern(r"^[ \t]*<(" + _ADDRESS.pattern + r")>:", re.M)
# "The following addresses failed:" followed by an indented list of addresses.
_LIST_INTRO = LazyPattern(r"following (?:e-?mail )?(?:address(?:es)?|recipients?)\b[^\n]*\n", re.I)
_LIST_LINE = LazyPattern(r"^[ \t]*[*\-]?[ \t]*(?:\((?:generated|expanded) from:?[ \t]*)?<?("
                        + _ADDRESS.pattern + r")>?\)?[ \t:,;]*$", re.I)
# Lines of prose allowed between the introduction and the first address.
_LIST_LEAD_IN = 3
# Sendmail names the alias target, then "(expanded from: the address we wrote to)".
_EXPANDED = LazyPattern(r"(" + _ADDRESS.pattern + r")>?\s*\(expanded from:?\s*<?(" + _ADDRESS.pattern + r")>?\)", re.I)
# A reason after a label, or else the first SMTP reply line in the text.
_REASON = LazyPattern(r"(?:退信原因|失败原因|原因|reason|diagnostic-code)\s*[:：]\s*(.+)", re.I)
_SMTP_LINE = LazyPattern(r"^[ \t]*([45])\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3}\b)?.*$", re.M)
# RFC 3463 enhanced status codes: the class digit says permanent (5) or temporary (4).
_ENHANCED = LazyPattern(r"\b([45])\.\d{1,3}\.\d{1,3}\b")
_TEMPORARY_WORDS = LazyPattern(
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
    return msg.auto.delivery_status or system or notice_reason(msg) is not None


# A report comes first and the returned mail last; the returned mail may be
# as large as the mail it returns (attachments and all), and the stdlib
# parser holds several copies of what it reads.  The first 256 KiB have the
# report and the returned mail's headers, which is all detection reads.
_READ_BYTES = 256 * 1024


def _detect(raw: bytes, msg: InboundMessage | None) -> Bounce | None:
    email = BytesParser(policy=compat32).parsebytes(raw[:_READ_BYTES])
    is_dsn = _is_dsn(email)
    # Bounce words in a subject are not proof: the mail must read as a notice.
    notice = _reads_as_notice(raw, msg)
    if not (is_dsn or notice or _from_mail_system(email)):
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
    if is_dsn or notice:
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


def _reads_as_notice(raw: bytes, msg: InboundMessage | None) -> bool:
    if msg is None:
        # Called with bytes alone (tests, tools): parse the part detection reads.
        try:
            msg = parse_message(raw[:_READ_BYTES])
        except MalformedMessage:
            return False
    return notice_reason(msg) is not None


def notice_reason(msg: InboundMessage) -> str | None:
    """Why the parsed mail reads as a delivery failure notice, or None.

    Decisive alone: a subject only mail systems write, or a text that opens
    as theirs do.  Otherwise two hints must agree out of: bounce words in the
    subject, mail-system wording or a returned mail in the body, a sender
    that looks like the mail system.  A customer who writes about a failed
    delivery gives one hint at most, and one who greets us gives none: their
    mail is no notice.
    """
    subject = msg.subject.strip()
    forwarded = bool(_FORWARDED.match(subject))
    if not forwarded and _NOTICE_SUBJECT.search(subject):
        return f'the subject "{_cut(subject)}" is a delivery failure notice'
    text = msg.text[:_NOTICE_TEXT_BYTES]
    starts = _line_starts(text)
    greeted = bool(starts) and _GREETING.match(text, starts[0]) is not None
    # After a greeting ("Hi Anna,") only the first line may open a notice: qmail's "Hi. This is ...".
    for start in ([] if forwarded else starts[:1] if greeted else starts):
        opener = _NOTICE_OPENER.match(text, start, start + _OPENER_CHARS)
        if opener is not None:
            return f'the text opens as a delivery failure notice: "{_cut(opener.group(0))}"'
    if greeted:
        return None
    hints = []
    if not forwarded and _NOTICE_SUBJECT_HINT.search(subject):
        hints.append(f'the subject "{_cut(subject)}" speaks of a failed delivery')
    returned = next((a.content_type for a in msg.attachments if a.content_type in _RETURNED_TYPES), None)
    wording = _NOTICE_TEXT_HINT.search(text)
    if returned is not None:
        hints.append(f"a returned mail is attached ({returned})")
    elif wording is not None:
        hints.append(f'the text has mail-system wording ("{_cut(wording.group(0).strip())}")')
    sender = msg.from_
    if sender is not None and (_SYSTEM_LOCAL.search(sender.email.rpartition("@")[0])
                               or _SYSTEM_NAME.search(sender.name)):
        named = f"{sender.name} <{sender.email}>" if sender.name else sender.email
        hints.append(f"the sender {named} looks like the mail system")
    return "; ".join(hints) if len(hints) >= 2 else None


def _line_starts(text: str) -> list[int]:
    """Where the first lines with a letter start (banners of *** or --- are skipped)."""
    starts: list[int] = []
    for match in re.finditer(r"[^\n]+", text):
        line = match.group(0)
        if any(c.isalpha() for c in line):
            starts.append(match.start() + len(line) - len(line.lstrip()))
            if len(starts) == _OPENER_LINES:
                break
    return starts


def _cut(text: str, limit: int = 80) -> str:
    text = _unfold(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


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

def all_failures(email: Message):
    """flufl.bounce's detectors over `email`: (temporary, permanent) failed addresses.

    flufl.bounce is imported at the first bounce: its detectors compile some
    150 patterns at import, which only a bounce needs.
    """
    from flufl.bounce import all_failures as detect

    return detect(email)


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
    return {match.lower() for match in _ANGLE_LINE.findall(text)}


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
