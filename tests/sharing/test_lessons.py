"""Item 4, lessons learned: a named pattern drawn from several groups, linked to the suites
guarding it, reviewed by someone who is not its author, searchable; evidence filtered for the
reader."""

from __future__ import annotations

import secrets

from sqlalchemy import text

from tests.gateway.helpers import codes, data, gql
from tests.sharing.helpers import world

CREATE = """mutation($l: LessonInput!) { createLesson(lesson: $l) {
  id title whatHappened whyItMatters mitigation cost status revision author
  evidenceGroupIds guardingSuites { name version } reviewedBy } }"""
REVIEW = """mutation($id: ID!, $r: Int!) { reviewLesson(id: $id, expectedRevision: $r) {
  id status revision reviewedBy reviewedAt } }"""
LESSONS = """query($q: String, $s: LessonStatus, $first: Int, $after: String) {
  lessons(query: $q, status: $s, first: $first, after: $after) {
    nodes { id title status evidenceGroupIds } pageInfo { hasNextPage endCursor } } }"""
LESSON = "query($id: ID!) { lesson(id: $id) { id title evidenceGroupIds status } }"


def lesson_input(groups: list[str], word: str, suites: list[dict] | None = None) -> dict:
    return {
        "title": f"Refund chatbot answers in the wrong currency ({word})",
        "whatHappened": "Three times this quarter the support model quoted refunds in USD to "
        "customers paying in EUR.",
        "whyItMatters": "Customers were promised the wrong amount; operators had to honour it.",
        "mitigation": "A currency check on every answer that names an amount.",
        "cost": "Two days of work and 4 ms per answer, against retraining (three weeks).",
        "evidenceGroupIds": groups,
        "suites": suites or [],
    }


async def test_a_lesson_is_drafted_from_groups_reviewed_by_another_and_found(
    client, token_for, app
):
    w = await world(client, token_for)
    a, b = w["a"], w["b"]
    suite = f"lesson-suite-{w['salt']}"
    data(
        await gql(
            client,
            a,
            "mutation($n: String!, $m: String!, $ids: [ID!]) {"
            " createSuite(name: $n, model: $m, caseIds: $ids) { name } }",
            {"n": suite, "m": w["model"], "ids": w["cases"][:2]},
        )
    )
    word = f"zq{secrets.token_hex(3)}"
    created = data(
        await gql(
            client,
            a,
            CREATE,
            {"l": lesson_input(w["groups"][:2], word, [{"name": suite}])},
        )
    )["createLesson"]
    assert created["status"] == "DRAFT" and created["revision"] == 1
    assert created["evidenceGroupIds"] == w["groups"][:2]
    assert created["guardingSuites"] == [{"name": suite, "version": 1}]  # the latest, pinned

    # Refusals: one group only, a group the author cannot see, an unknown suite.
    one = await gql(client, a, CREATE, {"l": lesson_input(w["groups"][:1], word)})
    assert codes(one) == ["BAD_USER_INPUT"]
    hidden = await gql(
        client, a, CREATE, {"l": lesson_input([w["groups"][0], w["hidden_group"]], word)}
    )
    assert codes(hidden) == ["BAD_USER_INPUT"]
    assert hidden["errors"][0]["extensions"]["errors"][0]["path"] == "evidenceGroupIds.1"
    unknown = await gql(
        client, a, CREATE, {"l": lesson_input(w["groups"][:2], word, [{"name": "no-such"}])}
    )
    assert codes(unknown) == ["BAD_USER_INPUT"]

    # The author (who holds reviews:write too) cannot review their own lesson.
    own = await gql(client, a, REVIEW, {"id": created["id"], "r": 1})
    assert codes(own) == ["FORBIDDEN"]
    reviewer = await token_for("cases:read reviews:write", clearance="restricted")
    stale = await gql(client, reviewer, REVIEW, {"id": created["id"], "r": 7})
    assert codes(stale) == ["CONFLICT"]
    reviewed = data(await gql(client, reviewer, REVIEW, {"id": created["id"], "r": 1}))
    assert reviewed["reviewLesson"]["status"] == "REVIEWED"
    assert reviewed["reviewLesson"]["reviewedBy"] and reviewed["reviewLesson"]["revision"] == 2
    again = await gql(client, reviewer, REVIEW, {"id": created["id"], "r": 2})
    assert codes(again) == ["BAD_USER_INPUT"]
    curator = await token_for("cases:read cases:write", clearance="restricted")
    assert codes(await gql(client, curator, REVIEW, {"id": created["id"], "r": 2})) == ["FORBIDDEN"]

    # Searchable: every word must appear, case-insensitively, in the title or texts.
    found = data(await gql(client, a, LESSONS, {"q": f"{word.upper()} currency"}))["lessons"]
    assert [n["id"] for n in found["nodes"]] == [created["id"]]
    assert not data(await gql(client, a, LESSONS, {"q": f"{word} nowhere-xyz"}))["lessons"]["nodes"]
    drafts = data(await gql(client, a, LESSONS, {"q": word, "s": "DRAFT"}))["lessons"]
    assert drafts["nodes"] == []
    # A second lesson: newest first, paged.
    second = data(await gql(client, a, CREATE, {"l": lesson_input(w["groups"][1:3], word)}))[
        "createLesson"
    ]
    page = data(await gql(client, a, LESSONS, {"q": word, "first": 1}))["lessons"]
    assert [n["id"] for n in page["nodes"]] == [second["id"]]
    rest = data(
        await gql(
            client, a, LESSONS, {"q": word, "first": 1, "after": page["pageInfo"]["endCursor"]}
        )
    )["lessons"]
    assert [n["id"] for n in rest["nodes"]] == [created["id"]]
    assert not rest["pageInfo"]["hasNextPage"]
    # LIKE wildcards in a query are plain characters: "%" finds no lesson without one.
    wild = data(await gql(client, a, LESSONS, {"q": f"{word}%"}))["lessons"]["nodes"]
    assert wild == []

    # A lesson is shared: team B reads it, without the evidence groups it cannot see.
    other = data(await gql(client, b, LESSON, {"id": created["id"]}))["lesson"]
    assert other["title"] == created["title"] and other["evidenceGroupIds"] == []

    async with app.state.db.transaction() as s:
        actions = (
            (
                await s.execute(
                    text("select action from audit_log where target = :t order by seq"),
                    {"t": f"lesson:{created['id']}"},
                )
            )
            .scalars()
            .all()
        )
    assert actions == ["sharing.create_lesson", "sharing.review_lesson"]
