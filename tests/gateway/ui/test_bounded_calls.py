"""A page's cost does not grow with the data: the dashboard (and the search page) make the same
number of API requests and search backend requests, and no more catalog SQL statements than a
fixed bound, for a data set and for four times that data set.

SQL statements are bounded rather than equal: each of the dashboard's searches loads its one
hit's case (visibility applied again), and the DataLoader batches those loads together or not
depending on how the six searches interleave, not on the data."""

from __future__ import annotations

import re
import secrets
from collections import Counter
from typing import Any

from services.gateway.ui import charts
from services.gateway.ui import client as ui_client
from tests.catalog.builders import unique
from tests.corpus import aiid_cases
from tests.gateway.test_query_count import counting, outbox_drained
from tests.gateway.ui.conftest import bulk, wait_indexed

TOTAL = re.compile(r'<strong id="total">(\d+)</strong> cases')


async def _cost(app: Any, monkeypatch: Any, http: Any, path: str, params: dict[str, str]) -> tuple:
    """(the page's html, API requests by path, search backend requests, SQL statements)."""
    api: Counter[str] = Counter()
    searches: list[Any] = []
    post, search = ui_client.post, app.state.search.backend.search

    async def counted_post(request: Any, path: str, **kwargs: Any) -> Any:
        api[path] += 1
        return await post(request, path, **kwargs)

    async def counted_search(req: Any) -> Any:
        searches.append(req)
        return await search(req)

    with monkeypatch.context() as m:
        m.setattr(ui_client, "post", counted_post)
        m.setattr(app.state.search.backend, "search", counted_search)
        with counting(app.state.db.engine) as statements:
            resp = await http.get(path, params=params)
    assert resp.status_code == 200, resp.text[:500]
    return resp.text, dict(api), len(searches), len(statements)


async def test_the_dashboard_costs_the_same_for_n_or_4n_cases(
    app, client, admin_token, curator, corpus, monkeypatch
):
    source = f"ui-bounded-{secrets.token_hex(4)}"
    params = {"q": f"source:{source}", "interval": "month"}
    costs = {}
    ingested, every = 0, unique(aiid_cases(40))
    for size in (10, 40):
        cases = every[ingested:size]
        for case in cases:
            case["data_source"], case["team"] = source, corpus.team
        await bulk(client, admin_token, cases)
        ingested = size
        await wait_indexed(client, admin_token, params["q"], size)
        await outbox_drained(app.state.db)
        html, api, searches, statements = await _cost(
            app, monkeypatch, curator.http, "/ui/", params
        )
        assert TOTAL.search(html).group(1) == str(size)  # the page did count the bigger set
        # Whole dashboard: one API request; six searches (the overview with the heatmap, one
        # series per severity), each starting the transaction while the index answers
        # (shared.web.begin_early: a SELECT 1); events, remediation, regressed groups (with
        # their models) and the hits' cases (with theirs): at most 6 + 6 + 4 statements, and
        # a BEGIN.
        assert api == {"/graphql": 1}, api
        assert searches == 6 and statements <= 17, (size, searches, statements)
        costs[size] = (api, searches)
    assert costs[10] == costs[40], costs


async def test_the_search_page_costs_the_same_for_n_or_4n_cases(
    app, client, admin_token, curator, corpus, monkeypatch
):
    source = f"ui-bounded-{secrets.token_hex(4)}"
    params = {"q": f"source:{source}", "f.severity": "S2"}
    costs = {}
    ingested, every = 0, unique(aiid_cases(40))
    for size in (10, 40):
        cases = every[ingested:size]
        for case in cases:
            case["data_source"], case["team"] = source, corpus.team
        await bulk(client, admin_token, cases)
        ingested = size
        await wait_indexed(client, admin_token, f"source:{source}", size)
        await outbox_drained(app.state.db)
        html, api, searches, statements = await _cost(
            app, monkeypatch, curator.http, "/ui/search", params
        )
        # The AIID cases cycle S0..S4: a fifth of them are S2.
        assert TOTAL.search(html).group(1) == str(size // 5), html[:2000]
        costs[size] = (api, searches, statements)
    assert costs[10] == costs[40], costs
    assert costs[40][:2] == ({"/graphql": 1}, 1), costs


async def test_a_selected_severity_leaves_the_other_series_unasked(
    app, curator, corpus, monkeypatch
):
    params = {"q": corpus.scope, "f.severity": "S2", "interval": "month"}
    html, api, searches, _ = await _cost(app, monkeypatch, curator.http, "/ui/", params)
    # The overview and the S2 series only: the four series the page would not draw are not
    # searched for.
    assert api == {"/graphql": 1} and searches == 2, (api, searches)
    assert TOTAL.search(html).group(1) == "6"  # the AIID cases cycle S0..S4: 6 of 30 are S2
    assert f'fill="{charts.SEVERITY_COLOURS["S2"]}"' in html  # S2's bars
    # S0's colour: its series is not drawn.
    assert f'fill="{charts.SEVERITY_COLOURS["S0"]}"' not in html
