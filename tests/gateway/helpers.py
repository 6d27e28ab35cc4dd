"""Helpers for gateway tests: GraphQL calls and corpus cases ingested through the API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases

INGEST = """
mutation Ingest($cases: [CaseInput!]!) {
  ingestCases(cases: $cases) { index status id errors { path message } }
}"""


def camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def as_graphql(value: Any) -> Any:
    """A wire-format case (snake_case) as GraphQL's CaseInput (camelCase keys, enum names)."""
    if isinstance(value, dict):
        return {camel(k): as_graphql(v) if k not in _JSON_FIELDS else v for k, v in value.items()}
    if isinstance(value, list):
        return [as_graphql(v) for v in value]
    return value


_JSON_FIELDS = {"environment", "input", "prediction", "expected", "signals"}
_ENUMS = {"severity", "sensitivity", "kind"}


def case_input(case: dict[str, Any]) -> dict[str, Any]:
    out = as_graphql(case)
    for key in ("severity", "sensitivity"):
        if out.get(key):
            out[key] = out[key].upper()
    for link in out.get("links") or []:
        link["kind"] = link["kind"].upper()
    return out


async def gql(
    client: httpx.AsyncClient,
    token: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    **headers: str,
) -> dict[str, Any]:
    h = auth_header(token) if token else {}
    h.update(headers)
    resp = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=h
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    return body["data"]


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


async def ingest_corpus(
    client: httpx.AsyncClient, token: str, n: int, **overrides: Any
) -> list[str]:
    """n real AIID incidents made unique to the calling test, ingested through GraphQL."""
    cases = unique(aiid_cases(n))
    for c in cases:
        c.update(overrides)
    return await ingest_cases(client, token, cases)


async def ingest_cases(
    client: httpx.AsyncClient, token: str, cases: list[dict[str, Any]]
) -> list[str]:
    """`cases` ingested through GraphQL, every one created; their ids, in order."""
    body = await gql(client, token, INGEST, {"cases": [case_input(c) for c in cases]})
    results = data(body)["ingestCases"]
    assert all(r["status"] == "CREATED" for r in results), results
    return [r["id"] for r in results]


_FOUND = "query($q: String!) { search(query: $q) { total } }"


async def ingest_searchable(
    client: httpx.AsyncClient, token: str, cases: list[dict[str, Any]], word: str
) -> list[str]:
    """`cases` ingested through GraphQL with `word` added to their titles (in place); their
    ids, in order, once a search for `word` finds them all: the index follows the catalog
    through the outbox, and OpenSearch shows new documents after its refresh."""
    for c in cases:
        c["title"] = f"{c['title']} {word}"
    ids = await ingest_cases(client, token, cases)
    deadline = time.monotonic() + 10
    while data(await gql(client, token, _FOUND, {"q": word}))["search"]["total"] != len(cases):
        assert time.monotonic() < deadline, f"{word!r} not searchable within 10 s"
        await asyncio.sleep(0.1)
    return ids
