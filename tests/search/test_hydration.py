"""A page of hits is hydrated in one query (services/catalog/hydration.py), and what it
answers is the catalog's case exactly: names, links, redaction and visibility included."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
from sqlalchemy import event, select

from services.audit.models import AuditEntry
from services.audit.service import verify
from services.catalog.hydration import hit_cases
from shared.security import Principal, Sensitivity
from tests.annotation.test_blind_curated import _adjudicated_for_one_of_two
from tests.auth.builders import bearer
from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases
from tests.gateway.helpers import data, gql
from tests.gateway.test_query_count import outbox_drained

LINKS = [
    {"kind": "ticket", "url": "https://t.example/h/1", "title": "first"},
    {"kind": "dashboard", "url": "https://t.example/h/2", "title": None},
]


@pytest.fixture(scope="module")
async def planted(app, client, token_for) -> tuple[str, dict[str, str]]:
    """Five cases sharing a made-up word: two with links, one whose payload is confidential
    (a plain reader gets it redacted), one restricted (a plain reader never sees it).
    Returns the word and the ids by role, once all five are searchable."""
    word = "hydroquill" + secrets.token_hex(3)
    # Incidents no other search test ingests: their text would change its neighbours'
    # similarity (test_api's `similar` counts cases like one of its own).
    cases = unique(aiid_cases(45)[40:])
    for i, c in enumerate(cases):
        c.update(title=f"{word} case {i}: {c['title']}", severity=f"S{i % 3}")
    cases[0]["links"] = LINKS
    cases[1]["links"] = LINKS[1:]
    cases[2].update(input={"prompt": f"the {word} payload"}, payload_sensitivity="confidential")
    cases[4].update(sensitivity="restricted")
    # JSON values of every shape, read lazily by GraphQL's hits (LazyCase): a top-level number
    # and string (SQLite stores a number with numeric affinity), nested objects, a list.
    cases[3].update(
        prediction=0.25,
        expected="refuse the request",
        signals={"drift": {"psi": 0.31, "features": ["age", "zip"]}},
        environment={"region": "eu-west-1"},
        tags=["hydration", word],
    )
    writer = auth_header(await token_for("cases:ingest"))
    resp = await client.post("/catalog/v1/cases:bulk", json=cases, headers=writer)
    results = resp.json()["results"]
    assert [r["status"] for r in results] == ["created"] * 5, resp.text
    ids = {
        "linked": results[0]["id"],
        "payload": results[2]["id"],
        "shapes": results[3]["id"],
        "restricted": results[4]["id"],
    }
    await outbox_drained(app.state.db)
    admin = auth_header(await token_for("cases:read", clearance="restricted"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = (await client.get("/search/v1/cases", params={"q": word}, headers=admin)).json()
        if body["total"] == 5:
            return word, ids
        await asyncio.sleep(0.1)
    raise AssertionError("cases not searchable within 10 s")


async def test_rest_hits_carry_the_catalogs_case_exactly(client, planted, token_for):
    word, ids = planted
    reader = auth_header(await token_for("cases:read"))
    body = (await client.get("/search/v1/cases", params={"q": word}, headers=reader)).json()
    assert body["total"] == 4 and ids["restricted"] not in {h["id"] for h in body["hits"]}
    for hit in body["hits"]:
        direct = await client.get(f"/catalog/v1/cases/{hit['id']}", headers=reader)
        assert direct.status_code == 200
        assert hit["case"] == direct.json(), hit["id"]
    by_id = {h["id"]: h["case"] for h in body["hits"]}
    linked = by_id[ids["linked"]]
    # (in the catalog's order, which the comparison above checked: by link id)
    assert sorted((lk["kind"], lk["url"], lk["title"]) for lk in linked["links"]) == sorted(
        (lk["kind"], lk["url"], lk["title"]) for lk in LINKS
    )
    assert linked["model"]["name"] and linked["model"]["version"] and linked["data_source"]
    redacted = by_id[ids["payload"]]
    assert redacted["input"] is None and "input" in redacted["redacted_fields"]
    cleared = auth_header(await token_for("cases:read", clearance="confidential"))
    body = (await client.get("/search/v1/cases", params={"q": word}, headers=cleared)).json()
    shown = next(h["case"] for h in body["hits"] if h["id"] == ids["payload"])
    assert shown["input"] == {"prompt": f"the {word} payload"} and not shown["redacted_fields"]


async def test_a_rest_search_reads_the_catalog_once_its_entry_riding_along(
    app, client, planted, token_for, settings
):
    """The hits' cases, models, versions, sources, links and blind-read flags: one statement,
    which on Postgres also appends the search's audit entry (no append of its own at commit);
    the entry is in the chain, with its hit ids, and the chain verifies."""
    word, _ = planted
    reader = auth_header(await token_for("cases:read"))
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        r = await client.get("/search/v1/cases", params={"q": word}, headers=reader)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    hits = [h["id"] for h in r.json()["hits"]]
    assert len(hits) == 4
    mine = [s for s in statements if "failure_case" in s and "case_link" in s]
    assert len(mine) == 1, statements
    assert all(t in mine[0] for t in ("model", "data_source", "annotation"))
    appends = [s for s in statements if "INSERT INTO audit_log" in s]
    if app.state.db.dialect == "postgresql":
        assert appends == mine  # the entry rode along with the read
    else:
        assert "audit_log" not in mine[0]  # SQLite appends it at commit, through the driver
    async with app.state.db.transaction() as session:
        entry = (
            await session.execute(
                select(AuditEntry)
                .where(AuditEntry.action == "cases.search")
                .order_by(AuditEntry.seq.desc())
                .limit(1)
            )
        ).scalar_one()
    assert entry.details["ids"] == hits and entry.details["hits"] == 4
    assert (await verify(app.state.db, settings)).ok


GRAPHQL_CASE = """id title severity redactedFields input prediction expected signals
  environment tags piiFindings { kind path } provenance { source } writeup { hypothesis }
  model { id name createdAt versions { version } }
  modelVersion { id version createdAt artifactUri trainingDataRef featureConfigHash }
  dataSource { id name } group { id caseCount } links { kind url title }"""


async def test_graphql_hits_are_the_case_field_exactly(client, planted, token_for):
    word, ids = planted
    token = await token_for("cases:read")
    query = f"query($q: String!) {{ search(query: $q) {{ hits {{ case {{ {GRAPHQL_CASE} }} }} }} }}"
    hits = data(await gql(client, token, query, {"q": word}))["search"]["hits"]
    assert len(hits) == 4
    for hit in hits:
        one = f'{{ case(id: "{hit["case"]["id"]}") {{ {GRAPHQL_CASE} }} }}'
        assert hit["case"] == data(await gql(client, token, one))["case"]
    by_id = {h["case"]["id"]: h["case"] for h in hits}
    assert len(by_id[ids["linked"]]["links"]) == 2
    assert by_id[ids["payload"]]["input"] is None
    shapes = by_id[ids["shapes"]]
    assert shapes["prediction"] == 0.25 and shapes["expected"] == "refuse the request"
    assert shapes["signals"] == {"drift": {"psi": 0.31, "features": ["age", "zip"]}}
    assert shapes["environment"] == {"region": "eu-west-1"}
    assert shapes["tags"] == ["hydration", word]


async def test_hydration_applies_visibility_itself(db, planted):
    """A hit the index still holds but the caller may not see (a case made restricted since
    it was indexed) is absent from the hydrated page, as from the catalog."""
    _, ids = planted
    reader = Principal("reader", "reader", clearance=Sensitivity.INTERNAL)
    admin = Principal("admin", "admin", clearance=Sensitivity.RESTRICTED)
    wanted = [ids["linked"], ids["restricted"], ids["payload"]]
    async with db.transaction() as session:
        seen = await hit_cases(session, wanted, reader)
        assert set(seen) == {ids["linked"], ids["payload"]}
        assert sorted(lk.url for lk in seen[ids["linked"]].links) == [lk["url"] for lk in LINKS]
        assert set(await hit_cases(session, wanted, admin)) == set(wanted)
        assert await hit_cases(session, [], admin) == {}


async def test_hits_hide_the_blinded_curated_fields_as_the_case_reads_do(app, client, token_for):
    """The blind-read rule, folded into the hydrating statement: an annotator who has not
    submitted reads the adjudicated labels of a hit as null, in REST and GraphQL alike, and
    exactly as the catalog's own case read answers them."""
    case_id, first, second, viewer = await _adjudicated_for_one_of_two(client, token_for)
    source = await client.get(f"/catalog/v1/cases/{case_id}", headers=bearer(viewer.token))
    query = f"data_source:{source.json()['data_source']}"
    await outbox_drained(app.state.db)

    async def rest_hit(who) -> dict:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            resp = await client.get(
                "/search/v1/cases", params={"q": query}, headers=bearer(who.token)
            )
            assert resp.status_code == 200, resp.text
            if resp.json()["hits"]:
                [hit] = resp.json()["hits"]
                return hit["case"]
            await asyncio.sleep(0.1)
        raise AssertionError("case not searchable within 10 s")

    def curated(case: dict) -> tuple:
        return case["severity"], case["failure_mode"], case["impact"]

    seen, hidden = await rest_hit(viewer), await rest_hit(second)
    assert curated(seen)[:2] == ("S1", "safety.harmful_content")
    assert curated(await rest_hit(first)) == curated(seen)
    assert curated(hidden) == (None, None, None) and hidden["title"] == seen["title"]
    direct = await client.get(f"/catalog/v1/cases/{case_id}", headers=bearer(second.token))
    assert hidden == direct.json()

    gql_query = "query($q: String!) { search(query: $q) { hits { case { severity impact } } } }"
    for who, expected in ((second, None), (viewer, "S1")):
        [hit] = data(await gql(client, who.token, gql_query, {"q": query}))["search"]["hits"]
        assert hit["case"]["severity"] == expected
