"""Catalog queries."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from services.catalog import service
from services.catalog.cursor import decode_cursor, encode_cursor
from services.catalog.schemas import CaseFilter
from services.gateway.catalog.inputs import CaseFilterInput, to_plain
from services.gateway.catalog.types import (
    CaseConnection,
    CaseEdge,
    FailureCase,
    FailureGroup,
    FailureMode,
    Model,
    PageInfo,
    SeverityGrade,
)
from services.gateway.pagination import check_page_size
from services.gateway.permissions import scoped
from shared.errors import NotFound
from shared.security import Scope


@strawberry.type
class CatalogQuery:
    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def case(
        self, info: Info, id: strawberry.ID, as_of: datetime | None = None
    ) -> FailureCase:
        session = await info.context.session()
        return await service.get_case(session, str(id), info.context.principal, as_of)

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def cases(
        self,
        info: Info,
        filter: CaseFilterInput | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> CaseConnection:
        check_page_size(first)
        f = CaseFilter.model_validate(to_plain(filter) if filter else {})
        session = await info.context.session()
        rows = await service.list_cases(
            session, f, info.context.principal, first + 1, decode_cursor(after) if after else None
        )
        page = rows[:first]
        edges = [CaseEdge(cursor=encode_cursor(c.occurred_at, c.id), node=c) for c in page]
        return CaseConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
        )

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def group(self, info: Info, id: strawberry.ID) -> FailureGroup:
        group = await info.context.loaders.group.load(str(id))
        if group is None:
            raise NotFound(f"group {id} not found")
        return group

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def models(self, info: Info) -> list[Model]:
        return await service.list_models(await info.context.session())

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def taxonomy(self, info: Info, version: int | None = None) -> list[FailureMode]:
        _, modes = await service.taxonomy(await info.context.session(), version)
        return modes

    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def severity_rubric(self, info: Info) -> list[SeverityGrade]:
        return await service.rubric(await info.context.session())
