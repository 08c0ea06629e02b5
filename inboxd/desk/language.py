"""Which written Chinese a customer reads: Simplified (zh) or Traditional (zh-Hant).

A mailbox whose `language` is "zh" or "zh-Hant" answers each customer in the
script they write.  The choice is made once, on the customer's first mail,
from what that mail says about itself, strongest evidence first:

1. a Big5 or Big5-HKSCS charset (only Traditional Chinese is written in it);
2. a `Content-Language` of zh-TW, zh-HK, zh-MO or zh-Hant (zh-CN, zh-SG,
   zh-Hans: Simplified);
3. the text itself: characters that exist only in the Traditional script
   outnumbering those that exist only in the Simplified one (most characters,
   such as 人 or 的, are written alike and count for neither);
4. a GB2312/GBK/GB18030 charset (Simplified, though GBK holds both scripts).

Which characters are which comes from `hanzidentifier` (CC-CEDICT's tables),
not from a table kept here.  Nothing decides: the mailbox's own language.
A mailbox in any other language always writes in it.  This module is pure:
it reads the parsed message's facts and returns the choice with its reason,
which ingest records in the ticket's history (the "created" event) so that
later mail on the ticket (escalation, follow-up, survey) keeps the script.

Beside the choice, the few rules of writing to Chinese readers that are not
templates: a sentence given only in Simplified reaches a zh-Hant reader
converted by OpenCC (`agent_headline`, `to_traditional`), and an agent's
answer is signed the way Chinese mail signs a person of an organisation
(`reply_from_name`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

CHINESE = ("zh", "zh-Hant")

# The charsets whose repertoire is one script only (the names as Python's
# codecs and the WHATWG labels spell them, lowercased).
_TRADITIONAL_CHARSETS = frozenset((
    "big5", "big-5", "x-big5", "cn-big5", "csbig5", "big5-hkscs", "big5hkscs", "cp950", "ms950", "windows-950",
    "x-x-big5", "euc-tw", "x-euc-tw",
))
_SIMPLIFIED_CHARSETS = frozenset((
    "gb2312", "gbk", "x-gbk", "cp936", "ms936", "windows-936", "gb18030", "euc-cn", "x-euc-cn", "hz-gb-2312",
    "csgb2312", "gb_2312-80",
))
# BCP 47 regions and scripts that say which script a Chinese text is in.
_TRADITIONAL_SUBTAGS = frozenset(("tw", "hk", "mo", "hant"))
_SIMPLIFIED_SUBTAGS = frozenset(("cn", "sg", "my", "hans"))
# Enough of a long mail to judge its script; the rest costs time and adds nothing.
_SAMPLE = 4000


@dataclass(frozen=True)
class LanguageChoice:
    """The language of the mail to one customer, and why."""

    language: str
    reason: str


def choose(mailbox_language: str, *, charsets: Iterable[str] = (), content_language: str | None = None,
           text: str = "") -> LanguageChoice:
    """The language to write to the customer whose first mail has these facts."""
    if mailbox_language not in CHINESE:
        return LanguageChoice(mailbox_language, f"the mailbox writes {mailbox_language}")
    names = [charset.strip().lower() for charset in charsets]
    for name in names:
        if name in _TRADITIONAL_CHARSETS:
            return LanguageChoice("zh-Hant", f"charset {name}")
    tagged = _from_content_language(content_language)
    if tagged is not None:
        return tagged
    traditional, simplified = script_counts(text)
    if traditional > simplified:
        return LanguageChoice("zh-Hant", f"the text is mostly Traditional ({traditional} to {simplified})")
    if simplified > traditional:
        return LanguageChoice("zh", f"the text is mostly Simplified ({simplified} to {traditional})")
    # Mail clients label GBK text (which has Traditional characters too)
    # "gb2312", so a GB charset only settles what the text left open.
    for name in names:
        if name in _SIMPLIFIED_CHARSETS:
            return LanguageChoice("zh", f"charset {name}")
    return LanguageChoice(mailbox_language, f"nothing says otherwise: the mailbox writes {mailbox_language}")


def _from_content_language(value: str | None) -> LanguageChoice | None:
    # RFC 3282: a comma-separated list of tags; the first Chinese one decides.
    for tag in (value or "").split(","):
        parts = tag.strip().lower().replace("_", "-").split("-")
        if parts[0] != "zh":
            continue
        subtags = set(parts[1:])
        if subtags & _TRADITIONAL_SUBTAGS:
            return LanguageChoice("zh-Hant", f"Content-Language {tag.strip()}")
        if subtags & _SIMPLIFIED_SUBTAGS:
            return LanguageChoice("zh", f"Content-Language {tag.strip()}")
    return None


def script_counts(text: str) -> tuple[int, int]:
    """(characters only Traditional Chinese writes, characters only Simplified writes) in `text`."""
    # Imported at first use: its tables cost a start-up that reads no Chinese mail 0.05 s.
    import hanzidentifier

    traditional = simplified = 0
    for char in text[:_SAMPLE]:
        kind = _script(char)
        if kind == hanzidentifier.TRADITIONAL:
            traditional += 1
        elif kind == hanzidentifier.SIMPLIFIED:
            simplified += 1
    return traditional, simplified


@lru_cache(maxsize=8192)
def _script(char: str) -> int:
    import hanzidentifier  # At first use, as in script_counts.

    if char < "\u2e80":  # Below the CJK blocks: Latin, punctuation, digits.
        return hanzidentifier.UNKNOWN
    return hanzidentifier.identify(char)


def ticket_language(mailbox_language: str, recorded: str | None) -> str:
    """The language of later customer mail on a ticket: the script chosen on its first
    mail, while the mailbox still writes Chinese; otherwise the mailbox's language."""
    if mailbox_language in CHINESE and recorded in CHINESE:
        return recorded
    return mailbox_language


def agent_headline(headline: str | dict[str, str], language: str) -> str:
    """One sentence of a notification in the agent's language: the given form, a
    zh-Hant agent's from the Simplified one (converted), else English."""
    if isinstance(headline, str):
        return headline
    if language in headline:
        return headline[language]
    if language == "zh-Hant" and "zh" in headline:
        return to_traditional(headline["zh"])
    return headline.get("en") or next(iter(headline.values()))


@lru_cache(maxsize=1)
def _converter():
    import opencc

    # Simplified to Traditional with Taiwan's usual phrasing (s2twp), the form
    # the Traditional templates are written in.
    return opencc.OpenCC("s2twp")


def to_traditional(text: str) -> str:
    """Simplified Chinese text written in the Traditional script (OpenCC)."""
    return _converter().convert(text)


def reply_from_name(agent_display_name: str, agent_name: str, mailbox_display_name: str, language: str) -> str:
    """The From name of an agent's answer to a customer: "Alice via Example Support",
    and for a Chinese mailbox "小王（示例科技客服中心）", the way Chinese mail signs a
    person of an organisation (the agent's display name, else the handle capitalised)."""
    person = agent_display_name or agent_name.capitalize()
    if language in CHINESE:
        return f"{person}（{mailbox_display_name}）"
    return f"{person} via {mailbox_display_name}"
