"""A case purged whole is no evidence and no suite member (RETENTION.md, "A tombstone is not
a live case"), on both backends: the catalog's batch reads (`get_cases`, `visible_among`)
leave it out, so suites, runs and plans built on them do."""

from __future__ import annotations

import secrets

import pytest

from services.catalog import service as catalog
from services.governance.retention import service
from services.plans import service as plans
from services.plans.schemas import RetrainingPlanIn
from services.safeguards import service as safeguards
from services.safeguards.schemas import RunIn, SuiteCreate
from shared.errors import BadUserInput
from shared.security import SYSTEM, Principal
from tests.governance.retention.helpers import corpus_cases, ingest_cases, later

ADMIN = Principal(
    "admin-1",
    "c-admin",
    scopes=frozenset({"admin", "cases:read", "evals:write", "plans:write"}),
    name="admin",
)


async def _purge_whole(db, source: str) -> list[str]:
    async with db.transaction() as s:
        await service.set_retention_policy(
            s,
            {"data_source": source, "sensitivity": "internal", "case_ttl_days": 10},
            ADMIN,
        )
    report = await service.run(db, now=later(11))
    [mine] = [p for p in report.policies if p.data_source == source]
    return mine.cases_purged


async def test_a_purged_case_is_no_suite_member_and_no_plan_evidence(stack):
    cases = corpus_cases(3)
    model, source = cases[0]["model"]["name"], cases[0]["data_source"]
    ids = await ingest_cases(stack.db, cases)
    suite = f"ret-suite-{secrets.token_hex(3)}"
    async with stack.db.transaction() as s:
        await safeguards.create_suite(s, SuiteCreate(name=suite, model=model, case_ids=ids), ADMIN)
        plan = await plans.create_retraining_plan(
            s,
            RetrainingPlanIn.model_validate(
                {
                    "title": "retrain on the incidents",
                    "model": model,
                    "evidence": {"case_ids": ids},
                    "targets": [{"suite": suite, "metric": "pass_rate", "op": ">=", "value": 1}],
                }
            ),
            ADMIN,
        )
    # Only the last case is received early enough to fall under the policy.
    async with stack.db.transaction() as s:
        from sqlalchemy import text

        await s.execute(
            text("UPDATE failure_case SET received_at = :t WHERE id IN (:a, :b)"),
            {"t": later(5), "a": ids[0], "b": ids[1]},
        )
    assert await _purge_whole(stack.db, source) == [ids[2]]
    live, purged = ids[:2], ids[2]

    async with stack.db.transaction() as s:
        # The catalog's batch reads: absent, except to the history's explicit reader.
        assert {c.id for c in await catalog.get_cases(s, ids, SYSTEM)} == set(live)
        assert await catalog.visible_among(s, ids, SYSTEM) == set(live)
        assert {c.id for c in await catalog.get_cases(s, ids, SYSTEM, tombstones=True)} == set(ids)
        assert await catalog.purged_among(s, ids) == {purged}

        # Plan evidence: the stored plan no longer shows it; a new plan may not name it.
        assert await plans.visible_evidence(s, plan, ADMIN) == live
        with pytest.raises(BadUserInput) as refused:
            await plans.create_retraining_plan(
                s,
                RetrainingPlanIn.model_validate(
                    {
                        "title": "again",
                        "model": model,
                        "evidence": {"case_ids": [purged]},
                        "targets": [
                            {"suite": suite, "metric": "pass_rate", "op": ">=", "value": 1}
                        ],
                    }
                ),
                ADMIN,
            )
        assert refused.value.errors[0].path == "evidence.caseIds.0"

        # The suite: not listed, not counted in a run, not reportable.
        snapshot = await safeguards.get_suite(s, suite)
        page, _ = await safeguards.suite_cases(s, snapshot, ADMIN, 10, -1)
        assert [c.case_id for c in page] == [i for i in ids if i in live]
        run = await safeguards.record_run(
            s,
            RunIn.model_validate(
                {
                    "model": model,
                    "version": "9",
                    "suite": suite,
                    "outcomes": [{"case_id": i, "outcome": "pass"} for i in live],
                }
            ),
            ADMIN,
        )
        assert (run.total, run.passed, run.not_run) == (2, 2, 0)
        with pytest.raises(BadUserInput):
            await safeguards.record_run(
                s,
                RunIn.model_validate(
                    {
                        "model": model,
                        "version": "9",
                        "suite": suite,
                        "outcomes": [{"case_id": purged, "outcome": "fail"}],
                    }
                ),
                ADMIN,
            )
        # A new suite naming it explicitly is refused as for an unknown id.
        with pytest.raises(BadUserInput) as refused:
            await safeguards.create_suite(
                s, SuiteCreate(name=f"{suite}-2", model=model, case_ids=ids), ADMIN
            )
        assert any(purged in e.message for e in refused.value.errors)
