"""Evaluation runs: figures per failure mode and slice, the false alarm rate, comparisons, and
the proposed resolution a reviewer accepts."""

from __future__ import annotations

import pytest

from tests.conftest import auth_header
from tests.gateway.helpers import codes, data, gql
from tests.safeguards.builders import (
    ACCEPT,
    COMPARE,
    a_name,
    create_suite,
    ingest,
    model_cases,
    record_run,
)

GROUP = "query($id: ID!) { group(id: $id) { status resolvedInVersion caseCount } }"
SLICE = """query($id: ID!, $by: String!) {
  evaluationRun(id: $id) { slice(by: $by) { value total passed notRun } } }"""


@pytest.fixture(scope="module")
async def tokens(token_for):
    return {
        "curator": await token_for("cases:ingest cases:write cases:read", clearance="restricted"),
        "ci": await token_for("evals:write cases:read", clearance="restricted"),
        "reviewer": await token_for("reviews:write cases:read", clearance="restricted"),
    }


@pytest.fixture
async def suite(client, tokens):
    """Seven cases of a fresh model: cases 0 and 6 share a failure mode, hence a group; the
    first four expect "harmful", the last three "safe"."""
    model, name = a_name("classifier"), a_name("suite")
    cases = model_cases(model, 7)
    for i, c in enumerate(cases):
        c["expected"] = {"label": "harmful" if i < 4 else "safe"}
        c["prediction"] = {"label": "safe" if i < 4 else "harmful"}
    cases[6]["expected"] = cases[0]["expected"]  # same fingerprint as case 0: one group
    cases[6]["prediction"] = cases[0]["prediction"]
    ids = await ingest(client, tokens["curator"], cases)
    await create_suite(client, tokens["curator"], name, model, ids=ids)
    return {"model": model, "name": name, "ids": ids, "cases": cases}


def _outcomes(ids, results, predictions=None, latencies=None):
    out = []
    for i, (case_id, result) in enumerate(zip(ids, results, strict=True)):
        if result is None:
            continue  # not run
        item = {"caseId": case_id, "outcome": result}
        if predictions:
            item["prediction"] = {"label": predictions[i]}
        if latencies:
            item["latencyMs"] = latencies[i]
        out.append(item)
    return out


async def test_a_run_reports_per_mode_figures_false_alarms_and_slices(client, tokens, suite):
    ids = suite["ids"]
    results = ["FAIL", "PASS", "ERROR", "PASS", "FAIL", "PASS", None]
    predictions = ["safe", "harmful", "harmful", "harmful", "harmful", "safe", "x"]
    run = await record_run(
        client,
        tokens["ci"],
        {
            "model": suite["model"],
            "version": "2.0.0-rc1",
            "suite": suite["name"],
            "outcomes": _outcomes(ids, results, predictions, [10, 20, 30, 40, 50, 60, 70]),
            "positiveLabel": "harmful",
        },
    )
    assert (run["total"], run["passed"], run["failed"], run["errored"], run["notRun"]) == (
        7,
        3,
        2,
        1,
        1,
    )
    assert run["passRate"] == pytest.approx(3 / 7)
    assert run["suite"] == {"name": suite["name"], "version": 1}
    assert (run["latencyP50Ms"], run["latencyP95Ms"]) == (30.0, 60.0)
    # Expected "safe" (negatives): cases 4 and 5 were predicted; 4 raised the alarm.
    assert run["falseAlarmRate"] == pytest.approx(1 / 2)
    assert run["positiveLabel"] == "harmful"

    by_mode = {m["value"]: m for m in run["byFailureMode"]}
    mode0 = suite["cases"][0]["failure_mode"]
    # Cases 0 (fail) and 6 (not run) share case 0's mode.
    assert (by_mode[mode0]["total"], by_mode[mode0]["failed"], by_mode[mode0]["notRun"]) == (
        2,
        1,
        1,
    )
    assert sum(m["total"] for m in run["byFailureMode"]) == 7
    assert {s["value"] for s in run["bySeverity"]} == {c["severity"] for c in suite["cases"]}
    # Cases 1, 3 and 5 passed, each the only case of its group; the group of 0 and 6 did not.
    assert sorted(p["groupId"] for p in run["proposals"]) == sorted(
        [await _group_of(client, tokens["ci"], ids[i]) for i in (1, 3, 5)]
    )

    body = data(
        await gql(client, tokens["ci"], SLICE, {"id": run["id"], "by": "environment.deployer"})
    )
    slices = body["evaluationRun"]["slice"]
    expected = {}
    for c, r in zip(suite["cases"], results, strict=True):
        key = c["environment"]["deployer"]
        expected.setdefault(key, [0, 0])
        expected[key][0] += 1
        expected[key][1] += r == "PASS"
    assert {s["value"]: [s["total"], s["passed"]] for s in slices} == expected
    body = data(await gql(client, tokens["ci"], SLICE, {"id": run["id"], "by": "model_version"}))
    assert body["evaluationRun"]["slice"][0]["value"] == "1.0.0"
    body = await gql(client, tokens["ci"], SLICE, {"id": run["id"], "by": "password"})
    assert codes(body) == ["BAD_USER_INPUT"]
    # A prefix without its key answered one "(none)" slice holding every case.
    for by in ("input.", "environment.", "signals."):
        body = await gql(client, tokens["ci"], SLICE, {"id": run["id"], "by": by})
        assert codes(body) == ["BAD_USER_INPUT"], by
        assert body["errors"][0]["extensions"]["errors"][0]["path"] == "by"


async def test_bad_runs_are_refused_with_the_field_named(client, tokens, suite):
    ids = suite["ids"]
    base = {"model": suite["model"], "version": "2", "suite": suite["name"]}
    body = await gql(
        client,
        tokens["ci"],
        "mutation($run: EvaluationRunInput!) { recordEvaluationRun(run: $run) { id } }",
        {
            "run": {
                **base,
                "outcomes": [
                    {"caseId": ids[0], "outcome": "PASS"},
                    {"caseId": ids[0], "outcome": "FAIL"},
                    {"caseId": "00000000-0000-0000-0000-000000000000", "outcome": "PASS"},
                ],
            }
        },
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    assert [e["path"] for e in body["errors"][0]["extensions"]["errors"]] == [
        "outcomes.1.caseId",
        "outcomes.2.caseId",
    ]
    for run, path in (
        (
            {**base, "outcomes": [{"caseId": ids[0], "outcome": "PASS", "latencyMs": -1}]},
            "outcomes.0.latencyMs",
        ),
        ({**base, "suiteVersion": 0, "outcomes": []}, "suiteVersion"),
        ({**base, "model": "someone-else", "outcomes": []}, "model"),
    ):
        body = await gql(
            client,
            tokens["ci"],
            "mutation($run: EvaluationRunInput!) { recordEvaluationRun(run: $run) { id } }",
            {"run": run},
        )
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["extensions"]["errors"][0]["path"] == path
    body = await gql(
        client,
        tokens["ci"],
        "mutation($run: EvaluationRunInput!) { recordEvaluationRun(run: $run) { id } }",
        {"run": {**base, "suite": "no-such-suite", "outcomes": []}},
    )
    assert codes(body) == ["NOT_FOUND"]


async def test_comparing_runs_and_accepting_the_proposed_resolution(
    client, tokens, suite, token_for
):
    ids, model = suite["ids"], suite["model"]
    v1 = await record_run(
        client,
        tokens["ci"],
        {
            "model": model,
            "version": "1.0.0",
            "suite": suite["name"],
            "outcomes": _outcomes(ids, ["FAIL", "PASS", "FAIL", "PASS", "ERROR", "PASS", "PASS"]),
        },
    )
    # Cases 1, 3 and 5 each are a whole group that passed: proposed for version 1.0.0.
    assert sorted(p["groupId"] for p in v1["proposals"]) == sorted(
        [await _group_of(client, tokens["ci"], ids[i]) for i in (1, 3, 5)]
    )
    # Release candidate 2.0.0 has no case of its own yet: it is recorded all the same.
    v2 = await record_run(
        client,
        tokens["ci"],
        {
            "model": model,
            "version": "2.0.0",
            "suite": suite["name"],
            "outcomes": _outcomes(ids, ["PASS", "FAIL", "FAIL", "PASS", "PASS", "PASS", "PASS"]),
        },
    )
    body = data(await gql(client, tokens["ci"], COMPARE, {"a": v1["id"], "b": v2["id"]}))
    cmp = body["compareRuns"]
    assert {c["caseId"] for c in cmp["fixed"]} == {ids[0], ids[4]}
    assert [c["caseId"] for c in cmp["regressed"]] == [ids[1]]
    assert cmp["regressed"][0]["before"] == "PASS" and cmp["regressed"][0]["after"] == "FAIL"
    assert [c["caseId"] for c in cmp["stillFailing"]] == [ids[2]]
    assert (cmp["onlyInA"], cmp["onlyInB"]) == (0, 0)
    fixed0 = next(c for c in cmp["fixed"] if c["caseId"] == ids[0])
    assert fixed0["failureMode"] == suite["cases"][0].get("failure_mode")

    # Case 0 and case 6 form one group: both passed in 2.0.0, so it is proposed there.
    group = await _group_of(client, tokens["ci"], ids[0])
    [proposal] = [p for p in v2["proposals"] if p["groupId"] == group]
    assert (proposal["version"], proposal["caseCount"], proposal["status"]) == (
        "2.0.0",
        2,
        "proposed",
    )

    # Only a reviewer accepts; then the catalog has the group resolved in that version.
    body = await gql(client, tokens["ci"], ACCEPT, {"id": proposal["id"]})
    assert codes(body) == ["FORBIDDEN"]
    outsider = await token_for("reviews:write cases:read", team="elsewhere", clearance="public")
    body = await gql(client, outsider, ACCEPT, {"id": proposal["id"]})
    assert codes(body) == ["NOT_FOUND"]
    accepted = data(await gql(client, tokens["reviewer"], ACCEPT, {"id": proposal["id"]}))
    assert accepted["acceptResolution"]["status"] == "accepted"
    state = data(await gql(client, tokens["ci"], GROUP, {"id": group}))["group"]
    assert (state["status"], state["resolvedInVersion"], state["caseCount"]) == (
        "RESOLVED",
        "2.0.0",
        2,
    )
    body = await gql(client, tokens["reviewer"], ACCEPT, {"id": proposal["id"]})
    assert codes(body) == ["CONFLICT"]


async def _group_of(client, token, case_id):
    body = await gql(
        client, token, "query($id: ID!) { case(id: $id) { group { id } } }", {"id": case_id}
    )
    return data(body)["case"]["group"]["id"]


async def test_a_non_finite_latency_is_refused_naming_it(client, tokens, suite):
    """A REST body's 1e999 parses as infinity: a run with an infinite latency was stored and
    its p50/p95 answered inf (NaN got 'greater than or equal to 0'). Both are refused at the
    outcome's latency now, and no run is stored."""
    for number in (b"1e999", b"-1e999", b"NaN"):
        body = (
            b'{"model": "%s", "version": "9", "suite": "%s", "outcomes": '
            b'[{"case_id": "%s", "outcome": "pass", "latency_ms": %s}]}'
            % (suite["model"].encode(), suite["name"].encode(), suite["ids"][0].encode(), number)
        )
        resp = await client.post(
            "/safeguards/v1/runs",
            content=body,
            headers={**auth_header(tokens["ci"]), "content-type": "application/json"},
        )
        assert resp.status_code == 400, resp.text
        errors = resp.json()["errors"]
        assert [e["path"] for e in errors] == ["outcomes.0.latency_ms"]
        assert "finite" in errors[0]["message"]
    runs = await gql(
        client,
        tokens["ci"],
        'query($m: String!) { evaluationRuns(model: $m, version: "9") { id } }',
        {"m": suite["model"]},
    )
    assert data(runs)["evaluationRuns"] == []


async def test_nul_in_a_run_is_refused_at_its_field_on_both_backends(client, tokens, suite):
    """A prediction, error or version holding U+0000 got 'a value in the request cannot be
    stored' naming no field on Postgres, and was stored on SQLite. Refused at its path now."""
    ids = suite["ids"]
    base = {"model": suite["model"], "version": "nul", "suite": suite["name"]}
    for run, path in (
        (
            {
                **base,
                "outcomes": [
                    {"caseId": ids[0], "outcome": "PASS", "prediction": {"label": "a\x00"}}
                ],
            },
            "outcomes.0.prediction",
        ),
        (
            {**base, "outcomes": [{"caseId": ids[0], "outcome": "ERROR", "error": "boom\x00"}]},
            "outcomes.0.error",
        ),
        ({**base, "outcomes": [], "positiveLabel": "\x00"}, "positiveLabel"),
    ):
        body = await gql(
            client,
            tokens["ci"],
            "mutation($run: EvaluationRunInput!) { recordEvaluationRun(run: $run) { id } }",
            {"run": run},
        )
        assert codes(body) == ["BAD_USER_INPUT"], path
        [error] = body["errors"][0]["extensions"]["errors"]
        assert error["path"] == path and "NUL" in error["message"]
    runs = await gql(
        client,
        tokens["ci"],
        'query($m: String!) { evaluationRuns(model: $m, version: "nul") { id } }',
        {"m": suite["model"]},
    )
    assert data(runs)["evaluationRuns"] == []


async def test_a_number_json_cannot_store_is_refused_at_its_field(client, tokens, suite):
    """A prediction holding an integer past 64 bits was a 500 INTERNAL (the JSON encoder
    refused it while the run was being stored); one holding 1e400 was stored as null, and a
    positive label of 1e400 as well. Each is refused at its field now, nothing stored."""
    case = suite["ids"][0]
    for prediction, label, path in (
        (b'{"score": 123456789012345678901234567890}', b"null", "outcomes.0.prediction"),
        (b"[1, -1e400]", b"null", "outcomes.0.prediction"),
        (b"null", b"1e400", "positive_label"),
    ):
        body = (
            b'{"model": "%s", "version": "big", "suite": "%s", "positive_label": %s, "outcomes": '
            b'[{"case_id": "%s", "outcome": "pass", "prediction": %s}]}'
            % (suite["model"].encode(), suite["name"].encode(), label, case.encode(), prediction)
        )
        resp = await client.post(
            "/safeguards/v1/runs",
            content=body,
            headers={**auth_header(tokens["ci"]), "content-type": "application/json"},
        )
        assert resp.status_code == 400, resp.text
        assert [e["path"] for e in resp.json()["errors"]] == [path]
    runs = await gql(
        client,
        tokens["ci"],
        'query($m: String!) { evaluationRuns(model: $m, version: "big") { id } }',
        {"m": suite["model"]},
    )
    assert data(runs)["evaluationRuns"] == []


async def test_a_proposal_for_a_group_resolved_since_is_a_conflict(client, tokens, suite):
    """Two runs that both pass a group each propose resolving it. Accepting the first
    resolved it in 1.0.0; accepting the second then moved the resolution to 1.1.0, silently.
    The second is a CONFLICT now, and the group stays resolved in 1.0.0."""
    ids, model = suite["ids"], suite["model"]
    runs = [
        await record_run(
            client,
            tokens["ci"],
            {
                "model": model,
                "version": version,
                "suite": suite["name"],
                "outcomes": [{"caseId": i, "outcome": "PASS"} for i in ids],
            },
        )
        for version in ("1.0.0", "1.1.0")
    ]
    group = await _group_of(client, tokens["ci"], ids[1])
    first, second = (next(p for p in r["proposals"] if p["groupId"] == group) for r in runs)
    data(await gql(client, tokens["reviewer"], ACCEPT, {"id": first["id"]}))
    body = await gql(client, tokens["reviewer"], ACCEPT, {"id": second["id"]})
    assert codes(body) == ["CONFLICT"]
    assert "already resolved in version 1.0.0" in body["errors"][0]["message"]
    state = data(await gql(client, tokens["ci"], GROUP, {"id": group}))["group"]
    assert (state["status"], state["resolvedInVersion"]) == ("RESOLVED", "1.0.0")


async def test_rest_takes_the_outcomes_as_graphql_spells_them(client, tokens, suite):
    """SAFEGUARDS.md: POST /safeguards/v1/runs takes recordEvaluationRun's body in snake_case,
    whose outcomes are PASS|FAIL|ERROR; "PASS" was refused with "Input should be 'pass',
    'fail' or 'error'"."""
    ids = suite["ids"]
    run = {
        "model": suite["model"],
        "version": "rest-2",
        "suite": suite["name"],
        "outcomes": [
            {"case_id": ids[0], "outcome": "PASS"},
            {"case_id": ids[1], "outcome": "FAIL"},
            {"case_id": ids[2], "outcome": "error"},
        ],
    }
    resp = await client.post("/safeguards/v1/runs", json=run, headers=auth_header(tokens["ci"]))
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert (answer["passed"], answer["failed"], answer["errored"]) == (1, 1, 1), answer
    run["outcomes"] = [{"case_id": ids[0], "outcome": "MAYBE"}]
    resp = await client.post("/safeguards/v1/runs", json=run, headers=auth_header(tokens["ci"]))
    assert resp.status_code == 400 and resp.json()["errors"][0]["path"] == "outcomes.0.outcome"
