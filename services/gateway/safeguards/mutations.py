"""Safeguards mutations: suites (curators), runs (CI clients), resolutions and waivers
(reviewers). Each answers with what it stored, so it needs read access as well."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.gateway.catalog.inputs import to_plain
from services.gateway.permissions import scoped
from services.gateway.safeguards.types import (
    EvaluationRun,
    GateWaiver,
    Outcome,
    Perturbation,
    ResolutionProposal,
    Suite,
    SyntheticScenario,
)
from services.safeguards import gate, service
from services.safeguards.schemas import RunIn, ScenarioRequest, SuiteCreate, WaiverIn
from shared.security import Scope


@strawberry.input
class CaseOutcomeInput:
    case_id: strawberry.ID
    outcome: Outcome
    latency_ms: float | None = None
    prediction: JSON | None = None
    error: str | None = None


@strawberry.input
class EvaluationRunInput:
    model: str
    version: str
    suite: str
    suite_version: int | None = strawberry.field(
        default=None, description="The suite's latest version when omitted."
    )
    outcomes: list[CaseOutcomeInput]
    positive_label: JSON | None = strawberry.field(
        default=None, description="The alarm label for the false alarm rate (binary labels)."
    )


@strawberry.input
class WaiverInput:
    group_id: strawberry.ID
    model: str
    version: str | None = strawberry.field(default=None, description="Null: every version.")
    reason: str
    expires_at: datetime


@strawberry.type
class SafeguardsMutation:
    @strawberry.mutation(
        permission_classes=scoped(Scope.CASES_WRITE, Scope.CASES_READ),
        description="Freeze a saved search query or a list of cases as the suite's next "
        "version (an unchanged selection answers the latest version).",
    )
    async def create_suite(
        self,
        info: Info,
        name: str,
        model: str,
        query: str | None = None,
        case_ids: list[strawberry.ID] | None = None,
        include_scenarios: bool = False,
    ) -> Suite:
        data = SuiteCreate(
            name=name,
            model=model,
            query=query,
            case_ids=[str(i) for i in case_ids] if case_ids is not None else None,
            include_scenarios=include_scenarios,
        )
        return await service.create_suite(  # type: ignore[return-value]
            await info.context.session(), data, info.context.principal, info.context.search
        )

    @strawberry.mutation(
        permission_classes=scoped(Scope.CASES_WRITE, Scope.CASES_READ),
        description="Seeded, reproducible variants of cases' inputs (of the given cases, or "
        "of a suite version's): the same arguments give the same scenarios.",
    )
    async def generate_scenarios(
        self,
        info: Info,
        perturbations: list[Perturbation],
        seed: int,
        case_ids: list[strawberry.ID] | None = None,
        suite: str | None = None,
        suite_version: int | None = None,
        variants: int = 1,
        tolerance: float = 0.01,
    ) -> list[SyntheticScenario]:
        data = ScenarioRequest(
            case_ids=[str(i) for i in case_ids] if case_ids is not None else None,
            suite=suite,
            suite_version=suite_version,
            perturbations=[p.value for p in perturbations],
            variants=variants,
            seed=seed,
            tolerance=tolerance,
        )
        return await service.generate_scenarios(  # type: ignore[return-value]
            await info.context.session(), data, info.context.principal
        )

    @strawberry.mutation(permission_classes=scoped(Scope.EVALS_WRITE, Scope.CASES_READ))
    async def record_evaluation_run(self, info: Info, run: EvaluationRunInput) -> EvaluationRun:
        data = RunIn.model_validate(to_plain(run))
        return await service.record_run(  # type: ignore[return-value]
            await info.context.session(), data, info.context.principal
        )

    @strawberry.mutation(
        permission_classes=scoped(Scope.REVIEWS_WRITE, Scope.CASES_READ),
        description="Accept a run's proposal: the group is resolved in the run's version.",
    )
    async def accept_resolution(self, info: Info, id: strawberry.ID) -> ResolutionProposal:
        return await service.accept_resolution(  # type: ignore[return-value]
            await info.context.session(), str(id), info.context.principal
        )

    @strawberry.mutation(
        permission_classes=scoped(Scope.REVIEWS_WRITE, Scope.CASES_READ),
        description="Let an open group through the release gate until it expires; you are "
        "the approver.",
    )
    async def waive_group(self, info: Info, waiver: WaiverInput) -> GateWaiver:
        data = WaiverIn.model_validate(to_plain(waiver))
        return await gate.waive_group(  # type: ignore[return-value]
            await info.context.session(), data, info.context.principal
        )

    @strawberry.mutation(permission_classes=scoped(Scope.REVIEWS_WRITE, Scope.CASES_READ))
    async def revoke_waiver(self, info: Info, id: strawberry.ID) -> GateWaiver:
        return await gate.revoke_waiver(  # type: ignore[return-value]
            await info.context.session(), str(id), info.context.principal
        )
