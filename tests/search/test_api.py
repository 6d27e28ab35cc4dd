"""GET /search/v1/cases and /similar through FastAPI, with the real error handlers.

The app here mounts only the search router; the caller comes from a minimal stand-in for
the auth service (a bearer token naming team and clearance), since routes only see the
Principal that `shared.web.require` hands them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from services.search.api import router
from services.search.service import SearchService
from shared.db import Database
from shared.errors import Unauthenticated
from shared.migrate import upgrade_async
from shared.security import Principal, Sensitivity
from shared.settings import Settings
from shared.web import install_error_handlers
from tests.search.builders import make_case


class TokenIsPrincipal:
    """'Bearer <scopes>|<team>|<clearance>' becomes that Principal (test stand-in)."""

    def authenticate(self, header: str | None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise Unauthenticated("missing bearer token")
        scopes, team, clearance = header[7:].split("|")
        return Principal(
            "t",
            "t",
            scopes=frozenset(scopes.split()),
            team=team or None,
            clearance=Sensitivity(clearance),
        )


READER = {"Authorization": "Bearer cases:read||internal"}


@pytest.fixture(scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("search-api"))
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.db, app.state.auth = db, TokenIsPrincipal()
    app.state.search = await SearchService.start(settings, db)
    async with db.transaction() as s:
        for i in range(3):
            await make_case(
                s,
                title=f"Gribbleflux outage {i}",
                severity=f"S{i}",
                tags=["api"],
                summary="gribbleflux <b>bold</b> summary",
            )
        await make_case(s, title="Gribbleflux restricted", sensitivity="restricted")
    await app.state.search.drain_outbox()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c
    await app.state.search.close()
    await db.dispose()


async def test_search_returns_hits_facets_and_page_info(client):
    r = await client.get(
        "/search/v1/cases",
        headers=READER,
        params={
            "q": "gribbleflux",
            "facets": "severity,tags",
            "first": 2,
            "sort": "severity",
            "histogram": "day",
            "heatmap": "severity,tags",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 3 and body["totalIsLowerBound"] is False
    assert len(body["hits"]) == 2 and body["pageInfo"]["hasNextPage"]
    assert body["hits"][0]["highlights"][0]["snippets"][0].count("<em>") >= 1
    assert {f["field"] for f in body["facets"]} == {"severity", "tags"}
    assert sum(b["count"] for b in body["histogram"]) == 3
    assert len(body["heatmap"]) == 3
    nxt = await client.get(
        "/search/v1/cases",
        headers=READER,
        params={
            "q": "gribbleflux",
            "first": 2,
            "sort": "severity",
            "after": body["pageInfo"]["endCursor"],
        },
    )
    assert len(nxt.json()["hits"]) == 1 and not nxt.json()["pageInfo"]["hasNextPage"]


async def test_filter_param_is_multi_select(client):
    r = await client.get(
        "/search/v1/cases",
        headers=READER,
        params={
            "q": "gribbleflux",
            "facets": ["severity"],
            "filter": json.dumps({"severity": ["S0"]}),
        },
    )
    body = r.json()
    assert body["total"] == 1
    assert sorted(b["value"] for b in body["facets"][0]["buckets"]) == ["S0", "S1", "S2"]


async def test_bad_query_is_a_400_problem_naming_the_column(client):
    r = await client.get("/search/v1/cases", headers=READER, params={"q": "severity:<=S9"})
    assert r.status_code == 400
    problem = r.json()
    assert problem["code"] == "BAD_USER_INPUT"
    assert problem["errors"][0]["path"] == "query"
    assert "column 12" in problem["errors"][0]["message"]
    r = await client.get("/search/v1/cases", headers=READER, params={"q": "sevrity:S1"})
    assert "valid fields:" in r.json()["errors"][0]["message"]
    r = await client.get("/search/v1/cases", headers=READER, params={"filter": "{nope"})
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "filter"
    r = await client.get("/search/v1/cases", headers=READER, params={"first": "lots"})
    assert r.status_code == 400


async def test_scope_and_visibility(client):
    r = await client.get("/search/v1/cases", params={"q": "x"})
    assert r.status_code == 401
    r = await client.get(
        "/search/v1/cases",
        params={"q": "x"},
        headers={"Authorization": "Bearer plans:read||internal"},
    )
    assert r.status_code == 403
    r = await client.get("/search/v1/cases", params={"q": "restricted"}, headers=READER)
    assert r.json()["total"] == 0
    cleared = {"Authorization": "Bearer cases:read||restricted"}
    r = await client.get("/search/v1/cases", params={"q": "restricted"}, headers=cleared)
    assert r.json()["total"] == 1
    case_id = r.json()["hits"][0]["id"]
    r = await client.get(f"/search/v1/cases/{case_id}/similar", headers=READER)
    assert r.status_code == 200 and r.json()["hits"] == []
    r = await client.get(f"/search/v1/cases/{case_id}/similar", headers=cleared)
    assert len(r.json()["hits"]) == 3
