"""Data and people for the page tests: real AIID and AVID records ingested once per backend,
made unique to this module's run (the session database is shared), and users of two
clearances who sign in through the pages' own PKCE flow."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.auth.builders import make_user, query_of, sign_in
from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases, avid_cases

N_AIID = 30  # more than one page (20)


@dataclass
class Corpus:
    source: str  # the data_source every case of this run carries (search scope)
    ids: list[str]
    titles: dict[str, str]
    restricted_id: str
    restricted_title: str
    regressed_id: str
    team: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        return f"source:{self.source}"


async def bulk(client: httpx.AsyncClient, token: str, cases: list[dict[str, Any]]) -> list[str]:
    resp = await client.post("/catalog/v1/cases:bulk", json=cases, headers=auth_header(token))
    assert resp.status_code in (200, 207), resp.text
    results = resp.json()["results"]
    assert all(r["status"] == "created" for r in results), results
    return [r["id"] for r in results]


async def gql_data(client: httpx.AsyncClient, token: str, query: str, **variables: Any) -> Any:
    resp = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=auth_header(token)
    )
    body = resp.json()
    assert "errors" not in body, body
    return body["data"]


async def wait_indexed(client: httpx.AsyncClient, token: str, query: str, total: int) -> None:
    for _ in range(200):
        data = await gql_data(
            client, token, "query($q: String!) { search(query: $q) { total } }", q=query
        )
        if data["search"]["total"] >= total:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the indexer did not take {total} cases for {query!r}")


@pytest.fixture(scope="module")
async def corpus(client: httpx.AsyncClient, admin_token: str) -> Corpus:
    """30 AIID incidents and 5 AVID reports of one team, one of them restricted, plus a group
    resolved in 1.1.0 that regresses in 1.2.0."""
    team = f"ui-team-{secrets.token_hex(3)}"
    cases = unique(aiid_cases(N_AIID) + avid_cases(5))
    source = f"ui-{secrets.token_hex(4)}"
    for case in cases:
        case["data_source"] = source
        case["team"] = team
        # Groups of this module's run only: another module's corpus (same incidents, same
        # model and failure modes) would otherwise join them and crowd a group's first page.
        case["fingerprint"] = f"{source}-{case.get('failure_mode')}"
    cases[1]["sensitivity"] = "restricted"
    cases[2]["links"] = [
        {"kind": "ticket", "url": "https://tickets.example/FC-1", "title": "FC-1 triage"}
    ]
    cases[2]["writeup"] = {"hypothesis": "The classifier never saw this kind of incident."}
    fingerprint = f"fp-{secrets.token_hex(6)}"
    first = dict(cases[0], fingerprint=fingerprint)
    ids = await bulk(client, admin_token, [first, *cases[1:]])
    group = (
        await gql_data(
            client, admin_token, "query($id: ID!) { case(id: $id) { group { id } } }", id=ids[0]
        )
    )["case"]["group"]["id"]
    await gql_data(
        client,
        admin_token,
        'mutation($id: ID!) { resolveGroup(id: $id, fixedInVersion: "1.1.0") { id } }',
        id=group,
    )
    later = dict(
        cases[0],
        external_id=cases[0]["external_id"] + "-again",
        model={"name": cases[0]["model"]["name"], "version": "1.2.0"},
        fingerprint=fingerprint,
        occurred_at="2024-06-01T00:00:00Z",
    )
    regressed_id = (await bulk(client, admin_token, [later]))[0]
    ids.append(regressed_id)
    await wait_indexed(client, admin_token, f"source:{source}", len(ids))
    return Corpus(
        source=source,
        ids=ids,
        titles={i: c["title"] for i, c in zip(ids, [*cases, later], strict=True)},
        restricted_id=ids[1],
        restricted_title=cases[1]["title"],
        regressed_id=regressed_id,
        team=team,
    )


@dataclass
class Person:
    username: str
    password: str
    http: httpx.AsyncClient


async def signed_in(app: Any, settings: Any, **user: Any) -> Person:
    """A browser-like client (its own cookie jar) signed in through /ui/signin."""
    username, password = await make_user(app, **user)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer)
    start = await http.get("/ui/signin", params={"next": "/ui/search"})
    assert start.status_code == 303, start.text
    params = query_of(start.headers["location"])
    back = await sign_in(http, params, username, password)
    assert back.status_code == 302, back.text
    done = await http.get(back.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == "/ui/search", done.text
    return Person(username, password, http)


@pytest.fixture(scope="module")
async def curator(app: Any, settings: Any, corpus: Corpus) -> Person:
    person = await signed_in(
        app, settings, roles=["curator"], team=corpus.team, clearance="restricted"
    )
    yield person
    await person.http.aclose()


@pytest.fixture(scope="module")
async def low_clearance(app: Any, settings: Any, corpus: Corpus) -> Person:
    person = await signed_in(
        app, settings, roles=["viewer"], team=corpus.team, clearance="internal"
    )
    yield person
    await person.http.aclose()
