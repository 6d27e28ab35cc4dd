"""Severities as the pages show them, in a real browser (fixtures of test_browser): each
severity's badge has its own colour, clearly apart from every other's, its label readable on
it (WCAG AA, 4.5:1), and the label is there (not colour alone)."""

from __future__ import annotations

import itertools
import re
from urllib.parse import quote

from services.gateway.ui.queries import SEVERITIES
from tests.gateway.ui import test_browser
from tests.gateway.ui.test_browser import ARTIFACTS, assert_clean, person, sign_in_at

data = test_browser.data  # the fixture: the same real records, this module's own

MIN_CONTRAST = 4.5  # WCAG AA, normal text (badges are small)
MIN_DISTANCE = 25.0  # CIE76 ΔE between two severities' colours; S1/S2 were 13.8 apart


def rgb(css: str) -> tuple[float, float, float]:
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return r / 255, g / 255, b / 255


def linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(css: str) -> float:
    r, g, b = (linear(c) for c in rgb(css))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def lab(css: str) -> tuple[float, float, float]:
    r, g, b = (linear(c) for c in rgb(css))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def distance(a: str, b: str) -> float:
    return sum((p - q) ** 2 for p, q in zip(lab(a), lab(b), strict=True)) ** 0.5


async def test_each_severity_badge_is_distinct_and_readable(page, served, data, backend):
    username, password = await person(served, data.team, ["viewer"], "restricted")
    await sign_in_at(page, served, f"/ui/search?q={data.scope}&sort=severity", username, password)
    # The badges of the results, as the stylesheet paints them.
    badges = await page.eval_on_selector_all(
        ".hit .sev",
        """els => els.map(e => {
            const s = getComputedStyle(e);
            return [e.textContent.trim(), s.backgroundColor, s.color];
        })""",
    )
    shown = {label: (bg, fg) for label, bg, fg in badges}
    # Sorted by severity, a page of 20 holds the worst ones; the rest are painted the same way.
    missing = [s for s in SEVERITIES if s not in shown]
    painted = await page.evaluate(
        """labels => labels.map(s => {
            const e = document.createElement("span");
            e.className = "sev sev-" + s;
            e.textContent = s;
            document.querySelector("#hits").append(e);
            const c = getComputedStyle(e);
            return [s, c.backgroundColor, c.color];
        })""",
        missing,
    )
    shown |= {label: (bg, fg) for label, bg, fg in painted}
    assert set(shown) == set(SEVERITIES)
    for label, (bg, fg) in shown.items():
        assert contrast(bg, fg) >= MIN_CONTRAST, (label, bg, fg, contrast(bg, fg))
    for a, b in itertools.combinations(SEVERITIES, 2):
        apart = distance(shown[a][0], shown[b][0])
        assert apart >= MIN_DISTANCE, (a, shown[a][0], b, shown[b][0], apart)
    assert_clean(page, served)


async def test_the_dashboard_lists_severities_worst_first(page, served, data, backend):
    username, password = await person(served, data.team, ["viewer"], "restricted")
    # All the S1 and S3 cases, and of the others only version 1.0.0's: counts that are not in
    # severity order (S1 and S3 have the most).
    q = quote(f"{data.scope} AND (severity:S1 OR severity:S3 OR version:1.0.0)")
    await sign_in_at(page, served, f"/ui/?q={q}", username, password)
    counted = [s.strip() for s in await page.locator(".summary-line .sev").all_text_contents()]
    legend = [
        s.strip() for s in await page.locator("#severity-series .legend > span").all_text_contents()
    ][:5]
    assert counted == sorted(counted, key=SEVERITIES.index) and len(counted) >= 4, counted
    assert legend == list(SEVERITIES), legend
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"ui-dashboard-severities-{backend}.png"))
    assert_clean(page, served)
