"""Decide whether inboxd may send an automatic reply (acknowledgement) to one inbound mail.

Each rule answers one question about the mail, has no side effects and, when
it objects, returns the reason as a sentence (GNU Mailman's rules work the
same way).  ``may_auto_reply`` runs them in order and the first objection
decides.  The mail rules catch automatic mail from the mail alone: first
its headers (RFC 3834, Precedence, list and autoresponder headers), then
its sender, structure, subject and the start of its text (reports, bounces
without RFC 3464 structure, list managers' answers, vacation replies that
only say so in their subject).  The budget at the end holds even when every
header lies, so two autoresponders can never answer each other for ever:
per address (whatever its +tag or case), and per domain unless the domain
is a shared mail provider.

Suppressing is the safe mistake here: a robot that gets an acknowledgement
may answer it, a person who gets none still has their ticket.  So a rule
may decide on one strong sign, and needs two weak ones that agree; a weak
sign alone (bounce words in a customer's subject, an "-admin" address, a
greeting "Out of office" in the middle of a sentence) never refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from inboxd.mail.bounces import notice_reason
from inboxd.mail.lazypattern import LazyPattern
from inboxd.outbound.loop import loop_header_value
from inboxd.mail.message import Address, InboundMessage

__all__ = [
    "AUTO_REPLY_RULES",
    "AckContext",
    "Verdict",
    "is_automatic",
    "is_our_message_id",
    "loop_header_value",
    "may_auto_reply",
]


@dataclass(frozen=True)
class AckContext:
    own_addresses: frozenset[str]        # lowercased: every mailbox address and agent email
    own_domains_for_ids: frozenset[str]  # domains of our mailboxes; our Message-IDs look like "<inboxd.…@domain>"
    loop_header_value: str               # our X-Inboxd-Loop value for this installation
    sent_last_hour: int                  # auto-replies already sent to this sender address (any +tag, any
                                         # case: inboxd.outbound.outbox.budget_key) in the last hour
    sent_last_day: int                   # ... in the last 24 h
    budget_per_hour: int
    budget_per_day: int
    sender_bouncing: bool = False        # the customer's address bounced for good, and the mark is in force
    domain: str = ""                     # the sender's domain
    sent_domain_last_minute: int = 0     # auto-replies sent to any address at that domain in the last minute
    sent_domain_last_hour: int = 0       # ... in the last hour
    budget_domain_per_minute: int | None = None  # None: no per-domain ceiling (a shared mail provider)
    budget_domain_per_hour: int | None = None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str    # name of the deciding rule ("" when allowed)
    reason: str  # human sentence, e.g. 'Precedence is "bulk"'


Rule = Callable[[InboundMessage, AckContext], str | None]
HeaderRule = Callable[[InboundMessage, AckContext | None], str | None]

# RFC 3834 and the de-facto Precedence values of lists and autoresponders.
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply", "auto-reply"})
_SUPPRESS_TOKENS = frozenset({"all", "autoreply", "oof"})
# Every pattern here is a LazyPattern, compiled at its first use: the rules
# run only for a new ticket's acknowledgement and an agent's mail, so a daemon
# with acknowledgements off may never need them, and then never pays the
# 10 ms their compiling costs.
_SPLIT = LazyPattern(r"[\s,;]+")
# The mail system's own mailboxes.  Only these exact local parts: a person
# at "postmaster-team-lead@" is a person (their mail is judged like anyone's).
_MAIL_SYSTEM = LazyPattern(
    r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|postmaster|mdaemon|mail\.delivery\.system"
    r"|microsoftexchange[0-9a-f]{32})$", re.I)
# "noreply" anywhere in a local part is never a person; "bounces" and
# "notifications" only as the first word (bounces+verp@, notifications-x@).
_NOREPLY = LazyPattern(
    r"no[-_.]?reply|do[-_.]?not[-_.]?reply|^(?:bounces?|notifications?)(?:$|[-+_.])", re.I)
# Mailboxes only programs write from: list managers and their command and
# bounce addresses (elena-request@, elena-ctl@, elena-bounces@, bounce-x@),
# feedback-loop and DMARC reporters, Exchange's system mailbox.
_ROBOT = LazyPattern(
    r"^(?:majordomo|listserv|listproc|mailman(?:-owner|-bounces|-request)?|sympa|ezmlm|smartlist|ecartis|lyris"
    r"|.+[-_.](?:request|ctl|bounces?)|bounces?[-+_.].*"
    r"|fbl|fbl[-_.]?reports?|feedback[-_.]?loop|feedbackloop|scomp|arf|arf[-_.]?reports?"
    r"|.*dmarc.*)$", re.I)
# Addresses people also use ("it-admin@" at a customer's): a sign only
# together with what the mail says.
_LIST_ADMIN = LazyPattern(r"^(?:admin|fml|owner-.+|fml[-_.].+|.+[-_.](?:admin|owner))$", re.I)
_ABUSE = LazyPattern(r"^(?:abuse|abuse[-_.].+|.+[-_.]abuse|spam|spamreport|complaints?)$", re.I)

# Headers only autoresponders add; a value of "no" (or false, 0) says the opposite.
_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-autoresponse", "x-auto-reply",
                      "x-autogenerated", "x-autoreply-from", "x-mail-autoreply")
_NEGATIVE = frozenset({"no", "false", "0", "off"})
# X-Mailer of autoresponders and list managers (never of a mail client).
_ROBOT_MAILER = LazyPattern(
    r"auto[-_ ]?respon|auto[-_ ]?repl|vacation|out[- ]of[- ]office|\bfml\b|majordomo|listserv|mailman|ezmlm"
    r"|sympa|smartlist|ecartis|lyris|listproc", re.I)
# The headers of list managers (besides List-Id and List-Unsubscribe).
_LIST_HEADERS = ("x-mailing-list", "mailing-list", "x-mlserver", "x-beenthere")
# Loop guards of other mail robots: list servers, procmail, RT, OTRS.
_LOOP_HEADERS = ("x-loop", "x-rt-loop-prevention", "x-otrs-loop")
# Bulk senders' campaign ids (Feedback-ID, asked for by Gmail and Yahoo) and the CSA certificate.
_BULK_HEADERS = ("feedback-id", "x-csa-complaints")

# Report parts that make a mail a report whatever its outer type.
_REPORT_PARTS = {
    "message/feedback-report": "an abuse feedback report (message/feedback-report)",
    "message/disposition-notification": "a read receipt (message/disposition-notification)",
    "message/global-disposition-notification": "a read receipt (message/global-disposition-notification)",
}
# RFC 7489 7.2.1.1: "Report Domain: example.com Submitter: google.com Report-ID: ...".
_DMARC_SUBJECT = LazyPattern(
    r"^\W*(?:report[ _-]?domain\s*:.*\bsubmitter\s*:|\[?dmarc\]?\s*(?:aggregate|forensic|failure"
    r"|authentication failure)\s+report)", re.I)
# Aggregate report files: "submitter!domain!begin!end[!id].xml[.gz]|.zip".
_DMARC_FILE = LazyPattern(r"^[^!\s/]+![^!\s/]+!\d{9,11}!\d{9,11}(?:![^!\s/]*)?\.(?:xml|zip|gz|xml\.gz)$", re.I)
# RFC 5965 fields in a report's text (some reporters send them as plain text).
_ARF_TYPE = LazyPattern(r"^feedback-type\s*:\s*(?:abuse|fraud|virus|other|not-spam|auth-failure|opt-out)\b",
                       re.I | re.M)
_ARF_FIELD = LazyPattern(r"^(?:user-agent|version|arrival-date|source-ip|original-mail-from|original-rcpt-to"
                        r"|reported-domain|authentication-results|auth-failure)\s*:", re.I | re.M)
_REPORT_OPENER = LazyPattern(
    r"^\W*this is an? (?:e-?mail )?(?:abuse|spam|authentication failure|dmarc (?:failure|forensic)"
    r"|(?:fraud|virus)) (?:report|complaint)", re.I)
# Microsoft's JMRP without ARF: "complaint about message from 192.0.2.1".
_COMPLAINT_SUBJECT = LazyPattern(r"^\W*complaint about message from \d{1,3}(?:\.\d{1,3}){3}\b", re.I)
_ATTACHED_MAIL = frozenset(("message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"))

# List managers' answers to commands (fml, Majordomo, Mailman, LISTSERV, ezmlm, Sympa).
_LIST_REPLY_SUBJECT = LazyPattern(
    r"\(fml command (?:results?|status)\)|fml (?:command (?:results?|status report)|status report|error report)"
    r"|majordomo results|mailman results|results of your (?:e-?mail )?commands?|output of your job"
    r"|(?:ezmlm|sympa|listserv|listproc) (?:response|results?|reply)"
    r"|your message to .{1,100}? awaits moderator approval|^\W*confirm [0-9a-f]{16,}\b"
    r"|welcome to the .{1,100} mailing list", re.I)
_LIST_WORDING = LazyPattern(
    r"\bfml\b|majordomo|listserv|mailman|ezmlm|sympa|commands? (?:results?|status|processed)"
    # The command echoed back: ">>> subscribe" (a quote three deep is ">>> " plus prose).
    r"|^>{2,4}\s*(?:subscribe|unsubscribe|signoff|help|index|get|members|who|which|lists?|bye|end|set|confirm"
    r"|chaddr|guide|summary|status)\b"
    r"|processing (?:your )?commands?|you are not (?:a member|subscribed)|not a member of (?:this|the)"
    r"|unknown command|is not a valid command", re.I | re.M)

# Vacation and auto-reply subject markers.  A marker is a sign when it
# starts the subject and is followed by a colon, a dash or the end ("Out of
# Office: Re: ..."), or stands in brackets at its start or end ("【自动回复】",
# "Re: order [Auto-Reply]").  Markers that are ordinary words (Absence,
# 不在, On vacation) in addition need an echoed subject, the whole subject to
# themselves, or a vacation sentence at the start of the text.
_STRONG_MARKERS = (
    r"out of (?:the )?office(?: (?:auto-?reply|reply|notice|message|notification))?|ooo auto-?reply"
    r"|automatic reply|automatic response|automatically generated reply|auto[-_ ]?repl(?:y|ied)"
    r"|away from (?:my )?(?:e-?)?mail"
    r"|auto[-_ ]?respon(?:se|der|d)|vacation (?:reply|message|notice|response|auto-?reply)"
    r"|abwesenheitsnotiz|abwesenheitsmeldung|abwesenheitsnachricht|automatische antwort"
    r"|r[ée]ponse automatique|absence du bureau|absent du bureau|message d'absence"
    r"|respuesta autom[áa]tica|fuera de (?:la )?oficina|respuesta de ausencia"
    r"|automatisch antwoord|afwezigheidsbericht|risposta automatica|fuori sede|fuori ufficio"
    r"|resposta autom[áa]tica|fora do escrit[óo]rio|autosvar|automatiskt svar|automatisk svar"
    r"|automaattinen vastaus|автоматический ответ|автоответ|автовідповідь|автоматична відповідь"
    r"|automatyczna odpowied[źz]|automatick[áa] odpov[ěe][ďd]|automatikus v[áa]lasz|h[áa]zon k[íi]v[üu]l"
    r"|otomatik (?:yan[ıi]t|cevap)|ofis d[ıi][şs][ıi]nda|αυτόματη απάντηση"
    # Outlook's "Automatic reply" in its other languages.
    r"|رد تلقائي|автоматичен отговор|resposta autom[àá]tica|automaatvastus|תשובה אוטומטית|स्वचालित जवाब"
    r"|automatski odgovor|аутоматски одговор|balasan (?:otomatis|automatik)|automatinis atsakymas"
    r"|autom[āa]tisk[āa] atbilde|r[ăa]spuns automat|samodejni odgovor"
    r"|ตอบกลับอัตโนมัติ|tr[ảa] l[ờo]i t[ựu] đ[ộo]ng"
    r"|自动回复|自動回覆|自動回复|自动答复|自動答覆|自动应答|自動應答|自動返信|自動応答|自動回信"
    r"|不在通知|不在のお知らせ|休暇のお知らせ|外出のお知らせ|자동 ?응답|자동 ?회신")
_WEAK_MARKERS = (
    r"absence|absent|ausente|aus[êe]ncia|afwezig|fr[åa]nvaro|frav[æa]r(?:ende)?|poissa|abwesend|assenza"
    r"|nieobecno[śs][ćc]|nep[řr][íi]tomnost|on (?:vacation|holiday|leave)|im urlaub|urlaub|en vacances"
    r"|en cong[ée]s?|vakantie|ferie|ferien|auto"
    r"|不在中?|外出中|休暇中?|出張中|休假中?|度假中|부재 ?중|ooo")
_SEP = r"\s*(?:[:：]|[-–—|]\s|$)"
_OPEN, _CLOSE = r"[\[(（【<«]", r"[\])）】>»]"
_STRONG_SUBJECT = LazyPattern(
    rf"^\W*(?:(?P<lead>{_STRONG_MARKERS}){_SEP}|{_OPEN}\s*(?P<bracket>{_STRONG_MARKERS})\s*{_CLOSE})"
    rf"|{_OPEN}\s*(?P<tail>{_STRONG_MARKERS})\s*{_CLOSE}\W*$"
    # Lotus Notes: "AUTO: Jane Doe is out of the office (returning 02.01.2025)".
    r"|^(?:auto:\s*)?(?P<notes>[\w .'-]{1,60} (?:is (?:currently )?out of (?:the )?office|ist (?:nicht im b[üu]ro"
    r"|au[ßs]er haus|abwesend)|est absente?|n'est pas au bureau)(?:\s*\((?:returning|r[üu]ckkehr|retour)[^)]*\))?\.?)$",
    re.I)
_WEAK_SUBJECT = LazyPattern(
    rf"^\W*(?:{_OPEN}\s*(?P<bracket>{_WEAK_MARKERS})\s*{_CLOSE}"
    rf"|(?P<whole>{_WEAK_MARKERS})\W*$"
    rf"|(?P<echo>{_WEAK_MARKERS})\s*(?:[:：]|[-–—|]\s)\s*(?:(?:re|aw|wg|sv|vs|antw|odp|ynt|rv|tr|fwd?|回复|答复|回覆)\s*[:：]"
    r"|\[#))",
    re.I)
_ANY_MARKER = LazyPattern(rf"^\W*(?P<marker>{_STRONG_MARKERS}|{_WEAK_MARKERS})(?!\w)", re.I)
# The sentence a vacation reply opens with (within its first lines).
_VACATION_TEXT = LazyPattern(
    r"(?:^|[.!?:,;]\s*)(?:thank you for your (?:e-?mail|message)\.?\s*)?(?:i am|i'm) (?:currently )?"
    r"(?:out of (?:the )?office|away from (?:the|my) (?:office|desk)|on (?:vacation|holiday|leave|annual leave"
    r"|parental leave|maternity leave|a business trip))"
    r"|this is an? auto(?:matic|mated)?(?:ally generated)?[- ]?(?:reply|response|message)"
    r"|(?:limited|no) access to (?:my )?e-?mail"
    r"|ich bin (?:bis|vom|ab|derzeit|zurzeit|zur zeit|momentan|leider)?.{0,60}(?:nicht im b[üu]ro|abwesend|im urlaub)"
    r"|je suis (?:actuellement )?(?:absente?|en cong[ée]s?|en vacances)"
    r"|estoy (?:fuera de la oficina|de vacaciones|ausente)|sono (?:fuori ufficio|in ferie|assente)"
    r"|ik ben (?:afwezig|met vakantie|niet op kantoor)|estou (?:ausente|de f[ée]rias|fora do escrit[óo]rio)"
    r"|я (?:в отпуске|нахожусь в отпуске|отсутствую)"
    r"|我(?:正在|目前|现在)?(?:休假|出差|不在办公室)|这是一封自动回复|此为自动回复|本邮件为自动回复"
    r"|只今不在|不在にして|休暇をいただ|休暇を頂|休暇中|出張中|自動返信|自動応答|부재중입니다|휴가 중입니다|자동 회신",
    re.I | re.M)
_VACATION_TEXT_CHARS = 600


def _local_part(address: str) -> str:
    return address.rpartition("@")[0] if "@" in address else address


def _header(msg: InboundMessage, name: str) -> str | None:
    """The first value of one of the automatic-mail headers the parser collected (AutoFacts.headers)."""
    return next((value for key, value in msg.auto.headers if key == name), None)


def _quoted(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _reply_targets(msg: InboundMessage) -> list[Address]:
    """The addresses an acknowledgement would concern: the sender and where replies go."""
    return ([msg.from_] if msg.from_ is not None else []) + list(msg.reply_to)


def is_our_message_id(message_id: str, own_domains: frozenset[str]) -> bool:
    """Whether `message_id` (with or without <>) is one inboxd generated: "inboxd.…@<our domain>"."""
    value = message_id.strip().strip("<>").strip()
    local, at, domain = value.rpartition("@")
    return bool(at) and local.lower().startswith("inboxd.") and domain.lower() in own_domains


# ---------------------------------------------------------------------------
# Rules.  Mail rules ignore the context, so is_automatic can run them alone.
# ---------------------------------------------------------------------------

def no_sender(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    if not _reply_targets(msg):
        return "the mail has no sender address to reply to"
    return None


def auto_submitted(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    value = msg.auto.auto_submitted
    # RFC 3834: any value other than "no" (parameters allowed) marks automatic mail.
    if value is not None and value.split(";", 1)[0].strip() not in ("no", ""):
        return f'Auto-Submitted is "{value}"'
    return None


def precedence(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    value = msg.auto.precedence
    if value is not None and value in _BULK_PRECEDENCE:
        return f'Precedence is "{value}"'
    # Some list servers and bulk senders write it as X-Precedence.
    other = (_header(msg, "x-precedence") or "").strip().lower()
    if other in _BULK_PRECEDENCE:
        return f'X-Precedence is "{other}"'
    return None


def mailing_list(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    if msg.auto.list_id is not None:
        return f'List-Id is "{msg.auto.list_id}"'
    if msg.auto.list_unsubscribe:
        return "List-Unsubscribe is present"
    # RFC 2369's other List-* fields, fml's X-ML-Name, X-ML-Count..., and the
    # marks of other list managers (X-Mailing-List, X-MLServer, mailman's X-BeenThere).
    for name, value in msg.auto.headers:
        if name.startswith(("list-", "x-ml-")) or name in _LIST_HEADERS:
            return f'{_display(name)} is "{_quoted(value)}"'
    return None


def auto_response_suppress(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    value = msg.auto.auto_response_suppress
    if value is None:
        return None
    tokens = {token.lower() for token in _SPLIT.split(value) if token}
    if tokens & _SUPPRESS_TOKENS:
        return f'X-Auto-Response-Suppress is "{value}"'
    return None


def mailer_daemon(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    if msg.auto.return_path == "":
        return "the return path is null (<>)"
    candidates = [(a.email, "sender") for a in _reply_targets(msg)]
    if msg.auto.return_path:
        candidates.append((msg.auto.return_path, "return path"))
    for address, role in candidates:
        if _MAIL_SYSTEM.match(_local_part(address)):
            return f"the {role} {address} is the mail system"
    return None


def noreply_sender(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    # Nobody reads a no-reply mailbox (noreply-dmarc-support@, do-not-reply@):
    # an acknowledgement there is lost at best and bounces at worst, and the
    # mail is a notification, not a request.  So it gets none.
    for address in _reply_targets(msg):
        if _NOREPLY.search(_local_part(address.email)):
            return f"the sender {address.email} does not take replies"
    return None


def robot_sender(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    for address in _reply_targets(msg):
        if _ROBOT.match(_local_part(address.email)):
            return f"the sender {address.email} is a list manager's or reporting robot's address"
    return None


def autoreply_headers(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    for name in _AUTOREPLY_HEADERS:
        value = _header(msg, name)
        if value is not None and value.strip().lower() not in _NEGATIVE:
            return f'{_display(name)} is "{_quoted(value)}"'
    mailer = _header(msg, "x-mailer")
    if mailer is not None and _ROBOT_MAILER.search(mailer):
        return f'X-Mailer is "{_quoted(mailer)}", an autoresponder or list manager'
    return None


def loop_guard(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    # Another robot's loop guard: it was written by, or has passed through, a
    # list server, a procmail recipe or another ticket system.
    for name in _LOOP_HEADERS:
        value = _header(msg, name)
        if value is not None:
            return f'{_display(name)} is "{_quoted(value)}"'
    return None


def bulk_sender(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    for name in _BULK_HEADERS:
        value = _header(msg, name)
        if value is not None:
            return f'{_display(name)} is "{_quoted(value)}": a bulk sender\'s campaign mail'
    return None


def failed_recipients(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    value = _header(msg, "x-failed-recipients")
    if value is not None:
        return f'X-Failed-Recipients is "{_quoted(value)}": a bounce'
    return None


def loop_header(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    # Any value counts: another inboxd installation is a loop partner too.
    if msg.auto.loop is not None:
        return f'X-Inboxd-Loop is "{msg.auto.loop}"'
    return None


def delivery_status(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    if msg.auto.delivery_status:
        return "the mail is a delivery status report"
    return None


def machine_report(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    """Reports: every multipart/report (abuse and DMARC feedback, read receipts),
    report parts elsewhere, DMARC aggregate reports, ARF sent as plain text."""
    if msg.auto.report_type is not None:
        kind = f' (report-type "{msg.auto.report_type}")' if msg.auto.report_type else ""
        return f"the mail is a multipart/report{kind}"
    for attachment in msg.attachments:
        if attachment.content_type in _REPORT_PARTS:
            return f"{_REPORT_PARTS[attachment.content_type]} is attached"
    if _DMARC_SUBJECT.search(msg.subject):
        return f'the subject "{_quoted(msg.subject)}" is a DMARC report\'s'
    for attachment in msg.attachments:
        if attachment.filename and _DMARC_FILE.match(attachment.filename):
            return f"the attachment {attachment.filename} is a DMARC aggregate report"
    head = msg.text[:4000]
    if _ARF_TYPE.search(head) and _ARF_FIELD.search(head):
        return f'the text carries abuse report fields ("{_ARF_TYPE.search(head).group(0)}")'
    if _REPORT_OPENER.search(msg.text[:400]):
        return f'the text opens as a report: "{_quoted(_REPORT_OPENER.search(msg.text[:400]).group(0))}"'
    attached = any(a.content_type in _ATTACHED_MAIL for a in msg.attachments)
    if attached and _COMPLAINT_SUBJECT.search(msg.subject):
        return f'the subject "{_quoted(msg.subject)}" is a complaint feedback report\'s'
    if attached:
        for address in _reply_targets(msg):
            if _ABUSE.match(_local_part(address.email)):
                return f"the sender {address.email} is an abuse desk and the reported mail is attached"
    return None


def bounce_notice(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    """A bounce without RFC 3464 structure (see inboxd.mail.bounces.notice_reason)."""
    return notice_reason(msg)


def list_manager_reply(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    match = _LIST_REPLY_SUBJECT.search(msg.subject)
    if match is not None:
        return f'the subject "{_quoted(msg.subject)}" is a list manager\'s answer ("{match.group(0).strip()}")'
    # fml answers from elena-admin@ or fml-*@ under the subject of the command mail.
    for address in _reply_targets(msg):
        if _LIST_ADMIN.match(_local_part(address.email)):
            wording = _LIST_WORDING.search(msg.text[:4000]) or _LIST_WORDING.search(msg.subject)
            if wording is not None:
                return (f"the sender {address.email} is a list's administrative address and the mail speaks "
                        f'as its list manager ("{_quoted(wording.group(0).strip())}")')
    return None


def auto_reply_subject(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    subject = msg.subject.strip()
    strong = _STRONG_SUBJECT.search(subject)
    if strong is not None:
        marker = next(value for value in strong.groupdict().values() if value)
        return f'the subject "{_quoted(subject)}" carries the auto-reply marker "{_quoted(marker)}"'
    weak = _WEAK_SUBJECT.search(subject)
    if weak is not None:
        marker = next(value for value in weak.groupdict().values() if value)
        return f'the subject "{_quoted(subject)}" carries the absence marker "{marker}"'
    # A marker at the start without a separator ("Out of office until 3 May")
    # needs the reply's own first sentence to agree.
    lead = _ANY_MARKER.search(subject)
    if lead is not None:
        sentence = _VACATION_TEXT.search(msg.text[:_VACATION_TEXT_CHARS])
        if sentence is not None:
            return (f'the subject "{_quoted(subject)}" starts with "{lead.group("marker")}" and the text '
                    f'opens as a vacation reply ("{_quoted(sentence.group(0).strip(" .!?:,;"))}")')
    return None


def own_address(msg: InboundMessage, ctx: AckContext) -> str | None:
    for address in _reply_targets(msg):
        if address.email.lower() in ctx.own_addresses:
            return f"the sender {address.email} is one of our own addresses"
    return None


def own_message_id(msg: InboundMessage, ctx: AckContext) -> str | None:
    # Only the mail's own id: a customer's reply to our acknowledgement has
    # our id in In-Reply-To and References, and deserves an answer.
    if msg.message_id and is_our_message_id(msg.message_id, ctx.own_domains_for_ids):
        return f"the Message-ID <{msg.message_id}> is ours: our own mail came back"
    return None


def sender_bouncing(msg: InboundMessage, ctx: AckContext) -> str | None:
    if ctx.sender_bouncing:
        return "the sender's address bounced before"
    return None


def budget(msg: InboundMessage, ctx: AckContext) -> str | None:
    if ctx.sent_last_hour >= ctx.budget_per_hour:
        return (f"{ctx.sent_last_hour} auto-replies went to this address in the last hour "
                f"(budget {ctx.budget_per_hour})")
    if ctx.sent_last_day >= ctx.budget_per_day:
        return (f"{ctx.sent_last_day} auto-replies went to this address in the last 24 hours "
                f"(budget {ctx.budget_per_day})")
    # An autoresponder that answers from ever new addresses at one domain.
    if ctx.budget_domain_per_minute is not None and ctx.sent_domain_last_minute >= ctx.budget_domain_per_minute:
        return (f"{ctx.sent_domain_last_minute} auto-replies went to addresses at {ctx.domain} in the last minute "
                f"(ceiling {ctx.budget_domain_per_minute} per domain)")
    if ctx.budget_domain_per_hour is not None and ctx.sent_domain_last_hour >= ctx.budget_domain_per_hour:
        return (f"{ctx.sent_domain_last_hour} auto-replies went to addresses at {ctx.domain} in the last hour "
                f"(ceiling {ctx.budget_domain_per_hour} per domain)")
    return None


def _display(name: str) -> str:
    """A lowercased header name as mail shows it: "x-ml-name" -> "X-ML-Name"."""
    special = {"ml": "ML", "id": "ID", "rt": "RT", "otrs": "OTRS", "csa": "CSA", "mlserver": "MLServer",
               "autoreply": "AutoReply", "beenthere": "BeenThere"}
    return "-".join(special.get(part, part.capitalize()) for part in name.split("-"))


# The rules that read only the mail itself, in the order they are tried:
# headers first, then the sender, the structure, the subject and the text.
_MAIL_RULES: tuple[HeaderRule, ...] = (
    auto_submitted,
    precedence,
    mailing_list,
    auto_response_suppress,
    mailer_daemon,
    noreply_sender,
    loop_header,
    delivery_status,
    autoreply_headers,
    loop_guard,
    bulk_sender,
    failed_recipients,
    robot_sender,
    machine_report,
    bounce_notice,
    list_manager_reply,
    auto_reply_subject,
)

AUTO_REPLY_RULES: tuple[Rule, ...] = (
    no_sender,
    *_MAIL_RULES,
    own_address,
    own_message_id,
    sender_bouncing,
    budget,
)


def is_automatic(msg: InboundMessage) -> str | None:
    """Why the mail is machine-generated, from the mail alone (headers, sender, structure,
    subject, the start of its text), or None."""
    for rule in _MAIL_RULES:
        reason = rule(msg, None)
        if reason is not None:
            return reason
    return None


def may_auto_reply(msg: InboundMessage, ctx: AckContext) -> Verdict:
    """Run AUTO_REPLY_RULES in order; the first objection refuses, with its rule name and reason."""
    for rule in AUTO_REPLY_RULES:
        reason = rule(msg, ctx)
        if reason is not None:
            return Verdict(False, rule.__name__, reason)
    return Verdict(True, "", "")
