"""Retention through GraphQL: setRetentionPolicy (admin), setLegalHold (reviewers and admins,
on what they may see), legalHold on cases and groups, and purged cases as readers see them."""

from __future__ import annotations

import secrets

from services.governance.retention import service
from tests.catalog.builders import unique
from tests.corpus import aiid_cases
from tests.gateway.helpers import INGEST, case_input, codes, data, gql
from tests.governance.retention.helpers import audit_entries, later

SET_POLICY = """mutation($s: String!, $p: Int, $c: Int) {
  setRetentionPolicy(dataSource: $s, sensitivity: INTERNAL, payloadTtlDays: $p, caseTtlDays: $c)
  { dataSource sensitivity payloadTtlDays caseTtlDays updatedBy } }"""
SET_HOLD = """mutation($k: LegalHoldKind!, $id: ID!, $hold: Boolean!, $why: String!) {
  setLegalHold(target: {kind: $k, id: $id}, hold: $hold, reason: $why)
  { kind targetId active reason heldBy liftedBy liftReason } }"""
CASE = """query($id: ID!) { case(id: $id) {
  id title input prediction payloadPurgedAt purgedAt
  legalHold { kind targetId reason active }
  group { id legalHold { kind reason } }
  lastRevision { reason changes } } }"""


async def _ingest(client, token, cases):
    body = await gql(client, token, INGEST, {"cases": [case_input(c) for c in cases]})
    return [r["id"] for r in data(body)["ingestCases"]]


def _cases(n, team, **extra):
    cases = unique(aiid_cases(n))
    salt = secrets.token_hex(3)
    for i, c in enumerate(cases):
        c.update(team=team, fingerprint=f"gql-ret-{salt}-{i}", **extra)
    return cases


async def test_set_retention_policy_is_for_admins_validated_and_audited(
    client, admin_token, token_for, db
):
    source = f"ret-source-{secrets.token_hex(3)}"
    got = data(await gql(client, admin_token, SET_POLICY, {"s": source, "p": 30, "c": 365}))
    assert got["setRetentionPolicy"] == {
        "dataSource": source,
        "sensitivity": "INTERNAL",
        "payloadTtlDays": 30,
        "caseTtlDays": 365,
        "updatedBy": got["setRetentionPolicy"]["updatedBy"],
    }
    listed = data(
        await gql(client, admin_token, "{ retentionPolicies { dataSource payloadTtlDays } }")
    )
    assert {"dataSource": source, "payloadTtlDays": 30} in listed["retentionPolicies"]

    bad = await gql(client, admin_token, SET_POLICY, {"s": source, "p": 30, "c": 7})
    assert codes(bad) == ["BAD_USER_INPUT"]
    assert bad["errors"][0]["extensions"]["errors"][0] == {
        "path": "caseTtlDays",
        # It named `payload_ttl_days`, an argument the mutation spells payloadTtlDays.
        "message": "7 days is shorter than the payload TTL of 30 days: a case purged whole "
        "loses its payload too; make the payload TTL shorter or leave it null",
    }
    nul = await gql(client, admin_token, SET_POLICY, {"s": "a\x00b", "p": 30, "c": None})
    assert codes(nul) == ["BAD_USER_INPUT"]
    [said] = nul["errors"][0]["extensions"]["errors"]
    # A validator's words, without pydantic's "Value error, " before them.
    assert said["path"] == "dataSource" and not said["message"].startswith("Value error"), said
    curator = await token_for("cases:read cases:write cases:ingest", clearance="restricted")
    refused = await gql(client, curator, SET_POLICY, {"s": source, "p": 1, "c": None})
    assert codes(refused) == ["FORBIDDEN"]
    listed = data(
        await gql(client, admin_token, "{ retentionPolicies { dataSource payloadTtlDays } }")
    )
    assert {"dataSource": source, "payloadTtlDays": 30} in listed["retentionPolicies"]
    entries = [
        e
        for e in await audit_entries(db, "retention.policy")
        if e.target == f"retention_policy:{source}/internal"
    ]
    assert [(e.action, e.details) for e in entries] == [
        ("retention.policy.set", {"payload_ttl_days": 30, "case_ttl_days": 365})
    ]


async def test_a_policy_names_its_data_source_as_cases_do(client, admin_token, db):
    """The data source is stripped as a case's is: a policy set for " src " used to be stored
    with the spaces and so applied to no case, and one for "   " was stored for no source."""
    source = f"ret-strip-{secrets.token_hex(3)}"
    got = data(await gql(client, admin_token, SET_POLICY, {"s": f"  {source} ", "p": 30}))
    assert got["setRetentionPolicy"]["dataSource"] == source
    listed = data(await gql(client, admin_token, "{ retentionPolicies { dataSource } }"))
    assert {"dataSource": source} in listed["retentionPolicies"]
    assert not [
        p for p in listed["retentionPolicies"] if p["dataSource"] != p["dataSource"].strip()
    ]
    before = len(await audit_entries(db, "retention.policy"))
    blank = await gql(client, admin_token, SET_POLICY, {"s": "   ", "p": 30})
    assert codes(blank) == ["BAD_USER_INPUT"]
    assert blank["errors"][0]["extensions"]["errors"][0]["path"] == "dataSource"
    listed = data(await gql(client, admin_token, "{ retentionPolicies { dataSource } }"))
    assert {"dataSource": "   "} not in listed["retentionPolicies"]
    assert len(await audit_entries(db, "retention.policy")) == before


async def test_a_nul_names_no_source_and_no_target(client, admin_token, db):
    """A NUL is in no stored name or id (ingest refuses it): a policy naming one is refused
    on dataSource, a hold on one is NOT_FOUND as for any absent id. SQLite stored the
    policy; Postgres refused both naming no field."""
    before = len(await audit_entries(db, "retention."))
    bad = await gql(client, admin_token, SET_POLICY, {"s": "ret\x00src", "p": 30})
    assert codes(bad) == ["BAD_USER_INPUT"]
    [error] = bad["errors"][0]["extensions"]["errors"]
    assert error["path"] == "dataSource" and "NUL" in error["message"]
    why = {"k": "CASE", "id": "x", "hold": True, "why": "LIT\x00-1"}
    bad = await gql(client, admin_token, SET_HOLD, why)
    assert codes(bad) == ["BAD_USER_INPUT"]
    assert bad["errors"][0]["extensions"]["errors"][0]["path"] == "reason"
    for kind in ("CASE", "GROUP"):
        held = await gql(
            client, admin_token, SET_HOLD, {"k": kind, "id": "a\x00b", "hold": True, "why": "LIT-1"}
        )
        assert codes(held) == ["NOT_FOUND"], held
    assert len(await audit_entries(db, "retention.")) == before


async def test_legal_holds_need_the_scope_and_sight_of_the_target(client, token_for, db):
    team, other = f"ret-a-{secrets.token_hex(3)}", f"ret-b-{secrets.token_hex(3)}"
    owner = await token_for("cases:ingest cases:read", team=team, clearance="restricted")
    cases = _cases(3, team)
    cases[2]["sensitivity"] = "confidential"
    ids = await _ingest(client, owner, cases)
    reviewer = await token_for("cases:read reviews:write", team=team, clearance="restricted")

    held = data(
        await gql(
            client, reviewer, SET_HOLD, {"k": "CASE", "id": ids[0], "hold": True, "why": "lit-7"}
        )
    )["setLegalHold"]
    assert (held["kind"], held["targetId"], held["active"], held["reason"]) == (
        "CASE",
        ids[0],
        True,
        "lit-7",
    )
    group = data(await gql(client, reviewer, CASE, {"id": ids[1]}))["case"]["group"]["id"]
    data(
        await gql(client, reviewer, SET_HOLD, {"k": "GROUP", "id": group, "hold": True, "why": "g"})
    )
    first = data(await gql(client, reviewer, CASE, {"id": ids[0]}))["case"]
    assert first["legalHold"] == {
        "kind": "CASE",
        "targetId": ids[0],
        "reason": "lit-7",
        "active": True,
    }
    second = data(await gql(client, reviewer, CASE, {"id": ids[1]}))["case"]
    assert second["legalHold"]["kind"] == "GROUP" and second["group"]["legalHold"]["reason"] == "g"

    # What the caller cannot see is NOT_FOUND, as an id that exists nowhere, and stays unheld.
    outsider = await token_for("cases:read reviews:write", team=other, clearance="restricted")
    lower = await token_for("cases:read reviews:write", team=team, clearance="internal")
    for caller, kind, target in (
        (outsider, "CASE", ids[2]),
        (outsider, "GROUP", group),
        (outsider, "CASE", ids[0]),
        (lower, "CASE", ids[2]),
    ):
        hold = target != ids[0]
        got = await gql(
            client, caller, SET_HOLD, {"k": kind, "id": target, "hold": hold, "why": "x"}
        )
        assert codes(got) == ["NOT_FOUND"] and not got.get("data"), got
    third = data(await gql(client, reviewer, CASE, {"id": ids[2]}))["case"]
    assert third["legalHold"] is None
    assert data(await gql(client, reviewer, CASE, {"id": ids[0]}))["case"]["legalHold"]["active"]

    # The scope: a curator may not hold; a blank reason is refused.
    curator = await token_for("cases:read cases:write", team=team, clearance="restricted")
    got = await gql(
        client, curator, SET_HOLD, {"k": "CASE", "id": ids[2], "hold": True, "why": "x"}
    )
    assert codes(got) == ["FORBIDDEN"]
    got = await gql(
        client, reviewer, SET_HOLD, {"k": "CASE", "id": ids[2], "hold": True, "why": " "}
    )
    assert codes(got) == ["BAD_USER_INPUT"]

    lifted = data(
        await gql(
            client, reviewer, SET_HOLD, {"k": "CASE", "id": ids[0], "hold": False, "why": "done"}
        )
    )["setLegalHold"]
    assert (lifted["active"], lifted["liftReason"]) == (False, "done") and lifted["liftedBy"]
    assert data(await gql(client, reviewer, CASE, {"id": ids[0]}))["case"]["legalHold"] is None

    entries = await audit_entries(db, "retention.legal_hold")
    mine = [(e.action, e.target, e.details["reason"]) for e in entries if team in str(e.actor_team)]
    assert mine == [
        ("retention.legal_hold.set", f"case:{ids[0]}", "lit-7"),
        ("retention.legal_hold.set", f"group:{group}", "g"),
        ("retention.legal_hold.lift", f"case:{ids[0]}", "done"),
    ]


HOLD_ROW = """SELECT count(*) FROM legal_hold WHERE target_id = :t"""


async def test_lifting_a_hold_never_put_is_not_found_and_a_lifted_one_stays_as_lifted(
    client, admin_token, db
):
    """A lift with no hold answered a hold made up on the spot (no reason, held by nobody,
    held now); it is NOT_FOUND naming the target, with nothing stored or audited. Lifting
    again answers the hold as the first lift left it."""
    from sqlalchemy import text

    ids = await _ingest(client, admin_token, _cases(1, None))
    group = data(await gql(client, admin_token, CASE, {"id": ids[0]}))["case"]["group"]["id"]
    before = len(await audit_entries(db, "retention.legal_hold"))
    for kind, target in (("CASE", ids[0]), ("GROUP", group)):
        got = await gql(
            client, admin_token, SET_HOLD, {"k": kind, "id": target, "hold": False, "why": "x"}
        )
        assert codes(got) == ["NOT_FOUND"] and not got.get("data"), got
        message = got["errors"][0]["message"]
        assert target in message and kind.lower() in message and "hold" in message, message
        async with db.transaction() as s:
            stored = (await s.execute(text(HOLD_ROW), {"t": target})).scalar_one()
        assert stored == 0
    assert len(await audit_entries(db, "retention.legal_hold")) == before

    lift = {"k": "CASE", "id": ids[0], "hold": False}
    data(await gql(client, admin_token, SET_HOLD, {**lift, "hold": True, "why": "lit-9"}))
    first = data(await gql(client, admin_token, SET_HOLD, {**lift, "why": "settled"}))
    again = data(await gql(client, admin_token, SET_HOLD, {**lift, "why": "again"}))
    assert again == first and first["setLegalHold"]["liftReason"] == "settled"
    entries = await audit_entries(db, "retention.legal_hold")
    assert [(e.action, e.details["reason"]) for e in entries[before:]] == [
        ("retention.legal_hold.set", "lit-9"),
        ("retention.legal_hold.lift", "settled"),
    ]


async def test_a_purged_payload_reads_as_null_with_its_summary_and_tombstone(
    client, admin_token, app
):
    cases = _cases(1, None)
    source = cases[0]["data_source"]
    [case_id] = await _ingest(client, admin_token, cases)
    data(await gql(client, admin_token, SET_POLICY, {"s": source, "p": 1, "c": None}))
    before = data(await gql(client, admin_token, CASE, {"id": case_id}))["case"]
    assert before["input"] == cases[0]["input"] and before["payloadPurgedAt"] is None

    report = await service.run(app.state.db, now=later(2))
    assert [p.payload_purged for p in report.policies if p.data_source == source] == [[case_id]]
    after = data(await gql(client, admin_token, CASE, {"id": case_id}))["case"]
    assert after["input"] is None and after["prediction"] is None
    assert after["title"] == cases[0]["title"] and after["payloadPurgedAt"]
    assert after["purgedAt"] is None
    assert "payload_purged_at" in after["lastRevision"]["changes"]  # stored field names
    assert after["lastRevision"]["reason"].startswith("retention: payload TTL of 1 day (")


LIST = """query($s: String!) { cases(filter: {dataSource: $s}) { edges { node { id } } } }"""
UPDATE = """mutation($id: ID!) {
  updateCase(id: $id, patch: {title: "back"}, expectedRevision: 1) { id } }"""
SEARCH = """query($q: String!) { search(query: $q) { total } }"""


async def test_a_case_purged_whole_leaves_live_reads_and_keeps_its_history(
    client, admin_token, app
):
    """The tombstone (RETENTION.md): not listed, not found by id (GraphQL, REST), not
    searched or exported, not curated or held; its history ends with the purge."""
    from tests.conftest import auth_header
    from tests.gateway.test_query_count import outbox_drained

    cases = _cases(2, None)
    source = cases[0]["data_source"]
    ids = await _ingest(client, admin_token, cases)
    h = auth_header(admin_token)
    listed = data(await gql(client, admin_token, LIST, {"s": source}))["cases"]["edges"]
    assert {e["node"]["id"] for e in listed} == set(ids)
    data(await gql(client, admin_token, SET_POLICY, {"s": source, "p": 1, "c": 2}))

    report = await service.run(app.state.db, now=later(3))
    assert sorted(*[p.cases_purged for p in report.policies if p.data_source == source]) == sorted(
        ids
    )
    for case_id in ids:
        got = await gql(client, admin_token, CASE, {"id": case_id})
        assert codes(got) == ["NOT_FOUND"] and not got.get("data"), got
        assert (await client.get(f"/catalog/v1/cases/{case_id}", headers=h)).status_code == 404
        assert codes(await gql(client, admin_token, UPDATE, {"id": case_id})) == ["NOT_FOUND"]
        held = await gql(
            client, admin_token, SET_HOLD, {"k": "CASE", "id": case_id, "hold": True, "why": "x"}
        )
        assert codes(held) == ["NOT_FOUND"]
        history = await client.get(f"/catalog/v1/cases/{case_id}/revisions", headers=h)
        assert history.status_code == 200
        last = history.json()["revisions"][-1]
        assert list(last["changes"]) == ["purged_at"] and last["reason"].startswith(
            "retention: case TTL of 2 days"
        )
    assert data(await gql(client, admin_token, LIST, {"s": source}))["cases"]["edges"] == []
    await outbox_drained(app.state.db)
    await app.state.search.backend.refresh()
    found = data(await gql(client, admin_token, SEARCH, {"q": f"source:{source}"}))
    assert found["search"]["total"] == 0
    export = await client.get(
        "/catalog/v1/cases:export", params={"q": f"source:{source}"}, headers=h
    )
    assert export.status_code == 200 and export.text == ""
