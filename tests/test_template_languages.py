"""Every language's copy of a template says the same things: the translations cannot drift apart.

A section added to the English weekly report, or a variable added to an
alert, must reach the Chinese copies too; check-config only proves that each
copy renders, not that it shows everything.  So each template that exists in
English must exist in zh and zh-Hant, and read at least the data the English
one reads (every dotted variable path); a translation may add more, such as
the ticket tag Chinese mail repeats in its footer.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LANGUAGES = ("zh", "zh-Hant")
# A variable path as templates read it: fmt.csat.score, ticket.id, level.mailto.
_PATH = re.compile(r"\b([a-z_]+(?:\.[a-z_]+)+)\b")
_TAGS = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)


def _english() -> list[Path]:
    return sorted(p.relative_to(TEMPLATES / "en") for p in (TEMPLATES / "en").rglob("*") if p.is_file())


def _paths(text: str) -> set[str]:
    used = set()
    for expression, statement in _TAGS.findall(text):
        used |= set(_PATH.findall(expression or statement))
    return used


def test_there_are_english_templates_to_compare() -> None:
    names = {str(p) for p in _english()}
    assert {"ack/body.txt", "report/body.html", "notification/body.txt", "digest/body.txt"} <= names


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", [str(p) for p in _english()])
def test_each_language_has_the_template_and_reads_what_english_reads(language: str, name: str) -> None:
    english = (TEMPLATES / "en" / name).read_text()
    translated = TEMPLATES / language / name
    assert translated.is_file(), f"{language}/{name} is missing"
    assert _paths(english) - _paths(translated.read_text()) == set()
