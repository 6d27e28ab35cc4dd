"""Cases rendered as the wire format (REST answers, exports, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row

from services.catalog.models import CaseRevision, FailureCase
from shared import redaction
from shared.jsonutil import iso
from shared.security import Principal


@dataclass
class PageRelations:
    """Names and links for a page of cases, loaded in one query per table."""

    models: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    links: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PastCase:
    """A case as it was at some time: a detached row with the curated fields of then, and
    the links it had then (links live in their own table, so they travel beside the row)."""

    case: FailureCase
    links: list[dict[str, Any]]


def case_json(
    case: FailureCase | Row[Any], refs: PageRelations | None = None, *, viewer: Principal
) -> dict[str, Any]:
    """`case` is the entity or a row of its table's columns (services/catalog/hydration.py
    reads those). `viewer` is who reads it: payload fields above their clearance come back
    null and named in `redacted_fields` (shared/redaction.py)."""
    refs = refs or PageRelations()
    view = {
        "id": case.id,
        "revision": case.revision,
        "external_id": case.external_id,
        "title": case.title,
        "summary": case.summary,
        "model": {
            "id": case.model_id,
            "name": refs.models.get(case.model_id),
            "version": refs.versions.get(case.model_version_id),
            "version_id": case.model_version_id,
        },
        "data_source": refs.sources.get(case.data_source_id),
        "occurred_at": iso(case.occurred_at),
        "captured_at": iso(case.captured_at),
        "received_at": iso(case.received_at),
        "environment": case.environment,
        "input": case.input,
        "prediction": case.prediction,
        "expected": case.expected,
        "confidence": case.confidence,
        "latency_ms": case.latency_ms,
        "failure_mode": case.failure_mode,
        "taxonomy_version": case.taxonomy_version,
        "severity": case.severity,
        "impact": case.impact,
        "status": case.status,
        "signals": case.signals,
        "tags": case.tags or [],
        "sensitivity": case.sensitivity,
        "team": case.team,
        "links": refs.links.get(case.id, []),
        "writeup": case.writeup,
        "provenance": case.provenance,
        "fingerprint": case.fingerprint,
        "content_hash": case.content_hash,
        "group_id": case.group_id,
        "merged_into_id": case.merged_into_id,
        "capture_policy_version": case.capture_policy_version,
        "updated_at": iso(case.updated_at),
        "payload_sensitivity": case.payload_sensitivity,
        "pii_findings": case.pii_findings or [],
    }
    return redaction.apply(view, redaction.redacted_fields(viewer, case))


def revision_json(rev: CaseRevision) -> dict[str, Any]:
    return {
        "revision": rev.revision,
        "actor": rev.actor,
        "actor_name": rev.actor_name,
        "created_at": iso(rev.created_at),
        "reason": rev.reason,
        "changes": rev.changes,
    }
