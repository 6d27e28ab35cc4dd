"""The release gate: may model M ship version V? A policy of conditions, each answered with
its evidence (case, group and run ids).

The decision counts every case, whoever asks: a narrowly scoped token must not make a gate
pass. The evidence shows the caller only what it may see, and says how much it cannot.
A version blocked by an escalation rule (services/governance/escalation) is refused until a
reviewer lifts the block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import service as catalog
from services.safeguards import service
from services.safeguards.models import EvaluationRun, GateWaiver
from services.safeguards.repository import SafeguardsRepository
from services.safeguards.schemas import GatePolicy, SuiteRule, WaiverIn
from shared.audit import audit
from shared.db import utcnow
from shared.errors import BadUserInput, Conflict, FieldError, NotFound, said, validation_errors
from shared.ids import new_id
from shared.security import Principal, Sensitivity
from shared.vocabulary import SEVERITIES

# Evidence ids listed per condition; the counts are always complete.
MAX_EVIDENCE = 100


@dataclass(slots=True)
class Condition:
    name: str
    passed: bool
    detail: str
    case_ids: list[str] = field(default_factory=list)
    group_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    waiver_ids: list[str] = field(default_factory=list)
    hidden: int = 0  # evidence the caller may not see

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "case_ids": self.case_ids,
            "group_ids": self.group_ids,
            "run_ids": self.run_ids,
            "waiver_ids": self.waiver_ids,
            "hidden": self.hidden,
        }


@dataclass(slots=True)
class GateResult:
    model: str
    version: str
    passed: bool
    conditions: list[Condition]

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "passed": self.passed,
            "conditions": [c.as_json() for c in self.conditions],
        }


def parse_policy(value: Any, path: str = "policy") -> GatePolicy:
    """A policy from its JSON/YAML data; every problem reported with its path."""
    try:
        return GatePolicy.model_validate(value or {})
    except ValidationError as exc:
        errors = validation_errors(exc, path)
        raise BadUserInput(f"invalid gate policy: {errors[0].message}", errors) from None


def load_policy_file(path: Path) -> GatePolicy:
    """YAML or JSON (JSON is YAML, but a .json file gets JSON's stricter parser).

    Every problem is one BadUserInput whose message names the file, the line and the field
    (`gate.yaml:4: suites.0.min_pass_rate: Input should be a valid number`): the policy is a
    file someone edits by hand."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadUserInput(
            f"{path}: cannot read the policy: {exc.strerror or exc}",
            [FieldError("policy", f"{path}: {exc.strerror or exc}")],
        ) from None
    except UnicodeDecodeError as exc:
        raise BadUserInput(
            f"{path}: the policy is not UTF-8 text (byte {exc.start})",
            [FieldError("policy", "not UTF-8 text")],
        ) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else _yaml(text)
    except _SyntaxError as exc:
        raise BadUserInput(
            f"{path}:{exc.line}: the policy is not valid YAML: {exc.reason}",
            [FieldError("policy", f"line {exc.line}: {exc.reason}")],
        ) from None
    except json.JSONDecodeError as exc:
        raise BadUserInput(
            f"{path}:{exc.lineno}: the policy is not valid JSON: {exc.msg} (column {exc.colno})",
            [FieldError("policy", f"line {exc.lineno}: {exc.msg}")],
        ) from None
    if data is not None and not isinstance(data, dict):
        raise BadUserInput(
            f"{path}:1: invalid gate policy: expected a mapping of block_severities, suites, "
            "latency",
            [FieldError("policy", "expected a mapping")],
        )
    try:
        return GatePolicy.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "policy"
        line = _line_of(text, first["loc"])
        where = f"{path}:{line}" if line else str(path)
        errors = validation_errors(exc, "policy")
        raise BadUserInput(f"{where}: {field}: {said(first)}", errors) from None


class _SyntaxError(ValueError):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        column = f" (column {mark.column + 1})" if mark is not None else ""
        raise _SyntaxError(line, f"{exc.problem or exc.context}{column}") from None
    except yaml.YAMLError as exc:
        raise _SyntaxError(1, " ".join(str(exc).split())) from None


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line of the entry at `loc` (a pydantic error's path): its key in a mapping, its
    item in a list; the deepest entry that exists when the path goes further (a missing
    field is reported at the object that lacks it). JSON is read as YAML for this."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for segment in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((kv for kv in node.value if kv[0].value == str(segment)), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(segment, int):
            if not 0 <= segment < len(node.value):
                break
            node = node.value[segment]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _sees_everything(viewer: Principal) -> bool:
    return viewer.team is None and viewer.clearance == Sensitivity.RESTRICTED


async def release_gate(
    session: AsyncSession,
    model: str,
    version: str,
    policy: GatePolicy,
    viewer: Principal,
    now: datetime | None = None,
) -> GateResult:
    now = now or utcnow()
    # As runs store them (trimmed): a blank version (an unset $VERSION in CI) is a mistake to
    # name, not a release to answer 'blocked: no run of m  on it' about.
    model, version = model.strip(), version.strip()
    errors = [
        FieldError(path, f"a {path} name of 1 to {limit} characters")
        for path, value, limit in (("model", model, 200), ("version", version, 100))
        if not 1 <= len(value) <= limit
    ]
    if errors:
        raise BadUserInput(f"invalid {errors[0].path}", errors)
    if model not in {m.name for m in await catalog.list_models(session)}:
        # An unknown model would pass every condition vacuously: a typo must not ship.
        raise NotFound(f"model {model} not found")
    conditions = [await _severity_condition(session, model, version, policy, viewer, now)]
    conditions += await _suite_conditions(session, model, version, policy, viewer)
    if policy.latency is not None:
        conditions.append(await _latency_condition(session, model, version, policy))
    conditions.append(await _escalation_condition(session, model, version, viewer))
    return GateResult(model, version, all(c.passed for c in conditions), conditions)


async def _severity_condition(
    session: AsyncSession,
    model: str,
    version: str,
    policy: GatePolicy,
    viewer: Principal,
    now: datetime,
) -> Condition:
    grades = "/".join(policy.block_severities) or "no severity"
    name = f"no open {grades} groups"
    if not policy.block_severities:
        return Condition(name, True, "the policy blocks on no severity")
    groups = await catalog.unresolved_groups_at(session, model, policy.block_severities)
    waivers = {
        w.group_id: w
        for w in await SafeguardsRepository(session).active_waivers(model, version, now)
    }
    blocking = [g for g in groups if g[0] not in waivers]
    waived = [waivers[g[0]].id for g in groups if g[0] in waivers]
    if _sees_everything(viewer):
        shown = blocking
    else:
        mine = {
            g[0]: g
            for g in await catalog.unresolved_groups_at(
                session, model, policy.block_severities, viewer
            )
        }
        shown = [mine[g[0]] for g in blocking if g[0] in mine]
    detail = f"{len(blocking)} open {grades} groups of {model}" + (
        f" ({len(waived)} more waived)" if waived else ""
    )
    return Condition(
        name,
        not blocking,
        detail,
        case_ids=[g[4] for g in shown[:MAX_EVIDENCE]],
        group_ids=[g[0] for g in shown[:MAX_EVIDENCE]],
        waiver_ids=sorted(waived),
        hidden=len(blocking) - len(shown),
    )


async def _suite_conditions(
    session: AsyncSession, model: str, version: str, policy: GatePolicy, viewer: Principal
) -> list[Condition]:
    rules = policy.suites
    if rules is None:
        rules = [SuiteRule(name=s.name) for s in await service.suites_of_model(session, model)]
    runs = await service.runs_of(session, model, version)
    return [await _suite_condition(session, model, version, rule, runs, viewer) for rule in rules]


async def _suite_condition(
    session: AsyncSession,
    model: str,
    version: str,
    rule: SuiteRule,
    runs: list[EvaluationRun],
    viewer: Principal,
) -> Condition:
    name = f"suite {rule.name} passes >= {rule.min_pass_rate:.0%}"
    try:
        snapshot = await service.get_suite(session, rule.name, rule.version)
    except NotFound as exc:
        return Condition(name, False, exc.message)
    if snapshot.model != model:
        return Condition(name, False, f"suite {rule.name} evaluates {snapshot.model}, not {model}")
    name = f"suite {rule.name} v{snapshot.version} passes >= {rule.min_pass_rate:.0%}"
    # The newest run on this exact suite version decides; older ones are history.
    run = next((r for r in runs if r.suite_version_id == snapshot.frozen.id), None)
    if run is None:
        return Condition(name, False, f"no evaluation run of {model} {version} on it")
    rate = run.passed / run.total if run.total else 0.0
    failing = []
    if run.passed < run.total:
        outcomes = await service.visible_outcomes(session, run, viewer)
        failing = [o.case_id for o in outcomes if o.outcome != "pass"]
    not_passed = run.total - run.passed
    return Condition(
        name,
        rate >= rule.min_pass_rate,
        f"{run.passed}/{run.total} passed ({rate:.1%}); "
        f"{run.failed} failed, {run.errored} errors, {run.not_run} not run",
        case_ids=failing[:MAX_EVIDENCE],
        run_ids=[run.id],
        hidden=max(0, not_passed - run.not_run - len(failing)),
    )


async def _latency_condition(
    session: AsyncSession, model: str, version: str, policy: GatePolicy
) -> Condition:
    budget = policy.latency
    assert budget is not None
    parts = [f"p{q} <= {v:g} ms" for q, v in (("50", budget.p50_ms), ("95", budget.p95_ms)) if v]
    name = "latency " + " and ".join(parts) if parts else "latency"
    # The newest run of each suite version on this model version.
    latest: dict[str, EvaluationRun] = {}
    for run in await service.runs_of(session, model, version):
        latest.setdefault(run.suite_version_id, run)
    measured = [r for r in latest.values() if r.latency_p95_ms is not None]
    if not measured:
        return Condition(name, False, f"no evaluation run of {model} {version} measured latency")
    over = [
        r
        for r in measured
        if (budget.p95_ms and r.latency_p95_ms > budget.p95_ms)
        or (budget.p50_ms and (r.latency_p50_ms or 0) > budget.p50_ms)
    ]
    worst = max(measured, key=lambda r: r.latency_p95_ms or 0)
    return Condition(
        name,
        not over,
        f"worst p95 {worst.latency_p95_ms:g} ms, p50 {worst.latency_p50_ms:g} ms "
        f"over {len(measured)} runs; {len(over)} over budget",
        run_ids=[r.id for r in (over or measured)][:MAX_EVIDENCE],
    )


async def _escalation_condition(
    session: AsyncSession, model: str, version: str, viewer: Principal
) -> Condition:
    from services.governance.escalation import service as escalation

    name = "no escalation block on this version"
    blocks = await escalation.active_blocks(session, model, version)
    if not blocks:
        return Condition(name, True, f"no release block in force on {model} {version}")
    rules = await escalation.rules_by_id(session, [b.rule_id for b in blocks])
    detail = "; ".join(f"{b.reason} (rule {rules[b.rule_id].name}, block {b.id})" for b in blocks)
    evidence = list(dict.fromkeys(i for b in blocks for i in b.case_ids))
    shown = evidence
    if not _sees_everything(viewer):
        seen = await catalog.visible_among(session, evidence, viewer)
        shown = [i for i in evidence if i in seen]
    return Condition(
        name,
        False,
        f"{len(blocks)} release block(s) on {model} {version}: {detail}",
        case_ids=shown[:MAX_EVIDENCE],
        hidden=len(evidence) - len(shown),
    )


# --- waivers --------------------------------------------------------------------------------
async def waive_group(session: AsyncSession, data: WaiverIn, actor: Principal) -> GateWaiver:
    """Let one open group through the gate until `expires_at`; the approver is the caller."""
    groups = await catalog.unresolved_groups_at(session, data.model, list(SEVERITIES), actor)
    if data.group_id not in {g[0] for g in groups}:
        raise NotFound(f"no open group {data.group_id} of model {data.model}")
    now = utcnow()
    # A second waiver of the same scope would outlive revoking the first: one at a time.
    for held in await SafeguardsRepository(session).active_waivers(data.model, data.version, now):
        if held.group_id == data.group_id and held.model_version == data.version:
            raise Conflict(
                f"group {data.group_id} already has waiver {held.id} in force for "
                f"{data.model}@{data.version or '*'} until {held.expires_at.isoformat()}; "
                "revoke it to change it"
            )
    waiver = GateWaiver(
        id=new_id(),
        model_name=data.model,
        group_id=data.group_id,
        model_version=data.version,
        reason=data.reason,
        approved_by=actor.subject,
        created_at=now,
        expires_at=data.expires_at,
    )
    session.add(waiver)
    await session.flush()
    # The reason is the reviewer's own justification, not captured payload: it is kept.
    audit(
        session,
        actor,
        "gate.waive",
        f"model:{data.model}@{data.version or '*'}",
        details={
            "waiver": waiver.id,
            "group": data.group_id,
            "reason": data.reason,
            "approver": actor.subject,
            "expires_at": waiver.expires_at.isoformat(),
        },
    )
    return waiver


async def revoke_waiver(session: AsyncSession, waiver_id: str, actor: Principal) -> GateWaiver:
    repo = SafeguardsRepository(session)
    waiver = await repo.get_waiver(waiver_id)
    if waiver is not None:
        # A waiver is seen with its group: a reviewer who cannot see the group (another
        # team's, above their clearance) may not revoke, nor learn of, its waivers.
        try:
            await catalog.get_visible_group(session, waiver.group_id, actor)
        except NotFound:
            waiver = None
    if waiver is None:
        raise NotFound(f"waiver {waiver_id} not found")
    if not await repo.revoke_waiver(waiver_id, utcnow(), actor.subject):
        raise Conflict(f"waiver {waiver_id} was already revoked")
    await session.refresh(waiver)
    audit(
        session,
        actor,
        "gate.revoke_waiver",
        f"model:{waiver.model_name}@{waiver.model_version or '*'}",
        details={"waiver": waiver.id, "group": waiver.group_id},
    )
    return waiver


async def active_waivers(
    session: AsyncSession,
    model: str,
    version: str,
    now: datetime | None = None,
    viewer: Principal | None = None,
) -> list[GateWaiver]:
    """The waivers in force; with `viewer`, only those of groups it may see (a waiver is seen
    with its group, as revoke_waiver answers). The gate itself counts every waiver."""
    found = await SafeguardsRepository(session).active_waivers(model, version, now or utcnow())
    if viewer is None:
        return found
    seen = set()
    for group_id in {w.group_id for w in found}:  # a version has a few waivers
        try:
            await catalog.get_visible_group(session, group_id, viewer)
        except NotFound:
            continue
        seen.add(group_id)
    return [w for w in found if w.group_id in seen]
