"""Items 3-4: assignment with overlap k, blind reads (GraphQL and REST), queues, adjudication
and send-back, the review trail."""

from __future__ import annotations

from collections import Counter

from services.auth.repository import AuthRepository
from tests.annotation.helpers import (
    ADJUDICATE,
    ANNOTATIONS,
    ANNOTATOR,
    ASSIGN,
    CURATOR,
    FAILCAT_VALUES,
    QUEUE,
    REVIEWER,
    SEND_BACK,
    TRAIL,
    caller,
    codes,
    data,
    gql,
    submit,
)
from tests.auth.builders import make_user
from tests.conftest import auth_header
from tests.gateway.helpers import ingest_corpus


async def test_annotators_are_named_by_account_or_client_and_nobody_else(client, app, token_for):
    """A username is assigned under its account's id (the subject its tokens carry, so the
    assignment reaches that person's queue); a name that is nobody's is refused, naming it."""
    reporter = await caller(token_for, CURATOR)
    lead = await caller(token_for, REVIEWER)
    client_annotator = await caller(token_for, ANNOTATOR)
    username, _ = await make_user(app, ["annotator"])
    async with app.state.db.transaction() as s:
        user_id = (await AuthRepository(s).user_by_name(username)).id
    cases = await ingest_corpus(client, reporter.token, 2)

    ghost = f"ghost-{username}"
    body = await gql(client, lead.token, ASSIGN, {"cases": cases, "who": [username, ghost], "k": 1})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert [e["message"] for e in body["errors"][0]["extensions"]["errors"]] == [
        f"not an account or client: {ghost}"
    ]
    who = [username, client_annotator.subject]
    rows = data(await gql(client, lead.token, ASSIGN, {"cases": cases, "who": who, "k": 2}))
    assert {r["annotator"] for r in rows["assignAnnotators"]} == {
        user_id,
        client_annotator.subject,
    }


async def test_assignment_is_balanced_k_distinct_and_never_the_reporter(client, token_for):
    reporter = await caller(token_for, CURATOR + " annotations:write")
    lead = await caller(token_for, REVIEWER)
    others = [await caller(token_for, ANNOTATOR) for _ in range(3)]
    cases = await ingest_corpus(client, reporter.token, 6)
    names = [reporter.subject, *(o.subject for o in others)]

    body = await gql(client, lead.token, ASSIGN, {"cases": cases, "who": names, "k": 2})
    rows = data(body)["assignAnnotators"]
    per_case: dict[str, list[str]] = {}
    for r in rows:
        per_case.setdefault(r["caseId"], []).append(r["annotator"])
    assert set(per_case) == set(cases)
    assert all(len(set(v)) == 2 for v in per_case.values())
    load = Counter(r["annotator"] for r in rows)
    assert reporter.subject not in load  # the case's own reporter never reviews it
    assert sorted(load.values()) == [4, 4, 4]  # 12 assignments over 3 eligible: balanced

    # Assigning again tops up to k: nothing changes.
    again = data(await gql(client, lead.token, ASSIGN, {"cases": cases, "who": names, "k": 2}))
    assert len(again["assignAnnotators"]) == 12

    # k larger than the eligible annotators: a coded error naming the case; nothing written.
    [fresh] = await ingest_corpus(client, reporter.token, 1)
    body = await gql(client, lead.token, ASSIGN, {"cases": [fresh], "who": names[:2], "k": 2})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert fresh in body["errors"][0]["message"]
    assert "reporter" in str(body["errors"][0]["extensions"])
    queue = data(await gql(client, others[0].token, QUEUE, {"kind": "ASSIGNED", "first": 100}))
    assert fresh not in {n["case"]["id"] for n in queue["annotationQueue"]["nodes"]}


async def test_blind_until_submitted_in_graphql_and_rest(client, token_for):
    curator = await caller(token_for, CURATOR)
    lead = await caller(token_for, REVIEWER)
    first, second = [await caller(token_for, ANNOTATOR) for _ in range(2)]
    viewer = await caller(token_for, "cases:read")
    [case_id] = await ingest_corpus(client, curator.token, 1)
    await gql(
        client,
        lead.token,
        ASSIGN,
        {"cases": [case_id], "who": [first.subject, second.subject], "k": 2},
    )
    queue = data(await gql(client, second.token, QUEUE, {"kind": "ASSIGNED", "first": 50}))
    mine = [n for n in queue["annotationQueue"]["nodes"] if n["case"]["id"] == case_id]
    assert mine and mine[0]["myStatus"] == "pending"

    await submit(client, first, case_id, FAILCAT_VALUES)
    await submit(client, second, case_id, {"severity": "S0"}, submit=False)

    # The second annotator has only a draft: reading the first's annotation is refused.
    body = await gql(client, second.token, ANNOTATIONS, {"id": case_id})
    assert codes(body) == ["FORBIDDEN"]
    assert f"submit your own failcat annotation of case {case_id}" in body["errors"][0]["message"]
    assert body["data"]["case"]["id"] == case_id  # the case itself still reads
    resp = await client.get(
        f"/annotation/v1/cases/{case_id}/annotations", headers=auth_header(second.token)
    )
    assert resp.status_code == 403 and "submit your own" in resp.text
    trail = data(await gql(client, second.token, TRAIL, {"id": case_id}))["case"]["reviewTrail"]
    theirs = [e for e in trail if e["action"] == "submitted"]
    assert theirs and all(e["hidden"] and e["values"] is None for e in theirs)

    # Someone who does not annotate the case (and the first, who has submitted) reads all.
    for reader in (viewer, first):
        got = data(await gql(client, reader.token, ANNOTATIONS, {"id": case_id}))
        assert len(got["case"]["annotations"]) == 2
    resp = await client.get(
        f"/annotation/v1/cases/{case_id}/annotations", headers=auth_header(viewer.token)
    )
    assert resp.status_code == 200 and len(resp.json()["annotations"]) == 2

    await submit(client, second, case_id, {**FAILCAT_VALUES, "severity": "S0"})
    got = data(await gql(client, second.token, ANNOTATIONS, {"id": case_id}))
    assert {a["annotator"] for a in got["case"]["annotations"]} == {first.subject, second.subject}
    queue = data(await gql(client, second.token, QUEUE, {"kind": "ASSIGNED", "first": 50}))
    assert case_id not in {n["case"]["id"] for n in queue["annotationQueue"]["nodes"]}


async def _annotated_pair(client, token_for, curator, lead, values_a, values_b, severity):
    a, b = [await caller(token_for, REVIEWER) for _ in range(2)]
    [case_id] = await ingest_corpus(client, curator.token, 1, severity=severity)
    await gql(
        client, lead.token, ASSIGN, {"cases": [case_id], "who": [a.subject, b.subject], "k": 2}
    )
    await submit(client, a, case_id, values_a)
    await submit(client, b, case_id, values_b)
    return case_id, a, b


async def test_needs_review_adjudicate_and_trail(client, token_for):
    curator = await caller(token_for, CURATOR)
    lead = await caller(token_for, REVIEWER)
    reviewer = await caller(token_for, REVIEWER)
    agreed, _, _ = await _annotated_pair(
        client, token_for, curator, lead, FAILCAT_VALUES, FAILCAT_VALUES, "S0"
    )
    split, a, _b = await _annotated_pair(
        client,
        token_for,
        curator,
        lead,
        FAILCAT_VALUES,
        {**FAILCAT_VALUES, "severity": "S0", "failure_mode": "robustness.input_noise"},
        "S3",
    )
    queue = data(await gql(client, reviewer.token, QUEUE, {"kind": "NEEDS_REVIEW", "first": 500}))
    nodes = [n for n in queue["annotationQueue"]["nodes"] if n["case"]["id"] in (agreed, split)]
    # Disagreement first, whatever the severity: then the agreed S0 case.
    assert [n["case"]["id"] for n in nodes] == [split, agreed]
    differing = {c["field"] for c in nodes[0]["comparisons"] if not c["agree"]}
    assert differing == {"severity", "failure_mode"}
    assert nodes[0]["disagreement"] == 0.4 and nodes[1]["disagreement"] == 0.0
    # An annotator of the case does not see it to review.
    theirs = data(await gql(client, a.token, QUEUE, {"kind": "NEEDS_REVIEW", "first": 500}))
    assert split not in {n["case"]["id"] for n in theirs["annotationQueue"]["nodes"]}
    # An annotator with the scope for NEEDS_REVIEW only:
    plain = await caller(token_for, ANNOTATOR)
    body = await gql(client, plain.token, QUEUE, {"kind": "NEEDS_REVIEW", "first": 5})
    assert codes(body) == ["FORBIDDEN"]

    decided = {**FAILCAT_VALUES, "severity": "S1"}
    args = {"case": split, "tax": "failcat", "values": decided, "rev": 1, "reason": "rubric 2.1"}
    body = await gql(client, a.token, ADJUDICATE, args)  # their own annotation
    assert codes(body) == ["FORBIDDEN"] and "another reviewer" in body["errors"][0]["message"]
    body = await gql(client, reviewer.token, ADJUDICATE, {**args, "rev": 7})
    assert codes(body) == ["CONFLICT"] and "expected 7" in body["errors"][0]["message"]
    body = await gql(client, reviewer.token, ADJUDICATE, {**args, "values": {"severity": "S1"}})
    assert codes(body) == ["BAD_USER_INPUT"]  # failure_mode is required to decide
    case = data(
        await gql(
            client,
            reviewer.token,
            "query($id: ID!) { case(id: $id) { revision severity } }",
            {"id": split},
        )
    )
    assert case["case"] == {"revision": 1, "severity": "S3"}  # nothing half-written

    review = data(await gql(client, reviewer.token, ADJUDICATE, args))["adjudicate"]
    assert review["action"] == "adjudicated" and review["reviewer"] == reviewer.subject
    assert len(review["annotationIds"]) == 2 and review["comment"] == "rubric 2.1"
    case = review["case"]
    assert case["revision"] == 2 == review["caseRevision"]
    assert (case["severity"], case["failureMode"]) == ("S1", "safety.harmful_content")
    assert case["impact"] == "business=low; safety=high; users=medium"
    assert case["lastRevision"] == {"reason": "adjudicated", "actor": reviewer.subject}

    queue = data(await gql(client, reviewer.token, QUEUE, {"kind": "NEEDS_REVIEW", "first": 500}))
    assert split not in {n["case"]["id"] for n in queue["annotationQueue"]["nodes"]}
    trail = data(await gql(client, reviewer.token, TRAIL, {"id": split}))["case"]["reviewTrail"]
    assert [e["action"] for e in trail] == [
        "assigned",
        "assigned",
        "submitted",
        "submitted",
        "adjudicated",
    ]
    assert trail[-1]["values"]["severity"] == "S1" and trail[-1]["caseRevision"] == 2


async def test_send_back_reopens_the_annotations_with_a_comment(client, token_for):
    curator = await caller(token_for, CURATOR)
    lead = await caller(token_for, REVIEWER)
    case_id, a, _b = await _annotated_pair(
        client, token_for, curator, lead, FAILCAT_VALUES, {**FAILCAT_VALUES, "severity": "S4"}, "S2"
    )
    body = await gql(client, lead.token, SEND_BACK, {"case": case_id, "comment": "  "})
    assert codes(body) == ["BAD_USER_INPUT"]
    back = data(
        await gql(client, lead.token, SEND_BACK, {"case": case_id, "comment": "re-read the rubric"})
    )["sendBack"]
    assert back["action"] == "sent_back" and len(back["annotationIds"]) == 2
    # Both are drafts again: each is blind to the other's until they resubmit.
    body = await gql(client, a.token, ANNOTATIONS, {"id": case_id})
    assert codes(body) == ["FORBIDDEN"]
    again = await submit(client, a, case_id, {**FAILCAT_VALUES, "severity": "S3"})
    assert [h["action"] for h in again["history"]] == ["submitted", "sent_back", "submitted"]
    trail = data(await gql(client, lead.token, TRAIL, {"id": case_id}))["case"]["reviewTrail"]
    sent = [e for e in trail if e["action"] == "sent_back"]
    assert any(e["comment"] == "re-read the rubric" and e["actor"] == lead.subject for e in sent)


async def test_send_back_leaves_imported_annotations_submitted(client, app, token_for):
    """An imported annotation (AIID's CSETv1 annotators, AVID's originals) has nobody here to
    resubmit it: a send-back reopened it with the others, and it left the agreement figures
    for good. Only the annotations submitted here go back."""
    from services.annotation import service as annotation_service
    from shared.security import SYSTEM

    curator = await caller(token_for, CURATOR)
    lead = await caller(token_for, REVIEWER)
    case_id, _a, _b = await _annotated_pair(
        client, token_for, curator, lead, FAILCAT_VALUES, {**FAILCAT_VALUES, "severity": "S4"}, "S2"
    )
    [only_imported] = await ingest_corpus(client, curator.token, 1)
    async with app.state.db.transaction() as s:
        tax = await annotation_service.get_taxonomy(s, "failcat")
        for case in (case_id, only_imported):
            await annotation_service.record_submitted(
                s, case, "CSETv1_Annotator-1", tax, FAILCAT_VALUES, SYSTEM
            )
    back = data(
        await gql(client, lead.token, SEND_BACK, {"case": case_id, "comment": "re-read it"})
    )["sendBack"]
    assert len(back["annotationIds"]) == 2
    statuses = {
        a["annotator"]: a["status"]
        for a in data(await gql(client, lead.token, ANNOTATIONS, {"id": case_id}))["case"][
            "annotations"
        ]
    }
    assert statuses["CSETv1_Annotator-1"] == "SUBMITTED"
    assert sorted(statuses.values()) == ["DRAFT", "DRAFT", "SUBMITTED"]

    body = await gql(client, lead.token, SEND_BACK, {"case": only_imported, "comment": "again"})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "imported annotations are not sent back" in body["errors"][0]["message"]
