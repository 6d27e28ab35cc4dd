"""Each known attack on a GraphQL endpoint gets a clear refusal that costs the server little."""

from __future__ import annotations

import time

import pytest

from services.gateway import limits as L
from services.gateway.app import create_app
from tests.conftest import auth_header
from tests.gateway.helpers import codes, gql

CHEAP_S = 0.5  # generous for a loaded CI machine; a refusal takes a few milliseconds


@pytest.fixture(scope="module")
async def reader(token_for):
    return await token_for("cases:read")


async def refused(client, token, query, variables=None, limit=None):
    # The best of three: a refusal that costs much costs it every time, while a loaded CI
    # machine stalls one request now and then (0.6 s once, for a refusal of 0.03 s).
    for _ in range(3):
        started = time.perf_counter()
        body = await gql(client, token, query, variables)
        elapsed = time.perf_counter() - started
        if elapsed < CHEAP_S:
            break
    assert body.get("data") is None, body
    assert codes(body) and set(codes(body)) == {"BAD_USER_INPUT"}, body
    if limit is not None:
        allowed = {limit} if isinstance(limit, str) else set(limit)
        assert body["errors"][0]["extensions"]["limit"] in allowed, body
    assert elapsed < CHEAP_S, f"refusal took {elapsed:.3f}s"
    return body["errors"][0]["message"]


def nested(levels: int) -> str:
    inner = "id"
    for _ in range(levels):
        inner = f"cases(first: 1) {{ nodes {{ group {{ {inner} }} }} }}"
    return f"{{ {inner} }}"


async def test_deep_nesting(client, reader):
    message = await refused(client, reader, nested(5))
    assert f"maximum operation depth of {L.MAX_DEPTH}" in message


async def test_alias_flood(client, reader):
    query = "{ " + " ".join(f"a{i}: models {{ name }}" for i in range(L.MAX_ALIASES + 20)) + " }"
    message = await refused(client, reader, query)
    assert f"Allowed: {L.MAX_ALIASES}" in message


async def test_aliases_hidden_in_fragments(client, reader):
    half = L.MAX_ALIASES // 2 + 5
    query = (
        "query { ...A ...B }\n"
        + "fragment A on Query { "
        + " ".join(f"a{i}: taxonomy {{ code }}" for i in range(half))
        + " }\nfragment B on Query { "
        + " ".join(f"b{i}: models {{ name }}" for i in range(half))
        + " }"
    )
    message = await refused(client, reader, query)
    assert f"Allowed: {L.MAX_ALIASES}" in message


async def test_fragment_cycle(client, reader):
    query = """query { models { ...A } }
      fragment A on Model { name ...B }
      fragment B on Model { id ...A }"""
    await refused(client, reader, query, limit="fragment_cycle")


async def test_fragment_bomb_is_refused_before_validation(client, reader):
    # Each fragment spreads the next twice: 2^30 fields once expanded, from a few hundred tokens.
    levels = 30
    parts = [f"fragment F{i} on Model {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    parts.append(f"fragment F{levels} on Model {{ name }}")
    query = "query { models { ...F0 } }\n" + "\n".join(parts)
    # Refused by whichever count the walk reaches first; never by running out of time.
    await refused(client, reader, query, limit=("max_fields", "max_same_field"))


async def test_five_hundred_duplicated_fields(client, reader):
    query = "{ models { " + " ".join(["name"] * 500) + " } }"
    await refused(client, reader, query, limit="max_same_field")


async def test_directive_flood(client, reader):
    query = "{ models { name " + " ".join(["@include(if: true)"] * 200) + " } }"
    await refused(client, reader, query, limit="max_directives")


async def test_first_a_million(client, reader):
    message = await refused(
        client, reader, "{ cases(first: 1000000) { nodes { id } } }", limit="max_page_size"
    )
    assert "1000000" in message and str(L.MAX_PAGE_SIZE) in message
    via_variable = "query($n: Int!) { cases(first: $n) { nodes { id } } }"
    await refused(client, reader, via_variable, {"n": 1_000_000}, limit="max_page_size")


async def test_a_document_that_passed_is_checked_again_with_other_variables(client, reader):
    """The guard remembers documents that passed, per value of their integer variables."""
    query = "query($n: Int!) { cases(first: $n) { nodes { id } } }"
    for _ in range(2):
        body = await gql(client, reader, query, {"n": 5})
        assert "errors" not in body, body
    await refused(client, reader, query, {"n": 1_000_000}, limit="max_page_size")
    costly = """query($n: Int!, $m: Int!) { cases(first: $n) { nodes { similar(first: $m) {
                group { cases(first: $m) { nodes { id } } } } } } }"""
    assert "errors" not in await gql(client, reader, costly, {"n": 1, "m": 1})
    await refused(client, reader, costly, {"n": 500, "m": 50}, limit="max_cost")


async def test_nested_lists_over_the_cost_limit(client, reader):
    query = """{ cases(first: 500) { nodes { similar(first: 50) { revisions { actor }
                 group { cases(first: 50) { nodes { id } } } } } } }"""
    message = await refused(client, reader, query, limit="max_cost")
    assert str(L.MAX_COST) in message


async def test_token_flood(client, reader):
    query = "{ models { " + " ".join(f"n{i}: name" for i in range(3000)) + " } }"
    message = await refused(client, reader, query)
    assert "token" in message.lower()


async def test_batch_flood(client, reader):
    batch = [{"query": "{ models { name } }"}] * 1000
    started = time.perf_counter()
    resp = await client.post("/graphql", json=batch, headers=auth_header(reader))
    assert resp.status_code == 400 and "batch" in resp.text.lower()
    assert time.perf_counter() - started < CHEAP_S


async def test_body_over_the_limit(client, reader):
    body = b'{"query": "{ models { name } }", "variables": {"x": "' + b"a" * L.MAX_REQUEST_BYTES
    body += b'"}}'
    resp = await client.post(
        "/graphql",
        content=body,
        headers={**auth_header(reader), "content-type": "application/json"},
    )
    assert resp.status_code == 413
    assert resp.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert f"max_request_bytes={L.MAX_REQUEST_BYTES}" in resp.text


async def test_mutation_and_query_over_get(client, reader):
    for doc in ("mutation { rotateSigningKeys { kid } }", "{ models { name } }"):
        resp = await client.get("/graphql", params={"query": doc}, headers=auth_header(reader))
        assert resp.status_code in (400, 405), resp.text
        assert "kid" not in resp.text


async def test_no_field_suggestions(client, reader):
    body = await gql(client, reader, "{ case(id: 1) { titl } }")
    assert "Did you mean" not in body["errors"][0]["message"]


@pytest.fixture(scope="module")
async def production_client(settings, client):
    import httpx

    app = create_app(settings.model_copy(update={"env": "production"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as c:
            yield c


async def test_introspection_and_graphiql_off_in_production(production_client, reader):
    body = await gql(production_client, reader, "{ __schema { types { name } } }")
    assert body.get("data") is None and set(codes(body)) == {"BAD_USER_INPUT"}
    assert "introspection" in body["errors"][0]["message"].lower()
    hidden = await gql(production_client, reader, '{ __type(name: "FailureCase") { name } }')
    assert hidden.get("data") is None
    ide = await production_client.get("/graphql", headers={"accept": "text/html"})
    assert ide.status_code in (401, 404, 405) and "graphiql" not in ide.text.lower()
    ok = await gql(production_client, reader, "{ severityRubric { grade } }")
    assert "errors" not in ok
