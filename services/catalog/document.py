"""The search document of a case: the producer side of services/search/fields.py's table.

A field added to that table gets its value here, by the same name; the search service
normalizes what it receives (empty values, dates, lists), so this stays a plain mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.catalog.models import FailureCase
from shared.jsonutil import iso as _iso


def search_document(
    case: FailureCase,
    model: str,
    version: str,
    source: str,
    after_events: Sequence[str] = (),
) -> dict[str, Any]:
    """`after_events`: kinds of the context events that preceded the case within the default
    window (services/catalog/context_events.py finds them for a whole batch in one query)."""
    writeup = case.writeup or {}
    return {
        "id": case.id,
        "revision": case.revision,
        "title": case.title,
        "summary": case.summary,
        "impact": case.impact,
        **{
            f"writeup_{k}": writeup.get(k)
            for k in ("hypothesis", "experiments", "results", "rationale")
        },
        "model": model,
        "model_version": version,
        "data_source": source,
        "failure_mode": case.failure_mode,
        "failure_mode_parent": case.failure_mode_parent,
        "severity": case.severity,
        "status": case.status,
        "team": case.team,
        "tags": case.tags or [],
        "sensitivity": case.sensitivity,
        "environment": case.environment or {},
        "occurred_at": _iso(case.occurred_at),
        "received_at": _iso(case.received_at),
        "confidence": case.confidence,
        "latency_ms": case.latency_ms,
        "group_id": case.group_id,
        "merged_into_id": case.merged_into_id,
        "after_event": list(after_events),
    }
