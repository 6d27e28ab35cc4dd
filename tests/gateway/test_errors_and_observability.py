"""Errors carry codes and mask the unexpected; metrics, correlation ids and JSON logs."""

from __future__ import annotations

import json
import logging

from services.catalog import service
from services.catalog.limits import MAX_PAGE_SIZE
from shared.logging import JsonFormatter
from tests.conftest import auth_header
from tests.gateway.helpers import codes, gql

SECRET = "alice@example.com card 4111-1111-1111-1111"


async def test_unexpected_errors_are_masked_and_logged_without_inputs(
    client, token_for, monkeypatch, caplog
):
    token = await token_for("cases:read")

    async def broken(session, f, *args):
        raise RuntimeError(f"driver said: bad value {f.team!r} in INSERT INTO failure_case")

    monkeypatch.setattr(service, "list_cases", broken)
    with caplog.at_level(logging.INFO):
        resp = await client.post(
            "/graphql",
            json={
                "query": "query Cases($who: String) { cases(filter: {team: $who}) { nodes { id } } }",  # noqa: E501
                "variables": {"who": SECRET},
            },
            headers=auth_header(token),
        )
    body = resp.json()
    [error] = body["errors"]
    assert error["message"] == "Internal error"
    assert error["extensions"]["code"] == "INTERNAL"
    cid = error["extensions"]["correlation_id"]
    assert resp.headers["x-correlation-id"] == cid
    text = resp.text
    assert SECRET not in text and "INSERT" not in text and "Traceback" not in text

    records = [r for r in caplog.records if r.name == "failcat.graphql"]
    assert records, "the masked error is logged"
    for record in records:
        line = JsonFormatter().format(record)
        assert SECRET not in line  # frames quote source lines, never values
        assert json.loads(line)["correlation_id"] == cid
        assert "RuntimeError" in line  # the type and the frames: enough to find the bug


async def test_every_error_has_a_code(client, token_for):
    token = await token_for("cases:read")
    cases = {
        '{ case(id: "nope") { id } }': "NOT_FOUND",
        "{ cases(first: 0) { nodes { id } } }": "BAD_USER_INPUT",
        "{ nope }": "BAD_USER_INPUT",
        "{ models { name ": "BAD_USER_INPUT",
        "mutation { rotateSigningKeys { kid } }": "FORBIDDEN",
    }
    for query, code in cases.items():
        assert codes(await gql(client, token, query)) == [code], query
    # The field is told its range in words (it said "max_page_size=500").
    body = await gql(client, token, "{ cases(first: 0) { nodes { id } } }")
    assert body["errors"][0]["extensions"]["errors"] == [
        {"path": "first", "message": f"between 1 and {MAX_PAGE_SIZE}"}
    ]


async def test_metrics_per_operation_name(client, token_for):
    token = await token_for("cases:read")
    for _ in range(3):
        await gql(client, token, "query DashboardRubric { severityRubric { grade } }")
    await gql(client, token, "query Refused { cases(first: 100000) { nodes { id } } }")
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    metrics = resp.text
    assert (
        'failcat_graphql_requests_total{operation="DashboardRubric",outcome="ok",'
        'type="query"}' in metrics
    )
    assert (
        'failcat_graphql_request_duration_seconds_bucket{le="0.005",'
        'operation="DashboardRubric",type="query"}' in metrics
    )
    assert 'operation="Refused",outcome="refused"' in metrics


async def test_a_sane_request_id_becomes_the_correlation_id(client):
    resp = await client.get("/healthz", headers={"x-request-id": "req-12345678"})
    assert resp.headers["x-correlation-id"] == "req-12345678"
    odd = await client.get("/healthz", headers={"x-request-id": "<script>"})
    assert odd.headers["x-correlation-id"] != "<script>"
