"""Builders for safeguards tests: corpus cases of a model unique to the test, suites, runs."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases
from tests.gateway.helpers import INGEST, case_input, data, gql

SUITE = "name model version latestVersion caseCount query digest"
CREATE_SUITE = f"""
mutation($name: String!, $model: String!, $query: String, $ids: [ID!]) {{
  createSuite(name: $name, model: $model, query: $query, caseIds: $ids) {{ {SUITE} }}
}}"""
RUN_FIELDS = """id model version total passed failed errored notRun passRate
  latencyP50Ms latencyP95Ms falseAlarmRate positiveLabel
  suite { name version }
  byFailureMode { value total passed failed errored notRun passRate }
  bySeverity { value total passed }
  proposals { id groupId model version caseCount status group { id status } }"""
RECORD_RUN = f"""
mutation($run: EvaluationRunInput!) {{ recordEvaluationRun(run: $run) {{ {RUN_FIELDS} }} }}"""
COMPARE = """
query($a: ID!, $b: ID!) { compareRuns(a: $a, b: $b) {
  a { id } b { id } onlyInA onlyInB
  fixed { caseId failureMode before after }
  regressed { caseId before after }
  stillFailing { caseId before after } } }"""
GATE = """
query($model: String!, $version: String!, $policy: JSON) {
  releaseGate(model: $model, version: $version, policy: $policy) {
    model version passed
    conditions { name passed detail caseIds groupIds runIds waiverIds hidden } } }"""
ACCEPT = "mutation($id: ID!) { acceptResolution(id: $id) { id status decidedBy groupId } }"


def a_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def model_cases(model: str, n: int, version: str = "1.0.0", **overrides: Any) -> list[dict]:
    """n real AIID incidents as cases of `model` at `version`, unique to the calling test."""
    cases = unique(aiid_cases(n, model=model))
    for c in cases:
        c["model"] = {"name": model, "version": version}
        c.update(overrides)
    return cases


async def ingest(client: httpx.AsyncClient, token: str, cases: list[dict]) -> list[str]:
    body = await gql(client, token, INGEST, {"cases": [case_input(c) for c in cases]})
    results = data(body)["ingestCases"]
    assert all(r["status"] == "CREATED" for r in results), results
    return [r["id"] for r in results]


async def create_suite(
    client: httpx.AsyncClient,
    token: str,
    name: str,
    model: str,
    *,
    ids: list[str] | None = None,
    query: str | None = None,
) -> dict[str, Any]:
    body = await gql(
        client, token, CREATE_SUITE, {"name": name, "model": model, "ids": ids, "query": query}
    )
    return data(body)["createSuite"]


async def export(
    client: httpx.AsyncClient, token: str, name: str, version: int | str
) -> list[dict[str, Any]]:
    resp = await client.get(
        f"/safeguards/v1/suites/{name}/{version}.jsonl", headers=auth_header(token)
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in resp.content.splitlines()]


async def record_run(client: httpx.AsyncClient, token: str, run: dict[str, Any]) -> dict[str, Any]:
    return data(await gql(client, token, RECORD_RUN, {"run": run}))["recordEvaluationRun"]


async def searchable(client: httpx.AsyncClient, token: str, query: str, total: int) -> None:
    """Wait until the index (fed by the outbox) reports `total` hits for `query`."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        resp = await client.get("/search/v1/cases", params={"q": query}, headers=auth_header(token))
        if resp.json()["total"] == total:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{query!r} did not reach {total} hits within 15 s")


# ---- the pytest plugin, run as another team's CI would: a separate pytest process ----------
PLUGIN_LINE = re.compile(r"^failcat:(\S+)@(\d+)::(\S+)\[(\S+)\] (PASSED|FAILED)", re.M)


def run_plugin(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`python -m pytest -v ARGS` in `cwd`, with none of this session's FAILCAT_*/PYTEST_*
    variables. The failcat plugin loads through its pytest11 entry point; this venv's other
    entry-point plugins (schemathesis, hypothesis, ...) are blocked: they only cost seconds."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FAILCAT_", "PYTEST_"))}
    blocked = [
        flag
        for ep in entry_points(group="pytest11")
        if ep.name != "failcat"
        for flag in ("-p", f"no:{ep.name}")
    ]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *blocked, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def plugin_outcomes(output: str) -> dict[str, tuple[str, str]]:
    """case id -> (failure mode, PASSED | FAILED) from a -v run's lines."""
    return {m[2]: (m[3], m[4]) for m in PLUGIN_LINE.findall(output)}
