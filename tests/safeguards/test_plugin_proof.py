"""The issue's proof, end to end with the real plugin, as another team's CI runs it.

`failcat serve` on a loopback port; a threshold rule's real mistakes on AI Incident Database
descriptions (tests/safeguards/test_proof.py) become cases and a suite; a separate pytest
process (the failcat-client plugin, loaded through its pytest11 entry point) runs version 1
(failures, recorded as a run), version 2 retrained on the suite's evidence (passes); the runs
are compared, the proposed group resolutions accepted, and `failcat gate --url` blocks 1 and
passes 2. The exported JSONL runs offline too, without a server.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.helpers import INGEST, case_input
from tests.safeguards.builders import (
    ACCEPT,
    COMPARE,
    CREATE_SUITE,
    a_name,
    plugin_outcomes,
    run_plugin,
)
from tests.safeguards.test_proof import V1, as_case, labelled_incidents
from tests.sdk.conftest import CLI, ROOT, FailcatServer

RECORDED = re.compile(r"run (\S+) recorded: (\S+) (\S+), pass rate (\S+); (\d+) failure groups")
RUN = """query($id: ID!) { evaluationRun(id: $id) {
  id model version total passed failed errored notRun suite { name version }
  proposals { id groupId version status } } }"""
RUNS = """query($m: String!, $v: String!) { evaluationRuns(model: $m, version: $v) { id } }"""

# The model module of the team under test: no import of failcat, of the tests or of the server.
MODEL_MODULE = textwrap.dedent(
    """
    import re

    WORD = re.compile(r"[a-z]+")
    RULES = {RULES}

    def _predict(rule, features):
        words = set(WORD.findall(features["text"].lower()))
        score = sum(rule["weights"].get(w, 0.0) for w in words)
        return {"label": "harm" if score >= rule["threshold"] else "no_harm"}

    def predict_v1(features):
        return _predict(RULES["1"], features)

    def predict_v2(features):
        return _predict(RULES["2"], features)
    """
)


@pytest.fixture(scope="module")
def served(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailcatServer]:
    srv = FailcatServer(tmp_path_factory.mktemp(f"plugin-proof-{backend}"), backend)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def failcat(server: FailcatServer, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The `failcat` CLI on the server's host (its data dir and database), or with
    FAILCAT_URL in `env` as a remote client."""
    base = {k: v for k, v in server.env.items() if k not in ("FAILCAT_URL",)}
    return subprocess.run(
        [*CLI, *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=300
    )


def ci_client(server: FailcatServer) -> dict[str, str]:
    """The CI job's own client: it reads cases and records runs, nothing more."""
    done = failcat(
        server,
        "clients",
        "create",
        "--name",
        a_name("harm-screen-ci"),
        "--scopes",
        "cases:read evals:write",
        "--clearance",
        "restricted",
    )
    assert done.returncode == 0, done.stderr
    creds = json.loads(done.stdout)
    return {
        "FAILCAT_CLIENT_ID": creds["client_id"],
        "FAILCAT_CLIENT_SECRET": creds["client_secret"],
    }


def recorded(output: str) -> dict[str, Any]:
    found = RECORDED.search(output)
    assert found, output
    run_id, model, version, rate, proposals = found.groups()
    return {"id": run_id, "model": model, "version": version, "rate": rate, "n": int(proposals)}


def test_the_plugin_turns_real_mistakes_into_a_release_gate(served: FailcatServer, tmp_path):
    model, name = a_name("harm-screen"), a_name("harm-regressions")
    incidents = labelled_incidents()
    mistakes = [(i, V1.predict(i)) for i in incidents if V1.predict(i)["label"] != i["label"]]
    assert len(mistakes) > 20
    cases = [case_input(as_case(model, i, p)) for i, p in mistakes]
    results = served.graphql(INGEST, cases=cases)["ingestCases"]
    ids = [r["id"] for r in results]
    assert [r["status"] for r in results] == ["CREATED"] * len(mistakes)
    suite = served.graphql(CREATE_SUITE, name=name, model=model, ids=ids)["createSuite"]
    assert (suite["version"], suite["caseCount"]) == (1, len(mistakes))

    ci = ci_client(served)
    token = httpx.post(
        f"{served.base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(ci["FAILCAT_CLIENT_ID"], ci["FAILCAT_CLIENT_SECRET"]),
    ).json()["access_token"]
    export = httpx.get(
        f"{served.base}/safeguards/v1/suites/{name}/1.jsonl",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert export.status_code == 200
    lines = [json.loads(x) for x in export.text.splitlines()]

    # The team's repository: its model module (v2 retrained on the suite's evidence).
    work = tmp_path / "team-repo"
    work.mkdir()
    v2 = V1.retrained([(x["input"], x["expected"]) for x in lines])
    rules = {
        str(n): {"weights": r.weights, "threshold": r.threshold} for n, r in ((1, V1), (2, v2))
    }
    (work / "harm_model.py").write_text(MODEL_MODULE.replace("{RULES}", repr(rules)))
    (work / "suite.jsonl").write_text(export.text)
    online = {"FAILCAT_URL": served.base, **ci}

    # ---- version 1 fails every case it got wrong, and the run is recorded ----------------
    first = run_plugin(
        *("--failcat-suite", f"{name}@1", "--failcat-model", "harm_model:predict_v1"),
        *("--failcat-version", "1", "--failcat-report"),
        cwd=work,
        env=online,
    )
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr
    outcomes = plugin_outcomes(first.stdout)
    assert sorted(outcomes) == sorted(ids)
    assert {v[1] for v in outcomes.values()} == {"FAILED"}
    modes = {v[0] for v in outcomes.values()}
    assert modes == {"distribution_shift.new_category", "robustness.input_noise"}
    assert f"{len(ids)} failed" in first.stdout
    run1 = recorded(first.stdout)
    assert (run1["model"], run1["version"], run1["rate"], run1["n"]) == (model, "1", "0.0%", 0)

    # ---- version 2 passes (the latest suite version, --failcat-url, the label comparator) --
    second = run_plugin(
        *("--failcat-suite", name, "--failcat-model", "harm_model:predict_v2"),
        *("--failcat-version", "2", "--failcat-report", "--failcat-url", served.base),
        *("--failcat-compare", "label"),
        cwd=work,
        env=ci,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    assert {v[1] for v in plugin_outcomes(second.stdout).values()} == {"PASSED"}
    run2 = recorded(second.stdout)
    assert (run2["version"], run2["rate"], run2["n"]) == ("2", "100.0%", 2)

    # ---- what the server recorded ------------------------------------------------------------
    stored1 = served.graphql(RUN, id=run1["id"])["evaluationRun"]
    stored2 = served.graphql(RUN, id=run2["id"])["evaluationRun"]
    assert (stored1["passed"], stored1["failed"], stored1["notRun"]) == (0, len(ids), 0)
    assert (stored2["passed"], stored2["total"], stored2["suite"]["version"]) == (len(ids),) * 2 + (
        1,
    )
    comparison = served.graphql(COMPARE, a=run1["id"], b=run2["id"])["compareRuns"]
    assert sorted(c["caseId"] for c in comparison["fixed"]) == sorted(ids)
    assert comparison["regressed"] == [] and comparison["stillFailing"] == []

    # Both groups (missed harms, false alarms) passed entirely in 2: a reviewer accepts.
    assert [p["version"] for p in stored2["proposals"]] == ["2", "2"]
    for proposal in stored2["proposals"]:
        assert served.graphql(ACCEPT, id=proposal["id"])["acceptResolution"]["status"] == (
            "accepted"
        )
    groups = served.graphql(
        "query($m: String!) { groups(model: $m) { nodes { status resolvedInVersion } } }", m=model
    )["groups"]["nodes"]
    assert [(g["status"], g["resolvedInVersion"]) for g in groups] == [("RESOLVED", "2")] * 2

    # ---- the gate, asked over the network by the CI job ----------------------------------
    policy = work / "gate.yaml"
    policy.write_text(f"block_severities: [S0, S1]\nsuites:\n  - name: {name}\n")
    gate = ("gate", "--model", model, "--policy", str(policy))
    blocked = failcat(served, *gate, "--version", "1", **online)
    assert blocked.returncode == 1, blocked.stderr
    assert f"release gate for {model} 1: BLOCKED" in blocked.stdout
    assert f"runs: {run1['id']}" in blocked.stdout
    passed = failcat(served, *gate, "--version", "2", **online)
    assert passed.returncode == 0, passed.stderr
    assert f"release gate for {model} 2: PASSED" in passed.stdout
    assert "[FAIL]" not in passed.stdout

    # The same answer as the host's local mode (this client sees every case).
    remote = failcat(served, *gate, "--version", "1", "--json", **online)
    local = failcat(served, *gate, "--version", "1", "--json")
    assert remote.returncode == local.returncode == 1
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert json.loads(remote.stdout)["passed"] is False

    # Errors are exit code 2, one line.
    unknown = failcat(served, "gate", "--model", a_name("nope"), "--version", "1", **online)
    assert unknown.returncode == 2 and "NOT_FOUND" in unknown.stderr, unknown.stderr

    # ---- offline: the exported JSONL, no server, no credentials, nothing recorded ----------
    offline_env = {"FAILCAT_URL": "", "HOME": str(work)}
    fixed = run_plugin(
        *("--failcat-suite-file", "suite.jsonl", "--failcat-model", "harm_model:predict_v2"),
        cwd=work,
        env=offline_env,
    )
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    assert len(plugin_outcomes(fixed.stdout)) == len(ids)
    broken = run_plugin(
        *("--failcat-suite-file", "suite.jsonl", "--failcat-model", "harm_model:predict_v1"),
        cwd=work,
        env=offline_env,
    )
    assert broken.returncode == 1
    assert f"suite {name} v1: 0 passed, {len(ids)} failed" in broken.stdout
    assert len(served.graphql(RUNS, m=model, v="2")["evaluationRuns"]) == 1
