"""GraphiQL in a real browser (Debian's chromium, driven by Playwright): the app served by
uvicorn on a loopback port, on both backends. The page opens without a token, takes a pasted
token or signs a person in (authorization code + PKCE through the built-in sign-in page), runs
a query and shows its result; every request the browser makes goes to this server.

Chromium comes from `apt-get install -y chromium` (make test installs it); under CI=true a
missing chromium or Playwright fails the run, elsewhere these tests skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.catalog.builders import unique
from tests.conftest import backend_unavailable, make_settings
from tests.corpus import aiid_cases

CHROMIUM = os.environ.get("FAILCAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("FAILCAT_SCREENSHOTS", "/tmp"))
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
RESPONSE = ".graphiql-response .CodeMirror"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    base: str
    app: Any
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def served(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """The whole app under uvicorn, its issuer the loopback port it listens on (so the
    sign-in redirect comes back to it)."""
    import uvicorn

    from services.gateway.app import create_app
    from shared.migrate import upgrade_async

    port = _free_port()
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


def chromium() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not found:
        backend_unavailable(f"chromium is not installed at {CHROMIUM}: apt-get install -y chromium")
    return found


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


async def token_and_case(served: Served) -> tuple[str, str, str]:
    """A client token (cases read and ingest) and one real case ingested with it."""
    auth = served.app.state.auth
    async with served.app.state.db.transaction() as s:
        record, secret = await auth.create_client(
            s, name=f"browser-{secrets.token_hex(3)}", scopes=["cases:read", "cases:ingest"]
        )
    async with httpx.AsyncClient(base_url=served.base) as http:
        resp = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(record.client_id, secret),
        )
        token = resp.json()["access_token"]
        case = unique(aiid_cases(1))[0]
        case["title"] = f"Browser check {secrets.token_hex(4)}: {case['title']}"[:200]
        resp = await http.post(
            "/catalog/v1/cases:bulk", json=[case], headers={"Authorization": f"Bearer {token}"}
        )
        case_id = resp.json()["results"][0]["id"]
    return token, case_id, case["title"]


async def run_query(tab: Any, query: str, expect: str) -> str:
    """Put `query` in GraphiQL's editor, run it with the toolbar's button, return the answer
    once it shows `expect`."""
    await tab.wait_for_selector(QUERY_EDITOR)
    await tab.evaluate(
        "([sel, q]) => document.querySelector(sel).CodeMirror.setValue(q)", [QUERY_EDITOR, query]
    )
    await tab.click(".graphiql-execute-button")
    await tab.wait_for_function(
        "([sel, text]) => { const e = document.querySelector(sel);"
        " return e && e.CodeMirror.getValue().includes(text); }",
        arg=[RESPONSE, expect],
        timeout=15_000,
    )
    return await tab.evaluate("sel => document.querySelector(sel).CodeMirror.getValue()", RESPONSE)


def assert_clean(tab: Any, served: Served) -> None:
    origin = urlsplit(served.base).netloc
    foreign = [u for u in served.requests if urlsplit(u).netloc not in (origin, "")]
    assert not foreign, f"the browser fetched from elsewhere: {foreign}"
    # Expected: 401 answers to queries sent before signing in (chromium logs each), and the
    # /favicon.ico chromium asks for on its own. Nothing else may fail or be blocked (CSP).
    expected = ("status of 401", "favicon", "status of 404")
    problems = [p for p in tab.problems if not any(e in p for e in expected)]
    assert not problems, problems


async def test_paste_a_token_and_run_a_query(page, served, backend):
    token, case_id, title = await token_and_case(served)
    resp = await page.goto(f"{served.base}/graphql")
    assert resp.status == 200
    await page.wait_for_selector(".graphiql-container")
    assert await page.text_content("#failcat-status") == "Not signed in."
    # Without a token a query answers UNAUTHENTICATED, shown in GraphiQL's result pane.
    answer = await run_query(page, "{ severityRubric { grade } }", "UNAUTHENTICATED")
    assert "a bearer token is required" in answer or "UNAUTHENTICATED" in answer
    await page.fill("#failcat-token", token)
    await page.click("#failcat-paste button[type=submit]")
    await page.wait_for_selector("#failcat-sign-out:not([hidden])")
    assert "cases:read" in await page.text_content("#failcat-status")
    assert await page.is_hidden("#failcat-paste")
    answer = await run_query(page, f'{{ case(id: "{case_id}") {{ id title }} }}', case_id)
    assert title in answer.replace('\\"', '"')
    await page.screenshot(path=str(SCREENSHOTS / f"graphiql-token-{backend}.png"))
    assert_clean(page, served)


async def test_sign_in_with_pkce_and_run_a_query(page, served, backend):
    _, case_id, title = await token_and_case(served)
    username, password = f"curator-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    async with served.app.state.db.transaction() as s:
        await served.app.state.auth.create_user(
            s, username=username, password=password, roles=["curator"]
        )
    await page.goto(f"{served.base}/graphql")
    await page.click("#failcat-sign-in")
    # The built-in sign-in page, reached through /oauth/authorize.
    await page.wait_for_url("**/oauth/authorize?**")
    assert "GraphiQL" in await page.content()
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("button[value=allow]")
    # Back on /graphql with a code, which the page exchanges and removes from the address.
    await page.wait_for_selector("#failcat-sign-out:not([hidden])", timeout=15_000)
    assert urlsplit(page.url).query == ""
    status = await page.text_content("#failcat-status")
    assert status.startswith(f"Signed in as {username}") and "cases:write" in status
    assert await page.is_hidden("#failcat-paste") and await page.is_hidden("#failcat-sign-in")
    answer = await run_query(page, f'{{ case(id: "{case_id}") {{ id title }} }}', case_id)
    assert title in answer.replace('\\"', '"')
    await page.screenshot(path=str(SCREENSHOTS / f"graphiql-signed-in-{backend}.png"))
    # Signing out drops the token: the next query is refused again.
    await page.click("#failcat-sign-out")
    await run_query(page, "{ severityRubric { grade } }", "UNAUTHENTICATED")
    assert_clean(page, served)
