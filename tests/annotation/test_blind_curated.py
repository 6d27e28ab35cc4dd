"""The blind-read rule on the adjudicated curated fields of `case(id)`, and the audit entries
of every annotation write (ids and counts only), on both backends."""

from __future__ import annotations

from sqlalchemy import select

from services.audit.models import AuditEntry
from tests.annotation.helpers import (
    ADJUDICATE,
    ANNOTATOR,
    ASSIGN,
    CURATOR,
    FAILCAT_VALUES,
    REVIEWER,
    SEND_BACK,
    caller,
    data,
    gql,
    submit,
)
from tests.auth.builders import bearer
from tests.gateway.helpers import ingest_corpus

CURATED = """
query($id: ID!) { case(id: $id) { id revision title severity failureMode impact } }"""
PAGE = """
query($source: String) {
  cases(filter: {dataSource: $source}, first: 50) { edges { node { id severity } } }
}"""
SOURCE = "query($id: ID!) { case(id: $id) { dataSource { name } } }"
HISTORY = """
query($id: ID!) { case(id: $id) { revisions { reason changes } lastRevision { changes } } }"""
BLINDED = {"severity", "failure_mode", "impact"}
BLINDED_GQL = {"severity", "failureMode", "failure_mode", "impact"}


async def _curated(client, who, case_id: str) -> dict:
    return data(await gql(client, who.token, CURATED, {"id": case_id}))["case"]


async def test_adjudicated_curated_fields_are_hidden_from_a_blinded_annotator(client, token_for):
    curator = await caller(token_for, CURATOR)
    lead = await caller(token_for, REVIEWER)
    first, second = [await caller(token_for, ANNOTATOR) for _ in range(2)]
    viewer = await caller(token_for, "cases:read")
    [case_id] = await ingest_corpus(client, curator.token, 1)
    who = {"cases": [case_id], "who": [first.subject, second.subject], "k": 2}
    data(await gql(client, lead.token, ASSIGN, who))
    await submit(client, first, case_id, FAILCAT_VALUES)
    revision = (await _curated(client, viewer, case_id))["revision"]
    decided = {**FAILCAT_VALUES, "severity": "S1"}
    data(
        await gql(
            client,
            lead.token,
            ADJUDICATE,
            {"case": case_id, "tax": "failcat", "values": decided, "rev": revision},
        )
    )

    seen = await _curated(client, viewer, case_id)
    assert (seen["severity"], seen["failureMode"]) == ("S1", "safety.harmful_content")
    assert "safety=high" in seen["impact"]
    assert (await _curated(client, first, case_id))["severity"] == "S1"
    # The second annotator has not submitted: the decided labels are not theirs to read yet,
    # the rest of the case is.
    hidden = await _curated(client, second, case_id)
    assert (hidden["severity"], hidden["failureMode"], hidden["impact"]) == (None, None, None)
    assert hidden["title"] == seen["title"]
    source = data(await gql(client, viewer.token, SOURCE, {"id": case_id}))["case"]
    page = await gql(client, second.token, PAGE, {"source": source["dataSource"]["name"]})
    assert [e["node"] for e in data(page)["cases"]["edges"]] == [{"id": case_id, "severity": None}]

    await submit(client, second, case_id, {**FAILCAT_VALUES, "severity": "S3"})
    assert (await _curated(client, second, case_id))["severity"] == "S1"


async def _adjudicated_for_one_of_two(client, token_for, **caller_kw):
    """A case assigned to two annotators, adjudicated (severity S1) after the first submitted:
    the second is blinded on its curated fields. Returns (case id, first, second, viewer)."""
    curator = await caller(token_for, CURATOR, **caller_kw)
    lead = await caller(token_for, REVIEWER, **caller_kw)
    first, second = [await caller(token_for, ANNOTATOR, **caller_kw) for _ in range(2)]
    viewer = await caller(token_for, "cases:read", **caller_kw)
    [case_id] = await ingest_corpus(client, curator.token, 1)
    who = {"cases": [case_id], "who": [first.subject, second.subject], "k": 2}
    data(await gql(client, lead.token, ASSIGN, who))
    await submit(client, first, case_id, FAILCAT_VALUES)
    revision = (await _curated(client, viewer, case_id))["revision"]
    decided = {**FAILCAT_VALUES, "severity": "S1"}
    variables = {"case": case_id, "tax": "failcat", "values": decided, "rev": revision}
    data(await gql(client, lead.token, ADJUDICATE, variables))
    return case_id, first, second, viewer


async def _listed(client, who, case_id: str) -> dict:
    """The case as `GET /catalog/v1/cases` pages list it."""
    after = None
    while True:
        params = {"first": 200, **({"after": after} if after else {})}
        resp = await client.get("/catalog/v1/cases", params=params, headers=bearer(who.token))
        assert resp.status_code == 200, resp.text
        for case in resp.json()["cases"]:
            if case["id"] == case_id:
                return case
        after = resp.json()["next"]
        assert after, f"case {case_id} not listed"


async def test_rest_case_reads_hide_the_blinded_curated_fields_as_graphql_does(client, token_for):
    case_id, first, second, viewer = await _adjudicated_for_one_of_two(client, token_for)

    def curated(body: dict) -> tuple:
        return body["severity"], body["failure_mode"], body["impact"]

    async def rest(who) -> dict:
        resp = await client.get(f"/catalog/v1/cases/{case_id}", headers=bearer(who.token))
        assert resp.status_code == 200, resp.text
        return resp.json()

    seen = await rest(viewer)
    assert curated(seen)[:2] == ("S1", "safety.harmful_content")
    assert curated(await rest(first)) == curated(seen)
    hidden = await rest(second)
    assert curated(hidden) == (None, None, None)
    assert hidden["title"] == seen["title"] and hidden["revision"] == seen["revision"]
    # The same answer as GraphQL's for the same reader.
    graphql = await _curated(client, second, case_id)
    assert (graphql["severity"], graphql["failureMode"], graphql["impact"]) == curated(hidden)
    # The listing applies the same rule to each case of its page.
    assert curated(await _listed(client, second, case_id)) == (None, None, None)
    assert curated(await _listed(client, viewer, case_id)) == curated(seen)

    # Nor does the history tell them: the adjudication's revision keeps its other changes.
    async def changed(who) -> list[set]:
        url = f"/catalog/v1/cases/{case_id}/revisions"
        resp = await client.get(url, headers=bearer(who.token))
        assert resp.status_code == 200, resp.text
        return [set(r["changes"]) for r in resp.json()["revisions"]]

    assert any(BLINDED & names for names in await changed(viewer))
    assert not any(BLINDED & names for names in await changed(second))
    history = data(await gql(client, second.token, HISTORY, {"id": case_id}))["case"]
    assert not any(BLINDED_GQL & set(r["changes"]) for r in history["revisions"])
    assert not BLINDED_GQL & set(history["lastRevision"]["changes"])
    shown = data(await gql(client, viewer.token, HISTORY, {"id": case_id}))["case"]
    assert BLINDED_GQL & set(shown["lastRevision"]["changes"])

    await submit(client, second, case_id, {**FAILCAT_VALUES, "severity": "S3"})
    assert curated(await rest(second)) == curated(seen)
    assert await changed(second) == await changed(viewer)


async def test_every_annotation_write_is_audited_with_ids_only(client, token_for, app):
    curator = await caller(token_for, CURATOR)
    lead = await caller(token_for, REVIEWER)
    first, second = [await caller(token_for, ANNOTATOR) for _ in range(2)]
    [case_id] = await ingest_corpus(client, curator.token, 1)
    who = {"cases": [case_id], "who": [first.subject, second.subject], "k": 2}
    data(await gql(client, lead.token, ASSIGN, who))
    draft = await submit(client, first, case_id, FAILCAT_VALUES, submit=False)
    await submit(client, first, case_id, FAILCAT_VALUES)
    await submit(client, second, case_id, FAILCAT_VALUES)
    revision = (await _curated(client, lead, case_id))["revision"]
    vars = {"case": case_id, "tax": "failcat", "values": FAILCAT_VALUES, "rev": revision}
    decided = data(await gql(client, lead.token, ADJUDICATE, vars))["adjudicate"]
    sent = data(await gql(client, lead.token, SEND_BACK, {"case": case_id, "comment": "why S2?"}))

    async with app.state.db.sessionmaker() as s:
        rows = (
            (
                await s.execute(
                    select(AuditEntry)
                    .where(AuditEntry.action.like("annotation.%"))
                    .order_by(AuditEntry.seq)
                )
            )
            .scalars()
            .all()
        )
    mine = [r for r in rows if case_id in str(r.target) + str(r.details)]
    assert [(r.action, r.actor_subject) for r in mine] == [
        ("annotation.assign", lead.subject),
        ("annotation.save", first.subject),
        ("annotation.submit", first.subject),
        ("annotation.submit", second.subject),
        ("annotation.adjudicate", lead.subject),
        ("annotation.send_back", lead.subject),
    ]
    assert mine[1].target == f"annotation:{draft['id']}"
    assert mine[-1].target == f"case:{case_id}"
    assert mine[-1].details["review_id"] == sent["sendBack"]["id"]
    assert mine[-2].details["review_id"] == decided["id"]
    assert mine[-2].details["case_revision"] == decided["caseRevision"]
    # No label, note or comment is in the trail: values may be personal data.
    text = " ".join(str(r.details) for r in mine)
    for value in ("safety.harmful_content", "S2", "why S2?"):
        assert value not in text
