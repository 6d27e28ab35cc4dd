"""Annotation queries: taxonomies, the work queues, agreement."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from services.annotation import boards, service
from services.annotation.agreement import RESAMPLES
from services.gateway.annotation.types import (
    Agreement,
    AnnotationQueue,
    AnnotationQueueKind,
    AnnotationTaxonomy,
    ReviewBoard,
    ReviewSession,
    agreement_of,
)
from services.gateway.catalog.loaders import selected_under
from services.gateway.pagination import check_page_size
from services.gateway.permissions import scoped
from shared.errors import Forbidden
from shared.security import Scope

# Where an interval's bounds can be selected below Query.agreement.
INTERVALS = (("krippendorffAlpha",), ("fleissKappaInterval",), ("pairs", "cohenKappaInterval"))


def _asks_interval(info: Info) -> bool:
    """The bootstrap is most of agreement's cost: run it only when a bound is selected
    (the point values and n do not need it)."""
    return bool({"low", "high"} & selected_under(info, *INTERVALS))


@strawberry.type
class AnnotationQuery:
    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def annotation_taxonomies(self, info: Info) -> list[AnnotationTaxonomy]:
        return await service.list_taxonomies(await info.context.session())

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def annotation_taxonomy(
        self, info: Info, name: str, version: int | None = None
    ) -> AnnotationTaxonomy:
        return await service.get_taxonomy(await info.context.session(), name, version)

    @strawberry.field(
        permission_classes=scoped(Scope.ANNOTATIONS_WRITE, Scope.CASES_READ),
        description="ASSIGNED: the caller's assignments not yet submitted. NEEDS_REVIEW "
        "(reviews:write): cases submitted by their k annotators, not yet adjudicated, by "
        "disagreement then severity.",
    )
    async def annotation_queue(
        self, info: Info, kind: AnnotationQueueKind, first: int = 50, after: str | None = None
    ) -> AnnotationQueue:
        from services.gateway.catalog.types import PageInfo

        check_page_size(first)
        principal = info.context.principal
        if kind == AnnotationQueueKind.NEEDS_REVIEW and not principal.has(Scope.REVIEWS_WRITE):
            raise Forbidden("insufficient_scope: requires reviews:write")
        items, cursor = await service.annotation_queue(
            await info.context.session(), kind.value, principal, first, after
        )
        return AnnotationQueue(
            nodes=items,  # type: ignore[arg-type]
            page_info=PageInfo(has_next_page=cursor is not None, end_cursor=cursor),
        )

    @strawberry.field(
        permission_classes=scoped(Scope.CASES_READ),
        description="Agreement on one taxonomy field over the submitted annotations of the "
        "cases the caller sees (narrowed by a search query and annotators). The bootstrap "
        "interval (1,000 resamples) is computed only when a bound (low, high) is selected.",
    )
    async def agreement(
        self,
        info: Info,
        taxonomy: str,
        field: str,
        annotators: list[str] | None = None,
        query: str | None = None,
    ) -> Agreement:
        session = await info.context.session()
        case_ids = None
        if query is not None:
            case_ids = await service.case_ids_matching(
                info.context.search, info.context.principal, query
            )
        report = await service.agreement(
            session,
            taxonomy,
            field,
            info.context.principal,
            annotators=annotators,
            case_ids=case_ids,
            resamples=RESAMPLES if _asks_interval(info) else 0,
        )
        return agreement_of(taxonomy, field, report)

    @strawberry.field(
        permission_classes=scoped(Scope.CASES_READ),
        description="Review boards of a team (the caller's own, unless not bound to one).",
    )
    async def review_boards(self, info: Info, team: str | None = None) -> list[ReviewBoard]:
        return await boards.list_boards(  # type: ignore[return-value]
            await info.context.session(), info.context.principal, team
        )

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def review_board(self, info: Info, id: strawberry.ID) -> ReviewBoard:
        return await boards.get_board(  # type: ignore[return-value]
            await info.context.session(), str(id), info.context.principal
        )

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def review_session(self, info: Info, id: strawberry.ID) -> ReviewSession:
        return await boards.get_session(  # type: ignore[return-value]
            await info.context.session(), str(id), info.context.principal
        )
