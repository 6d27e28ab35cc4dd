"""Redaction policies through the public API: each mode rewrites what the detectors find
before it is stored, findings are on the case (kinds and paths) and searchable, the policy
mutation is admin-only and audited, and payload fields above a reader's clearance come back
null and named in redactedFields (GraphQL, REST, search, exports)."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

import orjson
from sqlalchemy import text

from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases
from tests.gateway.helpers import INGEST, case_input, codes, data, gql
from tests.gateway.test_query_count import outbox_drained

SET = """mutation($s: String!, $m: RedactionMode!, $p: Sensitivity) {
  setRedactionPolicy(dataSource: $s, mode: $m, payloadSensitivity: $p) {
    dataSource mode payloadSensitivity version updatedBy
  }
}"""
CASE = """query($id: ID!) { case(id: $id) {
  title summary input environment prediction expected signals redactedFields
  piiFindings { kind path } piiRestrictedValues { kind path value }
} }"""
SEARCH = """query($q: String!) { search(query: $q, first: 50) { total hits { case { id } } } }"""

EMAIL = "ada.lovelace@example.org"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
SECRET = "hunter2-correct-horse"
BAD_CARD = "4111 1111 1111 1112"  # fails Luhn: not a card, left as it is


def _case(source: str, email: str = EMAIL, **extra: Any) -> dict[str, Any]:
    case = unique(aiid_cases(1))[0]
    case["data_source"] = source
    case["summary"] = f"{case['summary']} Reach me at {email}"
    case["input"] = {
        "user": {"email": email, "note": f"call {PHONE} after six"},
        "card": CARD,
        "password": SECRET,
        "bad_card": BAD_CARD,
    }
    case.update(extra)
    return case


async def _ingest(client, token, cases: list[dict[str, Any]]) -> list[str]:
    got = data(await gql(client, token, INGEST, {"cases": [case_input(c) for c in cases]}))
    assert [r["status"] for r in got["ingestCases"]] == ["CREATED"] * len(cases), got
    return [r["id"] for r in got["ingestCases"]]


async def _policy(client, admin, source: str, mode: str, payload: str | None = None) -> dict:
    return data(await gql(client, admin, SET, {"s": source, "m": mode, "p": payload}))[
        "setRedactionPolicy"
    ]


def _source() -> str:
    return f"redaction-{secrets.token_hex(4)}"


async def test_set_redaction_policy_is_admin_only_versioned_and_audited(
    app, client, token_for, admin_token
):
    source = _source()
    curator = await token_for("cases:read cases:write cases:ingest")
    refused = await gql(client, curator, SET, {"s": source, "m": "HASH", "p": None})
    assert codes(refused) == ["FORBIDDEN"]
    first = await _policy(client, admin_token, source, "HASH")
    second = await _policy(client, admin_token, source, "REMOVE", "CONFIDENTIAL")
    assert (first["mode"], first["version"]) == ("HASH", 1)
    assert (second["mode"], second["payloadSensitivity"], second["version"]) == (
        "REMOVE",
        "CONFIDENTIAL",  # the enum the mutation takes: it was the string "confidential"
        2,
    )
    # What a policy answers can be set again as it is: nothing changes.
    again = await _policy(client, admin_token, source, second["mode"], second["payloadSensitivity"])
    assert again["version"] == 2
    listed = data(await gql(client, admin_token, "{ redactionPolicies { dataSource mode } }"))
    assert {"dataSource": source, "mode": "REMOVE"} in listed["redactionPolicies"]
    async with app.state.db.transaction() as s:
        rows = (
            await s.execute(
                text("SELECT action, details FROM audit_log WHERE target = :t ORDER BY seq"),
                {"t": f"data_source:{source}"},
            )
        ).all()
    details = [orjson.loads(d) if isinstance(d, str) else d for _, d in rows]
    assert [a for a, _ in rows] == ["redaction.policy_set", "redaction.policy_set"]
    assert [d["mode"] for d in details] == ["hash", "remove"]


async def _policy_audit(app, source: str) -> list[tuple[str, dict]]:
    async with app.state.db.transaction() as s:
        rows = (
            await s.execute(
                text("SELECT action, details FROM audit_log WHERE target = :t ORDER BY seq"),
                {"t": f"data_source:{source}"},
            )
        ).all()
    return [(a, orjson.loads(d) if isinstance(d, str) else d) for a, d in rows]


async def test_setting_the_policy_a_source_has_changes_nothing(app, client, admin_token):
    """An identical set numbered a new version and audited a change that was none."""
    source = _source()
    listing = "{ redactionPolicies { dataSource mode payloadSensitivity version updatedAt } }"

    async def stored() -> list[dict]:
        got = data(await gql(client, admin_token, listing))["redactionPolicies"]
        return [p for p in got if p["dataSource"] == source]

    first = await _policy(client, admin_token, source, "HASH", "CONFIDENTIAL")
    before = await stored()
    again = await _policy(client, admin_token, source, "HASH", "CONFIDENTIAL")
    assert again == first and again["version"] == 1
    assert await stored() == before
    assert [(a, d["version"]) for a, d in await _policy_audit(app, source)] == [
        ("redaction.policy_set", 1)
    ]
    # Either part differing is a change.
    assert (await _policy(client, admin_token, source, "HASH"))["version"] == 2
    assert (await _policy(client, admin_token, source, "MASK"))["version"] == 3
    assert [d["version"] for _, d in await _policy_audit(app, source)] == [1, 2, 3]


async def test_a_source_name_with_a_nul_is_refused_on_its_field(client, admin_token):
    """Ingest refuses a NUL, so such a name is no data source: SQLite stored the policy,
    Postgres refused it naming no field."""
    body = await gql(client, admin_token, SET, {"s": f"{_source()}\x00x", "m": "MASK"})
    assert codes(body) == ["BAD_USER_INPUT"], body
    [error] = body["errors"][0]["extensions"]["errors"]
    assert error["path"] == "dataSource" and "NUL" in error["message"]
    listed = data(await gql(client, admin_token, "{ redactionPolicies { dataSource } }"))
    assert not [p for p in listed["redactionPolicies"] if "\x00" in p["dataSource"]]


async def test_mask_is_the_default_and_findings_name_kinds_and_paths(client, token_for):
    token = await token_for("cases:read cases:ingest", clearance="restricted")
    [case_id] = await _ingest(client, token, [_case(_source())])
    got = data(await gql(client, token, CASE, {"id": case_id}))["case"]
    assert got["input"] == {
        "user": {"email": "[EMAIL]", "note": "call [PHONE] after six"},
        "card": "[CARD ****1111]",
        "password": "[SECRET]",
        "bad_card": BAD_CARD,
    }
    assert got["summary"].endswith("Reach me at [EMAIL]")
    findings = {(f["kind"], f["path"]) for f in got["piiFindings"]}
    assert findings == {
        ("email", "summary"),
        ("email", "input.user.email"),
        ("phone", "input.user.note"),
        ("card", "input.card"),
        ("secret", "input.password"),
    }
    assert got["piiRestrictedValues"] is None  # nothing kept under mask


async def test_hash_keeps_equal_values_joinable_without_the_value(client, token_for, admin_token):
    source = _source()
    await _policy(client, admin_token, source, "HASH")
    token = await token_for("cases:read cases:ingest", clearance="restricted")
    ids = await _ingest(
        client,
        token,
        [_case(source), _case(source, EMAIL.upper()), _case(source, "grace@example.org")],
    )
    emails = [
        data(await gql(client, token, CASE, {"id": i}))["case"]["input"]["user"]["email"]
        for i in ids
    ]
    assert all(re.fullmatch(r"\[EMAIL:hmac:[0-9a-f]{16}\]", e) for e in emails), emails
    assert emails[0] == emails[1] != emails[2]


async def test_remove_drops_the_value_or_its_key(client, token_for, admin_token):
    source = _source()
    await _policy(client, admin_token, source, "REMOVE")
    token = await token_for("cases:read cases:ingest", clearance="restricted")
    [case_id] = await _ingest(client, token, [_case(source)])
    got = data(await gql(client, token, CASE, {"id": case_id}))["case"]
    assert got["input"] == {"user": {"note": "call  after six"}, "bad_card": BAD_CARD}
    assert got["summary"].endswith("Reach me at ")
    assert ("email", "input.user.email") in {(f["kind"], f["path"]) for f in got["piiFindings"]}


async def test_keep_restricted_keeps_raw_values_for_restricted_readers_only(
    app, client, token_for, admin_token
):
    source = _source()
    await _policy(client, admin_token, source, "KEEP_RESTRICTED")
    token = await token_for("cases:read cases:ingest", clearance="restricted")
    [case_id] = await _ingest(client, token, [_case(source)])
    got = data(await gql(client, token, CASE, {"id": case_id}))["case"]
    assert got["input"]["user"]["email"] == "[EMAIL]"
    kept = {(v["kind"], v["path"], v["value"]) for v in got["piiRestrictedValues"]}
    assert ("email", "input.user.email", EMAIL) in kept
    assert ("card", "input.card", CARD) in kept
    assert ("secret", "input.password", SECRET) in kept
    confidential = await token_for("cases:read", clearance="confidential")
    other = data(await gql(client, confidential, CASE, {"id": case_id}))["case"]
    assert other["piiRestrictedValues"] is None and other["input"]["card"] == "[CARD ****1111]"
    async with app.state.db.transaction() as s:
        reads = (
            await s.execute(
                text("SELECT count(*) FROM audit_log WHERE action = :a AND target = :t"),
                {"a": "redaction.restricted_read", "t": f"case:{case_id}"},
            )
        ).scalar()
    assert reads == 1


async def test_payload_above_the_readers_clearance_is_null_everywhere(
    app, client, token_for, admin_token
):
    source = _source()
    word = f"zebrafish{secrets.token_hex(3)}"
    await _policy(client, admin_token, source, "MASK", "CONFIDENTIAL")
    writer = await token_for("cases:read cases:ingest", clearance="restricted")
    by_policy = _case(source, input={"prompt": word}, sensitivity="internal")
    by_case = _case(source, input={"prompt": word}, sensitivity="public")
    by_case["payload_sensitivity"] = "RESTRICTED"  # GraphQL's enum spelling
    ids = await _ingest(client, writer, [by_policy, by_case])
    payload = ["environment", "input", "prediction", "expected", "signals"]

    internal = await token_for("cases:read exports:create", clearance="internal")
    confidential = await token_for("cases:read exports:create", clearance="confidential")
    for case_id in ids:
        got = data(await gql(client, internal, CASE, {"id": case_id}))["case"]
        assert got["redactedFields"] == payload
        assert all(got[f] is None for f in payload) and got["title"]
        rest = (
            await client.get(f"/catalog/v1/cases/{case_id}", headers=auth_header(internal))
        ).json()
        assert rest["redacted_fields"] == payload and rest["input"] is None
    seen = data(await gql(client, confidential, CASE, {"id": ids[0]}))["case"]
    assert seen["redactedFields"] == [] and seen["input"] == {"prompt": word}
    hidden = data(await gql(client, confidential, CASE, {"id": ids[1]}))["case"]
    assert hidden["input"] is None  # restricted payload, confidential reader

    # The index holds no payload above the case's level: not even a cleared reader finds
    # the payload's words, while the case itself is found.
    await outbox_drained(app.state.db)
    deadline = time.monotonic() + 10
    while True:
        found = data(await gql(client, admin_token, SEARCH, {"q": f"source:{source}"}))
        if found["search"]["total"] == 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert found["search"]["total"] == 2
    for reader in (confidential, admin_token):
        by_word = data(await gql(client, reader, SEARCH, {"q": f"input:{word}"}))
        assert by_word["search"]["total"] == 0

    # Exports: the reader's clearance decides, as for reads.
    export = await client.get(
        "/catalog/v1/cases:export", params={"q": f"source:{source}"}, headers=auth_header(internal)
    )
    rows = [orjson.loads(line) for line in export.text.splitlines()]
    assert len(rows) == 2
    assert all(r["input"] is None and r["_meta"]["redacted_fields"] == payload for r in rows)
    assert word not in export.text


async def test_findings_are_searchable_by_kind(app, client, token_for):
    source = _source()
    token = await token_for("cases:read cases:ingest", clearance="restricted")
    plain = unique(aiid_cases(1))[0]
    plain["data_source"] = source
    [with_pii, without] = await _ingest(client, token, [_case(source), plain])
    await outbox_drained(app.state.db)
    deadline = time.monotonic() + 10
    while True:
        got = data(await gql(client, token, SEARCH, {"q": f"pii:email source:{source}"}))
        if got["search"]["total"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [h["case"]["id"] for h in got["search"]["hits"]] == [with_pii]
    none = data(await gql(client, token, SEARCH, {"q": f"-pii:card source:{source}"}))
    assert [h["case"]["id"] for h in none["search"]["hits"]] == [without]


UPDATE = """mutation($id: ID!, $rev: Int!, $patch: CasePatchInput!) {
  updateCase(id: $id, expectedRevision: $rev, patch: $patch, reason: "triage") {
    revision summary writeup { hypothesis } piiFindings { kind path }
    revisions { revision changes }
  }
}"""


async def test_an_edit_meets_the_policy_as_a_captured_case_does(client, token_for, admin_token):
    token = await token_for("cases:read cases:write cases:ingest", clearance="restricted")
    source = _source()
    [case_id] = await _ingest(client, token, [_case(source, email="first@example.org")])
    patch = {
        "summary": f"Escalated by {EMAIL}, call {PHONE}.",
        "writeup": {"hypothesis": f"The card {CARD} was read as a date."},
    }
    got = data(await gql(client, token, UPDATE, {"id": case_id, "rev": 1, "patch": patch}))
    case = got["updateCase"]
    assert case["summary"] == "Escalated by [EMAIL], call [PHONE]."
    assert case["writeup"]["hypothesis"] == "The card [CARD ****1111] was read as a date."
    found = {(f["kind"], f["path"]) for f in case["piiFindings"]}
    assert {("email", "summary"), ("phone", "summary"), ("card", "writeup.hypothesis")} <= found
    assert ("email", "input.user.email") in found  # what capture found is kept
    # The history holds the masked text only: no literal reached the revision either.
    history = orjson.dumps(case["revisions"]).decode()
    for literal in (EMAIL, PHONE, CARD):
        assert literal not in history
    # Under a hash policy an edit is hashed like the source's captured values.
    await _policy(client, admin_token, source, "HASH")
    got = data(
        await gql(
            client,
            token,
            UPDATE,
            {"id": case_id, "rev": 2, "patch": {"summary": f"Again from {EMAIL}"}},
        )
    )["updateCase"]
    assert re.fullmatch(r"Again from \[EMAIL:hmac:[0-9a-f]{16}\]", got["summary"])
