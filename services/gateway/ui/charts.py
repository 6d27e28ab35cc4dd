"""Charts drawn on the server: SVG for time series, an HTML table for the heatmap. No chart
library and no script: they scale with `viewBox`, print, and read the same in every browser.
Every text that comes from data is escaped here (the result is marked safe for templates).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from markupsafe import Markup

# Severity colours, worst first (S0 .. S4): colour-blind-safe, dark enough for white text.
SEVERITY_COLOURS = {
    "S0": "#7f1d1d",
    "S1": "#c2410c",
    "S2": "#b45309",
    "S3": "#1d4ed8",
    "S4": "#475569",
}
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 180, 36, 22, 8


def bucket_label(value: str, interval: str) -> str:
    """An ISO timestamp as a bucket's label: 2024-03 for months, 2024-03-18 otherwise."""
    if interval == "month":
        return value[:7]
    if interval == "hour":
        return value[:13].replace("T", " ") + "h"
    return value[:10]


def _axis(peak: int) -> str:
    ticks = [0, peak // 2, peak] if peak > 1 else [0, peak]
    plot = HEIGHT - PAD_BOTTOM - PAD_TOP
    parts = []
    for tick in dict.fromkeys(ticks):
        y = PAD_TOP + plot - (plot * tick / peak if peak else 0)
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    return "".join(parts)


def _x_labels(labels: list[str]) -> str:
    """At most ~8 labels along the bottom, evenly spaced, so they never overlap."""
    if not labels:
        return ""
    step = max(1, -(-len(labels) // 8))
    slot = (WIDTH - PAD_LEFT) / len(labels)
    return "".join(
        f'<text x="{PAD_LEFT + slot * (i + 0.5):.1f}" y="{HEIGHT - 6}" '
        f'text-anchor="middle">{escape(label)}</text>'
        for i, label in enumerate(labels)
        if i % step == 0
    )


def stacked_bars(
    series: dict[str, list[dict[str, Any]]],
    interval: str,
    title: str,
    link: Any = None,
) -> Markup:
    """Bars per time bucket, stacked by series (in the order given). `series` maps a name to
    its buckets ({value, count}); `link(name, bucket_value)` may give each bar a URL."""
    keys = sorted({b["value"] for buckets in series.values() for b in buckets})
    if not keys:
        return Markup(f'<p class="empty">No cases to chart for {escape(title.lower())}.</p>')
    counts = {name: {b["value"]: b["count"] for b in bs} for name, bs in series.items()}
    totals = [sum(c.get(k, 0) for c in counts.values()) for k in keys]
    peak = max(totals) or 1
    plot = HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = (WIDTH - PAD_LEFT) / len(keys)
    bar = max(1.0, slot * 0.8)
    shapes = []
    for i, key in enumerate(keys):
        y = PAD_TOP + plot
        for name in series:
            count = counts[name].get(key, 0)
            if not count:
                continue
            h = plot * count / peak
            y -= h
            colour = SEVERITY_COLOURS.get(name, "#2563eb")
            label = f"{bucket_label(key, interval)}: {count} {name}".strip()
            rect = (
                f'<rect x="{PAD_LEFT + slot * i + (slot - bar) / 2:.1f}" y="{y:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(label)}</title></rect>"
            )
            if link is not None:
                rect = f'<a href="{escape(link(name, key))}">{rect}</a>'
            shapes.append(rect)
    labels = [bucket_label(k, interval) for k in keys]
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(title)}</title>{_axis(peak)}{''.join(shapes)}{_x_labels(labels)}</svg>"
    )
    return Markup(svg)


@dataclass
class HeatmapCell:
    count: int
    level: int  # 1..10, the shade class of the cell
    url: str


@dataclass
class Heatmap:
    columns: list[str]
    rows: list[str]
    cells: dict[tuple[str, str], HeatmapCell]
    peak: int


def heatmap(cells: list[dict[str, Any]], url: Any) -> Heatmap:
    """Rows and columns ordered by their totals; `url(x, y)` is where a cell's click goes.
    A cell's shade is its count relative to the largest cell, in ten steps."""
    col_totals: dict[str, int] = {}
    row_totals: dict[str, int] = {}
    for c in cells:
        col_totals[c["x"]] = col_totals.get(c["x"], 0) + c["count"]
        row_totals[c["y"]] = row_totals.get(c["y"], 0) + c["count"]
    peak = max((c["count"] for c in cells), default=0)
    out = {
        (c["y"], c["x"]): HeatmapCell(
            count=c["count"],
            level=max(1, -(-c["count"] * 10 // peak)) if peak else 1,
            url=url(c["x"], c["y"]),
        )
        for c in cells
    }
    return Heatmap(
        columns=sorted(col_totals, key=lambda k: (-col_totals[k], k)),
        rows=sorted(row_totals, key=lambda k: (-row_totals[k], k)),
        cells=out,
        peak=peak,
    )
