"""Every query of the catalog, and nothing else. Set-based: one statement per table per batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    String,
    and_,
    any_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.models import (
    CaseLink,
    CaseRevision,
    DataSource,
    FailureCase,
    FailureGroup,
    FailureMode,
    Model,
    ModelVersion,
    Outbox,
    SamplingCounter,
    SamplingRule,
    SeverityGrade,
    TaxonomyVersion,
)
from services.catalog.schemas import CaseFilter
from shared.ids import new_id
from shared.security import Principal
from shared.visibility import Visibility
from shared.vocabulary import SEVERITIES

T_CASE = FailureCase.__table__
# SQLite binds at most 32766 variables per statement; stay well below for IN lists.
IN_CHUNK = 5000


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class CatalogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.dialect = session.bind.dialect.name

    def _in(self, column: Any, values: Sequence[str]) -> Any:
        """`column IN values`; on Postgres one array parameter instead of one per value."""
        if self.dialect == "postgresql":
            return column == any_(literal(list(values), ARRAY(String)))
        return column.in_(values)

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    # --- reference data -------------------------------------------------------------------
    async def current_taxonomy_version(self) -> int:
        return (await self.session.execute(select(func.max(TaxonomyVersion.version)))).scalar_one()

    async def failure_modes(self, version: int) -> dict[str, str | None]:
        rows = await self.session.execute(
            select(FailureMode.code, FailureMode.parent).where(
                FailureMode.taxonomy_version == version
            )
        )
        return dict(rows.all())

    async def taxonomy(self, version: int) -> list[FailureMode]:
        rows = await self.session.execute(
            select(FailureMode)
            .where(FailureMode.taxonomy_version == version)
            .order_by(FailureMode.code)
        )
        return list(rows.scalars())

    async def taxonomy_versions(self) -> list[TaxonomyVersion]:
        rows = await self.session.execute(select(TaxonomyVersion).order_by(TaxonomyVersion.version))
        return list(rows.scalars())

    async def publish_taxonomy(self, version: TaxonomyVersion, modes: list[FailureMode]) -> None:
        self.session.add(version)
        await self.session.flush()
        self.session.add_all(modes)
        await self.session.flush()

    async def rubric(self) -> list[SeverityGrade]:
        latest = select(func.max(SeverityGrade.rubric_version)).scalar_subquery()
        rows = await self.session.execute(
            select(SeverityGrade)
            .where(SeverityGrade.rubric_version == latest)
            .order_by(SeverityGrade.rank)
        )
        return list(rows.scalars())

    # --- models, versions, sources: get or create, in one round trip each -----------------
    async def ensure_named(self, table: Any, names: set[str], now: datetime) -> dict[str, str]:
        if not names:
            return {}
        found = await self._names(table, names)
        missing = names - found.keys()
        if missing:
            await self.session.execute(
                self._insert(table).on_conflict_do_nothing(),
                [{"id": new_id(), "name": n, "created_at": now} for n in sorted(missing)],
            )
            found.update(await self._names(table, missing))
        return found

    async def _names(self, table: Any, names: set[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(sorted(names)):
            rows = await self.session.execute(
                select(table.name, table.id).where(table.name.in_(chunk))
            )
            out.update(rows.all())
        return out

    async def ensure_models(self, names: set[str], now: datetime) -> dict[str, str]:
        return await self.ensure_named(Model, names, now)

    async def ensure_sources(self, names: set[str], now: datetime) -> dict[str, str]:
        return await self.ensure_named(DataSource, names, now)

    async def ensure_versions(
        self, pairs: set[tuple[str, str]], now: datetime
    ) -> dict[tuple[str, str], str]:
        found = await self._versions(pairs)
        missing = pairs - found.keys()
        if missing:
            await self.session.execute(
                self._insert(ModelVersion.__table__).on_conflict_do_nothing(),
                [
                    {"id": new_id(), "model_id": m, "version": v, "created_at": now}
                    for m, v in sorted(missing)
                ],
            )
            found.update(await self._versions(missing))
        return found

    async def _versions(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        out: dict[tuple[str, str], str] = {}
        for chunk in _chunks(sorted(pairs)):
            rows = await self.session.execute(
                select(ModelVersion.model_id, ModelVersion.version, ModelVersion.id).where(
                    tuple_(ModelVersion.model_id, ModelVersion.version).in_(chunk)
                )
            )
            out.update({(m, v): i for m, v, i in rows})
        return out

    async def models(self, ids: Sequence[str]) -> list[Model]:
        return list((await self.session.execute(select(Model).where(Model.id.in_(ids)))).scalars())

    async def model_versions(self, ids: Sequence[str]) -> list[ModelVersion]:
        rows = await self.session.execute(select(ModelVersion).where(ModelVersion.id.in_(ids)))
        return list(rows.scalars())

    async def versions_of_models(self, model_ids: Sequence[str]) -> list[ModelVersion]:
        rows = await self.session.execute(
            select(ModelVersion)
            .where(ModelVersion.model_id.in_(model_ids))
            .order_by(ModelVersion.created_at, ModelVersion.version)
        )
        return list(rows.scalars())

    async def visible_group(self, group_id: str, viewer: Principal) -> FailureGroup | None:
        stmt = select(FailureGroup).where(FailureGroup.id == group_id, _has_visible_case(viewer))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_groups(
        self,
        viewer: Principal,
        *,
        model: str | None,
        status: str | None,
        first: int,
        after: tuple[datetime, str] | None,
    ) -> list[FailureGroup]:
        """Most recently seen first, keyset on (last_seen, id)."""
        stmt = select(FailureGroup).where(_has_visible_case(viewer))
        if model:
            stmt = stmt.where(
                FailureGroup.model_id
                == select(Model.id).where(Model.name == model).scalar_subquery()
            )
        if status:
            stmt = stmt.where(FailureGroup.status == status)
        stmt = _newest_first(stmt, FailureGroup.last_seen, FailureGroup.id, after, first)
        return list((await self.session.execute(stmt)).scalars())

    async def versions_of_model(self, model_id: str) -> list[ModelVersion]:
        rows = await self.session.execute(
            select(ModelVersion).where(ModelVersion.model_id == model_id)
        )
        return list(rows.scalars())

    async def data_sources(self, ids: Sequence[str]) -> list[DataSource]:
        rows = await self.session.execute(select(DataSource).where(DataSource.id.in_(ids)))
        return list(rows.scalars())

    async def list_models(self) -> list[Model]:
        return list((await self.session.execute(select(Model).order_by(Model.name))).scalars())

    # --- duplicates -----------------------------------------------------------------------
    async def ids_by_hash(self, hashes: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(list(hashes)):
            rows = await self.session.execute(
                select(FailureCase.content_hash, FailureCase.id).where(
                    self._in(FailureCase.content_hash, chunk)
                )
            )
            out.update(rows.all())
        return out

    async def ids_by_external(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Ids of stored cases by (source, external_id): matched on external_id through its
        index, then on the exact pair here (a batch rarely spans more than one source)."""
        wanted = set(keys)
        out: dict[tuple[str, str], str] = {}
        for chunk in _chunks(sorted({e for _, e in wanted})):
            rows = await self.session.execute(
                select(FailureCase.source_key, FailureCase.external_id, FailureCase.id).where(
                    self._in(FailureCase.external_id, chunk)
                )
            )
            out.update({(s, e): i for s, e, i in rows if (s, e) in wanted})
        return out

    # --- groups ---------------------------------------------------------------------------
    async def groups_by_id(self, ids: Sequence[str]) -> dict[str, Any]:
        """What ingestion reads of existing groups (status, resolved_in_version), as plain
        rows by id: no ORM objects and no locks on the ingestion path."""
        g = FailureGroup
        out: dict[str, Any] = {}
        for chunk in _chunks(list(ids)):
            rows = await self.session.execute(
                select(g.id, g.status, g.resolved_in_version).where(self._in(g.id, chunk))
            )
            out.update({r.id: r for r in rows})
        return out

    async def upsert_groups(self, rows: list[dict[str, Any]]) -> None:
        """Create the batch's new groups and add its counts to existing ones, in one
        statement at the end of the unit of work: concurrent batches sharing groups wait for
        each other only there. Rows go in id order, so their locks never deadlock."""
        if not rows:
            return
        g = FailureGroup.__table__
        stmt = self._insert(g)
        if self.dialect == "postgresql":
            earliest, latest = func.least, func.greatest
        else:  # SQLite's two-argument min/max are scalar functions
            earliest, latest = func.min, func.max
        stmt = stmt.on_conflict_do_update(
            index_elements=[g.c.id],
            set_={
                "case_count": g.c.case_count + stmt.excluded.case_count,
                "sampled_out_count": g.c.sampled_out_count + stmt.excluded.sampled_out_count,
                "first_seen": earliest(g.c.first_seen, stmt.excluded.first_seen),
                "last_seen": latest(g.c.last_seen, stmt.excluded.last_seen),
            },
        )
        await self.session.execute(stmt, sorted(rows, key=lambda r: r["id"]))

    async def count_evictions(self, per_group: dict[str, int]) -> None:
        if not per_group:
            return

        g = FailureGroup.__table__
        await self.session.execute(
            update(g)
            .where(g.c.id == bindparam("gid"))
            .values(
                case_count=g.c.case_count - bindparam("n"),
                sampled_out_count=g.c.sampled_out_count + bindparam("n"),
            ),
            [{"gid": k, "n": v} for k, v in per_group.items()],
            execution_options={"synchronize_session": False},
        )

    async def mark_regressed(self, group_id: str, version: str, at: datetime) -> None:
        await self.session.execute(
            update(FailureGroup)
            .where(FailureGroup.id == group_id)
            .values(status="regressed", regressed_at=at, regressed_in_version=version),
            execution_options={"synchronize_session": False},
        )

    async def get_groups(self, ids: Sequence[str]) -> list[FailureGroup]:
        rows = await self.session.execute(select(FailureGroup).where(FailureGroup.id.in_(ids)))
        return list(rows.scalars())

    async def get_group(self, group_id: str) -> FailureGroup | None:
        return await self.session.get(FailureGroup, group_id)

    # --- inserts of the ingest batch ------------------------------------------------------
    async def insert_cases(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert, skipping rows another writer stored first; returns the ids really stored."""
        if not rows:
            return set()
        if self.dialect == "postgresql":
            return await self._copy_cases(rows)
        stmt = self._insert(T_CASE).on_conflict_do_nothing().returning(T_CASE.c.id)
        result = await self.session.execute(stmt, rows)
        return set(result.scalars().all())

    async def _copy_unless_conflict(self, table: Any, rows: list[dict[str, Any]]) -> bool:
        """COPY under a savepoint; false (and nothing written) if a row hit a unique key,
        which only happens when a concurrent writer stored it after our read."""
        import asyncpg

        raw = await self._raw_connection()
        columns = [c.name for c in table.columns]
        try:
            async with raw.transaction():
                await raw.copy_records_to_table(
                    table.name, records=_records(table, rows, columns), columns=columns
                )
        except asyncpg.UniqueViolationError:
            return False
        return True

    async def _copy_cases(self, rows: list[dict[str, Any]]) -> set[str]:
        """The batch was checked for duplicates in this transaction, so COPY it straight in;
        a unique violation means a concurrent writer stored one of them meanwhile: then take
        the staged path, which skips those."""
        if await self._copy_unless_conflict(T_CASE, rows):
            return {r["id"] for r in rows}
        columns = [c.name for c in T_CASE.columns]
        return await self._copy_cases_staged(
            await self._raw_connection(), _records(T_CASE, rows), columns
        )

    async def _copy_cases_staged(
        self, raw: Any, records: list[tuple[Any, ...]], columns: list[str]
    ) -> set[str]:
        """COPY into a transaction-local staging table, then one INSERT ... SELECT that skips
        the rows others stored first."""
        await raw.execute(
            "CREATE TEMP TABLE IF NOT EXISTS failure_case_stage "
            "(LIKE failure_case INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await raw.execute("TRUNCATE failure_case_stage")
        await raw.copy_records_to_table("failure_case_stage", records=records, columns=columns)
        ids = await raw.fetch(
            f"INSERT INTO failure_case ({', '.join(columns)}) "
            f"SELECT {', '.join(columns)} FROM failure_case_stage "
            "ON CONFLICT DO NOTHING RETURNING id"
        )
        return {r["id"] for r in ids}

    async def _raw_connection(self) -> Any:
        """The asyncpg connection under this session's transaction (same transaction)."""
        conn = await self.session.connection()
        raw = await conn.get_raw_connection()
        return raw.driver_connection

    async def insert_rows(self, model: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = model.__table__
        if self.dialect == "postgresql":
            raw = await self._raw_connection()
            columns = [c.name for c in table.columns if c.name in rows[0]]
            await raw.copy_records_to_table(
                table.name, records=_records(table, rows, columns), columns=columns
            )
        else:
            await self.session.execute(table.insert(), rows)

    async def add_outbox(self, entries: list[tuple[str, int]], now: datetime) -> None:
        await self.insert_rows(
            Outbox, [{"case_id": c, "revision": r, "created_at": now} for c, r in entries]
        )

    # --- sampling -------------------------------------------------------------------------
    async def sampling_rules(self) -> list[SamplingRule]:
        rows = await self.session.execute(select(SamplingRule).order_by(SamplingRule.model_name))
        return list(rows.scalars())

    async def upsert_sampling_rule(self, values: dict[str, Any]) -> None:
        stmt = self._insert(SamplingRule.__table__).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["model_name", "data_source"],
            set_={
                k: stmt.excluded[k]
                for k in ("keep_at_or_above", "daily_cap", "enabled", "updated_at", "updated_by")
            },
        )
        await self.session.execute(stmt)

    async def sampling_counters(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        c = SamplingCounter
        out: dict[str, tuple[int, int]] = {}
        for chunk in _chunks(list(keys)):
            rows = await self.session.execute(
                select(c.reservoir_key, c.seen, c.kept).where(c.reservoir_key.in_(chunk))
            )
            out.update({k: (seen, kept) for k, seen, kept in rows})
        return out

    async def save_sampling_counters(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        stmt = self._insert(SamplingCounter.__table__)
        stmt = stmt.on_conflict_do_update(
            index_elements=["reservoir_key"],
            set_={"seen": stmt.excluded.seen, "kept": stmt.excluded.kept},
        )
        await self.session.execute(stmt, sorted(rows, key=lambda r: r["reservoir_key"]))

    async def evictable_in_reservoir(self, key: str) -> list[str]:
        rows = await self.session.execute(
            select(FailureCase.id)
            .where(FailureCase.reservoir_key == key, FailureCase.revision == 1)
            .order_by(FailureCase.id)
        )
        return list(rows.scalars())

    async def delete_cases(self, ids: Sequence[str]) -> list[tuple[str, str, int]]:
        """Remove uncurated cases (sampling eviction); returns (id, group_id, revision)."""
        from sqlalchemy import delete

        if not ids:
            return []
        rows = await self.session.execute(
            select(FailureCase.id, FailureCase.group_id, FailureCase.revision).where(
                FailureCase.id.in_(ids)
            )
        )
        found = [tuple(r) for r in rows]
        for model in (CaseLink, CaseRevision):
            await self.session.execute(delete(model).where(model.case_id.in_(ids)))
        await self.session.execute(delete(FailureCase).where(FailureCase.id.in_(ids)))
        return found  # type: ignore[return-value]

    # --- reads ----------------------------------------------------------------------------
    async def get_case(self, case_id: str, *, for_update: bool = False) -> FailureCase | None:
        stmt = select(FailureCase).where(FailureCase.id == case_id)
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_cases(self, ids: Sequence[str], viewer: Principal) -> list[FailureCase]:
        stmt = select(FailureCase).where(FailureCase.id.in_(ids), *visible_to(viewer))
        return list((await self.session.execute(stmt)).scalars())

    async def list_cases(
        self, f: CaseFilter, viewer: Principal, first: int, after: tuple[datetime, str] | None
    ) -> list[FailureCase]:
        """Newest first, keyset on (occurred_at, id): stable while new cases arrive."""
        stmt = select(FailureCase).where(*visible_to(viewer), *self._filters(f))
        stmt = _newest_first(stmt, FailureCase.occurred_at, FailureCase.id, after, first)
        return list((await self.session.execute(stmt)).scalars())

    def _has_tag(self, tag: str) -> Any:
        c = FailureCase
        if self.dialect == "postgresql":
            return c.tags.op("@>")(func.jsonb_build_array(tag))
        each = func.json_each(c.tags).table_valued("value")
        return exists(select(1).select_from(each).where(each.c.value == tag))

    def _filters(self, f: CaseFilter) -> list[Any]:
        c = FailureCase
        out: list[Any] = []
        if f.model:
            out.append(
                c.model_id == select(Model.id).where(Model.name == f.model).scalar_subquery()
            )
        if f.model_version:
            out.append(
                c.model_version_id.in_(
                    select(ModelVersion.id).where(ModelVersion.version == f.model_version)
                )
            )
        if f.data_source:
            out.append(
                c.data_source_id
                == select(DataSource.id).where(DataSource.name == f.data_source).scalar_subquery()
            )
        if f.failure_mode:
            out.append(
                or_(c.failure_mode == f.failure_mode, c.failure_mode_parent == f.failure_mode)
            )
        if f.severity_min or f.severity_max:
            lo = SEVERITIES.index(f.severity_min or "S0")
            hi = SEVERITIES.index(f.severity_max or "S4")
            out.append(c.severity.in_(SEVERITIES[lo : hi + 1]))
        if f.status:
            out.append(c.status.in_([s.value for s in f.status]))
        if f.team:
            out.append(c.team == f.team)
        if f.sensitivity:
            out.append(c.sensitivity.in_([s.value for s in f.sensitivity]))
        for tag in f.tags or []:
            out.append(self._has_tag(tag))
        if f.occurred_after:
            out.append(c.occurred_at >= f.occurred_after)
        if f.occurred_before:
            out.append(c.occurred_at < f.occurred_before)
        if f.group_id:
            out.append(c.group_id == f.group_id)
        for key, value in (f.environment or {}).items():
            if self.dialect == "postgresql":
                out.append(c.environment.op("@>")(func.jsonb_build_object(key, value)))
            else:
                out.append(func.json_extract(c.environment, f'$."{key}"') == value)
        return out

    async def links_of(self, case_ids: Sequence[str]) -> list[CaseLink]:
        rows = await self.session.execute(
            select(CaseLink).where(CaseLink.case_id.in_(case_ids)).order_by(CaseLink.id)
        )
        return list(rows.scalars())

    async def replace_links(self, case_id: str, links: list[dict[str, Any]]) -> None:
        from sqlalchemy import delete

        await self.session.execute(delete(CaseLink).where(CaseLink.case_id == case_id))
        await self.insert_rows(
            CaseLink, [{"id": new_id(), "case_id": case_id, **lk} for lk in links]
        )

    async def revisions(self, case_ids: Sequence[str]) -> list[CaseRevision]:
        rows = await self.session.execute(
            select(CaseRevision)
            .where(CaseRevision.case_id.in_(case_ids))
            .order_by(CaseRevision.case_id, CaseRevision.revision)
        )
        return list(rows.scalars())

    async def last_revisions(self, case_ids: Sequence[str]) -> list[CaseRevision]:
        """Each case's newest revision: the one whose number the case row carries."""
        rows = await self.session.execute(
            select(CaseRevision)
            .join(
                FailureCase,
                and_(
                    FailureCase.id == CaseRevision.case_id,
                    FailureCase.revision == CaseRevision.revision,
                ),
            )
            .where(CaseRevision.case_id.in_(case_ids))
        )
        return list(rows.scalars())

    async def revisions_after(self, case_id: str, as_of: datetime) -> list[CaseRevision]:
        """Revisions made after `as_of`, newest first."""
        rows = await self.session.execute(
            select(CaseRevision)
            .where(CaseRevision.case_id == case_id, CaseRevision.created_at > as_of)
            .order_by(CaseRevision.revision.desc())
        )
        return list(rows.scalars())

    async def update_case_if_revision(
        self, case_id: str, expected_revision: int, values: dict[str, Any]
    ) -> bool:
        """Compare-and-set on the revision: false when another writer moved it first."""
        result = await self.session.execute(
            update(FailureCase)
            .where(FailureCase.id == case_id, FailureCase.revision == expected_revision)
            .values(**values),
            execution_options={"synchronize_session": False},
        )
        return result.rowcount == 1

    async def update_group(self, group_id: str, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(FailureGroup).where(FailureGroup.id == group_id).values(**values),
            execution_options={"synchronize_session": False},
        )

    # --- outbox and search documents ------------------------------------------------------
    async def outbox_batch(self, limit: int) -> list[tuple[int, str, int]]:
        stmt = select(Outbox.id, Outbox.case_id, Outbox.revision).order_by(Outbox.id).limit(limit)
        if self.dialect == "postgresql":
            # Several indexers (API workers, `failcat worker`s) each claim their own rows.
            stmt = stmt.with_for_update(skip_locked=True)
        rows = await self.session.execute(stmt)
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def outbox_ack(self, ids: Sequence[int]) -> None:
        from sqlalchemy import delete

        for chunk in _chunks(list(ids)):
            await self.session.execute(delete(Outbox).where(Outbox.id.in_(chunk)))

    async def document_rows(self, case_ids: Sequence[str]) -> list[Any]:
        return list(
            (
                await self.session.execute(
                    self._document_query().where(FailureCase.id.in_(case_ids))
                )
            ).all()
        )

    async def document_rows_after(self, after_id: str | None, limit: int) -> list[Any]:
        stmt = self._document_query()
        if after_id:
            stmt = stmt.where(FailureCase.id > after_id)
        return list((await self.session.execute(stmt.order_by(FailureCase.id).limit(limit))).all())

    def _document_query(self) -> Any:
        return (
            select(FailureCase, Model.name, ModelVersion.version, DataSource.name)
            .join(Model, Model.id == FailureCase.model_id)
            .join(ModelVersion, ModelVersion.id == FailureCase.model_version_id)
            .join(DataSource, DataSource.id == FailureCase.data_source_id)
        )

    async def case_revisions(self) -> list[tuple[str, int]]:
        rows = await self.session.execute(
            select(FailureCase.id, FailureCase.revision).order_by(FailureCase.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def resolved_groups(
        self, viewer: Principal, since: datetime, until: datetime, model: str | None
    ) -> list[tuple[str, str, str | None, datetime, datetime, str | None]]:
        """Groups resolved in [since, until) with a case `viewer` may see: (id, model,
        failure mode, first seen, resolved at, team of its visible cases)."""
        c, g = FailureCase, FailureGroup
        stmt = (
            select(g.id, Model.name, g.failure_mode, g.first_seen, g.resolved_at, func.min(c.team))
            .join(Model, Model.id == g.model_id)
            .join(c, c.group_id == g.id)
            .where(
                g.resolved_at.is_not(None),
                g.resolved_at >= since,
                g.resolved_at < until,
                *visible_to(viewer),
            )
            .group_by(g.id, Model.name, g.failure_mode, g.first_seen, g.resolved_at)
        )
        if model:
            stmt = stmt.where(Model.name == model)
        return [tuple(r) for r in await self.session.execute(stmt)]  # type: ignore[misc]

    async def visible_among(self, ids: Sequence[str], viewer: Principal) -> set[str]:
        stmt = select(FailureCase.id).where(self._in(FailureCase.id, ids), *visible_to(viewer))
        return set((await self.session.execute(stmt)).scalars())

    async def unresolved_groups_at(
        self, model: str, severities: Sequence[str], viewer: Principal | None
    ) -> list[tuple[str, str, str, int, str]]:
        """Open or regressed groups of `model` holding cases at one of `severities`, as
        (group id, status, worst severity, such cases, one such case id); one aggregate over
        the model's cases, counting only those `viewer` may see (every case when None)."""
        c, g = FailureCase, FailureGroup
        model_id = select(Model.id).where(Model.name == model).scalar_subquery()
        stmt = (
            select(g.id, g.status, func.min(c.severity), func.count(), func.min(c.id))
            .join(g, g.id == c.group_id)
            .where(
                c.model_id == model_id,
                c.severity.in_(list(severities)),
                g.status.in_(("open", "regressed")),
                *(visible_to(viewer) if viewer is not None else ()),
            )
            .group_by(g.id, g.status)
            .order_by(func.min(c.severity), g.id)
        )
        return [tuple(r) for r in await self.session.execute(stmt)]  # type: ignore[misc]


def _records(
    table: Any, rows: list[dict[str, Any]], columns: list[str] | None = None
) -> list[tuple[Any, ...]]:
    """Rows as COPY records; JSON columns become their text (asyncpg's jsonb codec takes str)."""
    names = columns or [c.name for c in table.columns]
    json_at = [i for i, n in enumerate(names) if isinstance(table.c[n].type, JSON)]
    dumps = orjson.dumps
    out = []
    for row in rows:
        record = [row.get(n) for n in names]
        for i in json_at:
            if record[i] is not None:
                record[i] = dumps(record[i]).decode()
        out.append(tuple(record))
    return out


def _newest_first(
    stmt: Any, at_col: Any, id_col: Any, after: tuple[datetime, str] | None, first: int
) -> Any:
    """A keyset page, newest first on (time, id): stable while new rows arrive."""
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(at_col < at, and_(at_col == at, id_col < last_id)))
    return stmt.order_by(at_col.desc(), id_col.desc()).limit(first)


def _has_visible_case(viewer: Principal) -> Any:
    """A group shows only to callers who may see at least one of its cases."""
    return exists().where(FailureCase.group_id == FailureGroup.id, *visible_to(viewer))


def visible_to(viewer: Principal) -> list[Any]:
    """The visibility rule (shared/visibility.py), applied inside every catalog read."""
    return [Visibility.of(viewer).sqlalchemy(FailureCase.team, FailureCase.sensitivity)]
