"""GraphQL types of the catalog. Leaf fields are plain attributes of the row (no resolver);
relations go through the request's DataLoaders."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.catalog.models import FailureCase as CaseRow


@strawberry.enum
class Status(Enum):
    NEW = "new"
    TRIAGED = "triaged"
    CONFIRMED = "confirmed"
    IN_REMEDIATION = "in_remediation"
    RESOLVED = "resolved"
    WONT_FIX = "wont_fix"
    DUPLICATE = "duplicate"


@strawberry.enum
class Sensitivity(Enum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


@strawberry.enum
class Severity(Enum):
    S0 = "S0"
    S1 = "S1"
    S2 = "S2"
    S3 = "S3"
    S4 = "S4"


@strawberry.enum
class LinkKind(Enum):
    EXPERIMENT = "experiment"
    AB_TEST = "ab_test"
    TICKET = "ticket"
    COUNTERFACTUAL = "counterfactual"
    DATASET = "dataset"
    DASHBOARD = "dashboard"
    OTHER = "other"


@strawberry.type
class Model:
    id: strawberry.ID
    name: str
    created_at: datetime


@strawberry.type
class ModelVersion:
    id: strawberry.ID
    version: str
    created_at: datetime
    artifact_uri: str | None
    training_data_ref: str | None
    feature_config_hash: str | None


@strawberry.type
class DataSource:
    id: strawberry.ID
    name: str


@strawberry.type
class FailureGroup:
    id: strawberry.ID
    fingerprint: str
    failure_mode: str | None
    first_seen: datetime
    last_seen: datetime
    case_count: int
    sampled_out_count: int
    status: str
    resolved_in_version: str | None
    resolved_at: datetime | None
    regressed_at: datetime | None
    regressed_in_version: str | None


@strawberry.type
class Link:
    kind: LinkKind
    url: str
    title: str | None


@strawberry.type
class Writeup:
    hypothesis: str | None = None
    experiments: str | None = None
    results: str | None = None
    rationale: str | None = None


@strawberry.type
class Provenance:
    source: str | None = None
    pipeline_version: str | None = None
    captured_by: str | None = None
    batch_id: str | None = None


@strawberry.type
class CaseRevision:
    revision: int
    actor: str
    created_at: datetime
    reason: str | None
    changes: JSON


@strawberry.type
class FailureMode:
    code: str
    parent: str | None
    title: str
    description: str
    taxonomy_version: int


@strawberry.type
class SeverityGrade:
    grade: Severity
    rank: int
    title: str
    criteria: str


@strawberry.type
class FailureCase:
    id: strawberry.ID
    revision: int
    external_id: str | None
    title: str | None
    summary: str | None
    occurred_at: datetime
    captured_at: datetime | None
    received_at: datetime
    updated_at: datetime
    environment: JSON | None
    input: JSON | None
    prediction: JSON | None
    expected: JSON | None
    confidence: float | None
    latency_ms: float | None
    signals: JSON | None
    failure_mode: str | None
    taxonomy_version: int | None
    severity: Severity | None
    impact: str | None
    status: Status
    tags: list[str]
    sensitivity: Sensitivity
    team: str | None
    fingerprint: str
    content_hash: str
    merged_into_id: strawberry.ID | None

    @strawberry.field
    def provenance(self: CaseRow) -> Provenance | None:  # type: ignore[misc]
        return Provenance(**self.provenance) if self.provenance else None

    @strawberry.field
    def writeup(self: CaseRow) -> Writeup | None:  # type: ignore[misc]
        return Writeup(**self.writeup) if self.writeup else None

    @strawberry.field
    async def model(self: CaseRow, info: Info) -> Model:  # type: ignore[misc]
        return await info.context.loaders.model.load(self.model_id)

    @strawberry.field
    async def model_version(self: CaseRow, info: Info) -> ModelVersion:  # type: ignore[misc]
        return await info.context.loaders.model_version.load(self.model_version_id)

    @strawberry.field
    async def data_source(self: CaseRow, info: Info) -> DataSource:  # type: ignore[misc]
        return await info.context.loaders.data_source.load(self.data_source_id)

    @strawberry.field
    async def group(self: CaseRow, info: Info) -> FailureGroup:  # type: ignore[misc]
        return await info.context.loaders.group.load(self.group_id)

    @strawberry.field
    async def links(self: CaseRow, info: Info) -> list[Link]:  # type: ignore[misc]
        as_of = self.__dict__.get("as_of_links")
        if as_of is not None:
            return [
                Link(kind=LinkKind(lk["kind"]), url=lk["url"], title=lk.get("title"))
                for lk in as_of
            ]
        return await info.context.loaders.links.load(self.id)

    @strawberry.field
    async def revisions(self: CaseRow, info: Info) -> list[CaseRevision]:  # type: ignore[misc]
        return await info.context.loaders.revisions.load(self.id)

    @strawberry.field
    async def last_revision(self: CaseRow, info: Info) -> CaseRevision | None:  # type: ignore[misc]
        revs = await info.context.loaders.revisions.load(self.id)
        return revs[-1] if revs else None


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class CaseEdge:
    cursor: str
    node: FailureCase


@strawberry.type
class CaseConnection:
    edges: list[CaseEdge]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[FailureCase]:
        return [e.node for e in self.edges]


@strawberry.type
class FieldErrorType:
    path: str
    message: str


@strawberry.enum
class IngestStatus(Enum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    SAMPLED_OUT = "sampled_out"


@strawberry.type
class IngestResult:
    index: int
    status: IngestStatus
    id: strawberry.ID | None
    errors: list[FieldErrorType]


FailureCaseRef = Annotated["FailureCase", strawberry.lazy("services.gateway.catalog.types")]
