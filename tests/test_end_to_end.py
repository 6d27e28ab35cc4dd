"""One path through every real component: OAuth token -> GraphQL ingest -> outbox -> indexer
-> search -> case read. Runs on the embedded backends and on Postgres + OpenSearch."""

from __future__ import annotations

import asyncio
import secrets
import time

from tests.conftest import auth_header
from tests.corpus import aiid_cases

INGEST = """
mutation Ingest($cases: [CaseInput!]!) {
  ingestCases(cases: $cases) { index status id errors { path message } }
}"""
SEARCH = """
query Search($q: String!) {
  search(query: $q, facets: ["model"]) {
    total hits { score case { id title } } facets { field buckets { value count } }
  }
}"""
CASE = "query One($id: ID!) { case(id: $id) { id title revision model { name } } }"


def as_graphql(case: dict) -> dict:
    def camel(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(p.title() for p in rest)

    return {camel(k): v for k, v in case.items() if k != "provenance"}


async def test_token_ingest_search_read(client, bootstrap):
    resp = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(bootstrap["client_id"], bootstrap["client_secret"]),
    )
    assert resp.status_code == 200, resp.text
    headers = auth_header(resp.json()["access_token"])

    word = "zebrafish" + secrets.token_hex(3)
    [case] = aiid_cases(1)
    case.update(external_id=f"e2e-{word}", title=f"{case['title']} {word}")
    resp = await client.post(
        "/graphql",
        json={"query": INGEST, "variables": {"cases": [as_graphql(case)]}},
        headers=headers,
    )
    body = resp.json()
    assert resp.status_code == 200 and "errors" not in body, body
    [result] = body["data"]["ingestCases"]
    assert result["status"] == "CREATED"
    case_id = result["id"]

    deadline = time.monotonic() + 2.0
    hits: list = []
    while time.monotonic() < deadline:
        resp = await client.post(
            "/graphql", json={"query": SEARCH, "variables": {"q": word}}, headers=headers
        )
        data = resp.json()["data"]["search"]
        hits = data["hits"]
        if hits:
            break
        await asyncio.sleep(0.05)
    assert [h["case"]["id"] for h in hits] == [case_id], "not searchable within 2 s"
    assert data["total"] == 1
    assert data["facets"][0]["buckets"] == [{"value": case["model"]["name"], "count": 1}]

    resp = await client.post(
        "/graphql", json={"query": CASE, "variables": {"id": case_id}}, headers=headers
    )
    got = resp.json()["data"]["case"]
    assert got == {
        "id": case_id,
        "title": case["title"],
        "revision": 1,
        "model": {"name": case["model"]["name"]},
    }


async def test_no_token_is_401_and_missing_scope_is_forbidden(client, token_for):
    resp = await client.post("/graphql", json={"query": CASE, "variables": {"id": "x"}})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")

    reader = await token_for("cases:read")
    [case] = aiid_cases(1)
    resp = await client.post(
        "/graphql",
        json={"query": INGEST, "variables": {"cases": [as_graphql(case)]}},
        headers=auth_header(reader),
    )
    body = resp.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "cases:ingest" in body["errors"][0]["message"]


async def test_rest_and_graphql_share_one_ingestion_path(client, token_for):
    """The same case sent over REST and then over GraphQL is one case: same content hash."""
    headers = auth_header(await token_for("cases:ingest cases:read"))
    [case] = aiid_cases(1)
    case.update(external_id=None, title="shared path " + secrets.token_hex(4))
    minute, second = secrets.randbelow(60), secrets.randbelow(60)
    case["occurred_at"] = f"2026-11-02T14:{minute:02d}:{second:02d}Z"
    case["input"] = {"probe": secrets.token_hex(8)}  # unique facts: this test's case only
    case.pop("external_id")
    rest = await client.post("/catalog/v1/cases:bulk", json=[case], headers=headers)
    [created] = rest.json()["results"]
    assert created["status"] == "created"
    gql = as_graphql(case) | {
        "provenance": {"source": case["provenance"]["source"], "pipelineVersion": "1"}
    }
    gql["occurredAt"] = f"2026-11-02T14:{minute:02d}:{second:02d}+00:00"
    resp = await client.post(
        "/graphql", json={"query": INGEST, "variables": {"cases": [gql]}}, headers=headers
    )
    [again] = resp.json()["data"]["ingestCases"]
    assert (again["status"], again["id"]) == ("DUPLICATE", created["id"])
