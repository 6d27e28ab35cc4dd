"""Capture policies: versioned definitions, enforced at ingest (required paths, the input
schema, the qualifying conditions), the version each case met, the GraphQL fields, the REST
route failcat-client reads, and the audit entry of each change. Cases are real AIID
incidents (tests/corpus.py)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from sqlalchemy import select, text

from services.catalog import service
from services.catalog.models import FailureCase
from shared.errors import BadUserInput
from shared.security import SYSTEM
from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases
from tests.gateway.helpers import codes, data, gql

# The AIID incidents as tests/corpus.py turns them into cases: confidence 0.5 .. 0.99,
# latency 10 .. 99 ms, prediction {"label": "safe"} vs expected {"label": "harmful"},
# input {"parties": [...]}, environment {"deployer": ...}.


def corpus(n: int) -> list[dict[str, Any]]:
    model = f"incident-classifier-{secrets.token_hex(3)}"
    cases = unique(aiid_cases(n, model=model))
    return cases


def key(cases: list[dict[str, Any]]) -> tuple[str, str]:
    return cases[0]["model"]["name"], cases[0]["data_source"]


async def statuses(session: Any, cases: list[dict[str, Any]]) -> list[Any]:
    return await service.ingest_cases(session, cases, SYSTEM)


async def policy_versions(session: Any, ids: list[str]) -> dict[str, int | None]:
    rows = await session.execute(
        select(FailureCase.id, FailureCase.capture_policy_version).where(FailureCase.id.in_(ids))
    )
    return dict(rows.all())


# --- enforcement at ingest -----------------------------------------------------------------
async def test_required_paths_make_an_item_invalid_naming_policy_and_path(session):
    cases = corpus(6)
    model, source = key(cases)
    policy = await service.set_capture_policy(
        session,
        model,
        source,
        {"name": "incident-capture", "required": ["input.parties", "environment.deployer"]},
        SYSTEM,
    )
    assert policy.version == 1
    del cases[1]["input"]
    cases[2]["environment"] = {}
    cases[3]["input"] = {"parties": None}  # null is not "present"
    results = await statuses(session, cases)
    assert [r.status for r in results] == [
        "created",
        "invalid",
        "invalid",
        "invalid",
        "created",
        "created",
    ]
    label = "required by capture policy 'incident-capture' (version 1)"
    assert results[1].errors == [{"path": "input.parties", "message": label}]
    assert results[2].errors == [{"path": "environment.deployer", "message": label}]
    assert results[3].errors == [{"path": "input.parties", "message": label}]
    stored = await policy_versions(session, [r.id for r in results if r.id])
    assert set(stored.values()) == {1}


async def test_an_item_that_does_not_qualify_is_invalid_with_the_conditions_named(session):
    cases = corpus(50)
    model, source = key(cases)
    await service.set_capture_policy(
        session,
        model,
        source,
        {"qualify": {"confidence_below": 0.6, "latency_over_ms": 90}},
        SYSTEM,
    )
    results = await statuses(session, cases)
    for case, r in zip(cases, results, strict=True):
        qualifies = case["confidence"] < 0.6 or case["latency_ms"] > 90
        assert r.status == ("created" if qualifies else "invalid"), (case, r)
        if not qualifies:
            [error] = r.errors
            assert error["path"] == "$"
            assert error["message"] == (
                f"does not qualify under capture policy '{model}/{source}' (version 1): none "
                "of its conditions holds (confidence below 0.6; latency_ms over 90)"
            )
    assert 0 < sum(r.status == "created" for r in results) < len(cases)


@pytest.mark.parametrize(
    "qualify, change, qualifies",
    [
        ({"prediction_mismatch": True}, {}, True),  # "safe" vs "harmful"
        ({"prediction_mismatch": True}, {"expected": {"label": "safe", "note": "x"}}, False),
        ({"prediction_mismatch": True}, {"expected": None}, False),
        ({"signals": ["policy_violation"]}, {"signals": {"policy_violation": "pii"}}, True),
        ({"signals": ["policy_violation"]}, {"signals": {"policy_violation": False}}, False),
        ({"exception": True}, {"signals": {"exception": {"type": "ValueError"}}}, True),
        ({"exception": True}, {}, False),
        ({"confidence_above": 0.95}, {"confidence": 0.97}, True),
        ({"confidence_above": 0.95}, {"confidence": 0.95}, False),
    ],
)
async def test_each_qualifying_condition(session, qualify, change, qualifies):
    [case] = corpus(1)
    case.update(change)
    case = {k: v for k, v in case.items() if v is not None}
    model, source = key([case])
    await service.set_capture_policy(session, model, source, {"qualify": qualify}, SYSTEM)
    [result] = await statuses(session, [case])
    assert result.status == ("created" if qualifies else "invalid"), result


async def test_input_schema_errors_name_the_path_inside_input(session):
    cases = corpus(3)
    model, source = key(cases)
    schema = {
        "type": "object",
        "required": ["parties"],
        "properties": {"parties": {"type": "array", "items": {"type": "string"}}},
    }
    await service.set_capture_policy(session, model, source, {"input_schema": schema}, SYSTEM)
    cases[1]["input"] = {"parties": ["a", 4111111111111111]}
    del cases[2]["input"]
    results = await statuses(session, cases)
    assert [r.status for r in results] == ["created", "invalid", "invalid"]
    # The rule broken, never the value (it may be personal data: here a card number).
    assert results[1].errors == [
        {
            "path": "input.parties.1",
            "message": f"capture policy '{model}/{source}' (version 1): fails the input "
            "schema's 'type' (\"string\")",
        }
    ]
    assert "4111" not in str(results[1].errors)
    assert results[2].errors[0]["path"] == "input"


async def test_versions_each_case_records_the_one_it_met(session):
    cases = corpus(4)
    model, source = key(cases)
    first = await statuses(session, cases[:1])  # no policy yet
    v1 = await service.set_capture_policy(session, model, source, {"required": ["input"]}, SYSTEM)
    second = await statuses(session, cases[1:2])
    same = await service.set_capture_policy(session, model, source, {"required": ["input"]}, SYSTEM)
    assert (same.id, same.version) == (v1.id, 1)  # no change, no new version
    v2 = await service.set_capture_policy(
        session, model, source, {"required": ["input", "environment.deployer"]}, SYSTEM
    )
    assert v2.version == 2
    third = await statuses(session, cases[2:])
    ids = [r.id for r in first + second + third]
    stored = await policy_versions(session, ids)
    assert [stored[i] for i in ids] == [None, 1, 2, 2]
    history = await service.capture_policy_history(session, model, source)
    assert [h.version for h in history] == [2, 1]
    old = await service.get_capture_policy(session, model, source, version=1)
    assert old.definition["required"] == ["input"]
    # Another model's items are not held to it.
    other = corpus(1)
    other[0]["data_source"] = source
    [result] = await statuses(session, other)
    assert result.status == "created"


async def test_bad_definitions_are_refused_with_their_paths(session):
    cases = corpus(1)
    model, source = key(cases)
    with pytest.raises(BadUserInput) as exc:
        await service.set_capture_policy(
            session,
            model,
            source,
            {
                "required": ["inputs.x", "input..x"],
                "qualify": {"confidence_below": 2},
                "surprise": 1,
            },
            SYSTEM,
        )
    paths = {e.path for e in exc.value.errors}
    assert paths == {"qualify.confidence_below", "surprise"}
    with pytest.raises(BadUserInput) as exc:
        await service.set_capture_policy(
            session, model, source, {"required": ["inputs.x", "input..x", "input.ok"]}, SYSTEM
        )
    assert [e.path for e in exc.value.errors] == ["required.0", "required.1"]
    with pytest.raises(BadUserInput) as exc:
        await service.set_capture_policy(
            session, model, source, {"input_schema": {"type": "no-such-type"}}, SYSTEM
        )
    assert exc.value.errors[0].path.startswith("input_schema")
    assert await service.get_capture_policy(session, model, source) is None


async def test_a_ref_that_does_not_resolve_is_refused_when_set(session):
    """Remote references are never fetched, so a schema relying on one checked no item:
    setCapturePolicy accepted it and then every item of its key answered a 500 ('unexpected
    error', jsonschema's Unresolvable), stopping all ingestion of that model and source."""
    cases = corpus(2)
    model, source = key(cases)
    remote = {"type": "object", "properties": {"parties": {"$ref": "https://example.com/p.json"}}}
    with pytest.raises(BadUserInput) as exc:
        await service.set_capture_policy(session, model, source, {"input_schema": remote}, SYSTEM)
    assert [(e.path, e.message) for e in exc.value.errors] == [
        (
            "input_schema.properties.parties.$ref",
            "'https://example.com/p.json' does not resolve within the schema (remote ones are "
            "never fetched)",
        )
    ]
    missing = {"properties": {"parties": {"$ref": "#/$defs/parties"}}}
    with pytest.raises(BadUserInput):
        await service.set_capture_policy(session, model, source, {"input_schema": missing}, SYSTEM)
    anchorless = {"properties": {"parties": {"$dynamicRef": "#names"}}}
    with pytest.raises(BadUserInput) as exc:
        await service.set_capture_policy(
            session, model, source, {"input_schema": anchorless}, SYSTEM
        )
    assert exc.value.errors[0].path == "input_schema.properties.parties.$dynamicRef"
    # References within the schema are fine, in 2020-12 and in draft-07, under nested $ids.
    local = {
        "$id": "https://schemas.example/incident",
        "$defs": {"names": {"$id": "names", "type": "array", "items": {"$ref": "#/$defs/n"},
                            "$defs": {"n": {"type": "string"}}},
                  "more": {"$dynamicAnchor": "more", "type": "string"}},
        "properties": {"parties": {"$ref": "names"}, "more": {"$dynamicRef": "#more"}},
    }  # fmt: skip
    await service.set_capture_policy(session, model, source, {"input_schema": local}, SYSTEM)
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"names": {"type": "array"}},
        "properties": {"parties": {"$ref": "#/definitions/names"}},
    }
    await service.set_capture_policy(session, model, source, {"input_schema": draft7}, SYSTEM)
    results = await statuses(session, cases)
    assert [r.status for r in results] == ["created", "created"]


async def test_a_stored_schema_whose_ref_does_not_resolve_makes_items_invalid_not_a_500(
    session, monkeypatch
):
    """A version stored before such schemas were refused: each item is answered invalid,
    naming the reference, instead of the batch failing; and the reference is not fetched
    (jsonschema's default fetched it with urlopen, from the server, for every item)."""
    import urllib.request

    from services.catalog import capture_policies

    fetched: list[Any] = []

    def urlopen(*args: Any, **kwargs: Any) -> Any:
        fetched.append(args[0])
        raise OSError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    cases = corpus(2)
    model, source = key(cases)
    monkeypatch.setattr(
        capture_policies, "_unresolvable_refs", lambda schema, cls: [], raising=False
    )
    remote = {"properties": {"parties": {"$ref": "https://example.com/p.json"}}}
    await service.set_capture_policy(session, model, source, {"input_schema": remote}, SYSTEM)
    results = await statuses(session, cases)
    assert [r.status for r in results] == ["invalid", "invalid"]
    assert results[0].errors == [
        {
            "path": "input",
            "message": f"capture policy '{model}/{source}' (version 1): the input schema's "
            "$ref https://example.com/p.json does not resolve",
        }
    ]
    assert fetched == []


# --- GraphQL, REST, audit ------------------------------------------------------------------
SET = """mutation($m: String!, $d: String!, $p: CapturePolicyInput!) {
  setCapturePolicy(model: $m, dataSource: $d, policy: $p) {
    model dataSource version name required inputSchema
    qualify { confidenceBelow latencyOverMs predictionMismatch signals exception }
  }
}"""
GET = """query($m: String!, $d: String!, $v: Int) {
  capturePolicy(model: $m, dataSource: $d, version: $v) {
    version required qualify { confidenceBelow }
  }
}"""


async def test_graphql_rest_and_audit(client, admin_token, token_for, app):
    cases = corpus(3)
    model, source = key(cases)
    policy = {
        "name": "triage-worthy",
        "qualify": {"confidenceBelow": 0.9, "signals": ["policy_violation"]},
        "required": ["input.parties"],
    }
    body = await gql(client, admin_token, SET, {"m": model, "d": source, "p": policy})
    saved = data(body)["setCapturePolicy"]
    assert saved == {
        "model": model,
        "dataSource": source,
        "version": 1,
        "name": "triage-worthy",
        "required": ["input.parties"],
        "inputSchema": None,
        "qualify": {
            "confidenceBelow": 0.9,
            "latencyOverMs": None,
            "predictionMismatch": False,
            "signals": ["policy_violation"],
            "exception": False,
        },
    }
    policy["required"] = []
    data(await gql(client, admin_token, SET, {"m": model, "d": source, "p": policy}))
    reader = await token_for("cases:read")
    got = data(await gql(client, reader, GET, {"m": model, "d": source}))["capturePolicy"]
    assert got == {"version": 2, "required": [], "qualify": {"confidenceBelow": 0.9}}
    got = data(await gql(client, reader, GET, {"m": model, "d": source, "v": 1}))
    assert got["capturePolicy"]["required"] == ["input.parties"]
    missing = data(await gql(client, reader, GET, {"m": model, "d": "nowhere"}))
    assert missing["capturePolicy"] is None
    # Not an admin: refused. A bad definition: BAD_USER_INPUT naming the camelCase path.
    denied = await gql(client, reader, SET, {"m": model, "d": source, "p": policy})
    assert codes(denied) == ["FORBIDDEN"]
    bad = await gql(
        client, admin_token, SET, {"m": model, "d": source, "p": {"qualify": {"latencyOverMs": -1}}}
    )
    assert codes(bad) == ["BAD_USER_INPUT"]
    assert bad["errors"][0]["extensions"]["errors"][0]["path"] == "qualify.latencyOverMs"

    # The REST route a producer's client (cases:ingest only) reads.
    producer = await token_for("cases:ingest")
    resp = await client.get(
        "/catalog/v1/capture-policies",
        params={"model": model, "data_source": source},
        headers=auth_header(producer),
    )
    assert resp.status_code == 200, resp.text
    [current] = resp.json()["policies"]
    assert current["version"] == 2 and current["qualify"]["confidence_below"] == 0.9
    assert current["qualify"]["signals"] == ["policy_violation"]
    resp = await client.get(
        "/catalog/v1/capture-policies",
        params={"model": model, "data_source": "nowhere"},
        headers=auth_header(producer),
    )
    assert resp.json() == {"policies": []}
    nobody = await token_for("plans:read")
    resp = await client.get(
        "/catalog/v1/capture-policies", params={"model": model}, headers=auth_header(nobody)
    )
    assert resp.status_code == 403

    # Ingest through the bulk route: the version met shows in the REST case and GraphQL.
    cases[1]["confidence"] = 0.95  # does not qualify under version 2
    resp = await client.post("/catalog/v1/cases:bulk", json=cases, headers=auth_header(producer))
    results = resp.json()["results"]
    assert [r["status"] for r in results] == ["created", "invalid", "created"]
    assert (
        "does not qualify under capture policy 'triage-worthy' (version 2)"
        in (results[1]["errors"][0]["message"])
    )
    resp = await client.get(
        f"/catalog/v1/cases/{results[0]['id']}", headers=auth_header(admin_token)
    )
    assert resp.json()["capture_policy_version"] == 2
    body = await gql(
        client,
        admin_token,
        "query($id: ID!) { case(id: $id) { capturePolicyVersion } }",
        {"id": results[2]["id"]},
    )
    assert data(body)["case"]["capturePolicyVersion"] == 2

    # Each change is audited: the action, the version, no definition values.
    async with app.state.db.transaction() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT action, details FROM audit_log WHERE action = "
                    "'catalog.capture_policy.set' ORDER BY seq"
                )
            )
        ).all()
    mine = [r for r in rows if (_details(r.details) or {}).get("model") == model]
    assert [_details(r.details)["version"] for r in mine] == [1, 2]
    assert "0.9" not in str(mine) and "parties" not in str(mine)


def _details(value: Any) -> dict[str, Any]:
    import json

    return json.loads(value) if isinstance(value, str) else value
