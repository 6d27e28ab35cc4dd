"""Regression suites: frozen versions from case lists and saved queries, the JSONL export, and
visibility (a suite never shows a case to a reader who may not see it)."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import auth_header
from tests.gateway.helpers import codes, data, gql
from tests.safeguards.builders import (
    CREATE_SUITE,
    SUITE,
    a_name,
    create_suite,
    export,
    ingest,
    model_cases,
    record_run,
    searchable,
)

UPDATE = """mutation($id: ID!, $rev: Int!, $patch: CasePatchInput!) {
  updateCase(id: $id, patch: $patch, expectedRevision: $rev) { revision } }"""
SUITE_CASES = f"""query($name: String!, $version: Int, $first: Int!, $after: String) {{
  suite(name: $name, version: $version) {{ {SUITE}
    cases(first: $first, after: $after) {{
      nodes {{ caseId position revision contentHash severity failureMode input expected
               case {{ id team }} }}
      pageInfo {{ hasNextPage endCursor }} }} }} }}"""


@pytest.fixture(scope="module")
async def curator(token_for):
    return await token_for("cases:ingest cases:write cases:read", clearance="restricted")


async def test_a_list_of_cases_is_frozen_and_a_changed_selection_is_a_new_version(client, curator):
    model, name = a_name("fraud"), a_name("suite")
    cases = model_cases(model, 5)
    ids = await ingest(client, curator, cases)

    first = await create_suite(client, curator, name, model, ids=ids[:4])
    assert (first["version"], first["caseCount"], first["latestVersion"]) == (1, 4, 1)
    assert first["model"] == model and first["query"] is None

    # Re-creating the same selection (same cases, same revisions) numbers no copy.
    again = await create_suite(client, curator, name, model, ids=ids[:4])
    assert again["version"] == 1 and again["digest"] == first["digest"]

    # A curated change is a new revision: the next freeze is version 2; version 1 keeps its past.
    old_severity = cases[0]["severity"]
    body = await gql(client, curator, UPDATE, {"id": ids[0], "rev": 1, "patch": {"severity": "S4"}})
    assert data(body)["updateCase"]["revision"] == 2
    second = await create_suite(client, curator, name, model, ids=ids[:4])
    assert (second["version"], second["latestVersion"]) == (2, 2)
    assert second["digest"] != first["digest"]

    v1 = data(await gql(client, curator, SUITE_CASES, {"name": name, "version": 1, "first": 10}))
    nodes = v1["suite"]["cases"]["nodes"]
    assert [n["caseId"] for n in nodes] == ids[:4]
    assert nodes[0]["revision"] == 1 and nodes[0]["severity"] == old_severity
    assert nodes[0]["input"] == cases[0]["input"] and nodes[0]["expected"] == cases[0]["expected"]
    assert nodes[0]["case"]["id"] == ids[0]
    latest = data(await gql(client, curator, SUITE_CASES, {"name": name, "first": 10}))
    assert latest["suite"]["version"] == 2
    assert latest["suite"]["cases"]["nodes"][0]["severity"] == "S4"

    # Pages follow the frozen order.
    page = data(await gql(client, curator, SUITE_CASES, {"name": name, "version": 1, "first": 3}))
    conn = page["suite"]["cases"]
    assert conn["pageInfo"]["hasNextPage"] is True
    rest = data(
        await gql(
            client,
            curator,
            SUITE_CASES,
            {"name": name, "version": 1, "first": 3, "after": conn["pageInfo"]["endCursor"]},
        )
    )["suite"]["cases"]
    assert [n["caseId"] for n in conn["nodes"] + rest["nodes"]] == ids[:4]
    assert rest["pageInfo"]["hasNextPage"] is False

    # The export: one line per case with what a test needs, in frozen order, frozen values.
    lines = await export(client, curator, name, 1)
    assert [line["case_id"] for line in lines] == ids[:4]
    assert lines[0]["severity"] == old_severity
    for line, case in zip(lines, cases, strict=False):
        assert line["input"] == case["input"] and line["expected"] == case["expected"]
        assert line["failure_mode"] == case.get("failure_mode")
        assert (line["suite"], line["suite_version"]) == (name, 1)
    assert (await export(client, curator, name, "latest"))[0]["severity"] == "S4"


async def test_bad_suite_requests_get_coded_errors(client, curator):
    model, other = a_name("fraud"), a_name("other")
    [mine] = await ingest(client, curator, model_cases(model, 1))
    [theirs] = await ingest(client, curator, model_cases(other, 1))
    name = a_name("suite")

    body = await gql(
        client,
        curator,
        """mutation($ids: [ID!], $m: String!, $n: String!) {
          createSuite(name: $n, model: $m, query: "x", caseIds: $ids) { name } }""",
        {"ids": [mine], "m": model, "n": name},
    )
    assert codes(body) == ["BAD_USER_INPUT"]

    body = await gql(
        client,
        curator,
        """mutation($ids: [ID!], $m: String!, $n: String!) {
          createSuite(name: $n, model: $m, caseIds: $ids) { name } }""",
        {"ids": [mine, theirs, "00000000-0000-0000-0000-000000000000"], "m": model, "n": name},
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    paths = {e["path"]: e["message"] for e in body["errors"][0]["extensions"]["errors"]}
    assert set(paths) == {"caseIds.1", "caseIds.2"}
    assert other in paths["caseIds.1"] and "not found" in paths["caseIds.2"]

    body = await gql(
        client,
        curator,
        'mutation($m: String!) { createSuite(name: "has space", model: $m, caseIds: []) { name } }',
        {"m": model},
    )
    assert codes(body) == ["BAD_USER_INPUT"]

    await create_suite(client, curator, name, model, ids=[mine])
    body = await gql(
        client,
        curator,
        'mutation($n: String!, $ids: [ID!]) { createSuite(name: $n, model: "x", caseIds: $ids)'
        " { name } }",
        {"n": name, "ids": [mine]},
    )
    assert codes(body) == ["CONFLICT"]

    body = await gql(
        client, curator, "query($n: String!) { suite(name: $n, version: 7) { name } }", {"n": name}
    )
    assert codes(body) == ["NOT_FOUND"]
    resp = await client.get(f"/safeguards/v1/suites/{name}/7.jsonl", headers=auth_header(curator))
    assert resp.status_code == 404 and resp.json()["code"] == "NOT_FOUND"
    resp = await client.get(
        f"/safeguards/v1/suites/{name}/zero.jsonl", headers=auth_header(curator)
    )
    assert resp.status_code == 400 and resp.json()["errors"][0]["path"] == "version"
    resp = await client.get(f"/safeguards/v1/suites/{name}/1.jsonl")
    assert resp.status_code == 401


async def test_suite_versions_and_cursors_out_of_range_are_refused_naming_them(client, curator):
    """A cursor or URL version of non-ASCII digits ('²' passes str.isdigit(), not int()) was
    an INTERNAL error / a 500; version 0 answered the latest version and -1 'no version -1';
    a number past 32 bits got the generic 'a value cannot be stored'."""
    model, name = a_name("fraud"), a_name("suite")
    await create_suite(
        client, curator, name, model, ids=await ingest(client, curator, model_cases(model, 2))
    )
    for after in ("²", "٣", "-1", ""):
        body = await gql(client, curator, SUITE_CASES, {"name": name, "first": 1, "after": after})
        assert codes(body) == ["BAD_USER_INPUT"], after
        assert body["errors"][0]["extensions"]["errors"][0]["path"] == "after"
    far = await gql(client, curator, SUITE_CASES, {"name": name, "first": 1, "after": "9" * 40})
    assert data(far)["suite"]["cases"] == {
        "nodes": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
    }
    for version in (0, -1):
        body = await gql(
            client, curator, SUITE_CASES, {"name": name, "version": version, "first": 1}
        )
        assert codes(body) == ["BAD_USER_INPUT"], version
        assert body["errors"][0]["extensions"]["errors"][0]["path"] == "version"
    body = await gql(client, curator, SUITE_CASES, {"name": name, "version": 2**31 - 1, "first": 1})
    assert codes(body) == ["NOT_FOUND"]
    for version, status in (("²", 400), ("٣", 400), ("0", 400), ("9" * 30, 404)):
        resp = await client.get(
            f"/safeguards/v1/suites/{name}/{version}.jsonl", headers=auth_header(curator)
        )
        assert resp.status_code == status, (version, resp.text)
        if status == 400:
            assert resp.json()["errors"][0]["path"] == "version"


async def test_a_suite_name_that_names_no_export_is_refused(client, curator):
    """'.' and '..' were accepted as suite names, but a URL drops such segments, so their
    export (and the pytest plugin) answered a bare 404 forever; '-x' reads as an option to
    `failcat suites export`. A name now begins with a letter or a digit."""
    model = a_name("fraud")
    ids = await ingest(client, curator, model_cases(model, 1))
    for name in (".", "..", "-x", "_x", ".hidden", "has space"):
        body = await gql(client, curator, CREATE_SUITE, {"name": name, "model": model, "ids": ids})
        assert codes(body) == ["BAD_USER_INPUT"], name
        # In words, as SAFEGUARDS.md says it (the message was the pattern's regex).
        assert body["errors"][0]["extensions"]["errors"] == [
            {
                "path": "name",
                "message": "letters, digits, '.', '_' and '-', beginning with a letter or digit",
            }
        ]
    name = f"{a_name('v1')}.fraud_suite-2"
    await create_suite(client, curator, name, model, ids=ids)
    assert len(await export(client, curator, name, "latest")) == 1


async def test_a_name_or_id_holding_nul_is_absent_on_both_backends(client, curator):
    """Reads by a name or id holding U+0000 answered 'a value in the request cannot be
    stored' (400) on Postgres, which refuses the query, and NOT_FOUND on SQLite. No suite or
    run can hold one (inputs refuse it): NOT_FOUND, or an empty list, on both now."""
    resp = await client.get(
        "/safeguards/v1/suites/a%00b/latest.jsonl", headers=auth_header(curator)
    )
    assert resp.status_code == 404, resp.text
    for query, variables, expected in (
        ("query($n: String!) { suite(name: $n) { name } }", {"n": "a\x00"}, None),
        ("query($id: ID!) { evaluationRun(id: $id) { id } }", {"id": "r\x00"}, None),
        ("query($m: String!) { suites(model: $m) { name } }", {"m": "m\x00"}, {"suites": []}),
        (
            'query($m: String!) { evaluationRuns(model: $m, version: "1") { id } }',
            {"m": "m\x00"},
            {"evaluationRuns": []},
        ),
    ):
        body = await gql(client, curator, query, variables)
        if expected is None:
            assert codes(body) == ["NOT_FOUND"], query
        else:
            assert data(body) == expected


async def test_a_saved_query_is_rerun_into_a_new_version(client, curator):
    model, name = a_name("fraud"), a_name("suite")
    word = a_name("quuxplosion").replace("-", "")
    cases = model_cases(model, 5)
    for c in cases[:4]:
        c["title"] = f"{word} {c['title']}"
    ids = await ingest(client, curator, cases[:3] + cases[4:])
    # Another model's case with the word stays out: a suite is one model's.
    await ingest(client, curator, model_cases(a_name("other"), 1, title=f"{word} elsewhere"))
    await searchable(client, curator, word, 4)

    first = await create_suite(client, curator, name, model, query=word)
    assert (first["version"], first["caseCount"], first["query"]) == (1, 3, word)

    more = await ingest(client, curator, cases[3:4])
    await searchable(client, curator, word, 5)
    second = await create_suite(client, curator, name, model, query=word)
    assert (second["version"], second["caseCount"]) == (2, 4)
    assert {line["case_id"] for line in await export(client, curator, name, 2)} == set(
        ids[:3] + more
    )
    assert {line["case_id"] for line in await export(client, curator, name, 1)} == set(ids[:3])

    body = await gql(
        client,
        curator,
        'mutation($n: String!, $m: String!) { createSuite(name: $n, model: $m, query: "nomatchzz")'
        " { name } }",
        {"n": a_name("suite"), "m": model},
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    # What was given is named: "no case of model M found" read as if the model had none.
    [error] = body["errors"][0]["extensions"]["errors"]
    assert error == {"path": "query", "message": f"the query finds no case of model {model}"}
    body = await gql(
        client,
        curator,
        "mutation($n: String!, $m: String!) { createSuite(name: $n, model: $m, caseIds: [])"
        " { name } }",
        {"n": a_name("suite"), "m": model},
    )
    assert body["errors"][0]["extensions"]["errors"] == [
        {"path": "caseIds", "message": "no case id given"}
    ]


async def test_a_suite_never_shows_a_case_to_a_reader_who_cannot_see_it(client, token_for):
    admin = await token_for("cases:ingest cases:write cases:read", clearance="restricted")
    model = a_name("fraud")
    red_ids = await ingest(client, admin, model_cases(model, 3, team="red"))
    blue_ids = await ingest(client, admin, model_cases(model, 2, team="blue"))
    await searchable(client, admin, f'model:"{model}"', 5)
    red = await token_for("cases:write cases:read evals:write", team="red")
    blue = await token_for("cases:read evals:write", team="blue")

    # A team's query suite holds what that team can see.
    own = await create_suite(client, red, a_name("red"), model, query=f'model:"{model}"')
    assert own["caseCount"] == 3

    # A suite of every case: each team reads its own part, in the API and in the export.
    name = a_name("mixed")
    mixed = await create_suite(client, admin, name, model, ids=red_ids + blue_ids)
    assert mixed["caseCount"] == 5
    assert [x["case_id"] for x in await export(client, blue, name, 1)] == blue_ids
    assert [x["case_id"] for x in await export(client, red, name, 1)] == red_ids
    seen = data(await gql(client, blue, SUITE_CASES, {"name": name, "first": 2}))["suite"]["cases"]
    assert [n["caseId"] for n in seen["nodes"]] == blue_ids
    assert seen["pageInfo"]["hasNextPage"] is False

    # Naming another team's case is answered like a case that does not exist.
    body = await gql(
        client,
        red,
        "mutation($n: String!, $m: String!, $ids: [ID!]) {"
        " createSuite(name: $n, model: $m, caseIds: $ids) { name } }",
        {"n": a_name("steal"), "m": model, "ids": [blue_ids[0]]},
    )
    assert body["errors"][0]["extensions"]["errors"] == [
        {"path": "caseIds.0", "message": f"case {blue_ids[0]} not found"}
    ]
    # It said "1 case ids cannot be in the suite".
    assert body["errors"][0]["message"].startswith("1 case id cannot be in the suite: ")
    # ... and reporting an outcome for it too.
    body = await gql(
        client,
        red,
        "mutation($run: EvaluationRunInput!) { recordEvaluationRun(run: $run) { id } }",
        {
            "run": {
                "model": model,
                "version": "2.0.0",
                "suite": name,
                "outcomes": [{"caseId": blue_ids[0], "outcome": "PASS"}],
            }
        },
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "not a case of suite" in body["errors"][0]["extensions"]["errors"][0]["message"]

    # Visibility is checked when reading, not when freezing: a case raised above the
    # reader's clearance after the suite was made disappears from its export.
    body = await gql(
        client,
        admin,
        UPDATE,
        {"id": blue_ids[0], "rev": 1, "patch": {"sensitivity": "CONFIDENTIAL"}},
    )
    assert "errors" not in body, body
    assert [x["case_id"] for x in await export(client, blue, name, 1)] == blue_ids[1:]

    # Outcomes of a run list only what the reader may see.
    ci = await token_for("evals:write cases:read", clearance="restricted")
    run = await record_run(
        client,
        ci,
        {
            "model": model,
            "version": "2.0.0",
            "suite": name,
            "outcomes": [{"caseId": i, "outcome": "PASS"} for i in red_ids + blue_ids],
        },
    )
    body = await gql(
        client,
        blue,
        "query($id: ID!) { evaluationRun(id: $id) { outcomes { caseId } } }",
        {"id": run["id"]},
    )
    assert [o["caseId"] for o in data(body)["evaluationRun"]["outcomes"]] == sorted(blue_ids[1:])


async def test_export_streams_jsonl_lines_that_parse(client, curator):
    model, name = a_name("fraud"), a_name("suite")
    ids = await ingest(client, curator, model_cases(model, 30))
    await create_suite(client, curator, name, model, ids=ids)
    async with client.stream(
        "GET", f"/safeguards/v1/suites/{name}/1.jsonl", headers=auth_header(curator)
    ) as resp:
        assert resp.status_code == 200
        assert f"{name}-1.jsonl" in resp.headers["content-disposition"]
        lines = [orjson.loads(line) async for line in resp.aiter_lines() if line]
    assert [x["position"] for x in lines] == list(range(30))
    assert set(lines[0]) == {
        "case_id",
        "input",
        "expected",
        "failure_mode",
        "severity",
        "synthetic",
        "parent_case_id",
        "suite",
        "suite_version",
        "position",
    }
    assert lines[0]["synthetic"] is False and lines[0]["parent_case_id"] is None


async def test_an_abandoned_export_releases_its_transaction(client, curator, db, monkeypatch):
    from services.safeguards import service
    from shared.security import SYSTEM

    model, name = a_name("fraud"), a_name("suite")
    ids = await ingest(client, curator, model_cases(model, 7))
    await create_suite(client, curator, name, model, ids=ids)
    monkeypatch.setattr(service, "EXPORT_PAGE", 2)  # several pages, one read ahead

    _, lines = await service.export_suite(db, name, 1, SYSTEM)
    first = await lines.__anext__()
    assert first.count(b"\n") == 2
    await lines.aclose()  # the client went away with a page still being read

    _, lines = await service.export_suite(db, name, 1, SYSTEM)
    chunks = [chunk async for chunk in lines]
    assert [orjson.loads(x)["case_id"] for c in chunks for x in c.splitlines()] == ids


CASE_SUITES = """query($model: String!) {
  cases(filter: {model: $model}) { nodes { id suites { name version latestVersion } } } }"""


async def test_a_case_lists_the_suite_versions_it_is_frozen_into(client, curator):
    model, name, other = a_name("fraud"), a_name("suite"), a_name("suite")
    ids = await ingest(client, curator, model_cases(model, 3))
    await create_suite(client, curator, name, model, ids=ids[:2])
    await create_suite(client, curator, name, model, ids=ids[:1])  # version 2: the first only
    await create_suite(client, curator, other, model, ids=ids[1:2])

    body = await gql(client, curator, CASE_SUITES, {"model": model})
    found = {n["id"]: n["suites"] for n in data(body)["cases"]["nodes"]}
    assert found[ids[0]] == [
        {"name": name, "version": 1, "latestVersion": 2},
        {"name": name, "version": 2, "latestVersion": 2},
    ]
    assert sorted((s["name"], s["version"]) for s in found[ids[1]]) == sorted(
        [(name, 1), (other, 1)]
    )
    assert found[ids[2]] == []
