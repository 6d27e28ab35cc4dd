"""Malformed /graphql requests get a client error, never a 500 or an INTERNAL error."""

from __future__ import annotations

import pytest

from services.gateway.observability import operation_label
from tests.conftest import auth_header
from tests.gateway.helpers import codes


@pytest.fixture(scope="module")
async def reader(token_for):
    return await token_for("cases:read")


async def post(client, token, body):
    return await client.post(
        "/graphql",
        content=body,
        headers={**auth_header(token), "Content-Type": "application/json"},
    )


@pytest.mark.parametrize("body", ["null", '"str"', "123", "true", "1.5"])
async def test_a_body_that_is_not_a_json_object_is_a_400(client, reader, body):
    resp = await post(client, reader, body)
    assert resp.status_code == 400, resp.text
    assert "must be a JSON object" in resp.text


@pytest.mark.parametrize("name", ["5", "true", "[1]", '{"a": 1}'])
async def test_an_operation_name_that_is_not_a_string_is_a_400(client, reader, name):
    resp = await post(client, reader, f'{{"query": "{{__typename}}", "operationName": {name}}}')
    assert resp.status_code == 400, resp.text
    assert "operationName" in resp.text
    # null still means "the document's only operation"
    resp = await post(client, reader, '{"query": "{__typename}", "operationName": null}')
    assert resp.json() == {"data": {"__typename": "Query"}}


def test_metrics_label_a_name_that_is_not_a_string_anonymous():
    # The websocket transport passes operationName through unchecked.
    assert operation_label(5) == "anonymous"  # type: ignore[arg-type]
    assert operation_label(["x"]) == "anonymous"  # type: ignore[arg-type]


async def test_an_undeclared_variable_is_a_validation_error(client, reader):
    resp = await client.post(
        "/graphql",
        json={"query": "{ cases(first: $x) { nodes { id } } }"},
        headers=auth_header(reader),
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body.get("data") is None, body
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert "Variable '$x' is not defined" in body["errors"][0]["message"]


async def test_an_undeclared_variable_in_a_named_operation(client, reader):
    query = "query Q { cases(first: $x) { nodes { id } } }"
    resp = await client.post("/graphql", json={"query": query}, headers=auth_header(reader))
    body = resp.json()
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert "Variable '$x' is not defined by operation 'Q'" in body["errors"][0]["message"]


async def test_a_subscription_over_post_points_to_the_websocket(client, reader):
    resp = await client.post(
        "/graphql",
        json={"query": "subscription { caseEvents { kind } }"},
        headers=auth_header(reader),
    )
    body = resp.json()
    assert body.get("data") is None, body
    assert codes(body) == ["BAD_USER_INPUT"], body
    message = body["errors"][0]["message"]
    assert "WebSocket" in message and "graphql-transport-ws" in message


@pytest.mark.parametrize(
    "query",
    [
        "subscription S { caseEvents { kind } } query Q { __typename }",
        "query Q { __typename } subscription S { caseEvents { kind } }",
    ],
)
async def test_the_selected_operation_decides_whether_post_may_run_it(client, reader, query):
    """Over POST, a document holding a subscription runs its query when operationName
    selects the query (wherever the subscription stands), and points to the WebSocket
    when it selects the subscription."""
    resp = await client.post(
        "/graphql", json={"query": query, "operationName": "Q"}, headers=auth_header(reader)
    )
    assert resp.json() == {"data": {"__typename": "Query"}}
    resp = await client.post(
        "/graphql", json={"query": query, "operationName": "S"}, headers=auth_header(reader)
    )
    body = resp.json()
    assert body.get("data") is None, body
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert "graphql-transport-ws" in body["errors"][0]["message"]


async def test_a_subscription_over_get_points_to_the_websocket(client, reader):
    resp = await client.get(
        "/graphql",
        params={"query": "subscription { caseEvents { kind } }"},
        headers=auth_header(reader),
    )
    body = resp.json()
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert "graphql-transport-ws" in body["errors"][0]["message"]
    # A query over GET is still refused as before.
    resp = await client.get(
        "/graphql", params={"query": "{ __typename }"}, headers=auth_header(reader)
    )
    assert resp.status_code == 400, resp.text


async def test_several_operations_and_no_operation_name_is_graphql_cores_error(client, reader):
    """strawberry ran the first named operation; the spec (and graphql-core) ask for a name."""
    query = "query A { __typename } query B { __typename }"
    body = (await post(client, reader, f'{{"query": "{query}"}}')).json()
    assert body.get("data") is None, body
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["message"] == (
        "Must provide operation name if query contains multiple operations."
    )
    named = await post(client, reader, f'{{"query": "{query}", "operationName": "B"}}')
    assert named.json() == {"data": {"__typename": "Query"}}


async def test_two_anonymous_operations_are_a_validation_error(client, reader):
    body = (await post(client, reader, '{"query": "{ __typename } { __typename }"}')).json()
    assert body.get("data") is None, body
    assert codes(body) == ["BAD_USER_INPUT", "BAD_USER_INPUT"], body
    assert body["errors"][0]["message"] == (
        "This anonymous operation must be the only defined operation."
    )


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_an_operation_name_naming_no_operation_is_a_400(client, reader, method):
    params = {"query": "query A { __typename }", "operationName": "Z"}
    if method == "POST":
        resp = await client.post("/graphql", json=params, headers=auth_header(reader))
    else:
        resp = await client.get("/graphql", params=params, headers=auth_header(reader))
    assert resp.status_code == 400, resp.text
    assert 'Unknown operation named "Z"' in resp.text
