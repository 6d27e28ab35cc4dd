"""Safeguards queries: suites, runs, their comparison and the release gate."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.gateway.permissions import scoped
from services.gateway.safeguards.types import (
    EvaluationRun,
    GateCondition,
    GateResult,
    GateWaiver,
    RunChange,
    RunComparison,
    Suite,
    SyntheticScenario,
)
from services.safeguards import gate, service
from shared.security import Scope

READ = scoped(Scope.CASES_READ)


def _changes(items: list[service.Change]) -> list[RunChange]:
    return [
        RunChange(
            case_id=c.case_id,
            failure_mode=c.failure_mode,
            before=c.before,  # type: ignore[arg-type]
            after=c.after,  # type: ignore[arg-type]
        )
        for c in items
    ]


def gate_answer(result: gate.GateResult) -> GateResult:
    return GateResult(
        model=result.model,
        version=result.version,
        passed=result.passed,
        conditions=[
            GateCondition(
                name=c.name,
                passed=c.passed,
                detail=c.detail,
                case_ids=c.case_ids,  # type: ignore[arg-type]
                group_ids=c.group_ids,  # type: ignore[arg-type]
                run_ids=c.run_ids,  # type: ignore[arg-type]
                waiver_ids=c.waiver_ids,  # type: ignore[arg-type]
                hidden=c.hidden,
            )
            for c in result.conditions
        ],
    )


@strawberry.type
class SafeguardsQuery:
    @strawberry.field(
        permission_classes=READ,
        description="A suite at a version (its latest when none is given).",
    )
    async def suite(self, info: Info, name: str, version: int | None = None) -> Suite:
        return await service.get_suite(await info.context.session(), name, version)  # type: ignore[return-value]

    @strawberry.field(permission_classes=READ)
    async def suites(self, info: Info, model: str) -> list[Suite]:
        return await service.suites_of_model(await info.context.session(), model)  # type: ignore[return-value]

    @strawberry.field(permission_classes=READ, description="A case's synthetic scenarios.")
    async def scenarios(self, info: Info, case_id: strawberry.ID) -> list[SyntheticScenario]:
        return await service.scenarios_of_case(  # type: ignore[return-value]
            await info.context.session(), str(case_id), info.context.principal
        )

    @strawberry.field(permission_classes=READ)
    async def evaluation_run(self, info: Info, id: strawberry.ID) -> EvaluationRun:
        return await service.get_run(await info.context.session(), str(id))  # type: ignore[return-value]

    @strawberry.field(permission_classes=READ, description="Runs of a model version, newest first.")
    async def evaluation_runs(self, info: Info, model: str, version: str) -> list[EvaluationRun]:
        return await service.runs_of(await info.context.session(), model, version)  # type: ignore[return-value]

    @strawberry.field(
        permission_classes=READ,
        description="Fixed, regressed and still-failing cases from run a to run b.",
    )
    async def compare_runs(self, info: Info, a: strawberry.ID, b: strawberry.ID) -> RunComparison:
        result = await service.compare_runs(
            await info.context.session(), str(a), str(b), info.context.principal
        )
        return RunComparison(
            a=result.a,  # type: ignore[arg-type]
            b=result.b,  # type: ignore[arg-type]
            fixed=_changes(result.fixed),
            regressed=_changes(result.regressed),
            still_failing=_changes(result.still_failing),
            only_in_a=result.only_in_a,
            only_in_b=result.only_in_b,
        )

    @strawberry.field(
        permission_classes=READ,
        description="May this model version ship? Each condition with its evidence. `policy` "
        "is the JSON form of a gate policy file; without it: no open S0/S1 group unless "
        "waived, and every suite of the model passing at its latest version.",
    )
    async def release_gate(
        self, info: Info, model: str, version: str, policy: JSON | None = None
    ) -> GateResult:
        result = await gate.release_gate(
            await info.context.session(),
            model,
            version,
            gate.parse_policy(policy),
            info.context.principal,
        )
        return gate_answer(result)

    @strawberry.field(permission_classes=READ, description="Waivers in force for a version.")
    async def gate_waivers(self, info: Info, model: str, version: str) -> list[GateWaiver]:
        return await gate.active_waivers(  # type: ignore[return-value]
            await info.context.session(), model, version, viewer=info.context.principal
        )
