"""GraphiQL in a real browser (Debian's chromium, driven by Playwright): the app served by
uvicorn on a loopback port, on both backends. The page opens without a token, takes a pasted
token or signs a person in (authorization code + PKCE through the built-in sign-in page), runs
a query and shows its result; every request the browser makes goes to this server.

Chromium comes from `apt-get install -y chromium` (make test installs it); under CI=true a
missing chromium or Playwright fails the run, elsewhere these tests skip.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.catalog.builders import unique
from tests.corpus import aiid_cases
from tests.gateway.browser import Served

SCREENSHOTS = Path(os.environ.get("FAILCAT_SCREENSHOTS", "/tmp"))
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
RESPONSE = ".graphiql-response .CodeMirror"


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
