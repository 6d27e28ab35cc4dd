"""The case page beyond its facts: the annotations and whether their annotators agree, the
context events that preceded it, the suites it is frozen into, and the one-click replay of
those suites against a chosen model version (or the command that would run it)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

import pytest

from tests.annotation.helpers import ANNOTATOR, caller, submit
from tests.annotation.test_annotations import name_of
from tests.conftest import auth_header
from tests.gateway.ui.conftest import gql_data

SUITE = """mutation($n: String!, $m: String!, $ids: [ID!]) {
  createSuite(name: $n, model: $m, caseIds: $ids) { name version } }"""
RUN = """mutation($run: EvaluationRunInput!) { recordEvaluationRun(run: $run) { id } }"""


@pytest.fixture(scope="module")
async def a_case(corpus, admin_token, client):
    """One of the corpus's cases with a deploy an hour before it and a suite holding it."""
    case_id = corpus.ids[3]
    case = (
        await gql_data(
            client,
            admin_token,
            "query($id: ID!) { case(id: $id) {"
            " occurredAt model { name } modelVersion { version } } }",
            id=case_id,
        )
    )["case"]
    occurred = datetime.fromisoformat(case["occurredAt"].replace("Z", "+00:00"))
    deploy = {
        "kind": "deploy",
        "occurred_at": (occurred - timedelta(hours=1)).isoformat(),
        "scope": {"model": case["model"]["name"], "version": case["modelVersion"]["version"]},
        "title": f"rollout-{secrets.token_hex(3)}",
        "link": "https://deploys.example/r/1",
    }
    resp = await client.post("/catalog/v1/events", json=deploy, headers=auth_header(admin_token))
    assert resp.status_code in (200, 201), resp.text
    suite = f"ui-suite-{secrets.token_hex(3)}"
    await gql_data(client, admin_token, SUITE, n=suite, m=case["model"]["name"], ids=[case_id])
    return {
        "id": case_id,
        "model": case["model"]["name"],
        "version": case["modelVersion"]["version"],
        "deploy": deploy["title"],
        "suite": suite,
    }


async def test_case_page_shows_context_events_and_suites(curator, a_case):
    html = (await curator.http.get(f"/ui/cases/{a_case['id']}")).text
    context = html.split('id="context"', 1)[1].split("</section>", 1)[0]
    assert a_case["deploy"] in context and 'href="https://deploys.example/r/1"' in context
    suites = html.split('id="suites"', 1)[1].split("</section>", 1)[0]
    assert f"{a_case['suite']} v1" in suites


async def test_replay_shows_the_outcome_of_a_recorded_run_or_the_command(
    curator, a_case, admin_token, client
):
    page = await curator.http.get(f"/ui/cases/{a_case['id']}/replay", params={"version": "9.9.9"})
    assert page.status_code == 200
    assert f"pytest --failcat-suite {a_case['suite']}@1" in page.text
    assert "--failcat-version 9.9.9" in page.text

    run = {
        "model": a_case["model"],
        "version": "9.9.9",
        "suite": a_case["suite"],
        "outcomes": [{"caseId": a_case["id"], "outcome": "FAIL", "latencyMs": 12.5}],
    }
    await gql_data(client, admin_token, RUN, run=run)
    page = await curator.http.get(f"/ui/cases/{a_case['id']}/replay", params={"version": "9.9.9"})
    row = page.text.split('id="replay-results"', 1)[1]
    assert re.search(r'class="outcome outcome-fail">fail · 12.5 ms', row)
    assert "--failcat-version 9.9.9" not in row


async def test_annotations_and_their_agreement_on_the_case_page(curator, corpus, token_for, client):
    case_id = corpus.ids[4]
    first = await caller(token_for, ANNOTATOR, clearance="restricted")
    second = await caller(token_for, ANNOTATOR, clearance="restricted")
    values = {"failure_mode": "safety.harmful_content", "severity": "S2"}
    await submit(client, first, case_id, values, submit=True)
    await submit(client, second, case_id, values | {"severity": "S1"}, submit=True)
    html = (await curator.http.get(f"/ui/cases/{case_id}")).text
    section = html.split('id="annotations"', 1)[1].split("</section>", 1)[0]
    # Each annotator by name, the id kept in the cell's title.
    for who in (first, second):
        assert f'<span title="{who.subject}">{name_of(who.token)}</span>' in section
    agreement = section.split('id="agreement"', 1)[1]
    assert re.search(
        r'class="agreed"><strong>failcat.failure_mode</strong>:\s*all 2 agree', agreement
    )
    assert re.search(r'class="disagreed"><strong>failcat.severity</strong>:\s*disagree', agreement)
    assert f"{name_of(first.token)}: S2" in agreement and first.subject not in agreement
