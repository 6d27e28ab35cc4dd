"""Synthetic scenarios: seeded variants of real inputs, linked to their case, never catalog
cases, and includable in suites (visibility follows the parent case)."""

from __future__ import annotations

import unicodedata

import orjson
import pytest

from services.safeguards.perturb import CONFUSABLE, Perturbation, perturb, rng_for
from tests.corpus import aiid_cases
from tests.gateway.helpers import codes, data, gql
from tests.safeguards.builders import (
    a_name,
    export,
    ingest,
    model_cases,
    record_run,
)

GENERATE = """mutation($ids: [ID!], $suite: String, $p: [Perturbation!]!, $seed: Int!,
                       $variants: Int! = 1, $tolerance: Float! = 0.01) {
  generateScenarios(caseIds: $ids, suite: $suite, perturbations: $p, seed: $seed,
                    variants: $variants, tolerance: $tolerance) {
    id parentCaseId perturbation seed variant tolerance input expected synthetic } }"""
CASE_INPUT = "query($id: ID!) { case(id: $id) { input } }"
INPUT = {
    "amount": 129.5,
    "items": 3,
    "merchant": "Corner Bakery Express",
    "note": "Refund for a cake order placed online",
    "features": {"country": "DE", "device": "mobile phone"},
}


def _variant(kind: Perturbation, seed: int = 1, variant: int = 0, tolerance: float = 0.05):
    return perturb(INPUT, kind, rng_for(seed, "case-1", kind.value, variant), tolerance)


def _strings(value):
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_each_perturbation_changes_what_it_says_and_only_that():
    for kind in Perturbation:
        assert _variant(kind) == _variant(kind), f"{kind} is not reproducible"
        assert orjson.dumps(_variant(kind, seed=1)) != orjson.dumps(INPUT), kind
    pairs = list(zip(_strings(INPUT), _strings(_variant(Perturbation.CASING)), strict=True))
    assert any(a != b for a, b in pairs) and all(a.lower() == b.lower() for a, b in pairs)
    pairs = list(zip(_strings(INPUT), _strings(_variant(Perturbation.WHITESPACE)), strict=True))
    assert any(a != b for a, b in pairs) and all(a.split() == b.split() for a, b in pairs)
    pairs = list(zip(_strings(INPUT), _strings(_variant(Perturbation.CONFUSABLES)), strict=True))
    changed = [(a, b) for a, b in pairs if a != b]
    assert changed
    for a, b in changed:
        swapped = {(x, y) for x, y in zip(a, b, strict=True) if x != y}
        assert all(CONFUSABLE[x] == y and unicodedata.name(y) for x, y in swapped)
    pairs = list(zip(_strings(INPUT), _strings(_variant(Perturbation.TYPOS)), strict=True))
    assert any(a != b for a, b in pairs)
    assert all(abs(len(a) - len(b)) <= 1 for a, b in pairs)

    noisy = _variant(Perturbation.NUMERIC_NOISE, tolerance=0.05)
    assert (noisy["amount"], noisy["items"]) != (INPUT["amount"], INPUT["items"])
    assert abs(noisy["amount"] - 129.5) <= 129.5 * 0.05 and isinstance(noisy["items"], int)
    assert _strings(noisy) == _strings(INPUT)

    missing = _variant(Perturbation.MISSING_FEATURES)
    assert len(str(missing)) < len(str(INPUT))
    nulled = _variant(Perturbation.NULL_FEATURES)
    assert b"null" in orjson.dumps(nulled) and b"null" not in orjson.dumps(INPUT)
    reordered = _variant(Perturbation.REORDERED_KEYS)
    assert reordered == INPUT and list(reordered) != list(INPUT)


@pytest.fixture(scope="module")
async def curator(token_for):
    return await token_for(
        "cases:ingest cases:write cases:read evals:write", clearance="restricted"
    )


async def test_scenarios_are_reproducible_linked_and_never_catalog_cases(
    client, curator, token_for
):
    model = a_name("payments")
    cases = model_cases(model, 2, team="payments")
    cases[0]["input"] = INPUT
    ids = await ingest(client, curator, cases)
    kinds = ["TYPOS", "NUMERIC_NOISE", "REORDERED_KEYS"]
    first = data(
        await gql(client, curator, GENERATE, {"ids": ids, "p": kinds, "seed": 7, "variants": 2})
    )
    made = first["generateScenarios"]
    # A kind with nothing to change in an input (case 1 holds no number) makes no variant.
    # The server perturbs the input as stored: Postgres's JSONB keeps an object's keys in
    # its own order, and the order decides which values the seeded draws fall on.
    stored = [data(await gql(client, curator, CASE_INPUT, {"id": i}))["case"]["input"] for i in ids]
    expected_count = sum(
        orjson.dumps(perturb(inp, Perturbation[k], rng_for(7, i, k.lower(), v), 0.01))
        != orjson.dumps(inp)
        for i, inp in zip(ids, stored, strict=True)
        for k in kinds
        for v in range(2)
    )
    assert len(made) == expected_count and expected_count >= 6
    assert {s["parentCaseId"] for s in made} == set(ids)
    assert all(s["synthetic"] and s["seed"] == "7" for s in made)
    assert all(s["expected"] == cases[ids.index(s["parentCaseId"])]["expected"] for s in made)
    again = data(
        await gql(client, curator, GENERATE, {"ids": ids, "p": kinds, "seed": 7, "variants": 2})
    )
    assert again["generateScenarios"] == made
    # Each variant is the one its seed draws: two seeds can draw the same typo, and a draw
    # that changes nothing (a swap of "ss") makes no variant.
    other = data(await gql(client, curator, GENERATE, {"ids": ids[:1], "p": ["TYPOS"], "seed": 8}))
    for seed, got in (
        (8, other["generateScenarios"]),
        (7, [s for s in made if s["perturbation"] == "TYPOS" and s["parentCaseId"] == ids[0]]),
    ):
        drawn = [
            perturb(stored[0], Perturbation.TYPOS, rng_for(seed, ids[0], "typos", v), 0.01)
            for v in range(2 if seed == 7 else 1)
        ]
        assert [s["input"] for s in got] == [d for d in drawn if d != stored[0]]
        assert all(s["seed"] == str(seed) for s in got)
    noisy = next(s for s in made if s["perturbation"] == "NUMERIC_NOISE")
    assert noisy["tolerance"] == 0.01 and abs(noisy["input"]["amount"] - 129.5) <= 1.295
    reordered = next(
        s for s in made if s["perturbation"] == "REORDERED_KEYS" and s["parentCaseId"] == ids[0]
    )
    assert reordered["input"] == INPUT and list(reordered["input"]) != list(stored[0])

    listed = data(
        await gql(
            client, curator, "query($id: ID!) { scenarios(caseId: $id) { id } }", {"id": ids[0]}
        )
    )["scenarios"]
    assert {s["id"] for s in listed} == {s["id"] for s in made if s["parentCaseId"] == ids[0]} | {
        s["id"] for s in other["generateScenarios"]
    }

    # Not production failures: the catalog still holds two cases, in one group each, as before.
    body = data(
        await gql(
            client,
            curator,
            "query($m: String!) {"
            " cases(filter: {model: $m}) { nodes { id group { caseCount } } } }",
            {"m": model},
        )
    )
    assert sorted(n["id"] for n in body["cases"]["nodes"]) == sorted(ids)
    assert all(n["group"]["caseCount"] == 1 for n in body["cases"]["nodes"])

    # In a suite, each case is followed by its scenarios, which follow its visibility.
    name = a_name("robust")
    suite = await create_suite_with_scenarios(client, curator, name, model, ids)
    assert suite["caseCount"] == 2 + len(listed) + len(
        [s for s in made if s["parentCaseId"] == ids[1]]
    )
    lines = await export(client, curator, name, 1)
    assert lines[0]["case_id"] == ids[0] and lines[0]["synthetic"] is False
    variants = [x for x in lines if x["synthetic"]]
    assert all(x["parent_case_id"] in ids for x in variants)
    assert [x for x in variants if x["input"] == INPUT and list(x["input"]) != list(INPUT)]
    outsider = await token_for("cases:read", team="elsewhere")
    assert await export(client, outsider, name, 1) == []
    body = await gql(
        client, outsider, "query($id: ID!) { scenarios(caseId: $id) { id } }", {"id": ids[0]}
    )
    assert codes(body) == ["NOT_FOUND"]

    # Scenario outcomes count in the run; the group's resolution depends on real cases only.
    run = await record_run(
        client,
        curator,
        {
            "model": model,
            "version": "2",
            "suite": name,
            "outcomes": [
                {"caseId": x["case_id"], "outcome": "FAIL" if x["synthetic"] else "PASS"}
                for x in lines
            ],
        },
    )
    assert run["passed"] == 2 and run["failed"] == len(variants)
    assert len(run["proposals"]) == 2


async def create_suite_with_scenarios(client, token, name, model, ids):
    body = await gql(
        client,
        token,
        """mutation($n: String!, $m: String!, $ids: [ID!]) {
          createSuite(name: $n, model: $m, caseIds: $ids, includeScenarios: true)
          { name version caseCount } }""",
        {"n": name, "m": model, "ids": ids},
    )
    return data(body)["createSuite"]


async def test_bad_scenario_requests_get_coded_errors(client, curator, token_for):
    [case_id] = await ingest(client, curator, model_cases(a_name("m"), 1, team="payments"))
    outsider = await token_for("cases:write cases:read", team="elsewhere")
    body = await gql(client, outsider, GENERATE, {"ids": [case_id], "p": ["TYPOS"], "seed": 1})
    assert body["errors"][0]["extensions"]["errors"] == [
        {"path": "caseIds.0", "message": f"case {case_id} not found"}
    ]
    for variables in (
        {"ids": [case_id], "suite": "s", "p": ["TYPOS"], "seed": 1},
        {"ids": [case_id], "p": [], "seed": 1},
        {"ids": [case_id], "p": ["TYPOS"], "seed": 1, "variants": 21},
        {"ids": [case_id], "p": ["TYPOS"], "seed": -1},
        {"ids": [case_id], "p": ["NUMERIC_NOISE"], "seed": 1, "tolerance": 0},
    ):
        body = await gql(client, curator, GENERATE, variables)
        assert codes(body) == ["BAD_USER_INPUT"], variables
    assert aiid_cases(1)  # the corpus the cases came from


async def test_an_empty_case_list_is_refused_and_a_repeated_kind_counted_once(client, curator):
    """caseIds: [] answered [] and appended a 'scenarios.generate' audit entry for nothing; a
    perturbation given twice answered each scenario twice. The first is refused at caseIds,
    the second makes each scenario once."""
    [case_id] = await ingest(client, curator, model_cases(a_name("m"), 1, team="payments"))
    body = await gql(client, curator, GENERATE, {"ids": [], "p": ["TYPOS"], "seed": 1})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["errors"][0]["path"] == "caseIds"
    once = data(await gql(client, curator, GENERATE, {"ids": [case_id], "p": ["TYPOS"], "seed": 3}))
    twice = data(
        await gql(client, curator, GENERATE, {"ids": [case_id], "p": ["TYPOS", "TYPOS"], "seed": 3})
    )
    assert twice["generateScenarios"] == once["generateScenarios"]
    assert len(once["generateScenarios"]) == 1


async def test_a_suite_version_without_a_suite_is_refused(client, curator):
    """caseIds with a suiteVersion made the cases' scenarios and ignored the version, as if it
    meant something. It is refused at suiteVersion now."""
    [case_id] = await ingest(client, curator, model_cases(a_name("m"), 1, team="payments"))
    q = """mutation($ids: [ID!], $v: Int) {
      generateScenarios(caseIds: $ids, suiteVersion: $v, perturbations: [TYPOS], seed: 1) {
        id } }"""
    body = await gql(client, curator, q, {"ids": [case_id], "v": 2})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["errors"][0]["path"] == "suiteVersion"
    listed = await gql(
        client, curator, "query($id: ID!) { scenarios(caseId: $id) { id } }", {"id": case_id}
    )
    assert data(listed)["scenarios"] == []
