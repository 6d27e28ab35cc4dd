"""The plans' operations and rules: the only entry point other packages call.

Evidence is checked through the catalog's service (visibility applies), suites and runs
through the safeguards' service. Functions flush; the boundary commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import service as catalog
from services.plans.models import EvaluationPlan, RetrainingPlan
from services.plans.repository import PlansRepository
from services.plans.schemas import (
    MAX_VERSION,
    EvaluationPlanIn,
    PlanStatus,
    RetrainingPlanIn,
    Target,
)
from services.safeguards import service as safeguards
from shared.audit import audit
from shared.db import utcnow
from shared.errors import BadUserInput, Conflict, FieldError, Forbidden, NotFound
from shared.ids import new_id
from shared.security import Principal, Scope

# Moves set by hand; in_progress -> evaluated happens only by measuring (evaluate_plan).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("approved", "closed"),
    "approved": ("in_progress", "closed"),
    "in_progress": ("closed",),
    "evaluated": ("in_progress", "closed"),  # back to work when the targets were missed
    "closed": (),
}
STAMPS = {"approved": "approved_at", "in_progress": "started_at", "closed": "closed_at"}


async def _check_suites(
    session: AsyncSession, model: str, names: list[tuple[str, str]]
) -> list[FieldError]:
    errors = []
    for path, name in names:
        try:
            snapshot = await safeguards.get_suite(session, name)
        except NotFound:
            errors.append(FieldError(path, f"suite {name} not found"))
            continue
        if snapshot.model != model:
            errors.append(FieldError(path, f"suite {name} evaluates {snapshot.model}"))
    return errors


async def create_retraining_plan(
    session: AsyncSession, data: RetrainingPlanIn, actor: Principal, search: Any = None
) -> RetrainingPlan:
    errors: list[FieldError] = []
    case_ids = list(dict.fromkeys(data.evidence.case_ids))
    seen = await safeguards.visible_ids(session, case_ids, actor)
    errors += [
        FieldError(f"evidence.caseIds.{i}", f"case {c} not found")
        for i, c in enumerate(case_ids)
        if c not in seen
    ]
    for i, group_id in enumerate(data.evidence.group_ids):
        try:
            await catalog.get_visible_group(session, group_id, actor)
        except NotFound:
            errors.append(FieldError(f"evidence.groupIds.{i}", f"group {group_id} not found"))
    if data.evidence.slice_query is not None and search is not None:
        try:
            search.build_request(actor, data.evidence.slice_query)
        except BadUserInput as exc:
            errors.append(FieldError("evidence.sliceQuery", exc.message))
    errors += await _check_suites(
        session,
        data.model,
        [(f"targets.{i}.suite", t.suite) for i, t in enumerate(data.targets)]
        + [(f"evaluationSuites.{i}", s) for i, s in enumerate(data.evaluation_suites)],
    )
    if errors:
        raise BadUserInput(f"invalid retraining plan: {errors[0].message}", errors[:100])
    plan = RetrainingPlan(
        id=new_id(),
        title=data.title,
        model_name=data.model,
        base_version=data.base_version,
        evidence=data.evidence.model_dump(mode="json"),
        feature_config=data.feature_config,
        targets=[t.model_dump(mode="json") for t in data.targets],
        augmentations=list(data.augmentations),
        changes=data.changes.model_dump(mode="json") if data.changes else None,
        evaluation_suites=list(data.evaluation_suites),
        created_at=utcnow(),
        created_by=actor.subject,
    )
    await PlansRepository(session).add(plan)
    audit(
        session,
        actor,
        "plans.create",
        f"retraining_plan:{plan.id}",
        details={
            "model": plan.model_name,
            "cases": len(case_ids),
            "groups": len(data.evidence.group_ids),
            "targets": len(data.targets),
        },
    )
    return plan


async def get_retraining_plan(session: AsyncSession, plan_id: str) -> RetrainingPlan:
    # No id or name holds NUL (inputs refuse it), and Postgres would refuse the query.
    plan = (
        await PlansRepository(session).retraining_plan(plan_id) if "\x00" not in plan_id else None
    )
    if plan is None:
        raise NotFound(f"retraining plan {plan_id} not found")
    return plan


async def retraining_plans(
    session: AsyncSession, model: str, status: str | None = None
) -> list[RetrainingPlan]:
    if "\x00" in model:
        return []
    return await PlansRepository(session).retraining_plans(model, status)


async def visible_evidence(
    session: AsyncSession, plan: RetrainingPlan, viewer: Principal
) -> list[str]:
    """The evidence cases `viewer` may see (a plan never shows the others)."""
    ids = plan.evidence.get("case_ids", [])
    seen = await safeguards.visible_ids(session, ids, viewer)
    return [i for i in ids if i in seen]


async def visible_evidence_groups(
    session: AsyncSession, plan: RetrainingPlan, viewer: Principal
) -> list[str]:
    """The evidence groups `viewer` may see: a group none of whose cases the reader sees is,
    to them, absent (as `group(id)` answers), so its id is not shown either."""
    out = []
    for group_id in plan.evidence.get("group_ids", []):  # a plan names a few groups
        try:
            await catalog.get_visible_group(session, group_id, viewer)
        except NotFound:
            continue
        out.append(group_id)
    return out


async def set_status(
    session: AsyncSession,
    plan_id: str,
    status: PlanStatus,
    expected_revision: int,
    actor: Principal,
) -> RetrainingPlan:
    repo = PlansRepository(session)
    plan = await get_retraining_plan(session, plan_id)
    if plan.revision != expected_revision:
        raise Conflict(f"plan {plan_id} is at revision {plan.revision}, not {expected_revision}")
    target = status.value
    if target not in TRANSITIONS.get(plan.status, ()):
        allowed = ", ".join(TRANSITIONS.get(plan.status, ())) or "none"
        hint = "; evaluated is reached by evaluateRetrainingPlan" if target == "evaluated" else ""
        raise BadUserInput(
            f"cannot move a plan from {plan.status} to {target}",
            [FieldError("status", f"allowed from {plan.status}: {allowed}{hint}")],
        )
    values: dict[str, Any] = {"status": target, STAMPS[target]: utcnow()}
    if target == "approved":
        # Approval is an independent review: it needs reviews:write, and a reviewer other
        # than the plan's author (an admin's own plan included).
        if not actor.has(Scope.REVIEWS_WRITE):
            raise Forbidden("insufficient_scope: approving a plan requires reviews:write")
        if actor.subject == plan.created_by:
            raise Forbidden(f"plan {plan.id} was written by you: another reviewer must approve it")
        values["approved_by"] = actor.subject
    before = plan.status
    plan = await _update(session, repo, plan, values)
    audit(
        session,
        actor,
        "plans.set_status",
        f"retraining_plan:{plan.id}",
        details={"from": before, "to": target, "revision": plan.revision},
    )
    return plan


async def _update(
    session: AsyncSession, repo: PlansRepository, plan: RetrainingPlan, values: dict[str, Any]
) -> RetrainingPlan:
    if not await repo.update_plan_if_revision(plan.id, plan.revision, values):
        raise Conflict(f"plan {plan.id} changed meanwhile; reload and retry")
    await session.refresh(plan)
    return plan


async def measure(
    session: AsyncSession, model: str, version: str, target: Target
) -> dict[str, Any]:
    """One target against the newest run of the version on the suite's latest version."""
    out: dict[str, Any] = {**target.model_dump(mode="json"), "measured": None, "run_id": None}
    run = await safeguards.latest_run_on_suite(session, model, version, target.suite)
    if run is not None:
        figures = await safeguards.run_figures(session, run)
        out["measured"], out["run_id"] = figures[target.metric.value], run.id
    value = out["measured"]
    out["met"] = value is not None and (
        value >= target.value if target.op == ">=" else value <= target.value
    )
    return out


def _version(value: str, path: str) -> str:
    """A model version as the catalog names one (what the outcome stores and shows)."""
    value = value.strip()
    if not value or len(value) > MAX_VERSION or "\x00" in value:
        raise BadUserInput(
            f"invalid {path}",
            [FieldError(path, f"a version name of 1 to {MAX_VERSION} characters, without NUL")],
        )
    return value


async def evaluate_plan(
    session: AsyncSession, plan_id: str, candidate_version: str, actor: Principal
) -> RetrainingPlan:
    """Measure the candidate version against every target; the plan becomes evaluated."""
    candidate_version = _version(candidate_version, "candidateVersion")
    plan = await get_retraining_plan(session, plan_id)
    if plan.status not in ("in_progress", "evaluated"):
        raise BadUserInput(
            f"plan {plan.id} is {plan.status}: only a plan in progress (or evaluated, to "
            "measure again) is evaluated",
            [FieldError("id", "start the plan (in_progress) first")],
        )
    results = [
        await measure(session, plan.model_name, candidate_version, Target.model_validate(t))
        for t in plan.targets
    ]
    outcome = {
        "candidate_version": candidate_version,
        "met": all(r["met"] for r in results),
        "targets": results,
        "measured_by": actor.subject,
    }
    values = {
        "status": "evaluated",
        "evaluated_at": utcnow(),
        "candidate_version": candidate_version,
        "outcome": outcome,
    }
    plan = await _update(session, PlansRepository(session), plan, values)
    audit(
        session,
        actor,
        "plans.evaluate",
        f"retraining_plan:{plan.id}",
        details={"candidate_version": candidate_version, "met": outcome["met"]},
    )
    return plan


# --- evaluation plans -----------------------------------------------------------------------
async def save_evaluation_plan(
    session: AsyncSession, data: EvaluationPlanIn, actor: Principal, *, revise: bool
) -> EvaluationPlan:
    """A new plan (version 1), or with `revise` its next version."""
    repo = PlansRepository(session)
    latest = await repo.evaluation_plan(data.name, None)
    if latest is None and revise:
        raise NotFound(f"evaluation plan {data.name} not found")
    if latest is not None and not revise:
        raise Conflict(f"evaluation plan {data.name} exists: revise it")
    if latest is not None and latest.model_name != data.model:
        raise BadUserInput(
            "an evaluation plan keeps its model",
            [FieldError("model", f"plan {data.name} is for {latest.model_name}")],
        )
    errors = await _check_suites(
        session,
        data.model,
        [(f"benchmarks.{i}.suite", b.suite) for i, b in enumerate(data.benchmarks)],
    )
    if errors:
        raise BadUserInput(f"invalid evaluation plan: {errors[0].message}", errors)
    plan = EvaluationPlan(
        id=new_id(),
        name=data.name,
        version=(latest.version if latest else 0) + 1,
        model_name=data.model,
        description=data.description,
        benchmarks=[b.model_dump(mode="json", exclude_none=True) for b in data.benchmarks],
        created_at=utcnow(),
        created_by=actor.subject,
    )
    await repo.add(plan)
    audit(
        session,
        actor,
        "plans.revise_evaluation_plan" if revise else "plans.create_evaluation_plan",
        f"evaluation_plan:{plan.name}@{plan.version}",
        details={"model": plan.model_name, "benchmarks": len(plan.benchmarks)},
    )
    return plan


async def get_evaluation_plan(
    session: AsyncSession, name: str, version: int | None = None
) -> EvaluationPlan:
    if version is not None and version < 1:
        raise BadUserInput(
            f"invalid evaluation plan version {version}",
            [FieldError("version", "a number from 1; omit it for the latest")],
        )
    plan = (
        await PlansRepository(session).evaluation_plan(name, version)
        if "\x00" not in name
        else None
    )
    if plan is None:
        raise NotFound(f"evaluation plan {name}{f' v{version}' if version else ''} not found")
    return plan


CRITERIA = {
    "min_pass_rate": ("pass_rate", ">="),
    "max_false_alarm_rate": ("false_alarm_rate", "<="),
    "max_latency_p95_ms": ("latency_p95_ms", "<="),
    "min_stability": ("stability", ">="),
}


async def check_evaluation_plan(
    session: AsyncSession, plan: EvaluationPlan, model_version: str
) -> list[dict[str, Any]]:
    """Each benchmark's success criteria against the version's newest runs."""
    model_version = _version(model_version, "modelVersion")
    out = []
    for bench in plan.benchmarks:
        for key, (metric, op) in CRITERIA.items():
            if key in bench:
                target = Target(suite=bench["suite"], metric=metric, op=op, value=bench[key])
                out.append(await measure(session, plan.model_name, model_version, target))
    return out
