"""Satisfaction surveys, the pure part: settings, signed survey addresses, reading an answer.

Nothing here touches the database, the network or the clock.  The scheduler
decides when a survey is due and ingest decides which mail answers one; this
module only answers the questions in between: what ``[csat]`` says, which
address a rating link points at, and which score (if any) a reply gives.

Ratings are scores on the desk's scale, higher is better: the default is
5 非常满意 / 4 满意 / 3 一般 / 2 不满意, the scale of a Chinese team's
feedback sheet.  A customer answers by replying with a score, a label or a
common way of saying one ("很满意", "差评", "还行", "5分", "4/5",
"great"), or by clicking a per-level ``mailto:`` link to a signed
sub-address such as ``support+csat-<token>-5@example.com``.  Link scanners
never send mail, so they cannot vote.

Stores from before scores (schema 0012 and older) rated 1 = best; their
ratings were converted as score = 6 - rating (migration 0013), and the
links of the surveys they had sent still carry that position, so
``legacy_score`` reads them the same way.
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

from inboxd.config import ConfigError, Table, show

CSAT_KEYS = (
    "enabled", "delay", "min_interval", "exclude_tags", "exclude_autoclosed",
    "follow_up_levels", "levels", "scale", "secret_file",
)
LEVEL_KEYS = ("score", "label", "en", "zh", "zh-Hant")
# The old best-first `scale` took a label per language.
SCALE_KEYS = ("en", "zh", "zh-Hant")
# The team's feedback sheet: (score, labels), best first.
DEFAULT_LEVELS: tuple[tuple[int, Mapping[str, str]], ...] = (
    (5, {"zh": "非常满意", "zh-Hant": "非常滿意", "en": "Very satisfied"}),
    (4, {"zh": "满意", "zh-Hant": "滿意", "en": "Satisfied"}),
    (3, {"zh": "一般", "zh-Hant": "一般", "en": "Neutral"}),
    (2, {"zh": "不满意", "zh-Hant": "不滿意", "en": "Unsatisfied"}),
)
# A score is one digit in a survey address and in a reply.
MIN_SCORE, MAX_SCORE = 0, 9
# Position n (1 = best) of a survey sent before scores is worth 6 - n, as migration 0013 converted stored ratings.
LEGACY_BASE = 6
# The old `scale` key is read with that same rule, which only gives scores of 1 and up for five levels or fewer.
MAX_LEGACY_LEVELS = LEGACY_BASE - 1
SECRET_BYTES = 32
# A key file shorter than this was not written by load_secret; refuse to sign with it.
MIN_SECRET_BYTES = 16
TOKEN_LENGTH = 20
# The report's score: the share of answers in this many top levels.
TOP_LEVELS = 2

_SUBADDRESS = re.compile(r"[^@\s+]+\+csat-([a-z2-7]{20})-([0-9])@[^@\s]+", re.IGNORECASE)


@dataclass(frozen=True)
class Level:
    """One answer of the scale: its score (higher is better) and its label by language."""

    score: int
    labels: Mapping[str, str]


@dataclass(frozen=True)
class CsatSettings:
    """The validated ``[csat]`` table; ``scale`` lists the levels best (highest score) first."""

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
    """What a reply to a survey says: the score and the customer's words around it."""

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
        # The survey must be out within an hour of closing, scheduler interval included.
        delay=table.duration("delay", "15m"),
        min_interval=table.duration("min_interval", "30d"),
        exclude_tags=exclude_tags,
        exclude_autoclosed=table.boolean("exclude_autoclosed", True),
        # Every level being "low" would page the supervisors for delighted customers too.
        follow_up_levels=table.integer("follow_up_levels", 1, low=0, high=len(scale) - 1),
        scale=scale,
        secret_file=table.optional_path("secret_file", base) or data_dir / "csat.key",
    )


def _scale(table: Table) -> tuple[Level, ...]:
    if "levels" in table.data and "scale" in table.data:
        table.fail("scale", "give levels (with scores) or the old scale (best first), not both")
    if "levels" in table.data:
        return _levels(table)
    if "scale" in table.data:
        return _legacy_scale(table)
    return tuple(Level(score, MappingProxyType(dict(labels))) for score, labels in DEFAULT_LEVELS)


def _levels(table: Table) -> tuple[Level, ...]:
    """``levels = [{score = 5, label = "非常满意", en = "Very satisfied"}, ...]``, in any order."""
    entries = table.tables("levels", LEVEL_KEYS)
    _check_count(table, "levels", len(entries))
    by_score: dict[int, str] = {}
    raw_levels = []
    for entry in entries:
        score = entry.integer("score", None, low=MIN_SCORE, high=MAX_SCORE)
        if score is None:
            entry.fail("score", f"missing required key: each level needs a score from {MIN_SCORE} to {MAX_SCORE},"
                                " higher is better")
        if score in by_score:
            entry.fail("score", f"duplicate score {score} (also {by_score[score]})")
        by_score[score] = entry.path.removeprefix("csat.")
        if "label" in entry.data and "zh" in entry.data:
            entry.fail("zh", "give label or zh (both are the Chinese label), not both")
        keys = {"zh" if key == "label" else key: key for key in entry.data if key != "score"}
        raw_levels.append((entry, score, keys))
    levels = _labelled(table, raw_levels)
    return tuple(sorted(levels, key=lambda level: -level.score))


def _legacy_scale(table: Table) -> tuple[Level, ...]:
    """The old ``scale = [{zh = ..., en = ...}, ...]``, best first: position n scores 6 - n, as stored ratings did."""
    entries = table.tables("scale", SCALE_KEYS)
    _check_count(table, "scale", len(entries))
    if len(entries) > MAX_LEGACY_LEVELS:
        table.fail("scale", f"the old best-first scale reads position n as score {LEGACY_BASE} - n, which"
                            f" needs {MAX_LEGACY_LEVELS} levels or fewer, got {len(entries)}; write"
                            " levels = [{score = ..., label = ...}, ...] instead")
    return _labelled(table, [(entry, LEGACY_BASE - n, {key: key for key in entry.data})
                             for n, entry in enumerate(entries, start=1)])


def _check_count(table: Table, key: str, count: int) -> None:
    if count < 2:
        order = ", best first" if key == "scale" else ""
        table.fail(key, f"must list at least two levels{order}, got {count}")
    if count > MAX_SCORE - MIN_SCORE + 1:
        table.fail(key, f"must list at most {MAX_SCORE - MIN_SCORE + 1} levels, got {count}")


def _labelled(table: Table, raw_levels: list[tuple[Table, int, dict[str, str]]]) -> list[Level]:
    """Levels from (entry, score, {language: key}) with their labels checked: words, unique, at least one."""
    seen: dict[str, str] = {}
    levels = []
    for entry, score, keys in raw_levels:
        labels: dict[str, str] = {}
        for language, key in keys.items():
            text = " ".join(entry.string(key).split())
            if not text:
                entry.fail(key, "must not be empty")
            if text.isdigit():
                entry.fail(key, f"must be a word, not a number, got {show(text)}")
            # One word naming two levels would make an answer ambiguous, in any language.
            other = seen.get(text.casefold())
            if other is not None and other != entry.path:
                entry.fail(key, f"duplicate label {show(text)} (also {other.removeprefix('csat.')})")
            seen[text.casefold()] = entry.path
            labels[language] = text
        if not labels:
            table.fail(entry.path.removeprefix("csat."),
                       'give a label in at least one language, e.g. label = "满意", en = "Satisfied"')
        levels.append(Level(score, MappingProxyType(labels)))
    return levels


def level_of(scale: Sequence[Level], score: int) -> Level | None:
    """The level with this score, or None."""
    return next((level for level in scale if level.score == score), None)


def label(scale: Sequence[Level], score: int, language: str) -> str:
    """The label of the level scoring `score` in language (zh-Hant falls back to zh), else English, else any."""
    level = level_of(scale, score)
    if level is None:
        raise ValueError(f"score {score} is not on the scale {[lv.score for lv in scale]}")
    labels = level.labels
    fallback = labels.get("zh") if language == "zh-Hant" else labels.get("zh-Hant") if language == "zh" else None
    if language == "zh-Hant" and not labels.get("zh-Hant") and fallback:
        # A Traditional Chinese reader gets the Simplified label in their script (OpenCC).
        from inboxd.desk.language import to_traditional

        fallback = to_traditional(fallback)
    return labels.get(language) or fallback or labels.get("en") or next(iter(labels.values()))


def is_low(settings: CsatSettings, score: int) -> bool:
    """Whether `score` is among the lowest ``follow_up_levels`` levels (a supervisor follows it up)."""
    lowest = sorted(level.score for level in settings.scale)[:settings.follow_up_levels]
    return score in lowest


def is_top(scale: Sequence[Level], score: int) -> bool:
    """Whether `score` is among the top two levels (what the report's score counts)."""
    return score in top_scores(scale)


def top_scores(scale: Sequence[Level]) -> tuple[int, ...]:
    """The scores of the top two levels."""
    return tuple(sorted((level.score for level in scale), reverse=True)[:TOP_LEVELS])


def legacy_score(position: int) -> int:
    """The score of position `position` (1 = best) of a survey sent before scores."""
    return LEGACY_BASE - position


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


def survey_address(mailbox_address: str, token: str, score: int) -> str:
    """The address a rating link sends to, e.g. "support+csat-<token>-5@example.com"."""
    if not re.fullmatch(r"[a-z2-7]{20}", token):
        raise ValueError(f"invalid survey token {token!r}")
    if not MIN_SCORE <= score <= MAX_SCORE:
        raise ValueError(f"invalid score {score}")
    local, at, domain = mailbox_address.strip().rpartition("@")
    if not local or not at or not domain:
        raise ValueError(f"invalid mailbox address {mailbox_address!r}")
    # A mailbox address that is itself a sub-address keeps only its base.
    return f"{local.split('+', 1)[0]}+csat-{token}-{score}@{domain}".lower()


def parse_survey_address(address: str) -> tuple[str, int] | None:
    """(token, digit) from "<local>+csat-<token>-<digit>@domain" (display name allowed), else None.

    The digit is the score, or for a survey sent before scores its position (see legacy_score).
    """
    _, addr = parseaddr(address)
    match = _SUBADDRESS.fullmatch(addr.strip())
    if not match:
        return None
    return match[1].lower(), int(match[2])


# --- Reading an answer.

# How customers say each meaning, in zh, zh-Hant and en (folded: NFKC, lower case).
# A phrase counts anywhere in the line; the leftmost phrase wins and, at one
# place, the longest, so "不满意" is never read as "满意" nor "not satisfied"
# as "satisfied".  Which level a meaning stands for depends on the scale (see
# _meaning_scores).  To read one more way of answering, add it here.
MEANINGS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "very_satisfied": (
        "非常满意", "非常滿意", "很满意", "很滿意", "特别满意", "特別滿意", "十分满意", "十分滿意",
        "超级满意", "超級滿意", "超满意", "超滿意", "太满意", "太滿意", "极其满意", "極其滿意", "相当满意", "相當滿意",
        "非常好", "特别好", "特別好", "太好了", "超好", "好评", "好評", "五星好评", "五星好評", "完美", "点赞", "點讚",
        "very satisfied", "extremely satisfied", "completely satisfied", "highly satisfied", "totally satisfied",
        "very happy", "very good", "excellent", "outstanding", "perfect", "great", "awesome", "amazing",
        "fantastic", "superb", "brilliant", "wonderful", "💯", "🥰", "😍",
    ),
    "satisfied": (
        "满意", "滿意", "满意的", "滿意的", "比较满意", "比較滿意", "挺满意", "挺滿意", "还算满意", "還算滿意", "基本满意", "基本滿意",
        "很好", "挺好", "比较好", "比較好", "不错", "不錯", "还不错", "還不錯", "挺不错", "挺不錯", "蛮好", "蠻好",
        "satisfied", "happy", "good", "pretty good", "quite good", "fine", "not bad", "helpful", "👍", "🙂", "😊",
    ),
    "neutral": (
        "一般", "一般般", "还行", "還行", "还可以", "還可以", "凑合", "湊合", "马马虎虎", "馬馬虎虎", "中评", "中評",
        "普通", "尚可", "中等", "过得去", "過得去",
        "neutral", "ok", "okay", "so-so", "so so", "average", "mediocre", "alright", "all right", "meh", "😐",
    ),
    "unsatisfied": (
        "不满意", "不滿意", "不好", "不行", "失望", "较差", "較差", "比较差", "比較差", "不太好", "有待提高", "有待改进",
        "有待改進",
        "unsatisfied", "dissatisfied", "not satisfied", "unhappy", "bad", "poor", "disappointed", "disappointing",
        "unhelpful",
        "👎", "🙁", "😞",
    ),
    "very_unsatisfied": (
        "非常不满意", "非常不滿意", "很不满意", "很不滿意", "极不满意", "極不滿意", "特别不满意", "特別不滿意",
        "十分不满意", "十分不滿意", "太不满意", "太不滿意", "超级不满意", "超級不滿意",
        "很差", "太差", "非常差", "极差", "極差", "特别差", "特別差", "差评", "差評", "糟糕", "很糟糕", "太糟糕",
        "非常失望", "很失望", "太失望", "垃圾",
        "very dissatisfied", "very unsatisfied", "extremely dissatisfied", "very unhappy", "very bad", "very poor",
        "terrible", "awful", "horrible", "worst", "very disappointed", "useless", "😡", "😠",
    ),
})
# Phrases with a rating word in them that are no rating ("不好意思" is "sorry",
# "一般来说" "usually"); they are stepped over.
NOT_RATINGS = (
    "不好意思", "一般来说", "一般來說", "一般情况", "一般情況", "一般是", "一般都", "一般会", "一般會",
    "满意度", "滿意度", "好评返现", "好評返現",
    "good morning", "good afternoon", "good evening", "good day", "good night", "great day", "ok so",
    "great weekend", "good weekend", "happy to", "happy new year",
)
# Words that turn the phrase after them around ("不太满意", "not very happy"),
# with the fillers that may stand between ("太", "是很", "really").
NEGATORS = ("不", "没", "沒", "没有", "沒有", "并不", "並不", "not", "never", "hardly", "no longer")
# Negations written onto the word before: "wasn't", "isn't".
NEGATOR_SUFFIXES = ("n't", "n’t")
NEGATION_FILLERS = (
    "太", "是", "是很", "是太", "很", "怎么", "怎麼", "够", "夠", "算", "大", "是特别", "是特別", "是非常", "是十分", "觉得", "覺得",
    "very", "so", "too", "really", "that", "entirely", "completely", "quite", "all that", "particularly", "feel",
    "be", "been", "very much",
)
# What a negated meaning becomes: "不太满意" is unsatisfied, "not too bad" neutral.
NEGATED = MappingProxyType({"very_satisfied": "unsatisfied", "satisfied": "unsatisfied", "neutral": "unsatisfied",
                            "unsatisfied": "neutral", "very_unsatisfied": "neutral"})
# A line that asks something is not read for words ("请问满意度调查是什么？"); a score in it ("5分") still counts.
QUESTION_MARKS = ("?", "？", "请问", "請問", "吗", "嗎", "能否", "是否")
# Words that may come before the rating: "rating: 5", "评分：5".
RATING_PREFIXES = ("rating", "score", "评分", "評分", "评价", "評價", "打分", "分数", "分數")
# Only the first lines of the new text are read: an answer comes first, and
# further down a customer may be quoting the survey without a ">".
ANSWER_LINES = 3
# A score written out in Chinese: "五星", "给四分".  十 is left out: "十分满意" means "very satisfied".
CHINESE_NUMBERS = MappingProxyType({"零": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5,
                                    "六": 6, "七": 7, "八": 8, "九": 9})
# A number right before or after one of these is the top of the scale, not the answer: "满分5分，给4分".
FULL_MARKS_BEFORE = ("满分", "滿分", "总分", "總分", "满分是", "滿分是", "满分为", "滿分為", "out of", "of")
FULL_MARKS_AFTER = ("满分", "滿分", "制", "为满分", "為滿分", "是满分", "是滿分")
STAR_CHARS = "⭐★🌟"
# A digit followed by one of these counts something ("3 days", "3天了还没解决", "2个问题"): it is no score.
COUNTED_AFTER_DIGIT = (
    "天", "日", "号", "號", "个", "個", "次", "年", "月", "周", "週", "星期", "小时", "小時", "分钟", "分鐘", "位", "件",
    "台", "元", "块", "塊", "点", "點", "楼", "樓", "人", "张", "張",
    "day", "days", "hour", "hours", "hrs", "minute", "minutes", "mins", "week", "weeks", "month", "months",
    "year", "years", "time", "times", "item", "items", "more", "people", "of", "x",
)

_NUMBER = "([0-9]{1,2}|[" + "".join(CHINESE_NUMBERS) + "])"
# "5分", "5 星", "5 stars", "4 points"; not "5分钟" (minutes), "三分之一" (a third) or "5星期" (weeks).
_UNIT = re.compile(r"(?<![0-9.])" + _NUMBER + r"\s*(?:分(?![钟鐘鍾之])|颗星|顆星|个星|個星|星(?!期)|stars?(?![a-z])"
                   r"|points?(?![a-z])|pts?(?![a-z]))")
# "4/5", "4 out of 5", "4 of 5".
_FRACTION = re.compile(r"(?<![0-9.])([0-9]{1,2})\s*(?:/|out\s+of|of)\s*([0-9]{1,2})(?![0-9.])")
# "给4" / "打5" without a unit; not "打5折" (a discount) or "给2个" (a count).
_GIVE = re.compile(r"(?:给|給|打)\s*" + _NUMBER + r"(?![0-9.]|\s*(?:折|号|號|点|點|月|日|天|个|個|元|块|塊|%|次|张|張|件))")
_PREFIX = re.compile(
    r"(?:" + "|".join(re.escape(p) for p in RATING_PREFIXES) + r")\s*[:=]?\s*", re.IGNORECASE
)
# A rating digit at the start of a line, optionally in brackets or followed by
# "." / ")" / "、"; the lookaheads keep "12", "2nd", "1.5" and "3,5" from counting.
_DIGIT = re.compile(r"(?:\[([0-9])\]|\(([0-9])\)|([0-9])(?![0-9A-Za-z]|[.,][0-9])[.)、]?)(?![0-9A-Za-z])")
# What separates a rating from a comment on the same line: "3 - slow", "非常满意，谢谢".
_SEPARATORS = " \t-–—:;,.!、，。；：！~～"


def parse_answer(text: str, scale: Sequence[Level], *, legacy: bool = False) -> Answer | None:
    """The score and comment in a reply's new text (quotes already stripped), or None.

    The first ANSWER_LINES non-empty lines that are not quotes (">") are read,
    one after the other; the first that gives a score wins.  In a line, in
    this order: a score with its unit or scale anywhere ("5分", "五星",
    "5 stars", "4/5", "我给4分"; a "满分5分" next to it is the scale, not the
    answer; a number below the lowest level counts as the lowest), a digit
    on the scale at the start ("5", "５", "[5]", "rating: 5"), then a label or
    a way of saying a meaning of MEANINGS anywhere (negations win; a line that
    asks a question is not read for words).  The comment is the customer's
    text without the rating when the rating starts its line ("非常满意，谢谢！"
    gives comment "谢谢！"), and with it otherwise.

    ``legacy``: the survey was sent before scores, when its text listed
    1 = best; a digit alone is that position (see legacy_score).
    """
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    read = 0
    for index, raw_line in enumerate(lines):
        line = raw_line.strip()
        if not line:
            continue
        found = _read_line(line, scale, legacy)
        if found is not None:
            score, rest = found
            comment = "\n".join([*lines[:index], rest, *lines[index + 1:]]).strip()
            return Answer(rating=score, comment=comment)
        read += 1
        if read == ANSWER_LINES:
            break
    return None


def _read_line(line: str, scale: Sequence[Level], legacy: bool) -> tuple[int, str] | None:
    """(score, the line's comment) when the line gives a score."""
    folded, origin = _fold(line)
    prefix = _PREFIX.match(folded)
    start = prefix.end() if prefix else 0
    scores = sorted(level.score for level in scale)

    def rest_after(begin: int, end: int, score: int) -> str:
        if begin > start:
            return line
        # "5 - 非常满意": the label repeats the score; it is no comment.
        after = _skip_separators(folded, end)
        same = _match_label(folded, after, [(t, s) for t, s in _labels(scale) if s == score])
        if same:
            end = same[1]
        return line[origin[end]:].lstrip(_SEPARATORS).strip()

    number = _number(folded, scores)
    if number is not None:
        begin, end, score = number
        return score, rest_after(begin, end, score)
    digit = _DIGIT.match(folded, start)
    if digit and not _counts_something(folded[digit.end():]):
        value = int(next(g for g in digit.groups() if g))
        score = legacy_score(value) if legacy else value
        if score in scores:
            return score, rest_after(start, digit.end(), score)
        return None
    if any(mark in folded for mark in QUESTION_MARKS):
        return None
    word = _words(folded, scale)
    if word is None:
        return None
    begin, end, score, is_label = word
    rest = rest_after(begin, end, score)
    # A way of saying it ("wasn't happy with the wait") is part of the customer's sentence; a label is not.
    return score, rest if is_label or not rest else line


def _number(folded: str, scores: list[int]) -> tuple[int, int, int] | None:
    """(start, end, score) of the first score written with its unit or scale in the line."""
    found: list[tuple[int, int, int]] = []
    for pattern in (_UNIT, _GIVE):
        for match in pattern.finditer(folded):
            if _full_marks(folded, match.start(), match.end()):
                continue
            found.append((match.start(), match.end(), _value(match[1])))
    for match in _FRACTION.finditer(folded):
        value, top = int(match[1]), int(match[2])
        if top == scores[-1] or (value == top and top > 0):
            found.append((match.start(), match.end(), scores[-1] if value == top else value))
    stars = sum(folded.count(c) for c in STAR_CHARS)
    if stars:
        first = min(folded.find(c) for c in STAR_CHARS if c in folded)
        found.append((first, first + stars, stars))
    for begin, end, value in sorted(found):
        if value > scores[-1]:
            continue
        # "1分" on a scale that starts at 2: the customer means the worst.
        return begin, end, max(value, scores[0])
    return None


def _counts_something(after: str) -> bool:
    after = after.lstrip()
    for word in COUNTED_AFTER_DIGIT:
        if after.startswith(word) and not (word.isascii() and after[len(word):len(word) + 1].isalnum()):
            return True
    return False


def _full_marks(folded: str, begin: int, end: int) -> bool:
    before = folded[:begin].rstrip()
    after = folded[end:].lstrip()
    return before.endswith(FULL_MARKS_BEFORE) or after.startswith(FULL_MARKS_AFTER)


def _value(number: str) -> int:
    return int(number) if number.isdigit() else CHINESE_NUMBERS[number]


def _words(folded: str, scale: Sequence[Level]) -> tuple[int, int, int, bool] | None:
    """(start, end, score, whether it is a label) of the first label or meaning in the line, negation applied."""
    phrases: dict[str, tuple[str | None, int | None]] = {}
    for phrase in NOT_RATINGS:
        phrases[phrase] = (None, None)
    meaning_scores = _meaning_scores(scale)
    for meaning, words in MEANINGS.items():
        for word in words:
            phrases.setdefault(word, (meaning, meaning_scores[meaning]))
    labels = dict(_labels(scale))
    for text, score in labels.items():
        # A label of the scale is its own level, whatever a meaning says.
        meaning = next((m for m, words in MEANINGS.items() if text in words), None)
        phrases[text] = (meaning, score)
    for match in _phrase_pattern(tuple(sorted(phrases, key=len, reverse=True))).finditer(folded):
        meaning, score = phrases[_canonical(match.group())]
        if score is None and meaning is None:
            continue
        begin, phrase = match.start(), _canonical(match.group())
        negation = _negated(folded[:begin]) if meaning is not None else None
        if negation is not None:
            meaning, begin = NEGATED[meaning], negation
            return begin, match.end(), meaning_scores[meaning], False
        return begin, match.end(), score, phrase in labels
    return None


def _canonical(matched: str) -> str:
    return " ".join(matched.split())


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One alternation of the phrases, longest first; a word of Latin letters needs a word boundary."""
    pattern = _PATTERNS.get(phrases)
    if pattern is None:
        parts = []
        for phrase in phrases:
            body = r"\s+".join(re.escape(word) for word in phrase.split())
            if phrase[0].isascii() and phrase[0].isalnum():
                body = r"(?<![a-z0-9])" + body
            if phrase[-1].isascii() and phrase[-1].isalnum():
                body += r"(?![a-z0-9])"
            parts.append(body)
        pattern = _PATTERNS[phrases] = re.compile("|".join(parts))
    return pattern


def _meaning_scores(scale: Sequence[Level]) -> dict[str, int]:
    """The level each meaning stands for: the level one of whose labels says it, else by its place in the scale."""
    best_first = sorted(scale, key=lambda level: -level.score)
    place = {"very_satisfied": 0, "satisfied": 0, "neutral": len(best_first) // 2,
             "unsatisfied": len(best_first) - 1, "very_unsatisfied": len(best_first) - 1}
    out = {}
    for meaning, words in MEANINGS.items():
        named = [level.score for level in best_first
                 if any(text.casefold() in words for text in level.labels.values())]
        out[meaning] = named[0] if named else best_first[place[meaning]].score
    return out


def _negated(before: str) -> int | None:
    """Where the negation that the text before a phrase ends with starts ("不太", "not very"), or None."""
    before = before.rstrip()
    for filler in ("", *NEGATION_FILLERS):
        rest = before
        if filler:
            if not before.endswith(filler) or (filler.isascii() and not _boundary(before, len(before) - len(filler))):
                continue
            rest = before[:-len(filler)].rstrip()
        for negator in NEGATORS:
            begin = len(rest) - len(negator)
            if rest.endswith(negator) and (not negator.isascii() or _boundary(rest, begin)):
                return begin
        for suffix in NEGATOR_SUFFIXES:
            if rest.endswith(suffix):
                # The whole word: "wasn't".
                begin = len(rest) - len(suffix)
                while begin > 0 and rest[begin - 1].isalpha():
                    begin -= 1
                return begin
    return None


def _boundary(text: str, index: int) -> bool:
    return index == 0 or not text[index - 1].isalnum()


def _fold(line: str) -> tuple[str, list[int]]:
    """The line with full-width forms made plain ("４" -> "4", "："->":") and lower case, and where each
    character came from.

    Each character is normalized on its own (NFKC) so that an index into the
    folded text maps back to the original, and the comment keeps the
    customer's own punctuation.
    """
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(line):
        plain = unicodedata.normalize("NFKC", char).casefold()
        folded.append(plain)
        origin.extend([index] * len(plain))
    origin.append(len(line))
    return "".join(folded), origin


def _labels(scale: Sequence[Level]) -> list[tuple[str, int]]:
    """(label, score) pairs of the scale, folded; a zh label without a zh-Hant one also in Traditional
    script, as a zh-Hant survey shows it (see label)."""
    # Imported here: inboxd.desk.language loads OpenCC, which only Chinese labels need.
    from inboxd.desk.language import to_traditional

    texts = [(text, level.score) for level in scale for text in level.labels.values()]
    texts += [(to_traditional(level.labels["zh"]), level.score) for level in scale
              if "zh" in level.labels and "zh-Hant" not in level.labels]
    return [(" ".join(unicodedata.normalize("NFKC", text).casefold().split()), score) for text, score in texts]


def _match_label(folded: str, position: int, labels: list[tuple[str, int]]) -> tuple[int, int] | None:
    """(score, end) of the longest label at position, or None."""
    best: tuple[int, int] | None = None
    for text, score in labels:
        pattern = r"\s+".join(re.escape(word) for word in text.split())
        match = re.compile(pattern).match(folded, position)
        if not match:
            continue
        end = match.end()
        # "Neutrality" is not "Neutral"; a Chinese label needs no word boundary.
        if text[-1].isascii() and end < len(folded) and folded[end].isalnum():
            continue
        if best is None or end > best[1]:
            best = (score, end)
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

    Each level, best first, is {score, n (the same as score, for older
    templates), label, address, mailto}.  The link is short: the signed
    sub-address carries the survey and the score, and the only prefill is
    an ASCII subject with the ticket tag and the score ("[T-1042] 5"), which
    every client keeps and which stays readable in the mail's text.  No body
    is prefilled (several webmail clients drop it anyway); the customer may
    write a comment.
    """
    tag = ticket.get("tag") or f"[{ticket['id']}]"
    levels = []
    for level in scale:
        address = survey_address(mailbox_address, token, level.score)
        levels.append({
            "score": level.score,
            "n": level.score,
            "label": label(scale, level.score, language),
            "address": address,
            # RFC 6068 wants %20 for spaces, never "+", hence quote() and not quote_plus().
            "mailto": f"mailto:{address}?subject={quote(f'{tag} {level.score}', safe='')}",
        })
    return {"ticket": dict(ticket), "customer": dict(customer), "mailbox": dict(mailbox), "levels": levels}
