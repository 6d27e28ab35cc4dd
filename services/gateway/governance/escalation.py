"""GraphQL of escalation: rules (curators and admins), their delivery log, release blocks
and their lifting (reviewers). Every case id shown is filtered for the reader."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from services.catalog import service as catalog
from services.gateway.catalog.inputs import to_plain
from services.gateway.catalog.types import PageInfo
from services.gateway.permissions import read_with, scoped
from services.governance.escalation import schemas, service
from services.governance.escalation.models import EscalationDelivery as DeliveryRow
from services.governance.escalation.models import EscalationRule as RuleRow
from services.governance.escalation.models import ReleaseBlock as BlockRow
from shared.security import Scope

RuleKind = strawberry.enum(schemas.RuleKind, name="EscalationRuleKind")
DeliveryStatus = strawberry.enum(schemas.DeliveryStatus, name="EscalationDeliveryStatus")
Action = strawberry.enum(schemas.Action, name="EscalationAction")

MANAGE = (Scope.CASES_WRITE, Scope.CASES_READ)  # curators (admins hold every scope)


@read_with(*MANAGE)
@strawberry.type(description="A condition over indexed cases and the actions it takes.")
class EscalationRule:
    id: strawberry.ID
    name: str
    kind: RuleKind
    query: str = strawberry.field(description="In the search query language (QUERY.md).")
    threshold: int | None = strawberry.field(description="THRESHOLD rules only; else null.")
    window_minutes: int | None
    days: int | None
    webhook_url: str | None
    ticket_url: str | None
    block_release: bool
    team: str | None = strawberry.field(description="Its creator's: it sees what they saw.")
    clearance: str
    enabled: bool
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, row: RuleRow) -> EscalationRule:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            kind=schemas.RuleKind(row.kind),
            query=row.query,
            # Stored as 1 for the other kinds, which refuse one: not theirs to show.
            threshold=row.threshold if row.kind == schemas.RuleKind.THRESHOLD else None,
            window_minutes=row.window_minutes,
            days=row.days,
            webhook_url=row.webhook_url,
            ticket_url=row.ticket_url,
            block_release=row.block_release,
            team=row.team,
            clearance=row.clearance,
            enabled=row.enabled,
            created_at=row.created_at,
            created_by=row.created_by,
        )


@read_with(*MANAGE)
@strawberry.type
class CreatedEscalationRule:
    rule: EscalationRule
    secret: str = strawberry.field(
        description="The HMAC key of its webhook signatures: shown this once."
    )


@read_with(*MANAGE)
@strawberry.type(description="One request of a delivery: its answer, or why there was none.")
class EscalationAttempt:
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


@read_with(*MANAGE)
@strawberry.type(description="A webhook or ticket request of one firing, with its attempts.")
class EscalationDelivery:
    id: strawberry.ID
    firing_id: strawberry.ID
    action: Action
    url: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    ticket_url: str | None
    case_ids: list[strawberry.ID] = strawberry.field(
        description="The cases of the firing that you may see."
    )
    log: list[EscalationAttempt]


@read_with(*MANAGE)
@strawberry.type
class EscalationDeliveryConnection:
    nodes: list[EscalationDelivery]
    page_info: PageInfo


@read_with(Scope.CASES_READ)
@strawberry.type(description="A model version the release gate refuses until lifted.")
class ReleaseBlock:
    id: strawberry.ID
    model: str
    version: str
    rule_name: str
    reason: str
    case_ids: list[strawberry.ID] = strawberry.field(description="Those you may see.")
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None
    lift_reason: str | None


async def _blocks(session: Any, rows: list[BlockRow], viewer: Any) -> list[ReleaseBlock]:
    rules = await service.rules_by_id(session, list({b.rule_id for b in rows}))
    seen = await catalog.visible_among(session, [i for b in rows for i in b.case_ids], viewer)
    return [
        ReleaseBlock(
            id=strawberry.ID(b.id),
            model=b.model,
            version=b.version,
            rule_name=rules[b.rule_id].name,
            reason=b.reason,
            case_ids=[strawberry.ID(i) for i in b.case_ids if i in seen],
            created_at=b.created_at,
            lifted_at=b.lifted_at,
            lifted_by=b.lifted_by,
            lift_reason=b.lift_reason,
        )
        for b in rows
    ]


async def _deliveries(session: Any, rows: list[DeliveryRow], viewer: Any) -> list[Any]:
    """A page's attempts and firings in two queries, whatever its size."""
    ids = [d.id for d in rows]
    log: dict[str, list[EscalationAttempt]] = {}
    for a in await service.attempts_of(session, ids):
        log.setdefault(a.delivery_id, []).append(
            EscalationAttempt(
                attempt=a.attempt,
                at=a.at,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
            )
        )
    firings = await service.firings_by_id(session, list({d.firing_id for d in rows}))
    seen = await catalog.visible_among(
        session, [i for f in firings.values() for i in f.case_ids], viewer
    )
    return [
        EscalationDelivery(
            id=strawberry.ID(d.id),
            firing_id=strawberry.ID(d.firing_id),
            action=schemas.Action(d.action),
            url=d.url,
            status=schemas.DeliveryStatus(d.status),
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            ticket_url=d.ticket_url,
            case_ids=[strawberry.ID(i) for i in firings[d.firing_id].case_ids if i in seen],
            log=log.get(d.id, []),
        )
        for d in rows
    ]


@strawberry.input
class EscalationRuleInput:
    name: str
    kind: RuleKind
    query: str = strawberry.field(default="", description="Search query language; '' = all.")
    threshold: int | None = strawberry.field(
        default=None, description="THRESHOLD: this many matching cases ..."
    )
    window_minutes: int | None = strawberry.field(
        default=None, description="... occurred within this many minutes."
    )
    days: int | None = strawberry.field(
        default=None, description="LEFT_CONFIRMED: left in confirmed this many days."
    )
    webhook_url: str | None = None
    ticket_url: str | None = strawberry.field(
        default=None,
        description="A ticket system's webhook: its answer's `ticket_url`, `url` or "
        "`ticket.url` is stored as a `ticket` link on the cases.",
    )
    block_release: bool = False
    secret: str | None = strawberry.field(
        default=None, description="The HMAC key (16+ characters); generated when omitted."
    )


@strawberry.type
class EscalationQuery:
    @strawberry.field(permission_classes=scoped(*MANAGE), description="Rules you may see.")
    async def escalation_rules(self, info: Info) -> list[EscalationRule]:
        rows = await service.list_rules(await info.context.session(), info.context.principal)
        return [EscalationRule.of(r) for r in rows]

    @strawberry.field(
        permission_classes=scoped(*MANAGE),
        description="A rule's delivery log (by the rule's name), newest first.",
    )
    async def escalation_deliveries(
        self, info: Info, rule: str, first: int = 20, after: str | None = None
    ) -> EscalationDeliveryConnection:
        session, viewer = await info.context.session(), info.context.principal
        page = await service.deliveries(session, rule, viewer, first, after)
        return EscalationDeliveryConnection(
            nodes=await _deliveries(session, page.nodes, viewer),
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )

    @strawberry.field(
        permission_classes=scoped(Scope.CASES_READ),
        description="The release blocks in force on a model version.",
    )
    async def release_blocks(self, info: Info, model: str, version: str) -> list[ReleaseBlock]:
        session = await info.context.session()
        rows = await service.active_blocks(session, model, version)
        return await _blocks(session, rows, info.context.principal)


@strawberry.type
class EscalationMutation:
    @strawberry.mutation(
        permission_classes=scoped(*MANAGE),
        description="A rule judged as cases are indexed (ESCALATION.md); answers its secret once.",
    )
    async def create_escalation_rule(
        self, info: Info, rule: EscalationRuleInput
    ) -> CreatedEscalationRule:
        row, secret = await service.create_rule(
            await info.context.session(), to_plain(rule), info.context.principal
        )
        return CreatedEscalationRule(rule=EscalationRule.of(row), secret=secret)

    @strawberry.mutation(
        permission_classes=scoped(*MANAGE),
        description="Disable a rule (it stops matching and firing) or enable it again (it "
        "judges cases indexed from then on); NOT_FOUND for a rule you may not see.",
    )
    async def set_escalation_rule_enabled(
        self, info: Info, id: strawberry.ID, enabled: bool
    ) -> EscalationRule:
        row = await service.set_rule_enabled(
            await info.context.session(), str(id), enabled, info.context.principal
        )
        return EscalationRule.of(row)

    @strawberry.mutation(
        permission_classes=scoped(Scope.REVIEWS_WRITE, Scope.CASES_READ),
        description="Lift every release block in force on a model version; you are the "
        "reviewer who lifted them.",
    )
    async def lift_release_block(
        self, info: Info, model: str, version: str, reason: str
    ) -> list[ReleaseBlock]:
        session, actor = await info.context.session(), info.context.principal
        rows = await service.lift_release_block(
            session, {"model": model, "version": version, "reason": reason}, actor
        )
        return await _blocks(session, rows, actor)
