"""The search and dashboard pages by keyboard, in a real browser (fixtures of test_browser):
arrow keys on a select that submits its form look through the options without leaving the
page, Enter or leaving the list applies the choice; without the script the form's button
does. Space on a focused facet value toggles it exactly as a click does."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.gateway.ui import test_browser
from tests.gateway.ui.test_browser import assert_clean, person, sign_in_at, total

data = test_browser.data  # the fixture: the same real records, this module's own


def params(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


async def test_arrow_keys_on_the_sort_select_stay_on_the_page(page, served, data, backend):
    username, password = await person(served, data.team, ["viewer"], "restricted")
    await sign_in_at(page, served, f"/ui/search?q={data.scope}", username, password)
    before = page.url
    await page.focus("#sort")
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowDown")
    await page.wait_for_timeout(300)  # a navigation would have started by now
    assert page.url == before
    chosen = await page.eval_on_selector("#sort", "s => s.value")
    assert chosen != "relevance"
    # Enter applies the option the keys reached.
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**sort={chosen}**")
    assert params(page)["sort"] == [chosen]
    assert await total(page) == data.total

    # Leaving the list after the arrows applies it too.
    await page.focus("#sort")
    await page.keyboard.press("ArrowUp")
    await page.wait_for_timeout(300)
    assert params(page)["sort"] == [chosen]
    again = await page.eval_on_selector("#sort", "s => s.value")
    await page.keyboard.press("Tab")
    await page.wait_for_url(f"**sort={again}**")

    # A choice by the pointer (select_option is the open list's pick) submits at once.
    await page.select_option("#sort", "severity")
    await page.wait_for_url("**sort=severity**")

    # The dashboard's interval select: the same.
    await page.goto(f"{served.base}/ui/?q={data.scope}")
    dashboard = page.url
    await page.focus("select[name=interval]")
    await page.keyboard.press("ArrowUp")
    await page.wait_for_timeout(300)
    assert page.url == dashboard
    interval = await page.eval_on_selector("select[name=interval]", "s => s.value")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**interval={interval}**")
    assert_clean(page, served)


async def test_without_the_script_the_button_applies_the_sort(browser, served, data, backend):
    username, password = await person(served, data.team, ["viewer"], "restricted")
    context = await browser.new_context(java_script_enabled=False)
    try:
        tab = await context.new_page()
        await sign_in_at(tab, served, f"/ui/search?q={data.scope}", username, password)
        await tab.select_option("#sort", "severity")
        await tab.click("#search-form button[type=submit]")
        await tab.wait_for_url("**sort=severity**")
        assert await total(tab) == data.total
    finally:
        await context.close()


async def test_space_on_a_facet_value_toggles_it_once(page, served, data, backend):
    username, password = await person(served, data.team, ["viewer"], "restricted")
    await sign_in_at(page, served, f"/ui/search?q={data.scope}", username, password)
    s0 = '.facet[data-field=severity] a[data-value="S0"]'
    assert await page.get_attribute(s0, "aria-checked") == "false"
    scrolled = await page.evaluate("window.scrollY")
    await page.focus(s0)
    await page.keyboard.press("Space")
    await page.wait_for_url("**f.severity=S0**")
    assert params(page)["f.severity"] == ["S0"]
    assert await page.get_attribute(s0, "aria-checked") == "true"
    assert await total(page) < data.total
    # Space again unchecks it, as a second click does.
    await page.focus(s0)
    await page.keyboard.press("Space")
    await page.wait_for_function("() => !location.search.includes('f.severity')")
    assert await page.get_attribute(s0, "aria-checked") == "false"
    assert await total(page) == data.total
    assert await page.evaluate("window.scrollY") == scrolled
    assert_clean(page, served)
