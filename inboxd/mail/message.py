"""Turn the raw RFC 822 bytes of one email into a plain, frozen InboundMessage.

This is step (2) of the pipeline and it is pure: no I/O, no database, no
network.  The fast path is the stdlib parser with ``policy=compat32``; headers,
charsets and parts are decoded here, because the modern policy is about three
times slower.  When the fast path fails unexpectedly, ``mail-parser`` gets a
second try; when that fails too, the message is quarantined through
``MalformedMessage``.

Every string of an InboundMessage is text the store can hold: valid Unicode
(no lone surrogates, which SQLite refuses to bind) and no NUL.  The stdlib
parser hands 8-bit header bytes over as lone surrogates (surrogateescape);
`clean_text` turns them back into text at the boundary, `parse_message`:

* a run of such bytes that is valid UTF-8 becomes its characters (RFC 6532
  allows UTF-8 in headers), so a Message-ID and a reply's In-Reply-To that
  carry the same bytes still match;
* every other undecodable byte becomes the visible escape ``\\xNN`` (a
  backslash, "x" and two lower-case hex digits), and a NUL becomes
  ``\\x00``; a stray surrogate from a codec becomes ``\\uXXXX``.

The escape is reversible: ``\\xNN`` is byte NN, anything else is its UTF-8
bytes.  In a Message-ID (and In-Reply-To, References) it is unambiguous,
because RFC 5322 allows no backslash there.  Free text (subject, names, file
names, body) is first decoded by charset as before (UTF-8, the declared
charset, a guess; raw 8-bit header bytes, like Thunderbird, in UTF-8 and
else the message's own charset, see `_decode_raw`); only bytes that no
charset explains are escaped, the same way, instead of becoming U+FFFD.
A winmail.dat (TNEF) is unpacked into the files inside it (inboxd.mail.tnef).  NULs in free text are dropped, as they
always were.  The raw bytes of every message are kept in the store
(``rawmessage``), so nothing is lost either way.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import hashlib
import re
import urllib.parse
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import datetime, timezone
from email.message import Message, _parseparam
from email.parser import BytesParser
from email.policy import compat32
from email.utils import decode_params, getaddresses, parsedate_to_datetime, unquote

# charset_normalizer and html2text are imported where they are used: most mail
# declares its charset and has a text part, and neither module is needed by a
# daemon whose batches the parser worker parses (about 3.3 MiB of its memory).

from inboxd.outbound.loop import LOOP_HEADER
from inboxd.mail.tnef import is_tnef, read_tnef

__all__ = [
    "Address",
    "Attachment",
    "AutoFacts",
    "InboundMessage",
    "MalformedMessage",
    "clean_text",
    "content_hash",
    "extract_message_id",
    "parse_message",
]


class MalformedMessage(Exception):
    """The bytes cannot become a message we can file; str(e) is the one-line reason."""


@dataclass(frozen=True)
class Address:
    name: str
    email: str


@dataclass(frozen=True)
class Attachment:
    """One file of a mail.

    `inline` is true for a part the body shows in place: one whose
    Content-ID the HTML body refers to ("cid:", RFC 2392), as in a
    multipart/related mail, or one marked inline that has no file name (a
    signature logo).  A file the sender attached is not inline even when
    its Content-Disposition says so (Apple Mail marks PDFs inline): that is
    what Thunderbird lists as attachments and what routing's has_attachment
    counts.  `content_id` (without angle brackets) lets a viewer resolve
    "cid:" URLs.
    """

    filename: str | None
    content_type: str
    size: int
    sha256: str
    content: bytes | None
    inline: bool
    content_id: str | None = None


@dataclass(frozen=True)
class AutoFacts:
    auto_submitted: str | None
    precedence: str | None
    list_id: str | None
    list_unsubscribe: bool
    auto_response_suppress: str | None
    return_path: str | None
    delivery_status: bool
    loop: str | None
    # The report-type of a mail that is a multipart/report ("" without one), else None.
    report_type: str | None = None
    # The other headers that only automatic mail carries, or that name the
    # program that wrote it: (lowercased name, decoded value), in mail order.
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class InboundMessage:
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    from_: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    subject: str
    text: str
    html_only: bool
    attachments: tuple[Attachment, ...]
    auto: AutoFacts
    defects: tuple[str, ...]
    size: int
    # What the mail says about its own language (inboxd.desk.language): the
    # charsets declared on its parts and encoded words, lowercased, in MIME
    # order, and its Content-Language header.
    charsets: tuple[str, ...] = ()
    content_language: str | None = None
    # The new part of `text` (inboxd.mail.quotes.reply_text), worked out by
    # whoever parsed the mail (the parser worker, in the daemon), so the
    # filing thread does not; None: not worked out yet.
    reply_text: str | None = None
    # The SHA-256 (hex) of the raw bytes it was parsed from, by whoever parsed
    # them (the parser worker), so the filing thread does not hash them again
    # to keep them; None: not worked out.
    raw_sha256: str | None = None


_MAX_DEPTH = 40
# Charset detection is slow on big inputs; a prefix is enough to guess.
_GUESS_PREFIX = 64 * 1024

# ---------------------------------------------------------------------------
# Charsets
# ---------------------------------------------------------------------------

# Declared names mapped to the Python codecs to try, supersets first: mail
# clients label GBK text "gb2312" and HKSCS text "big5" all the time.
_ALIASES: dict[str, tuple[str, ...]] = {
    # The labels of the WHATWG Encoding Standard, which Thunderbird follows,
    # and the names codecs.lookup() gives (looked up here again).
    **dict.fromkeys(
        ("gb2312", "gbk", "x-gbk", "cp936", "ms936", "windows-936", "gb_2312-80",
         "gb2312-80", "gb_2312", "csgb2312", "euc-cn", "x-euc-cn", "gb18030", "chinese", "iso-ir-58",
         "csiso58gb231280", "cp54936", "windows-54936"),
        ("gb18030",),
    ),
    # Big5-HKSCS first; cp950 keeps the few Microsoft additions HKSCS lacks.
    **dict.fromkeys(("big5", "big-5", "x-big5", "cn-big5", "csbig5", "big5-hkscs", "big5hkscs", "x-x-big5", "cp950",
                     "ms950", "windows-950"), ("big5hkscs", "cp950")),
    # iso2022_jp_2 covers JIS X 0212; the cp932 bridge below (CP50220/CP50221)
    # the NEC/IBM extensions (①, ㈱) and the half-width kana Windows sends
    # (ESC ( I, SO/SI); _ext, which passes SO/SI through as text, comes last.
    **dict.fromkeys(("iso-2022-jp", "iso2022_jp", "csiso2022jp", "iso-2022-jp-2", "iso2022_jp_2", "iso-2022-jp-3",
                     "cp50220", "cp50221", "cp50222"), ("iso2022_jp_2", "x-cp50220", "iso2022_jp_ext")),
    **dict.fromkeys(("ks_c_5601-1987", "ks_c_5601-1989", "ks_c_5601", "ksc5601", "ksc_5601", "euc-kr", "euc_kr",
                     "cseuckr", "windows-949", "iso-ir-149", "korean", "csksc56011987", "uhc"), ("cp949",)),
    **dict.fromkeys(("shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "windows-31j", "csshiftjis", "ms932",
                     "x-ms-cp932"), ("cp932",)),
    # eucJP-ms puts the NEC row 13 (①) where JIS X 0213 has it.
    **dict.fromkeys(("euc-jp", "euc_jp", "x-euc-jp", "cseucpkdfmtjapanese"), ("euc_jp", "euc_jis_2004")),
    **dict.fromkeys(("windows-874", "tis-620", "iso-8859-11"), ("cp874",)),
    # Outlook writes windows-1252 characters (curly quotes) under a latin-1
    # label; WHATWG decodes the label as windows-1252, and so do we.
    **dict.fromkeys(("iso-8859-1", "iso8859-1", "iso8859_1", "iso_8859-1", "iso88591", "latin1", "latin-1", "l1",
                     "cp819", "ibm819", "iso-ir-100", "csisolatin1", "x-cp1252"), ("cp1252", "latin_1")),
    **dict.fromkeys(("iso-8859-9", "iso8859-9", "iso8859_9", "latin5", "l5", "iso-ir-148"), ("cp1254", "iso8859_9")),
    **dict.fromkeys(("utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"), ("utf_8",)),
    **dict.fromkeys(("macintosh", "mac", "x-mac-roman", "csmacintosh"), ("mac_roman",)),
    "x-mac-cyrillic": ("mac_cyrillic",),
    "hz-gb-2312": ("hz",),
    "iso-8859-8-i": ("iso8859_8",),
    "unicode-1-1-utf-7": ("utf_7",),
    # 8-bit bytes under an ASCII label are undeclared text: detect them.
    **dict.fromkeys(("us-ascii", "ascii", "ansi_x3.4-1968", "us"), ()),
    **dict.fromkeys(("unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default", "charset", "8bit"), ()),
}
# Codecs whose bytes look like ASCII, so the "all ASCII" shortcut is wrong.
_NOT_ASCII_SAFE = ("iso2022", "x-cp50220", "utf_7", "utf_16", "utf_32", "hz")
# Of those, the 7-bit ones: an 8-bit byte means the label is wrong.
_SEVEN_BIT = ("iso2022", "x-cp50220", "utf_7", "hz")
# Single-byte Latin codecs decode anything, so their success proves nothing.
_LATIN = frozenset({"cp1252", "latin_1", "iso8859_15", "iso8859_2", "cp1250"})
_CJK = frozenset({"gb18030", "gbk", "gb2312", "big5", "big5hkscs", "cp950", "cp949", "euc_kr",
                  "johab", "cp932", "shift_jis", "euc_jp", "euc_jis_2004", "hz"})


@functools.lru_cache(maxsize=512)
def _charset_chain(declared: str | None) -> tuple[str, ...]:
    """The Python codecs to try for a declared charset; () means detect."""
    if not declared:
        return ()
    name = declared.strip().strip("\"'").lower()
    # RFC 2231 allows a language suffix: "utf-8*en".
    name = name.split("*", 1)[0]
    if name in _ALIASES:
        return _ALIASES[name]
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return ()
    # Names like "base64" or "rot13" resolve to codecs that are not charsets.
    if not getattr(info, "_is_text_encoding", True):
        return ()
    name = info.name.replace("-", "_")
    return _ALIASES.get(name, (name,))


def _iso2022jp_via_cp932(data: bytes) -> str:
    """Decode ISO-2022-JP as Windows does (CP50220/CP50221): JIS pairs mapped into CP932.

    Python's ISO-2022-JP codecs reject the NEC row 13 characters (①, ㈱) that
    Outlook puts in Japanese mail; CP932 has them, so each JIS X 0208 pair is
    moved to its Shift_JIS position and decoded there.  Half-width katakana
    come after ESC ( I, or between SO and SI.
    """
    out = bytearray()
    mode = shifted_from = "ascii"
    i, n = 0, len(data)
    while i < n:
        if data[i] == 0x0E:
            # SO (CP50221): half-width katakana until SI.
            shifted_from, mode, i = mode, "kana", i + 1
            continue
        if data[i] == 0x0F:
            mode, i = shifted_from, i + 1
            continue
        if data[i] == 0x1B:
            seq = data[i:i + 3]
            if seq in (b"\x1b$B", b"\x1b$@"):
                mode, i = "jis", i + 3
            elif seq == b"\x1b(I":
                mode, i = "kana", i + 3
            elif seq in (b"\x1b(B", b"\x1b(J"):
                mode, i = "ascii", i + 3
            else:
                raise UnicodeDecodeError("x-cp50220", data, i, i + 1, "unknown escape")
            continue
        b = data[i]
        if mode == "jis" and b > 0x20 and i + 1 < n:
            c1, c2 = b, data[i + 1]
            if not (0x21 <= c1 <= 0x7E and 0x21 <= c2 <= 0x7E):
                raise UnicodeDecodeError("x-cp50220", data, i, i + 2, "not a JIS X 0208 pair")
            s1 = ((c1 + 1) >> 1) + (0x70 if c1 <= 0x5E else 0xB0)
            s2 = c2 + (0x1F if c2 <= 0x5F else 0x20) if c1 & 1 else c2 + 0x7E
            out += bytes((s1, s2))
            i += 2
        elif mode == "kana" and 0x21 <= b <= 0x5F:
            out.append(b + 0x80)
            i += 1
        else:
            out.append(b)
            i += 1
    return out.decode("cp932")


def _try(data: bytes, codec: str) -> str | None:
    try:
        if codec == "x-cp50220":
            return _iso2022jp_via_cp932(data)
        return data.decode(codec)
    except (UnicodeError, LookupError):
        return None


# The charsets real mail uses; left to itself the detector picks exotic
# code pages (hp_roman8) for short German text.
_GUESS_CODECS = ["utf_8", "gb18030", "big5", "cp932", "euc_jp", "cp949", "cp1252", "cp1250", "cp1251",
                 "koi8_r", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp874", "cp1258"]
_GB2312_PAIR = re.compile(rb"[\xa1-\xf7][\xa1-\xfe]")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")


def _guess(data: bytes) -> tuple[str, str] | None:
    """Best guess (codec, text) for bytes of unknown charset, or None."""
    if b"\x1b$" in data or b"\x1b(" in data:
        for codec in _ALIASES["iso-2022-jp"]:
            text = _try(data, codec)
            if text is not None:
                return codec, text
    # Undeclared 8-bit mail here is mostly Chinese (Foxmail, Outlook), and
    # charset_normalizer takes short GBK strings for Korean; text made of
    # GB2312-range byte pairs that decodes strictly is taken as GB18030.
    high = len(_HIGH_BYTE.findall(data))
    if high and 2 * len(_GB2312_PAIR.findall(data)) >= 0.9 * high:
        text = _try(data, "gb18030")
        if text is not None:
            return "gb18030", text
    import charset_normalizer

    best = charset_normalizer.from_bytes(data[:_GUESS_PREFIX], cp_isolation=_GUESS_CODECS).best()
    if best is None:
        return None
    for codec in _charset_chain(best.encoding) or (best.encoding,):
        text = _try(data, codec)
        if text is not None:
            return codec, text
    return None


_SUSPICIOUS_RUN = re.compile(rb"[\x80-\xff]{4}")


def decode_bytes(data: bytes, declared: str | None) -> str:
    """Decode text bytes under a declared (possibly wrong or absent) charset; never raises."""
    chain = _charset_chain(declared)
    if chain and chain[0].startswith(_NOT_ASCII_SAFE):
        if chain[0].startswith(_SEVEN_BIT) and not data.isascii():
            # 8-bit bytes under a 7-bit label (Japanese phones send UTF-8 or
            # Shift_JIS as "ISO-2022-JP"): valid UTF-8 is UTF-8; the cp932
            # bridge in the chain reads Shift_JIS between the escapes.
            text = _try(data, "utf-8")
            if text is not None:
                return text
        for codec in chain:
            text = _try(data, codec)
            if text is not None:
                return text
    elif data.isascii():
        return data.decode("ascii")
    else:
        # Strictly valid UTF-8 wins over a legacy label: GB18030 and the Latin
        # codecs accept UTF-8 byte sequences, so their success proves nothing,
        # while non-ASCII legacy text is almost never valid UTF-8 by chance.
        text = _try(data, "utf-8")
        if text is not None:
            return text
        if chain and chain[0] in _LATIN and _SUSPICIOUS_RUN.search(data):
            # Long runs of high bytes are CJK under a Latin label, not accents.
            guess = _guess(data)
            if guess is not None and guess[0] in _CJK:
                return guess[1]
        for codec in chain:
            text = _try(data, codec)
            if text is not None:
                return text
    guess = _guess(data)
    if guess is not None:
        return guess[1]
    # What no charset explains stays visible and reversible (see the module
    # docstring) rather than becoming U+FFFD.
    return data.decode(chain[0] if chain else "utf-8", "backslashreplace")


def _str_bytes(value: str) -> bytes:
    """Bytes of a compat32 string, whose 8-bit bytes are surrogate-escaped."""
    return value.encode("utf-8", "surrogateescape")


def _decode_raw(value: str, hint: str | None = None) -> str:
    """A header fragment without encoded words; raw 8-bit bytes get decoded.

    As Thunderbird does: UTF-8 when the bytes are valid UTF-8 (RFC 6532),
    else the message's own charset (`hint`, see `_charset_hint`) when they
    are valid in it, else a guess.  Raw ISO-2022-JP (escape sequences, no
    8-bit byte), which old Japanese mailers put in headers, is decoded too.
    """
    if value.isascii():
        if "\x1b" in value and ("\x1b$" in value or "\x1b(" in value):
            return decode_bytes(value.encode("ascii"), "iso-2022-jp")
        return value
    data = _str_bytes(value)
    text = _try(data, "utf-8")
    return text if text is not None else decode_bytes(data, hint)


# RFC 2047 encoded word; the text cannot contain "?" and may be empty.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")
_WS = re.compile(r"\s+")
_FOLD_WS = re.compile(r"[ \t\r\n]+")


_FOLD = re.compile(r"\r?\n[ \t]*")


def _word_bytes(encoding: str, text: str) -> bytes | None:
    try:
        if encoding in "Bb":
            text = _WS.sub("", text)
            return binascii.a2b_base64(text + "=" * (-len(text) % 4))
        # Q words with raw spaces are invalid but common; only folding goes.
        text = _FOLD.sub("", text)
        return binascii.a2b_qp(text.encode("ascii", "surrogateescape"), header=True)
    except (binascii.Error, ValueError):
        return None


def _decode_words(value: str, hint: str | None = None) -> str:
    """Decode a header value that contains RFC 2047 encoded words."""
    # Tokens are (text, None) for plain text and (bytes, charset) for words.
    tokens: list[tuple[str | bytes, str | None]] = []
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        if m.start() > pos:
            tokens.append((value[pos:m.start()], None))
        data = _word_bytes(m.group(2), m.group(3))
        # An undecodable word stays as the literal text it was.
        tokens.append((m.group(0), None) if data is None else (data, m.group(1).lower()))
        pos = m.end()
    if pos < len(value):
        tokens.append((value[pos:], None))

    pieces: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    for i, (chunk, charset) in enumerate(tokens):
        if charset is None:
            # Whitespace between two encoded words is not text (RFC 2047 6.2).
            if (not chunk.strip() and 0 < i < len(tokens) - 1
                    and tokens[i - 1][1] is not None and tokens[i + 1][1] is not None):
                continue
            if pending_charset is not None:
                pieces.append(decode_bytes(bytes(pending), pending_charset))
                pending, pending_charset = bytearray(), None
            pieces.append(_decode_raw(chunk, hint))
        elif charset == pending_charset:
            # Clients split multi-byte characters across adjacent words.
            pending += chunk
        else:
            if pending_charset is not None:
                pieces.append(decode_bytes(bytes(pending), pending_charset))
            pending, pending_charset = bytearray(chunk), charset
    if pending_charset is not None:
        pieces.append(decode_bytes(bytes(pending), pending_charset))
    return "".join(pieces)


def decode_header_text(value: str | None, hint: str | None = None) -> str:
    """Decode RFC 2047 words and raw 8-bit bytes; collapse folding whitespace.

    `hint` is the charset raw 8-bit bytes are tried in after UTF-8 (`_decode_raw`).
    """
    if not value:
        return ""
    if "=?" not in value:
        text = _decode_raw(value, hint)
    else:
        text = _decode_words(value, hint)
    return _FOLD_WS.sub(" ", text.replace("\x00", "")).strip()


# ---------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------

_ID_IN_BRACKETS = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")
_ID_SPLIT = re.compile(r"[\s,]+")


def _id_tokens(value: str | None) -> list[str]:
    """Message ids in a Message-ID header: <...> tokens when any exist, else bare tokens."""
    if not value:
        return []
    bracketed = _ID_IN_BRACKETS.findall(value)
    if bracketed:
        found = [_FOLD.sub("", token).strip() for token in bracketed]
    else:
        found = _ID_SPLIT.split(_COMMENT.sub(" ", value))
    return _unique(found)


def _unique(tokens) -> list[str]:
    seen: dict[str, None] = {}
    for token in tokens:
        if token and token not in seen:
            seen[token] = None
    return list(seen)


# In-Reply-To and References as clients really write them: a <...> token,
# or one whose ">" is missing before the next "<" (a token cut off at the
# end of a truncated header is dropped: it names no message).
_REF_IN_BRACKETS = re.compile(r"<([^<>]*)(?:>|(?=<))")
# The old free-text In-Reply-To names the author beside the message:
# 'Message from Ann <ann@x> of "Tue, 3 Jan 2006" <id@x>', "<ann@x>'s message
# of ...".  Such an address is no message id.  (A name has no digits; "from
# Tue, 3 Jan <id@x>" is a date, and the id after it is kept.)
_FROM_BEFORE = re.compile(r"\bfrom\s[^<>\d]*$", re.IGNORECASE)
_POSSESSIVE_AFTER = re.compile(r"^['\u2019]s\b", re.IGNORECASE)
_BARE_TOKEN = re.compile(r"[^\s,;<>()\[\]\"'\u2019]+")
_BARE_TRIM = "'\u2019.:"


def _ids(value: str | None) -> list[str]:
    """The message ids an In-Reply-To or References header names, in order, once each.

    With any "<" in the header, the bracketed tokens (an id folded over
    lines is joined up; several ids run together inside one pair of
    brackets are split); otherwise only the bare tokens that have an "@",
    so free text such as "Your message of Tue, 3 Jan 2006 10:00" yields no
    ids.  An author's address in old free-text forms is left out.
    """
    if not value:
        return []
    found: list[str] = []
    if "<" in value:
        for match in _REF_IN_BRACKETS.finditer(value):
            if _is_author(value, match.start(), match.end()):
                continue
            token = _FOLD.sub("", match.group(1)).strip()
            parts = token.split()
            if len(parts) > 1 and all("@" in part for part in parts):
                found.extend(parts)
            else:
                found.append(token)
    else:
        text = _COMMENT.sub(" ", value)
        for match in _BARE_TOKEN.finditer(text):
            token = match.group(0).strip(_BARE_TRIM)
            if "@" in token.strip("@") and not _is_author(text, match.start(), match.end()):
                found.append(token)
    return _unique(found)


def _is_author(text: str, start: int, end: int) -> bool:
    """Whether the id-like token at text[start:end] is an author's address in free text."""
    before = text[:start]
    previous = max(before.rfind(">"), before.rfind("<"))
    return bool(_FROM_BEFORE.search(before[previous + 1:]) or _POSSESSIVE_AFTER.match(text[end:]))


def _first_id(value: str | None) -> str | None:
    ids = _id_tokens(value)
    return ids[0] if ids else None


# A bare addr-spec inside text that the address grammar could not read.
_BARE_ADDRESS = re.compile(r'[^\s<>(),;:"\[\]]+@[^\s<>(),;:"\[\]@]+')


def _usable(addr: str) -> bool:
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in domain):
        return False
    # Whitespace is legal only inside a quoted local part ("John Doe"@x).
    return local.startswith('"') or not any(c.isspace() for c in local)


# While the address grammar reads a header, each RFC 2047 encoded word is
# replaced by a placeholder atom, so whatever the word decodes to (a colon,
# an "@", angle brackets, a line break) can never become part of an address.
_WORD_MARK = "\ue000"
_MARKED_WORD = re.compile("\ue000(\\d+)\ue000")


def _addresses(values: list[str], hint: str | None = None) -> tuple[Address, ...]:
    """The addresses of address headers, as a mail client shows them (see `_read_addresses`).

    The same few headers come again and again ("To: support@..." and the
    regular customers' "From:"), so short ones are read once per worker.
    """
    if not values:
        return ()
    if sum(map(len, values)) <= _CACHED_ADDRESS_CHARS:
        return _read_addresses_cached(tuple(values), hint)
    return _read_addresses(values, hint)


# Address headers up to this long are remembered (`_addresses`).
_CACHED_ADDRESS_CHARS = 1000


@functools.lru_cache(maxsize=2048)
def _read_addresses_cached(values: tuple[str, ...], hint: str | None) -> tuple[Address, ...]:
    return _read_addresses(values, hint)


def _read_addresses(values, hint: str | None = None) -> tuple[Address, ...]:
    """The addresses of address headers, as a mail client shows them.

    The address comes from the header's own syntax, never from inside an
    encoded word, which may only carry a display name (RFC 2047 section 5):
    "=?utf-8?q?Evil=0D=0ABcc:_victim@x.example?= <evil@y.example>" is
    evil@y.example, named "Evil Bcc: victim@x.example".  Only a header with
    no address outside its encoded words is decoded first and read again,
    as Thunderbird does, so "=?utf-8?b?...?=" holding "Zhang San
    <zhang@example.cn>" is zhang@example.cn, named Zhang San.  Raw 8-bit
    names are decoded with the message's charset as `hint` (`_decode_raw`).
    """
    words: list[str] = []

    def mark(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"{_WORD_MARK}{len(words) - 1}{_WORD_MARK}"

    masked = [_ENCODED_WORD.sub(mark, value) for value in values]
    result = []
    for name, addr in getaddresses(masked):
        addr = _decode_raw(addr).strip().lower()
        if _usable(addr) and _WORD_MARK not in addr:
            name = _MARKED_WORD.sub(lambda m: words[int(m.group(1))], name)
            result.append(Address(decode_header_text(name, hint), addr))
    if not result:
        # Broken headers such as "Big Bug bb@bug.com" or "a@x b@y" still
        # name a reachable person; take their bare addresses.
        result = _bare_addresses(_decode_raw(value) for value in masked)
    if not result and words:
        # The whole "name <address>" is inside encoded words.
        decoded = [decode_header_text(value, hint) for value in values]
        result = [Address(name.strip(), addr.strip().lower()) for name, addr in getaddresses(decoded)
                  if _usable(addr.strip())]
        if not result:
            result = _bare_addresses(decoded)
    return tuple(result)


def _bare_addresses(values) -> list[Address]:
    return [Address("", match.group(0).lower()) for value in values
            for match in _BARE_ADDRESS.finditer(value) if _WORD_MARK not in match.group(0)]


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(_FOLD_WS.sub(" ", value).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000": the zone is unknown, the time is UTC.
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _header_map(msg: Message) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        if not isinstance(value, str):
            value = str(value)
        headers.setdefault(name.strip().lower(), []).append(value)
    return headers


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _lower_stripped(value: str | None) -> str | None:
    if value is None:
        return None
    return _decode_raw(_FOLD_WS.sub(" ", value)).strip().lower()


def _return_path(value: str | None) -> str | None:
    if value is None:
        return None
    value = _decode_raw(value)
    bracketed = _ID_IN_BRACKETS.findall(value)
    addr = bracketed[0] if bracketed else value
    return _WS.sub("", addr).lower()


# ---------------------------------------------------------------------------
# Body and attachments
# ---------------------------------------------------------------------------

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


class _PartFacts:
    """Each part's content type and charset, read once per parse.

    The stdlib parses the Content-Type header anew on every call, and the
    hint, the walk, the body and the declared charsets each ask.
    """

    def __init__(self) -> None:
        self._types: dict[int, str] = {}
        self._charsets: dict[int, str | None] = {}

    def content_type(self, part: Message) -> str:
        # By id: the parts live as long as the parse that asks.
        value = self._types.get(id(part))
        if value is None:
            value = self._types[id(part)] = part.get_content_type()
        return value

    def maintype(self, part: Message) -> str:
        # What Message.get_content_maintype does.
        return self.content_type(part).split("/")[0]

    def charset(self, part: Message) -> str | None:
        key = id(part)
        if key not in self._charsets:
            self._charsets[key] = part.get_content_charset()
        return self._charsets[key]


class _Walk:
    """What a walk over the MIME tree found."""

    def __init__(self, max_attachment_bytes: int, hint: str | None = None, facts: _PartFacts | None = None) -> None:
        self.max_attachment_bytes = max_attachment_bytes
        self.facts = facts or _PartFacts()
        # The message's charset, for raw 8-bit file names (`_charset_hint`).
        self.hint = hint
        self.plain: Message | None = None
        self.html: Message | None = None
        # Every HTML body part: their "cid:" references mark attachments inline.
        self.html_parts: list[Message] = []
        self.attachments: list[Attachment] = []
        self.delivery_status = False
        self.defects: list[str] = []
        # The body a winmail.dat carried: (text, html), used when the mail has no other.
        self.tnef_body: tuple[str | None, str | None] | None = None


def _charset_hint(msg: Message, facts: _PartFacts | None = None) -> str | None:
    """The charset raw 8-bit header bytes are read in after UTF-8, as Thunderbird does.

    Thunderbird falls back to the message's charset: the first one declared
    on the top-level part or a text part, in MIME order.  Labels that name
    no charset (us-ascii, unknown-8bit) are passed over.
    """
    facts = facts or _PartFacts()
    stack = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        if part is msg or facts.maintype(part) == "text":
            charset = facts.charset(part)
            if charset and _charset_chain(charset):
                return charset
        if part.is_multipart() and depth < _MAX_DEPTH:
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend((sub, depth + 1) for sub in reversed(payload) if isinstance(sub, Message))
    return None


def _raw_header(part: Message, name: str) -> str | None:
    """The first `name` header as parsed, 8-bit bytes still surrogate-escaped.

    Message.get() would turn 8-bit bytes into U+FFFD before a file name
    could be decoded from them.
    """
    for key, value in part.raw_items():
        if key.lower() == name:
            return value if isinstance(value, str) else str(value)
    return None


def _param(part: Message, header: str, name: str) -> str | tuple[str, str, str] | None:
    """A MIME parameter, RFC 2231 continuations joined; an extended (filename*=)
    value wins over a plain one, as RFC 2231 and Thunderbird have it."""
    value = _raw_header(part, header)
    # A parameter's name, or its RFC 2231 pieces ("name*0*"), is in the
    # header's text: most body parts have no file name, and are spared the parse.
    if value is None or name not in value.lower():
        return None
    try:
        params = []
        for item in _parseparam(value)[1:]:
            key, _, val = item.partition("=")
            params.append((key.strip().lower(), val.strip()))
        found = [val for key, val in decode_params([("", "")] + params)[1:] if key == name]
    except Exception:  # noqa: BLE001 - an odd header: the stdlib's own reading
        found = [part.get_param(name, None, header)]
    found = [val for val in found if val]
    if not found:
        return None
    chosen = next((val for val in found if isinstance(val, tuple)), found[0])
    if isinstance(chosen, tuple):
        return chosen[0], chosen[1], unquote(chosen[2])
    return unquote(chosen)


def _filename(part: Message, hint: str | None = None) -> str | None:
    """The part's file name as Thunderbird shows it.

    Content-Disposition's filename, else Content-Type's name; RFC 2231
    (filename*=gb2312''%C4%E3..., continuations), RFC 2047 words inside the
    quotes (filename="=?GBK?B?...?=", which Outlook and QQ Mail send) and raw
    8-bit bytes, in UTF-8 or else the message's charset `hint`.
    """
    raw = _param(part, "content-disposition", "filename")
    if raw is None:
        raw = _param(part, "content-type", "name")
    if raw is None:
        return None
    if isinstance(raw, tuple):
        # RFC 2231: (charset, language, percent-decoded text as code points).
        charset, _, text = raw
        try:
            data = text.encode("latin-1", "surrogateescape")
        except UnicodeEncodeError:
            data = _str_bytes(text)
        name = decode_bytes(data, charset or hint)
    else:
        name = decode_header_text(raw.strip('"'), hint)
    name = name.replace("\x00", "").strip()
    return name or None


def _content_id(part: Message) -> str | None:
    value = _raw_header(part, "content-id")
    return _first_id(_decode_raw(value)) if value else None


def _payload_bytes(part: Message) -> bytes:
    if part.is_multipart():
        # An encapsulated message (message/rfc822, delivery-status blocks).
        chunks = []
        for sub in part.get_payload():
            try:
                chunks.append(sub.as_bytes())
            except Exception:  # noqa: BLE001 - the generator trips on odd headers
                chunks.append(_str_bytes(sub.as_string()))
        return b"\n".join(chunks)
    data = part.get_payload(decode=True)
    if data is None:
        return b""
    return data


def _attachment(walk: _Walk, data: bytes, filename: str | None, content_type: str, inline: bool,
                content_id: str | None) -> Attachment:
    return Attachment(
        filename=filename,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content=data if len(data) <= walk.max_attachment_bytes else None,
        inline=inline,
        content_id=content_id,
    )


def _add_attachment(walk: _Walk, part: Message, filename: str | None) -> None:
    # A nameless part marked inline (a signature logo) is shown, not attached;
    # a part the HTML refers to by cid: is marked inline after the walk.
    inline = part.get_content_disposition() == "inline" and filename is None
    walk.attachments.append(_attachment(walk, _payload_bytes(part), filename, walk.facts.content_type(part), inline,
                                        _content_id(part)))


def _add_tnef(walk: _Walk, part: Message, filename: str | None) -> bool:
    """The files of a winmail.dat instead of it, and its body kept for a mail
    without text; False (winmail.dat stays as it is) when it holds nothing readable."""
    content = read_tnef(_payload_bytes(part), decode_bytes)
    if content is None or not (content.files or content.text or content.html):
        if content is None:
            walk.defects.append("TnefUnreadable")
        return False
    for f in content.files:
        walk.attachments.append(_attachment(walk, f.data, f.filename, f.content_type, False, f.content_id))
    if walk.tnef_body is None and (content.text or content.html):
        walk.tnef_body = (content.text, content.html)
    return True


def _walk(part: Message, walk: _Walk, depth: int = 0) -> None:
    for defect in part.defects:
        walk.defects.append(type(defect).__name__)
    if depth > _MAX_DEPTH:
        walk.defects.append("NestingTooDeep")
        return
    ctype = walk.facts.content_type(part)
    if ctype in _DSN_TYPES:
        walk.delivery_status = True
        _add_attachment(walk, part, _filename(part, walk.hint))
        return
    if ctype == "message/rfc822" or (part.is_multipart() and not ctype.startswith("multipart/")):
        # A forwarded mail is an attachment; its text is not this mail's body.
        _add_attachment(walk, part, _filename(part, walk.hint))
        return
    if part.is_multipart():
        if ctype == "multipart/report" and str(part.get_param("report-type", "")).lower() == "delivery-status":
            walk.delivery_status = True
        for sub in part.get_payload():
            _walk(sub, walk, depth + 1)
        return
    filename = _filename(part, walk.hint)
    if ctype in ("text/plain", "text/html") and filename is None and part.get_content_disposition() != "attachment":
        if ctype == "text/plain":
            if walk.plain is None:
                walk.plain = part
        else:
            if walk.html is None:
                walk.html = part
            walk.html_parts.append(part)
        # Further body parts (the HTML alternative, list footers) are not files.
        return
    if is_tnef(ctype, filename) and _add_tnef(walk, part, filename):
        return
    _add_attachment(walk, part, filename)


# A "cid:" URL in HTML (RFC 2392): the Content-ID, URL-encoded, without brackets.
_CID_URL = re.compile(rb"""cid:([^\s"'<>()]+)""", re.I)


def _mark_inline(walk: _Walk) -> list[Attachment]:
    """The attachments, those the HTML body refers to by cid: marked inline."""
    if not walk.html_parts or not any(a.content_id and not a.inline for a in walk.attachments):
        return walk.attachments
    cited = {urllib.parse.unquote_to_bytes(m.group(1)).decode("utf-8", "replace").lower()
             for part in walk.html_parts for m in _CID_URL.finditer(part.get_payload(decode=True) or b"")}
    return [replace(a, inline=True) if a.content_id and a.content_id.lower() in cited else a
            for a in walk.attachments]


def _part_text(part: Message, facts: _PartFacts | None = None) -> str:
    facts = facts or _PartFacts()
    data = part.get_payload(decode=True) or b""
    charset = facts.charset(part)
    if charset is None and facts.content_type(part) == "text/html":
        meta = _META_CHARSET.search(data[:4096])
        if meta:
            charset = meta.group(1).decode("ascii").lower()
    return decode_bytes(data, charset)


# html2text costs about a microsecond per character; past this size the
# rest of a body is rarely read by an agent and would stall the ingest.
_HTML_LIMIT = 100_000
_HTML_NOISE = re.compile(r"<(style|script)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)


def html_to_text(html: str) -> str:
    """Readable text for an HTML body: links kept, no hard wrapping."""
    if len(html) > _HTML_LIMIT:
        html = _HTML_NOISE.sub("", html)[:_HTML_LIMIT]
    import html2text

    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.unicode_snob = True
    converter.images_to_alt = True
    # Bold markers around CJK words read as noise ("**订单** ") to agents.
    converter.ignore_emphasis = True
    return converter.handle(html).strip("\n")


def _clean_text(text: str) -> str:
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------------------
# Storable text and content identity
# ---------------------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udfff]+")


def clean_text(value: str) -> str:
    """`value` as text the store can hold: valid Unicode without NUL.

    Bytes the parser could not decode (lone surrogates U+DC80..U+DCFF from
    surrogateescape) become their characters where they are valid UTF-8 and
    the visible escape ``\\xNN`` where not; NUL becomes ``\\x00`` and any
    other lone surrogate ``\\uXXXX``.  The module docstring explains why
    this is reversible.  Text that needs nothing is returned as it is.
    """
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if value.isascii():
        return value
    try:
        # Encoding is the quickest test for lone surrogates (a regex search
        # over a long CJK body costs ten times more).
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub(_surrogates_as_text, value)
    return value


def _surrogates_as_text(match: re.Match[str]) -> str:
    pieces: list[str] = []
    pending = bytearray()
    for char in match.group(0):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            # surrogateescape put byte (code - 0xDC00) here.
            pending.append(code - 0xDC00)
            continue
        if pending:
            pieces.append(pending.decode("utf-8", "backslashreplace"))
            pending.clear()
        pieces.append(f"\\u{code:04x}")
    if pending:
        pieces.append(pending.decode("utf-8", "backslashreplace"))
    return "".join(pieces)


def _storable(value):
    """`value` (an InboundMessage or a part of one) with clean_text applied to every string in it."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, tuple):
        items = tuple(_storable(item) for item in value)
        return value if all(a is b for a, b in zip(items, value)) else items
    names = _FIELD_NAMES.get(type(value))
    if names is None:
        # () for a type that is no dataclass (None, bool, int, datetime, bytes).
        is_data = is_dataclass(value) and not isinstance(value, type)
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in fields(value)) if is_data else ()
    if names:
        changes = {}
        for name in names:
            old = getattr(value, name)
            new = _storable(old)
            if new is not old:
                changes[name] = new
        return replace(value, **changes) if changes else value
    return value


# Field names per type, because dataclasses.fields() is slow on the hot path.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


# The headers that make a mail what it is.  Trace headers (Received,
# Delivered-To, X-Original-To, Return-Path) and whatever a server adds on
# delivery differ between two deliveries of one mail, so they are left out.
_CONTENT_HEADERS = frozenset((b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to",
                              b"references"))


def content_hash(raw: bytes) -> str:
    """SHA-256 (hex) of a mail's body and significant headers, equal for two deliveries of one mail.

    Line endings are normalised, folded headers unfolded, whitespace inside
    a header value collapsed and trailing whitespace of the body ignored, so
    servers that store CRLF or LF, or refold, give the same hash.  Works on
    the bytes alone: it never fails on mail the parser cannot read.
    """
    data = _LEADING_BLANK_LINES.sub(b"", raw.replace(b"\r\n", b"\n"))
    head, _, body = data.partition(b"\n\n")
    found: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and found:
            name, value = found[-1]
            found[-1] = (name, value + b" " + line)
            continue
        name, colon, value = line.partition(b":")
        if colon:
            found.append((name.strip().lower(), value))
    significant = sorted(
        ((name, b" ".join(value.split())) for name, value in found if name in _CONTENT_HEADERS),
        key=lambda item: item[0],
    )
    digest = hashlib.sha256()
    for name, value in significant:
        digest.update(name + b":" + value + b"\n")
    digest.update(b"\n")
    digest.update(body.rstrip())
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

# A header field name is printable ASCII without a colon (RFC 5322 3.6.8).
_HEADER_LINE = re.compile(rb"(?:From |[!-9;-~]+[ \t]*:)")
_LEADING_BLANK_LINES = re.compile(rb"\A(?:[ \t]*\r?\n)+")
# What bytes.strip() keeps: anything but ASCII whitespace.
_NOT_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")


def _check_shape(raw: bytes) -> bytes:
    """The bytes to parse, or MalformedMessage for input with no header block."""
    # A search, not raw.strip(), which would copy the whole mail.
    if not _NOT_BLANK.search(raw):
        raise MalformedMessage("empty message")
    raw = _LEADING_BLANK_LINES.sub(b"", raw)
    if not _HEADER_LINE.match(raw):
        raise MalformedMessage("no header block")
    return raw


# The mail system's own mailboxes, as a local part in From, Sender or Return-Path.
_DAEMON = re.compile(r"(?<![\w.+-])(?:mailer-daemon|postmaster)(?![\w-])", re.I)


def _from_mail_system(headers: dict[str, list[str]], delivery_status: bool) -> bool:
    """Whether the mail comes from the delivery system itself (a bounce or a warning).

    Such mail often has "From: <>" or no From at all, and still has to be
    filed: it tells us that a reply of ours did not arrive.
    """
    if delivery_status:
        return True
    return_path = _return_path(_first(headers, "return-path"))
    if return_path == "":
        return True
    values = [return_path or ""] + headers.get("from", []) + headers.get("sender", [])
    return any(_DAEMON.search(_decode_raw(value)) for value in values)


def _sender(from_: tuple[Address, ...], sender: tuple[Address, ...], reply_to: tuple[Address, ...],
            from_mail_system: bool = False) -> Address | None:
    if from_:
        return from_[0]
    if sender:
        return sender[0]
    if reply_to or from_mail_system:
        return None
    raise MalformedMessage("no sender address")


# The headers collected into AutoFacts.headers: autoresponders' own marks,
# list managers' (fml's X-ML-*, X-Mailing-List, mailman's X-BeenThere),
# loop guards of other ticket systems, bulk senders' Feedback-ID, Exim's
# X-Failed-Recipients, and X-Mailer to recognise known responders by name.
_AUTO_HEADER_NAMES = frozenset((
    "x-autoreply", "x-autorespond", "x-autoresponder", "x-autoresponse", "x-auto-reply", "x-autogenerated",
    "x-autoreply-from", "x-mail-autoreply", "x-precedence", "x-mailer", "x-loop", "x-rt-loop-prevention",
    "x-otrs-loop", "x-beenthere", "x-mailing-list", "mailing-list", "x-mlserver", "feedback-id",
    "x-failed-recipients", "x-csa-complaints",
))
_AUTO_HEADER_PREFIXES = ("x-ml-", "list-")
_REPORT_TYPE = re.compile(r'report-type\s*=\s*"?([^";\s]*)', re.I)


def _auto_headers(headers: dict[str, list[str]]) -> tuple[tuple[str, str], ...]:
    found = []
    for name, values in headers.items():
        if name in _AUTO_HEADER_NAMES or name.startswith(_AUTO_HEADER_PREFIXES):
            found.append((name, decode_header_text(_FOLD_WS.sub(" ", values[0])).strip()[:300]))
    return tuple(found)


def _report_type(content_type: str | None) -> str | None:
    value = _decode_raw(_FOLD_WS.sub(" ", content_type or "")).strip().lower()
    if not value.startswith("multipart/report"):
        return None
    match = _REPORT_TYPE.search(value)
    return match.group(1) if match else ""


def _auto_facts(headers: dict[str, list[str]], delivery_status: bool) -> AutoFacts:
    list_id = _first(headers, "list-id")
    unsubscribe = _first(headers, "list-unsubscribe")
    suppress = _first(headers, "x-auto-response-suppress")
    loop = _first(headers, LOOP_HEADER.lower())
    return AutoFacts(
        auto_submitted=_lower_stripped(_first(headers, "auto-submitted")),
        precedence=_lower_stripped(_first(headers, "precedence")),
        list_id=decode_header_text(list_id) if list_id is not None else None,
        list_unsubscribe=bool(unsubscribe and unsubscribe.strip()),
        auto_response_suppress=_decode_raw(_FOLD_WS.sub(" ", suppress)).strip() if suppress is not None else None,
        return_path=_return_path(_first(headers, "return-path")),
        delivery_status=delivery_status,
        loop=_decode_raw(_FOLD_WS.sub(" ", loop)).strip() if loop is not None else None,
        report_type=_report_type(_first(headers, "content-type")),
        headers=_auto_headers(headers),
    )


def _parse_fast(raw: bytes, body: bytes, max_attachment_bytes: int) -> InboundMessage:
    msg = BytesParser(policy=compat32).parsebytes(body)
    headers = _header_map(msg)
    facts = _PartFacts()
    hint = _charset_hint(msg, facts)
    from_ = _addresses(headers.get("from", []), hint)
    reply_to = _addresses(headers.get("reply-to", []), hint)

    walk = _Walk(max_attachment_bytes, hint, facts)
    _walk(msg, walk)
    sender = _sender(from_, _addresses(headers.get("sender", []), hint), reply_to,
                     _from_mail_system(headers, walk.delivery_status))
    if walk.plain is not None:
        text, html_only = _part_text(walk.plain, facts), False
    elif walk.html is not None:
        text, html_only = html_to_text(_part_text(walk.html, facts)), True
    elif walk.tnef_body is not None:
        # Outlook's "rich text" mail: the only body is inside winmail.dat.
        tnef_text, tnef_html = walk.tnef_body
        text, html_only = (tnef_text, False) if tnef_text else (html_to_text(tnef_html or ""), True)
    else:
        text, html_only = "", False

    in_reply_to = _first(headers, "in-reply-to")
    references = _first(headers, "references")
    return InboundMessage(
        message_id=_first_id(_first(headers, "message-id")),
        in_reply_to=tuple(_ids(in_reply_to)),
        references=tuple(_ids(references)),
        from_=sender,
        to=_addresses(headers.get("to", []), hint),
        cc=_addresses(headers.get("cc", []), hint),
        reply_to=reply_to,
        date=_date(_first(headers, "date")),
        subject=decode_header_text(_first(headers, "subject"), hint),
        text=_clean_text(text),
        html_only=html_only,
        attachments=tuple(_mark_inline(walk)),
        auto=_auto_facts(headers, walk.delivery_status),
        defects=tuple(dict.fromkeys(walk.defects)),
        size=len(raw),
        charsets=_declared_charsets(msg, headers, facts),
        content_language=_content_language(headers),
    )


# Mail smaller than this has no attachment worth cutting out (`_parse_cut`).
_CUT_FROM_BYTES = 32 * 1024


def _parse_cut(raw: bytes, body: bytes, max_attachment_bytes: int) -> InboundMessage | None:
    """`_parse_fast(raw, body)` for a mail with big base64 attachments, with
    those cut out before the stdlib parses it and put back after
    (largemail.cut_attachments); None for a mail without any, or one this
    way cannot read, which the stdlib then parses whole."""
    if len(body) < _CUT_FROM_BYTES:
        return None
    # Imported here: largemail imports this module.
    from inboxd.mail.largemail import cut_attachments

    try:
        skeleton, cut = cut_attachments(body)
        if not cut:
            return None
        msg = _parse_fast(raw, skeleton, max_attachment_bytes)
    except Exception:  # noqa: BLE001 - odd mail is the stdlib's to read whole, errors and all
        return None
    attachments = []
    for a in msg.attachments:
        content = cut.get(a.sha256)
        if content is not None:
            a = replace(a, size=len(content), sha256=hashlib.sha256(content).hexdigest(),
                        content=content if len(content) <= max_attachment_bytes else None)
        attachments.append(a)
    return replace(msg, attachments=tuple(attachments))


def _declared_charsets(msg: Message, headers: dict[str, list[str]], facts: _PartFacts | None = None) -> tuple[str, ...]:
    """Every charset the mail declares: on its top-level and text parts, then in its
    Subject's and From's encoded words (a Big5 mail may say so only there)."""
    facts = facts or _PartFacts()
    found: list[str] = []
    stack = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        if part is msg or facts.maintype(part) == "text":
            charset = facts.charset(part)
            if charset:
                found.append(charset.lower())
        # A forwarded or returned mail (message/*) was written by someone
        # else: its charsets say nothing of how the sender writes.
        if part.is_multipart() and facts.maintype(part) != "message" and depth < _MAX_DEPTH:
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend((sub, depth + 1) for sub in reversed(payload) if isinstance(sub, Message))
    for name in ("subject", "from"):
        for value in headers.get(name, [])[:1]:
            found.extend(match.group(1).split("*", 1)[0].lower() for match in _ENCODED_WORD.finditer(value))
    return tuple(dict.fromkeys(found))


def _content_language(headers: dict[str, list[str]]) -> str | None:
    value = _first(headers, "content-language")
    return _FOLD_WS.sub(" ", _decode_raw(value)).strip()[:200] if value is not None else None


def _guarded(default, fn, *args):
    """Run one field extraction of the fallback; a failure costs only that field."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - the fallback salvages what it can
        return default


def _fallback_addresses(pairs) -> tuple[Address, ...]:
    result = []
    for name, addr in pairs or ():
        addr = str(addr).strip().lower()
        if "@" in addr and not any(c.isspace() for c in addr):
            result.append(Address(str(name or "").strip(), addr))
    return tuple(result)


def _fallback_attachment(item: dict, max_attachment_bytes: int) -> Attachment:
    payload = item.get("payload") or ""
    data = base64.b64decode(payload) if item.get("binary") else str(payload).encode("utf-8", "surrogateescape")
    return Attachment(
        filename=item.get("filename") or None,
        content_type=str(item.get("mail_content_type") or "application/octet-stream").lower(),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content=data if len(data) <= max_attachment_bytes else None,
        inline=str(item.get("content-disposition") or "").lower().startswith("inline"),
        content_id=str(item.get("content-id") or "").strip().strip("<>") or None,
    )


def _parse_with_mailparser(raw: bytes, body: bytes, max_attachment_bytes: int) -> InboundMessage:
    # Imported here: only the rare message that breaks the fast path pays for it.
    import mailparser

    mp = mailparser.parse_from_bytes(body)
    msg = mp.message
    headers = _guarded({}, _header_map, msg)
    from_ = _guarded((), lambda: _fallback_addresses(mp.from_))
    reply_to = _guarded((), lambda: _fallback_addresses(mp.reply_to))
    delivery_status = _guarded(False, lambda: any(p.get_content_type() in _DSN_TYPES for p in msg.walk()))
    from_mail_system = _guarded(delivery_status, _from_mail_system, headers, delivery_status)
    sender = _sender(from_, _guarded((), lambda: _fallback_addresses(mp.sender)), reply_to, from_mail_system)
    plain = _guarded([], lambda: list(mp.text_plain))
    html = _guarded([], lambda: list(mp.text_html))
    if plain:
        text, html_only = plain[0], False
    elif html:
        text, html_only = _guarded("", html_to_text, html[0]), True
    else:
        text, html_only = "", False
    date = _guarded(None, lambda: mp.date.replace(tzinfo=timezone.utc) if mp.date else None)
    attachments = [
        a for a in (_guarded(None, _fallback_attachment, item, max_attachment_bytes)
                    for item in _guarded([], lambda: list(mp.attachments)))
        if a is not None
    ]
    defects = _guarded([], lambda: sorted(mp.defects_categories))
    return InboundMessage(
        message_id=_guarded(None, _first_id, _first(headers, "message-id")),
        in_reply_to=tuple(_guarded([], _ids, _first(headers, "in-reply-to"))),
        references=tuple(_guarded([], _ids, _first(headers, "references"))),
        from_=sender,
        to=_guarded((), lambda: _fallback_addresses(mp.to)),
        cc=_guarded((), lambda: _fallback_addresses(mp.cc)),
        reply_to=reply_to,
        date=date,
        subject=_guarded("", lambda: _FOLD_WS.sub(" ", str(mp.subject or "")).strip()),
        text=_clean_text(str(text)),
        html_only=html_only,
        attachments=tuple(attachments),
        auto=_guarded(AutoFacts(None, None, None, False, None, None, delivery_status, None),
                      _auto_facts, headers, delivery_status),
        defects=("MailParserFallback", *defects),
        size=len(raw),
    )


def parse_message(raw: bytes, *, max_attachment_bytes: int = 25 * 1024 * 1024) -> InboundMessage:
    """Parse raw RFC 822 bytes; raise MalformedMessage for mail that cannot be filed."""
    body = _check_shape(raw)
    try:
        # The boundary: whatever either parser made of odd bytes, the store
        # gets valid text (see clean_text).
        return _storable(_parse_cut(raw, body, max_attachment_bytes) or _parse_fast(raw, body, max_attachment_bytes))
    except MalformedMessage:
        raise
    except Exception as fast_error:  # noqa: BLE001 - any parser bug must become a quarantine
        try:
            return _storable(_parse_with_mailparser(raw, body, max_attachment_bytes))
        except MalformedMessage:
            raise
        except Exception:  # noqa: BLE001
            raise MalformedMessage(f"parse error: {type(fast_error).__name__}: {fast_error}") from fast_error


_MESSAGE_ID_HEADER = re.compile(rb"^message-id[ \t]*:((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)", re.I | re.M)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def extract_message_id(raw: bytes) -> str | None:
    """The Message-ID from a header-only scan, for logging a message that failed to parse; never raises.

    It is escaped as the parser escapes it (clean_text), so the quarantine
    row can always be written and names the id the way a filed copy would.
    """
    try:
        head = bytes(raw[:256 * 1024])
        end = _HEADER_END.search(head)
        if end is not None:
            head = head[:end.start()]
        match = _MESSAGE_ID_HEADER.search(head)
        if match is None:
            return None
        message_id = _first_id(match.group(1).decode("utf-8", "surrogateescape"))
        return clean_text(message_id) if message_id is not None else None
    except Exception:  # noqa: BLE001 - a logging helper must not fail the quarantine
        return None
