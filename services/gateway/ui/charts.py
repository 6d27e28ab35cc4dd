"""Charts drawn on the server: SVG for time series, an HTML table for the heatmap. No chart
library and no script: they scale with `viewBox`, print, and read the same in every browser.
Every text that comes from data is escaped here (the result is marked safe for templates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from markupsafe import Markup

# Severity colours, worst first (S0 .. S4), the same as ui.css's --s0 .. --s4: each apart
# from the others in hue or lightness, each at least 3:1 on the white of a chart.
SEVERITY_COLOURS = {
    "S0": "#7f1d1d",
    "S1": "#dc2626",
    "S2": "#d97706",
    "S3": "#1d4ed8",
    "S4": "#475569",
}
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP, PAD_RIGHT = 960, 220, 40, 24, 8, 8
INTERVAL_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30.44 * 86400}
X_TICKS = 6


def bucket_label(value: str, interval: str) -> str:
    """An ISO timestamp as a bucket's label: 2024-03 for months, 2024-03-18 otherwise."""
    if interval == "month":
        return value[:7]
    if interval == "hour":
        return value[:13].replace("T", " ") + "h"
    return value[:10]


def _when(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _axis(peak: int) -> str:
    ticks = [0, peak // 2, peak] if peak > 1 else [0, peak]
    plot = HEIGHT - PAD_BOTTOM - PAD_TOP
    parts = []
    for tick in dict.fromkeys(ticks):
        y = PAD_TOP + plot - (plot * tick / peak if peak else 0)
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'class="grid"/><text x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{tick}'
            "</text>"
        )
    return "".join(parts)


# Context event kinds as drawn on a time series: a short letter in the marker's flag.
EVENT_LETTERS = {"DEPLOY": "D", "FEATURE_CHANGE": "F", "DRIFT_ALERT": "A", "ENVIRONMENT_SHIFT": "E"}


def stacked_bars(
    series: dict[str, list[dict[str, Any]]],
    interval: str,
    title: str,
    link: Any = None,
    events: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> Markup:
    """Bars per time bucket, stacked by series (in the order given), on a time axis: a bucket
    sits at its date, so empty stretches show as gaps. `series` maps a name to its buckets
    ({value, count}); `link(name, bucket_value)` may give each bar a URL. `events` (context
    events: kind, occurredAt, title) inside the chart's span are drawn as marked lines, so a
    jump in cases can be read against the deploy or the drift alert before it."""
    keys = sorted({b["value"] for buckets in series.values() for b in buckets})
    if not keys:
        return Markup(f'<p class="empty">No cases to chart for {escape(title.lower())}.</p>')
    counts = {name: {b["value"]: b["count"] for b in bs} for name, bs in series.items()}
    totals = [sum(c.get(k, 0) for c in counts.values()) for k in keys]
    peak = max(totals) or 1
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    step = INTERVAL_SECONDS.get(interval, 86400)
    start, end = _when(keys[0]), _when(keys[-1]) + step
    scale = plot_w / (end - start)
    bar = max(1.5, step * scale * 0.85)
    shapes = []
    for key in keys:
        x = PAD_LEFT + (_when(key) - start) * scale
        y = PAD_TOP + plot_h
        for name in series:
            count = counts[name].get(key, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            colour = SEVERITY_COLOURS.get(name, "#2563eb")
            label = f"{bucket_label(key, interval)}: {count} {name}".strip()
            rect = (
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(label)}</title></rect>'
            )
            if link is not None:
                rect = f'<a href="{escape(link(name, key))}">{rect}</a>'
            shapes.append(rect)
    ticks: list[str] = []
    shown: set[str] = set()
    for i in range(X_TICKS + 1):
        moment = start + (end - start) * i / X_TICKS
        text = bucket_label(datetime.fromtimestamp(moment, UTC).isoformat(), interval)
        if text in shown:  # a short span: several ticks fall in one bucket
            continue
        shown.add(text)
        anchor = "start" if i == 0 else "end" if i == X_TICKS else "middle"
        ticks.append(
            f'<text x="{PAD_LEFT + plot_w * i / X_TICKS:.1f}" y="{HEIGHT - 6}" '
            f'text-anchor="{anchor}">{escape(text)}</text>'
        )
    markers = _event_markers(events, start, end, scale)
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{_axis(peak)}{''.join(shapes)}{markers}"
        f"{''.join(ticks)}</svg>"
    )
    return Markup(svg)


def _event_markers(events: Any, start: float, end: float, scale: float) -> str:
    parts = []
    for event in events:
        at = _when(event["occurredAt"])
        if not start <= at <= end:
            continue
        x = PAD_LEFT + (at - start) * scale
        kind = str(event["kind"])
        when = event["occurredAt"][:16].replace("T", " ")
        label = f"{kind.lower().replace('_', ' ')} {when}: {event.get('title') or ''}".strip()
        parts.append(
            f'<g class="event event-{escape(kind.lower())}"><title>{escape(label)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_TOP}" y2="{HEIGHT - PAD_BOTTOM}"/>'
            f'<text x="{x + 2:.1f}" y="{PAD_TOP + 10}">{EVENT_LETTERS.get(kind, "?")}</text></g>'
        )
    return "".join(parts)


@dataclass
class Drift:
    failure_mode: str
    before: float  # the mode's share of the earlier version's cases
    after: float
    before_count: int
    after_count: int

    @property
    def change(self) -> float:
        return self.after - self.before

    @property
    def direction(self) -> str:
        return "up" if self.change > 0 else "down" if self.change < 0 else "flat"


def _version_key(version: str) -> tuple[Any, ...]:
    """1.10.0 after 1.9.0: numbers compare as numbers, anything else as text."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.split("."))


def drift(
    cells: list[dict[str, Any]], before: str | None = None, after: str | None = None
) -> tuple[str | None, str | None, list[Drift]]:
    """Each failure mode's share of a version's cases, from one version to another (the two
    newest by default), largest changes first: the heatmap's own counts, no other query."""
    versions = sorted({c["x"] for c in cells}, key=_version_key)
    if before is None or after is None:
        if len(versions) < 2:
            return None, None, []
        before, after = before or versions[-2], after or versions[-1]
    counts: dict[str, dict[str, int]] = {before: {}, after: {}}
    for c in cells:
        if c["x"] in counts:
            counts[c["x"]][c["y"]] = counts[c["x"]].get(c["y"], 0) + c["count"]
    totals = {v: sum(m.values()) for v, m in counts.items()}
    if not totals[before] or not totals[after]:
        return before, after, []
    rows = [
        Drift(
            mode,
            counts[before].get(mode, 0) / totals[before],
            counts[after].get(mode, 0) / totals[after],
            counts[before].get(mode, 0),
            counts[after].get(mode, 0),
        )
        for mode in set(counts[before]) | set(counts[after])
    ]
    rows.sort(key=lambda d: (-abs(d.change), d.failure_mode))
    return before, after, rows


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
