"""GraphQL inputs: the wire format in camelCase. Pydantic (services.catalog.schemas) validates."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from services.gateway.catalog.types import (
    ContextEventKind,
    LinkKind,
    Sensitivity,
    Severity,
    Status,
)


@strawberry.input
class ModelRefInput:
    name: str
    version: str


@strawberry.input
class LinkInput:
    kind: LinkKind
    url: str
    title: str | None = strawberry.UNSET


@strawberry.input
class WriteupInput:
    hypothesis: str | None = strawberry.UNSET
    experiments: str | None = strawberry.UNSET
    results: str | None = strawberry.UNSET
    rationale: str | None = strawberry.UNSET


@strawberry.input
class ProvenanceInput:
    source: str | None = strawberry.UNSET
    pipeline_version: str | None = strawberry.UNSET
    captured_by: str | None = strawberry.UNSET
    batch_id: str | None = strawberry.UNSET


@strawberry.input
class CaseInput:
    model: ModelRefInput
    data_source: str
    external_id: str | None = strawberry.UNSET
    title: str | None = strawberry.UNSET
    summary: str | None = strawberry.UNSET
    occurred_at: datetime | None = strawberry.UNSET
    captured_at: datetime | None = strawberry.UNSET
    environment: JSON | None = strawberry.UNSET
    input: JSON | None = strawberry.UNSET
    prediction: JSON | None = strawberry.UNSET
    expected: JSON | None = strawberry.UNSET
    confidence: float | None = strawberry.UNSET
    latency_ms: float | None = strawberry.UNSET
    failure_mode: str | None = strawberry.UNSET
    severity: Severity | None = strawberry.UNSET
    impact: str | None = strawberry.UNSET
    signals: JSON | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    sensitivity: Sensitivity | None = strawberry.UNSET
    payload_sensitivity: Sensitivity | None = strawberry.UNSET
    team: str | None = strawberry.UNSET
    links: list[LinkInput] | None = strawberry.UNSET
    writeup: WriteupInput | None = strawberry.UNSET
    provenance: ProvenanceInput | None = strawberry.UNSET
    fingerprint: str | None = strawberry.UNSET


@strawberry.input
class CasePatchInput:
    title: str | None = strawberry.UNSET
    summary: str | None = strawberry.UNSET
    failure_mode: str | None = strawberry.UNSET
    severity: Severity | None = strawberry.UNSET
    impact: str | None = strawberry.UNSET
    status: Status | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    sensitivity: Sensitivity | None = strawberry.UNSET
    team: str | None = strawberry.UNSET
    links: list[LinkInput] | None = strawberry.UNSET
    writeup: WriteupInput | None = strawberry.UNSET


@strawberry.input
class CaseFilterInput:
    model: str | None = strawberry.UNSET
    model_version: str | None = strawberry.UNSET
    data_source: str | None = strawberry.UNSET
    failure_mode: str | None = strawberry.UNSET
    severity_min: Severity | None = strawberry.UNSET
    severity_max: Severity | None = strawberry.UNSET
    status: list[Status] | None = strawberry.UNSET
    team: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    sensitivity: list[Sensitivity] | None = strawberry.UNSET
    occurred_after: datetime | None = strawberry.UNSET
    occurred_before: datetime | None = strawberry.UNSET
    environment: JSON | None = strawberry.UNSET
    group_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class FailureModeInput:
    code: str = strawberry.field(description="dotted: a sub-mode names its parent first")
    title: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET


@strawberry.input
class SamplingRuleInput:
    model_name: str
    data_source: str
    daily_cap: int
    keep_at_or_above: Severity = Severity.S1
    enabled: bool = True


@strawberry.input(description="Where an event applies; leave a part out to cover all of it.")
class ContextScopeInput:
    model: str | None = strawberry.UNSET
    version: str | None = strawberry.UNSET
    data_source: str | None = strawberry.UNSET
    environment: JSON | None = strawberry.UNSET


@strawberry.input(
    description="A context event. `details` by kind: DEPLOY {rollout?, previousVersion?} "
    "with scope.model and scope.version required; FEATURE_CHANGE {feature, oldDefinition?, "
    "newDefinition?, oldHash?, newHash?} (a new definition or hash required); DRIFT_ALERT "
    "{metric, value, threshold, feature?, window?}; ENVIRONMENT_SHIFT {key, old?, new}. "
    "`occurredAt` defaults to now and may not be later than 5 minutes ahead; `externalId` "
    "makes a retried post answer the event already stored."
)
class ContextEventInput:
    kind: ContextEventKind
    occurred_at: datetime | None = strawberry.UNSET
    scope: ContextScopeInput | None = strawberry.UNSET
    link: str | None = strawberry.UNSET
    title: str | None = strawberry.UNSET
    details: JSON | None = strawberry.UNSET
    external_id: str | None = strawberry.UNSET


@strawberry.input
class ContextEventFilterInput:
    kinds: list[ContextEventKind] | None = strawberry.UNSET
    model: str | None = strawberry.UNSET
    version: str | None = strawberry.UNSET
    data_source: str | None = strawberry.UNSET
    occurred_after: datetime | None = strawberry.UNSET
    occurred_before: datetime | None = strawberry.UNSET


def to_plain(value: Any, keep_null: bool = False) -> Any:
    """An input object as the snake_case dict pydantic validates; unset fields dropped."""
    if value is strawberry.UNSET:
        return strawberry.UNSET
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "__strawberry_definition__"):
        out = {}
        for f in value.__strawberry_definition__.fields:
            v = to_plain(getattr(value, f.python_name), keep_null)
            if v is strawberry.UNSET or (v is None and not keep_null):
                continue
            out[f.python_name] = v
        return out
    if isinstance(value, list):
        return [to_plain(v, keep_null) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
