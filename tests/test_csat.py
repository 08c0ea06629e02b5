"""Tests for inboxd.desk.csat: reading answers, signed addresses, the key file, [csat] errors, the shipped templates.

All pure: no database, no network, no clock.  The 40-odd answers of
REAL_WORLD are the ways customers of a Chinese team answer a survey on the
5 非常满意 / 4 满意 / 3 一般 / 2 不满意 scale, each score checked by hand.
"""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from inboxd.config import ConfigError
from inboxd.desk.csat import (
    Answer, CsatSettings, Level, is_low, is_top, label, legacy_score, load_secret, make_token, parse_answer,
    parse_csat, parse_survey_address, survey_address, survey_variables, top_scores,
)
from inboxd.outbound.templates import Templates

SHIPPED = Templates(Path(__file__).parent.parent / "templates")
GOLDEN = Path(__file__).parent / "golden"
SECRET = b"k" * 32


def settings(raw: dict | None = None, tmp: Path = Path("/srv/inboxd")) -> CsatSettings:
    return parse_csat(raw, file_name="inboxd.toml", data_dir=tmp / "var", base=tmp)


SCALE = settings().scale
# A five-level sheet with a level below 不满意.
FIVE = settings({"levels": [
    {"score": 1, "label": "非常不满意", "en": "Very dissatisfied"},
    {"score": 2, "label": "不满意", "en": "Dissatisfied"},
    {"score": 3, "label": "一般", "en": "Neutral"},
    {"score": 4, "label": "满意", "en": "Satisfied"},
    {"score": 5, "label": "非常满意", "en": "Very satisfied"},
]}).scale


def error(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        settings(raw)
    return str(caught.value)


# --- Reading answers: real-world replies, scores checked by hand.

REAL_WORLD = [
    # Scores, written every way.
    ("5", 5),
    ("５", 5),                                   # full-width digit
    ("4分", 4),
    ("5星", 5),
    ("五星好评！", 5),
    ("5 stars, thank you!", 5),
    ("4/5", 4),
    ("4 out of 5, took a while", 4),
    ("我给4分", 4),
    ("5分满分给4分", 4),                          # the 5 is the scale, the 4 the answer
    ("满分5分，我打3分吧", 3),
    ("1分", 2),                                  # below the scale: the customer means the worst
    ("⭐⭐⭐⭐", 4),
    # The labels and what customers say for them, zh.
    ("非常满意", 5),
    ("非常满意，谢谢！", 5),
    ("很满意，小王很耐心", 5),
    ("非常好，问题解决了", 5),
    ("满意", 4),
    ("满意的", 4),
    ("满意，但是太慢了", 4),
    ("还不错", 4),
    ("一般", 3),
    ("还行吧", 3),
    ("还可以", 3),
    ("一般般，等了三天", 3),
    ("不满意", 2),                               # not "满意"
    ("不太满意，回复太慢", 2),
    ("非常不满意！！！", 2),                       # the lowest level
    ("很不满意，问题根本没解决", 2),
    ("差评", 2),
    ("很差", 2),
    # zh-Hant.
    ("滿意", 4),
    ("非常滿意，謝謝", 5),
    ("不滿意", 2),
    # en.
    ("Very satisfied", 5),
    ("Great, thanks a lot!", 5),
    ("excellent service", 5),
    ("Good", 4),
    ("ok", 3),
    ("bad", 2),
    ("Poor - nobody called me back", 2),
    ("terrible experience", 2),
    ("Not satisfied at all", 2),                 # not "satisfied"
    ("I wasn't happy with the wait", 2),
    # Not answers: a question, thanks, a number that is no score.
    ("请问发票什么时候开？", None),
    ("请问发票什么时候开", None),
    ("谢谢", None),
    ("Thanks, that fixed it", None),
    ("Good morning, the printer is broken again.", None),
    ("我的订单号是 12345", None),
    ("等了5分钟", None),                          # minutes, not points
    ("不好意思，还有一个问题", None),               # "sorry", not "不好"
    ("提高客户满意度很重要", None),                # "satisfaction", not "satisfied"
    ("When will it ship?", None),
    ("7", None),
    ("1", None),                                 # a digit alone must be on the scale
    ("3天了还没解决", None),                       # a digit that counts days
    ("3 days and still nothing", None),
    ("2个问题想再问一下", None),
    ("5 谢谢", 5),
]


@pytest.mark.parametrize("text, score", REAL_WORLD)
def test_real_world_answers(text, score):
    answer = parse_answer(text, SCALE)
    assert (answer.rating if answer else None) == score


def test_the_table_has_forty_answers_and_the_traps():
    assert sum(1 for _, score in REAL_WORLD if score is not None) >= 40
    assert sum(1 for _, score in REAL_WORLD if score is None) >= 10


@pytest.mark.parametrize("text, rating, comment", [
    ("5", 5, ""),
    ("3 - slow but ok", 3, "slow but ok"),
    ("非常满意，谢谢！", 5, "谢谢！"),               # a label: the customer's punctuation kept after it
    ("不满意 客服回复太慢", 2, "客服回复太慢"),
    ("5 非常满意", 5, ""),                          # the label repeats the score
    ("[3]", 3, ""),
    ("（４）", 4, ""),
    ("rating: 5", 5, ""),
    ("评分：３ 还行", 3, "还行"),
    ("4分，回复挺快", 4, "回复挺快"),
    ("我给4分", 4, "我给4分"),                      # the score inside a sentence keeps the sentence
    ("I wasn't happy with the wait", 2, "I wasn't happy with the wait"),
    ("good", 4, ""),
    ("2\nThe agent was friendly.\nBut slow.", 2, "The agent was friendly.\nBut slow."),
    ("\n  \n> 5 非常满意\n>\n  4  \nok", 4, "ok"),   # blank and quoted lines first
    ("您好，\n4分\n谢谢", 4, "您好，\n\n谢谢"),      # a greeting first
])
def test_parse_answer_reads_rating_and_comment(text, rating, comment):
    assert parse_answer(text, SCALE) == Answer(rating=rating, comment=comment)


def test_only_the_first_lines_are_read():
    assert parse_answer("您好，\n请问一下\n发票的事\n非常满意", SCALE) is None
    assert parse_answer("> 5 非常满意\n> 4 满意\n请问发票什么时候开？", SCALE) is None


def test_a_survey_sent_before_scores_reads_a_digit_as_its_position():
    assert [parse_answer(str(n), SCALE, legacy=True).rating for n in (1, 2, 3, 4)] == [5, 4, 3, 2]
    # A score with its unit means the same on any survey.
    assert parse_answer("4分", SCALE, legacy=True).rating == 4
    assert [legacy_score(n) for n in (1, 2, 3, 4)] == [5, 4, 3, 2]


def test_meanings_find_their_level_on_a_five_level_scale():
    cases = {"非常不满意": 1, "差评": 1, "terrible": 1, "不满意": 2, "bad": 2, "不太满意": 2, "还行": 3,
             "满意": 4, "good": 4, "很满意": 5, "1": 1, "1分": 1}
    assert {text: parse_answer(text, FIVE).rating for text in cases} == cases


def test_a_custom_label_counts_anywhere_and_meanings_fall_back_by_place():
    scale = settings({"levels": [{"score": 3, "label": "好"}, {"score": 2, "label": "中"},
                                 {"score": 1, "label": "坏", "en": "Awful"}]}).scale
    assert parse_answer("坏", scale).rating == 1
    assert parse_answer("awful", scale).rating == 1
    assert parse_answer("满意", scale).rating == 3          # the top level when none says "satisfied"
    assert parse_answer("一般", scale).rating == 2          # the middle one
    assert parse_answer("不满意", scale).rating == 1        # the lowest


def test_a_custom_simplified_label_is_read_in_traditional_script_too():
    # A zh-Hant survey shows the label converted (csat.label); the customer may answer with it.
    scale = settings({"levels": [{"score": 3, "label": "服务很棒"}, {"score": 1, "label": "服务很差"}]}).scale
    assert label(scale, 3, "zh-Hant") == "服務很棒"
    assert parse_answer("服務很棒！謝謝", scale) == Answer(3, "謝謝")
    assert parse_answer("服务很棒", scale) == Answer(3, "")


def test_the_longest_label_wins_whatever_the_order_of_the_scale():
    scale = settings({"levels": [{"score": 2, "en": "Good", "zh": "满意"},
                                 {"score": 1, "en": "Good enough", "zh": "满意度一般"}]}).scale
    assert parse_answer("good enough, thanks", scale) == Answer(1, "thanks")
    assert parse_answer("满意度一般。", scale) == Answer(1, "")
    assert parse_answer("Good, thanks", scale) == Answer(2, "thanks")


# --- Tokens and addresses.

def test_make_token_is_deterministic_and_depends_on_every_input():
    token = make_token(SECRET, "T-1000", "n1")
    assert token == make_token(SECRET, "T-1000", "n1")
    assert len(token) == 20 and set(token) <= set("abcdefghijklmnopqrstuvwxyz234567")
    others = {make_token(SECRET, "T-1000", "n2"), make_token(SECRET, "T-1001", "n1"),
              make_token(b"x" * 32, "T-1000", "n1")}
    assert token not in others and len(others) == 3


def test_survey_address_round_trip():
    token = make_token(SECRET, "T-1000", "n1")
    address = survey_address("Support@Example.com", token, 5)
    assert address == f"support+csat-{token}-5@example.com"
    assert parse_survey_address(address) == (token, 5)
    assert parse_survey_address(address.upper()) == (token, 5)
    assert parse_survey_address(f'"Example Support" <{address}>') == (token, 5)
    # A mailbox address that is a sub-address already keeps only its base.
    assert survey_address("help+desk@example.com", token, 0) == f"help+csat-{token}-0@example.com"
    with pytest.raises(ValueError):
        survey_address("support@example.com", token, 10)


@pytest.mark.parametrize("address", [
    "support@example.com",
    "support+note@example.com",
    "support+csat@example.com",
    "support+csat-abc-1@example.com",                           # token too short
    "support+csat-aaaaaaaaaaaaaaaaaaaa-12@example.com",
    "support+csat-aaaaaaaaaaaaaaaaaaa1-1@example.com",          # "1" is not base32
    "support+csat-aaaaaaaaaaaaaaaaaaaa-1",                      # no domain
    "not an address",
])
def test_parse_survey_address_rejects_other_addresses(address):
    assert parse_survey_address(address) is None


# --- The signing key.

def test_load_secret_creates_a_private_key_once(tmp_path):
    path = tmp_path / "var" / "csat.key"
    secret = load_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(path) == secret
    # The temporary file it was written through is gone.
    assert [p.name for p in path.parent.iterdir()] == ["csat.key"]


def test_load_secret_refuses_a_short_key(tmp_path):
    path = tmp_path / "csat.key"
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match=r"csat.key: survey signing key is 5 bytes; need at least 16"):
        load_secret(path)


# --- [csat] settings.

def test_defaults(tmp_path):
    csat = settings(None, tmp_path)
    assert csat.enabled and csat.exclude_autoclosed
    # Out within the hour after closing, with room for the scheduler's interval.
    assert csat.delay == timedelta(minutes=15) and csat.min_interval == timedelta(days=30)
    assert csat.exclude_tags == ("spam",) and csat.follow_up_levels == 1
    assert [level.score for level in csat.scale] == [5, 4, 3, 2]
    assert [label(csat.scale, n, "zh") for n in (5, 4, 3, 2)] == ["非常满意", "满意", "一般", "不满意"]
    assert [label(csat.scale, n, "en") for n in (5, 4, 3, 2)] == ["Very satisfied", "Satisfied", "Neutral",
                                                                 "Unsatisfied"]
    assert [label(csat.scale, n, "zh-Hant") for n in (5, 4, 3, 2)] == ["非常滿意", "滿意", "一般", "不滿意"]
    assert csat.secret_file == tmp_path / "var" / "csat.key"
    assert settings({"secret_file": "keys/csat"}, tmp_path).secret_file == tmp_path / "keys/csat"


def test_levels_in_any_order_come_out_best_first():
    scale = settings({"levels": [{"score": 2, "label": "不满意"}, {"score": 5, "zh": "非常满意", "en": "Great"},
                                 {"score": 3, "en": "Meh", "zh-Hant": "一般"}]}).scale
    assert [(level.score, dict(level.labels)) for level in scale] == [
        (5, {"zh": "非常满意", "en": "Great"}), (3, {"en": "Meh", "zh-Hant": "一般"}), (2, {"zh": "不满意"})]


def test_the_old_best_first_scale_still_loads_as_scores():
    four = settings({"scale": [{"zh": "非常满意", "en": "Very satisfied"}, {"zh": "满意"}, {"zh": "一般"},
                               {"zh": "不满意"}]})
    assert [(level.score, level.labels["zh"]) for level in four.scale] == [
        (5, "非常满意"), (4, "满意"), (3, "一般"), (2, "不满意")]
    assert [level.score for level in settings({"scale": [{"en": "Good"}, {"en": "Bad"}]}).scale] == [5, 4]


def test_label_falls_back_to_english_then_any():
    scale = (Level(5, {"en": "Good", "zh": "好"}), Level(4, {"zh": "差"}), Level(3, {"zh-Hant": "還行"}))
    assert label(scale, 5, "zh") == "好"
    assert label(scale, 5, "zh-Hant") == "好"
    assert label(scale, 3, "zh") == "還行"
    assert label(scale, 5, "fr") == "Good"
    assert label(scale, 4, "en") == "差"
    with pytest.raises(ValueError):
        label(scale, 1, "en")


def test_is_low_counts_the_lowest_levels_and_is_top_the_top_two():
    assert [is_low(settings(), n) for n in (5, 4, 3, 2)] == [False, False, False, True]
    two = settings({"follow_up_levels": 2})
    assert [is_low(two, n) for n in (5, 4, 3, 2)] == [False, False, True, True]
    assert not any(is_low(settings({"follow_up_levels": 0}), n) for n in (5, 4, 3, 2))
    assert [is_top(SCALE, n) for n in (5, 4, 3, 2)] == [True, True, False, False]
    assert top_scores(FIVE) == (5, 4)


@pytest.mark.parametrize("raw, message", [
    ({"delay": "soon"},
     'inboxd.toml: csat.delay: expected a duration such as "90s", "15m", "4h" or "2d", got "soon"'),
    ({"levels": []}, "inboxd.toml: csat.levels: must list at least two levels, got 0"),
    ({"levels": [{"label": "好"}, {"score": 1, "label": "差"}]},
     "inboxd.toml: csat.levels[0].score: missing required key: each level needs a score from 0 to 9,"
     " higher is better"),
    ({"levels": [{"score": 10, "label": "好"}, {"score": 1, "label": "差"}]},
     "inboxd.toml: csat.levels[0].score: must be between 0 and 9, got 10"),
    ({"levels": [{"score": "5", "label": "好"}, {"score": 1, "label": "差"}]},
     'inboxd.toml: csat.levels[0].score: expected an integer, got "5"'),
    ({"levels": [{"score": 5, "label": "好"}, {"score": 5, "label": "差"}]},
     "inboxd.toml: csat.levels[1].score: duplicate score 5 (also levels[0])"),
    ({"levels": [{"score": 5, "label": "好", "zh": "好"}, {"score": 1, "label": "差"}]},
     "inboxd.toml: csat.levels[0].zh: give label or zh (both are the Chinese label), not both"),
    ({"levels": [{"score": 5, "label": "好"}, {"score": 1, "en": "好"}]},
     'inboxd.toml: csat.levels[1].en: duplicate label "好" (also levels[0])'),
    ({"levels": [{"score": 5, "label": "好"}, {"score": 1}]},
     'inboxd.toml: csat.levels[1]: give a label in at least one language, e.g. label = "满意", en = "Satisfied"'),
    ({"levels": [{"score": 5, "label": "好"}, {"score": 1, "fr": "Mal"}]},
     'inboxd.toml: csat.levels[1].fr: unknown key "fr"'),
    ({"levels": [{"score": 5, "label": "好"}, {"score": 1, "en": "2"}]},
     'inboxd.toml: csat.levels[1].en: must be a word, not a number, got "2"'),
    ({"levels": [{"score": 5, "label": "好"}, {"score": 1, "label": "差"}], "scale": [{"en": "a"}, {"en": "b"}]},
     "inboxd.toml: csat.scale: give levels (with scores) or the old scale (best first), not both"),
    ({"scale": []}, "inboxd.toml: csat.scale: must list at least two levels, best first, got 0"),
    ({"scale": [{"en": f"L{i}"} for i in range(6)]},
     "inboxd.toml: csat.scale: the old best-first scale reads position n as score 6 - n, which needs 5 levels"
     " or fewer, got 6; write levels = [{score = ..., label = ...}, ...] instead"),
    ({"scale": [{"en": "Good"}, {"en": "good", "zh": "好"}]},
     'inboxd.toml: csat.scale[1].en: duplicate label "good" (also scale[0])'),
    ({"follow_up_levels": 4}, "inboxd.toml: csat.follow_up_levels: must be between 0 and 3, got 4"),
    ({"follow_up_levels": -1}, "inboxd.toml: csat.follow_up_levels: must be between 0 and 3, got -1"),
    ({"delya": "1h"}, 'inboxd.toml: csat.delya: unknown key "delya"; did you mean "delay"?'),
    ({"exclude_tags": "spam"}, 'inboxd.toml: csat.exclude_tags: expected a list of strings, got "spam"'),
])
def test_config_errors(raw, message):
    assert error(raw) == message


# --- The survey mail.

TICKET = {"id": "T-1042", "tag": "[T-1042]", "subject": "Order late", "status": "closed"}
CUSTOMER = {"name": "Alice", "email": "alice@example.org"}
MAILBOX = {"name": "support", "address": "support@example.com", "display_name": "Example Support"}
TOKEN = make_token(SECRET, "T-1042", "n1")


def variables(language: str) -> dict:
    return survey_variables(TICKET, CUSTOMER, MAILBOX, SCALE, language=language,
                            mailbox_address="support@example.com", token=TOKEN)


def test_survey_links_are_short_and_answer_their_own_score():
    levels = variables("zh")["levels"]
    assert [level["score"] for level in levels] == [5, 4, 3, 2]
    for level in levels:
        assert level["n"] == level["score"]
        link = urlsplit(level["mailto"])
        assert link.scheme == "mailto" and link.path == level["address"]
        assert parse_survey_address(link.path) == (TOKEN, level["score"])
        # Only a short ASCII subject: the ticket tag and the score.
        assert parse_qs(link.query) == {"subject": [f"[T-1042] {level['score']}"]}
        assert level["mailto"] == f"mailto:support+csat-{TOKEN}-{level['score']}@example.com?subject=%5BT-1042%5D%20" \
                                  f"{level['score']}"
        assert level["mailto"].isascii() and len(level["mailto"]) < 90


@pytest.mark.parametrize("language, words", [
    ("en", ["Very satisfied", "Satisfied", "Neutral", "Unsatisfied"]),
    ("zh", ["非常满意", "满意", "一般", "不满意"]),
])
def test_shipped_templates_list_every_level_and_link(language, words):
    values = variables(language)
    subject = SHIPPED.render("csat/subject.txt", values, mailbox="support", language=language)
    body = SHIPPED.render("csat/body.txt", values, mailbox="support", language=language)
    assert "Order late" in subject and "\n" not in subject.strip()
    lines = [line.strip() for line in body.splitlines()]
    for score, word in zip((5, 4, 3, 2), words):
        assert f"{score}  {word}" in lines or f"{score} {word}" in lines
        # Each link is alone on its line, so a mail client makes it clickable.
        assert next(v for v in values["levels"] if v["score"] == score)["mailto"] in lines
    assert "T-1042" in body and "Alice" in body and "Example Support" in body
    assert "{{" not in body and "{%" not in body


def test_zh_survey_is_the_golden_text():
    """The whole zh survey, compared with tests/golden/csat_zh.txt (checked by reading it)."""
    body = SHIPPED.render("csat/body.txt", variables("zh"), mailbox="support", language="zh")
    assert body == (GOLDEN / "csat_zh.txt").read_text(encoding="utf-8").replace("<TOKEN>", TOKEN)
    for phrase in ("感谢您联系", "请您对本次服务进行评价", "分数越高表示越满意", "5 非常满意", "顺颂商祺"):
        assert phrase in body
