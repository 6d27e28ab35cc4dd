"""The annotation service's REST routes: taxonomies and a case's review trail."""

from __future__ import annotations

from tests.annotation.helpers import ANNOTATOR, CURATOR, FAILCAT_VALUES, caller, submit
from tests.conftest import auth_header
from tests.gateway.helpers import ingest_corpus


async def test_taxonomies_and_review_trail_over_rest(client, token_for):
    curator = await caller(token_for, CURATOR)
    annotator = await caller(token_for, ANNOTATOR)
    [case_id] = await ingest_corpus(client, curator.token, 1)
    await submit(client, annotator, case_id, FAILCAT_VALUES, notes="why")

    resp = await client.get("/annotation/v1/taxonomies", headers=auth_header(curator.token))
    assert resp.status_code == 200
    failcat = next(t for t in resp.json()["taxonomies"] if t["name"] == "failcat")
    assert {f["name"] for f in failcat["fields"]} >= {"failure_mode", "severity"}

    resp = await client.get(
        f"/annotation/v1/cases/{case_id}/review-trail", headers=auth_header(curator.token)
    )
    assert resp.status_code == 200
    [entry] = resp.json()["entries"]
    assert entry["action"] == "submitted" and entry["actor"] == annotator.subject
    assert entry["values"]["severity"] == "S2" and entry["comment"] == "why"

    missing = "00000000-0000-0000-0000-000000000000"
    resp = await client.get(
        f"/annotation/v1/cases/{missing}/annotations", headers=auth_header(curator.token)
    )
    assert resp.status_code == 404
    resp = await client.get(f"/annotation/v1/cases/{case_id}/annotations")
    assert resp.status_code == 401
