"""The pages in a real browser (Debian's chromium, driven by Playwright), the app served by
uvicorn on a loopback port, on both backends: sign in through the authorization server's page,
search, pick facets, open a case, a low-clearance person does not see a restricted case, the
dashboard's heatmap leads to the search of a cell. Every page is screenshotted at 1280 and 390
px wide under tests/artifacts/; every request stays on this server, and no page logs an error
(a Content-Security-Policy violation would).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.catalog.builders import unique
from tests.corpus import aiid_cases, avid_cases
from tests.gateway.browser import Served

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
WIDTHS = {"wide": (1280, 800), "narrow": (390, 844)}


class Data:
    source: str
    scope: str
    restricted_id: str
    restricted_title: str
    payload_restricted_id: str
    team: str
    total: int


@pytest.fixture(scope="module")
async def data(served: Served) -> Data:
    """Real AIID and AVID records, one restricted, through the bulk route of this server."""
    auth = served.app.state.auth
    async with served.app.state.db.transaction() as s:
        record, secret = await auth.create_client(
            s, name=f"ui-browser-{secrets.token_hex(3)}", scopes=["admin"], clearance="restricted"
        )
    out = Data()
    out.source = f"ui-{secrets.token_hex(4)}"
    out.scope = f"source:{out.source}"
    out.team = "ui-browser"
    cases = unique(aiid_cases(40) + avid_cases(8))
    for case in cases:
        case["data_source"] = out.source
        case["team"] = out.team
        # A word no line can hold (a URL, a hash, a stack frame): every page must wrap it,
        # not scroll sideways (shoot checks at both widths).
        case["summary"] = f"{case.get('summary') or ''} {'unbroken' * 40}"
    cases[1]["sensitivity"] = "restricted"
    cases[1]["title"] = "Restricted: " + cases[1]["title"]
    # An internal case whose raw payload is restricted: its readers see it, not its input.
    cases[2]["payload_sensitivity"] = "restricted"
    cases[2]["input"] = {"text": "payload only restricted readers may see"}
    async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
        resp = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(record.client_id, secret),
        )
        token = resp.json()["access_token"]
        resp = await http.post(
            "/catalog/v1/cases:bulk", json=cases, headers={"Authorization": f"Bearer {token}"}
        )
        results = resp.json()["results"]
        assert all(r["status"] == "created" for r in results), results
        query = "query($q: String!) { search(query: $q) { total } }"
        for _ in range(300):
            resp = await http.post(
                "/graphql",
                json={"query": query, "variables": {"q": out.scope}},
                headers={"Authorization": f"Bearer {token}"},
            )
            if resp.json()["data"]["search"]["total"] == len(cases):
                break
            await asyncio.sleep(0.1)
    out.payload_restricted_id = results[2]["id"]
    out.restricted_id = results[1]["id"]
    out.restricted_title = cases[1]["title"]
    out.total = len(cases)
    return out


async def person(served: Served, team: str, roles: list[str], clearance: str) -> tuple[str, str]:
    username, password = f"ui-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    async with served.app.state.db.transaction() as s:
        await served.app.state.auth.create_user(
            s, username=username, password=password, roles=roles, team=team, clearance=clearance
        )
    return username, password


async def sign_in_at(tab: Any, served: Served, path: str, username: str, password: str) -> None:
    """Open `path` signed out: the pages send the browser to the sign-in page and back."""
    await tab.goto(served.base + path)
    await tab.wait_for_url("**/oauth/authorize?**")
    assert "failcat web pages" in await tab.content()
    await tab.fill("#username", username)
    await tab.fill("#password", password)
    await tab.click("button[value=allow]")
    await tab.wait_for_url(served.base + path, timeout=15_000)
    assert username in await tab.text_content("#viewer")


async def shoot(tab: Any, name: str, backend: str) -> None:
    """The page as it is, at both widths (full height)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    current = tab.viewport_size
    for label, (width, height) in WIDTHS.items():
        await tab.set_viewport_size({"width": width, "height": height})
        path = ARTIFACTS / f"ui-{name}-{label}-{backend}.png"
        await tab.screenshot(path=str(path), full_page=True)
        # Nothing is wider than the screen, except inside the scrollable containers.
        overflow = await tab.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name} at {width}px scrolls sideways by {overflow}px"
    await tab.set_viewport_size(current)


def assert_clean(tab: Any, served: Served) -> None:
    origin = urlsplit(served.base).netloc
    foreign = [u for u in served.requests if urlsplit(u).netloc not in (origin, "")]
    assert not foreign, f"the browser fetched from elsewhere: {foreign}"
    # Expected: the 400 of the page showing a bad query, the 404 of a case this person may
    # not see (chromium logs each). Nothing else may fail or be blocked (CSP).
    expected = ("status of 400", "status of 404")
    problems = [p for p in tab.problems if not any(e in p for e in expected)]
    assert not problems, problems


async def total(tab: Any) -> int:
    return int((await tab.text_content("#total")).rstrip("+"))


async def test_sign_in_search_pick_facets_open_a_case(page, served, data, backend):
    username, password = await person(served, data.team, ["curator"], "restricted")
    await sign_in_at(page, served, f"/ui/search?q={data.scope}", username, password)
    assert await total(page) == data.total
    assert await page.locator(".hit").count() == 20
    await shoot(page, "search", backend)

    # Pick two severities: each click is a link that puts the choice in the URL.
    await page.click('.facet[data-field=severity] a[data-value="S0"]')
    await page.wait_for_url("**f.severity=S0**")
    s0 = await total(page)
    await page.click('.facet[data-field=severity] a[data-value="S1"]')
    await page.wait_for_url("**f.severity=S1**")
    both = await total(page)
    assert 0 < s0 < both < data.total
    assert parse_qs(urlsplit(page.url).query)["f.severity"] == ["S0", "S1"]
    # The URL is the whole state: opened again (shared), it shows the same.
    shared = page.url
    await page.goto(shared)
    assert await total(page) == both

    # The query box: a bad query shows the API's message with its column, inline.
    await page.fill("#q", f"{data.scope} AND (severity:S0")
    await page.click("#search-form button[type=submit]")
    await page.wait_for_selector("#query-error")
    assert "column" in await page.text_content("#query-error-text")
    await shoot(page, "search-error", backend)

    # Sort by severity and open the first case.
    await page.goto(f"{served.base}/ui/search?q={data.scope}")
    await page.select_option("#sort", "severity")
    await page.wait_for_url("**sort=severity**")
    title = await page.text_content(".hit .title")
    await page.click(".hit .title")
    await page.wait_for_url("**/ui/cases/**")
    assert (await page.text_content("#case-title")).strip() == title.strip()
    assert await page.locator("#history .revision").count() >= 1
    assert await page.is_visible("#group")
    # Similar cases arrive after the page, fetched by its script.
    await page.wait_for_selector("#similar-slot #similar")
    await shoot(page, "case", backend)

    # The dashboard, and a click on a heatmap cell: the search of that cell's cases.
    await page.goto(f"{served.base}/ui/?q={data.scope}")
    await page.wait_for_selector("#heatmap")
    await shoot(page, "dashboard", backend)
    cell = page.locator("#heatmap td a").first
    expected = int(await cell.text_content())
    version, mode = await cell.get_attribute("data-x"), await cell.get_attribute("data-y")
    await cell.click()
    await page.wait_for_url("**/ui/search?**")
    params = parse_qs(urlsplit(page.url).query)
    assert params["f.model_version"] == [version] and params["f.failure_mode"] == [mode]
    assert await total(page) == expected
    await shoot(page, "heatmap-cell", backend)

    # The shareable summaries of the case.
    await page.goto(f"{served.base}/ui/search?q={data.scope}")
    await page.click(".hit .title")
    await page.wait_for_url("**/ui/cases/**")
    await page.click("#summary-html")
    await page.wait_for_url("**/summary.html")
    assert "failcat case summary" in await page.content()
    await shoot(page, "case-summary", backend)
    assert_clean(page, served)


async def test_a_low_clearance_person_does_not_see_the_restricted_case(page, served, data, backend):
    username, password = await person(served, data.team, ["viewer"], "internal")
    await sign_in_at(page, served, f"/ui/search?q={data.scope}", username, password)
    assert await total(page) == data.total - 1
    titles = await page.locator(".hit .title").all_text_contents()
    assert all(not t.startswith("Restricted:") for t in titles)
    resp = await page.goto(f"{served.base}/ui/cases/{data.restricted_id}")
    assert resp.status == 404
    assert data.restricted_title not in await page.content()
    await shoot(page, "not-found", backend)
    # A case they may read whose payload is above them: the fields are marked, not shown.
    resp = await page.goto(f"{served.base}/ui/cases/{data.payload_restricted_id}")
    assert resp.status == 200
    assert await page.is_visible('[data-redacted="input"] .redacted-mark')
    assert "payload only restricted readers may see" not in await page.content()
    await shoot(page, "case-redacted", backend)
    # Signing out revokes the token: the next page asks to sign in again.
    await page.click("#sign-out")
    await page.wait_for_selector("text=Signed out")
    await page.goto(f"{served.base}/ui/search")
    await page.wait_for_url("**/oauth/authorize?**")
    assert_clean(page, served)
    assert re.search(r"failcat web pages", await page.content())


async def test_the_search_page_reads_results_first_and_shows_facets_left_on_a_desktop(
    page, served, data, backend
):
    """Screen readers and the keyboard meet the results before the facets (document order);
    the grid areas keep the facets to the left at 1280 px and put them under the results at
    390 px. A skip link, shown when focused, leads past the results to the facets."""
    username, password = await person(served, data.team, ["viewer"], "restricted")
    await sign_in_at(page, served, f"/ui/search?q={data.scope}", username, password)
    order = await page.evaluate(
        "() => [...document.querySelectorAll('.layout > *')].map(e => e.className)"
    )
    assert order == ["results", "facets"], order
    headings = await page.evaluate(
        "() => [...document.querySelectorAll('h1, h2')].map(h => h.tagName + ' ' + h.textContent)"
    )
    assert headings == ["H1 Search cases", "H2 Results", "H2 Facets"], headings

    async def boxes() -> tuple[dict, dict]:
        return await page.locator(".results").bounding_box(), await page.locator(
            ".facets"
        ).bounding_box()

    for label, (width, height) in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": height})
        results, facets = await boxes()
        if label == "wide":  # side by side, facets on the left, as before
            assert facets["x"] + facets["width"] <= results["x"], (facets, results)
            assert abs(facets["y"] - results["y"]) <= 1, (facets, results)
        else:  # one column, the results first
            assert facets["y"] >= results["y"] + results["height"], (facets, results)
    await page.set_viewport_size({"width": 1280, "height": 800})
    await shoot(page, "search-order", backend)

    # The first Tab after the query form reaches the skip link, shown while focused; it
    # takes the focus to the facets.
    await page.focus("#search-form button[type=submit]")
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.id") == "skip-to-facets"
    assert (await page.locator("#skip-to-facets").bounding_box())["width"] > 20
    await page.screenshot(path=str(ARTIFACTS / f"ui-search-skip-link-{backend}.png"))
    await page.keyboard.press("Enter")
    assert await page.evaluate("() => document.activeElement.id") == "facets"
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.closest('.facets') !== null")
    assert_clean(page, served)
