"""Sharing queries: a target's comments, lessons (cases:read)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from services.gateway.catalog.types import PageInfo
from services.gateway.pagination import check_page_size
from services.gateway.permissions import scoped
from services.gateway.sharing.types import (
    CommentConnection,
    Lesson,
    LessonConnection,
    LessonStatus,
)
from services.sharing import schemas, service
from shared.security import Scope

READ = scoped(Scope.CASES_READ)


@strawberry.type
class SharingQuery:
    @strawberry.field(
        permission_classes=READ,
        description="The comments on a case or group (its id), oldest first; NOT_FOUND for a "
        "target you may not see.",
    )
    async def comments(
        self, info: Info, target: strawberry.ID, first: int = 50, after: str | None = None
    ) -> CommentConnection:
        check_page_size(first)
        rows, cursor = await service.comments(
            await info.context.session(), str(target), info.context.principal, first, after
        )
        return CommentConnection(
            nodes=rows,  # type: ignore[arg-type]
            page_info=PageInfo(has_next_page=cursor is not None, end_cursor=cursor),
        )

    @strawberry.field(
        permission_classes=READ,
        description="Lessons learned, newest first; `query`: words that must each appear in "
        "the title or texts (case-insensitive).",
    )
    async def lessons(
        self,
        info: Info,
        query: str | None = None,
        status: LessonStatus | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> LessonConnection:
        check_page_size(first)
        rows, cursor = await service.lessons(
            await info.context.session(),
            query,
            schemas.LessonStatus(status.value) if status else None,
            first,
            after,
        )
        return LessonConnection(
            nodes=rows,  # type: ignore[arg-type]
            page_info=PageInfo(has_next_page=cursor is not None, end_cursor=cursor),
        )

    @strawberry.field(permission_classes=READ)
    async def lesson(self, info: Info, id: strawberry.ID) -> Lesson:
        return await service.get_lesson(await info.context.session(), str(id))  # type: ignore[return-value]
