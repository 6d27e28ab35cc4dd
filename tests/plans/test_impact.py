"""Impact metrics: remediation time per team/model/failure mode over the groups a reader may
see, and retraining cycle time from plans, bucketed per week or month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.plans.impact import Period, period_start, summarize
from tests.gateway.helpers import data, gql
from tests.safeguards.builders import a_name, create_suite, ingest, model_cases

IMPACT = """query($metric: ImpactMetric!, $by: ImpactDimension!, $model: String, $since: DateTime) {
  impactMetrics(metric: $metric, by: $by, model: $model, since: $since, period: WEEK) {
    key period count meanHours medianHours p90Hours } }"""
GROUP = "query($id: ID!) { case(id: $id) { group { id firstSeen } } }"
RESOLVE = """mutation($id: ID!) { resolveGroup(id: $id, fixedInVersion: "1.0.0") {
  resolvedAt } }"""


def test_points_are_per_key_and_period_with_their_spread():
    wednesday = datetime(2026, 11, 25, 15, tzinfo=UTC)
    assert period_start(wednesday, Period.WEEK) == datetime(2026, 11, 23, tzinfo=UTC)
    assert period_start(wednesday, Period.MONTH) == datetime(2026, 11, 1, tzinfo=UTC)
    hours = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0]
    points = summarize(
        [("red", wednesday, h) for h in hours] + [("blue", wednesday - timedelta(days=7), 5.0)],
        Period.WEEK,
    )
    assert [(p.key, p.period.day, p.count) for p in points] == [("blue", 16, 1), ("red", 23, 10)]
    red = points[1]
    assert (red.mean_hours, red.median_hours, red.p90_hours) == (26.0, 15.0, 50.0)


@pytest.fixture(scope="module")
async def tokens(token_for):
    return {
        "curator": await token_for(
            "cases:ingest cases:write cases:read evals:write plans:write plans:read",
            clearance="restricted",
        ),
        "reviewer": await token_for("reviews:write plans:write plans:read", clearance="restricted"),
        "blue": await token_for("cases:read plans:read", team="blue"),
    }


async def test_remediation_time_per_team_follows_visibility(client, tokens):
    cur = tokens["curator"]
    model = a_name("ranker")
    red = await ingest(client, cur, model_cases(model, 2, team="red"))
    # Another expected label: a fingerprint (so a group) of its own.
    blue = await ingest(client, cur, model_cases(model, 1, team="blue", expected={"label": "b"}))
    expected: dict[str, list[float]] = {}
    for team, case_id in [("red", red[0]), ("red", red[1]), ("blue", blue[0])]:
        group = data(await gql(client, cur, GROUP, {"id": case_id}))["case"]["group"]
        resolved = data(await gql(client, cur, RESOLVE, {"id": group["id"]}))["resolveGroup"]
        took = datetime.fromisoformat(resolved["resolvedAt"]) - datetime.fromisoformat(
            group["firstSeen"]
        )
        expected.setdefault(team, []).append(took.total_seconds() / 3600)
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    variables = {"metric": "REMEDIATION_TIME", "by": "TEAM", "model": model, "since": since}
    points = every_team = data(await gql(client, cur, IMPACT, variables))["impactMetrics"]
    assert {p["key"]: p["count"] for p in points} == {"red": 2, "blue": 1}
    for p in points:
        assert p["meanHours"] == pytest.approx(sum(expected[p["key"]]) / len(expected[p["key"]]))
    # A blue reader sees the blue group only.
    points = data(await gql(client, tokens["blue"], IMPACT, variables))["impactMetrics"]
    assert [(p["key"], p["count"]) for p in points] == [("blue", 1)]
    by_model = data(await gql(client, cur, IMPACT, {**variables, "by": "MODEL"}))["impactMetrics"]
    assert [(p["key"], p["count"]) for p in by_model] == [(model, 3)]
    # A time without a zone is read as UTC: the same answer, not an INTERNAL error.
    naive = {**variables, "since": since.removesuffix("+00:00")}
    assert data(await gql(client, cur, IMPACT, naive))["impactMetrics"] == every_team


async def test_retraining_cycle_time_runs_from_approval_to_evaluation(client, tokens):
    cur, rev = tokens["curator"], tokens["reviewer"]
    model, suite = a_name("vision"), a_name("suite")
    cases = model_cases(model, 2)
    ids = await ingest(client, cur, cases)
    await create_suite(client, cur, suite, model, ids=ids)
    plan = {
        "title": "t",
        "model": model,
        "evidence": {"case_ids": ids},
        "targets": [{"suite": suite, "metric": "pass_rate", "op": ">=", "value": 1}],
    }
    created = data(
        await gql(
            client,
            cur,
            "mutation($p: JSON!) { createRetrainingPlan(plan: $p) { id } }",
            {"p": plan},
        )
    )["createRetrainingPlan"]
    move = """mutation($id: ID!, $s: PlanStatus!, $r: Int!) {
      setRetrainingPlanStatus(id: $id, status: $s, expectedRevision: $r) {
        revision approvedAt } }"""
    approved = data(await gql(client, rev, move, {"id": created["id"], "s": "APPROVED", "r": 1}))
    data(await gql(client, cur, move, {"id": created["id"], "s": "IN_PROGRESS", "r": 2}))
    evaluated = data(
        await gql(
            client,
            cur,
            "mutation($id: ID!) {"
            ' evaluateRetrainingPlan(id: $id, candidateVersion: "2") { evaluatedAt } }',
            {"id": created["id"]},
        )
    )["evaluateRetrainingPlan"]
    took = datetime.fromisoformat(evaluated["evaluatedAt"]) - datetime.fromisoformat(
        approved["setRetrainingPlanStatus"]["approvedAt"]
    )
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    variables = {"metric": "RETRAINING_CYCLE_TIME", "by": "MODEL", "model": model, "since": since}
    [point] = data(await gql(client, cur, IMPACT, variables))["impactMetrics"]
    assert (point["key"], point["count"]) == (model, 1)
    assert point["meanHours"] == pytest.approx(took.total_seconds() / 3600)
    modes = data(await gql(client, cur, IMPACT, {**variables, "by": "FAILURE_MODE"}))
    assert {p["key"] for p in modes["impactMetrics"]} == {c["failure_mode"] for c in cases}
