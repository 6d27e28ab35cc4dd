"""Catalog mutations."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from services.catalog import service
from services.catalog.api import check_item_count
from services.catalog.schemas import CasePatch
from services.gateway.catalog.inputs import CaseInput, CasePatchInput, to_plain
from services.gateway.catalog.types import (
    FailureCase,
    FailureGroup,
    FieldErrorType,
    IngestResult,
    IngestStatus,
)
from services.gateway.permissions import scoped
from shared.security import Scope


@strawberry.type
class CatalogMutation:
    @strawberry.mutation(permission_classes=scoped(Scope.CASES_INGEST))
    async def ingest_cases(self, info: Info, cases: list[CaseInput]) -> list[IngestResult]:
        check_item_count(len(cases))
        session = await info.context.session()
        results = await service.ingest_cases(
            session, [to_plain(c) for c in cases], info.context.principal
        )
        return [
            IngestResult(
                index=r.index,
                status=IngestStatus(r.status),
                id=r.id,
                errors=[FieldErrorType(**e) for e in r.errors or []],
            )
            for r in results
        ]

    @strawberry.mutation(permission_classes=scoped(Scope.CASES_WRITE))
    async def update_case(
        self,
        info: Info,
        id: strawberry.ID,
        patch: CasePatchInput,
        expected_revision: int,
        reason: str | None = None,
    ) -> FailureCase:
        validated = CasePatch.model_validate(to_plain(patch, keep_null=True))
        session = await info.context.session()
        return await service.update_case(
            session, str(id), validated, expected_revision, info.context.principal, reason
        )

    @strawberry.mutation(permission_classes=scoped(Scope.CASES_WRITE))
    async def merge_case(
        self,
        info: Info,
        id: strawberry.ID,
        into: strawberry.ID,
        expected_revision: int,
        reason: str | None = None,
    ) -> FailureCase:
        session = await info.context.session()
        return await service.merge_case(
            session, str(id), str(into), expected_revision, info.context.principal, reason
        )

    @strawberry.mutation(permission_classes=scoped(Scope.CASES_WRITE))
    async def resolve_group(
        self, info: Info, id: strawberry.ID, fixed_in_version: str
    ) -> FailureGroup:
        session = await info.context.session()
        return await service.resolve_group(
            session, str(id), fixed_in_version, info.context.principal
        )
