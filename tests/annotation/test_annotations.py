"""Items 1-2: failcat's taxonomy as data; annotations validated against it, with history."""

from __future__ import annotations

import base64
import json

from tests.annotation.helpers import (
    ANNOTATIONS,
    ANNOTATOR,
    ASSIGN,
    CURATOR,
    FAILCAT_VALUES,
    REVIEWER,
    SUBMIT,
    caller,
    codes,
    data,
    gql,
    submit,
)
from tests.gateway.helpers import ingest_corpus

TAXONOMY = """
query { annotationTaxonomy(name: "failcat") {
  name version fields { name type permittedValues required ordinal order } } }"""


async def test_failcat_taxonomy_is_data_built_from_the_catalog(client, admin_token):
    tax = data(await gql(client, admin_token, TAXONOMY))["annotationTaxonomy"]
    fields = {f["name"]: f for f in tax["fields"]}
    assert set(fields) == {
        "failure_mode",
        "severity",
        "impact.business",
        "impact.safety",
        "impact.users",
    }
    modes = {
        m["code"] for m in data(await gql(client, admin_token, "{ taxonomy { code } }"))["taxonomy"]
    }
    assert set(fields["failure_mode"]["permittedValues"]) == modes
    assert fields["failure_mode"]["required"] and fields["failure_mode"]["type"] == "ENUM"
    severity = fields["severity"]
    assert severity["ordinal"] and severity["order"] == ["S0", "S1", "S2", "S3", "S4"]
    assert fields["impact.safety"]["order"] == ["none", "low", "medium", "high", "critical"]
    # Asking again stores no new version: the catalog's taxonomy did not change.
    again = data(await gql(client, admin_token, TAXONOMY))["annotationTaxonomy"]
    assert again["version"] == tax["version"]


async def test_bad_values_are_coded_errors_naming_the_field_and_nothing_is_written(
    client, token_for
):
    curator = await caller(token_for, CURATOR)
    annotator = await caller(token_for, ANNOTATOR)
    [case_id] = await ingest_corpus(client, curator.token, 1)

    async def attempt(tax: str, values: dict, submit: bool = True) -> dict:
        return await gql(
            client,
            annotator.token,
            SUBMIT,
            {"case": case_id, "tax": tax, "values": values, "submit": submit},
        )

    body = await attempt("no-such-taxonomy", FAILCAT_VALUES)
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "unknown taxonomy no-such-taxonomy" in body["errors"][0]["message"]

    body = await attempt("failcat", {**FAILCAT_VALUES, "colour": "blue"})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "values.colour" in body["errors"][0]["message"]

    body = await attempt("failcat", {**FAILCAT_VALUES, "severity": "S9"})
    assert codes(body) == ["BAD_USER_INPUT"]
    message = body["errors"][0]["message"]
    assert "values.severity" in message and "'S9' is not permitted" in message
    assert "S0, S1, S2, S3, S4" in message

    # Each wrong value once, at the key as sent (not camel-cased, not also "required").
    body = await attempt("failcat", {"failure_mode": "nope", "severity": "S9"})
    errors = body["errors"][0]["extensions"]["errors"]
    assert sorted(e["path"] for e in errors) == ["values.failure_mode", "values.severity"]
    assert not any(e["message"] == "required" for e in errors)

    body = await attempt("failcat", {"severity": "S1"})  # submitted without failure_mode
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "values.failure_mode: required" in body["errors"][0]["message"]

    body = await gql(client, annotator.token, ANNOTATIONS, {"id": case_id})
    assert data(body)["case"]["annotations"] == []  # nothing half-written


async def test_draft_then_submit_keeps_history_and_submitted_is_final(client, token_for):
    curator = await caller(token_for, CURATOR)
    annotator = await caller(token_for, ANNOTATOR)
    [case_id] = await ingest_corpus(client, curator.token, 1)

    draft = await submit(client, annotator, case_id, {"severity": "S1"}, submit=False)
    assert draft["status"] == "DRAFT" and draft["values"] == {"severity": "S1"}
    done = await submit(client, annotator, case_id, FAILCAT_VALUES, notes="clear", confidence=0.8)
    assert done["id"] == draft["id"] and done["status"] == "SUBMITTED"
    assert done["values"]["impact.safety"] == "high"  # nested objects name dotted fields
    assert [(h["revision"], h["action"], h["status"]) for h in done["history"]] == [
        (1, "saved", "DRAFT"),
        (2, "submitted", "SUBMITTED"),
    ]
    body = await gql(
        client,
        annotator.token,
        SUBMIT,
        {"case": case_id, "tax": "failcat", "values": FAILCAT_VALUES},
    )
    assert codes(body) == ["CONFLICT"] and "already submitted" in body["errors"][0]["message"]

    body = await gql(
        client,
        annotator.token,
        SUBMIT,
        {"case": case_id, "tax": "failcat", "values": FAILCAT_VALUES, "confidence": 1.5},
    )
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_annotating_needs_annotations_write(client, token_for):
    curator = await caller(token_for, CURATOR)
    viewer = await caller(token_for, "cases:read")
    [case_id] = await ingest_corpus(client, curator.token, 1)
    body = await gql(
        client, viewer.token, SUBMIT, {"case": case_id, "tax": "failcat", "values": FAILCAT_VALUES}
    )
    assert codes(body) == ["FORBIDDEN"]
    assert "annotations:write" in body["errors"][0]["message"]


NAMED = """
query($id: ID!) { case(id: $id) { id annotations { annotator annotatorName status } } }"""


def name_of(token: str) -> str:
    """The client's name, as its tokens carry it (`client_name`)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["client_name"]


async def test_an_annotation_names_its_annotator_and_a_blinded_reader_learns_neither(
    client, token_for
):
    """`annotatorName` beside `annotator`: the account's (here the client's) display name. An
    annotator assigned to the case who has not submitted reads neither the others' ids nor
    their names (FORBIDDEN); once theirs is submitted, both."""
    curator = await caller(token_for, CURATOR)
    lead = await caller(token_for, REVIEWER)
    first, blinded = [await caller(token_for, ANNOTATOR) for _ in range(2)]
    [case_id] = await ingest_corpus(client, curator.token, 1)
    data(
        await gql(
            client, lead.token, ASSIGN, {"cases": [case_id], "who": [blinded.subject], "k": 1}
        )
    )
    await submit(client, first, case_id, FAILCAT_VALUES)

    body = await gql(client, blinded.token, NAMED, {"id": case_id})
    assert codes(body) == ["FORBIDDEN"]
    text = json.dumps(body)
    assert first.subject not in text and name_of(first.token) not in text

    seen = data(await gql(client, lead.token, NAMED, {"id": case_id}))["case"]["annotations"]
    assert [(a["annotator"], a["annotatorName"]) for a in seen] == [
        (first.subject, name_of(first.token))
    ]
    await submit(client, blinded, case_id, FAILCAT_VALUES)
    seen = data(await gql(client, blinded.token, NAMED, {"id": case_id}))["case"]["annotations"]
    assert {a["annotator"]: a["annotatorName"] for a in seen} == {
        first.subject: name_of(first.token),
        blinded.subject: name_of(blinded.token),
    }
