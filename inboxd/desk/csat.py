"""Satisfaction surveys, the pure part: settings, signed survey addresses, reading an answer.

Nothing here touches the database, the network or the clock.  The scheduler
decides when a survey is due and ingest decides which mail answers one; this
module only answers the questions in between: what ``[csat]`` says, which
address a rating link points at, and which rating (if any) a reply gives.

A customer answers by replying with a number or a word of the scale, or by
clicking a per-level ``mailto:`` link to a signed sub-address such as
``support+csat-<token>-1@example.com``.  Link scanners never send mail, so
they cannot vote.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from inboxd.config import LANGUAGES, ConfigError, Table, show

CSAT_KEYS = (
    "enabled", "delay", "min_interval", "exclude_tags", "exclude_autoclosed",
    "follow_up_levels", "scale", "secret_file",
)
# The seed's scale, best first.
DEFAULT_SCALE: tuple[Mapping[str, str], ...] = (
    {"zh": "非常满意", "en": "Very satisfied"},
    {"zh": "满意", "en": "Satisfied"},
    {"zh": "一般", "en": "Neutral"},
    {"zh": "不满意", "en": "Unsatisfied"},
)
# A rating is one digit in the survey and the answer parser, so at most 9 levels.
MAX_LEVELS = 9
SECRET_BYTES = 32
# A key file shorter than this was not written by load_secret; refuse to sign with it.
MIN_SECRET_BYTES = 16
TOKEN_LENGTH = 20

# Words of the negative end of a scale that customers use interchangeably.  If
# the lowest level has one of them as a label, the others count for it too.
# This is the whole list: anything else must be a label in [csat].scale.
NEGATIVE_SYNONYMS = frozenset({"unsatisfied", "dissatisfied", "not satisfied"})
# Words that may come before the rating: "rating: 1", "评分：1".
RATING_PREFIXES = ("rating", "score", "评分", "评价", "打分")

_SUBADDRESS = re.compile(r"[^@\s+]+\+csat-([a-z2-7]{20})-([1-9])@[^@\s]+", re.IGNORECASE)
_PREFIX = re.compile(
    r"(?:" + "|".join(re.escape(p) for p in RATING_PREFIXES) + r")\s*[:=]?\s*", re.IGNORECASE
)
# A rating digit, optionally in brackets or followed by "." / ")" / "、"; the
# lookaheads keep "12", "2nd", "1.5" and "3,5" from counting as ratings.
_DIGIT = re.compile(r"(?:\[([0-9])\]|\(([0-9])\)|([0-9])(?![0-9A-Za-z]|[.,][0-9])[.)、]?)(?![0-9A-Za-z])")
# What separates a rating from a comment on the same line: "3 - slow", "非常满意，谢谢".
_SEPARATORS = " \t-–—:;,.!、，。；：！"


@dataclass(frozen=True)
class Level:
    """One answer of the scale; n is 1-based and 1 is the best."""

    n: int
    labels: Mapping[str, str]


@dataclass(frozen=True)
class CsatSettings:
    """The validated ``[csat]`` table."""

    enabled: bool
    delay: timedelta
    min_interval: timedelta
    exclude_tags: tuple[str, ...]
    exclude_autoclosed: bool
    follow_up_levels: int
    scale: tuple[Level, ...]
    secret_file: Path


@dataclass(frozen=True)
class Answer:
    """What a reply to a survey says: the rating and the customer's words around it."""

    rating: int
    comment: str


# --- Configuration.

def parse_csat(raw: dict | None, *, file_name: str, data_dir: Path, base: Path) -> CsatSettings:
    """The ``[csat]`` table as written (None when absent) -> settings; ConfigError names the key at fault.

    ``data_dir`` is the store's data directory (the default home of the key
    file) and ``base`` the config file's directory (relative paths start there).
    """
    table = Table(file_name, "csat", raw, CSAT_KEYS)
    exclude_tags = table.strings("exclude_tags", ("spam",))
    for index, tag in enumerate(exclude_tags):
        if not tag.strip():
            table.fail(f"exclude_tags[{index}]", "must not be empty")
    scale = _scale(table)
    return CsatSettings(
        enabled=table.boolean("enabled", True),
        delay=table.duration("delay", "1h"),
        min_interval=table.duration("min_interval", "30d"),
        exclude_tags=exclude_tags,
        exclude_autoclosed=table.boolean("exclude_autoclosed", True),
        # Every level being "low" would page the supervisors for delighted customers too.
        follow_up_levels=table.integer("follow_up_levels", 1, low=0, high=len(scale) - 1),
        scale=scale,
        secret_file=table.optional_path("secret_file", base) or data_dir / "csat.key",
    )


def _scale(table: Table) -> tuple[Level, ...]:
    if "scale" not in table.data:
        return tuple(Level(i + 1, MappingProxyType(dict(labels))) for i, labels in enumerate(DEFAULT_SCALE))
    levels = table.tables("scale", LANGUAGES)
    if len(levels) < 2:
        table.fail("scale", f"must list at least two levels, best first, got {len(levels)}")
    if len(levels) > MAX_LEVELS:
        table.fail("scale", f"must list at most {MAX_LEVELS} levels, got {len(levels)}")
    seen: dict[str, int] = {}
    scale = []
    for n, level in enumerate(levels, start=1):
        labels: dict[str, str] = {}
        for language in level.data:
            text = " ".join(level.string(language).split())
            if not text:
                level.fail(language, "must not be empty")
            if text.isdigit():
                level.fail(language, f"must be a word, not a number, got {show(text)}")
            # One word naming two levels would make an answer ambiguous, in any language.
            other = seen.get(text.casefold())
            if other is not None and other != n:
                level.fail(language, f"duplicate label {show(text)} (also scale[{other - 1}])")
            seen[text.casefold()] = n
            labels[language] = text
        if not labels:
            table.fail(f"scale[{n - 1}]", "give a label in at least one language, e.g. en = \"Satisfied\"")
        scale.append(Level(n, MappingProxyType(labels)))
    return tuple(scale)


def label(scale: Sequence[Level], n: int, language: str) -> str:
    """Level n's label in language, else in English, else in any language it has."""
    if not 1 <= n <= len(scale):
        raise ValueError(f"rating {n} is not on a scale of {len(scale)}")
    labels = scale[n - 1].labels
    return labels.get(language) or labels.get("en") or next(iter(labels.values()))


def is_low(settings: CsatSettings, n: int) -> bool:
    """Whether rating n is among the lowest ``follow_up_levels`` (a supervisor follows it up)."""
    return n > len(settings.scale) - settings.follow_up_levels


# --- The signing key and survey addresses.

def load_secret(path: Path) -> bytes:
    """The signing key at path; created with 32 random bytes and mode 0600 when missing.

    The key is written to a private temporary file and then hard-linked into
    place, so a reader never sees a half-written key, and when two processes
    race, both end up using the one that was linked first.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600 whatever the umask.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".csat-key-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(os.urandom(SECRET_BYTES))
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)
    secret = path.read_bytes()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{path}: survey signing key is {len(secret)} bytes; need at least {MIN_SECRET_BYTES}"
            " (delete the file to have a new one created)"
        )
    return secret


def make_token(secret: bytes, ticket_ref: str, nonce: str) -> str:
    """A survey's token: HMAC-SHA256 of ticket and nonce, 20 characters of lowercase base32.

    Twenty characters carry 100 bits, so a token cannot be guessed, and the
    alphabet ([a-z2-7]) survives mail servers that lower-case addresses.
    """
    digest = hmac.new(secret, f"{ticket_ref}\0{nonce}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TOKEN_LENGTH]


def survey_address(mailbox_address: str, token: str, n: int) -> str:
    """The address a rating link sends to, e.g. "support+csat-<token>-1@example.com"."""
    if not re.fullmatch(r"[a-z2-7]{20}", token):
        raise ValueError(f"invalid survey token {token!r}")
    if not 1 <= n <= MAX_LEVELS:
        raise ValueError(f"invalid rating {n}")
    local, at, domain = mailbox_address.strip().rpartition("@")
    if not local or not at or not domain:
        raise ValueError(f"invalid mailbox address {mailbox_address!r}")
    # A mailbox address that is itself a sub-address keeps only its base.
    return f"{local.split('+', 1)[0]}+csat-{token}-{n}@{domain}".lower()


def parse_survey_address(address: str) -> tuple[str, int] | None:
    """(token, rating) from "<local>+csat-<token>-<n>@domain" (display name allowed), else None."""
    _, addr = parseaddr(address)
    match = _SUBADDRESS.fullmatch(addr.strip())
    if not match:
        return None
    return match[1].lower(), int(match[2])


# --- Reading an answer.

def parse_answer(text: str, scale: Sequence[Level]) -> Answer | None:
    """The rating and comment in a reply's new text (quotes already stripped), or None.

    The rating is on the first non-empty line that is not a quote (">"): a
    digit 1..N (full-width too, also "1." / "1)" / "[1]" / "rating: 1"), or a
    label of any language of the scale at the start of the line, case
    ignored, the longest label winning ("非常满意" over "满意", "不满意" over
    "满意").  NEGATIVE_SYNONYMS count for the lowest level when one of them
    is its label.  Everything after the rating (on that line, then the other
    lines) is the comment, with the separators that follow the rating
    removed: "非常满意，谢谢！" gives rating 1, comment "谢谢！".  A digit
    followed by its own level's label ("1 Very satisfied", what the links
    prefill) leaves the label out of the comment.  A line that starts with
    neither (a follow-up question) gives None, and so does a number off the
    scale.
    """
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    line = lines[first].strip()
    folded, origin = _fold(line)
    start = _PREFIX.match(folded)
    position = start.end() if start else 0

    rating: int | None = None
    digit = _DIGIT.match(folded, position)
    if digit:
        rating = int(next(g for g in digit.groups() if g))
        if not 1 <= rating <= len(scale):
            return None
        position = digit.end()
        # "1 - Very satisfied": the label repeats the digit; it is no comment.
        after = _skip_separators(folded, position)
        same = _match_label(folded, after, _labels(scale, only=rating))
        if same:
            position = same[1]
    else:
        found = _match_label(folded, position, _labels(scale))
        if found is None:
            return None
        rating, position = found
    rest = line[origin[position]:].lstrip(_SEPARATORS).strip()
    comment = "\n".join([rest, *lines[first + 1:]]).strip()
    return Answer(rating=rating, comment=comment)


def _fold(line: str) -> tuple[str, list[int]]:
    """The line with full-width forms made plain ("４" -> "4", "："->":"), and where each character came from.

    Each character is normalized on its own (NFKC) so that an index into the
    folded text maps back to the original, and the comment keeps the
    customer's own punctuation.
    """
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(line):
        plain = unicodedata.normalize("NFKC", char)
        folded.append(plain)
        origin.extend([index] * len(plain))
    origin.append(len(line))
    return "".join(folded), origin


def _labels(scale: Sequence[Level], only: int | None = None) -> list[tuple[str, int]]:
    """(label, rating) pairs to look for, the lowest level's synonyms included."""
    pairs = [(text.casefold(), level.n) for level in scale for text in level.labels.values()]
    lowest = len(scale)
    if any(text in NEGATIVE_SYNONYMS for text, n in pairs if n == lowest):
        taken = {text for text, _ in pairs}
        pairs += [(word, lowest) for word in NEGATIVE_SYNONYMS if word not in taken]
    return [(text, n) for text, n in pairs if only is None or n == only]


def _match_label(folded: str, position: int, labels: list[tuple[str, int]]) -> tuple[int, int] | None:
    """(rating, end) of the longest label at position, or None."""
    best: tuple[int, int] | None = None
    for text, n in labels:
        pattern = r"\s+".join(re.escape(word) for word in text.split())
        match = re.compile(pattern, re.IGNORECASE).match(folded, position)
        if not match:
            continue
        end = match.end()
        # "Neutrality" is not "Neutral"; a Chinese label needs no word boundary.
        if text[-1].isascii() and end < len(folded) and folded[end].isalnum():
            continue
        if best is None or end > best[1]:
            best = (n, end)
    return best


def _skip_separators(folded: str, position: int) -> int:
    while position < len(folded) and folded[position] in _SEPARATORS:
        position += 1
    return position


# --- The survey mail.

def survey_variables(
    ticket: Mapping[str, Any], customer: Mapping[str, Any], mailbox: Mapping[str, Any],
    scale: Sequence[Level], *, language: str, mailbox_address: str, token: str,
) -> dict[str, Any]:
    """Variables for the csat/ templates: ticket, customer, mailbox and levels.

    Each level is {n, label, address, mailto}.  The mailto link carries a
    subject with the ticket tag and a body with the rating, so the answer still
    counts if a server drops the sub-address and the reply is read as text.
    """
    tag = ticket.get("tag") or f"[{ticket['id']}]"
    levels = []
    for level in scale:
        text = label(scale, level.n, language)
        address = survey_address(mailbox_address, token, level.n)
        subject = f"{tag} {level.n} {text}"
        body = f"{level.n} {text}\n"
        levels.append({
            "n": level.n,
            "label": text,
            "address": address,
            # RFC 6068 wants %20 for spaces, never "+", hence quote() and not quote_plus().
            "mailto": f"mailto:{address}?subject={quote(subject, safe='')}&body={quote(body, safe='')}",
        })
    return {"ticket": dict(ticket), "customer": dict(customer), "mailbox": dict(mailbox), "levels": levels}
