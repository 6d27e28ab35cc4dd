"""Helpers for annotation tests: callers with known subjects, and the GraphQL documents."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from tests.gateway.helpers import codes, data, gql

ANNOTATOR = "cases:read annotations:write"
REVIEWER = "cases:read annotations:write reviews:write"
CURATOR = "cases:read cases:write cases:ingest"

SUBMIT = """
mutation($case: ID!, $tax: String!, $values: JSON!, $submit: Boolean, $notes: String,
         $confidence: Float) {
  submitAnnotation(caseId: $case, taxonomy: $tax, values: $values, submit: $submit,
                   notes: $notes, confidence: $confidence) {
    id annotator status revision values taxonomyVersion history { revision action status }
  }
}"""

ANNOTATIONS = """
query($id: ID!, $tax: String) {
  case(id: $id) { id annotations(taxonomy: $tax) { annotator status values } }
}"""

ASSIGN = """
mutation($cases: [ID!]!, $who: [String!]!, $k: Int!) {
  assignAnnotators(caseIds: $cases, annotators: $who, overlap: $k) { caseId annotator overlap }
}"""

QUEUE = """
query($kind: AnnotationQueueKind!, $first: Int!, $after: String) {
  annotationQueue(kind: $kind, first: $first, after: $after) {
    nodes { case { id severity } taxonomy annotators submitted disagreement myStatus
            comparisons { field values agree } }
    pageInfo { hasNextPage endCursor }
  }
}"""

ADJUDICATE = """
mutation($case: ID!, $tax: String!, $values: JSON!, $rev: Int!, $reason: String) {
  adjudicate(caseId: $case, taxonomy: $tax, values: $values, expectedRevision: $rev,
             reason: $reason) {
    id reviewer action values annotationIds caseRevision comment
    case { revision severity failureMode impact lastRevision { reason actor } }
  }
}"""

SEND_BACK = """
mutation($case: ID!, $comment: String!) {
  sendBack(caseId: $case, comment: $comment) { id action comment annotationIds }
}"""

TRAIL = """
query($id: ID!) {
  case(id: $id) { reviewTrail { actor action taxonomy values comment hidden caseRevision } }
}"""


def subject_of(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


@dataclass
class Caller:
    token: str
    subject: str


async def caller(token_for: Any, scopes: str, **kw: Any) -> Caller:
    token = await token_for(scopes, **kw)
    return Caller(token, subject_of(token))


FAILCAT_VALUES = {
    "failure_mode": "safety.harmful_content",
    "severity": "S2",
    "impact": {"business": "low", "safety": "high", "users": "medium"},
}


async def submit(client: Any, who: Caller, case_id: str, values: dict, **kw: Any) -> dict:
    body = await gql(
        client,
        who.token,
        SUBMIT,
        {"case": case_id, "tax": kw.pop("taxonomy", "failcat"), "values": values, **kw},
    )
    return data(body)["submitAnnotation"]


__all__ = ["codes", "data", "gql"]
