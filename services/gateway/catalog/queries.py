"""Catalog queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from services.annotation import service as annotation
from services.catalog import service
from services.catalog.cursor import CASES, EVENTS, GROUPS, decode_keyset, encode_keyset
from services.catalog.schemas import CaseFilter
from services.catalog.templates import template_for
from services.gateway.annotation.loaders import loaders as annotation_loaders
from services.gateway.catalog.inputs import CaseFilterInput, ContextEventFilterInput, to_plain
from services.gateway.catalog.loaders import prefetch_case_relations
from services.gateway.catalog.types import (
    CaseConnection,
    CaseEdge,
    ContextEventConnection,
    ContextEventEdge,
    FailureCase,
    FailureGroup,
    FailureMode,
    GroupConnection,
    GroupEdge,
    GroupStatus,
    Model,
    PageInfo,
    PastCaseRow,
    SamplingRule,
    SeverityGrade,
    TaxonomyVersion,
    WriteupTemplate,
)
from services.gateway.pagination import check_page_size
from services.gateway.permissions import scoped
from shared.audit import audit, entry
from shared.security import Scope


async def case_page(
    info: Info,
    filter_values: dict[str, Any],
    first: int,
    after: str | None,
    *,
    prefetch: bool = True,
) -> CaseConnection:
    """One page of cases the caller may see; one query for the page, and one per relation its
    query selects (prefetched when the page is the only one in the request)."""
    check_page_size(first)
    f = CaseFilter.model_validate(filter_values)
    session = await info.context.session()
    rows = await service.list_cases(
        session,
        f,
        info.context.principal,
        first + 1,
        decode_keyset(CASES, after) if after else None,
    )
    page = rows[:first]
    audit(
        session,
        info.context.principal,
        "cases.list",
        None,
        details={"ids": [c.id for c in page]},
        read=True,
    )
    if prefetch:
        await prefetch_case_relations(info, page, ("nodes",), ("edges", "node"))
    edges = [CaseEdge(cursor=encode_keyset(CASES, c.occurred_at, c.id), node=c) for c in page]
    return CaseConnection(
        edges=edges,
        nodes=page,
        page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
        ),
    )


@strawberry.type
class CatalogQuery:
    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def case(
        self, info: Info, id: strawberry.ID, as_of: datetime | None = None
    ) -> FailureCase:
        session = await info.context.session()
        principal = info.context.principal
        if as_of is None:
            # The model and the blind-read rule's flag come with the row: the model and the
            # curated fields read them from their loaders' caches, not in queries of their own.
            # The read's entry too (in the same statement on Postgres), committed with the
            # request's transaction, before the answer is sent.
            case, model, blinded = await annotation.visible_case_for(
                session, str(id), principal, entry(principal, "case.read", f"case:{id}", read=True)
            )
            info.context.loaders.model.prime(model.id, model)
            annotation_loaders(info.context).curated_hidden.prime(case.id, blinded)
            return case
        case = PastCaseRow(await service.get_case_as_of(session, str(id), principal, as_of))
        audit(session, principal, "case.read", f"case:{id}", read=True)
        return case

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def cases(
        self,
        info: Info,
        filter: CaseFilterInput | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> CaseConnection:
        return await case_page(info, to_plain(filter) if filter else {}, first, after)

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def group(self, info: Info, id: strawberry.ID) -> FailureGroup:
        session = await info.context.session()
        return await service.get_visible_group(session, str(id), info.context.principal)

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def groups(
        self,
        info: Info,
        model: str | None = None,
        status: GroupStatus | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> GroupConnection:
        check_page_size(first)
        rows = await service.list_groups(
            await info.context.session(),
            info.context.principal,
            model=model,
            status=status.value if status else None,
            first=first + 1,
            after=decode_keyset(GROUPS, after) if after else None,
        )
        page = rows[:first]
        edges = [GroupEdge(cursor=encode_keyset(GROUPS, g.last_seen, g.id), node=g) for g in page]
        return GroupConnection(
            edges=edges,
            nodes=page,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
        )

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def models(self, info: Info) -> list[Model]:
        return await service.list_models(await info.context.session())

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def taxonomy(self, info: Info, version: int | None = None) -> list[FailureMode]:
        _, modes = await service.taxonomy(await info.context.session(), version)
        return modes

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def taxonomy_versions(self, info: Info) -> list[TaxonomyVersion]:
        return await service.taxonomy_versions(await info.context.session())

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def severity_rubric(self, info: Info) -> list[SeverityGrade]:
        return await service.rubric(await info.context.session())

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    def writeup_template(self, failure_mode: str) -> WriteupTemplate:
        """The write-up template of a failure mode's family (`safety.hallucination` -> safety);
        NOT_FOUND for a family without one."""
        return WriteupTemplate.of(template_for(failure_mode))

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def sampling_rules(self, info: Info) -> list[SamplingRule]:
        return await service.sampling_rules(await info.context.session())

    @strawberry.field(
        permission_classes=scoped(Scope.CASES_READ),
        description="Context events, newest first. A scope filter also finds events whose "
        "scope leaves that part open (an event for every model concerns each model).",
    )
    async def context_events(
        self,
        info: Info,
        filter: ContextEventFilterInput | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> ContextEventConnection:
        check_page_size(first)
        f = to_plain(filter) if filter else {}
        rows = await service.list_events(
            await info.context.session(),
            kinds=f.get("kinds"),
            model=f.get("model"),
            model_version=f.get("version"),
            data_source=f.get("data_source"),
            occurred_after=filter.occurred_after or None if filter else None,
            occurred_before=filter.occurred_before or None if filter else None,
            first=first + 1,
            after=decode_keyset(EVENTS, after) if after else None,
        )
        page = rows[:first]
        edges = [
            ContextEventEdge(cursor=encode_keyset(EVENTS, e.occurred_at, e.id), node=e)
            for e in page
        ]
        return ContextEventConnection(
            edges=edges,
            nodes=page,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
        )
