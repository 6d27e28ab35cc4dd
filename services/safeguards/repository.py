"""Every query of the safeguards service, and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Text, cast, null, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.safeguards.models import (
    EvaluationOutcome,
    EvaluationRun,
    GateWaiver,
    ResolutionProposal,
    Suite,
    SuiteCase,
    SuiteVersion,
    SyntheticScenario,
)


class SuiteFacts(NamedTuple):
    case_id: str
    parent_case_id: str | None
    group_id: str
    failure_mode: str | None
    severity: str | None
    expected: Any

    @property
    def owner(self) -> str:
        """The catalog case whose visibility applies (a scenario's parent)."""
        return self.parent_case_id or self.case_id


# Rows per multi-row INSERT: under SQLite's 32,766 bound variables for the widest table.
INSERT_CHUNK = 2_000


class SafeguardsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, model: Any, rows: list[dict[str, Any]]) -> None:
        for i in range(0, len(rows), INSERT_CHUNK):
            await self.session.execute(model.__table__.insert(), rows[i : i + INSERT_CHUNK])

    # --- suites -----------------------------------------------------------------------------
    async def suite_by_name(self, name: str, *, for_update: bool = False) -> Suite | None:
        stmt = select(Suite).where(Suite.name == name)
        if for_update:
            stmt = stmt.with_for_update()  # Postgres: concurrent re-runs number versions in turn
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def suites_of_model(self, model: str) -> list[Suite]:
        rows = await self.session.execute(
            select(Suite).where(Suite.model_name == model).order_by(Suite.name)
        )
        return list(rows.scalars())

    async def add_suite(self, suite: Suite) -> bool:
        """False when a suite of that name appeared meanwhile (a concurrent creation)."""
        try:
            async with self.session.begin_nested():
                self.session.add(suite)
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    async def set_latest_version(self, suite_id: str, version: int) -> None:
        await self.session.execute(
            update(Suite).where(Suite.id == suite_id).values(latest_version=version)
        )

    async def suite_version(self, suite_id: str, version: int) -> SuiteVersion | None:
        stmt = select(SuiteVersion).where(
            SuiteVersion.suite_id == suite_id, SuiteVersion.version == version
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def suite_versions_by_id(self, ids: Sequence[str]) -> list[SuiteVersion]:
        rows = await self.session.execute(select(SuiteVersion).where(SuiteVersion.id.in_(ids)))
        return list(rows.scalars())

    async def versions_containing(self, case_ids: Sequence[str]) -> list[tuple[str, str]]:
        """(case id, suite version id) for every frozen version holding one of the cases."""
        rows = await self.session.execute(
            select(SuiteCase.case_id, SuiteCase.suite_version_id)
            .where(SuiteCase.case_id.in_(case_ids))
            .distinct()
        )
        return [(case_id, version_id) for case_id, version_id in rows]

    async def suites_by_id(self, ids: Sequence[str]) -> list[Suite]:
        return list((await self.session.execute(select(Suite).where(Suite.id.in_(ids)))).scalars())

    async def suite_cases(
        self, version_id: str, after_position: int = -1, limit: int | None = None
    ) -> list[SuiteCase]:
        """In frozen order, a keyset page after `after_position`."""
        stmt = (
            select(SuiteCase)
            .where(SuiteCase.suite_version_id == version_id, SuiteCase.position > after_position)
            .order_by(SuiteCase.position)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def suite_case_facts(self, version_id: str) -> list[SuiteFacts]:
        """What runs need of every frozen case (no input): one light row each."""
        t = SuiteCase.__table__.c
        stmt = (
            select(t.case_id, t.parent_case_id, t.group_id, t.failure_mode, t.severity, t.expected)
            .where(t.suite_version_id == version_id)
            .order_by(t.position)
        )
        return [SuiteFacts(*r) for r in await self.session.execute(stmt)]

    async def suite_case_rows(
        self, version_id: str, after_position: int, limit: int
    ) -> list[tuple[Any, ...]]:
        """The export's columns as plain tuples, the JSON ones as the database's JSON text:
        the streaming path neither builds ORM objects nor decodes what it re-encodes."""
        t = SuiteCase.__table__.c
        stmt = (
            select(
                t.position,
                t.case_id,
                t.parent_case_id,
                t.failure_mode,
                t.severity,
                t.input_json,
                cast(t.expected, Text),
            )
            .where(t.suite_version_id == version_id, t.position > after_position)
            .order_by(t.position)
            .limit(limit)
        )
        return [tuple(r) for r in await self.session.execute(stmt)]

    # --- runs -------------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> EvaluationRun | None:
        return await self.session.get(EvaluationRun, run_id)

    async def runs_of(self, model: str, version: str) -> list[EvaluationRun]:
        """Newest first."""
        rows = await self.session.execute(
            select(EvaluationRun)
            .where(EvaluationRun.model_name == model, EvaluationRun.model_version == version)
            .order_by(EvaluationRun.created_at.desc(), EvaluationRun.id.desc())
        )
        return list(rows.scalars())

    async def outcomes(self, run_id: str) -> list[EvaluationOutcome]:
        rows = await self.session.execute(
            select(EvaluationOutcome).where(EvaluationOutcome.run_id == run_id)
        )
        return list(rows.scalars())

    # --- proposals --------------------------------------------------------------------------
    async def proposals_of_runs(self, run_ids: Sequence[str]) -> list[ResolutionProposal]:
        rows = await self.session.execute(
            select(ResolutionProposal)
            .where(ResolutionProposal.run_id.in_(run_ids))
            .order_by(ResolutionProposal.group_id)
        )
        return list(rows.scalars())

    async def get_proposal(self, proposal_id: str) -> ResolutionProposal | None:
        return await self.session.get(ResolutionProposal, proposal_id)

    async def decide_proposal(self, proposal_id: str, status: str, at: datetime, by: str) -> bool:
        """Only an undecided proposal changes (a concurrent decision loses)."""
        result = await self.session.execute(
            update(ResolutionProposal)
            .where(ResolutionProposal.id == proposal_id, ResolutionProposal.status == "proposed")
            .values(status=status, decided_at=at, decided_by=by)
        )
        return result.rowcount == 1

    # --- waivers ----------------------------------------------------------------------------
    async def active_waivers(self, model: str, version: str, now: datetime) -> list[GateWaiver]:
        rows = await self.session.execute(
            select(GateWaiver).where(
                GateWaiver.model_name == model,
                or_(GateWaiver.model_version.is_(None), GateWaiver.model_version == version),
                GateWaiver.revoked_at.is_(None),
                GateWaiver.expires_at > now,
            )
        )
        return list(rows.scalars())

    async def get_waiver(self, waiver_id: str) -> GateWaiver | None:
        return await self.session.get(GateWaiver, waiver_id)

    async def revoke_waiver(self, waiver_id: str, at: datetime, by: str) -> bool:
        result = await self.session.execute(
            update(GateWaiver)
            .where(GateWaiver.id == waiver_id, GateWaiver.revoked_at.is_(None))
            .values(revoked_at=at, revoked_by=by)
        )
        return result.rowcount == 1

    async def suite_case_ids_of_group(self, version_id: str, group_id: str) -> list[str]:
        rows = await self.session.execute(
            select(SuiteCase.case_id).where(
                SuiteCase.suite_version_id == version_id,
                SuiteCase.group_id == group_id,
                SuiteCase.parent_case_id.is_(None),  # the group's own cases, not variants
            )
        )
        return list(rows.scalars())

    # --- synthetic scenarios ----------------------------------------------------------------
    async def clear_case_copies(self, case_ids: Sequence[str]) -> None:
        """Null the copies of these cases' payload: their suite rows, their synthetic
        scenarios (and those scenarios' suite rows), and the predictions and errors runs
        reported for any of them. Frozen ids, groups, grading and hashes stay."""
        plain = {"synchronize_session": False}
        scenarios = select(SyntheticScenario.id).where(
            SyntheticScenario.parent_case_id.in_(case_ids)
        )
        await self.session.execute(
            update(SuiteCase)
            .where(or_(SuiteCase.case_id.in_(case_ids), SuiteCase.case_id.in_(scenarios)))
            .values(input_json="null", expected=null()),
            execution_options=plain,
        )
        await self.session.execute(
            update(EvaluationOutcome)
            .where(
                or_(
                    EvaluationOutcome.case_id.in_(case_ids),
                    EvaluationOutcome.case_id.in_(scenarios),
                )
            )
            .values(prediction=null(), error=None),
            execution_options=plain,
        )
        await self.session.execute(
            update(SyntheticScenario)
            .where(SyntheticScenario.parent_case_id.in_(case_ids))
            .values(input_json="null", expected=null()),
            execution_options=plain,
        )

    async def insert_scenarios(self, rows: list[dict[str, Any]]) -> None:
        """Ids derive from the request: a row already there is the same scenario."""
        if not rows:
            return
        dialect = self.session.bind.dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        for i in range(0, len(rows), INSERT_CHUNK):
            await self.session.execute(
                insert(SyntheticScenario.__table__).on_conflict_do_nothing(),
                rows[i : i + INSERT_CHUNK],
            )

    async def scenarios_by_id(self, ids: Sequence[str]) -> list[SyntheticScenario]:
        out: list[SyntheticScenario] = []
        for i in range(0, len(ids), INSERT_CHUNK):
            rows = await self.session.execute(
                select(SyntheticScenario).where(SyntheticScenario.id.in_(ids[i : i + INSERT_CHUNK]))
            )
            out.extend(rows.scalars())
        return out

    async def scenarios_of(self, parent_ids: Sequence[str]) -> list[SyntheticScenario]:
        """In a stable order: parent, perturbation, seed, variant."""
        out: list[SyntheticScenario] = []
        s = SyntheticScenario
        for i in range(0, len(parent_ids), INSERT_CHUNK):
            rows = await self.session.execute(
                select(s)
                .where(s.parent_case_id.in_(parent_ids[i : i + INSERT_CHUNK]))
                .order_by(s.parent_case_id, s.perturbation, s.seed, s.variant, s.id)
            )
            out.extend(rows.scalars())
        return out
