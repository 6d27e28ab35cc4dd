"""Context events through GraphQL: recordContextEvent, contextEvents(filter, first, after),
FailureCase.contextEvents and FailureGroup.startedAfter, their errors, and their cost (a page
of cases with its events costs the same statements for 10 cases or 100)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.catalog.builders import unique
from tests.corpus import aiid_cases
from tests.gateway.helpers import INGEST, case_input, codes, data, gql
from tests.gateway.test_query_count import counting, outbox_drained

T0 = datetime(2026, 8, 3, 9, 30, tzinfo=UTC)

RECORD = """mutation($e: ContextEventInput!) {
  recordContextEvent(event: $e) {
    id kind occurredAt recordedBy link title details externalId
    scope { model version dataSource environment }
  }
}"""

CASES = """query($f: CaseFilterInput, $n: Int!, $w: Int! = 168) {
  cases(filter: $f, first: $n) {
    nodes {
      id occurredAt
      contextEvents(windowHours: $w) { id kind }
      group {
        id
        startedAfter(windowHours: $w) { casesAfter casesWithinWindow event { id kind title } }
      }
    }
  }
}"""


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def ingest_at(client, token, model: str, n: int, **overrides: Any) -> list[str]:
    """n real incidents of `model`, one hour apart from T0."""
    cases = unique(aiid_cases(n, model=model))
    for i, c in enumerate(cases):
        c.update(
            model={"name": model, "version": "5.1"},
            occurred_at=iso(T0 + timedelta(hours=i)),
            failure_mode="distribution_shift.concept_drift",
            **overrides,
        )
    got = data(await gql(client, token, INGEST, {"cases": [case_input(c) for c in cases]}))
    assert all(r["status"] == "CREATED" for r in got["ingestCases"]), got
    return [r["id"] for r in got["ingestCases"]]


async def test_record_list_and_read_events_around_cases_and_groups(client, token_for):
    token = await token_for("cases:read cases:ingest")
    model = f"incident-classifier-{secrets.token_hex(3)}"
    source = f"aiid-{secrets.token_hex(3)}"
    ids = await ingest_at(client, token, model, 3, data_source=source)
    deployers = [c["environment"]["deployer"] for c in aiid_cases(3)]
    assert deployers[0] != deployers[1]  # the real incidents were deployed by different parties

    deploy = {
        "kind": "DEPLOY",
        "occurredAt": iso(T0 - timedelta(hours=6)),
        "scope": {"model": model, "version": "5.1", "environment": {"deployer": deployers[0]}},
        "link": "https://deploy.example/releases/5.1",
        "title": "5.1 to every region",
        "details": {"rollout": "100%", "previousVersion": "5.0"},
        "externalId": f"rel-{secrets.token_hex(4)}",
    }
    recorded = data(await gql(client, token, RECORD, {"e": deploy}))["recordContextEvent"]
    assert recorded["kind"] == "DEPLOY"
    assert recorded["details"] == {"rollout": "100%", "previousVersion": "5.0"}
    assert recorded["scope"]["version"] == "5.1" and recorded["scope"]["dataSource"] is None
    again = data(await gql(client, token, RECORD, {"e": deploy}))["recordContextEvent"]
    assert again["id"] == recorded["id"]  # the same externalId: the event already stored
    drift = {
        "kind": "DRIFT_ALERT",
        "occurredAt": iso(T0 - timedelta(hours=2)),
        "scope": {"model": model, "dataSource": source},
        "details": {"metric": "psi", "value": 0.29, "threshold": 0.2, "feature": "parties"},
    }
    drift_id = data(await gql(client, token, RECORD, {"e": drift}))["recordContextEvent"]["id"]

    # Only the cases of the deploy's environment (deployer) match its scope.
    got = data(await gql(client, token, CASES, {"f": {"dataSource": source}, "n": 10}))
    by_id = {c["id"]: c for c in got["cases"]["nodes"]}
    for case_id, deployer in zip(ids, deployers, strict=True):
        expected = [drift_id] + ([recorded["id"]] if deployer == deployers[0] else [])
        assert [e["id"] for e in by_id[case_id]["contextEvents"]] == expected
    started = by_id[ids[0]]["group"]["startedAfter"]
    assert started["event"]["id"] == drift_id
    assert (started["casesAfter"], started["casesWithinWindow"]) == (3, 3)
    # A window shorter than the gap leaves nothing.
    short = data(await gql(client, token, CASES, {"f": {"dataSource": source}, "n": 10, "w": 1}))
    first = {c["id"]: c for c in short["cases"]["nodes"]}[ids[0]]
    assert first["contextEvents"] == [] and first["group"]["startedAfter"] is None

    listing = """query($f: ContextEventFilterInput, $after: String) {
      contextEvents(filter: $f, first: 1, after: $after) {
        nodes { id kind } pageInfo { hasNextPage endCursor }
      }
    }"""
    page = data(await gql(client, token, listing, {"f": {"model": model}}))["contextEvents"]
    assert [n["id"] for n in page["nodes"]] == [drift_id] and page["pageInfo"]["hasNextPage"]
    rest = data(
        await gql(
            client, token, listing, {"f": {"model": model}, "after": page["pageInfo"]["endCursor"]}
        )
    )["contextEvents"]
    assert [n["id"] for n in rest["nodes"]] == [recorded["id"]]
    deploys = data(await gql(client, token, listing, {"f": {"model": model, "kinds": ["DEPLOY"]}}))[
        "contextEvents"
    ]
    assert [n["kind"] for n in deploys["nodes"]] == ["DEPLOY"]


async def test_bad_events_and_windows_are_coded_errors_naming_the_field(client, token_for):
    token = await token_for("cases:read cases:write")  # write alone may record too
    model = f"incident-classifier-{secrets.token_hex(3)}"
    cases = [
        (
            {"kind": "FEATURE_CHANGE", "scope": {"model": model}, "details": {"feature": "f"}},
            ["details.new_hash"],  # a key of the JSON value, as sent
        ),
        ({"kind": "DEPLOY", "scope": {"model": model}}, ["scope.version"]),
        (
            {
                "kind": "ENVIRONMENT_SHIFT",
                "occurredAt": iso(datetime.now(UTC) + timedelta(days=1)),
                "details": {"key": "gpu", "new": "a100"},
            },
            ["occurredAt"],
        ),
        ({"kind": "DRIFT_ALERT", "details": {"metric": "psi", "value": "high"}}, None),
    ]
    for event, paths in cases:
        body = await gql(client, token, RECORD, {"e": event})
        assert codes(body) == ["BAD_USER_INPUT"], body
        got = [e["path"] for e in body["errors"][0]["extensions"]["errors"]]
        if paths is not None:
            assert got == paths, body
        else:
            assert set(got) == {"details.value", "details.threshold"}, body
    unknown = await gql(client, token, RECORD, {"e": {"kind": "ROLLBACK"}})
    assert unknown["errors"] and "ROLLBACK" in unknown["errors"][0]["message"]
    bad_window = await gql(
        client, token, "{ cases(first: 1) { nodes { contextEvents(windowHours: 0) { id } } } }"
    )
    assert "BAD_USER_INPUT" in codes(bad_window) or not data(bad_window)["cases"]["nodes"]
    reader = await token_for("cases:read")
    denied = await gql(client, reader, RECORD, {"e": {"kind": "DEPLOY"}})
    assert codes(denied) == ["FORBIDDEN"]


async def test_a_page_with_events_and_attributions_costs_the_same_for_10_or_100(
    app, client, token_for
):
    token = await token_for("cases:read cases:ingest")
    model = f"incident-classifier-{secrets.token_hex(3)}"
    source = f"aiid-{secrets.token_hex(3)}"
    for _ in range(2):  # 100 cases over a few groups
        await ingest_at(client, token, model, 50, data_source=source)
    for hours in (-1, 30, 60):
        event = {
            "kind": "DRIFT_ALERT",
            "occurredAt": iso(T0 + timedelta(hours=hours)),
            "scope": {"model": model},
            "details": {"metric": "kl_divergence", "value": 0.5, "threshold": 0.1},
        }
        data(await gql(client, token, RECORD, {"e": event}))
    await outbox_drained(app.state.db)
    counts = {}
    for n in (10, 100):
        with counting(app.state.db.engine) as statements:
            got = data(await gql(client, token, CASES, {"f": {"dataSource": source}, "n": n}))
        nodes = got["cases"]["nodes"]
        assert len(nodes) == n and all(c["contextEvents"] for c in nodes)
        counts[n] = len(statements)
    assert counts[10] == counts[100], counts
    # page, groups, case scopes, their events, groups' first cases, their events, counts
    # since (+ BEGIN on some drivers)
    assert counts[100] <= 8, counts
