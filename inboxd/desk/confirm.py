"""待确认: whether a customer's reply to a solved ticket confirms it (closes) or asks again (reopens).

A solved ticket waits for the customer's confirmation.  `decide` reads the
new text of the customer's reply (quotes and signature already stripped by
`inboxd.mail.quotes.reply_text`) and answers one question: is this a short
reply that confirms or thanks?  Then the ticket closes; anything else
reopens it, as a reply to a solved ticket always did.  Pure: no store, no
clock.

The rule, in order (the first that applies decides):
1. no new text, or an attachment came with it: reopen;
2. a negation, a complaint or a new request ("还是不行", "没有解决",
   "not fixed", "but", "还有一个问题", "could you"): reopen;
3. a question ("?", "？", a clause ending in 吗/呢/嗎, "怎么", "为什么"): reopen;
4. longer than `max_length` characters or `MAX_SENTENCES` sentences once
   greetings and sign-offs are set aside: reopen, since a long mail says
   more than "thanks" and a person should read it;
5. a confirmation phrase (the defaults below plus `[confirm] phrases`): close;
6. otherwise: reopen.
Negations and questions win over phrases, so "谢谢，但是还是不行" reopens.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from inboxd.config import Table

CONFIRM_KEYS = ("phrases", "defaults", "max_length")

# Short means at most this many characters (after greetings and sign-offs
# are set aside) and this many sentences.
DEFAULT_MAX_LENGTH = 60
MAX_SENTENCES = 3

# The phrases that confirm or thank, as data.  Matching ignores case,
# punctuation, spaces and full-width forms, so "好的，谢谢！" matches "好的谢谢".
DEFAULT_PHRASES: dict[str, tuple[str, ...]] = {
    "zh": (
        "问题已经解决了", "问题已解决", "问题解决了", "已经解决了", "已经解决", "已解决", "解决了",
        "好的谢谢", "收到谢谢", "收到了", "收到", "可以了", "可以用了", "能用了", "好了", "没问题了", "搞定了",
        "正常了", "恢复正常", "谢谢", "多谢", "感谢", "辛苦了", "明白了", "知道了", "好的",
        "可以关闭", "可以结单", "关闭吧",
    ),
    "zh-Hant": (
        "問題已經解決了", "問題已解決", "問題解決了", "已經解決了", "已經解決", "已解決", "解決了",
        "好的謝謝", "收到謝謝", "可以了", "能用了", "沒問題了", "搞定了", "正常了", "恢復正常",
        "謝謝", "多謝", "感謝", "辛苦了", "明白了", "知道了", "可以關閉", "關閉吧",
    ),
    "en": (
        "thanks that fixed it", "that fixed it", "fixed it", "it works now", "works now", "it works",
        "it's working", "working now", "resolved thank you", "resolved", "solved", "all good", "all set",
        "all sorted", "sorted", "that did it", "that worked", "that helped", "problem solved", "got it",
        "thanks", "thank you", "thx", "ty", "many thanks", "much appreciated", "appreciated", "perfect",
        "great", "ok", "okay", "you can close", "please close", "close the ticket",
    ),
}

# What makes a reply more than a confirmation: a negation, a complaint, a
# new request.  Any of these reopens the ticket, phrase or not.
_OBJECTIONS_CJK = (
    # zh-Hans
    "还是不行", "不行", "没有解决", "没解决", "未解决", "不能", "无法", "不了", "还是", "仍然", "依然",
    "还有", "又出现", "又坏", "失败", "报错", "错误", "出错", "不好", "没用", "没反应", "不对", "但是", "可是",
    "不过", "麻烦", "帮我", "帮忙", "请问", "另外", "再帮", "再看", "再试", "试试", "投诉", "希望",
    # zh-Hant
    "還是不行", "沒有解決", "沒解決", "未解決", "無法", "還是", "還有", "又出現", "失敗", "報錯", "錯誤",
    "出錯", "沒用", "沒反應", "不對", "麻煩", "幫我", "幫忙", "請問", "再幫", "再試", "試試", "投訴",
)
_OBJECTIONS_EN = (
    "not", "no longer", "no luck", "still", "but", "however", "unfortunately", "fail", "failed", "fails",
    "failing", "error", "errors", "broken", "again", "persists", "same", "another", "also", "one more",
    "can you", "could you", "would you", "help me", "please help", "need", "want", "how", "why", "what",
    "when", "where", "which", "dont", "doesnt", "didnt", "cant", "wont", "isnt", "wasnt", "havent",
    # A hope or a wish is not a confirmation ("Hope it works well!", "Having the function would be great").
    "hope", "hopefully", "try", "will try", "would", "wish",
)
_NEGATED_EN = re.compile(r"\w+n't\b")
# A question: a question mark, a clause ending in a question particle, or a question word.
_QUESTION_MARK = re.compile(r"[?？]")
_PARTICLE = re.compile(r"[吗嗎呢么麼](?=$|[\s,.;!，。；！、~…])")
_QUESTION_WORDS = ("什么", "怎么", "为什么", "如何", "是否", "能否", "可否", "什麼", "怎麼", "為什麼")

# Greetings and sign-offs, set aside before measuring the length.
_GREETING = re.compile(
    r"^\s*(?:(?:hi|hello|hey|dear)\b[^,，:：\n!！]{0,30}[,，:：!！]?|(?:尊敬的)?[^\n,，:：]{0,10}?(?:您好|你好)[,，:：!！]?)\s*",
    re.IGNORECASE)
_SIGNOFFS = ("best regards", "kind regards", "regards", "best", "cheers", "br", "sent from my iphone",
             "此致", "敬礼", "此致敬礼", "祝好", "顺颂商祺", "順頌商祺", "發自我的iphone", "发自我的iphone")
_SENTENCE = re.compile(r"[.!?。！？；;\n]+")


@dataclass(frozen=True)
class ConfirmSettings:
    """`[confirm]`: the phrases that confirm a solved ticket, and what short means."""

    phrases: tuple[str, ...] = ()     # the admin's phrases, added to the defaults
    defaults: bool = True             # false: only the admin's phrases count
    max_length: int = DEFAULT_MAX_LENGTH

    def all_phrases(self) -> tuple[str, ...]:
        builtin = tuple(p for group in DEFAULT_PHRASES.values() for p in group) if self.defaults else ()
        return (*self.phrases, *builtin)


@dataclass(frozen=True)
class Confirmation:
    """The decision on a reply to a solved ticket: close (with the phrase that matched) or reopen (and why)."""

    close: bool
    phrase: str = ""
    reason: str = ""

    def detail(self) -> dict:
        """The history event's detail."""
        if self.close:
            return {"decision": "close", "phrase": self.phrase, "reason": self.reason}
        return {"decision": "reopen", "reason": self.reason, **({"phrase": self.phrase} if self.phrase else {})}


def parse_confirm(raw: dict | None, *, file_name: str) -> ConfirmSettings:
    table = Table(file_name, "confirm", raw, CONFIRM_KEYS)
    phrases = table.strings("phrases", ())
    for index, phrase in enumerate(phrases):
        if not _compact(phrase):
            table.fail(f"phrases[{index}]", "must contain a letter or a character, not only punctuation")
    defaults = table.boolean("defaults", True)
    if not defaults and not phrases:
        table.fail("defaults", "false leaves no phrase at all; give phrases, or leave the defaults on")
    max_length = table.integer("max_length", DEFAULT_MAX_LENGTH, low=1)
    return ConfirmSettings(phrases=phrases, defaults=defaults, max_length=max_length)


def decide(text: str, settings: ConfirmSettings = ConfirmSettings(), *, attachments: int = 0) -> Confirmation:
    """Whether `text`, the new text of a customer's reply to a solved ticket, confirms it."""
    normal = _normalize(text)
    if not normal.strip():
        return Confirmation(False, reason="the reply has no new text")
    if attachments:
        return Confirmation(False, reason="the reply carries attachments")
    body = _strip_greeting_and_signoff(normal)
    objection = _objection(body)
    phrase = _phrase(body, settings)
    if objection:
        return Confirmation(False, phrase, f"says {objection!r}")
    if _QUESTION_MARK.search(body) or _PARTICLE.search(body) or any(w in body for w in _QUESTION_WORDS):
        return Confirmation(False, phrase, "asks a question")
    length = len(re.sub(r"\s+", " ", body).strip())
    sentences = len([s for s in _SENTENCE.split(body) if s.strip()])
    if length > settings.max_length or sentences > MAX_SENTENCES:
        return Confirmation(False, phrase, f"too long for a confirmation ({length} characters, {sentences} sentences)")
    if not phrase:
        return Confirmation(False, reason="no confirmation phrase")
    return Confirmation(True, phrase, f"a short confirmation ({phrase!r})")


def _normalize(text: str) -> str:
    # NFKC folds full-width letters and punctuation; the typographic
    # apostrophe is folded by hand, since NFKC keeps it.
    return unicodedata.normalize("NFKC", text).replace("\u2019", "'").casefold()


def _compact(text: str) -> str:
    """Letters and digits only: how CJK phrases are compared."""
    return "".join(ch for ch in _normalize(text) if ch.isalnum())


def _words(text: str) -> str:
    """Words separated by single spaces, apostrophes dropped ("doesn't" -> "doesnt")."""
    return " ".join(re.sub(r"[^\w]+", " ", text.replace("'", "")).split())


def _contains(text: str, phrase: str) -> bool:
    if phrase.isascii():
        words = _words(_normalize(phrase))
        return bool(words) and re.search(rf"(?<!\w){re.escape(words)}(?!\w)", _words(text)) is not None
    return _compact(phrase) in _compact(text)


def _phrase(text: str, settings: ConfirmSettings) -> str:
    """The longest phrase the text contains ("" for none): the most specific names the decision best."""
    found = [p for p in settings.all_phrases() if _contains(text, p)]
    return max(found, key=lambda p: len(_compact(p))) if found else ""


def _objection(text: str) -> str:
    compact = _compact(text)
    found = [word for word in _OBJECTIONS_CJK if word in compact]
    if found:
        # The longest names the objection best ("还是不行" rather than "不行").
        return max(found, key=len)
    negated = _NEGATED_EN.search(text)
    if negated:
        return negated.group(0)
    words = f" {_words(text)} "
    for word in _OBJECTIONS_EN:
        if f" {word} " in words:
            return word
    return ""


def _strip_greeting_and_signoff(text: str) -> str:
    """The reply without an opening greeting ("您好，", "Hi Alice,") and closing sign-off lines."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines:
        lines[0] = _GREETING.sub("", lines[0], count=1)
    while len(lines) > 1 and (_words(lines[-1]) in _SIGNOFFS or _compact(lines[-1]) in _SIGNOFFS
                              or _is_name(lines[-1])):
        lines.pop()
    while len(lines) > 1 and (_words(lines[-1]) in _SIGNOFFS or _compact(lines[-1]) in _SIGNOFFS):
        lines.pop()
    return "\n".join(line for line in lines if line)


def _is_name(line: str) -> bool:
    """A last line that is only a name: one or two words, or two to four CJK characters, no punctuation."""
    if re.search(r"[^\w\s.-]", line):
        return False
    if line.isascii():
        return 1 <= len(line.split()) <= 2 and not any(_contains(line, p) for p in DEFAULT_PHRASES["en"])
    return 2 <= len(line) <= 4 and not any(_compact(p) in _compact(line) for g in ("zh", "zh-Hant")
                                            for p in DEFAULT_PHRASES[g])
