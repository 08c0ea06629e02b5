"""Find the new part of a plain-text mail body: drop quoted history and signatures.

The result is `reply_text`, shown by `inboxd show` and relayed when an agent
answers by email. The function is pure and never raises.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger("inboxd.quotes")

# How many following lines a wrapped "On <date>, <name> wrote:" line may span;
# Gmail and Apple Mail wrap long attributions onto two or three lines.
_ATTRIBUTION_SPAN = 3
# Quoted lines at least this long were probably wrapped by the client.
_WRAP_WIDTH = 60
# How many lines below its first line a quoted header block may extend.
_HEADER_BLOCK_SPAN = 5

# A reply attribution ends with "wrote:" in the writer's language (German,
# Dutch and Danish clients put the name after the verb).
_ATTRIBUTION = re.compile(
    r"(?:wrote|schrieb|a\s+écrit|ha\s+scritto|scrisse|escribió|escreveu|schreef|skrev"
    r"|napisał(?:\(a\))?|napisała|napsal(?:\(a\))?|kirjoitti|написал(?:\(а\))?|пишет"
    r"|írta|a\s+scris|έγραψε|كتب|写道|寫道)(?!\w)(?:[^:：]{0,120}[:：]|\s*-{2,})\s*$"
    # Some webmail clients drop the colon after the address ("<addr> wrote"),
    # and Russian ones the verb ("<date>, Name <addr>:").
    r"|@[^<>\s]+>\s*wrote\s*$|<[^<>\s]+@[^<>\s]+>\s*[:：]\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION_ENDS = frozenset(":：-eE")
# Runs of digits, maybe joined by one separator ("2024", "10:00", "1/2").
# A pattern that opens with \d lets the regex engine skip ahead quickly.
_NUMBER = re.compile(r"\d+(?:[:./]\d+)?")

# Separator lines that clients put above the quoted message.
_ORIGINAL_SEPARATOR = re.compile(
    r"^[-—_=\s]*-{2,}\s*(?:original\s+message|original|forwarded\s+message|原始邮件|原始郵件"
    r"|转发邮件|轉寄郵件|ursprüngliche\s+nachricht|weitergeleitete\s+nachricht"
    r"|message\s+d'origine|message\s+transféré|messaggio\s+originale|mensaje\s+original"
    r"|mensagem\s+original|oorspronkelijk\s+bericht|original\s+meddelelse|ursprungligt\s+meddelande"
    r"|oprindelig\s+besked|opprinnelig\s+melding|mail\s+original|doorgestuurd\s+bericht"
    r"|alkuperäinen\s+viesti|wiadomość\s+oryginalna|исходное\s+сообщение)\s*-{2,}[-\s]*$",
    re.IGNORECASE,
)

# Header keys of a quoted message, as Outlook, Foxmail, QQ and NetEase write
# them, in English, Chinese and the common European languages.
_HEADER_KEYS = {
    "from": "from|发件人|發件人|寄件者|寄件人|von|de|da|van|fra|från|od|lähettäjä|от|nadawca",
    "date": "sent|date|发送时间|發送時間|时间|時間|日期|gesendet|datum|envoyé|inviato|data|enviado|fecha"
    "|verzonden|sendt|skickat|dato|wysłano|lähetetty|отправлено|дата|message du",
    "to": "to|收件人|收件者|an|à|a|para|aan|til|till|do|vastaanottaja|кому|adresat",
    "subject": "subject|主题|主題|主旨|betreff|objet|sujet|oggetto|asunto|assunto|onderwerp|emne|ämne"
    "|temat|aihe|тема",
}
_HEADER_LINE = {
    kind: re.compile(rf"^\s*\**\s*(?:{keys})\s*\**\s*[:：]", re.IGNORECASE)
    for kind, keys in _HEADER_KEYS.items()
}

# "-- " is the standard signature delimiter (RFC 3676); many clients drop the
# trailing space. A line of underscores opens an Outlook quote or a mailing
# list footer; either way nothing the writer typed follows it.
_SIGNATURE_DELIMITER = re.compile(r"^(?:--\s*|_{2,}\s*)$")

# One-line signatures that mobile clients append. Words after "Sent from"
# are limited, without punctuation, so a sentence like "Sent from my desk,
# is easier" stays.
_MOBILE_SIGNATURE = re.compile(
    r"^(?:sent\s+from\s+[\w'’ -]{1,40}"
    r"|sent\s+with\s+sparrow.*|get\s+outlook\s+for\s+(?:ios|android)"
    r"|发自我的\s*[\w ]{1,20}|从我的\s*[\w ]{1,20}发送|來自我的\s*[\w ]{1,20}|从\s*[\w ]{1,20}发送"
    r"|von\s+meinem\s+[\w ]{1,30}\s+gesendet|gesendet\s+(?:von|mit)\s+(?:meinem\s+)?[\w ]{1,30}"
    r"|envoyé\s+(?:de|depuis|à\s+partir\s+de)\s+[\w ]{1,30}|enviado\s+(?:desde|do|de)\s+[\w ]{1,30}"
    r"|inviato\s+da\s+[\w ]{1,30}|verzonden\s+met\s+[\w ]{1,30}|wysłane\s+z\s+[\w'’ ]{1,30}"
    r"|lähetetty\s+[\w ]{1,30}|obter\s+o\s+outlook\s+para\s+\w+)\.?"
    # Outlook and TypeApp append a link to the app.
    r"\s*(?:<[^<>\s]*>)?$",
    re.IGNORECASE,
)

# Lines made only of rule characters, trimmed from the end of the reply.
_RULE_LINE = re.compile(r"^[-—_=*\s]*$")


def reply_text(text: str) -> str:
    """The new part of a plain-text mail body: quoted history and signature removed.

    Never returns "" for a non-empty body that has visible non-quoted content;
    if stripping would remove everything (e.g. a mail that is only a quote),
    return the text stripped of trailing whitespace.
    """
    try:
        reply = _strip(text)
    except Exception:  # noqa: BLE001 - a body we cannot read must still be shown.
        log.exception("quote stripping failed; keeping the whole body")
        return text
    return reply if reply.strip() else text.rstrip()


def _clean(line: str) -> str:
    """A line as the rules see it: HTML-escaped spaces undone, outer space gone."""
    return line.replace("&nbsp;", " ").replace("\xa0", " ").strip()


def _strip(text: str) -> str:
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [_clean(line) for line in raw]
    # None marks where quoted lines were taken out, so the blank lines
    # around them can be merged afterwards.
    kept: list[str | None] = []
    in_quote = False
    i = 0
    while i < len(lines):
        line = lines[i]
        # A line right below a full-width quoted line, with no blank between,
        # is the quote's own text wrapped by a client that forgot the ">";
        # below a short quoted line it is the writer answering.
        if line.startswith(">") or (in_quote and line):
            in_quote = line.startswith(">") and len(line) >= _WRAP_WIDTH
            kept.append(None)
            i += 1
            continue
        in_quote = False
        span = _attribution_span(lines, i)
        if span:
            # An attribution above ">" lines may be followed by the writer's
            # answers between the quotes (bottom posting); otherwise the
            # quoted message follows unmarked and everything below is history.
            after = _next_nonblank(lines, i + span)
            if after is not None and lines[after].startswith(">"):
                kept.append(None)
                i += span
                continue
            break
        if _ORIGINAL_SEPARATOR.match(line) or _SIGNATURE_DELIMITER.match(line):
            break
        if _header_block(lines, i):
            break
        if _MOBILE_SIGNATURE.match(line):
            # A device signature ends what the writer typed; at the very top
            # (some clients put it there) it is dropped and reading goes on.
            if any(k and k.strip() for k in kept):
                break
            i += 1
            continue
        kept.append(raw[i].rstrip())
        i += 1
    out = _merge_gaps(kept)
    while out and _RULE_LINE.match(out[-1]):
        out.pop()
    while out and not out[0].strip():
        out.pop(0)
    return "\n".join(out)


def _merge_gaps(kept: list[str | None]) -> list[str]:
    """Lines with each run of blanks that held a removed quote cut to one blank."""
    out: list[str] = []
    run: list[str | None] = []
    for line in [*kept, "end"]:
        if line is None or not line.strip():
            run.append(line)
            continue
        if None in run:
            out.append("")
        else:
            out.extend(r for r in run if r is not None)
        run = []
        out.append(line)
    out.pop()
    return out


def _next_nonblank(lines: list[str], start: int) -> int | None:
    for j in range(start, len(lines)):
        if lines[j]:
            return j
    return None


def _attribution_span(lines: list[str], i: int) -> int:
    """How many lines the attribution starting at line i spans, or 0."""
    # An attribution opens with its date, so its first line has a year or a
    # time; that also tells it apart from prose like "As Anna wrote:".
    if not _has_date_or_time(lines[i]):
        return 0
    joined = ""
    for n in range(1, _ATTRIBUTION_SPAN + 1):
        if i + n > len(lines) or (n > 1 and not lines[i + n - 1]):
            return 0
        joined = f"{joined} {lines[i + n - 1]}" if joined else lines[i + n - 1]
        if len(joined) > 300:
            return 0
        # Every attribution ends in a colon, dashes or "wrote"; checking the
        # last character first spares the costly search on most lines.
        if joined[-1] in _ATTRIBUTION_ENDS and _ATTRIBUTION.search(joined):
            # If the attribution also matches from the next line on, this
            # line is the writer's text just above it, not its first line.
            if n > 1 and _attribution_span(lines, i + 1) == n - 1:
                return 0
            return n
    return 0


def _has_date_or_time(line: str) -> bool:
    """Whether the line holds a year (19xx/20xx) or a time or date like 10:00, 1/2, 2.4."""
    for number in _NUMBER.finditer(line):
        token = number.group()
        if len(token) == 4 and token[:2] in ("19", "20") or not token.isdigit():
            return True
    return False


def _header_kind(line: str) -> str | None:
    for kind, pattern in _HEADER_LINE.items():
        if pattern.match(line):
            return kind
    return None


def _header_block(lines: list[str], i: int) -> bool:
    """Whether line i opens a quoted header block.

    That is a From line and two of Subject, Sent/Date and To, all within a
    few lines; clients differ in the order, in blank lines between, and some
    (Windows Mail) leave out the subject.
    """
    # Most lines have no colon; skipping them keeps a long body cheap.
    if ":" not in lines[i] and "：" not in lines[i] or _header_kind(lines[i]) is None:
        return False
    kinds = {_header_kind(x) for x in lines[i : i + 1 + _HEADER_BLOCK_SPAN]}
    return "from" in kinds and len(kinds & {"subject", "date", "to"}) >= 2
