"""GraphQL types of the safeguards. Leaf fields read the service's rows and snapshots as they
are; relations go through DataLoaders; every case list is filtered by the caller's visibility."""

from __future__ import annotations

from datetime import datetime

import orjson
import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.gateway.catalog.types import FailureCase, FailureGroup, PageInfo
from services.gateway.permissions import read_with
from services.gateway.safeguards.loaders import loaders
from services.safeguards import perturb, schemas, service
from services.safeguards.metrics import Tally
from services.safeguards.models import EvaluationRun as RunRow
from services.safeguards.models import ResolutionProposal as ProposalRow
from services.safeguards.models import SuiteCase as SuiteCaseRow
from services.safeguards.models import SyntheticScenario as ScenarioRow
from services.safeguards.service import SuiteSnapshot
from shared.security import Scope

Outcome = strawberry.enum(schemas.Outcome, name="Outcome")
Perturbation = strawberry.enum(perturb.Perturbation, name="Perturbation")


@read_with(Scope.CASES_READ)
@strawberry.type(
    description="A case as frozen into a suite version (or a synthetic scenario of one: "
    "then caseId is the scenario's id and parentCaseId the case it varies)."
)
class SuiteCase:
    case_id: strawberry.ID
    parent_case_id: strawberry.ID | None
    position: int
    revision: int
    content_hash: str
    failure_mode: str | None
    severity: str | None
    expected: JSON | None

    @strawberry.field
    def input(self: SuiteCaseRow) -> JSON | None:  # type: ignore[misc]
        return orjson.loads(self.input_json)

    @strawberry.field
    def synthetic(self: SuiteCaseRow) -> bool:  # type: ignore[misc]
        return self.parent_case_id is not None

    @strawberry.field(description="The catalog case (a scenario's parent) as it is now.")
    async def case(self: SuiteCaseRow, info: Info) -> FailureCase | None:  # type: ignore[misc]
        return await info.context.loaders.case.load(self.parent_case_id or self.case_id)


@read_with(Scope.CASES_READ)
@strawberry.type(
    description="A seeded variant of a case's input; never a production failure of the "
    "catalog, included in suites on request."
)
class SyntheticScenario:
    id: strawberry.ID
    parent_case_id: strawberry.ID
    perturbation: Perturbation
    seed: str = strawberry.field(description="As a string: seeds may pass 2^53.")
    variant: int
    tolerance: float | None
    expected: JSON | None
    created_at: datetime
    created_by: str

    @strawberry.field
    def input(self: ScenarioRow) -> JSON | None:  # type: ignore[misc]
        return orjson.loads(self.input_json)

    @strawberry.field
    def synthetic(self) -> bool:
        return True


@read_with(Scope.CASES_READ)
@strawberry.type
class SuiteCaseConnection:
    nodes: list[SuiteCase]
    page_info: PageInfo


@read_with(Scope.CASES_READ)
@strawberry.type(description="A regression suite at one of its frozen versions.")
class Suite:
    name: str
    model: str
    version: int
    latest_version: int
    case_count: int = strawberry.field(
        description="Cases frozen into this version; `cases` lists those you may see."
    )
    query: str | None
    digest: str
    created_at: datetime
    created_by: str

    @strawberry.field(description="The version's cases you may see, in frozen order.")
    async def cases(
        self: SuiteSnapshot,  # type: ignore[misc]
        info: Info,
        first: int = 50,
        after: str | None = None,
    ) -> SuiteCaseConnection:
        from services.gateway.pagination import check_page_size

        check_page_size(first)
        page, more = await service.suite_cases(
            await info.context.session(),
            self,
            info.context.principal,
            first,
            service.parse_suite_cursor(after),
        )
        return SuiteCaseConnection(
            nodes=page,  # type: ignore[arg-type]
            page_info=PageInfo(
                has_next_page=more, end_cursor=str(page[-1].position) if page else None
            ),
        )


@read_with(Scope.CASES_READ)
@strawberry.type(description="Outcomes of one slice of a run's suite.")
class SliceMetrics:
    value: str
    total: int
    passed: int
    failed: int
    errored: int
    not_run: int
    pass_rate: float | None


def slices(tallies: dict[str, Tally]) -> list[SliceMetrics]:
    return [
        SliceMetrics(
            value=value,
            total=t.total,
            passed=t.passed,
            failed=t.failed,
            errored=t.errored,
            not_run=t.not_run,
            pass_rate=t.pass_rate,
        )
        for value, t in tallies.items()
    ]


def stored_slices(run: RunRow, key: str) -> list[SliceMetrics]:
    out = []
    for value, figures in run.metrics.get(key, {}).items():
        t = Tally(figures["total"], figures["passed"], figures["failed"], figures["errored"])
        out.append(
            SliceMetrics(
                value=value,
                total=t.total,
                passed=t.passed,
                failed=t.failed,
                errored=t.errored,
                not_run=t.not_run,
                pass_rate=t.pass_rate,
            )
        )
    return out


@read_with(Scope.CASES_READ)
@strawberry.type
class CaseOutcome:
    case_id: strawberry.ID
    outcome: Outcome
    latency_ms: float | None
    prediction: JSON | None
    error: str | None


@read_with(Scope.CASES_READ)
@strawberry.type(
    description="Every case of a group passed in a run: resolve the group in that version? "
    "A reviewer accepts with acceptResolution."
)
class ResolutionProposal:
    id: strawberry.ID
    run_id: strawberry.ID
    group_id: strawberry.ID
    case_count: int
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None

    @strawberry.field
    def model(self: ProposalRow) -> str:  # type: ignore[misc]
        return self.model_name

    @strawberry.field
    def version(self: ProposalRow) -> str:  # type: ignore[misc]
        return self.model_version

    @strawberry.field
    async def group(self: ProposalRow, info: Info) -> FailureGroup | None:  # type: ignore[misc]
        # Proposals are listed only when a case of their group is visible (EvaluationRun.proposals).
        return await info.context.loaders.group.load(self.group_id)


@read_with(Scope.CASES_READ)
@strawberry.type(description="A model version evaluated against a suite version.")
class EvaluationRun:
    id: strawberry.ID
    total: int
    passed: int
    failed: int
    errored: int
    not_run: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    false_alarm_rate: float | None = strawberry.field(
        description="False positives over expected negatives, when the labels are binary."
    )
    positive_label: JSON | None
    created_at: datetime
    created_by: str

    @strawberry.field
    def model(self: RunRow) -> str:  # type: ignore[misc]
        return self.model_name

    @strawberry.field
    def version(self: RunRow) -> str:  # type: ignore[misc]
        return self.model_version

    @strawberry.field(description="Passed over the suite's cases (a case not run has not passed).")
    def pass_rate(self: RunRow) -> float | None:  # type: ignore[misc]
        return self.passed / self.total if self.total else None

    @strawberry.field
    async def suite(self: RunRow, info: Info) -> Suite:  # type: ignore[misc]
        return await loaders(info).suite_version.load(self.suite_version_id)

    @strawberry.field
    def by_failure_mode(self: RunRow) -> list[SliceMetrics]:  # type: ignore[misc]
        return stored_slices(self, "failure_mode")

    @strawberry.field
    def by_severity(self: RunRow) -> list[SliceMetrics]:  # type: ignore[misc]
        return stored_slices(self, "severity")

    @strawberry.field(
        description="Outcomes per value of any case field: team, status, sensitivity, tags, "
        "model_version, failure_mode_parent, environment.KEY, input.KEY, signals.KEY "
        "(over the cases you may see)."
    )
    async def slice(self: RunRow, info: Info, by: str) -> list[SliceMetrics]:  # type: ignore[misc]
        return slices(
            await service.run_slices(await info.context.session(), self, by, info.context.principal)
        )

    @strawberry.field(description="Per-case outcomes of the cases you may see.")
    async def outcomes(self: RunRow, info: Info) -> list[CaseOutcome]:  # type: ignore[misc]
        return await service.visible_outcomes(  # type: ignore[return-value]
            await info.context.session(), self, info.context.principal
        )

    @strawberry.field(description="Proposals for groups of which you may see a case.")
    async def proposals(self: RunRow, info: Info) -> list[ResolutionProposal]:  # type: ignore[misc]
        found = await loaders(info).proposals.load(self.id)
        return await service.visible_proposals(  # type: ignore[return-value]
            await info.context.session(), self, found, info.context.principal
        )


@read_with(Scope.CASES_READ)
@strawberry.type
class RunChange:
    case_id: strawberry.ID
    failure_mode: str | None
    before: Outcome
    after: Outcome


@read_with(Scope.CASES_READ)
@strawberry.type(description="Cases reported in both runs, by how their outcome moved.")
class RunComparison:
    a: EvaluationRun
    b: EvaluationRun
    fixed: list[RunChange]
    regressed: list[RunChange]
    still_failing: list[RunChange]
    only_in_a: int
    only_in_b: int


@read_with(Scope.CASES_READ)
@strawberry.type
class GateCondition:
    name: str
    passed: bool
    detail: str
    case_ids: list[strawberry.ID]
    group_ids: list[strawberry.ID]
    run_ids: list[strawberry.ID]
    waiver_ids: list[strawberry.ID]
    hidden: int = strawberry.field(description="Evidence ids you may not see (counted, not shown).")


@read_with(Scope.CASES_READ)
@strawberry.type
class GateResult:
    model: str
    version: str
    passed: bool
    conditions: list[GateCondition]


@read_with(Scope.CASES_READ)
@strawberry.type(description="An open group let through the release gate until it expires.")
class GateWaiver:
    id: strawberry.ID
    group_id: strawberry.ID
    reason: str
    approved_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    @strawberry.field
    def model(self) -> str:
        return self.model_name  # type: ignore[attr-defined]

    @strawberry.field(description="The version it applies to; null: every version.")
    def version(self) -> str | None:
        return self.model_version  # type: ignore[attr-defined]
