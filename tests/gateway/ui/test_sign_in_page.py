"""The sign-in (consent) page the pages send a person to, in a real browser on a phone
(390 px): it fits the screen (nothing scrolls sideways) and says what each scope allows."""

from __future__ import annotations

from services.auth.pages import SCOPE_DESCRIPTIONS
from shared.security import Scope
from tests.gateway.ui.test_browser import ARTIFACTS


async def test_the_sign_in_page_fits_a_phone(page, served, backend):
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(served.base + "/ui/search")
    await page.wait_for_url("**/oauth/authorize?**")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"ui-sign-in-phone-{backend}.png"), full_page=True)
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the sign-in page scrolls sideways by {overflow}px"
    for field in ("#username", "#password"):
        box = await page.locator(field).bounding_box()
        assert box["x"] + box["width"] <= 390, (field, box)
    assert SCOPE_DESCRIPTIONS[Scope.CASES_READ] in await page.text_content("ul")
