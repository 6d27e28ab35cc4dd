"""Escalation paths, end to end through the app (GraphQL, the in-process indexer and sender)
on both backends, with webhook receivers on 127.0.0.1."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from services.governance.escalation import service
from services.governance.escalation.delivery import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify,
)
from shared.cursor import encode_cursor
from tests.gateway.helpers import codes, data, gql
from tests.governance.escalation.builders import (
    a_name,
    cases,
    create_rule,
    deliveries,
    eventually,
    indexed,
    ingest,
)
from tests.safeguards.test_gate import failcat


def _ago(now: datetime, minutes: float) -> str:
    return (now - timedelta(minutes=minutes)).isoformat()


async def _audited(db, action: str, target: str) -> int:
    async with db.transaction() as session:
        found = await session.execute(
            text("SELECT count(*) FROM audit_log WHERE action = :a AND target = :t"),
            {"a": action, "t": target},
        )
        return found.scalar_one()


async def test_a_threshold_rule_fires_once_when_the_third_matching_case_arrives_in_the_window(
    client, db, tokens, receiver, fast_sender
):
    curator, model, other = tokens["curator"], a_name("fraud-detector"), a_name("ranker")
    receiver.script = [(500, {}), (503, {})]  # the third delivery attempt gets through
    rule, secret = await create_rule(
        client,
        curator,
        {
            "name": a_name("fraud-burst"),
            "kind": "THRESHOLD",
            "query": f"severity:<=S1 model:{model}",
            "threshold": 3,
            "windowMinutes": 60,
            "webhookUrl": receiver.url,
        },
    )
    assert rule["team"] == "fraud-ml" and rule["clearance"] == "restricted" and len(secret) >= 32
    # A rule replays no history from before it (by one window): made a day ago here, so
    # cases spread over hours all count.
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE escalation_rule SET created_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC) - timedelta(days=1), "id": rule["id"]},
        )
    now = datetime.now(UTC)
    # Two matching cases 70 minutes apart, and four that do not match (S2, S3, another model).
    spread = await ingest(
        client, curator, cases(model, [("S1", _ago(now, 150)), ("S0", _ago(now, 80))])
    )
    noise = await ingest(
        client,
        curator,
        cases(model, [("S2", _ago(now, 9)), ("S3", _ago(now, 8))])
        + cases(other, [("S0", _ago(now, 7)), ("S1", _ago(now, 6))]),
    )
    await indexed(db, spread + noise)
    # A third and a fourth match, but no three of them within 60 minutes (80, 30, 10 ago).
    late = await ingest(
        client, curator, cases(model, [("S1", _ago(now, 10)), ("S0", _ago(now, 30))])
    )
    await indexed(db, late)
    assert await deliveries(client, curator, rule["name"]) == []
    assert receiver.received == []

    # The fifth: 30, 10 and 5 minutes ago are three within the window. It fires once.
    [third] = await ingest(client, curator, cases(model, [("S1", _ago(now, 5))]))
    await indexed(db, [third])
    [delivery] = await deliveries(client, curator, rule["name"])
    assert set(delivery["caseIds"]) == {late[0], late[1], third}

    async def delivered():
        [d] = await deliveries(client, curator, rule["name"])
        return d if d["status"] == "DELIVERED" else None

    delivery = await eventually(delivered, 30, "the webhook delivery")
    assert delivery["attempts"] == 3
    assert [a["statusCode"] for a in delivery["log"]] == [500, 503, 200]
    assert len(receiver.received) == 3
    final = receiver.received[-1]
    # The receiver's check: HMAC-SHA256 over "<timestamp>.<body>" with the rule's secret.
    stamp = final.headers[TIMESTAMP_HEADER]
    assert abs(int(stamp) - time.time()) < 60
    assert final.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert verify(secret, stamp, final.body, final.headers[SIGNATURE_HEADER])
    assert not verify(
        "another secret of 32 characters!", stamp, final.body, final.headers[SIGNATURE_HEADER]
    )
    # The timestamp is signed (another one breaks the signature) and checked for age (a
    # request replayed ten minutes later fails, even signed anew with its old timestamp).
    signature = final.headers[SIGNATURE_HEADER]
    assert not verify(secret, str(int(stamp) - 1), final.body, signature)
    assert not verify(secret, stamp, final.body + b" ", signature)
    old = str(int(stamp) - 600)
    assert not verify(secret, old, final.body, sign(secret, old, final.body))
    payload = json.loads(final.body)
    assert payload["rule"]["name"] == rule["name"] and payload["event"] == "escalation.fired"
    assert {c["id"] for c in payload["cases"]} == {late[0], late[1], third}
    assert {c["severity"] for c in payload["cases"]} <= {"S0", "S1"}
    # Every attempt sent the same body (frozen at firing), each with its own signature.
    assert len({r.body for r in receiver.received}) == 1

    # A sixth match (4 minutes ago): the firing consumed its three, so no second firing.
    [sixth] = await ingest(client, curator, cases(model, [("S0", _ago(now, 4))]))
    await indexed(db, [sixth])
    assert len(await deliveries(client, curator, rule["name"])) == 1
    assert await _audited(db, "escalation.fired", f"escalation_rule:{rule['id']}") == 1
    assert await _audited(db, "escalation.rule_created", f"escalation_rule:{rule['id']}") == 1


async def test_a_receiver_that_never_answers_is_dead_lettered_without_slowing_ingestion(
    client, db, tokens, silent_url, refused_url, fast_sender
):
    fast_sender.with_policy(timeout_s=1.0)  # three attempts: at least three seconds pending
    curator, model, busy = tokens["curator"], a_name("payments"), a_name("bulk")
    rules = {}
    for name, url in (("silent", silent_url), ("refused", refused_url)):
        rule, _ = await create_rule(
            client,
            curator,
            {
                "name": a_name(name),
                "kind": "THRESHOLD",
                "query": f"model:{model}",
                "threshold": 1,
                "windowMinutes": 60,
                "webhookUrl": url,
            },
        )
        rules[name] = rule["name"]
    now = datetime.now(UTC)
    batch = [("S3", _ago(now, 1))] * 100

    started = time.perf_counter()
    baseline_ids = await ingest(client, curator, cases(busy, batch))
    baseline = time.perf_counter() - started
    await indexed(db, baseline_ids)

    [trigger] = await ingest(client, curator, cases(model, [("S2", _ago(now, 1))]))
    await indexed(db, [trigger])
    [pending] = await deliveries(client, curator, rules["silent"])
    assert pending["status"] == "PENDING"

    started = time.perf_counter()
    during_ids = await ingest(client, curator, cases(busy, batch))
    during = time.perf_counter() - started
    await indexed(db, during_ids)
    [still] = await deliveries(client, curator, rules["silent"])
    print(
        f"\ningest of 100 cases: {baseline * 1000:.0f} ms before, {during * 1000:.0f} ms while"
        f" a delivery hangs (attempts so far {still['attempts']}; loaded machine)"
    )
    # Ingestion and indexing finished while the delivery was still being tried.
    assert still["status"] == "PENDING"
    assert during < max(3 * baseline, baseline + 1.0)

    for name, error in (("silent", "Timeout"), ("refused", "ConnectError")):

        async def dead(name=name):
            [d] = await deliveries(client, curator, rules[name])
            return d if d["status"] == "DEAD_LETTER" else None

        letter = await eventually(dead, 30, f"dead letter of {name}")
        assert letter["attempts"] == 3 and letter["nextAttemptAt"] is None
        assert [a["attempt"] for a in letter["log"]] == [1, 2, 3]
        assert all(a["statusCode"] is None and error in a["error"] for a in letter["log"])
        if name == "silent":  # httpx's timeout has no message: the log says what the wait was
            assert all(a["error"].endswith(": no answer within 1 s") for a in letter["log"])
        assert (
            await _audited(db, "escalation.dead_lettered", f"escalation_delivery:{letter['id']}")
            == 1
        )


CASE_LINKS = "query($id: ID!) { case(id: $id) { revision links { kind url title } } }"
RESOLVE = 'mutation($id: ID!) { resolveGroup(id: $id, fixedInVersion: "1.0.0") { status } }'
GROUP_OF = "query($id: ID!) { case(id: $id) { group { id status regressedInVersion } } }"


async def test_a_regressed_group_opens_a_ticket_whose_url_is_linked_on_the_case(
    client, db, tokens, receiver, fast_sender
):
    curator, model = tokens["curator"], a_name("moderation")
    ticket = "https://tickets.example/browse/REM-42"
    receiver.script = [(201, {"id": "REM-42", "url": ticket})]
    rule, _ = await create_rule(
        client,
        curator,
        {
            "name": a_name("regressions"),
            "kind": "GROUP_REGRESSED",
            "query": f"model:{model}",
            "ticketUrl": receiver.url,
        },
    )
    fingerprint = a_name("fp")
    now = datetime.now(UTC)
    first = cases(model, [("S2", _ago(now, 60))], version="1.0.0")
    first[0]["fingerprint"] = fingerprint
    [v1] = await ingest(client, curator, first)
    await indexed(db, [v1])
    group = data(await gql(client, curator, GROUP_OF, {"id": v1}))["case"]["group"]
    assert data(await gql(client, curator, RESOLVE, {"id": group["id"]}))
    assert await deliveries(client, curator, rule["name"]) == []  # open, then resolved

    again = cases(model, [("S2", _ago(now, 1))], version="1.1.0")
    again[0]["fingerprint"] = fingerprint
    [v2] = await ingest(client, curator, again)
    await indexed(db, [v2])
    regressed = data(await gql(client, curator, GROUP_OF, {"id": v2}))["case"]["group"]
    assert regressed["status"] == "REGRESSED" and regressed["regressedInVersion"] == "1.1.0"

    async def linked():
        [d] = await deliveries(client, curator, rule["name"])
        return d if d["ticketUrl"] else None

    delivery = await eventually(linked, 30, "the ticket")
    assert delivery["action"] == "TICKET" and delivery["ticketUrl"] == ticket
    assert delivery["caseIds"] == [v2]
    assert json.loads(receiver.received[0].body)["group_id"] == group["id"]

    async def case_links():
        # The link is a curated change, with its revision. (Polled: on SQLite a request's
        # reads are not one snapshot, so the row and its links may be read either side of it.)
        case = data(await gql(client, curator, CASE_LINKS, {"id": v2}))["case"]
        return case if case["revision"] == 2 and case["links"] else None

    case = await eventually(case_links, 30, "the ticket link on the case")
    assert [(lk["kind"], lk["url"]) for lk in case["links"]] == [("TICKET", ticket)]
    assert await _audited(db, "escalation.ticket_linked", f"case:{v2}") == 1

    # Another case of the group, later still: the group regressed once in 1.1.0, one firing.
    more = cases(model, [("S2", _ago(now, 0.5))], version="1.2.0")
    more[0]["fingerprint"] = fingerprint
    [v3] = await ingest(client, curator, more)
    await indexed(db, [v3])
    assert len(await deliveries(client, curator, rule["name"])) == 1


async def test_a_ticket_answer_without_a_usable_url_is_delivered_and_says_so(
    client, db, tokens, receiver, fast_sender
):
    """A ticket system answering 2xx with a URL no link may hold (spaces, over 2,000
    characters) stored it as the delivery's ticket, then the link failed with a traceback
    in the sender's pass, the cases had no link and nothing said why."""
    curator, model = tokens["curator"], a_name("ranker")
    long_url = "https://tickets.example/" + "x" * 2000
    receiver.script = [(200, {"ticket_url": "https://tickets.example/REM 9", "url": long_url})]
    rule, _ = await create_rule(
        client,
        curator,
        {
            "name": a_name("tickets"),
            "kind": "THRESHOLD",
            "query": f"model:{model}",
            "threshold": 1,
            "windowMinutes": 60,
            "ticketUrl": receiver.url,
        },
    )
    [case_id] = await ingest(client, curator, cases(model, [("S2", _ago(datetime.now(UTC), 1))]))
    await indexed(db, [case_id])

    async def delivered():
        [d] = await deliveries(client, curator, rule["name"])
        return d if d["status"] == "DELIVERED" else None

    delivery = await eventually(delivered, 30, "the ticket delivery")
    assert delivery["ticketUrl"] is None
    assert delivery["lastStatusCode"] == 200
    assert delivery["lastError"].startswith("no ticket link: the answer has no `ticket_url`")
    assert [(a["statusCode"], a["error"]) for a in delivery["log"]] == [
        (200, delivery["lastError"])
    ]
    case = data(await gql(client, curator, CASE_LINKS, {"id": case_id}))["case"]
    assert case == {"revision": 1, "links": []}
    assert await _audited(db, "escalation.ticket_linked", f"case:{case_id}") == 0


LIFT = """mutation($m: String!, $v: String!, $r: String!) {
  liftReleaseBlock(model: $m, version: $v, reason: $r) {
    id ruleName liftedAt liftedBy liftReason } }"""
BLOCKS = """query($m: String!, $v: String!) { releaseBlocks(model: $m, version: $v) {
  id model version ruleName reason caseIds } }"""


async def test_a_block_makes_the_gate_refuse_the_version_until_a_reviewer_lifts_it(
    client, db, tokens, monkeypatch, settings, capsys, tmp_path, fast_sender
):
    curator, model = tokens["curator"], a_name("scorer")
    rule, _ = await create_rule(
        client,
        curator,
        {
            "name": a_name("stop-ship"),
            "kind": "THRESHOLD",
            "query": f"model:{model} severity:S0",
            "threshold": 1,
            "windowMinutes": 60,
            "blockRelease": True,
        },
    )
    now = datetime.now(UTC)
    [s0] = await ingest(client, curator, cases(model, [("S0", _ago(now, 1))], version="2.0.0"))
    [s2] = await ingest(client, curator, cases(model, [("S2", _ago(now, 1))], version="1.9.0"))
    await indexed(db, [s0, s2])

    policy = tmp_path / "policy.yaml"
    policy.write_text("block_severities: []\nsuites: []\n")  # only the block decides here
    env = (monkeypatch, settings, capsys)
    gate = ("gate", "--model", model, "--policy", str(policy), "--json")
    code, out, _ = await failcat(*env, *gate, "--version", "2.0.0")
    answer = json.loads(out)
    assert code == 1 and answer["passed"] is False
    [block_condition] = [c for c in answer["conditions"] if not c["passed"]]
    assert block_condition["name"] == "no escalation block on this version"
    assert (
        rule["name"] in block_condition["detail"]
        and "1 cases within 60 minutes" in block_condition["detail"]
    )
    assert block_condition["case_ids"] == [s0]
    code, _, _ = await failcat(*env, *gate, "--version", "1.9.0")  # an S2 blocks nothing
    assert code == 0

    [block] = data(await gql(client, tokens["viewer"], BLOCKS, {"m": model, "v": "2.0.0"}))[
        "releaseBlocks"
    ]
    assert block["ruleName"] == rule["name"] and block["caseIds"] == [s0]
    # Only a reviewer lifts it, with a reason.
    lift = {"m": model, "v": "2.0.0", "r": "false alarm: the S0 was a test fixture"}
    assert codes(await gql(client, curator, LIFT, lift)) == ["FORBIDDEN"]
    assert codes(await gql(client, tokens["reviewer"], LIFT, {**lift, "r": " "})) == [
        "BAD_USER_INPUT"
    ]
    [lifted] = data(await gql(client, tokens["reviewer"], LIFT, lift))["liftReleaseBlock"]
    assert lifted["id"] == block["id"] and lifted["liftedBy"] and lifted["liftReason"] == lift["r"]
    assert codes(await gql(client, tokens["reviewer"], LIFT, lift)) == ["NOT_FOUND"]
    assert await _audited(db, "escalation.block_lifted", f"release_block:{block['id']}") == 1

    code, out, _ = await failcat(*env, *gate, "--version", "2.0.0")
    assert code == 0 and json.loads(out)["passed"] is True
    # Through GraphQL too: the condition is there, passed.
    body = await gql(
        client,
        tokens["viewer"],
        'query($m: String!) { releaseGate(model: $m, version: "2.0.0", policy: '
        "{block_severities: [], suites: []}) { passed conditions { name passed } } }",
        {"m": model},
    )
    gate_answer = data(body)["releaseGate"]
    assert gate_answer["passed"] is True
    assert {"name": "no escalation block on this version", "passed": True} in gate_answer[
        "conditions"
    ]


SET_STATUS = """mutation($id: ID!, $s: Status!, $r: Int!) {
  setCaseStatus(id: $id, status: $s, expectedRevision: $r) { revision } }"""


async def test_a_case_left_in_confirmed_fires_once_after_the_days_given(
    client, app, db, tokens, receiver, fast_sender
):
    curator, model = tokens["curator"], a_name("triage")
    rule, _ = await create_rule(
        client,
        curator,
        {
            "name": a_name("stale"),
            "kind": "LEFT_CONFIRMED",
            "query": f"model:{model}",
            "days": 7,
            "webhookUrl": receiver.url,
        },
    )
    # A threshold is refused on this kind, and none is answered (it read 1).
    assert (rule["threshold"], rule["windowMinutes"], rule["days"]) == (None, None, 7)
    now = datetime.now(UTC)
    [left, moving] = await ingest(
        client, curator, cases(model, [("S2", _ago(now, 5)), ("S2", _ago(now, 4))])
    )
    revision = 1
    for status in ("TRIAGED", "CONFIRMED"):
        for case_id in (left, moving):
            body = await gql(
                client, curator, SET_STATUS, {"id": case_id, "s": status, "r": revision}
            )
            assert data(body)["setCaseStatus"]["revision"] == revision + 1
        revision += 1
    # `moving` goes on to remediation: only `left` stays in confirmed.
    data(await gql(client, curator, SET_STATUS, {"id": moving, "s": "IN_REMEDIATION", "r": 3}))
    await indexed(db, [left, moving])

    async def check(days: int) -> int:
        async with db.transaction() as session:
            return await service.check_left_confirmed(
                session, app.state.search, now=datetime.now(UTC) + timedelta(days=days)
            )

    assert await check(6) == 0  # not yet seven days

    async def fires():  # the index may take a moment to show the new status (OpenSearch)
        return await check(8)

    assert await eventually(fires, 30, "the left-in-confirmed firing") == 1
    assert await check(9) == 0  # once per case and revision
    [delivery] = await deliveries(client, curator, rule["name"])
    assert delivery["caseIds"] == [left]


async def test_rules_are_validated_and_seen_only_by_their_team(client, db, tokens):
    curator = tokens["curator"]
    base = {
        "name": a_name("r"),
        "kind": "THRESHOLD",
        "threshold": 2,
        "windowMinutes": 5,
        "webhookUrl": "http://127.0.0.1:9/x",
    }
    for change, path in (
        ({"query": "severity:<=S9"}, "rule.query"),
        ({"webhookUrl": "ftp://example.org/x"}, "rule.webhookUrl"),
        # A URL the pattern let through though no POST can reach it (it was stored, then
        # every delivery failed until dead-lettered).
        ({"webhookUrl": "https://:99999/x"}, "rule.webhookUrl"),
        ({"webhookUrl": "https://alerts.example:99999/x"}, "rule.webhookUrl"),
        ({"webhookUrl": "http://[::1/x"}, "rule.webhookUrl"),
        ({"ticketUrl": "https://?q=1"}, "rule.ticketUrl"),
        # Stored on SQLite, a database error naming no field on Postgres.
        ({"webhookUrl": "https://alerts.example/a\x00b"}, "rule.webhookUrl"),
        ({"secret": "0123456789abcdef\x00"}, "rule.secret"),
        # A field the kind needs is named (the refusal said only "rule").
        ({"windowMinutes": None}, "rule.windowMinutes"),
        ({"threshold": None}, "rule.threshold"),
        ({"threshold": 0}, "rule.threshold"),
        ({"webhookUrl": None}, "rule.webhookUrl"),  # no action at all
        ({"kind": "LEFT_CONFIRMED"}, "rule.days"),
        # A field the kind has no use for was stored and shown, and meant nothing.
        ({"days": 7}, "rule.days"),
        ({"kind": "LEFT_CONFIRMED", "days": 7}, "rule.threshold"),
        ({"kind": "GROUP_REGRESSED"}, "rule.threshold"),
    ):
        body = await gql(
            client,
            curator,
            "mutation($r: EscalationRuleInput!) { createEscalationRule(rule: $r) { secret } }",
            {"r": {**base, **change}},
        )
        assert codes(body) == ["BAD_USER_INPUT"], (change, body)
        assert body["errors"][0]["extensions"]["errors"][0]["path"] == path, (change, body)
        # pydantic's "Value error, " before a validator's own words is no part of them.
        assert "Value error" not in json.dumps(body), (change, body)

    rule, secret = await create_rule(client, curator, base)
    again = await gql(
        client,
        curator,
        "mutation($r: EscalationRuleInput!) { createEscalationRule(rule: $r) { secret } }",
        {"r": base},
    )
    assert codes(again) == ["CONFLICT"]
    # No stored name, id, model or version holds a NUL: absent, as on SQLite (Postgres
    # refused each naming no field).
    for query in (
        'query { escalationDeliveries(rule: "a\\u0000b") { nodes { id } } }',
        'mutation { setEscalationRuleEnabled(id: "a\\u0000b", enabled: false) { id } }',
    ):
        assert codes(await gql(client, curator, query)) == ["NOT_FOUND"], query
    lift = 'mutation { liftReleaseBlock(model: "a\\u0000b", version: "1", reason: "r") { id } }'
    assert codes(await gql(client, tokens["reviewer"], lift)) == ["NOT_FOUND"]
    lift = 'mutation { liftReleaseBlock(model: "m", version: "1", reason: "a\\u0000b") { id } }'
    refused = await gql(client, tokens["reviewer"], lift)
    assert codes(refused) == ["BAD_USER_INPUT"]
    assert refused["errors"][0]["extensions"]["errors"][0]["path"] == "reason"
    # Each refusal names the argument as the mutation spells it: there is no `lift` input.
    lift = 'mutation { liftReleaseBlock(model: " ", version: "", reason: "  ") { id } }'
    refused = await gql(client, tokens["reviewer"], lift)
    assert codes(refused) == ["BAD_USER_INPUT"]
    paths = [e["path"] for e in refused["errors"][0]["extensions"]["errors"]]
    assert paths == ["model", "version", "reason"], refused
    blocks = await gql(
        client, curator, '{ releaseBlocks(model: "a\\u0000b", version: "1") { id } }'
    )
    assert data(blocks) == {"releaseBlocks": []}
    listed = data(await gql(client, curator, "{ escalationRules { name } }"))["escalationRules"]
    assert rule["name"] in [r["name"] for r in listed]
    # The secret is shown once: no answer carries it again, nor does the audit trail.
    assert secret not in json.dumps(listed)
    async with db.transaction() as session:
        trail = (await session.execute(text("SELECT details FROM audit_log"))).scalars().all()
    assert secret not in json.dumps(trail, default=str)

    other = tokens["other_team"]
    theirs = data(await gql(client, other, "{ escalationRules { name } }"))["escalationRules"]
    assert rule["name"] not in [r["name"] for r in theirs]
    body = await gql(
        client,
        other,
        "query($r: String!) { escalationDeliveries(rule: $r) { nodes { id } } }",
        {"r": rule["name"]},
    )
    assert codes(body) == ["NOT_FOUND"]


async def test_a_failing_index_hook_is_rolled_back_and_indexing_goes_on(
    client, app, db, tokens, receiver, fast_sender
):
    calls: list[int] = []

    async def broken(session, docs):
        calls.append(len(docs))
        await session.execute(text("UPDATE escalation_rule SET enabled = false"))
        raise RuntimeError("a bug in a hook")

    curator, model = tokens["curator"], a_name("hooked")
    rule, _ = await create_rule(
        client,
        curator,
        {
            "name": a_name("any"),
            "kind": "THRESHOLD",
            "query": f"model:{model}",
            "threshold": 1,
            "windowMinutes": 5,
            "webhookUrl": receiver.url,
        },
    )
    app.state.search.on_indexed(broken)
    try:
        [case_id] = await ingest(
            client, curator, cases(model, [("S2", _ago(datetime.now(UTC), 1))])
        )
        await indexed(db, [case_id])
    finally:
        app.state.search._index_hooks.remove(broken)
    assert calls  # it ran, and failed: the batch was indexed all the same ...
    [delivery] = await deliveries(client, curator, rule["name"])  # ... and the rule fired
    assert delivery["caseIds"] == [case_id]
    listed = data(await gql(client, curator, "{ escalationRules { name enabled } }"))
    # What the broken hook wrote was rolled back with it.
    assert {"name": rule["name"], "enabled": True} in listed["escalationRules"]


async def test_the_delivery_log_pages_newest_first(client, db, tokens, receiver, fast_sender):
    curator, model = tokens["curator"], a_name("paged")
    rule, _ = await create_rule(
        client,
        curator,
        {
            "name": a_name("each"),
            "kind": "THRESHOLD",
            "query": f"model:{model}",
            "threshold": 1,
            "windowMinutes": 5,
            "webhookUrl": receiver.url,
        },
    )
    now = datetime.now(UTC)
    ids = []
    for minutes in (3, 2, 1):  # one batch each: three firings, in this order
        ids += await ingest(client, curator, cases(model, [("S3", _ago(now, minutes))]))
        await indexed(db, ids[-1:])
    query = """query($r: String!, $after: String) { escalationDeliveries(rule: $r, first: 2,
      after: $after) { nodes { caseIds } pageInfo { hasNextPage endCursor } } }"""
    first = data(await gql(client, curator, query, {"r": rule["name"]}))["escalationDeliveries"]
    assert [n["caseIds"] for n in first["nodes"]] == [[ids[2]], [ids[1]]]
    assert first["pageInfo"]["hasNextPage"] is True
    cursor = first["pageInfo"]["endCursor"]
    rest = data(await gql(client, curator, query, {"r": rule["name"], "after": cursor}))
    page = rest["escalationDeliveries"]
    assert [n["caseIds"] for n in page["nodes"]] == [[ids[0]]]
    assert page["pageInfo"]["hasNextPage"] is False
    bad = await gql(client, curator, query, {"r": rule["name"], "after": "nonsense"})
    assert codes(bad) == ["BAD_USER_INPUT"]
    # Cursors of the right kind but not as issued: a list of another length was INTERNAL
    # (unpacking), a NUL or a time in year 0 once in UTC a database error naming no field.
    for forged in (
        [],
        ["2026-01-01T00:00:00+00:00"],
        ["2026-01-01T00:00:00+00:00", "x", "y"],
        ["0001-01-01T00:00:00+14:00", "x"],
        ["2026-01-01T00:00:00+00:00", "a\x00b"],
    ):
        after = encode_cursor(service.DELIVERIES, forged)
        bad = await gql(client, curator, query, {"r": rule["name"], "after": after})
        assert codes(bad) == ["BAD_USER_INPUT"], (forged, bad)
        assert bad["errors"][0]["extensions"]["errors"][0]["path"] == "after"


ENABLE = """mutation($id: ID!, $on: Boolean!) {
  setEscalationRuleEnabled(id: $id, enabled: $on) { id name enabled } }"""


async def test_a_disabled_rule_does_not_fire_until_enabled_again(
    client, db, tokens, receiver, fast_sender
):
    curator, model = tokens["curator"], a_name("toggled")
    rule, _ = await create_rule(
        client,
        curator,
        {
            "name": a_name("toggle"),
            "kind": "THRESHOLD",
            "query": f"model:{model}",
            "threshold": 1,
            "windowMinutes": 60,
            "webhookUrl": receiver.url,
        },
    )
    assert rule["enabled"] is True
    # Another team may not see the rule: NOT_FOUND, as for an id that exists nowhere, and
    # the rule stays as it was.
    hidden = await gql(client, tokens["other_team"], ENABLE, {"id": rule["id"], "on": False})
    assert codes(hidden) == ["NOT_FOUND"] and not hidden.get("data")
    missing = await gql(client, curator, ENABLE, {"id": "no-such-rule", "on": False})
    assert codes(missing) == ["NOT_FOUND"]
    refused = await gql(client, tokens["viewer"], ENABLE, {"id": rule["id"], "on": False})
    assert codes(refused) == ["FORBIDDEN"]

    off = data(await gql(client, curator, ENABLE, {"id": rule["id"], "on": False}))
    assert off["setEscalationRuleEnabled"]["enabled"] is False
    listed = data(await gql(client, curator, "{ escalationRules { id enabled } }"))
    assert {"id": rule["id"], "enabled": False} in listed["escalationRules"]
    now = datetime.now(UTC)
    while_off = await ingest(client, curator, cases(model, [("S1", _ago(now, 3))]))
    await indexed(db, while_off)
    assert await deliveries(client, curator, rule["name"]) == []

    on = data(await gql(client, curator, ENABLE, {"id": rule["id"], "on": True}))
    assert on["setEscalationRuleEnabled"]["enabled"] is True
    # Enabled again, it judges what is indexed from then on: the next case fires, alone
    # (the one indexed while it was off is not replayed).
    after = await ingest(client, curator, cases(model, [("S1", _ago(now, 2))]))
    await indexed(db, after)
    [delivery] = await deliveries(client, curator, rule["name"])
    assert delivery["caseIds"] == after
    target = f"escalation_rule:{rule['id']}"
    assert await _audited(db, "escalation.rule_disabled", target) == 1
    assert await _audited(db, "escalation.rule_enabled", target) == 1


async def test_a_private_destination_is_refused_when_only_public_ones_are_allowed(
    client, db, tokens, receiver, fast_sender
):
    # Production's default: a rule cannot make the server post into its own network.
    fast_sender.allow_private = False
    try:
        curator, model = tokens["curator"], a_name("ssrf")
        rule, _ = await create_rule(
            client,
            curator,
            {
                "name": a_name("internal"),
                "kind": "THRESHOLD",
                "query": f"model:{model}",
                "threshold": 1,
                "windowMinutes": 60,
                "webhookUrl": receiver.url,
            },
        )
        ids = await ingest(client, curator, cases(model, [("S1", _ago(datetime.now(UTC), 1))]))
        await indexed(db, ids)

        async def dead():
            [d] = await deliveries(client, curator, rule["name"])
            return d if d["status"] == "DEAD_LETTER" else None

        letter = await eventually(dead, 30, "the refused delivery")
        assert letter["attempts"] == 3
        assert all(
            a["statusCode"] is None and "refused: 127.0.0.1 is 127.0.0.1" in a["error"]
            for a in letter["log"]
        )
        assert receiver.received == []  # not one request reached the loopback receiver
    finally:
        fast_sender.allow_private = True
