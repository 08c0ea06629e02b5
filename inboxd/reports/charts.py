"""Draw the weekly report's charts as small PNGs (matplotlib, Agg backend, no display needed).

Each chart is about 600x250 pixels, light on ink so it reads well in a mail
client.  Labels are dates, numbers and English words; customer-provided text
(tags, names, which may be Chinese) never goes into a chart, so no CJK font is
needed, though one is preferred when installed.  PNG metadata carries no
timestamp or version, so the same numbers give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402 - the backend must be chosen first.
from matplotlib.figure import Figure  # noqa: E402

WIDTH_IN, HEIGHT_IN, DPI = 6.0, 2.5, 100
BLUE, GREEN, ORANGE, GREY = "#2563eb", "#16a34a", "#ea580c", "#6b7280"
# Preferred families, first found wins; DejaVu Sans ships with matplotlib.
_FAMILIES = ("Noto Sans CJK SC", "Noto Sans", "DejaVu Sans")


def _font_family() -> list[str]:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return [name for name in _FAMILIES if name in installed] or ["DejaVu Sans"]


def _figure(title: str) -> tuple[Figure, object]:
    # A bare Figure (not pyplot) keeps no global state between charts or threads.
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10, loc="left", color="#111827", family=_font_family())
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
               *, percent: bool = False) -> bytes:
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
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color=GREY)
    return _png(fig)


def _short_dates(days: Sequence[str]) -> list[str]:
    """ "2026-11-23" -> "11-23"; with many days, only every few are labelled."""
    step = max(1, len(days) // 10)
    return [d[5:] if i % step == 0 else "" for i, d in enumerate(days)]


def report_charts(report: dict, csat_trend: Sequence[dict]) -> dict[str, tuple[str, bytes]]:
    """The four charts of the weekly mail: name -> (Content-ID without <>, PNG bytes)."""
    days = [row["date"] for row in report["daily"]]
    labels = _short_dates(days)
    buckets = report["first_response"]["histogram"]
    charts = {
        "volume": bar_chart("New tickets per day", labels, [row["created"] for row in report["daily"]]),
        "first_response": bar_chart("Time to first response (tickets)", list(buckets), list(buckets.values()),
                                    color=ORANGE),
        "csat": line_chart("CSAT score per week (top two levels)",
                           [row["week_start"][5:] for row in csat_trend],
                           [row["score"] for row in csat_trend], percent=True),
        "backlog": line_chart("Open tickets at the end of each day", labels,
                              [row["backlog"] for row in report["daily"]], color=BLUE),
    }
    return {name: (f"chart-{name}@inboxd.report", png) for name, png in charts.items()}
