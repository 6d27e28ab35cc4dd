"""The server-drawn charts: bars on a time axis (a gap shows as a gap), escaped text, ticks
that do not repeat, and the heatmap's shading and links."""

from __future__ import annotations

import re

from services.gateway.ui import charts, views


def bar_positions(svg: str) -> list[float]:
    return [float(x) for x in re.findall(r'<rect x="([\d.]+)"', svg)]


def test_bars_sit_at_their_dates():
    buckets = [
        {"value": "2020-01-01T00:00:00.000Z", "count": 2},
        {"value": "2020-02-01T00:00:00.000Z", "count": 1},
        {"value": "2024-01-01T00:00:00.000Z", "count": 4},
    ]
    svg = str(charts.stacked_bars({"": buckets}, "month", "Cases"))
    first, second, third = bar_positions(svg)
    # A month apart versus four years apart: the gap is drawn, not collapsed.
    assert (third - second) > 30 * (second - first)
    labels = re.findall(r'text-anchor="(?:start|middle|end)">([^<]+)</text>', svg)
    assert len(labels) == len(set(labels))


def test_stacks_follow_the_series_order_and_text_is_escaped():
    series = {
        "S0": [{"value": "2024-01-01T00:00:00Z", "count": 1}],
        "S3": [{"value": "2024-01-01T00:00:00Z", "count": 3}],
    }
    svg = str(charts.stacked_bars(series, "day", "<b>x</b>", link=lambda s, _v: f"/s?{s}&a"))
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert 'href="/s?S0&amp;a"' in svg
    bars = re.findall(r'y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="(#[0-9a-f]+)"', svg)
    (s0_y, s0_h, s0_fill), (s3_y, s3_h, s3_fill) = bars
    assert (s0_fill, s3_fill) == (charts.SEVERITY_COLOURS["S0"], charts.SEVERITY_COLOURS["S3"])
    # S0 at the bottom, S3 stacked on it, three times as tall.
    assert float(s3_y) < float(s0_y) and abs(float(s3_h) - 3 * float(s0_h)) < 0.5
    assert "No cases" in str(charts.stacked_bars({"": []}, "day", "Cases"))


def test_heatmap_orders_by_totals_and_shades_relative_to_the_largest_cell():
    cells = [
        {"x": "1.0", "y": "a", "count": 10},
        {"x": "2.0", "y": "a", "count": 1},
        {"x": "2.0", "y": "b", "count": 5},
    ]
    heat = charts.heatmap(cells, lambda x, y: f"/ui/search?v={x}&m={y}")
    assert heat.rows == ["a", "b"] and heat.columns == ["1.0", "2.0"]
    assert heat.cells[("a", "1.0")].level == 10
    assert heat.cells[("b", "2.0")].level == 5
    assert heat.cells[("a", "2.0")].level == 1
    assert heat.cells[("b", "2.0")].url == "/ui/search?v=2.0&m=b"


def test_snippets_keep_only_their_marks():
    marked = str(views.snippet("a <em>fraud</em> &lt;script&gt; <b>x</b>"))
    assert marked == "a <mark>fraud</mark> &lt;script&gt; &lt;b&gt;x&lt;/b&gt;"
    assert str(views.snippet("<em>open")) == "<mark>open</mark>"


def test_long_changes_are_word_diffs():
    rows = views.change_rows(
        {
            "status": {"old": "NEW", "new": "TRIAGED"},
            "summary": {"old": "the model " * 10 + "failed", "new": "the model " * 10 + "broke"},
        }
    )
    assert rows[0]["field"] == "status" and rows[0]["diff"] is None
    assert "<del>failed</del><ins>broke</ins>" in str(rows[1]["diff"])


def test_a_bucket_is_a_range_of_whole_days():
    from services.gateway.ui.state import bucket_query

    assert bucket_query("2024-02-01T00:00:00.000Z", "month") == "occurred:2024-02-01..2024-02-29"
    assert bucket_query("2024-03-18T00:00:00Z", "week") == "occurred:2024-03-18..2024-03-24"
    assert bucket_query("2024-03-18T00:00:00Z", "day") == "occurred:2024-03-18..2024-03-18"
    assert bucket_query("2024-03-18T10:00:00Z", "hour") == (
        "occurred:2024-03-18T10:00:00Z..2024-03-18T10:59:59.999Z"
    )


def test_context_events_are_marked_where_they_happened_and_outside_ones_left_out():
    buckets = [
        {"value": "2024-01-01T00:00:00.000Z", "count": 2},
        {"value": "2024-03-01T00:00:00.000Z", "count": 5},
    ]
    events = [
        {"kind": "DEPLOY", "occurredAt": "2024-02-15T12:00:00Z", "title": "fraud <v2> rollout"},
        {"kind": "DRIFT_ALERT", "occurredAt": "2024-01-10T00:00:00Z", "title": "psi 0.3"},
        {"kind": "DEPLOY", "occurredAt": "2019-01-01T00:00:00Z", "title": "long before"},
    ]
    svg = str(charts.stacked_bars({"": buckets}, "month", "Cases", events=events))
    mark = r'<g class="event event-([a-z_]+)"><title>([^<]*)</title><line x1="([\d.]+)"'
    marks = re.findall(mark, svg)
    kinds = {kind: float(x) for kind, _, x in marks}
    assert set(kinds) == {"deploy", "drift_alert"}  # the 2019 deploy is outside the span
    assert kinds["drift_alert"] < kinds["deploy"]  # January before mid-February
    assert "fraud &lt;v2&gt; rollout" in svg and "<v2>" not in svg


def test_drift_compares_each_modes_share_between_two_versions():
    cells = [
        {"x": "1.9.0", "y": "ocr.misread", "count": 30},
        {"x": "1.9.0", "y": "bias.gender", "count": 10},
        {"x": "1.10.0", "y": "ocr.misread", "count": 10},
        {"x": "1.10.0", "y": "bias.gender", "count": 30},
        {"x": "1.2.0", "y": "ocr.misread", "count": 99},
    ]
    before, after, rows = charts.drift(cells)
    # Versions compare as numbers: 1.10.0 is the newest, 1.9.0 the one before it.
    assert (before, after) == ("1.9.0", "1.10.0")
    by_mode = {d.failure_mode: d for d in rows}
    assert by_mode["bias.gender"].direction == "up"
    assert abs(by_mode["bias.gender"].change - 0.5) < 1e-9  # 25% -> 75%
    assert by_mode["ocr.misread"].direction == "down"
    chosen = charts.drift(cells, "1.2.0", "1.9.0")
    assert chosen[:2] == ("1.2.0", "1.9.0")
    assert {d.failure_mode: round(d.after, 2) for d in chosen[2]} == {
        "ocr.misread": 0.75,
        "bias.gender": 0.25,
    }
    assert charts.drift(cells[:2]) == (None, None, [])  # one version: nothing to compare
