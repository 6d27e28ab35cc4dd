"""The issue's proof, end to end through the public API (the pytest plugin comes later; this
test does what it will do: export the suite, predict, post the outcomes as a run).

A threshold rule flags AI incidents that caused tangible harm, from the incident's real
description (AI Incident Database); the truth is CSET's annotation of the same incident. Its
real mistakes become cases, the cases a suite; version 1 fails it, version 2 (the rule
retrained on the catalog's evidence) passes; the runs are compared, the proposed group
resolutions accepted, and the release gate blocks 1 and passes 2.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.corpus import CORPORA
from tests.gateway.helpers import data, gql
from tests.safeguards.builders import (
    ACCEPT,
    COMPARE,
    GATE,
    a_name,
    create_suite,
    export,
    ingest,
    record_run,
    searchable,
)

HARM, NO_HARM = "harm", "no_harm"
LEXICON = (
    *("killed", "died", "death", "deaths", "injured", "injuries", "crash", "fatal"),
    *("accident", "collision", "car", "vehicle", "arrest", "police", "harm"),
)
WORD = re.compile(r"[a-z]+")


def labelled_incidents() -> list[dict[str, Any]]:
    """Incidents CSET annotated as clearly harmful or clearly not, with their description."""
    truth = {}
    with (CORPORA / "aiid_classifications_CSETv1.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            verdict = row.get("Tangible Harm", "")
            if verdict == "tangible harm definitively occurred":
                truth[row["Incident ID"]] = HARM
            elif verdict == "no tangible harm, near-miss, or issue":
                truth[row["Incident ID"]] = NO_HARM
    out = []
    with (CORPORA / "aiid_incidents.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            label = truth.get(str(rec["incident_id"]))
            if label and rec.get("description"):
                out.append({"id": rec["incident_id"], "text": rec["description"], "label": label})
    return out


def words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


class ThresholdRule:
    """harm when the summed weights of the words present exceed the threshold."""

    def __init__(self, weights: dict[str, float], threshold: float) -> None:
        self.weights, self.threshold = dict(weights), threshold

    def predict(self, model_input: dict[str, Any]) -> dict[str, str]:
        score = sum(self.weights.get(w, 0.0) for w in words(model_input["text"]))
        return {"label": HARM if score >= self.threshold else NO_HARM}

    def retrained(self, examples: list[tuple[dict[str, Any], Any]]) -> ThresholdRule:
        """Perceptron updates on the failures until each is right (what a retraining plan
        derived from the suite would do, without scikit-learn)."""
        rule = ThresholdRule(self.weights, self.threshold)
        for _ in range(200):
            wrong = 0
            for model_input, expected in examples:
                if rule.predict(model_input) != expected:
                    wrong += 1
                    sign = 1.0 if expected["label"] == HARM else -1.0
                    for w in words(model_input["text"]):
                        rule.weights[w] = rule.weights.get(w, 0.0) + sign
            if not wrong:
                return rule
        raise AssertionError("the retrained rule did not separate the suite")


V1 = ThresholdRule(dict.fromkeys(LEXICON, 1.0), threshold=1)


def as_case(model: str, incident: dict[str, Any], predicted: dict[str, str]) -> dict[str, Any]:
    missed = incident["label"] == HARM
    return {
        "external_id": f"aiid-{incident['id']}-{model}",
        "title": ("Missed harm: " if missed else "False alarm: ") + incident["text"][:120],
        "model": {"name": model, "version": "1"},
        "data_source": "aiid-harm-screen",
        "input": {"incident_id": incident["id"], "text": incident["text"]},
        "prediction": predicted,
        "expected": {"label": incident["label"]},
        # A missed harm is the worse mistake.
        "severity": "S1" if missed else "S3",
        "failure_mode": "distribution_shift.new_category" if missed else "robustness.input_noise",
        "provenance": {"source": f"harm-screen-{model}"},
    }


async def run_suite(client, token, model, version, rule, lines) -> dict[str, Any]:
    outcomes = []
    for line in lines:
        started = time.perf_counter()
        predicted = rule.predict(line["input"])
        latency = (time.perf_counter() - started) * 1000
        outcomes.append(
            {
                "caseId": line["case_id"],
                "outcome": "PASS" if predicted == line["expected"] else "FAIL",
                "prediction": predicted,
                "latencyMs": latency,
            }
        )
    return await record_run(
        client,
        token,
        {
            "model": model,
            "version": version,
            "suite": lines[0]["suite"],
            "suiteVersion": lines[0]["suite_version"],
            "outcomes": outcomes,
            "positiveLabel": HARM,
        },
    )


async def test_real_mistakes_become_a_suite_that_gates_the_release(client, token_for):
    curator = await token_for("cases:ingest cases:write cases:read", clearance="restricted")
    ci = await token_for("evals:write cases:read", clearance="restricted")
    reviewer = await token_for("reviews:write cases:read", clearance="restricted")
    model, name = a_name("harm-screen"), a_name("harm-regressions")

    incidents = labelled_incidents()
    assert len(incidents) > 100
    mistakes = [(i, V1.predict(i)) for i in incidents if V1.predict(i)["label"] != i["label"]]
    missed = sum(1 for i, _ in mistakes if i["label"] == HARM)
    assert missed and len(mistakes) - missed, "the rule should both miss harms and raise alarms"
    ids = await ingest(client, curator, [as_case(model, i, p) for i, p in mistakes])

    # The suite follows a saved query: every case of the model, as the index reports them.
    await searchable(client, curator, f'model:"{model}"', len(ids))
    suite = await create_suite(client, curator, name, model, query=f'model:"{model}"')
    assert suite["caseCount"] == len(mistakes)
    lines = await export(client, ci, name, suite["version"])
    assert sorted(x["case_id"] for x in lines) == sorted(ids)

    v1 = await run_suite(client, ci, model, "1", V1, lines)
    assert (v1["passed"], v1["failed"]) == (0, len(mistakes))
    assert v1["proposals"] == []

    v2_rule = V1.retrained([(x["input"], x["expected"]) for x in lines])
    v2 = await run_suite(client, ci, model, "2", v2_rule, lines)
    assert (v2["passed"], v2["failed"], v2["passRate"]) == (len(mistakes), 0, 1.0)
    assert v2["falseAlarmRate"] == 0.0 and v1["falseAlarmRate"] == 1.0

    cmp = data(await gql(client, ci, COMPARE, {"a": v1["id"], "b": v2["id"]}))["compareRuns"]
    assert sorted(c["caseId"] for c in cmp["fixed"]) == sorted(ids)
    assert cmp["regressed"] == [] and cmp["stillFailing"] == []

    # Both groups (missed harms, false alarms) passed entirely in 2: a reviewer accepts.
    assert len(v2["proposals"]) == 2
    for proposal in v2["proposals"]:
        assert proposal["version"] == "2"
        data(await gql(client, reviewer, ACCEPT, {"id": proposal["id"]}))
    groups = data(
        await gql(
            client,
            ci,
            "query($m: String!) { groups(model: $m) { nodes { status resolvedInVersion } } }",
            {"m": model},
        )
    )["groups"]["nodes"]
    assert [(g["status"], g["resolvedInVersion"]) for g in groups] == [("RESOLVED", "2")] * 2

    policy = {"suites": [{"name": name, "min_pass_rate": 1.0}]}
    blocked = data(await gql(client, ci, GATE, {"model": model, "version": "1", "policy": policy}))
    passed = data(await gql(client, ci, GATE, {"model": model, "version": "2", "policy": policy}))
    assert blocked["releaseGate"]["passed"] is False
    failing = [c for c in blocked["releaseGate"]["conditions"] if not c["passed"]]
    assert [c["runIds"] for c in failing] == [[v1["id"]]]
    assert passed["releaseGate"]["passed"] is True
    assert all(c["passed"] for c in passed["releaseGate"]["conditions"])
