"""Draw the weekly report's charts as small PNGs (matplotlib, Agg backend, no display needed).

Each chart is about 600x250 pixels, light on ink so it reads well in a mail
client.  Titles are in the reader's language (en, zh, zh-Hant), so the text
needs a CJK font: one that a Debian package installs (Noto Sans CJK from
fonts-noto-cjk, WenQuanYi Zen Hei from fonts-wqy-zenhei, which
scripts/bootstrap installs) is found by its path or through fontconfig and
put before DejaVu Sans, which ships with matplotlib and covers the Latin
text.  Without one, Chinese titles would be empty boxes: the charts are then
drawn in English and a warning is logged once.  PNG metadata carries no
timestamp or version, so the same numbers give the same bytes.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402 - the backend must be chosen first.
from matplotlib.figure import Figure  # noqa: E402

log = logging.getLogger("inboxd.reports.charts")

WIDTH_IN, HEIGHT_IN, DPI = 6.0, 2.5, 100
BLUE, GREEN, ORANGE, GREY = "#2563eb", "#16a34a", "#ea580c", "#6b7280"
# Where Debian's CJK font packages put their files, best first.
CJK_FONT_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
# Characters every CJK font we accept must draw: the chart titles' own.
_PROBE = "新工单每天首次响应時間满意度週"

# The charts' titles, by language.
TITLES = {
    "en": {"volume": "New tickets per day", "first_response": "Time to first response (tickets)",
           "csat": "CSAT score per week (top two levels)", "backlog": "Open tickets at the end of each day",
           "no_data": "no data"},
    "zh": {"volume": "每日新建工单", "first_response": "首次响应时长（工单数）",
           "csat": "每周满意度（前两级占比）", "backlog": "每日结束时的未结工单", "no_data": "暂无数据"},
    "zh-Hant": {"volume": "每日新建工單", "first_response": "首次回應時長（工單數）",
                "csat": "每週滿意度（前兩級佔比）", "backlog": "每日結束時的未結工單", "no_data": "暫無資料"},
}


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of an installed CJK font, registered with matplotlib; None if there is none."""
    for path in (*CJK_FONT_FILES, *_fontconfig_files()):
        if not Path(path).is_file():
            continue
        try:
            font_manager.fontManager.addfont(path)
            name = font_manager.FontProperties(fname=path).get_name()
        except Exception:  # An unreadable font file: try the next one.
            log.debug("cannot load font %s", path, exc_info=True)
            continue
        if covers(path, _PROBE):
            return name
    log.warning("no CJK font found (install fonts-noto-cjk or fonts-wqy-zenhei): report charts are drawn in English")
    return None


def _fontconfig_files() -> list[str]:
    """Fonts fontconfig knows for Chinese, when fc-match is installed."""
    if shutil.which("fc-match") is None:
        return []
    try:
        done = subprocess.run(["fc-match", "-s", "-f", "%{file}\n", ":lang=zh-cn"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in done.stdout.splitlines() if line.endswith((".ttf", ".otf", ".ttc"))][:20]


def covers(path: str, text: str) -> bool:
    """Whether the font file at `path` has a glyph for every character of `text`."""
    from matplotlib.ft2font import FT2Font

    font = FT2Font(path)
    return all(font.get_char_index(ord(char)) for char in text if not char.isspace())


def _font(text: str) -> dict:
    """The text properties for `text`: DejaVu Sans for ASCII; else the CJK font alone
    (it draws Latin letters and digits too; a fallback list makes matplotlib warn about
    each member's weights), at the weight it has."""
    cjk = None if text.isascii() else cjk_font()
    if cjk is None:
        return {"family": ["DejaVu Sans"]}
    weight = next((f.weight for f in font_manager.fontManager.ttflist if f.name == cjk), "normal")
    return {"family": [cjk], "weight": weight}


def chart_language(language: str) -> str:
    """The language the charts can be drawn in: the reader's, unless no font can draw it."""
    if language not in TITLES:
        return "en"
    return language if language == "en" or cjk_font() else "en"


def _figure(title: str) -> tuple[Figure, object]:
    # A bare Figure (not pyplot) keeps no global state between charts or threads.
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10, loc="left", color="#111827", **_font(title))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8, colors="#374151")
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], color: str = BLUE) -> bytes:
    fig, ax = _figure(title)
    ax.bar(range(len(values)), values, color=color, width=0.7)
    ax.set_xticks(range(len(labels)), labels)
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def line_chart(title: str, labels: Sequence[str], values: Sequence[float | None], color: str = GREEN,
               *, percent: bool = False, no_data: str = "no data") -> bytes:
    fig, ax = _figure(title)
    xs = [i for i, v in enumerate(values) if v is not None]
    ys = [values[i] * (100 if percent else 1) for i in xs]
    ax.plot(xs, ys, color=color, marker="o", markersize=3, linewidth=1.6)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    if percent:
        ax.set_ylim(0, 105)
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0f}%")
    else:
        ax.set_ylim(bottom=0)
        ax.yaxis.get_major_locator().set_params(integer=True)
    if not xs:
        ax.text(0.5, 0.5, no_data, transform=ax.transAxes, ha="center", color=GREY, **_font(no_data))
    return _png(fig)


def _short_dates(days: Sequence[str]) -> list[str]:
    """ "2026-11-23" -> "11-23"; with many days, only every few are labelled."""
    step = max(1, len(days) // 10)
    return [d[5:] if i % step == 0 else "" for i, d in enumerate(days)]


def report_charts(report: dict, csat_trend: Sequence[dict], language: str = "en") -> dict[str, tuple[str, bytes]]:
    """The four charts of the weekly mail, titled in `language`: name -> (Content-ID without <>, PNG bytes)."""
    language = chart_language(language)
    title = TITLES[language]
    days = [row["date"] for row in report["daily"]]
    labels = _short_dates(days)
    buckets = report["first_response"]["histogram"]
    charts = {
        "volume": bar_chart(title["volume"], labels, [row["created"] for row in report["daily"]]),
        "first_response": bar_chart(title["first_response"], list(buckets), list(buckets.values()), color=ORANGE),
        "csat": line_chart(title["csat"], [row["week_start"][5:] for row in csat_trend],
                           [row["score"] for row in csat_trend], percent=True, no_data=title["no_data"]),
        "backlog": line_chart(title["backlog"], labels, [row["backlog"] for row in report["daily"]], color=BLUE,
                              no_data=title["no_data"]),
    }
    # The same Content-IDs in every language: the templates refer to them by name.
    return {name: (f"chart-{name}@inboxd.report", png) for name, png in charts.items()}
