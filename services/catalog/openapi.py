"""OpenAPI documentation of the catalog's REST routes: answer models and examples.

The routes build their answers with views.case_json and return them as they are; these models
only describe them (so /openapi.json carries request and response schemas a client, or
schemathesis, can generate from). The request body is schemas.CaseIn itself.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from services.catalog import limits as L
from services.catalog.schemas import CaseIn, ItemResult
from shared.web import inline_schema

# The wire format of DESIGN.md, "Wire format of a captured case".
CASE_EXAMPLE: dict[str, Any] = {
    "external_id": "txn-829301",
    "title": "Fraud model scores a refund as fraud with 0.97 confidence",
    "summary": "Refunds of recent purchases look like chargebacks to the model.",
    "model": {"name": "fraud-detector", "version": "3.2.0"},
    "data_source": "payments-stream",
    "occurred_at": "2026-11-02T14:03:11Z",
    "environment": {"region": "eu-west-1", "app_version": "7.4.1"},
    "input": {"amount": 129.5, "currency": "EUR", "merchant": "m-1942"},
    "prediction": {"label": "fraud", "score": 0.97},
    "expected": {"label": "legit"},
    "confidence": 0.97,
    "latency_ms": 41.2,
    "failure_mode": "label_noise.mislabeled_target",
    "severity": "S2",
    "signals": {"drift_score": 0.31, "feature_changes": ["merchant_category"]},
    "tags": ["refunds"],
    "sensitivity": "internal",
    "team": "payments-ml",
    "links": [
        {"kind": "experiment", "url": "https://mlflow.example/#/runs/abc", "title": "retrain 12"}
    ],
    "writeup": {
        "hypothesis": "Refund events share features with chargebacks.",
        "experiments": "Retrain with refunds labelled.",
        "results": "Pending.",
        "rationale": "Refunds are 4% of traffic.",
    },
    "provenance": {
        "source": "payments-monitor",
        "pipeline_version": "2.1",
        "captured_by": "svc-monitor",
    },
    "fingerprint": None,
}
MINIMAL_CASE_EXAMPLE: dict[str, Any] = {
    "model": {"name": "fraud-detector", "version": "3.2.0"},
    "data_source": "payments-stream",
    "title": "Refund scored as fraud",
}
_CASE_ID = "01a22df6-8614-78ee-9040-f064a2705da6"


class BulkCounts(BaseModel):
    model_config = ConfigDict(extra="allow")

    created: int
    duplicate: int
    invalid: int
    sampled_out: int


class BulkAnswer(BaseModel):
    """One result per item, in order, and the counts by status."""

    results: list[ItemResult]
    counts: BulkCounts


BULK_ANSWER_EXAMPLE = {
    "results": [
        {"index": 0, "status": "created", "id": _CASE_ID},
        {
            "index": 1,
            "status": "invalid",
            "errors": [{"path": "model.version", "message": "Field required"}],
        },
    ],
    "counts": {"created": 1, "duplicate": 0, "invalid": 1, "sampled_out": 0},
}

# The route reads the raw body itself (a JSON array or NDJSON, items validated one by one so
# that valid ones are stored beside invalid ones), so its body is declared here.
BULK_REQUEST = {
    "requestBody": {
        "required": True,
        "description": (
            "Captured cases in the wire format: a JSON array, or NDJSON (one case a line) with "
            f"Content-Type application/x-ndjson. At most {L.MAX_ITEMS_PER_REQUEST} items and "
            f"{L.MAX_REQUEST_BYTES} bytes; an invalid item is answered `invalid` by index "
            "and field, the others are stored. NDJSON results also carry each item's `line` "
            "(1-based, blank lines counted)."
        ),
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": inline_schema(CaseIn),
                    "maxItems": L.MAX_ITEMS_PER_REQUEST,
                },
                "example": [CASE_EXAMPLE, MINIMAL_CASE_EXAMPLE],
            },
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one JSON case per line"},
                "example": b"\n".join(
                    orjson.dumps(c) for c in (CASE_EXAMPLE, MINIMAL_CASE_EXAMPLE)
                ).decode()
                + "\n",
            },
        },
    }
}


class ModelOut(BaseModel):
    id: str | None = None
    name: str | None = None
    version: str | None = None
    version_id: str | None = None


class LinkOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str
    url: str
    title: str | None = None


class CaseOut(BaseModel):
    """A stored case: the captured facts, the curation, and what the catalog derived."""

    model_config = ConfigDict(extra="allow")

    id: str
    revision: int
    external_id: str | None = None
    title: str | None = None
    summary: str | None = None
    model: ModelOut
    data_source: str | None = None
    occurred_at: str | None = None
    captured_at: str | None = None
    received_at: str | None = None
    environment: dict[str, str] | None = None
    input: Any = None
    prediction: Any = None
    expected: Any = None
    confidence: float | None = None
    latency_ms: float | None = None
    failure_mode: str | None = None
    taxonomy_version: int | None = None
    severity: str | None = None
    impact: str | None = None
    status: str
    signals: dict[str, Any] | None = None
    tags: list[str] = []
    sensitivity: str
    team: str | None = None
    links: list[LinkOut] = []
    writeup: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    fingerprint: str | None = None
    content_hash: str | None = None
    group_id: str | None = None
    merged_into_id: str | None = None
    updated_at: str | None = None


CASE_OUT_EXAMPLE = {
    **{k: v for k, v in CASE_EXAMPLE.items() if k not in ("model", "fingerprint")},
    "id": _CASE_ID,
    "revision": 1,
    "model": {"name": "fraud-detector", "version": "3.2.0"},
    "status": "new",
    "received_at": "2026-11-02T14:03:12Z",
    "fingerprint": "3f1c9a",
}


class CasePage(BaseModel):
    cases: list[CaseOut]
    next: str | None = None
