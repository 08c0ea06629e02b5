"""The weekly report's charts draw Chinese titles with a font that has the glyphs (no tofu boxes).

matplotlib warns "Glyph ... missing from font(s)" for every character its
font cannot draw; the first test shows that check catches tofu (DejaVu Sans
has no Chinese), the others that the charts inboxd draws never trigger it
and that the font matplotlib resolves for them covers every character.
"""

from __future__ import annotations

import logging
import warnings

import pytest
from matplotlib import font_manager

from inboxd.reports import charts

needs_cjk = pytest.mark.skipif(charts.cjk_font() is None,
                               reason="no CJK font installed (scripts/bootstrap installs fonts-wqy-zenhei)")


def drawn(draw) -> tuple[bytes, list[str]]:
    """(PNG, the warnings drawing it raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = draw()
    return png, [str(w.message) for w in caught]


def report(days: int = 7) -> dict:
    daily = [{"date": f"2026-11-{23 + i:02d}", "created": i, "backlog": 10 - i} for i in range(days)]
    histogram = {"<1h": 3, "1-4h": 2, "4-8h": 0, "8-24h": 1, "1-3d": 0, ">3d": 0}
    return {"daily": daily, "first_response": {"histogram": histogram}}


TREND = [{"week_start": "2026-11-09", "score": 0.5}, {"week_start": "2026-11-16", "score": None},
         {"week_start": "2026-11-23", "score": 0.75}]


def test_the_glyph_check_catches_tofu():
    # Chinese in DejaVu Sans alone: the warning the other tests must never see.
    def tofu():
        fig, ax = charts._figure("Tickets")
        ax.set_title("每日新建工单", family=["DejaVu Sans"])
        return charts._png(fig)

    _, messages = drawn(tofu)
    assert any("missing from font" in m for m in messages), messages


@needs_cjk
@pytest.mark.parametrize("language", ["zh", "zh-Hant"])
def test_chinese_charts_draw_every_glyph(language):
    images, messages = drawn(lambda: charts.report_charts(report(), TREND, language))
    assert not [m for m in messages if "missing from font" in m], messages
    assert set(images) == {"volume", "first_response", "csat", "backlog"}
    assert all(png.startswith(b"\x89PNG") for _cid, png in images.values())
    # The font matplotlib resolves for the titles has every character of them.
    props = font_manager.FontProperties(**charts._font(charts.TITLES[language]["volume"]))
    path = font_manager.findfont(props, fallback_to_default=False)
    text = "".join(charts.TITLES[language].values())
    assert charts.covers(path, text), path
    # And it is a CJK font, not DejaVu Sans (which would have drawn boxes).
    assert not charts.covers(font_manager.findfont("DejaVu Sans"), "工单")


@needs_cjk
def test_titles_follow_the_language_and_english_stays_in_dejavu():
    zh = charts.report_charts(report(), TREND, "zh")
    en = charts.report_charts(report(), TREND, "en")
    assert zh["volume"][0] == en["volume"][0] == "chart-volume@inboxd.report"
    assert zh["volume"][1] != en["volume"][1]
    assert charts._font(charts.TITLES["en"]["volume"]) == {"family": ["DejaVu Sans"]}
    # The same numbers give the same bytes.
    assert charts.report_charts(report(), TREND, "zh")["csat"][1] == zh["csat"][1]


def test_without_a_cjk_font_the_charts_fall_back_to_english(monkeypatch, caplog):
    monkeypatch.setattr(charts, "CJK_FONT_FILES", ())
    monkeypatch.setattr(charts, "_fontconfig_files", lambda: [])
    charts.cjk_font.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="inboxd.reports.charts"):
            assert charts.chart_language("zh") == "en"
            images, messages = drawn(lambda: charts.report_charts(report(), TREND, "zh"))
        assert "no CJK font found" in caplog.text
        assert not [m for m in messages if "missing from font" in m], messages
        assert images["volume"][1] == charts.report_charts(report(), TREND, "en")["volume"][1]
    finally:
        charts.cjk_font.cache_clear()
