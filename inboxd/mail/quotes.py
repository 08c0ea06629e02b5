"""Find the new part of a plain-text mail body: drop quoted history and signatures.

The result is `reply_text`, shown by `inboxd show` and relayed when an agent
answers by email. The function is pure and never raises.

The body is read line by line from the top.  Each line is either the
writer's text (kept), a quoted line (dropped; the writer may answer between
quotes), or a line that starts what the writer did not type: an attribution
("On <date>, <name> wrote:"), a separator ("-----Original Message-----"),
a forward intro ("Begin forwarded message:"), an embedded header block
("From: / Sent: / To: / Subject:"), a signature delimiter ("-- ") or a
device signature ("Sent from my iPhone").  Reading stops at the first of
those.  The rules know how the common clients write them in the languages
our customers use: Outlook, Gmail, Apple Mail, Thunderbird, Yahoo, Samsung,
Foxmail, QQ, NetEase, Yandex and Mail.ru, and text made from HTML by
html2text (escaped "\\-", bold "**From:**", markdown links).
"""

from __future__ import annotations

import functools
import logging
import re

log = logging.getLogger("inboxd.mail.quotes")

# The patterns below are written in lower case and matched against
# lower-cased text: re.IGNORECASE makes their long alternations of words
# some twenty times slower.

# How many following lines a wrapped "On <date>, <name> wrote:" line may span;
# Gmail and Apple Mail wrap long attributions onto two or three lines.
_ATTRIBUTION_SPAN = 3
# Quoted lines at least this long were probably wrapped by the client.
_WRAP_WIDTH = 60
# How many non-blank lines, the first included, a header block may cover;
# html2text puts a blank line between the headers of some clients.
_HEADER_BLOCK_LINES = 7
# Device signatures and separator labels are short; longer lines are prose.
_SHORT_LINE = 80


# --- Attribution lines -------------------------------------------------------

# The verb of "<name> wrote:" in each language, as Gmail, Apple Mail,
# Thunderbird, Yahoo and Outlook write it.  Some put the name after the verb
# (German "schrieb X:", Finnish "X kirjoitti <date>:"), so anything but a
# colon may follow it; a time ("10:00") is the one colon allowed there.
_WROTE = (
    r"wrote|schrieb|geschrieben|a\s+écrit|avez\s+écrit|ha\s+scritto|scrisse|escribió|escreveu"
    r"|schreef|geschreven|skrev|kirjoitti|napisał(?:\(a\)|a)?|napisana|pisze|napsal(?:\(a\)|a)?"
    r"|napísal(?:\(a\)|a)?|написал(?:\(а\)|а)?|написав(?:\(-?ла\)|ла)?|написала|пишет|пише"
    r"|yazdı|írta|a\s+scris|έγραψε|كتب|đã\s+viết|menulis|va\s+escriure"
    r"|写道|寫道|書きました|のメッセージ|のメール|작성(?:하였습니다|했습니다)?|쓴\s*글"
)
_ATTRIBUTION = re.compile(
    rf"(?:{_WROTE})(?!\w)(?:[^:：]|(?<=\d)[:：](?=\d)){{0,160}}[:：]\s*$"
    # Zoho and others close the line with dashes instead of a colon.
    rf"|(?:{_WROTE})(?!\w)[^:：]{{0,120}}\s-{{2,}}\s*$"
    # Some webmail clients drop the colon after the address ("<addr> wrote"),
    # and Russian and Japanese ones the verb ("<date>, Name <addr>:"); Gmail
    # may wrap inside the brackets ("<\naddr>:").
    r"|@[^<>\s]+>\s*wrote\s*$|<\s*[^<>\s]+@[^<>\s]+\s*>\s*[:：]\s*$",
)
_ATTRIBUTION_ENDS = frozenset(":：-eE")
# The words an attribution opens with, where the language puts the date first.
_ATTRIBUTION_OPENER = re.compile(
    r"^(?:on|am|le|el|op|il|em|den|dne|dnia|w\s+dniu|no\s+dia|在|於|于)\s")
_ATTRIBUTION_NO_COLON = re.compile(rf"(?:{_WROTE})(?!\w)")
# A dateless attribution ends with the address, then maybe the verb:
# "Name <addr>:", "Name <addr> wrote:", "addr wrote:" (html2text writes the
# address as "<[addr](mailto:addr)>").
_ADDRESS_THEN_COLON = re.compile(
    rf"@[^\s<>()\[\]]+(?:\s*[>)\]]{{1,3}}\s*(?:{_WROTE})?|\s+(?:{_WROTE}))\s*[:：]\s*$")
# A year standing alone ("2024"), or digits joined by a separator ("10:00",
# "1/2", "2.4").  A pattern that opens with \d lets the engine skip ahead to
# the next digit, so the year's own look-behind comes after its first digit:
# "(?<=(?<!\d)1)9" is "(?<!\d)19" (and is four times quicker than an
# alternation that opens with a look-behind).
_DATE_OR_TIME = re.compile(r"\d(?:[:./]\d|(?<=(?<!\d)1)9\d\d(?!\d)|(?<=(?<!\d)2)0\d\d(?!\d))")


# --- Separator lines -----------------------------------------------------------

# A label between runs of dashes, underscores or equals signs:
# "-----Original Message-----", "---------- Forwarded message ---------",
# "------------------ 原始邮件 ------------------", "---- 回复的原邮件 ----".
_DASHED_LABEL = re.compile(r"^[-—–_=~*\s]*[-—–_=~]{2,}\s*([^-—–_=~]{1,60}?)\s*[-—–_=~]{2,}[-—–_=~*\s]*$")
# Words that say the label introduces another message, in the languages the
# clients are localised to ("Ursprüngliche Nachricht", "Исходное сообщение",
# "元のメッセージ", "원본 메시지", "Messaggio inoltrato", ...).
_SEPARATOR_WORDS = re.compile(
    r"original|forward|reply|replied|message|nachricht|weitergeleitet|transféré|réexpédié|mensaje|reenviad"
    r"|mensagem|encaminhad|reencaminhad|bericht|doorgestuurd|messaggio|inoltrat|meddelande|vidarebefordrat"
    r"|meddelelse|besked|videresendt|melding|viesti|välitetty|wiadomość|przekazan|zpráva|přeposlan|сообщени"
    r"|пересыла|повідомлен|переслан|ileti|mesaj|邮件|郵件|消息|訊息|信件|メッセージ|メール|메시지|메일|원본|전달",
)
# A line on its own that introduces a forwarded message (Apple Mail, Outlook
# for Mac, Thunderbird and others), in each language they are sold in.
_FORWARD_INTRO = re.compile(
    r"^(?:begin\s+forwarded\s+message|forwarded\s+message|original\s+message"
    r"|anfang\s+der\s+weitergeleiteten\s+(?:nachricht|e-mail)|weitergeleitete\s+nachricht"
    r"|début\s+du\s+message\s+(?:réexpédié|transféré)|message\s+transféré"
    r"|inicio\s+del\s+mensaje\s+reenviado|mensaje\s+reenviado"
    r"|inizio\s+(?:del\s+)?messaggio\s+inoltrato|messaggio\s+inoltrato"
    r"|início\s+da\s+mensagem\s+(?:re)?encaminhada|mensagem\s+(?:re)?encaminhada"
    r"|begin\s+doorgestuurd\s+bericht|doorgestuurd\s+bericht"
    r"|(?:början\s+på\s+)?vidarebefordrat\s+(?:brev|meddelande|mejl)"
    r"|start\s+på\s+videresendt\s+(?:besked|meddelelse|melding)|videresendt\s+(?:besked|meddelelse|melding)"
    r"|välitetty\s+viesti(?:\s+alkaa)?|początek\s+przekazywanej\s+wiadomości|przekazana\s+wiadomość"
    r"|začátek\s+přeposlané\s+zprávy|přeposlaná\s+zpráva"
    r"|начало\s+переадресованного\s+сообщения|пересылаемое\s+сообщение"
    r"|початок\s+пересланого\s+(?:листа|повідомлення)"
    r"|iletilen\s+(?:mesajın|iletinin)\s+başlangıcı|yönlendirilmiş\s+ileti"
    r"|(?:以下是)?转发的邮件|(?:以下為|開始)?轉寄的郵件|転送されたメッセージ|전달된\s*(?:메시지|메일))"
    r"\s*[:：]?\s*$",
)


# --- Embedded header blocks ----------------------------------------------------

# Header names of a quoted or forwarded message as Outlook, Apple Mail, Gmail,
# Samsung, Foxmail, QQ, NetEase, Yandex and Mail.ru write them, by kind.
_HEADER_KEYS = {
    "from": r"from|von|absender|de|expéditeur|da|mittente|van|afzender|fra|från|avsändare|od|nadawca"
    r"|odesílatel|lähettäjä|от(?:\s+кого)?|від|kimden|gönderen|feladó|remitente|de\s+la|από"
    r"|发件人|發件人|寄件者|寄件人|差出人|送信者|보낸\s*사람",
    # Outlook names the date by the verb "sent"; only a mail client writes that.
    "sent": r"sent|sent\s+at|gesendet|envoyé|envoyé\s+le|inviato|enviad[oa](?:\s+(?:el|em))?|verzonden"
    r"|sendt|skickat|lähetetty|wysłano|odesláno|отправлено|надіслано|gönderildi|gönderilme\s+tarihi"
    r"|elküldve|trimis|στάλθηκε|发送时间|發送時間|寄件日期|傳送時間|送信日時|送信日|보낸\s*날짜",
    "date": r"date|datum|date\s+d'envoi|data|fecha|dato|päivämäärä|дата|tarih|dátum|时间|時間|日期|日付|날짜"
    r"|message\s+du",
    "to": r"to|an|à|a|para|destinatario|aan|til|till|mottagare|vastaanottaja|do|komu|кому|kime|címzett"
    r"|către|προς|收件人|收件者|宛先|받는\s*사람",
    "cc": r"cc|kopie|kopia|kopio|копия|копія|bilgi|dw|másolatot\s+kap|抄送|抄送人|副本|참조",
    "subject": r"subject|betreff|objet|sujet|oggetto|asunto|assunto|onderwerp|emne|ämne|aihe|temat"
    r"|předmět|тема|konu|tárgy|subiect|θέμα|主\s*[题題]|主旨|标题|件名|제목",
}
# A header line may be bold ("*From:*", "**From:**"), sit in a table cell
# ("| 发件人 | ... |", NetEase), and use a full-width colon ("发件人：").
_HEADER_LINE = {
    kind: re.compile(rf"^[*_|\s]*(?:{keys})\s*[*_]*\s*(?:[:：]|\|(?=.*\S))")
    for kind, keys in _HEADER_KEYS.items()
}
# The other headers when a converter ran them all onto one line
# ("From: X Sent: Y To: Z Subject: W").
_INLINE_HEADER = {
    kind: re.compile(rf"\s[*_]*(?:{keys})\s*[*_]*\s*[:：]")
    for kind, keys in _HEADER_KEYS.items() if kind != "from"
}
_EMAIL = re.compile(r"[^\s<>()\[\]@]+@[^\s<>()\[\]@]+\.\w")


# --- Signatures ----------------------------------------------------------------

# "-- " is the standard signature delimiter (RFC 3676); many clients drop the
# trailing space. A line of underscores opens an Outlook quote or a mailing
# list footer; either way nothing the writer typed follows it.
_SIGNATURE_DELIMITER = re.compile(r"^(?:--\s*|_{2,}\s*)$")

# One-line signatures that mail apps append ("Sent from my iPhone", "Von
# meinem iPhone gesendet", "发自我的华为手机", "iPhoneから送信", "iPhone에서
# 보냄") are a verb frame around the name of a device or an app.  The frame
# opens the line in most languages; German, Turkish, Japanese, Korean and
# Chinese may close it instead.
_SENT_PREFIX = re.compile(
    r"^(?:sent\s+(?:from|with|via|using|on)|gesendet\s+(?:von|mit|über|aus)"
    r"|envoyé\s+(?:de|depuis|à\s+partir\s+de|avec|par)"
    r"|enviad[oa]\s+(?:desde|do|de|da|con|com|pelo|via|por)|inviato\s+(?:da|dal|dalla|dallo|con|tramite)"
    r"|(?:verzonden|verstuurd)\s+(?:met|vanaf|vanuit|van|via)|skickat\s+(?:från|med)|sendt\s+(?:fra|med)|lähetetty"
    r"|wysłan[eoa]\s+(?:z|ze|przez|przy\s+użyciu)|odesláno\s+(?:z|ze|pomocí)"
    r"|(?:отправлено|послано)\s+(?:с|со|из|через)"
    r"|(?:надіслано|відправлено)\s+(?:з|із|зі|через)|trimis\s+(?:de\s+pe|din|cu|de\s+la))\s",
)
# Chinese clients' frames ("发自我的华为手机", "来自网易邮箱大师"): the device
# ends the line, and only "我的" (my) may come before it.
_SENT_PREFIX_CJK = re.compile(r"^(?:发自|来自|來自|寄自|发送自|發送自)\s*(?:我的)?")
# The frames that close the line, each with the grammar that makes it one:
# "Von meinem iPhone gesendet", "Diese Nachricht wurde von meinem Android
# Mobiltelefon mit GMX Mail gesendet", "iPhone'umdan gönderildi", "Az
# iPhone-omról küldve", "iPhoneから送信", "iPhone에서 보냄", "从我的 iPhone 发送".
_SENT_SUFFIX = re.compile(
    r"^(?:diese\s+nachricht\s+wurde\s+)?(?:von|mit)\s.{1,60}\sgesendet$|(?:dan|den|tan|ten)\s+gönderildi$"
    r"|(?:ról|ről)\s+küldve$|(?:から|より)送信$|에서\s*(?:보냄|보냈습니다|전송됨)$"
    r"|^(?:从|從|通过|透過|經由).{1,24}(?:发送|發送|傳送|寄出)$"
)
# The words each of those frames ends with: a line that ends otherwise is
# spared the search (the pattern has no fixed start to skip ahead to).
_SENT_SUFFIX_ENDS = ("gesendet", "gönderildi", "küldve", "送信", "보냄", "보냈습니다", "전송됨", "发送", "發送", "傳送", "寄出")
# What names a device or a mail app; it must come right after an opening
# frame ("Sent from my desk, is easier" is prose) or anywhere in a short line
# with a closing one ("Kargo depodan gönderildi" is prose).
_DEVICE = re.compile(
    r"iphon|ipad|ipod|android|galaxy|samsung|huawei|honor|xiaomi|redmi|oppo|vivo|oneplus|pixel|nokia|motorola"
    r"|blackberry|mobile|smartphone|tablet|outlook|mail|gmail|yahoo|proton|spark|airmail|bluemail|typeapp|k-9"
    r"|windows|handy|phone|móvil|movil|celular|telemóvel|cellulare|telefoon|telefon|mobil|puhelin|komórk"
    r"|\bapp\b|aplikac|телефон|смартфон|почт|мобильн|мобільн|планшет|пошт|яндекс|uygulama"
    r"|手机|手機|邮箱|郵箱|客户端|華為|华为|小米|荣耀|魅族|三星|平板|スマートフォン|携帯|アプリ|모바일|갤럭시|휴대폰|스마트폰",
)
# The device or app at the end of a line, maybe with a word after it
# ("网易邮箱大师", "iPhone 客户端").
_DEVICE_AT_END = re.compile(rf"(?:{_DEVICE.pattern})\w{{0,4}}(?:\s*\w{{1,4}})?$")
# The English legacy form: "Sent from <a few words>" alone on its line.
_SENT_FROM_WORDS = re.compile(r"^sent\s+from\s+[\w'’ -]{1,40}$")
# "Get Outlook for iOS" in any language: short, names Outlook, a phone OS
# and the verb "get" or "download" ("Outlook for iOS crashes" is prose).
_OUTLOOK_APP = re.compile(r"outlook.{0,30}(?:ios|android)|(?:ios|android).{0,30}outlook")
_GET_APP = re.compile(
    r"\b(?:get|download|herunterladen|holen|obtenir|télécharger|obtener|descargar|scarica|ottieni|obter|baixe"
    r"|baixar|downloaden|hämta|hent|få|skaff|hanki|lataa|pobierz|uzyskaj|získat|stáhn\w*|получить|скачать"
    r"|скачайте|отримати|завантажити|edinin|indirin|alın)\b|获取|下载|取得|下載|入手|ダウンロード|받기|다운로드"
)
# K-9 Mail and others add an apology after the device name.
_BREVITY = re.compile(
    r"[.!]\s+(?:please\s+)?(?:excuse|pardon|veuillez|bitte|entschuldig|disculp|perdon|scus|desculp|извините)"
    r"[^.]*[.!]?$",
)
# Punctuation that a sentence has and a device signature does not.
_PROSE_MARKS = re.compile(r"[?？!！:：;；。]")
# html2text writes links as [text](url); a signature link reads as its text.
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
# A link in angle brackets, and the blanks before it.
_APP_LINK = re.compile(r"\s*<[^<>\s]*>")

# The end of a sentence, which a client's wrapping does not cut at.
_SENTENCE_END = frozenset(".?!。？！")
# Lines made only of rule characters, trimmed from the end of the reply.
_RULE_LINE = re.compile(r"^[-—_=*\s]*$")


def reply_text(text: str) -> str:
    """The new part of a plain-text mail body: quoted history and signature removed.

    A mail with nothing new in it (only a quote, a forward with nothing
    above it, only a signature) gives "".
    """
    try:
        return _strip(text)
    except Exception:  # noqa: BLE001 - a body we cannot read must still be shown.
        log.exception("quote stripping failed; keeping the whole body")
        return text


def _clean(line: str) -> str:
    """A line as the rules see it: HTML-escaped spaces and html2text escapes undone, outer space gone."""
    line = line.replace("&nbsp;", " ").replace("\xa0", " ").replace("\u200b", "").strip()
    # html2text escapes a leading "-", "+", "#" or "*" ("\-----Original Message-----", "\-- ").
    if line[:1] == "\\" and line[1:2] in "-+#*_":
        line = line[1:]
    # Some Japanese writers quote with a full-width ">".
    elif line[:1] == "＞":
        line = ">" + line[1:]
    return line


def _strip(text: str) -> str:
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [_clean(line) for line in raw]
    # None marks where quoted lines were taken out, so the blank lines
    # around them can be merged afterwards.
    kept: list[str | None] = []
    in_quote: str | bool = False
    i = 0
    while i < len(lines):
        line = lines[i]
        # A line right below a full-width quoted line, with no blank between,
        # is the quote's own text wrapped by a client that forgot the ">"
        # when the quoted line stops mid-sentence or the line goes on in
        # lower case; otherwise it is the writer answering.
        if line.startswith(">") or (in_quote and line and (in_quote == "open" or line[0].islower())):
            in_quote = _wrapped_quote(line)
            kept.append(None)
            i += 1
            continue
        in_quote = False
        if not line:
            # A blank line is the writer's: no rule below starts with one.
            kept.append(raw[i].rstrip())
            i += 1
            continue
        span = _attribution_span(lines, i)
        if span:
            # An attribution found from its address line may have its start
            # on the line above, when that line opens like one ("On Wed,
            # Dec 9, Mister Example\n<addr>\nwrote:").
            above = lines[i - 1].lower() if kept and kept[-1] else ""
            if _ATTRIBUTION_OPENER.match(above) and not _has_date_or_time(lines[i]):
                kept.pop()
            # An attribution above ">" lines may be followed by the writer's
            # answers between the quotes (bottom posting); otherwise the
            # quoted message follows unmarked and everything below is history.
            after = _next_nonblank(lines, i + span)
            if after is not None and lines[after].startswith(">"):
                kept.append(None)
                i += span
                continue
            break
        if (line.startswith(("--", "__")) and _SIGNATURE_DELIMITER.match(line)) or _is_separator(lines, i) \
                or _FORWARD_INTRO.match(line.lower()):
            break
        if _header_block(lines, i):
            # Some relays (Amazon's) put an attribution without its colon
            # right above the headers; it goes with them.
            above = lines[i - 1].lower() if kept and kept[-1] else ""
            if _ATTRIBUTION_NO_COLON.search(above) and _has_date_or_time(above):
                kept.pop()
            break
        if _is_device_signature(line):
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
    return "\n".join(out).strip()


def _wrapped_quote(line: str) -> str | bool:
    """For a quoted line: "open" if it was cut mid-sentence at the wrap
    width, True if full width but finished, False if short or not quoted."""
    if not line.startswith(">") or len(line) < _WRAP_WIDTH:
        return False
    return True if line[-1] in _SENTENCE_END else "open"


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


def _attribution_span(lines: list[str], i: int, *, dated: bool = False) -> int:
    """How many lines the attribution starting at line i spans, or 0.

    With `dated`, only an attribution whose first line has a date or time.
    """
    # An attribution opens with its date, or with the quoted writer's name
    # and address: when the client wrapped the date onto the next line
    # ("Name <addr>\n于2024年1月2日 10:00写道："), or wrote none ("Name
    # <addr> wrote:", Horde's "Quoting Name <addr>:").  That tells it apart
    # from prose like "As Anna wrote:".
    first = lines[i]
    if not _may_end_attribution(lines, i):
        return 0
    has_date = _has_date_or_time(first)
    if not has_date and (dated or "@" not in first and not first.endswith("<")):
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
        if joined[-1] in _ATTRIBUTION_ENDS and _ATTRIBUTION.search(joined.lower()):
            # A dateless one names the writer too: a bounce's "<addr>:" line
            # is no attribution.
            if not has_date and not (
                _has_date_or_time(joined) or _ADDRESS_THEN_COLON.search(joined.lower()) and len(joined.split()) > 1
            ):
                return 0
            # If a dated attribution also matches from the next line on,
            # this line is the writer's text just above it, unless it reads
            # as the start of one cut by wrapping: it ends with a comma or
            # an opening bracket, or holds the address and no full stop
            # ("Destek <addr>, 2 Oca 2024 Sal,\n10:00 tarihinde şunu yazdı:").
            if n > 1 and has_date and _attribution_span(lines, i + 1, dated=True) == n - 1:
                if not (first[-1] in ",，<(（" or "@" in first and first[-1] not in _SENTENCE_END):
                    return 0
            return n
    return 0


def _may_end_attribution(lines: list[str], i: int) -> bool:
    """Whether one of the lines an attribution starting at line i may span
    ends as every attribution does; when none does, `_attribution_span`
    finds nothing, and the date search on each line of a body is spared."""
    for n in range(1, _ATTRIBUTION_SPAN + 1):
        if i + n > len(lines):
            return False
        line = lines[i + n - 1]
        if n > 1 and not line:
            return False
        if line and line[-1] in _ATTRIBUTION_ENDS:
            return True
    return False


def _has_date_or_time(line: str) -> bool:
    """Whether the line holds a year (19xx/20xx) or a time or date like 10:00, 1/2, 2.4."""
    return _DATE_OR_TIME.search(line) is not None


def _is_separator(lines: list[str], i: int) -> bool:
    """Whether line i is a "-----Original Message-----" style separator.

    A dashed label counts when it names a message in some language, or when
    a header line follows it (a client's label we do not know).
    """
    line = lines[i]
    if len(line) > _SHORT_LINE * 2 or not line or line[0] not in "-—–_=~* ":
        return False
    label = _DASHED_LABEL.match(line)
    if label is None:
        return False
    if _SEPARATOR_WORDS.search(label.group(1).lower()):
        return True
    after = _next_nonblank(lines, i + 1)
    return after is not None and _header_kind(lines[after]) is not None


# A header block is looked at from each of its lines; remembering the
# kind of recent lines keeps a body full of "key: value" lines cheap.
@functools.lru_cache(maxsize=1024)
def _header_kind(line: str) -> str | None:
    if ":" not in line and "：" not in line and "|" not in line:
        return None
    line = line.lower()
    for kind, pattern in _HEADER_LINE.items():
        if pattern.match(line):
            return kind
    return None


def _header_block(lines: list[str], i: int) -> bool:
    """Whether line i opens a quoted header block.

    That is a From line and one more of Sent/Date, To, Cc and Subject within
    a few lines, with an address among them; or, as Outlook shows names
    without addresses, a From line and two more.  Clients differ in the
    order, put blank lines between, and some leave out the subject.
    """
    # Most lines have no colon; skipping them keeps a long body cheap.
    first = _header_kind(lines[i])
    if first is None:
        return False
    if first == "from":
        inline = {kind for kind, pattern in _INLINE_HEADER.items() if pattern.search(lines[i].lower())}
        if len(inline) >= 2:
            return True
    kinds: list[str] = []
    block: list[str] = []
    j = i
    while j < len(lines) and len(block) < _HEADER_BLOCK_LINES:
        if lines[j]:
            block.append(lines[j])
            kind = _header_kind(lines[j])
            if kind is not None:
                kinds.append(kind)
        j += 1
    found = set(kinds)
    others = found - {"from"}
    if "from" not in found or not others:
        return False
    # A mail client writes an address, or a subject, Outlook's "Sent:" or a
    # dated Date line; prose like "From: Berlin / To: Munich / Date: 12
    # March" has none of them.
    if any(_EMAIL.search(x) for x in block[:5]):
        return True
    dated = any(_header_kind(x) == "date" and _has_date_or_time(x) for x in block)
    return len(others) >= 2 and (dated or bool(others & {"subject", "sent"}))


def _is_device_signature(line: str) -> bool:
    """Whether the line is a one-line signature that a mobile or desktop mail app appends."""
    if not line or len(line) > _SHORT_LINE + 40:
        return False
    # Each substitution runs only on a line that has its first character:
    # most lines have none, and this runs on every short line of a body.
    if "[" in line:
        line = _MARKDOWN_LINK.sub(r"\1", line)
    # The app's link ("<https://aka.ms/o0ukef>") may sit anywhere in the line.
    if "<" in line:
        line = _APP_LINK.sub("", line)
    line = line.strip(" *_").lower()
    if "." in line or "!" in line:
        line = _BREVITY.sub("", line)
    line = line.rstrip(" .")
    if not line or _PROSE_MARKS.search(line):
        return False
    if "outlook" in line and _OUTLOOK_APP.search(line) and _GET_APP.search(line) and len(line.split()) <= 8:
        return True
    if _SENT_FROM_WORDS.match(line):
        return True
    opening = _SENT_PREFIX.match(line)
    if opening:
        # The device names itself in the first few words after the frame,
        # and a clause after a comma names it again ("Sent via the Samsung
        # Galaxy S21, an AT&T 5G smartphone").
        head, *clauses = re.split(r"[,，]", line[opening.end():])
        return _DEVICE.search(" ".join(head.split()[:5])[:40]) is not None and all(
            _DEVICE.search(clause) for clause in clauses)
    opening = _SENT_PREFIX_CJK.match(line)
    if opening:
        rest = line[opening.end():].strip()
        return len(rest) <= 16 and "的" not in rest and _DEVICE_AT_END.search(rest) is not None
    return (len(line) <= _SHORT_LINE and line.endswith(_SENT_SUFFIX_ENDS) and _SENT_SUFFIX.search(line) is not None
            and _DEVICE.search(line) is not None)
