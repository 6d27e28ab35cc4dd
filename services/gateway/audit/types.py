"""GraphQL types of the audit trail (read under audit:read)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from services.gateway.catalog.types import PageInfo
from services.gateway.permissions import read_with
from shared.security import Scope


@read_with(Scope.AUDIT_READ)
@strawberry.type(description="One entry of the hash-chained audit trail.")
class AuditEntry:
    seq: int
    at: datetime
    actor_subject: str | None
    actor_client: str | None
    actor_team: str | None
    action: str
    target: str | None
    outcome: str
    correlation_id: str | None
    details: JSON | None
    hash: str = strawberry.field(
        description="sha256(previous entry's hash + this entry's canonical form), hex"
    )


@read_with(Scope.AUDIT_READ)
@strawberry.type
class AuditEntryEdge:
    cursor: str
    node: AuditEntry


@read_with(Scope.AUDIT_READ)
@strawberry.type
class AuditEntryConnection:
    edges: list[AuditEntryEdge]
    nodes: list[AuditEntry]
    page_info: PageInfo


@strawberry.input
class AuditLogFilter:
    actor: str | None = strawberry.field(
        default=None, description="A subject (user or client id) or a client id"
    )
    action: str | None = strawberry.field(
        default=None, description='An action ("case.read") or its area ("case")'
    )
    target: str | None = strawberry.field(default=None, description='e.g. "case:<id>"')
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="At or after this time"
    )
    to: datetime | None = strawberry.field(default=None, description="Before this time")
