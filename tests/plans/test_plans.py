"""Retraining plans (evidence, targets, the status workflow, an outcome measured by runs) and
evaluation plans (versioned, with success criteria checked against runs)."""

from __future__ import annotations

import secrets

import pytest
from sqlmodel import select

from services.audit.models import AuditEntry
from tests.gateway.helpers import codes, data, gql
from tests.safeguards.builders import a_name, create_suite, ingest, model_cases, record_run

PLAN = """id status revision title model baseVersion candidateVersion targets augmentations
  changes evaluationSuites outcome approvedBy approvedAt startedAt evaluatedAt closedAt
  evidence { caseIds groupIds sliceQuery }"""
CREATE = f"mutation($p: JSON!) {{ createRetrainingPlan(plan: $p) {{ {PLAN} }} }}"
STATUS = f"""mutation($id: ID!, $s: PlanStatus!, $r: Int!) {{
  setRetrainingPlanStatus(id: $id, status: $s, expectedRevision: $r) {{ {PLAN} }} }}"""
EVALUATE = f"""mutation($id: ID!, $v: String!) {{
  evaluateRetrainingPlan(id: $id, candidateVersion: $v) {{ {PLAN} }} }}"""
EPLAN = "id name version model description benchmarks"


@pytest.fixture(scope="module")
async def tokens(token_for):
    return {
        "curator": await token_for(
            "cases:ingest cases:write cases:read evals:write plans:write plans:read",
            clearance="restricted",
        ),
        "reviewer": await token_for(
            "reviews:write plans:write plans:read cases:read", clearance="restricted"
        ),
        "outsider": await token_for("plans:read cases:read", team="elsewhere"),
    }


@pytest.fixture
async def setup(client, tokens):
    model, name = a_name("vision"), a_name("suite")
    ids = await ingest(client, tokens["curator"], model_cases(model, 4, team="vision"))
    await create_suite(client, tokens["curator"], name, model, ids=ids)
    await record_run(
        client,
        tokens["curator"],
        {
            "model": model,
            "version": "1",
            "suite": name,
            "outcomes": [
                {"caseId": i, "outcome": "PASS" if n < 2 else "FAIL", "latencyMs": 20}
                for n, i in enumerate(ids)
            ],
        },
    )
    body = await gql(
        client,
        tokens["curator"],
        "query($id: ID!) { case(id: $id) { group { id } } }",
        {"id": ids[2]},
    )
    return {"model": model, "suite": name, "ids": ids, "group": data(body)["case"]["group"]["id"]}


async def _retraining_plans(client, tokens, setup) -> list[dict]:
    """The model's retraining plans: [] after a refusal means nothing was stored."""
    query = "query($m: String!) { retrainingPlans(model: $m) { id } }"
    body = await gql(client, tokens["curator"], query, {"m": setup["model"]})
    return data(body)["retrainingPlans"]


async def _an_evaluation_plan(client, tokens, setup) -> str:
    """The name of a new evaluation plan of one benchmark."""
    name = a_name("eval-plan")
    plan = {
        "name": name,
        "model": setup["model"],
        "benchmarks": [{"suite": setup["suite"], "min_pass_rate": 0.5}],
    }
    create = "mutation($p: JSON!) { createEvaluationPlan(plan: $p) { id } }"
    data(await gql(client, tokens["curator"], create, {"p": plan}))
    return name


def _plan(setup, **overrides):
    plan = {
        "title": "Retrain on the missed incidents",
        "model": setup["model"],
        "base_version": "1",
        "evidence": {
            "case_ids": setup["ids"][2:],
            "group_ids": [setup["group"]],
            "slice_query": "severity:<=S2",
        },
        "feature_config": {"text": "tfidf", "max_features": 5000},
        "targets": [
            {"suite": setup["suite"], "metric": "pass_rate", "op": ">=", "value": 1.0},
            {"suite": setup["suite"], "metric": "latency_p95_ms", "op": "<=", "value": 50},
        ],
        "augmentations": ["back-translation of descriptions"],
        "changes": {"hyperparameters": {"lr": 0.001}, "architecture": "add a title encoder"},
        "evaluation_suites": [setup["suite"]],
    }
    plan.update(overrides)
    return plan


async def test_a_retraining_plan_moves_through_its_workflow_to_a_measured_outcome(
    client, tokens, setup
):
    cur, rev = tokens["curator"], tokens["reviewer"]
    plan = data(await gql(client, cur, CREATE, {"p": _plan(setup)}))["createRetrainingPlan"]
    assert (plan["status"], plan["revision"], plan["model"]) == ("DRAFT", 1, setup["model"])
    assert plan["evidence"]["caseIds"] == setup["ids"][2:]
    assert plan["changes"]["hyperparameters"] == {"lr": 0.001}
    hidden = data(
        await gql(
            client,
            tokens["outsider"],
            f"query($id: ID!) {{ retrainingPlan(id: $id) {{ {PLAN} }} }}",
            {"id": plan["id"]},
        )
    )["retrainingPlan"]
    assert hidden["evidence"]["caseIds"] == []

    pid = plan["id"]
    body = await gql(client, cur, STATUS, {"id": pid, "s": "APPROVED", "r": 1})
    assert codes(body) == ["FORBIDDEN"]  # the author cannot approve without reviews:write
    body = await gql(client, rev, STATUS, {"id": pid, "s": "EVALUATED", "r": 1})
    assert codes(body) == ["BAD_USER_INPUT"]
    approved = data(await gql(client, rev, STATUS, {"id": pid, "s": "APPROVED", "r": 1}))
    approved = approved["setRetrainingPlanStatus"]
    assert approved["status"] == "APPROVED" and approved["approvedBy"] and approved["revision"] == 2
    body = await gql(client, cur, STATUS, {"id": pid, "s": "IN_PROGRESS", "r": 1})
    assert codes(body) == ["CONFLICT"]
    data(await gql(client, cur, STATUS, {"id": pid, "s": "IN_PROGRESS", "r": 2}))

    # No run of the candidate yet: evaluated, targets missed, nothing measured.
    missed = data(await gql(client, cur, EVALUATE, {"id": pid, "v": "2"}))["evaluateRetrainingPlan"]
    assert missed["status"] == "EVALUATED" and missed["outcome"]["met"] is False
    assert [t["measured"] for t in missed["outcome"]["targets"]] == [None, None]

    run = await record_run(
        client,
        cur,
        {
            "model": setup["model"],
            "version": "2",
            "suite": setup["suite"],
            "outcomes": [{"caseId": i, "outcome": "PASS", "latencyMs": 30} for i in setup["ids"]],
        },
    )
    data(await gql(client, cur, STATUS, {"id": pid, "s": "IN_PROGRESS", "r": missed["revision"]}))
    met = data(await gql(client, cur, EVALUATE, {"id": pid, "v": "2"}))["evaluateRetrainingPlan"]
    assert met["outcome"]["met"] is True and met["candidateVersion"] == "2"
    assert [(t["measured"], t["run_id"]) for t in met["outcome"]["targets"]] == [
        (1.0, run["id"]),
        (30.0, run["id"]),
    ]
    closed = data(await gql(client, cur, STATUS, {"id": pid, "s": "CLOSED", "r": met["revision"]}))
    assert closed["setRetrainingPlanStatus"]["closedAt"]
    body = await gql(client, cur, STATUS, {"id": pid, "s": "IN_PROGRESS", "r": met["revision"] + 1})
    assert codes(body) == ["BAD_USER_INPUT"]
    listed = data(
        await gql(
            client,
            cur,
            "query($m: String!) { retrainingPlans(model: $m, status: CLOSED) { id } }",
            {"m": setup["model"]},
        )
    )
    assert listed["retrainingPlans"] == [{"id": pid}]


async def test_a_plan_is_approved_by_another_reviewer_never_its_author(
    app, client, tokens, setup, token_for
):
    """Approval is the independent review: an author holding reviews:write is refused, the
    refusal is audited, the plan stays a draft, and a second reviewer approves it."""
    author = tokens["reviewer"]
    plan = data(await gql(client, author, CREATE, {"p": _plan(setup)}))["createRetrainingPlan"]
    cid = f"cid-{secrets.token_hex(4)}"
    body = await gql(
        client, author, STATUS, {"id": plan["id"], "s": "APPROVED", "r": 1}, **{"X-Request-ID": cid}
    )
    assert codes(body) == ["FORBIDDEN"] and body["data"] is None
    assert "another reviewer" in body["errors"][0]["message"]
    async with app.state.db.sessionmaker() as s:
        query = select(AuditEntry).where(AuditEntry.correlation_id == cid)
        [refusal] = (await s.execute(query)).scalars()
    assert (refusal.action, refusal.outcome) == ("authz.denied", "denied")
    assert refusal.target == "graphql:setRetrainingPlanStatus"
    assert refusal.details["codes"] == ["FORBIDDEN"]
    read = f"query($id: ID!) {{ retrainingPlan(id: $id) {{ createdBy {PLAN} }} }}"
    kept = data(await gql(client, author, read, {"id": plan["id"]}))["retrainingPlan"]
    assert (kept["status"], kept["revision"], kept["approvedBy"]) == ("DRAFT", 1, None)
    assert refusal.actor_subject == kept["createdBy"]

    second = await token_for("reviews:write plans:write plans:read cases:read")
    approved = data(await gql(client, second, STATUS, {"id": plan["id"], "s": "APPROVED", "r": 1}))
    approved = approved["setRetrainingPlanStatus"]
    assert approved["status"] == "APPROVED"
    assert approved["approvedBy"] not in (None, kept["createdBy"])


async def test_bad_retraining_plans_name_each_problem(client, tokens, setup, token_for):
    outsider_case = (
        await ingest(client, tokens["curator"], model_cases(setup["model"], 1, team="x"))
    )[0]
    narrow = await token_for("plans:write plans:read cases:read", team="vision")
    bad = _plan(
        setup,
        evidence={"case_ids": [outsider_case], "slice_query": "severity:<=S9"},
        targets=[{"suite": "no-such", "metric": "pass_rate", "op": ">=", "value": 1}],
    )
    body = await gql(client, narrow, CREATE, {"p": bad})
    assert codes(body) == ["BAD_USER_INPUT"]
    paths = [e["path"] for e in body["errors"][0]["extensions"]["errors"]]
    assert paths == ["evidence.caseIds.0", "evidence.sliceQuery", "targets.0.suite"]
    for plan in (
        _plan(setup, evidence={}),
        _plan(setup, targets=[]),
        _plan(
            setup, targets=[{"suite": setup["suite"], "metric": "accuracy", "op": ">=", "value": 1}]
        ),
    ):
        body = await gql(client, tokens["curator"], CREATE, {"p": plan})
        assert codes(body) == ["BAD_USER_INPUT"]


async def test_evaluation_plans_are_versioned_and_checked_against_runs(client, tokens, setup):
    cur = tokens["curator"]
    name = a_name("eval-plan")
    plan = {
        "name": name,
        "model": setup["model"],
        "description": "Robustness of the incident classifier",
        "benchmarks": [{"suite": setup["suite"], "min_pass_rate": 0.9, "max_latency_p95_ms": 100}],
    }
    first = data(
        await gql(
            client,
            cur,
            f"mutation($p: JSON!) {{ createEvaluationPlan(plan: $p) {{ {EPLAN} }} }}",
            {"p": plan},
        )
    )["createEvaluationPlan"]
    assert first["version"] == 1
    body = await gql(
        client, cur, "mutation($p: JSON!) { createEvaluationPlan(plan: $p) { id } }", {"p": plan}
    )
    assert codes(body) == ["CONFLICT"]
    revised = {**plan, "benchmarks": [{"suite": setup["suite"], "min_pass_rate": 0.5}]}
    second = data(
        await gql(
            client,
            cur,
            f"mutation($p: JSON!) {{ reviseEvaluationPlan(plan: $p) {{ {EPLAN} }} }}",
            {"p": revised},
        )
    )["reviseEvaluationPlan"]
    assert second["version"] == 2
    q = """query($n: String!, $v: Int, $mv: String!) {
      evaluationPlan(name: $n, version: $v) { version benchmarks check(modelVersion: $mv) } }"""
    latest = data(await gql(client, cur, q, {"n": name, "mv": "1"}))["evaluationPlan"]
    assert latest["version"] == 2 and [c["met"] for c in latest["check"]] == [True]
    old = data(await gql(client, cur, q, {"n": name, "v": 1, "mv": "1"}))["evaluationPlan"]
    assert old["benchmarks"][0]["min_pass_rate"] == 0.9
    assert [(c["metric"], c["measured"], c["met"]) for c in old["check"]] == [
        ("pass_rate", 0.5, False),
        ("latency_p95_ms", 20.0, True),
    ]
    body = await gql(
        client,
        cur,
        "mutation($p: JSON!) { reviseEvaluationPlan(plan: $p) { id } }",
        {"p": {**plan, "name": a_name("none")}},
    )
    assert codes(body) == ["NOT_FOUND"]


async def test_a_target_out_of_its_metric_range_is_refused_naming_it(client, tokens, setup):
    """A pass rate of 5 or -1, or a latency of -5 ms, can never be met (or always is): such a
    plan was stored as given. Each is refused at its value, and nothing is stored."""
    suite = setup["suite"]
    plan = _plan(
        setup,
        targets=[
            {"suite": suite, "metric": "pass_rate", "op": ">=", "value": 5},
            {"suite": suite, "metric": "false_alarm_rate", "op": "<=", "value": -1},
            {"suite": suite, "metric": "stability", "op": ">=", "value": 1.5},
            {"suite": suite, "metric": "latency_p95_ms", "op": "<=", "value": -5},
            {"suite": suite, "metric": "pass_rate", "op": ">=", "value": 0},
        ],
    )
    body = await gql(client, tokens["curator"], CREATE, {"p": plan})
    assert codes(body) == ["BAD_USER_INPUT"]
    errors = body["errors"][0]["extensions"]["errors"]
    assert [e["path"] for e in errors] == [f"targets.{i}.value" for i in range(4)]
    assert "between 0 and 1" in errors[0]["message"]
    assert await _retraining_plans(client, tokens, setup) == []


async def test_a_blank_or_overlong_candidate_version_is_refused_and_the_plan_kept(
    client, tokens, setup
):
    """evaluateRetrainingPlan stored a candidate version of blanks as the plan's outcome (the
    plan became evaluated against no version); one past the column's size was a generic
    'cannot be stored' naming no field. Each is now refused naming candidateVersion, and
    the plan stays as it was."""
    cur, rev = tokens["curator"], tokens["reviewer"]
    pid = data(await gql(client, cur, CREATE, {"p": _plan(setup)}))["createRetrainingPlan"]["id"]
    data(await gql(client, rev, STATUS, {"id": pid, "s": "APPROVED", "r": 1}))
    data(await gql(client, cur, STATUS, {"id": pid, "s": "IN_PROGRESS", "r": 2}))
    for version in ("   ", "", "x" * 101, "2\x00"):
        body = await gql(client, cur, EVALUATE, {"id": pid, "v": version})
        assert codes(body) == ["BAD_USER_INPUT"], version
        assert [e["path"] for e in body["errors"][0]["extensions"]["errors"]] == [
            "candidateVersion"
        ]
    plan = data(
        await gql(
            client, cur, f"query($id: ID!) {{ retrainingPlan(id: $id) {{ {PLAN} }} }}", {"id": pid}
        )
    )["retrainingPlan"]
    assert (plan["status"], plan["revision"], plan["outcome"]) == ("IN_PROGRESS", 3, None)
    done = data(await gql(client, cur, EVALUATE, {"id": pid, "v": " 2 "}))["evaluateRetrainingPlan"]
    assert done["candidateVersion"] == "2" and done["outcome"]["candidate_version"] == "2"


async def test_a_benchmark_without_a_criterion_is_refused_naming_it(client, tokens, setup):
    """A benchmark naming only its suite was stored, and check() answered nothing for it: a
    plan that always looks met. It is now refused at benchmarks.N and nothing is stored."""
    name = a_name("eval-plan")
    plan = {
        "name": name,
        "model": setup["model"],
        "benchmarks": [{"suite": setup["suite"], "min_pass_rate": 0.9}, {"suite": setup["suite"]}],
    }
    body = await gql(
        client,
        tokens["curator"],
        "mutation($p: JSON!) { createEvaluationPlan(plan: $p) { id } }",
        {"p": plan},
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    errors = body["errors"][0]["extensions"]["errors"]
    assert [e["path"] for e in errors] == ["benchmarks.1"]
    assert "min_pass_rate" in errors[0]["message"]
    body = await gql(
        client,
        tokens["curator"],
        "query($n: String!) { evaluationPlan(name: $n) { id } }",
        {"n": name},
    )
    assert codes(body) == ["NOT_FOUND"]


async def test_blank_evidence_and_augmentations_are_refused_naming_them(client, tokens, setup):
    """A slice query of blanks counted as the plan's evidence (a blank query selects every
    case), and blank augmentations were stored as items. Both are refused now, each at its
    path, and nothing is stored."""
    body = await gql(
        client,
        tokens["curator"],
        CREATE,
        {"p": _plan(setup, evidence={"slice_query": "  \t "}, augmentations=["mixup", " ", ""])},
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    paths = [e["path"] for e in body["errors"][0]["extensions"]["errors"]]
    assert paths == ["evidence", "augmentations.1", "augmentations.2"]
    assert await _retraining_plans(client, tokens, setup) == []


async def test_an_evaluation_plan_version_below_1_is_refused_naming_it(client, tokens, setup):
    """evaluationPlan(version: 0) was NOT_FOUND 'evaluation plan NAME  not found' (a missing
    'v0' and a double space), -1 'v-1 not found', as if such versions could exist."""
    name = await _an_evaluation_plan(client, tokens, setup)
    q = "query($n: String!, $v: Int) { evaluationPlan(name: $n, version: $v) { version } }"
    for version in (0, -1):
        body = await gql(client, tokens["curator"], q, {"n": name, "v": version})
        assert codes(body) == ["BAD_USER_INPUT"], version
        assert body["errors"][0]["extensions"]["errors"][0]["path"] == "version"
    body = await gql(client, tokens["curator"], q, {"n": name, "v": 2})
    assert codes(body) == ["NOT_FOUND"]
    assert body["errors"][0]["message"] == f"evaluation plan {name} v2 not found"


async def test_nul_in_a_plan_is_refused_at_its_field_on_both_backends(client, tokens, setup):
    """Postgres stores U+0000 in neither text nor JSONB: a plan holding one got 'a value in
    the request cannot be stored' naming no field there, and was stored as given on SQLite.
    Each such field is refused at its path now, and nothing is stored."""
    for plan, path in (
        (_plan(setup, title="Retrain\x00"), "title"),
        (_plan(setup, feature_config={"text": "tf\x00idf"}), "featureConfig"),
        (_plan(setup, changes={"hyperparameters": {"lr\x00": 1}}), "changes.hyperparameters"),
    ):
        body = await gql(client, tokens["curator"], CREATE, {"p": plan})
        assert codes(body) == ["BAD_USER_INPUT"], path
        [error] = body["errors"][0]["extensions"]["errors"]
        assert error["path"] == path and "NUL" in error["message"]
    assert await _retraining_plans(client, tokens, setup) == []


async def test_a_plan_name_or_id_holding_nul_is_absent_on_both_backends(client, tokens):
    """Reads by a name or id holding U+0000 answered 'a value in the request cannot be
    stored' on Postgres and NOT_FOUND (or nothing) on SQLite; NOT_FOUND or [] on both now."""
    cur = tokens["curator"]
    for query, variables, expected in (
        ("query($id: ID!) { retrainingPlan(id: $id) { id } }", {"id": "p\x00"}, None),
        ("query($n: String!) { evaluationPlan(name: $n) { id } }", {"n": "e\x00"}, None),
        ("query($m: String!) { retrainingPlans(model: $m) { id } }", {"m": "m\x00"}, []),
    ):
        body = await gql(client, cur, query, variables)
        if expected is None:
            assert codes(body) == ["NOT_FOUND"], query
        else:
            assert next(iter(data(body).values())) == expected
    impact = await gql(
        client,
        cur,
        "query($m: String) { impactMetrics(metric: REMEDIATION_TIME, by: TEAM, model: $m) {"
        " key } }",
        {"m": "m\x00"},
    )
    assert data(impact)["impactMetrics"] == []


async def test_checking_a_blank_model_version_is_refused_naming_it(client, tokens, setup):
    """check(modelVersion: " ") answered every criterion as missed, measured against no
    version. It names modelVersion now; ' 1 ' is checked as version 1, as runs store it."""
    name = await _an_evaluation_plan(client, tokens, setup)
    q = "query($n: String!, $mv: String!) { evaluationPlan(name: $n) { check(modelVersion: $mv) } }"
    body = await gql(client, tokens["curator"], q, {"n": name, "mv": "  "})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["errors"][0]["path"] == "modelVersion"
    check = data(await gql(client, tokens["curator"], q, {"n": name, "mv": " 1 "}))
    assert [(c["measured"], c["met"]) for c in check["evaluationPlan"]["check"]] == [(0.5, True)]


async def test_repeated_evidence_is_stored_once(client, tokens, setup):
    """Evidence listing a case or group twice was stored and shown twice (its caseIds read
    [a, a, b]); each is kept once, in the order given."""
    ids, group = setup["ids"], setup["group"]
    evidence = {"case_ids": [ids[3], ids[2], ids[3]], "group_ids": [group, group]}
    plan = data(
        await gql(client, tokens["curator"], CREATE, {"p": _plan(setup, evidence=evidence)})
    )
    got = plan["createRetrainingPlan"]["evidence"]
    assert (got["caseIds"], got["groupIds"]) == ([ids[3], ids[2]], [group])


async def test_evaluating_a_plan_not_started_says_its_status(client, tokens, setup):
    """It said 'a approved plan cannot be evaluated' ('a draft ...', 'a closed ...')."""
    cur, rev = tokens["curator"], tokens["reviewer"]
    pid = data(await gql(client, cur, CREATE, {"p": _plan(setup)}))["createRetrainingPlan"]["id"]
    data(await gql(client, rev, STATUS, {"id": pid, "s": "APPROVED", "r": 1}))
    body = await gql(client, cur, EVALUATE, {"id": pid, "v": "2"})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"] == (
        f"plan {pid} is approved: only a plan in progress (or evaluated, to measure again) "
        "is evaluated"
    )
