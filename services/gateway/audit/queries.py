"""Audit trail queries (audit:read)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from services.audit import service
from services.audit.schemas import AuditFilter
from services.gateway.audit.types import (
    AuditEntryConnection,
    AuditEntryEdge,
    AuditLogFilter,
)
from services.gateway.catalog.types import PageInfo
from services.gateway.pagination import check_page_size
from services.gateway.permissions import scoped
from shared.cursor import decode_cursor, encode_cursor
from shared.errors import BadUserInput, FieldError
from shared.security import Scope

CURSOR = "audit"


def _before(after: str | None) -> int | None:
    if after is None:
        return None
    values = decode_cursor(after, CURSOR)
    if len(values) != 1 or not isinstance(values[0], int):
        raise BadUserInput("invalid cursor", [FieldError("after", "not a cursor this API issued")])
    return values[0]


@strawberry.type
class AuditQuery:
    @strawberry.field(
        permission_classes=scoped(Scope.AUDIT_READ),
        description="The audit trail, newest first; every filter field narrows it.",
    )
    async def audit_log(
        self,
        info: Info,
        filter: AuditLogFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> AuditEntryConnection:
        check_page_size(first)
        f = filter or AuditLogFilter()
        rows = await service.list_entries(
            await info.context.session(),
            AuditFilter(f.actor, f.action, f.target, f.from_, f.to),
            first + 1,
            _before(after),
        )
        page = rows[:first]
        edges = [
            AuditEntryEdge(cursor=encode_cursor(CURSOR, [r.seq]), node=r)  # type: ignore[arg-type]
            for r in page
        ]
        return AuditEntryConnection(
            edges=edges,
            nodes=page,  # type: ignore[arg-type]
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
        )
