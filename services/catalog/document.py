"""The search document of a case: the producer side of services/search/fields.py's table.

A field added to that table gets its value here, by the same name; the search service
normalizes what it receives (empty values, dates, lists), so this stays a plain mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.catalog.models import FailureCase
from shared import redaction
from shared.jsonutil import iso as _iso


def payload_text(value: Any) -> str | None:
    """A captured payload as searchable text: a string as it is (a prompt), JSON as one
    `path: value` line per leaf, so `input:injection` and highlights read naturally.

    This is the text every reader who may see the case can search and see highlighted, so
    it must be the payload as readers get it: a redaction policy applies here first."""
    lines: list[str] = []

    def walk(item: Any, path: str) -> None:
        if isinstance(item, dict):
            for key, sub in item.items():
                walk(sub, f"{path}.{key}" if path else str(key))
        elif isinstance(item, list):
            for sub in item:
                walk(sub, path)
        elif item is not None and item != "":
            lines.append(f"{path}: {item}" if path else str(item))

    walk(value, "")
    return "\n".join(lines) or None


def search_document(
    case: FailureCase,
    model: str,
    version: str,
    source: str,
    after_events: Sequence[str] = (),
    annotation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`after_events`: kinds of the context events that preceded the case within the default
    window (services/catalog/context_events.py finds them for a whole batch in one query).
    `annotation`: the annotation service's fields of the case (annotated_by, ...), found for
    a whole batch by services/annotation/search_state.py."""
    writeup = case.writeup or {}
    document = {
        "id": case.id,
        "revision": case.revision,
        "title": case.title,
        "summary": case.summary,
        "impact": case.impact,
        "input": payload_text(case.input),
        "prediction": payload_text(case.prediction),
        "expected": payload_text(case.expected),
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
        "pii": sorted({f["kind"] for f in case.pii_findings or ()}),
        # -- annotation state: the annotation service's own fields, as it produced them
        **_annotation_fields(annotation),
    }
    # Payload above the case's own level is not indexed (shared/redaction.py).
    return dict(redaction.apply(document, redaction.indexed_redactions(case)))


def _annotation_fields(annotation: Mapping[str, Any] | None) -> dict[str, Any]:
    state = dict(annotation or {})
    return {
        "annotated_by": state.get("annotated_by", 0),
        "annotation_status": state.get("annotation_status", "none"),
        "agreement": state.get("agreement"),
        "disagreement": state.get("disagreement", []),
        "blinded": state.get("blinded", []),
    }
