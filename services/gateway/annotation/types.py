"""GraphQL types of the annotation service, and the fields it adds to FailureCase."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.annotation import boards, schemas
from services.gateway.annotation.loaders import loaders
from services.gateway.permissions import read_with
from shared.security import Scope

if TYPE_CHECKING:
    from services.gateway.catalog.types import FailureCase, FailureGroup, PageInfo

FailureCaseRef = Annotated["FailureCase", strawberry.lazy("services.gateway.catalog.types")]
FailureGroupRef = Annotated["FailureGroup", strawberry.lazy("services.gateway.catalog.types")]
PageInfoRef = Annotated["PageInfo", strawberry.lazy("services.gateway.catalog.types")]

AnnotationStatus = strawberry.enum(schemas.AnnotationStatus, name="AnnotationStatus")
FieldType = strawberry.enum(schemas.FieldType, name="TaxonomyFieldType")
ReviewCadence = strawberry.enum(boards.Cadence, name="ReviewCadence")
ReviewAgendaKind = strawberry.enum(boards.AgendaKind, name="ReviewAgendaKind")


@strawberry.enum
class AnnotationQueueKind(Enum):
    ASSIGNED = "assigned"
    NEEDS_REVIEW = "needs_review"


@read_with(Scope.CASES_READ)
@strawberry.type
class TaxonomyField:
    name: str
    number: str | None
    type: FieldType
    permitted_values: list[str]
    required: bool
    ordinal: bool
    order: list[str]
    description: str
    subfields: list[TaxonomyField]


@read_with(Scope.CASES_READ)
@strawberry.type
class AnnotationTaxonomy:
    name: str
    version: int
    description: str
    source: str
    created_at: datetime
    created_by: str

    @strawberry.field
    def fields(self) -> list[TaxonomyField]:
        return [schemas.TaxonomyField.model_validate(f) for f in self.fields]  # type: ignore[attr-defined]


@read_with(Scope.CASES_READ)
@strawberry.type
class AnnotationChange:
    revision: int
    actor: str
    action: str
    status: AnnotationStatus
    values: JSON
    notes: str | None
    confidence: float | None
    created_at: datetime


async def _annotator_name(root: strawberry.Parent[Any], info: Info) -> str | None:
    return await loaders(info.context).names.load(root.annotator)


@read_with(Scope.CASES_READ)
@strawberry.type
class Annotation:
    id: strawberry.ID
    case_id: strawberry.ID
    annotator: str
    annotator_name: str | None = strawberry.field(
        resolver=_annotator_name,
        description="The annotator's display name (an account's username, a client's name); "
        "null when `annotator` is neither (an imported annotation's source). It is read with "
        "the annotation: the blind-read rule withholds both.",
    )
    taxonomy: str
    taxonomy_version: int
    values: JSON
    notes: str | None
    confidence: float | None
    status: AnnotationStatus
    revision: int
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None

    @strawberry.field(description="Every state this annotation went through, oldest first.")
    async def history(self, info: Info) -> list[AnnotationChange]:
        return await loaders(info.context).history.load(self.id)


@read_with(Scope.CASES_READ)
@strawberry.type
class AnnotationAssignment:
    case_id: strawberry.ID
    annotator: str
    overlap: int
    assigned_by: str
    assigned_at: datetime


@read_with(Scope.CASES_READ)
@strawberry.type
class AnnotationReview:
    id: strawberry.ID
    case_id: strawberry.ID
    taxonomy: str | None
    taxonomy_version: int | None
    reviewer: str
    action: str
    values: JSON | None
    comment: str | None
    annotation_ids: list[strawberry.ID]
    case_revision: int | None
    created_at: datetime

    @strawberry.field
    async def case(self, info: Info) -> FailureCaseRef:
        return await info.context.loaders.case.load(self.case_id)


@read_with(Scope.CASES_READ)
@strawberry.type
class ReviewTrailEntry:
    at: datetime
    actor: str
    action: str
    taxonomy: str | None
    values: JSON | None
    comment: str | None
    annotation_ids: list[strawberry.ID]
    case_revision: int | None
    hidden: bool = strawberry.field(
        description="Values withheld: the reader has not submitted their own annotation."
    )


@read_with(Scope.CASES_READ)
@strawberry.type
class FieldComparison:
    field: str
    values: JSON
    agree: bool


@read_with(Scope.CASES_READ)
@strawberry.type
class AnnotationQueueItem:
    taxonomy: str | None
    overlap: int
    annotators: list[str]
    submitted: int
    disagreement: float | None
    my_status: str | None
    comparisons: list[FieldComparison]

    @strawberry.field
    async def case(self, info: Info) -> FailureCaseRef | None:
        return await info.context.loaders.case.load(self.case_id)  # type: ignore[attr-defined]


@read_with(Scope.CASES_READ)
@strawberry.type
class AnnotationQueue:
    nodes: list[AnnotationQueueItem]
    page_info: PageInfoRef


@read_with(Scope.CASES_READ)
@strawberry.type
class AgreementEstimate:
    value: float | None
    low: float | None
    high: float | None
    n: int


@read_with(Scope.CASES_READ)
@strawberry.type
class AnnotatorPair:
    a: str
    b: str
    n: int
    cohen_kappa: float | None
    cohen_kappa_interval: AgreementEstimate


@read_with(Scope.CASES_READ)
@strawberry.type
class ValueCount:
    value: str
    count: int


@read_with(Scope.CASES_READ)
@strawberry.type
class AnnotatorDistribution:
    annotator: str
    values: list[ValueCount]


@read_with(Scope.CASES_READ)
@strawberry.type
class MonthlyAgreement:
    month: str
    n: int
    krippendorff_alpha: float | None


@read_with(Scope.CASES_READ)
@strawberry.type
class Agreement:
    taxonomy: str
    field: str
    level: str
    n: int
    pairs: list[AnnotatorPair]
    fleiss_kappa: float | None
    fleiss_kappa_interval: AgreementEstimate
    krippendorff_alpha: AgreementEstimate
    distribution: list[AnnotatorDistribution]
    by_month: list[MonthlyAgreement]


def agreement_of(taxonomy: str, field: str, report: Any) -> Agreement:
    def estimate(e: Any) -> AgreementEstimate:
        return AgreementEstimate(value=e.value, low=e.low, high=e.high, n=e.n)

    return Agreement(
        taxonomy=taxonomy,
        field=field,
        level=report.level,
        n=report.n,
        pairs=[
            AnnotatorPair(
                a=p.a,
                b=p.b,
                n=p.n,
                cohen_kappa=p.kappa.value,
                cohen_kappa_interval=estimate(p.kappa),
            )
            for p in report.pairs
        ],
        fleiss_kappa=report.fleiss.value,
        fleiss_kappa_interval=estimate(report.fleiss),
        krippendorff_alpha=estimate(report.alpha),
        distribution=[
            AnnotatorDistribution(
                annotator=a, values=[ValueCount(value=v, count=c) for v, c in counts.items()]
            )
            for a, counts in report.distribution.items()
        ],
        by_month=[
            MonthlyAgreement(month=m.month, n=m.n, krippendorff_alpha=m.alpha)
            for m in report.by_month
        ],
    )


# --- fields of FailureCase (declared on the catalog's type, resolved here) -------------------
async def _case_annotations(
    root: strawberry.Parent[Any], info: Info, taxonomy: str | None = None
) -> list[Annotation] | None:
    return await loaders(info.context).annotations.load((root.id, taxonomy))


async def _case_review_trail(root: strawberry.Parent[Any], info: Info) -> list[ReviewTrailEntry]:
    return await loaders(info.context).trails.load(root.id)


case_annotations = strawberry.field(
    resolver=_case_annotations,
    description="The case's annotations. An annotator of the case reads the others' (of a "
    "taxonomy) only once their own is submitted: before, FORBIDDEN.",
)
case_review_trail = strawberry.field(
    resolver=_case_review_trail,
    description="Who was assigned, who annotated, who reviewed, what was decided and why.",
)


async def _curated_after(hidden: Any, case: Any, name: str) -> Any:
    return None if await hidden else getattr(case, name)


def curated_field(name: str, description: str) -> Any:
    """A curated field of FailureCase that adjudication decides (failure mode, severity,
    impact): null for a reader the blind-read rule keeps from the decided labels."""

    # Synchronous when the flag is loaded already (a page primed it, as search hydration
    # does): an async resolver would make every case of the page an awaitable to gather.
    def resolve(self: Any, info: Info) -> Any:
        hidden = loaders(info.context).curated_hidden.get(self.id)
        if hidden is True:
            return None
        if hidden is False:
            return getattr(self, name)
        return _curated_after(hidden, self, name)

    return strawberry.field(
        resolver=resolve,
        description=f"{description} Null for an annotator of the case who has not submitted "
        "their own failcat annotation when it was adjudicated (the blind-read rule).",
    )


# --- review rituals --------------------------------------------------------------------------
@read_with(Scope.CASES_READ)
@strawberry.type
class ReviewAgendaItem:
    id: strawberry.ID
    position: int
    kind: ReviewAgendaKind
    case_id: strawberry.ID | None
    group_id: strawberry.ID | None
    reason: str
    status: str = strawberry.field(description="open | decided | carried (to a later session)")
    decision: str | None
    decided_by: str | None
    decided_at: datetime | None
    carried_from: strawberry.ID | None = strawberry.field(
        description="The item first put on an earlier session's agenda, when carried."
    )

    @strawberry.field
    async def case(self, info: Info) -> FailureCaseRef | None:
        return await info.context.loaders.case.load(self.case_id) if self.case_id else None

    @strawberry.field
    async def group(self, info: Info) -> FailureGroupRef | None:
        return await info.context.loaders.group.load(self.group_id) if self.group_id else None


@read_with(Scope.CASES_READ)
@strawberry.type
class ReviewSession:
    id: strawberry.ID
    board_id: strawberry.ID
    number: int
    owner: str
    scheduled_for: datetime
    status: str = strawberry.field(description="open | closed")
    minutes: str | None
    opened_by: str
    created_at: datetime
    closed_by: str | None
    closed_at: datetime | None

    @strawberry.field(description="Carried items first, then what the catalog asked.")
    async def agenda(self, info: Info) -> list[ReviewAgendaItem]:
        return await loaders(info.context).agendas.load(self.id)


@read_with(Scope.CASES_READ)
@strawberry.type
class ReviewBoard:
    id: strawberry.ID
    team: str
    name: str
    cadence: ReviewCadence
    roster: list[str]
    created_by: str
    created_at: datetime

    @strawberry.field(description="Oldest first.")
    async def sessions(self, info: Info) -> list[ReviewSession]:
        return await loaders(info.context).sessions.load(self.id)

    @strawberry.field(description="Who owns the next session (the roster in turn).")
    async def next_owner(self, info: Info) -> str:
        held = await loaders(info.context).sessions.load(self.id)
        return boards.owner_of(self, len(held) + 1)  # type: ignore[arg-type]
