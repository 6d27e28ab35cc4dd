"""Item 3, discussion: comments on cases and groups with mentions, seen exactly when their
target is; proposed measures accepted into a retraining plan; every write audited."""

from __future__ import annotations

from sqlalchemy import text

from services.sharing.schemas import parse_mentions
from tests.gateway.helpers import codes, data, gql
from tests.sharing.helpers import world

ADD = """mutation($t: ID!, $body: String!, $kind: CommentKind) {
  addComment(target: $t, body: $body, kind: $kind) {
    id targetKind targetId kind body author mentions { people teams }
    notifications { recipientKind recipient reason } acceptedPlanId } }"""
LIST = """query($t: ID!, $first: Int, $after: String) { comments(target: $t, first: $first,
  after: $after) { nodes { id body kind } pageInfo { hasNextPage endCursor } } }"""
ACCEPT = """mutation($id: ID!, $plan: ID!) { acceptProposedMeasure(id: $id, planId: $plan) {
  id acceptedPlanId acceptedBy acceptedAt } }"""


async def _count(app, sql: str, **params) -> int:
    async with app.state.db.transaction() as s:
        return (await s.execute(text(sql), params)).scalar_one()


def test_mentions_are_people_and_teams_and_never_an_email_address():
    got = parse_mentions(
        "@alice, see this with @team:payments-ml and @bob. Mail carol@example.com; @alice again"
    )
    assert got == {"people": ["alice", "bob"], "teams": ["payments-ml"]}
    assert parse_mentions("no one here") == {"people": [], "teams": []}


async def test_comments_on_cases_and_groups_follow_the_targets_visibility(client, token_for, app):
    w = await world(client, token_for)
    a, b, case, group = w["a"], w["b"], w["cases"][0], w["groups"][0]

    first = data(
        await gql(
            client,
            a,
            ADD,
            {"t": case, "body": "Seen twice this week, @alice and @team:payments-ml: look?"},
        )
    )["addComment"]
    assert first["targetKind"] == "CASE" and first["targetId"] == case
    assert first["kind"] == "COMMENT"
    assert first["mentions"] == {"people": ["alice"], "teams": ["payments-ml"]}
    assert first["notifications"] == [
        {"recipientKind": "user", "recipient": "alice", "reason": "mention"},
        {"recipientKind": "team", "recipient": "payments-ml", "reason": "mention"},
    ]
    on_group = data(await gql(client, a, ADD, {"t": group, "body": "The whole group."}))
    assert on_group["addComment"]["targetKind"] == "GROUP"
    for n in range(3):
        await gql(client, a, ADD, {"t": case, "body": f"follow-up {n}"})

    # Oldest first, paged.
    page = data(await gql(client, a, LIST, {"t": case, "first": 2}))["comments"]
    assert [c["body"] for c in page["nodes"]][1] == "follow-up 0"
    assert page["pageInfo"]["hasNextPage"]
    rest = data(
        await gql(client, a, LIST, {"t": case, "first": 10, "after": page["pageInfo"]["endCursor"]})
    )["comments"]
    assert [c["body"] for c in rest["nodes"]] == ["follow-up 1", "follow-up 2"]
    assert not rest["pageInfo"]["hasNextPage"]
    group_page = data(await gql(client, a, LIST, {"t": group}))["comments"]
    assert [c["body"] for c in group_page["nodes"]] == ["The whole group."]

    # Team B sees neither the case nor the group: NOT_FOUND, as for an id that exists nowhere,
    # and a comment it tries to add is not stored.
    before = await _count(app, "select count(*) from sharing_comment")
    for target in (case, group):
        listed = await gql(client, b, LIST, {"t": target})
        assert codes(listed) == ["NOT_FOUND"] and not listed.get("data")
        added = await gql(client, b, ADD, {"t": target, "body": "@alice sneaking in"})
        assert codes(added) == ["NOT_FOUND"] and not added.get("data")
    assert await _count(app, "select count(*) from sharing_comment") == before
    # ... while its own case takes comments as usual.
    mine = data(await gql(client, b, ADD, {"t": w["hidden_case"], "body": "ours"}))
    assert mine["addComment"]["targetId"] == w["hidden_case"]
    assert codes(await gql(client, a, LIST, {"t": w["hidden_case"]})) == ["NOT_FOUND"]

    # Bad input: an empty body, a bad cursor.
    assert codes(await gql(client, a, ADD, {"t": case, "body": "  "})) == ["BAD_USER_INPUT"]
    assert codes(await gql(client, a, LIST, {"t": case, "after": "%%"})) == ["BAD_USER_INPUT"]

    # Audited with counts and ids only, never the body.
    rows = await _count(
        app,
        "select count(*) from audit_log where action = 'sharing.comment' and target = :t",
        t=f"comment:{first['id']}",
    )
    assert rows == 1
    async with app.state.db.transaction() as s:
        details = (
            await s.execute(
                text("select details from audit_log where target = :t"),
                {"t": f"comment:{first['id']}"},
            )
        ).scalar_one()
    assert "alice" not in str(details) and "Seen twice" not in str(details)


async def test_a_proposed_measure_is_accepted_into_a_retraining_plan(client, token_for, app):
    w = await world(client, token_for)
    a, b, case = w["a"], w["b"], w["cases"][0]
    suite = f"share-suite-{w['salt']}"
    data(
        await gql(
            client,
            a,
            "mutation($n: String!, $m: String!, $ids: [ID!]) {"
            " createSuite(name: $n, model: $m, caseIds: $ids) { name } }",
            {"n": suite, "m": w["model"], "ids": w["cases"]},
        )
    )
    plan = {
        "title": "retrain with refund examples",
        "model": w["model"],
        "evidence": {"case_ids": w["cases"]},
        "targets": [{"suite": suite, "metric": "pass_rate", "op": ">=", "value": 0.9}],
    }
    plan_id = data(
        await gql(
            client, a, "mutation($p: JSON!) { createRetrainingPlan(plan: $p) { id } }", {"p": plan}
        )
    )["createRetrainingPlan"]["id"]

    measure = data(
        await gql(
            client,
            a,
            ADD,
            {"t": case, "body": "Add 500 refund examples to training", "kind": "PROPOSED_MEASURE"},
        )
    )["addComment"]
    assert measure["kind"] == "PROPOSED_MEASURE" and measure["acceptedPlanId"] is None
    remark = data(await gql(client, a, ADD, {"t": case, "body": "just a remark"}))["addComment"]

    # Another team cannot see the case: the measure is, to it, absent.
    hidden = await gql(client, b, ACCEPT, {"id": measure["id"], "plan": plan_id})
    assert codes(hidden) == ["NOT_FOUND"]
    assert codes(await gql(client, a, ACCEPT, {"id": remark["id"], "plan": plan_id})) == [
        "BAD_USER_INPUT"
    ]
    missing_plan = "00000000-0000-0000-0000-000000000000"
    assert codes(await gql(client, a, ACCEPT, {"id": measure["id"], "plan": missing_plan})) == [
        "NOT_FOUND"
    ]

    accepted = data(await gql(client, a, ACCEPT, {"id": measure["id"], "plan": plan_id}))
    assert accepted["acceptProposedMeasure"]["acceptedPlanId"] == plan_id
    assert accepted["acceptProposedMeasure"]["acceptedAt"]
    again = await gql(client, a, ACCEPT, {"id": measure["id"], "plan": plan_id})
    assert codes(again) == ["CONFLICT"]
    assert (
        await _count(
            app,
            "select count(*) from audit_log where action = 'sharing.accept_measure'"
            " and target = :t",
            t=f"comment:{measure['id']}",
        )
        == 1
    )

    # A reader without plans:write cannot accept.
    viewer = await token_for("cases:read plans:read", team=None, clearance="restricted")
    denied = await gql(client, viewer, ACCEPT, {"id": measure["id"], "plan": plan_id})
    assert codes(denied) == ["FORBIDDEN"]
