"""Fixtures shared by the browser tests (GraphiQL, the /ui pages): the whole app under uvicorn
on a loopback port, and Debian's chromium driven by Playwright.

Chromium comes from `apt-get install -y chromium` (make test installs it); under CI=true a
missing chromium or Playwright fails the run, elsewhere these tests skip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import backend_unavailable, make_settings
from tests.gateway.browser import CHROMIUM_ARGS, Served, chromium, free_port


@pytest.fixture(scope="module")
async def served(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """The whole app under uvicorn, its issuer the loopback port it listens on (so the
    sign-in redirect comes back to it)."""
    import uvicorn

    from services.gateway.app import create_app
    from shared.migrate import upgrade_async

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = await make_settings(backend, tmp_path_factory.mktemp("browser"), issuer=base)
    await upgrade_async(settings.catalog_url)
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(300):
        if server.started:
            break
        if task.done():
            task.result()  # raises what stopped the server
        await asyncio.sleep(0.05)
    try:
        yield Served(base, app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        backend_unavailable("Playwright is not installed: pip install -e '.[dev]'")
    executable = chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Any, served: Served) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("request", lambda r: served.requests.append(r.url))
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    tab.problems = problems
    try:
        yield tab
    finally:
        await context.close()
