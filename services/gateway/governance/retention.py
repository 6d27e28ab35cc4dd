"""GraphQL of retention: `setRetentionPolicy` and `retentionPolicies` (admin), `setLegalHold`
(reviewers and admins, on what they may see), and the `legalHold` field of cases and groups.

No import of the catalog's GraphQL types here: they import this module for `legalHold`."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from services.gateway.permissions import read_with, scoped
from services.governance.retention import service
from services.governance.retention.schemas import HoldKind
from shared.security import Scope, Sensitivity

ADMIN = scoped(Scope.ADMIN)
HOLD = scoped(Scope.REVIEWS_WRITE, Scope.CASES_READ)


@strawberry.enum(description="What a legal hold covers: one case, or every case of a group.")
class LegalHoldKind(Enum):
    CASE = "case"
    GROUP = "group"


@read_with(Scope.ADMIN)
@strawberry.type(
    description="How long the cases of a data source at a sensitivity keep their raw payload "
    "(input, prediction, expected, signals, environment) and themselves, in days from when "
    "failcat received them; null keeps forever."
)
class RetentionPolicy:
    data_source: str
    sensitivity: Sensitivity
    payload_ttl_days: int | None
    case_ttl_days: int | None
    updated_at: datetime
    updated_by: str


@read_with(Scope.CASES_READ)
@strawberry.type(
    description="A legal hold: while active, retention purges neither the case nor (on a "
    "group) any case of the group."
)
class LegalHold:
    kind: LegalHoldKind
    target_id: strawberry.ID
    active: bool
    reason: str
    held_by: str
    held_at: datetime
    lifted_by: str | None
    lifted_at: datetime | None
    lift_reason: str | None


@strawberry.input(description="A case (kind CASE) or a failure group (kind GROUP) by id.")
class LegalHoldTarget:
    kind: LegalHoldKind
    id: strawberry.ID


@strawberry.type
class RetentionQuery:
    @strawberry.field(permission_classes=ADMIN)
    async def retention_policies(self, info: Info) -> list[RetentionPolicy]:
        return await service.retention_policies(await info.context.session())  # type: ignore[return-value]


@strawberry.type
class RetentionMutation:
    @strawberry.mutation(
        permission_classes=ADMIN,
        description="Set the policy of (dataSource, sensitivity); both TTLs null removes it. "
        "A case TTL shorter than the payload TTL is refused. Audited.",
    )
    async def set_retention_policy(
        self,
        info: Info,
        data_source: str,
        sensitivity: Sensitivity,
        payload_ttl_days: int | None = None,
        case_ttl_days: int | None = None,
    ) -> RetentionPolicy:
        return await service.set_retention_policy(  # type: ignore[return-value]
            await info.context.session(),
            {
                "data_source": data_source,
                "sensitivity": sensitivity.value,
                "payload_ttl_days": payload_ttl_days,
                "case_ttl_days": case_ttl_days,
            },
            info.context.principal,
        )

    @strawberry.mutation(
        permission_classes=HOLD,
        description="Put (hold: true) or lift (hold: false) a legal hold on a case or a group "
        "you may see; the reason is kept and audited. NOT_FOUND for what you cannot see.",
    )
    async def set_legal_hold(
        self, info: Info, target: LegalHoldTarget, hold: bool, reason: str
    ) -> LegalHold:
        return await service.set_legal_hold(  # type: ignore[return-value]
            await info.context.session(),
            {
                "kind": HoldKind(target.kind.value),
                "target_id": str(target.id),
                "hold": hold,
                "reason": reason,
            },
            info.context.principal,
        )


# --- the legalHold field of FailureCase and FailureGroup, batched per request -------------
class HoldLoaders:
    def __init__(self, ctx: Any) -> None:
        async def of_cases(keys: list[tuple[str, str]]) -> list[Any]:
            found = await service.case_holds(await ctx.session(), list(dict.fromkeys(keys)))
            return [found.get(case_id) for case_id, _ in keys]

        async def of_groups(ids: list[str]) -> list[Any]:
            found = await service.group_holds(await ctx.session(), list(ids))
            return [found.get(i) for i in ids]

        self.cases = DataLoader(load_fn=of_cases)
        self.groups = DataLoader(load_fn=of_groups)


def loaders(ctx: Any) -> HoldLoaders:
    """This request's loaders, made on first use (the context knows only the catalog's)."""
    found = ctx.__dict__.get("_hold_loaders")
    if found is None:
        found = ctx.__dict__["_hold_loaders"] = HoldLoaders(ctx)
    return found


async def _case_legal_hold(root: strawberry.Parent[Any], info: Info) -> LegalHold | None:
    return await loaders(info.context).cases.load((root.id, root.group_id))


async def _group_legal_hold(root: strawberry.Parent[Any], info: Info) -> LegalHold | None:
    return await loaders(info.context).groups.load(root.id)


case_legal_hold = strawberry.field(
    resolver=_case_legal_hold,
    description="The active legal hold on this case, or else on its group; null when none.",
)
group_legal_hold = strawberry.field(
    resolver=_group_legal_hold, description="The active legal hold on this group; null if none."
)
