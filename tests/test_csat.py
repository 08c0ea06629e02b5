"""Tests for inboxd.desk.csat: reading answers, signed survey addresses, the key file, [csat] errors, the shipped templates.

All pure: no database, no network, no clock.
"""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from inboxd.config import ConfigError
from inboxd.desk.csat import (
    Answer, CsatSettings, Level, is_low, label, load_secret, make_token, parse_answer, parse_csat,
    parse_survey_address, survey_address, survey_variables,
)
from inboxd.outbound.templates import Templates

SHIPPED = Templates(Path(__file__).parent.parent / "templates")
SECRET = b"k" * 32


def settings(raw: dict | None = None, tmp: Path = Path("/srv/inboxd")) -> CsatSettings:
    return parse_csat(raw, file_name="inboxd.toml", data_dir=tmp / "var", base=tmp)


SCALE = settings().scale


def error(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        settings(raw)
    return str(caught.value)


# --- parse_answer.

@pytest.mark.parametrize("text, rating, comment", [
    ("1", 1, ""),
    ("４", 4, ""),                                  # full-width digit
    ("3 - slow but ok", 3, "slow but ok"),
    ("非常满意，谢谢！", 1, "谢谢！"),               # the longest label, the customer's punctuation kept
    ("不满意 客服回复太慢", 4, "客服回复太慢"),        # "不满意", not "满意"
    ("满意", 2, ""),
    ("satisfied", 2, ""),
    ("Very satisfied", 1, ""),
    ("VERY   SATISFIED!", 1, ""),
    ("dissatisfied: nobody called back", 4, "nobody called back"),
    ("Not satisfied", 4, ""),
    ("1.", 1, ""),
    ("2) fine", 2, "fine"),
    ("[3]", 3, ""),
    ("（１）", 1, ""),
    ("rating: 1", 1, ""),
    ("评分：３ 还行", 3, "还行"),
    ("1、", 1, ""),
    ("1 Very satisfied", 1, ""),                      # what a rating link prefills
    ("2\nThe agent was friendly.\nBut slow.", 2, "The agent was friendly.\nBut slow."),
    ("\n  \n> 1 Very satisfied\n>\n  2  \nok", 2, "ok"),   # blank and quoted lines first
])
def test_parse_answer_reads_rating_and_comment(text, rating, comment):
    assert parse_answer(text, SCALE) == Answer(rating=rating, comment=comment)


@pytest.mark.parametrize("text", [
    "When will it ship?",
    "Hi,\n1",                 # the rating must be on the first non-empty line
    "7", "0", "12", "1.5", "2nd floor",
    "Neutrality is impossible",
    "I am satisfied",        # a label only counts at the start of the line
    "", "  \n> 1\n",
])
def test_parse_answer_without_a_rating_is_none(text):
    assert parse_answer(text, SCALE) is None


def test_the_longest_label_wins_whatever_the_order_of_the_scale():
    scale = settings({"scale": [{"en": "Good", "zh": "满意"}, {"en": "Good enough", "zh": "满意度一般"}]}).scale
    assert parse_answer("good enough, thanks", scale) == Answer(2, "thanks")
    assert parse_answer("满意度一般。", scale) == Answer(2, "")
    assert parse_answer("Good, thanks", scale) == Answer(1, "thanks")


def test_negative_synonyms_only_when_the_lowest_level_is_one_of_them():
    scale = settings({"scale": [{"en": "Good"}, {"en": "Bad"}]}).scale
    assert parse_answer("Bad", scale) == Answer(2, "")
    assert parse_answer("dissatisfied", scale) is None
    assert parse_answer("dissatisfied", SCALE) == Answer(4, "")


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
    address = survey_address("Support@Example.com", token, 3)
    assert address == f"support+csat-{token}-3@example.com"
    assert parse_survey_address(address) == (token, 3)
    assert parse_survey_address(address.upper()) == (token, 3)
    assert parse_survey_address(f'"Example Support" <{address}>') == (token, 3)
    # A mailbox address that is a sub-address already keeps only its base.
    assert survey_address("help+desk@example.com", token, 1) == f"help+csat-{token}-1@example.com"


@pytest.mark.parametrize("address", [
    "support@example.com",
    "support+note@example.com",
    "support+csat@example.com",
    "support+csat-abc-1@example.com",                           # token too short
    "support+csat-aaaaaaaaaaaaaaaaaaaa-0@example.com",          # no level 0
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
    assert csat.delay == timedelta(hours=1) and csat.min_interval == timedelta(days=30)
    assert csat.exclude_tags == ("spam",) and csat.follow_up_levels == 1
    assert [label(csat.scale, n, "zh") for n in (1, 2, 3, 4)] == ["非常满意", "满意", "一般", "不满意"]
    assert csat.secret_file == tmp_path / "var" / "csat.key"
    assert settings({"secret_file": "keys/csat"}, tmp_path).secret_file == tmp_path / "keys/csat"


def test_label_falls_back_to_english_then_any():
    scale = (Level(1, {"en": "Good", "zh": "好"}), Level(2, {"zh": "差"}))
    assert label(scale, 1, "zh") == "好"
    assert label(scale, 1, "fr") == "Good"
    assert label(scale, 2, "en") == "差"
    with pytest.raises(ValueError):
        label(scale, 3, "en")


def test_is_low_counts_the_lowest_levels():
    assert [is_low(settings(), n) for n in (1, 2, 3, 4)] == [False, False, False, True]
    two = settings({"follow_up_levels": 2})
    assert [is_low(two, n) for n in (1, 2, 3, 4)] == [False, False, True, True]
    assert not any(is_low(settings({"follow_up_levels": 0}), n) for n in (1, 2, 3, 4))


@pytest.mark.parametrize("raw, message", [
    ({"delay": "soon"},
     'inboxd.toml: csat.delay: expected a duration such as "90s", "15m", "4h" or "2d", got "soon"'),
    ({"scale": []}, "inboxd.toml: csat.scale: must list at least two levels, best first, got 0"),
    ({"scale": [{"en": "Good"}, {"en": "good", "zh": "好"}]},
     'inboxd.toml: csat.scale[1].en: duplicate label "good" (also scale[0])'),
    ({"scale": [{"en": "Good", "zh": "好"}, {"en": "Bad", "zh": "好"}]},
     'inboxd.toml: csat.scale[1].zh: duplicate label "好" (also scale[0])'),
    ({"scale": [{"en": "Good"}, {"en": "  "}]}, "inboxd.toml: csat.scale[1].en: must not be empty"),
    ({"scale": [{"en": "Good"}, {}]},
     'inboxd.toml: csat.scale[1]: give a label in at least one language, e.g. en = "Satisfied"'),
    ({"scale": [{"en": "Good"}, {"fr": "Mal"}]}, 'inboxd.toml: csat.scale[1].fr: unknown key "fr"'),
    ({"scale": [{"en": "Good"}, {"en": "2"}]},
     'inboxd.toml: csat.scale[1].en: must be a word, not a number, got "2"'),
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


def variables(language: str) -> dict:
    token = make_token(SECRET, "T-1042", "n1")
    return survey_variables(TICKET, CUSTOMER, MAILBOX, SCALE, language=language,
                            mailbox_address="support@example.com", token=token)


def test_survey_links_answer_their_own_level():
    token = make_token(SECRET, "T-1042", "n1")
    for level in variables("zh")["levels"]:
        link = urlsplit(level["mailto"])
        assert link.scheme == "mailto" and link.path == level["address"]
        assert parse_survey_address(link.path) == (token, level["n"])
        query = parse_qs(link.query)
        assert query["subject"] == [f"[T-1042] {level['n']} {level['label']}"]
        # The prefilled body is itself a valid answer, with no comment.
        assert parse_answer(query["body"][0], SCALE) == Answer(level["n"], "")
        assert "+" not in link.query and " " not in level["mailto"]


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
    for n, word in enumerate(words, start=1):
        assert f"{n}  {word}" in lines or f"{n} {word}" in lines
        # Each link is alone on its line, so a mail client makes it clickable.
        assert values["levels"][n - 1]["mailto"] in lines
    assert "T-1042" in body and "Alice" in body and "Example Support" in body
    assert "{{" not in body and "{%" not in body


def test_zh_template_is_chinese():
    body = SHIPPED.render("csat/body.txt", variables("zh"), language="zh")
    for phrase in ("感谢您联系", "请您对本次服务进行评价", "直接回复数字或文字即可", "1 非常满意"):
        assert phrase in body
    assert unquote(variables("zh")["levels"][0]["mailto"]).endswith("body=1 非常满意\n")
