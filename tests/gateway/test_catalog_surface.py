"""The catalog through GraphQL: cases and their relations, groups, models, taxonomy, rubric,
sampling rules, ingestion, updates, status changes, merges, group resolution."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime

from sqlalchemy import select

from services.audit.models import AuditEntry
from tests.auth.builders import make_user, pkce_pair, query_of, register, sign_in
from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases
from tests.gateway.helpers import INGEST, camel, case_input, codes, data, gql, ingest_corpus

CASE = """
query One($id: ID!) {
  case(id: $id) {
    id title revision status severity sensitivity tags failureMode
    model { id name versions { version } }
    modelVersion { version }
    dataSource { name }
    group { id caseCount status model { name } }
    links { kind url title }
    writeup { hypothesis results }
    provenance { source pipelineVersion }
    revisions { revision actor changes }
    lastRevision { revision }
  }
}"""

UPDATE = """
mutation Update($id: ID!, $patch: CasePatchInput!, $rev: Int!) {
  updateCase(id: $id, patch: $patch, expectedRevision: $rev, reason: "triage") {
    id revision title severity links { kind url } writeup { hypothesis }
  }
}"""


async def test_case_with_every_relation(client, token_for):
    token = await token_for("cases:read cases:ingest")
    [case] = unique(aiid_cases(1))
    case["links"] = [{"kind": "ticket", "url": "https://tickets.example/FC-1", "title": "t"}]
    case["writeup"] = {"hypothesis": "label noise in the deployer field"}
    body = await gql(client, token, INGEST, {"cases": [case_input(case)]})
    case_id = data(body)["ingestCases"][0]["id"]

    got = data(await gql(client, token, CASE, {"id": case_id}))["case"]
    assert got["title"] == case["title"]
    assert got["model"]["name"] == case["model"]["name"]
    assert {"version": case["model"]["version"]} in got["model"]["versions"]
    assert got["modelVersion"]["version"] == case["model"]["version"]
    assert got["dataSource"]["name"] == case["data_source"]
    assert got["group"]["caseCount"] >= 1 and got["group"]["model"]["name"] == case["model"]["name"]
    assert got["links"] == [{"kind": "TICKET", "url": "https://tickets.example/FC-1", "title": "t"}]
    assert got["writeup"] == {"hypothesis": "label noise in the deployer field", "results": None}
    assert got["provenance"]["source"].startswith("src-")
    assert got["revisions"][0]["revision"] == 1 and got["lastRevision"] == {"revision": 1}


async def test_update_status_merge_and_conflict(client, token_for):
    token = await token_for("cases:read cases:write cases:ingest")
    a, b = await ingest_corpus(client, token, 2)

    patch = {
        "title": "Refund scored as fraud",
        "severity": "S1",
        "links": [{"kind": "EXPERIMENT", "url": "https://mlflow.example/run/1"}],
        "writeup": {"hypothesis": "stale merchant features"},
    }
    got = data(await gql(client, token, UPDATE, {"id": a, "patch": patch, "rev": 1}))["updateCase"]
    assert got["revision"] == 2 and got["severity"] == "S1"
    assert got["links"] == [{"kind": "EXPERIMENT", "url": "https://mlflow.example/run/1"}]

    stale = await gql(client, token, UPDATE, {"id": a, "patch": {"title": "x"}, "rev": 1})
    assert codes(stale) == ["CONFLICT"]

    status = """mutation($id: ID!) { setCaseStatus(id: $id, status: TRIAGED, expectedRevision: 2)
                { status revision } }"""
    assert data(await gql(client, token, status, {"id": a}))["setCaseStatus"] == {
        "status": "TRIAGED",
        "revision": 3,
    }
    skip = """mutation($id: ID!) { setCaseStatus(id: $id, status: RESOLVED, expectedRevision: 3)
              { status } }"""
    body = await gql(client, token, skip, {"id": a})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["errors"][0]["path"] == "status"

    merge = """mutation($id: ID!, $into: ID!) { mergeCase(id: $id, into: $into,
               expectedRevision: 1) { status mergedIntoId } }"""
    assert data(await gql(client, token, merge, {"id": b, "into": a}))["mergeCase"] == {
        "status": "DUPLICATE",
        "mergedIntoId": a,
    }

    history = """query($id: ID!) { case(id: $id) { lastRevision { revision reason }
                 revisions { revision } } }"""
    got = data(await gql(client, token, history, {"id": a}))["case"]
    assert got["lastRevision"]["revision"] == 3
    assert [r["revision"] for r in got["revisions"]] == [1, 2, 3]


async def test_input_errors_point_at_the_field(client, token_for):
    token = await token_for("cases:read cases:write cases:ingest")
    [a] = await ingest_corpus(client, token, 1)
    bad = {"links": [{"kind": "TICKET", "url": "not a url"}], "title": "x" * 600}
    body = await gql(client, token, UPDATE, {"id": a, "patch": bad, "rev": 1})
    assert codes(body) == ["BAD_USER_INPUT"]
    paths = {e["path"] for e in body["errors"][0]["extensions"]["errors"]}
    assert paths == {"title", "links.0.url"}


async def test_cases_connection_pages_with_cursors(client, token_for):
    token = await token_for("cases:read cases:ingest")
    source = f"paging-{secrets.token_hex(3)}"
    ids = await ingest_corpus(client, token, 5, data_source=source)
    query = """query($f: CaseFilterInput, $after: String) {
      cases(filter: $f, first: 2, after: $after) {
        edges { cursor node { id } } nodes { id } pageInfo { hasNextPage endCursor } } }"""
    seen, after = [], None
    for _ in range(3):
        page = data(await gql(client, token, query, {"f": {"dataSource": source}, "after": after}))[
            "cases"
        ]
        assert [e["node"]["id"] for e in page["edges"]] == [n["id"] for n in page["nodes"]]
        seen += [n["id"] for n in page["nodes"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert sorted(seen) == sorted(ids)


async def test_groups_models_taxonomy_rubric(client, token_for):
    token = await token_for("cases:read cases:ingest")
    model = f"grouping-model-{secrets.token_hex(3)}"
    ids = await ingest_corpus(client, token, 3, model={"name": model, "version": "2.0.0"})
    query = """query($m: String!) {
      groups(model: $m, first: 10) { nodes { id caseCount model { name }
        cases(first: 10) { nodes { id } } } pageInfo { hasNextPage } }
      models { name versions { version } }
      taxonomy { code parent title }
      taxonomyVersions { version publishedBy }
      severityRubric { grade rank title }
    }"""
    got = data(await gql(client, token, query, {"m": model}))
    grouped = {c["id"] for g in got["groups"]["nodes"] for c in g["cases"]["nodes"]}
    assert grouped == set(ids)
    assert all(g["model"]["name"] == model for g in got["groups"]["nodes"])
    assert {"name": model, "versions": [{"version": "2.0.0"}]} in got["models"]
    assert any(m["code"] == "label_noise.mislabeled_target" for m in got["taxonomy"])
    assert got["taxonomyVersions"][0]["version"] == 1
    assert [g["grade"] for g in got["severityRubric"]] == ["S0", "S1", "S2", "S3", "S4"]


async def test_resolve_group_publish_taxonomy_and_sampling_rules(client, token_for, admin_token):
    curator = await token_for("cases:read cases:write cases:ingest")
    model = f"resolving-{secrets.token_hex(3)}"
    [case_id] = await ingest_corpus(client, curator, 1, model={"name": model, "version": "1.0"})
    group = data(
        await gql(
            client, curator, "query($id: ID!) { case(id: $id) { group { id } } }", {"id": case_id}
        )
    )["case"]["group"]["id"]
    resolve = """mutation($id: ID!, $v: String!) { resolveGroup(id: $id, fixedInVersion: $v)
                 { status resolvedInVersion } }"""
    assert data(await gql(client, curator, resolve, {"id": group, "v": "1.0"}))["resolveGroup"] == {
        "status": "RESOLVED",
        "resolvedInVersion": "1.0",
    }
    unknown = await gql(client, curator, resolve, {"id": group, "v": "9.9"})
    assert codes(unknown) == ["BAD_USER_INPUT"]

    code = f"robustness.gw_{secrets.token_hex(3)}"
    publish = """mutation($codes: [FailureModeInput!]!) { publishTaxonomy(codes: $codes,
                 note: "gateway test") { version note } }"""
    published = data(
        await gql(
            client, admin_token, publish, {"codes": [{"code": code, "title": "Gateway test mode"}]}
        )
    )
    version = published["publishTaxonomy"]["version"]
    modes = data(
        await gql(
            client, curator, "query($v: Int) { taxonomy(version: $v) { code } }", {"v": version}
        )
    )["taxonomy"]
    assert code in {m["code"] for m in modes}
    orphan = await gql(client, admin_token, publish, {"codes": [{"code": "nope.child"}]})
    assert codes(orphan) == ["BAD_USER_INPUT"]
    assert orphan["errors"][0]["extensions"]["errors"][0]["path"] == "codes.0.code"

    rule = {"modelName": model, "dataSource": "aiid", "dailyCap": 5, "keepAtOrAbove": "S2"}
    setter = """mutation($r: SamplingRuleInput!) { setSamplingRule(rule: $r)
                { modelName dailyCap keepAtOrAbove enabled } }"""
    assert data(await gql(client, admin_token, setter, {"r": rule}))["setSamplingRule"] == {
        "modelName": model,
        "dailyCap": 5,
        "keepAtOrAbove": "S2",
        "enabled": True,
    }
    rules = data(await gql(client, curator, "{ samplingRules { modelName dailyCap } }"))
    assert {"modelName": model, "dailyCap": 5} in rules["samplingRules"]
    bad = await gql(client, admin_token, setter, {"r": {**rule, "dailyCap": 0}})
    assert codes(bad) == ["BAD_USER_INPUT"]


async def test_similar_cases_come_from_search_and_respect_visibility(app, client, token_for):
    token = await token_for("cases:read cases:ingest", clearance="restricted")
    word = f"okapi{secrets.token_hex(3)}"
    # Incidents far into the corpus: other tests ingest the first ones, which would compete.
    cases = unique(aiid_cases(400)[-3:])
    for c in cases:
        c["title"] = f"{c['title']} {word} {word}"
        # Near-duplicates of the first write-up: similar by any measure, whatever else the
        # shared index holds by the time this test runs.
        c["summary"] = f"{word} {cases[0]['summary']}"
    cases[2]["sensitivity"] = "restricted"
    body = await gql(client, token, INGEST, {"cases": [case_input(c) for c in cases]})
    ids = [r["id"] for r in data(body)["ingestCases"]]
    query = "query($id: ID!) { case(id: $id) { similar(first: 10) { id } } }"
    internal = await token_for("cases:read", clearance="internal")
    deadline = time.monotonic() + 5
    while True:
        similar = data(await gql(client, token, query, {"id": ids[0]}))["case"]["similar"]
        if {s["id"] for s in similar} >= {ids[1], ids[2]} or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert {ids[1], ids[2]} <= {s["id"] for s in similar}, (ids, similar)
    cid = f"cid-{secrets.token_hex(4)}"
    seen = data(await gql(client, internal, query, {"id": ids[0]}, **{"X-Request-ID": cid}))
    seen = seen["case"]["similar"]
    assert ids[2] not in {s["id"] for s in seen}
    # The answer is a read of those cases: one entry, ids only, stored before it was sent.
    async with app.state.db.sessionmaker() as s:
        [entry] = (
            await s.execute(
                select(AuditEntry).where(
                    AuditEntry.action == "cases.similar", AuditEntry.correlation_id == cid
                )
            )
        ).scalars()
    assert entry.target == f"case:{ids[0]}"
    assert entry.details == {"ids": [s["id"] for s in seen]} and ids[1] in entry.details["ids"]


async def test_a_group_counts_only_the_cases_its_reader_may_see(client, token_for):
    """caseCount must not tell a reader that cases of another team, or above their
    clearance, exist: each reader's count is the group's cases listed for them."""
    admin = await token_for("cases:read cases:ingest", clearance="restricted")
    team = f"team-{secrets.token_hex(3)}"
    cases = unique(aiid_cases(12)[-4:])
    for c in cases:
        c["fingerprint"] = f"fp-{cases[0]['external_id']}"  # one group
        c["model"] = cases[0]["model"]
    cases[1]["team"] = f"other-{team}"
    cases[2]["sensitivity"] = "restricted"
    cases[3]["team"] = team
    body = await gql(client, admin, INGEST, {"cases": [case_input(c) for c in cases]})
    ids = [r["id"] for r in data(body)["ingestCases"]]
    query = """query($id: ID!) { case(id: $id) { group { caseCount cases { nodes { id } } } } }"""
    readers = {
        "admin": (admin, set(ids)),
        "team reader": (
            await token_for("cases:read", team=team, clearance="internal"),
            {ids[0], ids[3]},
        ),
        "internal reader": (await token_for("cases:read"), {ids[0], ids[1], ids[3]}),
    }
    for why, (token, sees) in readers.items():
        group = data(await gql(client, token, query, {"id": ids[0]}))["case"]["group"]
        assert {n["id"] for n in group["cases"]["nodes"]} == sees, why
        assert group["caseCount"] == len(sees), why


async def test_a_patch_cannot_null_a_field_every_case_has(client, token_for):
    token = await token_for("cases:read cases:write cases:ingest")
    [a] = await ingest_corpus(client, token, 1)
    update = """mutation($id: ID!, $p: CasePatchInput!) {
      updateCase(id: $id, patch: $p, expectedRevision: 1) { revision tags } }"""
    for field in ("tags", "sensitivity", "status"):
        body = await gql(client, token, update, {"id": a, "p": {field: None}})
        assert codes(body) == ["BAD_USER_INPUT"], body
        [error] = body["errors"][0]["extensions"]["errors"]
        assert error["path"].endswith(field) and "cannot be null" in error["message"], error
    # [] is how tags are cleared; the case is still at revision 1 after the refusals.
    body = await gql(client, token, update, {"id": a, "p": {"tags": []}})
    assert data(body)["updateCase"] == {"revision": 2, "tags": []}


async def test_a_mutation_document_is_atomic(client, token_for):
    """Two updates in one document, the second stale: neither is stored, no data returned."""
    token = await token_for("cases:read cases:write cases:ingest")
    [a] = await ingest_corpus(client, token, 1)
    both = """mutation($id: ID!) {
      first: updateCase(id: $id, patch: {title: "stored?"}, expectedRevision: 1) { revision }
      second: updateCase(id: $id, patch: {title: "stale"}, expectedRevision: 1) { revision }
    }"""
    body = await gql(client, token, both, {"id": a})
    assert body["data"] is None and codes(body) == ["CONFLICT"]
    one = "query($id: ID!) { case(id: $id) { revision title } }"
    got = data(await gql(client, token, one, {"id": a}))["case"]
    assert got["revision"] == 1 and got["title"] != "stored?"


async def test_publish_taxonomy_refuses_empty_duplicate_and_malformed_codes(client, admin_token):
    """Each bad code is named by its field, all in one answer; nothing is published."""
    publish = """mutation($codes: [FailureModeInput!]!) { publishTaxonomy(codes: $codes)
                 { version } }"""
    versions = "{ taxonomyVersions { version } }"
    before = data(await gql(client, admin_token, versions))["taxonomyVersions"]
    fresh = f"robustness.dup_{secrets.token_hex(3)}"
    cases = [
        ([{"code": ""}, {"code": ""}], {"codes.0.code", "codes.1.code"}),
        ([{"code": "   "}], {"codes.0.code"}),
        ([{"code": fresh}, {"code": fresh}], {"codes.1.code"}),
        ([{"code": "has space"}, {"code": "a.b.c"}], {"codes.0.code", "codes.1.code"}),
    ]
    for codes_in, paths in cases:
        body = await gql(client, admin_token, publish, {"codes": codes_in})
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert {e["path"] for e in body["errors"][0]["extensions"]["errors"]} == paths, body
    assert data(await gql(client, admin_token, versions))["taxonomyVersions"] == before


async def test_ingest_cases_answers_conflict_and_keeps_payloadless_reports_apart(client, token_for):
    token = await token_for("cases:read cases:ingest")
    a, b = unique(aiid_cases(2))
    reused = dict(b, external_id=a["external_id"], data_source=a["data_source"])
    reused["provenance"] = a["provenance"]
    bare = [
        {k: c[k] for k in ("model", "title", "summary")} | {"data_source": a["data_source"]}
        for c in (a, b)
    ]
    body = await gql(
        client, token, INGEST, {"cases": [case_input(c) for c in (a, reused, *bare, a)]}
    )
    results = data(body)["ingestCases"]
    assert [r["status"] for r in results] == [
        "CREATED",
        "CONFLICT",
        "CREATED",
        "CREATED",
        "DUPLICATE",
    ]
    assert results[1]["id"] == results[0]["id"] == results[4]["id"]
    assert results[1]["errors"][0]["path"] == "externalId"
    assert len({r["id"] for r in results[:4]}) == 3


WHOLE = """
query($id: ID!, $asOf: DateTime) {
  case(id: $id, asOf: $asOf) {
    id revision externalId title summary occurredAt capturedAt receivedAt updatedAt
    environment input prediction expected confidence latencyMs signals failureMode
    taxonomyVersion severity impact status tags sensitivity team fingerprint contentHash
    mergedIntoId payloadSensitivity redactedFields piiFindings { kind path } capturePolicyVersion
    model { id name } modelVersion { id version } dataSource { name } group { id }
    links { kind url title }
    writeup { hypothesis experiments results rationale }
    provenance { source pipelineVersion capturedBy batchId }
  }
}"""
_ENUMS = {"status", "severity", "sensitivity", "payloadSensitivity"}


def _rest_facts(case: dict) -> dict:
    """A REST case in GraphQL's shape: the comparison is of facts, not of spelling."""
    out = {camel(k): v for k, v in case.items()}
    model = out.pop("model")
    out["model"] = {"id": model["id"], "name": model["name"]}
    out["modelVersion"] = {"id": model["version_id"], "version": model["version"]}
    out["dataSource"] = {"name": out["dataSource"]}
    out["group"] = {"id": out.pop("groupId")}
    out["provenance"] = {camel(k): v for k, v in (out["provenance"] or {}).items()}
    return out


def _normalised(case: dict) -> dict:
    out = dict(case)
    for key in ("occurredAt", "capturedAt", "receivedAt", "updatedAt"):
        if out.get(key):
            out[key] = datetime.fromisoformat(out[key].replace("Z", "+00:00"))
    for key in _ENUMS:
        out[key] = out[key].lower() if out.get(key) else out.get(key)
    out["links"] = [{**lk, "kind": lk["kind"].lower()} for lk in out["links"]]
    for key in ("writeup", "provenance"):
        out[key] = {k: v for k, v in (out[key] or {}).items() if v is not None} or None
    return out


async def test_rest_and_graphql_read_the_same_facts_of_a_case(client, token_for):
    token = await token_for("cases:read cases:write cases:ingest", clearance="restricted")
    [case] = unique(aiid_cases(1))
    case["links"] = [{"kind": "other", "url": "https://wiki.example/p/1", "title": "notes"}]
    case["writeup"] = {"hypothesis": "stale taxonomy"}
    case.update(severity="S2", sensitivity="confidential", team="rest-vs-gql", latency_ms=12.5)
    [case_id] = [
        r["id"]
        for r in data(await gql(client, token, INGEST, {"cases": [case_input(case)]}))[
            "ingestCases"
        ]
    ]
    middle = datetime.now(UTC).isoformat()
    await asyncio.sleep(0.01)
    patch = {"title": "curated", "links": [{"kind": "TICKET", "url": "https://t.example/9"}]}
    data(await gql(client, token, UPDATE, {"id": case_id, "patch": patch, "rev": 1}))

    # A time without a zone is read as UTC, as ingestion reads one.
    for as_of in (None, middle, middle.removesuffix("+00:00")):
        params = {"asOf": as_of} if as_of else {}
        rest = await client.get(
            f"/catalog/v1/cases/{case_id}", params=params, headers=auth_header(token)
        )
        assert rest.status_code == 200, rest.text
        graph = data(await gql(client, token, WHOLE, {"id": case_id, "asOf": as_of}))["case"]
        rest_case = _rest_facts(rest.json())
        assert set(rest_case) == set(graph), set(rest_case) ^ set(graph)
        assert _normalised(rest_case) == _normalised(graph)
        assert rest_case["model"]["name"] == case["model"]["name"]
        assert rest_case["modelVersion"]["version"] == case["model"]["version"]
        assert rest_case["dataSource"]["name"] == case["data_source"]
        expected = (
            case["links"]
            if as_of
            else [{"kind": "ticket", "url": "https://t.example/9", "title": None}]
        )
        assert rest_case["links"] == expected


REGISTER = """mutation($m: String!, $v: String!, $uri: String, $data: String, $hash: String) {
  registerModelVersion(model: $m, version: $v, artifactUri: $uri, trainingDataRef: $data,
                       featureConfigHash: $hash) {
    id version artifactUri trainingDataRef featureConfigHash } }"""


async def test_a_registered_version_resolves_a_group_before_its_first_case(client, token_for):
    curator = await token_for("cases:read cases:write cases:ingest")
    model = f"registry-{secrets.token_hex(3)}"
    [case_id] = await ingest_corpus(client, curator, 1, model={"name": model, "version": "3.2.0"})
    group = data(
        await gql(
            client, curator, "query($id: ID!) { case(id: $id) { group { id } } }", {"id": case_id}
        )
    )["case"]["group"]["id"]
    resolve = """mutation($id: ID!, $v: String!) { resolveGroup(id: $id, fixedInVersion: $v)
                 { status resolvedInVersion } }"""
    unknown = await gql(client, curator, resolve, {"id": group, "v": "3.3.0"})
    assert codes(unknown) == ["BAD_USER_INPUT"]
    [hint] = unknown["errors"][0]["extensions"]["errors"]
    assert hint["path"] == "fixedInVersion" and "registerModelVersion" in hint["message"]
    assert "3.2.0" in hint["message"]

    described = {
        "m": model,
        "v": "3.3.0",
        "uri": "s3://models/registry/3.3.0/model.onnx",
        "data": "s3://datasets/payments/2026-11-01",
        "hash": "sha256:9f2c",
    }
    registered = data(await gql(client, curator, REGISTER, described))["registerModelVersion"]
    assert registered["artifactUri"] == described["uri"]
    assert registered["featureConfigHash"] == "sha256:9f2c"
    again = data(await gql(client, curator, REGISTER, described))["registerModelVersion"]
    assert again == registered
    clash = await gql(client, curator, REGISTER, {**described, "uri": "s3://elsewhere"})
    assert codes(clash) == ["CONFLICT"]
    assert clash["errors"][0]["extensions"]["errors"][0]["path"] == "artifactUri"

    assert data(await gql(client, curator, resolve, {"id": group, "v": "3.3.0"}))[
        "resolveGroup"
    ] == {"status": "RESOLVED", "resolvedInVersion": "3.3.0"}
    # A version ingestion created bare gets its description when registered later.
    bare = data(await gql(client, curator, REGISTER, {"m": model, "v": "3.2.0", "uri": "s3://a"}))
    assert bare["registerModelVersion"]["artifactUri"] == "s3://a"
    models = data(
        await gql(client, curator, "{ models { name versions { version artifactUri } } }")
    )
    [mine] = [m for m in models["models"] if m["name"] == model]
    assert sorted(v["version"] for v in mine["versions"]) == ["3.2.0", "3.3.0"]

    brand_new = f"registry-new-{secrets.token_hex(3)}"
    first = data(await gql(client, curator, REGISTER, {"m": brand_new, "v": "0.1"}))
    assert first["registerModelVersion"]["version"] == "0.1"
    bad = await gql(client, curator, REGISTER, {"m": " ", "v": "x" * 101})
    assert codes(bad) == ["BAD_USER_INPUT"]
    assert {e["path"] for e in bad["errors"][0]["extensions"]["errors"]} == {"model", "version"}


async def test_history_names_the_client_and_the_user_behind_each_revision(client, app):
    """Revisions carry the actor's name as it was when written: a client by its name, a
    person by their username (GraphQL `actorName` and the REST history)."""
    salt = secrets.token_hex(3)
    monitor = await register(
        app,
        name=f"payments-monitor-{salt}",
        scopes=["cases:ingest", "cases:read"],
        grant_types=["client_credentials"],
    )
    minted = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "cases:ingest cases:read"},
        auth=(monitor.client_id, monitor.secret),
    )
    service_token = minted.json()["access_token"]
    [case_id] = await ingest_corpus(client, service_token, 1, team=f"payments-{salt}")

    web = await register(
        app,
        name=f"triage-ui-{salt}",
        scopes=["cases:read", "cases:write"],
        grant_types=["authorization_code"],
        redirect_uris=["https://ui.example/cb"],
        clearance="restricted",
    )
    username, password = await make_user(app, ["curator"], clearance="restricted")
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": web.client_id,
        "redirect_uri": "https://ui.example/cb",
        "scope": "cases:read cases:write",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    signed_in = await sign_in(client, params, username, password)
    code = query_of(signed_in.headers["location"])["code"]
    redeemed = await client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://ui.example/cb",
            "code_verifier": verifier,
        },
        auth=(web.client_id, web.secret),
    )
    user_token = redeemed.json()["access_token"]
    data(await gql(client, user_token, UPDATE, {"id": case_id, "patch": {"title": "t"}, "rev": 1}))

    query = "query($id: ID!) { case(id: $id) { revisions { revision actor actorName } } }"
    revisions = data(await gql(client, user_token, query, {"id": case_id}))["case"]["revisions"]
    assert [(r["revision"], r["actorName"]) for r in revisions] == [
        (1, f"payments-monitor-{salt}"),
        (2, username),
    ]
    assert revisions[0]["actor"] == monitor.client_id and revisions[1]["actor"] != username
    rest = await client.get(
        f"/catalog/v1/cases/{case_id}/revisions", headers=auth_header(user_token)
    )
    assert [(r["revision"], r["actor_name"], r["reason"]) for r in rest.json()["revisions"]] == [
        (1, f"payments-monitor-{salt}", "ingested"),
        (2, username, "triage"),
    ]
    assert rest.json()["revisions"][1]["changes"]["title"]["new"] == "t"
    hidden = await client.get(
        f"/catalog/v1/cases/{case_id}/revisions",
        headers=auth_header(await _token(client, app, team=f"elsewhere-{salt}")),
    )
    assert hidden.status_code == 404


async def _token(client, app, team: str) -> str:
    other = await register(
        app, scopes=["cases:read"], grant_types=["client_credentials"], team=team
    )
    minted = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "cases:read"},
        auth=(other.client_id, other.secret),
    )
    return minted.json()["access_token"]


async def test_every_error_of_an_item_at_once_in_camel_case(client, token_for):
    """An unknown failure mode is reported beside the item's other errors, not after they are
    fixed; paths are spelled as the GraphQL input is (camelCase)."""
    token = await token_for("cases:read cases:write cases:ingest")
    [case] = unique(aiid_cases(1))
    case.update(failure_mode="label_noise.mislabled_target", latency_ms=-1, confidence=2)
    case["model"] = {"name": case["model"]["name"], "version": ""}
    body = await gql(client, token, INGEST, {"cases": [case_input(case)]})
    [result] = data(body)["ingestCases"]
    assert result["status"] == "INVALID"
    paths = {e["path"]: e["message"] for e in result["errors"]}
    assert set(paths) == {"failureMode", "latencyMs", "confidence", "model.version"}
    assert "label_noise.mislabeled_target" in paths["failureMode"]

    [a] = await ingest_corpus(client, token, 1)
    patch = {"failureMode": "no_such_mode", "title": "x" * 600}
    bad = await gql(client, token, UPDATE, {"id": a, "patch": patch, "rev": 1})
    assert codes(bad) == ["BAD_USER_INPUT"]
    assert {e["path"] for e in bad["errors"][0]["extensions"]["errors"]} == {
        "title",
        "failureMode",
    }


async def test_graphql_spells_enum_values_one_way_even_in_revision_changes(client, token_for):
    token = await token_for("cases:read cases:write cases:ingest")
    [a] = await ingest_corpus(client, token, 1)
    patch = {"links": [{"kind": "AB_TEST", "url": "https://ab.example/42"}]}
    data(await gql(client, token, UPDATE, {"id": a, "patch": patch, "rev": 1}))
    status = """mutation($id: ID!) { setCaseStatus(id: $id, status: TRIAGED, expectedRevision: 2)
                { links { kind } } }"""
    assert data(await gql(client, token, status, {"id": a}))["setCaseStatus"]["links"] == [
        {"kind": "AB_TEST"}
    ]
    query = "query($id: ID!) { case(id: $id) { revisions { changes } } }"
    revisions = data(await gql(client, token, query, {"id": a}))["case"]["revisions"]
    assert revisions[1]["changes"]["links"]["new"][0]["kind"] == "AB_TEST"
    assert revisions[2]["changes"]["status"] == {"old": "NEW", "new": "TRIAGED"}
    rest = await client.get(f"/catalog/v1/cases/{a}/revisions", headers=auth_header(token))
    history = rest.json()["revisions"]
    assert history[1]["changes"]["links"]["new"][0]["kind"] == "ab_test"
    assert history[2]["changes"]["status"] == {"old": "new", "new": "triaged"}


async def test_cursors_are_one_encoding_and_not_interchangeable(client, token_for):
    token = await token_for("cases:read cases:ingest")
    model = f"cursor-{secrets.token_hex(3)}"
    await ingest_corpus(client, token, 2, model={"name": model, "version": "1"})
    cases = """query($after: String) { cases(first: 1, after: $after) {
               pageInfo { endCursor } } }"""
    groups = """query($after: String) { groups(first: 1, after: $after) {
                pageInfo { endCursor } } }"""
    case_cursor = data(await gql(client, token, cases))["cases"]["pageInfo"]["endCursor"]
    group_cursor = data(await gql(client, token, groups))["groups"]["pageInfo"]["endCursor"]
    assert data(await gql(client, token, cases, {"after": case_cursor}))["cases"]
    assert data(await gql(client, token, groups, {"after": group_cursor}))["groups"]
    for query, foreign in ((groups, case_cursor), (cases, group_cursor), (cases, "%%junk")):
        body = await gql(client, token, query, {"after": foreign})
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["extensions"]["errors"][0]["path"] == "after"
    rest = await client.get(
        "/catalog/v1/cases", params={"first": 1, "after": group_cursor}, headers=auth_header(token)
    )
    assert rest.status_code == 400
    listed = await client.get(
        "/catalog/v1/cases", params={"first": 1, "after": case_cursor}, headers=auth_header(token)
    )
    assert listed.status_code == 200
