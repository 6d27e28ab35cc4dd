"""Capture policies in GraphQL: `capturePolicy(model, dataSource, version)` and
`setCapturePolicy(model, dataSource, policy)` (services/catalog/CAPTURE.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.catalog import service
from services.catalog.models import CapturePolicy as PolicyRow
from services.gateway.catalog.inputs import to_plain
from services.gateway.permissions import read_with, scoped
from shared.security import Scope


@read_with(Scope.CASES_READ)
@strawberry.type(
    description="What qualifies an item as a candidate failure: any one condition that is "
    "set and holds (none set: every item qualifies)."
)
class CaptureQualify:
    confidence_below: float | None
    confidence_above: float | None
    latency_over_ms: float | None
    prediction_mismatch: bool = strawberry.field(
        description="prediction differs from expected (their `label`, else the values)"
    )
    signals: list[str] = strawberry.field(description="any of these signals present, non-empty")
    exception: bool = strawberry.field(description="signals.exception present")


@read_with(Scope.CASES_READ)
@strawberry.type(
    description="One version of the capture policy of a (model, data source). Versions are "
    "immutable; setting a policy adds the next one, and each case records the version it met "
    "(`FailureCase.capturePolicyVersion`)."
)
class CapturePolicy:
    model: str
    data_source: str
    version: int
    name: str
    required: list[str] = strawberry.field(
        description="Dotted paths each item must carry (non-null), e.g. `input.amount`."
    )
    input_schema: JSON | None = strawberry.field(
        description="A JSON Schema `input` must match (checked by the server only)."
    )
    qualify: CaptureQualify
    created_at: datetime
    created_by: str


@strawberry.input
class CaptureQualifyInput:
    confidence_below: float | None = strawberry.UNSET
    confidence_above: float | None = strawberry.UNSET
    latency_over_ms: float | None = strawberry.UNSET
    prediction_mismatch: bool | None = strawberry.UNSET
    signals: list[str] | None = strawberry.UNSET
    exception: bool | None = strawberry.UNSET


@strawberry.input
class CapturePolicyInput:
    name: str | None = strawberry.UNSET
    qualify: CaptureQualifyInput | None = strawberry.UNSET
    required: list[str] | None = strawberry.UNSET
    input_schema: JSON | None = strawberry.UNSET


def policy_type(row: PolicyRow) -> CapturePolicy:
    d: dict[str, Any] = row.definition or {}
    q = d.get("qualify") or {}
    return CapturePolicy(
        model=row.model,
        data_source=row.data_source,
        version=row.version,
        name=row.name,
        required=list(d.get("required") or []),
        input_schema=d.get("input_schema"),
        qualify=CaptureQualify(
            confidence_below=q.get("confidence_below"),
            confidence_above=q.get("confidence_above"),
            latency_over_ms=q.get("latency_over_ms"),
            prediction_mismatch=bool(q.get("prediction_mismatch")),
            signals=list(q.get("signals") or []),
            exception=bool(q.get("exception")),
        ),
        created_at=row.created_at,
        created_by=row.created_by,
    )


@strawberry.type
class CapturePolicyQuery:
    @strawberry.field(
        permission_classes=scoped(Scope.CASES_READ),
        description="The current capture policy of (model, dataSource), or the given version "
        "of it; null when there is none.",
    )
    async def capture_policy(
        self, info: Info, model: str, data_source: str, version: int | None = None
    ) -> CapturePolicy | None:
        session = await info.context.session()
        row = await service.get_capture_policy(session, model, data_source, version)
        return policy_type(row) if row is not None else None


@strawberry.type
class CapturePolicyMutation:
    @strawberry.mutation(
        permission_classes=scoped(Scope.ADMIN),
        description="Set the capture policy of (model, dataSource): stores its next version "
        "(the same definition as the current one stores nothing). Enforced at ingest from the "
        "next batch on; failcat-client picks it up at its next refresh.",
    )
    async def set_capture_policy(
        self, info: Info, model: str, data_source: str, policy: CapturePolicyInput
    ) -> CapturePolicy:
        session = await info.context.session()
        row = await service.set_capture_policy(
            session, model, data_source, to_plain(policy), info.context.principal
        )
        return policy_type(row)
