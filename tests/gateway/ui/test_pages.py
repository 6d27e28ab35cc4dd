"""The web pages over HTTP, on both backends: sign-in (authorization code + PKCE with the
pages' public client), then each page as the signed-in person sees it, through the API with
their own token (a low-clearance person never sees a restricted case)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx

from services.gateway.ui.signin import FLOW_COOKIE, REFRESH_COOKIE, TOKEN_COOKIE, UI_CLIENT_ID
from tests.auth.builders import make_user, query_of, sign_in
from tests.gateway.ui.conftest import gql_data

HIT_ID = re.compile(r'class="hit" data-id="([^"]+)"')


def hit_ids(html: str) -> list[str]:
    return HIT_ID.findall(html)


async def test_a_page_without_a_token_sends_to_sign_in(app, settings):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=settings.issuer
    ) as http:
        resp = await http.get("/ui/search", params={"q": "severity:S0"})
        assert resp.status_code == 303
        assert resp.headers["location"] == "/ui/signin?next=%2Fui%2Fsearch%3Fq%3Dseverity%253AS0"
        resp = await http.get("/ui/signin", params={"next": "/ui/search?q=x"})
        assert resp.status_code == 303
        target = urlsplit(resp.headers["location"])
        params = parse_qs(target.query)
        assert target.path == "/oauth/authorize"
        assert params["client_id"] == [UI_CLIENT_ID]
        assert params["code_challenge_method"] == ["S256"] and params["code_challenge"]
        assert params["redirect_uri"] == [f"{settings.issuer}/ui/callback"]
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith(f"{FLOW_COOKIE}=") and "HttpOnly" in cookie
        assert "Path=/ui/callback" in cookie


async def test_sign_in_with_pkce_sets_an_http_only_token_cookie(app, settings, corpus):
    username, password = await make_user(app, ["viewer"], team=corpus.team)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=settings.issuer
    ) as http:
        start = await http.get("/ui/signin", params={"next": "/ui/cases/abc"})
        back = await sign_in(http, query_of(start.headers["location"]), username, password)
        assert back.headers["location"].startswith(f"{settings.issuer}/ui/callback?")
        done = await http.get(back.headers["location"])
        assert done.status_code == 303 and done.headers["location"] == "/ui/cases/abc"
        cookie = [c for c in done.headers.get_list("set-cookie") if c.startswith(TOKEN_COOKIE)]
        assert cookie and "HttpOnly" in cookie[0] and "Path=/ui" in cookie[0]
        assert "samesite=lax" in cookie[0].lower()
        page = await http.get("/ui/search")
        assert page.status_code == 200 and username in page.text
        # The code is single-use: replaying the callback fails (the flow cookie is gone too).
        again = await http.get(back.headers["location"])
        assert again.status_code == 400 and "sign-in" in again.text.lower()
        # Signing out revokes the token: the cookie is dropped and the token stops working.
        token = http.cookies.get(TOKEN_COOKIE)
        out = await http.post("/ui/signout")
        assert out.status_code == 303 and out.headers["location"] == "/ui/signout"
        page = await http.get(out.headers["location"])  # a reload does not post again
        assert page.status_code == 200 and "You are signed out" in page.text
        assert (await http.get("/ui/search")).status_code == 303
        answer = await http.post(
            "/graphql",
            json={"query": "{ severityRubric { grade } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 401


async def test_signing_in_from_a_sign_in_flow_page_lands_on_the_dashboard(app, settings, corpus):
    """The header's "Sign in" link names the page it is on as `next`: on "Signed out" (a
    POST-only target before) or "Sign-in failed" (the callback), coming back there would
    fail, so sign-in lands on the dashboard instead."""
    username, password = await make_user(app, ["viewer"], team=corpus.team)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=settings.issuer
    ) as http:
        for flow_page in ("/ui/signout", "/ui/callback", "/ui/signin?next=/ui/search"):
            start = await http.get("/ui/signin", params={"next": flow_page})
            back = await sign_in(http, query_of(start.headers["location"]), username, password)
            done = await http.get(back.headers["location"])
            assert done.status_code == 303 and done.headers["location"] == "/ui/", flow_page
            assert (await http.get(done.headers["location"])).status_code == 200


async def test_an_unknown_page_is_the_styled_error_page(app, settings):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=settings.issuer
    ) as http:
        resp = await http.get("/ui/no-such-page")
        assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html")
        assert "<title>Not found · failcat</title>" in resp.text
        assert "/ui/no-such-page" in resp.text
        resp = await http.put("/ui/search")
        assert resp.status_code == 405 and "<h1>Not a page</h1>" in resp.text
        # The API's paths keep their JSON answers.
        resp = await http.get("/catalog/v1/no-such-route")
        assert resp.status_code == 404 and resp.json()["detail"] == "Not Found"


async def test_an_expired_access_token_is_renewed_with_the_refresh_token(app, settings, corpus):
    username, password = await make_user(app, ["viewer"], team=corpus.team)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=settings.issuer
    ) as http:
        start = await http.get("/ui/signin")
        back = await sign_in(http, query_of(start.headers["location"]), username, password)
        await http.get(back.headers["location"])
        first, refresh = http.cookies.get(TOKEN_COOKIE), http.cookies.get(REFRESH_COOKIE)
        assert first and refresh
        # The browser dropped the access cookie (its max-age is the token's lifetime).
        http.cookies.delete(TOKEN_COOKIE)
        resp = await http.get("/ui/search", params={"q": "x"})
        assert resp.status_code == 303
        assert resp.headers["location"] == "/ui/refresh?next=%2Fui%2Fsearch%3Fq%3Dx"
        resp = await http.get(resp.headers["location"])
        assert resp.status_code == 303 and resp.headers["location"] == "/ui/search?q=x"
        assert http.cookies.get(TOKEN_COOKIE) not in (None, first)
        assert http.cookies.get(REFRESH_COOKIE) != refresh  # rotated
        assert (await http.get("/ui/search", params={"q": "x"})).status_code == 200
        # A refresh token used once is refused: back to the sign-in page, cookie dropped.
        http.cookies.delete(TOKEN_COOKIE)
        http.cookies.set(REFRESH_COOKIE, refresh, path="/ui")
        resp = await http.get("/ui/refresh", params={"next": "/ui/"})
        assert resp.headers["location"] == "/ui/signin?next=%2Fui%2F"


async def test_a_callback_from_another_browser_is_refused(app, settings, corpus):
    username, password = await make_user(app, ["viewer"], team=corpus.team)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as b,
    ):
        start = await a.get("/ui/signin")
        back = await sign_in(a, query_of(start.headers["location"]), username, password)
        # Another browser (no flow cookie) cannot finish this sign-in: login CSRF.
        resp = await b.get(back.headers["location"])
        assert resp.status_code == 400
        assert TOKEN_COOKIE not in b.cookies
        # An absolute `next` is never followed (open redirect).
        start = await a.get("/ui/signin", params={"next": "https://evil.example/"})
        back = await sign_in(a, query_of(start.headers["location"]), username, password)
        done = await a.get(back.headers["location"])
        assert done.headers["location"] == "/ui/"


async def test_search_page_facets_highlights_sort_and_pages(curator, corpus):
    http = curator.http
    resp = await http.get("/ui/search", params={"q": corpus.scope})
    assert resp.status_code == 200
    html = resp.text
    assert f">{len(corpus.ids)}</strong> cases" in html
    assert len(hit_ids(html)) == 20
    # Facet counts: the AIID cases cycle S0..S4, the AVID ones have none.
    assert re.search(r'data-value="S0"[^>]*>.*?<span class="count">7</span>', html, re.S)
    assert "Content-Security-Policy" in resp.headers
    # Page 2 through the cursor the page links to: the rest, no repeats.
    next_url = re.search(r'id="next-page" rel="next" href="([^"]+)"', html).group(1)
    page2 = await http.get(next_url.replace("&amp;", "&"))
    assert page2.status_code == 200 and "page 2" in page2.text
    assert set(hit_ids(page2.text)).isdisjoint(hit_ids(html))
    assert len(hit_ids(html)) + len(hit_ids(page2.text)) == len(corpus.ids)
    # Multi-select facets: S0 or S1, as the toggle links build the URL.
    resp = await http.get(
        "/ui/search", params=[("q", corpus.scope), ("f.severity", "S0"), ("f.severity", "S1")]
    )
    assert f">{7 + 6}</strong> cases" in resp.text  # 30 AIID: S0 x6 + the regression, S1 x6
    assert 'aria-checked="true" data-value="S0"' in resp.text
    # The severity facet still offers the other values (multi-select counts).
    assert 'aria-checked="false" data-value="S2"' in resp.text
    # Selected values lead their facet, however far down their counts put them; each value
    # carries its full text as a tooltip (long ones are cut off on screen).
    resp = await http.get("/ui/search", params=[("q", corpus.scope), ("f.severity", "S4")])
    facet = re.search(r'data-field="severity".*?</details>', resp.text, re.S).group(0)
    assert re.findall(r'data-value="([^"]+)" title="\1"', facet)[0] == "S4"
    # Sort by severity: S0 cases first.
    resp = await http.get("/ui/search", params={"q": corpus.scope, "sort": "severity"})
    first = hit_ids(resp.text)[0]
    case = await http.get(f"/ui/cases/{first}")
    assert 'class="sev sev-S0"' in case.text
    # Highlights: a word of a title comes back marked.
    word = next(w for w in corpus.titles[corpus.ids[3]].split() if len(w) > 5 and w.isalpha())
    resp = await http.get("/ui/search", params={"q": f"{corpus.scope} {word}"})
    assert re.search(rf"<mark>{re.escape(word)}</mark>", resp.text, re.I)
    # The histogram is drawn (SVG bars with their counts), each bar the search of its month.
    resp = await http.get("/ui/search", params={"q": corpus.scope})
    assert '<svg class="chart"' in resp.text
    bars = re.findall(r'<a href="([^"]+)"><rect [^>]*><title>([^<]+)</title>', resp.text)
    assert sum(int(label.split(": ")[1]) for _, label in bars) == len(corpus.ids)
    href, label = max(bars, key=lambda bar: int(bar[1].split(": ")[1]))
    month = await http.get(href.replace("&amp;", "&"))
    assert f">{int(label.split(': ')[1])}</strong> cases" in month.text
    assert f"occurred:{label[:7]}-01.." in month.text


async def test_a_bad_query_is_shown_inline_with_its_column(curator):
    resp = await curator.http.get("/ui/search", params={"q": "severity:S1 AND (title:x"})
    assert resp.status_code == 400
    assert 'aria-invalid="true"' in resp.text
    error = re.search(r'<span id="query-error-text">([^<]+)</span>', resp.text).group(1)
    assert error.startswith("column ")
    column = int(re.search(r"column (\d+)", error).group(1))
    caret = re.search(r'<pre class="caret" aria-hidden="true">(.*?)</pre>', resp.text, re.S)
    lines = caret.group(1).split("\n")
    assert lines[1] == " " * (column - 1) + "^"


async def test_a_bad_query_gets_no_notebook(curator, corpus):
    """The notebook of a bad query would fail when run: it is the error page, as the
    search page answers 400 for it; a good query gets its notebook."""
    bad = await curator.http.get("/ui/search/notebook.ipynb", params={"q": '"unclosed'})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/html")
    assert "unterminated phrase" in bad.text
    good = await curator.http.get("/ui/search/notebook.ipynb", params={"q": corpus.scope})
    assert good.status_code == 200
    assert good.headers["content-type"].startswith("application/x-ipynb+json")


async def test_case_page_facts_history_group_links(curator, corpus, admin_token, client):
    case_id = corpus.ids[2]
    data = await gql_data(
        client, admin_token, "query($id: ID!) { case(id: $id) { revision } }", id=case_id
    )
    await gql_data(
        client,
        admin_token,
        "mutation($id: ID!, $rev: Int!) { updateCase(id: $id, expectedRevision: $rev,"
        ' patch: {title: "Renamed by the page test", status: TRIAGED},'
        ' reason: "triage") { revision } }',
        id=case_id,
        rev=data["case"]["revision"],
    )
    resp = await curator.http.get(f"/ui/cases/{case_id}")
    assert resp.status_code == 200
    html = resp.text
    assert "Renamed by the page test" in html
    assert "<dt>Model</dt><dd>incident-classifier 1.2.0</dd>" in html
    assert 'href="https://tickets.example/FC-1"' in html and "FC-1 triage" in html
    assert "The classifier never saw this kind of incident." in html
    # The history: the newest revision first, with what changed and why.
    assert "<em>triage</em>" in html
    assert re.search(
        r"<th scope=\"row\">status</th>\s*<td><del>NEW</del> → <ins>TRIAGED</ins>", html
    )
    assert 'id="group"' in html and "this case" in html


async def test_similar_cases_come_apart_and_respect_visibility(curator, low_clearance, corpus):
    case_id = corpus.ids[0]
    page = await curator.http.get(f"/ui/cases/{case_id}")
    assert f'data-src="/ui/cases/{case_id}/similar"' in page.text
    fragment = await curator.http.get(f"/ui/cases/{case_id}/similar", headers={"X-Fragment": "1"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    linked = re.findall(r'href="/ui/cases/([^"]+)"', fragment.text)
    assert linked and case_id not in linked
    full = await curator.http.get(f"/ui/cases/{case_id}/similar")
    assert full.text.startswith("<!doctype html>") and 'id="similar"' in full.text
    # The restricted case is never suggested to someone who may not see it.
    for some in [i for i in corpus.ids[:8] if i != corpus.restricted_id]:
        seen = await low_clearance.http.get(
            f"/ui/cases/{some}/similar", headers={"X-Fragment": "1"}
        )
        assert seen.status_code == 200 and corpus.restricted_id not in seen.text


async def test_case_page_shows_the_regressed_group(curator, corpus):
    resp = await curator.http.get(f"/ui/cases/{corpus.regressed_id}")
    assert resp.status_code == 200
    assert re.search(
        r"Regressed in <strong>1.2.0</strong>.*resolved in <strong>1.1.0</strong>",
        resp.text,
        re.S,
    )


async def test_a_low_clearance_person_does_not_see_a_restricted_case(
    curator, low_clearance, corpus
):
    seen = await curator.http.get(f"/ui/cases/{corpus.restricted_id}")
    assert seen.status_code == 200
    hidden = await low_clearance.http.get(f"/ui/cases/{corpus.restricted_id}")
    assert hidden.status_code == 404
    assert corpus.restricted_title not in hidden.text
    resp = await low_clearance.http.get("/ui/search", params={"q": corpus.scope})
    assert f">{len(corpus.ids) - 1}</strong> cases" in resp.text
    for page in (f"/ui/cases/{corpus.restricted_id}/summary.md", "/ui/search/summary.md"):
        resp = await low_clearance.http.get(page, params={"q": corpus.scope})
        assert corpus.restricted_title not in resp.text


async def test_dashboard_heatmap_series_and_regressed_groups(curator, corpus):
    resp = await curator.http.get("/ui/", params={"q": corpus.scope, "interval": "month"})
    assert resp.status_code == 200
    html = resp.text
    assert 'id="heatmap"' in html
    cells = re.findall(r'<a href="([^"]+)" data-x="([^"]+)" data-y="([^"]+)"', html)
    assert cells
    # Each cell links to the search of exactly its cases: its count is the search's total.
    href, version, mode = cells[0]
    count = int(re.search(rf'data-y="{re.escape(mode)}" title="[^"]*">(\d+)</a>', html).group(1))
    target = await curator.http.get(href.replace("&amp;", "&"))
    assert f">{count}</strong> cases" in target.text
    assert f'aria-checked="true" data-value="{version}"' in target.text
    assert "Cases per month by severity" in html and 'fill="#7f1d1d"' in html
    assert 'id="regressed"' in html and "1.1.0" in html


async def test_summaries_markdown_and_standalone_html(curator, corpus, settings):
    case_id = corpus.ids[2]
    md = await curator.http.get(f"/ui/cases/{case_id}/summary.md")
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("# ") and f"{settings.issuer}/ui/cases/{case_id}" in md.text
    assert "## History" in md.text and "[FC-1 triage](https://tickets.example/FC-1)" in md.text
    html = await curator.http.get(f"/ui/cases/{case_id}/summary.html")
    assert html.status_code == 200 and "<script" not in html.text
    # Standalone: no stylesheet or image from anywhere, the style inline.
    assert "<link" not in html.text and "<style>" in html.text
    search = await curator.http.get("/ui/search/summary.md", params={"q": corpus.scope})
    assert f"- **Cases**: {len(corpus.ids)}" in search.text
    assert f"{settings.issuer}/ui/search?q=" in search.text
    page = await curator.http.get("/ui/search/summary.html", params={"q": corpus.scope})
    assert f'<dd id="total">{len(corpus.ids)}</dd>' in page.text


async def test_data_is_escaped(curator, corpus, admin_token, client):
    from tests.gateway.ui.conftest import bulk

    evil = {
        "title": '<script>alert("x")</script> [link](javascript:alert(1))',
        "model": {"name": "xss-check", "version": "1"},
        "data_source": corpus.source,
        "team": corpus.team,
        "summary": "<img src=x onerror=alert(1)>",
    }
    (case_id,) = await bulk(client, admin_token, [evil])
    resp = await curator.http.get(f"/ui/cases/{case_id}")
    assert "<script>alert" not in resp.text and "&lt;script&gt;" in resp.text
    assert "<img src=x" not in resp.text
    md = await curator.http.get(f"/ui/cases/{case_id}/summary.md")
    # Markdown syntax from data is escaped (no link), raw HTML in a write-up is text.
    assert "\\[link\\](javascript:" in md.text
    assert "<img" not in md.text and "&lt;img src=x" in md.text


def test_templates_and_assets_are_package_data():
    """An installed failcat (not only a checkout) has every template and asset of the pages."""
    import tomllib
    from fnmatch import fnmatch
    from pathlib import Path

    from services.gateway.ui.api import ASSETS_DIR, TEMPLATES_DIR

    root = Path(__file__).resolve().parents[3]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["services.gateway"]
    package = ASSETS_DIR.parents[1]
    files = [*ASSETS_DIR.iterdir(), *TEMPLATES_DIR.iterdir()]
    assert len(files) > 10
    for path in files:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch(relative, p) for p in patterns), f"{relative} is not package data"
