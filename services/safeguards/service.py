"""The safeguards' operations and rules: the only entry point other packages call.

Cases and groups are read only through the catalog's service (which applies visibility), saved
queries are resolved only through the search service. Functions flush; the boundary commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import service as catalog
from services.safeguards.metrics import (
    FAILING,
    Tally,
    false_alarm_rate,
    percentile,
    tally_by,
)
from services.safeguards.models import (
    EvaluationOutcome,
    EvaluationRun,
    ResolutionProposal,
    Suite,
    SuiteCase,
    SuiteVersion,
    SyntheticScenario,
)
from services.safeguards.perturb import Perturbation, perturb, rng_for
from services.safeguards.repository import SafeguardsRepository, SuiteFacts
from services.safeguards.schemas import (
    MAX_SCENARIOS,
    MAX_SUITE_CASES,
    RunIn,
    ScenarioRequest,
    SuiteCreate,
)
from shared.audit import audit
from shared.db import Database, utcnow
from shared.errors import BadUserInput, Conflict, FieldError, NotFound, PayloadTooLarge
from shared.ids import new_id, stable_id
from shared.jsonutil import sha256_hex
from shared.security import Principal

# Cases checked for visibility (and frozen) per catalog round trip.
CHUNK = 5_000
# Export lines per database page: big enough to amortize the round trips, small enough that
# a 100,000-case suite never sits in memory.
EXPORT_PAGE = 5_000
SEARCH_PAGE = 500
MAX_LISTED_ERRORS = 100
MAX_VERSION_NUMBER = 2**31 - 1


@dataclass(slots=True)
class SuiteSnapshot:
    """A suite at one of its versions: what `suite(name, version)` answers."""

    suite: Suite
    frozen: SuiteVersion
    created: bool = False  # True when this call froze a new version

    @property
    def name(self) -> str:
        return self.suite.name

    @property
    def model(self) -> str:
        return self.suite.model_name

    @property
    def version(self) -> int:
        return self.frozen.version

    @property
    def latest_version(self) -> int:
        return self.suite.latest_version

    @property
    def case_count(self) -> int:
        return self.frozen.case_count

    @property
    def query(self) -> str | None:
        return self.frozen.query

    @property
    def digest(self) -> str:
        return self.frozen.digest

    @property
    def created_at(self) -> datetime:
        return self.frozen.created_at

    @property
    def created_by(self) -> str:
        return self.frozen.created_by


async def visible_ids(session: AsyncSession, ids: Sequence[str], viewer: Principal) -> set[str]:
    """The ids among `ids` that `viewer` may see now (the catalog's rule, applied per chunk)."""
    out: set[str] = set()
    for i in range(0, len(ids), CHUNK):
        out.update(await catalog.visible_among(session, list(ids[i : i + CHUNK]), viewer))
    return out


# --- suites ---------------------------------------------------------------------------------
async def create_suite(
    session: AsyncSession, data: SuiteCreate, actor: Principal, search: Any = None
) -> SuiteSnapshot:
    """Freeze the selection as the suite's next version; an unchanged selection (same cases at
    the same revisions) answers the latest version instead of numbering a copy."""
    if (data.query is None) == (data.case_ids is None):
        raise BadUserInput(
            "a suite is made from a query or from case ids",
            [FieldError("query", "give exactly one of query and caseIds")],
        )
    repo = SafeguardsRepository(session)
    suite = await repo.suite_by_name(data.name, for_update=True)
    if suite is not None and suite.model_name != data.model:
        raise Conflict(f"suite {data.name} exists for model {suite.model_name}")
    if data.query is not None:
        ids = await _ids_from_query(search, actor, data.model, data.query)
        cases = await _frozen_cases(session, ids, data.model, actor, strict=False)
        path = "query"
    else:
        ids = list(dict.fromkeys(data.case_ids or []))
        cases = await _frozen_cases(session, ids, data.model, actor, strict=True)
        path = "caseIds"
    if not cases:
        # Said of what was given: "no case of model M found" read as if M had none.
        if path == "caseIds" and not ids:
            why = "no case id given"
        elif path == "query" and data.query and data.query.strip():
            why = f"the query finds no case of model {data.model}"
        else:
            why = f"no case of model {data.model} found"
        raise BadUserInput("the suite would be empty", [FieldError(path, why)])
    if data.include_scenarios:
        cases = await _with_scenarios(repo, cases)
    digest = sha256_hex(
        "".join(f"{c['case_id']}:{c['revision']}:{c['content_hash']}\n" for c in cases).encode()
    )
    now = utcnow()
    if suite is None:
        suite = Suite(
            id=new_id(),
            name=data.name,
            model_name=data.model,
            query=data.query,
            latest_version=0,
            created_at=now,
            created_by=actor.subject,
        )
        if not await repo.add_suite(suite):
            raise Conflict(f"suite {data.name} was created concurrently; retry")
    else:
        latest = await repo.suite_version(suite.id, suite.latest_version)
        if latest is not None and latest.digest == digest and latest.query == data.query:
            return SuiteSnapshot(suite, latest)
    frozen = SuiteVersion(
        id=new_id(),
        suite_id=suite.id,
        version=suite.latest_version + 1,
        query=data.query,
        case_count=len(cases),
        digest=digest,
        created_at=now,
        created_by=actor.subject,
    )
    session.add(frozen)
    await session.flush()
    for position, row in enumerate(cases):
        row["suite_version_id"], row["position"] = frozen.id, position
    await repo.insert(SuiteCase, cases)
    await repo.set_latest_version(suite.id, frozen.version)
    suite.latest_version = frozen.version
    audit(
        session,
        actor,
        "suites.create",
        f"suite:{suite.name}@{frozen.version}",
        details={"model": suite.model_name, "cases": len(cases), "from": path},
    )
    return SuiteSnapshot(suite, frozen, created=True)


async def _with_scenarios(
    repo: SafeguardsRepository, cases: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each case followed by its synthetic scenarios, graded as their parent."""
    variants: dict[str, list[SyntheticScenario]] = {}
    for scenario in await repo.scenarios_of([c["case_id"] for c in cases]):
        variants.setdefault(scenario.parent_case_id, []).append(scenario)
    out = []
    for case in cases:
        out.append(case)
        out.extend(
            {
                **case,
                "case_id": v.id,
                "parent_case_id": case["case_id"],
                "content_hash": sha256_hex(v.input_json.encode()),
                "input_json": v.input_json,
                "expected": v.expected,
            }
            for v in variants.get(case["case_id"], [])
        )
    if len(out) > MAX_SUITE_CASES:
        raise PayloadTooLarge(
            f"with its scenarios the suite would hold {len(out)} cases",
            [FieldError("includeScenarios", f"max_suite_cases={MAX_SUITE_CASES}")],
        )
    return out


async def _ids_from_query(search: Any, actor: Principal, model: str, query: str) -> list[str]:
    """Every hit of the saved query for `model`, as the caller's visibility lets it search."""
    from services.search.request import SearchFilter

    if search is None:
        raise BadUserInput("search is not available here", [FieldError("query", "use caseIds")])
    ids: list[str] = []
    after = None
    while True:
        result = await search.search(
            actor,
            query,
            filter=SearchFilter(model=[model]),
            first=SEARCH_PAGE,
            after=after,
            sort="occurred_at",
        )
        ids.extend(hit.id for hit in result.hits)
        if len(ids) > MAX_SUITE_CASES:
            raise PayloadTooLarge(
                f"the query matches more than {MAX_SUITE_CASES} cases",
                [FieldError("query", f"max_suite_cases={MAX_SUITE_CASES}; narrow the query")],
            )
        if not result.next_cursor:
            # The index follows the catalog: the catalog's current state decides below.
            return sorted(set(ids))
        after = result.next_cursor


async def _frozen_cases(
    session: AsyncSession, ids: list[str], model: str, actor: Principal, *, strict: bool
) -> list[dict[str, Any]]:
    """The suite rows of `ids` in order, read through the catalog as `actor` sees them now.
    strict: a missing, hidden or other-model id is an error (an explicit list); otherwise it
    is left out (a query's hits, which the index may report a moment late)."""
    if len(ids) > MAX_SUITE_CASES:
        raise PayloadTooLarge(
            f"{len(ids)} cases is more than the limit of {MAX_SUITE_CASES} per suite",
            [FieldError("caseIds", f"max_suite_cases={MAX_SUITE_CASES}")],
        )
    found: dict[str, Any] = {}
    for i in range(0, len(ids), CHUNK):
        for case in await catalog.get_cases(session, ids[i : i + CHUNK], actor):
            found[case.id] = case
    model_names = {
        m.id: m.name
        for m in await catalog.models_by_id(session, list({c.model_id for c in found.values()}))
    }
    errors, rows = [], []
    for index, case_id in enumerate(ids):
        case = found.get(case_id)
        if case is None:
            errors.append(FieldError(f"caseIds.{index}", f"case {case_id} not found"))
            continue
        if model_names.get(case.model_id) != model:
            errors.append(
                FieldError(
                    f"caseIds.{index}",
                    f"case {case_id} is of model {model_names.get(case.model_id)}, not {model}",
                )
            )
            continue
        rows.append(
            {
                "case_id": case.id,
                "group_id": case.group_id,
                "revision": case.revision,
                "content_hash": case.content_hash,
                "failure_mode": case.failure_mode,
                "severity": case.severity,
                "parent_case_id": None,
                "input_json": orjson.dumps(case.input).decode(),
                "expected": case.expected,
            }
        )
    if errors and strict:
        raise BadUserInput(
            f"{_counted(len(errors), 'case id')} cannot be in the suite: {errors[0].message}",
            errors[:MAX_LISTED_ERRORS],
        )
    return rows


def parse_suite_version(text: str) -> int | None:
    """A version as a URL gives it: `latest` (None) or a number from 1. ASCII digits only:
    str.isdigit() also accepts '²', which int() refuses."""
    if text == "latest":
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise BadUserInput(
            "invalid suite version", [FieldError("version", "a number from 1, or latest")]
        )
    return int(text)


def parse_suite_cursor(text: str | None) -> int:
    """The position a page of a suite's cases starts after (-1: from the start)."""
    if text is None:
        return -1
    if not (text.isascii() and text.isdigit()):
        raise BadUserInput("invalid cursor", [FieldError("after", "not a suite cursor")])
    return int(text)


async def get_suite(session: AsyncSession, name: str, version: int | None = None) -> SuiteSnapshot:
    if version is not None and version < 1:
        # 0 used to answer the latest version, and -1 'no version -1': neither is a version.
        raise BadUserInput(
            f"invalid suite version {version}",
            [FieldError("version", "a number from 1; omit it for the latest")],
        )
    repo = SafeguardsRepository(session)
    suite = await repo.suite_by_name(name) if "\x00" not in name else None
    if suite is None:
        raise NotFound(f"suite {name} not found")
    number = version or suite.latest_version
    # Versions are 32-bit in the database: a larger number is no version, not a refused value.
    frozen = await repo.suite_version(suite.id, number) if number <= MAX_VERSION_NUMBER else None
    if frozen is None:
        raise NotFound(f"suite {name} has no version {number} (latest: {suite.latest_version})")
    return SuiteSnapshot(suite, frozen)


async def suites_of_model(session: AsyncSession, model: str) -> list[SuiteSnapshot]:
    if "\x00" in model:
        return []  # no name holds NUL (inputs refuse it); Postgres would refuse the query
    repo = SafeguardsRepository(session)
    out = []
    for suite in await repo.suites_of_model(model):
        frozen = await repo.suite_version(suite.id, suite.latest_version)
        if frozen is not None:
            out.append(SuiteSnapshot(suite, frozen))
    return out


async def suite_cases(
    session: AsyncSession, snapshot: SuiteSnapshot, viewer: Principal, first: int, after: int
) -> tuple[list[SuiteCase], bool]:
    """A page of the version's frozen cases that `viewer` may see now, in frozen order; the
    bool says whether more follow. Hidden cases are skipped, never shown as placeholders."""
    repo = SafeguardsRepository(session)
    out: list[SuiteCase] = []
    cursor = min(after, MAX_SUITE_CASES)  # no position lies past it (and the column is 32-bit)
    while len(out) <= first:
        page = await repo.suite_cases(snapshot.frozen.id, cursor, CHUNK)
        if not page:
            return out, False
        seen = await visible_ids(session, [c.parent_case_id or c.case_id for c in page], viewer)
        out.extend(c for c in page if (c.parent_case_id or c.case_id) in seen)
        cursor = page[-1].position
    return out[:first], True


def export_line(snapshot: SuiteSnapshot, row: tuple[Any, ...]) -> bytes:
    """One JSONL line: input and expected spliced in as the JSON text the database holds
    (one line: JSON text never holds a raw newline), the rest encoded here."""
    position, case_id, parent_id, failure_mode, severity, input_text, expected_text = row
    return b"".join(
        (
            b'{"case_id":',
            orjson.dumps(case_id),
            b',"input":',
            (input_text or "null").encode(),
            b',"expected":',
            (expected_text or "null").encode(),
            b',"failure_mode":',
            orjson.dumps(failure_mode),
            b',"severity":',
            orjson.dumps(severity),
            b',"synthetic":',
            b"false" if parent_id is None else b"true",
            b',"parent_case_id":',
            orjson.dumps(parent_id),
            b',"suite":',
            orjson.dumps(snapshot.name),
            b',"suite_version":',
            str(snapshot.version).encode(),
            b',"position":',
            str(position).encode(),
            b"}\n",
        )
    )


async def export_suite(
    db: Database, name: str, version: int | None, viewer: Principal
) -> tuple[SuiteSnapshot, AsyncIterator[bytes]]:
    """The version's visible cases as JSONL, read page by page in one read transaction of its
    own (the response outlives the request's unit of work): never the whole suite in memory.
    The suite is looked up first, so a missing one is a 404 before any byte is sent."""
    async with db.transaction() as session:
        snapshot = await get_suite(session, name, version)

    async def lines() -> AsyncIterator[bytes]:
        async with db.transaction() as session:
            repo = SafeguardsRepository(session)

            async def page(after: int) -> tuple[list[tuple[Any, ...]], set[str]]:
                rows = await repo.suite_case_rows(snapshot.frozen.id, after, EXPORT_PAGE)
                owners = list({r[2] or r[1] for r in rows})
                return rows, await catalog.visible_among(session, owners, viewer) if rows else set()

            # The next page is read while this one is encoded and sent: the session is only
            # ever used by that one task at a time.
            pending = asyncio.ensure_future(page(-1))
            try:
                while True:
                    rows, seen = await pending
                    if not rows:
                        return
                    pending = asyncio.ensure_future(page(rows[-1][0]))
                    chunk = b"".join(
                        export_line(snapshot, r) for r in rows if (r[2] or r[1]) in seen
                    )
                    if chunk:
                        yield chunk
            finally:
                if not pending.done():  # the client went away mid-stream
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending

    return snapshot, lines()


# --- synthetic scenarios ---------------------------------------------------------------------
async def generate_scenarios(
    session: AsyncSession, data: ScenarioRequest, actor: Principal
) -> list[SyntheticScenario]:
    """Seeded variants of each case's input per perturbation; the same request answers the
    same scenarios (and stores nothing twice). A perturbation with nothing to change in an
    input (no text for typos, no number for noise) yields no variant of it."""
    if (data.case_ids is None) == (data.suite is None):
        raise BadUserInput(
            "scenarios are made from case ids or from a suite",
            [FieldError("caseIds", "give exactly one of caseIds and suite")],
        )
    if data.suite is None and data.suite_version is not None:
        # It would be ignored: the scenarios are of the cases given, whatever the version.
        raise BadUserInput(
            "suiteVersion without suite",
            [FieldError("suiteVersion", "a version of the suite given as suite")],
        )
    repo = SafeguardsRepository(session)
    if data.suite is not None:
        snapshot = await get_suite(session, data.suite, data.suite_version)
        facts = await repo.suite_case_facts(snapshot.frozen.id)
        ids, strict = [f.case_id for f in facts if f.parent_case_id is None], False
    else:
        ids, strict = list(dict.fromkeys(data.case_ids or [])), True
    wanted = len(ids) * len(data.perturbations) * data.variants
    if wanted > MAX_SCENARIOS:
        raise PayloadTooLarge(
            f"{wanted} variants is more than the limit of {MAX_SCENARIOS} per request",
            [FieldError("variants", f"max_scenarios={MAX_SCENARIOS}")],
        )
    found: dict[str, Any] = {}
    for i in range(0, len(ids), CHUNK):
        for case in await catalog.get_cases(session, ids[i : i + CHUNK], actor):
            found[case.id] = case
    missing = [
        FieldError(f"caseIds.{n}", f"case {i} not found")
        for n, i in enumerate(ids)
        if i not in found
    ]
    if missing and strict:
        raise BadUserInput(_counted(len(missing), "case", "not found"), missing[:MAX_LISTED_ERRORS])
    now, rows = utcnow(), []
    for case_id in (i for i in ids if i in found):
        case = found[case_id]
        original = orjson.dumps(case.input)
        for perturbation in data.perturbations:
            tolerance = data.tolerance if perturbation is Perturbation.NUMERIC_NOISE else None
            for variant in range(data.variants):
                rng = rng_for(data.seed, case_id, perturbation.value, variant)
                text = orjson.dumps(perturb(case.input, perturbation, rng, data.tolerance))
                if text == original:
                    continue
                key = f"scenario:{case_id}:{perturbation.value}:{data.seed}:{variant}:{tolerance}"
                rows.append(
                    {
                        "id": stable_id(key),
                        "parent_case_id": case_id,
                        "perturbation": perturbation.value,
                        "seed": data.seed,
                        "variant": variant,
                        "tolerance": tolerance,
                        "input_json": text.decode(),
                        "expected": case.expected,
                        "created_at": now,
                        "created_by": actor.subject,
                    }
                )
    await repo.insert_scenarios(rows)
    audit(
        session,
        actor,
        "scenarios.generate",
        f"suite:{data.suite}" if data.suite is not None else None,
        details={
            "cases": len(found),
            "scenarios": len(rows),
            "perturbations": [p.value for p in data.perturbations],
            "seed": data.seed,
        },
    )
    stored = {s.id: s for s in await repo.scenarios_by_id([r["id"] for r in rows])}
    return [stored[r["id"]] for r in rows]


async def scenarios_of_case(
    session: AsyncSession, case_id: str, viewer: Principal
) -> list[SyntheticScenario]:
    if not await visible_ids(session, [case_id], viewer):
        raise NotFound(f"case {case_id} not found")
    return await SafeguardsRepository(session).scenarios_of([case_id])


# --- evaluation runs ------------------------------------------------------------------------
async def record_run(session: AsyncSession, data: RunIn, actor: Principal) -> EvaluationRun:
    """Store the outcomes of a model version on a suite version, compute its figures once, and
    propose resolving each group whose every case passed."""
    repo = SafeguardsRepository(session)
    snapshot = await get_suite(session, data.suite, data.suite_version)
    if snapshot.model != data.model:
        raise BadUserInput(
            f"suite {data.suite} is for model {snapshot.model}",
            [FieldError("model", f"suite {data.suite} evaluates {snapshot.model}")],
        )
    frozen = await repo.suite_case_facts(snapshot.frozen.id)
    # A case retention purged whole (and its scenarios) is no longer a member: not counted,
    # not reportable (RETENTION.md).
    owner_ids = list({c.owner for c in frozen})
    purged: set[str] = set()
    for i in range(0, len(owner_ids), CHUNK):
        purged |= await catalog.purged_among(session, owner_ids[i : i + CHUNK])
    frozen = [c for c in frozen if c.owner not in purged]
    by_case = {c.case_id: c for c in frozen}
    owners = await visible_ids(session, list({c.owner for c in frozen}), actor)
    seen = {c.case_id for c in frozen if c.owner in owners}
    errors, reported = [], set()
    for i, outcome in enumerate(data.outcomes):
        if outcome.case_id in reported:
            errors.append(FieldError(f"outcomes.{i}.caseId", f"{outcome.case_id} reported twice"))
        elif outcome.case_id not in seen:
            # The same answer for a hidden case as for a stranger: nothing leaks.
            errors.append(
                FieldError(
                    f"outcomes.{i}.caseId",
                    f"{outcome.case_id} is not a case of suite {data.suite} v{snapshot.version}",
                )
            )
        reported.add(outcome.case_id)
    if errors:
        said = f"{_counted(len(errors), 'invalid outcome')}: {errors[0].message}"
        raise BadUserInput(said, errors[:MAX_LISTED_ERRORS])
    await catalog.register_model_version(session, {"model": data.model, "version": data.version})
    outcome_of = {o.case_id: o.outcome.value for o in data.outcomes}
    overall = Tally()
    for case in frozen:
        overall.add(outcome_of.get(case.case_id))
    latencies = [o.latency_ms for o in data.outcomes if o.latency_ms is not None]
    rate, positive = false_alarm_rate(
        (
            (by_case[o.case_id].expected, o.prediction)
            for o in data.outcomes
            if o.outcome.value != "error" and o.prediction is not None
        ),
        data.positive_label,
    )
    run = EvaluationRun(
        id=new_id(),
        model_name=data.model,
        model_version=data.version,
        suite_version_id=snapshot.frozen.id,
        total=overall.total,
        passed=overall.passed,
        failed=overall.failed,
        errored=overall.errored,
        not_run=overall.not_run,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        false_alarm_rate=rate,
        positive_label=positive,
        metrics={
            key: {
                value: t.as_json()
                for value, t in tally_by(
                    (getattr(c, key), outcome_of.get(c.case_id)) for c in frozen
                ).items()
            }
            for key in ("failure_mode", "severity")
        },
        created_at=utcnow(),
        created_by=actor.subject,
    )
    session.add(run)
    await session.flush()
    await repo.insert(
        EvaluationOutcome,
        [
            {
                "run_id": run.id,
                "case_id": o.case_id,
                "outcome": o.outcome.value,
                "latency_ms": o.latency_ms,
                "prediction": o.prediction,
                "error": o.error,
            }
            for o in data.outcomes
        ],
    )
    proposed = await _propose_resolutions(session, repo, run, frozen, outcome_of)
    audit(
        session,
        actor,
        "runs.record",
        f"run:{run.id}",
        details={
            "model": run.model_name,
            "version": run.model_version,
            "suite": f"{snapshot.name}@{snapshot.version}",
            "total": run.total,
            "passed": run.passed,
            "failed": run.failed,
            "errored": run.errored,
            "proposals": proposed,
        },
    )
    return run


async def _propose_resolutions(
    session: AsyncSession,
    repo: SafeguardsRepository,
    run: EvaluationRun,
    frozen: list[SuiteFacts],
    outcome_of: dict[str, str],
) -> int:
    """A group is proposed for resolution in the run's version when the suite holds every one
    of its cases (the group's count) and all of them passed."""
    members: dict[str, list[str]] = {}
    for case in frozen:
        if case.parent_case_id is None:  # a scenario is no case of the group
            members.setdefault(case.group_id, []).append(case.case_id)
    passing = [g for g, ids in members.items() if all(outcome_of.get(i) == "pass" for i in ids)]
    rows = []
    for group in await catalog.groups_by_id(session, passing):
        if group.status == "resolved" or group.case_count != len(members[group.id]):
            continue
        rows.append(
            {
                "id": new_id(),
                "run_id": run.id,
                "group_id": group.id,
                "model_name": run.model_name,
                "model_version": run.model_version,
                "case_count": group.case_count,
                "status": "proposed",
                "created_at": run.created_at,
            }
        )
    await repo.insert(ResolutionProposal, rows)
    return len(rows)


async def latest_run_on_suite(
    session: AsyncSession, model: str, version: str, suite: str
) -> EvaluationRun | None:
    """The newest run of a model version on the suite's latest version (what plans measure)."""
    snapshot = await get_suite(session, suite)
    runs = await SafeguardsRepository(session).runs_of(model, version)
    return next((r for r in runs if r.suite_version_id == snapshot.frozen.id), None)


async def run_figures(session: AsyncSession, run: EvaluationRun) -> dict[str, float | None]:
    """A run's headline figures; `stability` is the pass rate over its synthetic scenarios
    (None when the suite holds none)."""
    repo = SafeguardsRepository(session)
    synthetic = {
        f.case_id for f in await repo.suite_case_facts(run.suite_version_id) if f.parent_case_id
    }
    stability = None
    if synthetic:
        passed = sum(
            1 for o in await repo.outcomes(run.id) if o.case_id in synthetic and o.outcome == "pass"
        )
        stability = passed / len(synthetic)
    return {
        "pass_rate": run.passed / run.total if run.total else None,
        "false_alarm_rate": run.false_alarm_rate,
        "latency_p95_ms": run.latency_p95_ms,
        "stability": stability,
    }


async def get_run(session: AsyncSession, run_id: str) -> EvaluationRun:
    run = await SafeguardsRepository(session).get_run(run_id) if "\x00" not in run_id else None
    if run is None:
        raise NotFound(f"evaluation run {run_id} not found")
    return run


async def runs_of(session: AsyncSession, model: str, version: str) -> list[EvaluationRun]:
    if "\x00" in model + version:
        return []
    return await SafeguardsRepository(session).runs_of(model, version)


async def snapshots_by_version_id(
    session: AsyncSession, version_ids: Sequence[str]
) -> list[SuiteSnapshot]:
    """Suites at the versions given (what runs point at): two queries, whatever the count."""
    repo = SafeguardsRepository(session)
    frozen = await repo.suite_versions_by_id(list(version_ids))
    suites = {s.id: s for s in await repo.suites_by_id(list({v.suite_id for v in frozen}))}
    return [SuiteSnapshot(suites[v.suite_id], v) for v in frozen]


async def suites_containing(
    session: AsyncSession, case_ids: Sequence[str]
) -> dict[str, list[SuiteSnapshot]]:
    """The suite versions each case is frozen into, by suite name then version: three
    queries, whatever the number of cases (the caller has already been allowed the cases)."""
    pairs = await SafeguardsRepository(session).versions_containing(list(case_ids))
    snapshots = {
        s.frozen.id: s for s in await snapshots_by_version_id(session, {v for _, v in pairs})
    }
    found: dict[str, list[SuiteSnapshot]] = {}
    for case_id, version_id in pairs:
        found.setdefault(case_id, []).append(snapshots[version_id])
    for snaps in found.values():
        snaps.sort(key=lambda s: (s.suite.name, s.frozen.version))
    return found


async def visible_outcomes(
    session: AsyncSession, run: EvaluationRun, viewer: Principal
) -> list[EvaluationOutcome]:
    repo = SafeguardsRepository(session)
    outcomes = await repo.outcomes(run.id)
    owner = {c.case_id: c.owner for c in await repo.suite_case_facts(run.suite_version_id)}
    seen = await visible_ids(session, list(set(owner.values())), viewer)
    return sorted(
        (o for o in outcomes if owner.get(o.case_id, o.case_id) in seen), key=lambda o: o.case_id
    )


async def proposals_of(session: AsyncSession, run: EvaluationRun) -> list[ResolutionProposal]:
    return await proposals_of_runs(session, [run.id])


async def visible_proposals(
    session: AsyncSession,
    run: EvaluationRun,
    proposals: list[ResolutionProposal],
    viewer: Principal,
) -> list[ResolutionProposal]:
    """The proposals whose group has a case `viewer` may see (a group shows only then)."""
    repo = SafeguardsRepository(session)
    members = {
        p.group_id: await repo.suite_case_ids_of_group(run.suite_version_id, p.group_id)
        for p in proposals
    }
    seen = await visible_ids(session, [i for ids in members.values() for i in ids], viewer)
    return [p for p in proposals if seen.intersection(members[p.group_id])]


async def proposals_of_runs(
    session: AsyncSession, run_ids: Sequence[str]
) -> list[ResolutionProposal]:
    return await SafeguardsRepository(session).proposals_of_runs(run_ids)


# Slices read from the frozen suite rows; any other field is read from the case now.
FROZEN_SLICES = ("failure_mode", "severity")
CASE_SLICES = ("team", "status", "sensitivity", "failure_mode_parent", "tags", "model_version")
PREFIX_SLICES = ("environment.", "input.", "signals.")


async def run_slices(
    session: AsyncSession, run: EvaluationRun, field_name: str, viewer: Principal
) -> dict[str, Tally]:
    """Outcomes per value of `field_name` over the suite's cases `viewer` may see (a case not
    run counts against its slice, as against the whole)."""
    if not (
        field_name in FROZEN_SLICES
        or field_name in CASE_SLICES
        # A prefix with its key: "input." alone answered one "(none)" slice of every case.
        or (
            field_name.startswith(PREFIX_SLICES)
            and field_name.count(".") == 1
            and not field_name.endswith(".")
        )
    ):
        raise BadUserInput(
            f"cannot slice by {field_name}",
            [
                FieldError(
                    "by",
                    "one of "
                    + ", ".join(FROZEN_SLICES + CASE_SLICES)
                    + " or environment.KEY, input.KEY, signals.KEY",
                )
            ],
        )
    repo = SafeguardsRepository(session)
    frozen = await repo.suite_case_facts(run.suite_version_id)
    outcome_of = {o.case_id: o.outcome for o in await repo.outcomes(run.id)}
    cases: dict[str, Any] = {}
    ids = list({c.owner for c in frozen})
    for i in range(0, len(ids), CHUNK):
        for case in await catalog.get_cases(session, ids[i : i + CHUNK], viewer):
            cases[case.id] = case
    versions: dict[str, str] = {}
    if field_name == "model_version":
        found = await catalog.model_versions_by_id(
            session, list({c.model_version_id for c in cases.values()})
        )
        versions = {v.id: v.version for v in found}
    pairs: list[tuple[Any, str | None]] = []
    for row in frozen:
        case = cases.get(row.owner)
        if case is None:
            continue
        outcome = outcome_of.get(row.case_id)
        if field_name in FROZEN_SLICES:
            pairs.append((getattr(row, field_name), outcome))
        elif field_name == "tags":
            pairs.extend((tag, outcome) for tag in case.tags or [None])
        elif field_name == "model_version":
            pairs.append((versions.get(case.model_version_id), outcome))
        elif field_name in CASE_SLICES:
            pairs.append((getattr(case, field_name), outcome))
        else:
            column, key = field_name.split(".", 1)
            value = getattr(case, column) or {}
            pairs.append((value.get(key) if isinstance(value, dict) else None, outcome))
    return tally_by(pairs)


@dataclass(slots=True)
class Change:
    case_id: str
    failure_mode: str | None
    before: str | None
    after: str | None


@dataclass(slots=True)
class Comparison:
    a: EvaluationRun
    b: EvaluationRun
    fixed: list[Change] = field(default_factory=list)
    regressed: list[Change] = field(default_factory=list)
    still_failing: list[Change] = field(default_factory=list)
    only_in_a: int = 0
    only_in_b: int = 0


async def compare_runs(
    session: AsyncSession, a_id: str, b_id: str, viewer: Principal
) -> Comparison:
    """Cases reported in both runs: fixed (failing in a, passing in b), regressed (passing in a,
    failing in b), still failing; over the cases `viewer` may see."""
    repo = SafeguardsRepository(session)
    a, b = await get_run(session, a_id), await get_run(session, b_id)
    before = {o.case_id: o.outcome for o in await repo.outcomes(a.id)}
    after = {o.case_id: o.outcome for o in await repo.outcomes(b.id)}
    modes: dict[str, str | None] = {}
    owner: dict[str, str] = {}
    for version_id in {a.suite_version_id, b.suite_version_id}:
        for fact in await repo.suite_case_facts(version_id):
            modes[fact.case_id], owner[fact.case_id] = fact.failure_mode, fact.owner
    reported = set(before) | set(after)
    visible = await visible_ids(session, sorted({owner.get(i, i) for i in reported}), viewer)
    out = Comparison(a, b)
    for case_id in sorted(i for i in reported if owner.get(i, i) in visible):
        was, now = before.get(case_id), after.get(case_id)
        if was is None or now is None:
            out.only_in_a += now is None
            out.only_in_b += was is None
            continue
        change = Change(case_id, modes.get(case_id), was, now)
        if was in FAILING and now == "pass":
            out.fixed.append(change)
        elif was == "pass" and now in FAILING:
            out.regressed.append(change)
        elif was in FAILING and now in FAILING:
            out.still_failing.append(change)
    return out


async def accept_resolution(
    session: AsyncSession, proposal_id: str, actor: Principal
) -> ResolutionProposal:
    """A reviewer accepts a proposal: the catalog resolves the group in the run's version."""
    repo = SafeguardsRepository(session)
    proposal = await repo.get_proposal(proposal_id)
    if proposal is not None:
        run = await get_run(session, proposal.run_id)
        ids = await repo.suite_case_ids_of_group(run.suite_version_id, proposal.group_id)
        if not await visible_ids(session, ids, actor):
            proposal = None  # a group the reviewer cannot see is, to them, absent
    if proposal is None:
        raise NotFound(f"resolution proposal {proposal_id} not found")
    if proposal.status != "proposed":
        raise Conflict(f"proposal {proposal_id} was already {proposal.status}")
    # Another run's proposal for the group may have been accepted since: this one is stale,
    # and accepting it would move the group's resolution to a later version.
    [group] = await catalog.groups_by_id(session, [proposal.group_id])
    if group.status == "resolved":
        raise Conflict(
            f"group {group.id} was already resolved in version {group.resolved_in_version}"
        )
    await catalog.resolve_group(session, proposal.group_id, proposal.model_version, actor)
    now = utcnow()
    if not await repo.decide_proposal(proposal.id, "accepted", now, actor.subject):
        raise Conflict(f"proposal {proposal_id} was decided concurrently")
    await session.refresh(proposal)
    audit(
        session,
        actor,
        "resolutions.accept",
        f"group:{proposal.group_id}",
        details={
            "proposal": proposal.id,
            "run": proposal.run_id,
            "version": proposal.model_version,
        },
    )
    return proposal


async def purge_case_copies(session: AsyncSession, case_ids: list[str]) -> None:
    """Retention purged these cases' payload (or the whole cases): the copies suites,
    scenarios and runs keep of it go too (services/governance/RETENTION.md)."""
    repo = SafeguardsRepository(session)
    for i in range(0, len(case_ids), CHUNK):
        await repo.clear_case_copies(case_ids[i : i + CHUNK])


def _counted(n: int, noun: str, after: str = "") -> str:
    """'1 case not found', '3 cases not found'."""
    return " ".join(filter(None, (f"{n} {noun}{'' if n == 1 else 's'}", after)))
