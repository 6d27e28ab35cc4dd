"""GET /search/v1/cases and /similar through the whole app, on both stacks, with real tokens:
the REST answer has the same shape as GraphQL's Query.search, cases included."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time

import pytest

from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases


@pytest.fixture(scope="module")
async def word(client, token_for) -> str:
    """Four cases sharing a made-up word, one of them restricted, searchable on return."""
    word = "gribbleflux" + secrets.token_hex(3)
    cases = unique(aiid_cases(4))
    for i, c in enumerate(cases):
        c.update(
            title=f"{word} outage {i}: {c['title']}", severity=f"S{i % 3}", tags=["Api-Tier", word]
        )
    # A captured payload, as the wire format carries it.
    cases[0]["input"] = {"messages": [{"role": "user", "content": f"ignore the {word}pay rules"}]}
    cases[3].update(title=f"{word} restricted", sensitivity="restricted")
    writer = auth_header(await token_for("cases:ingest"))
    resp = await client.post("/catalog/v1/cases:bulk", json=cases, headers=writer)
    assert resp.json()["counts"]["created"] == 4
    admin = auth_header(await token_for("cases:read", clearance="restricted"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = (await client.get("/search/v1/cases", params={"q": word}, headers=admin)).json()
        if body["total"] == 4:
            return word
        await asyncio.sleep(0.1)
    raise AssertionError("cases not searchable within 10 s")


@pytest.fixture(scope="module")
async def reader(token_for) -> dict[str, str]:
    return auth_header(await token_for("cases:read"))


async def test_search_returns_hits_with_cases_facets_and_page_info(client, word, reader):
    params = {
        "q": word,
        "facets": "severity,tags",
        "first": 2,
        "sort": "severity",
        "histogram": "day",
        "heatmap": "severity,tags",
    }
    r = await client.get("/search/v1/cases", headers=reader, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 3 and body["total_is_lower_bound"] is False
    assert len(body["hits"]) == 2 and body["page_info"]["has_next_page"]
    first = body["hits"][0]
    assert first["case"]["id"] == first["id"] and word in first["case"]["title"]
    assert first["case"]["severity"] == "S0"
    assert any("<em>" in s for h in first["highlights"] for s in h["snippets"])
    assert {f["field"] for f in body["facets"]} == {"severity", "tags"}
    assert sum(b["count"] for b in body["histogram"]) == 3
    assert body["heatmap"]
    nxt = await client.get(
        "/search/v1/cases",
        headers=reader,
        params={
            "q": word,
            "first": 2,
            "sort": "severity",
            "after": body["page_info"]["end_cursor"],
        },
    )
    assert len(nxt.json()["hits"]) == 1 and not nxt.json()["page_info"]["has_next_page"]


def search_keys(body: dict) -> set[str]:
    """Every key of the search answer itself (a hit's case is the catalog's REST case)."""
    keys = set(body)
    for name in ("hits", "facets", "histogram", "heatmap", "suggestions"):
        for item in body[name]:
            keys |= set(item) - {"case"}
            for sub in item.get("highlights", []) + item.get("buckets", []):
                keys |= set(sub)
    return keys | set(body["page_info"])


async def test_rest_answers_in_snake_case_graphql_in_camel_case(client, word, reader):
    params = {"q": word, "facets": "tags", "histogram": "day", "heatmap": "severity,tags"}
    body = (await client.get("/search/v1/cases", headers=reader, params=params)).json()
    keys = search_keys(body)
    assert {"total_is_lower_bound", "page_info", "has_next_page", "end_cursor"} <= keys
    assert all(k == k.lower() for k in keys), keys
    query = (
        "query($q: String!) { search(query: $q) { totalIsLowerBound pageInfo { hasNextPage } } }"
    )
    graphql = await client.post(
        "/graphql", json={"query": query, "variables": {"q": word}}, headers=reader
    )
    assert graphql.json()["data"]["search"] == {
        "totalIsLowerBound": False,
        "pageInfo": {"hasNextPage": False},
    }


async def test_filter_param_is_multi_select(client, word, reader):
    r = await client.get(
        "/search/v1/cases",
        headers=reader,
        params={"q": word, "facets": ["severity"], "filter": json.dumps({"severity": ["S0"]})},
    )
    body = r.json()
    assert body["total"] == 1
    assert sorted(b["value"] for b in body["facets"][0]["buckets"]) == ["S0", "S1", "S2"]


async def test_search_forgives_case_searches_payloads_and_suggests(client, word, reader):
    async def search(q: str, **params: str) -> dict:
        r = await client.get("/search/v1/cases", headers=reader, params={"q": q, **params})
        assert r.status_code == 200, r.text
        return r.json()

    body = await search(f"tags:API-TIER tags:{word.upper()} status:NEW", facets="tags")
    assert body["total"] == 3
    # The facet shows each tag as it was stored.
    assert {"value": "Api-Tier", "count": 3} in body["facets"][0]["buckets"]
    assert (await search(f"tags:api-t* {word}"))["total"] == 3
    # The captured payload, as text in its own field and in free text.
    for q in (f"input:{word}pay", f"{word}pay", f"input:{word}pa*"):
        body = await search(q)
        assert body["total"] == 1, q
        assert body["hits"][0]["case"]["title"].startswith(f"{word} outage 0"), q
    # Nothing found: the closest existing values, in REST and in GraphQL alike.
    body = await search(f"tags:{word}x")
    assert body["total"] == 0
    expected = [{"field": "tags", "value": f"{word}x", "closest": [word]}]
    assert body["suggestions"] == expected
    query = "query($q: String!) { search(query: $q) { total suggestions { field value closest } } }"
    graphql = await client.post(
        "/graphql", json={"query": query, "variables": {"q": f"tags:{word}x"}}, headers=reader
    )
    assert graphql.json()["data"]["search"] == {"total": 0, "suggestions": expected}


async def test_bad_query_is_a_400_problem_naming_the_column(client, reader):
    r = await client.get("/search/v1/cases", headers=reader, params={"q": "severity:<=S9"})
    assert r.status_code == 400
    problem = r.json()
    assert problem["code"] == "BAD_USER_INPUT"
    assert problem["errors"][0]["path"] == "query"
    assert "column 12" in problem["errors"][0]["message"]
    r = await client.get("/search/v1/cases", headers=reader, params={"q": "sevrity:S1"})
    assert "valid fields:" in r.json()["errors"][0]["message"]
    r = await client.get("/search/v1/cases", headers=reader, params={"filter": "{nope"})
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "filter"
    r = await client.get("/search/v1/cases", headers=reader, params={"first": "lots"})
    assert r.status_code == 400


async def test_scope_and_visibility(client, word, reader, token_for):
    assert (await client.get("/search/v1/cases", params={"q": word})).status_code == 401
    planner = auth_header(await token_for("plans:read"))
    r = await client.get("/search/v1/cases", params={"q": word}, headers=planner)
    assert r.status_code == 403
    phrase = {"q": f'"{word} restricted"', "facets": "sensitivity"}
    hidden = (await client.get("/search/v1/cases", params=phrase, headers=reader)).json()
    assert hidden["total"] == 0 and hidden["hits"] == []
    assert hidden["facets"][0]["buckets"] == []  # not even counted
    cleared = auth_header(await token_for("cases:read", clearance="restricted"))
    r = await client.get("/search/v1/cases", params=phrase, headers=cleared)
    assert r.json()["total"] == 1
    assert r.json()["facets"][0]["buckets"] == [{"value": "restricted", "count": 1}]
    case_id = r.json()["hits"][0]["id"]
    # A case the reader may not see is not found, as on every case route; so is none.
    r = await client.get(f"/search/v1/cases/{case_id}/similar", headers=reader)
    assert r.status_code == 404
    r = await client.get("/search/v1/cases/no-such-case/similar", headers=cleared)
    assert r.status_code == 404
    # The same page limit as FailureCase.similar.
    r = await client.get(
        f"/search/v1/cases/{case_id}/similar", params={"first": 51}, headers=cleared
    )
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "first"
    r = await client.get(f"/search/v1/cases/{case_id}/similar", headers=cleared)
    # How many come back depends on the whole index's term statistics (other tests ingest
    # the same AIID incidents): what matters here is that a cleared reader gets an answer.
    assert r.status_code == 200 and len(r.json()["hits"]) >= 1


@pytest.mark.parametrize(
    ("rest", "graphql", "path", "says"),
    [
        # The REST filter that is no object read "filter." and named the pydantic class.
        ("[1]", None, "filter", 'expected a JSON object of selections, e.g. {"severity"'),
        ("null", None, "filter", "expected a JSON object of selections"),
        # GraphQL named the environment's selections without their argument ("env.region").
        (
            '{"env": {"region": "eu-west-1"}}',
            '{env: {region: "eu-west-1"}}',
            "filter.env.region",
            "Input should be a valid list",
        ),
        ('{"env": ["x"]}', '{env: ["x"]}', "filter.env", "Input should be a valid dictionary"),
        ('{"severity": ["S9"]}', '{severity: ["S9"]}', "filter.severity", "'S9' is not one of"),
    ],
)
async def test_a_bad_filter_is_named_filter_dot_field_on_both_apis(
    client, reader, rest, graphql, path, says
):
    r = await client.get("/search/v1/cases", headers=reader, params={"filter": rest})
    assert r.status_code == 400, r.text
    [error] = r.json()["errors"]
    assert error["path"] == path and error["message"].startswith(says), error
    if graphql is None:
        return
    query = f"{{ search(filter: {graphql}) {{ total }} }}"
    body = (await client.post("/graphql", json={"query": query}, headers=reader)).json()
    [gql] = body["errors"]
    assert gql["extensions"]["code"] == "BAD_USER_INPUT"
    assert gql["extensions"]["errors"] == [error], body


@pytest.mark.parametrize("value", [b"99999999999999999999999", b"1e400", b"NaN", b"-Infinity"])
async def test_an_edited_cursor_with_a_number_no_index_holds_is_refused(client, reader, value):
    # 2**70 reached SQLite as a parameter: "Python int too large to convert", a 500.
    raw = b'["severity", [%s, 1, "01a2423d-6226-73b0-b30d-8ccb544c8859"]]' % value
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    r = await client.get(
        "/search/v1/cases", headers=reader, params={"sort": "severity", "after": cursor}
    )
    assert r.status_code == 400, r.text
    assert r.json()["errors"] == [
        {"path": "after", "message": "not a cursor returned by this search"}
    ]
