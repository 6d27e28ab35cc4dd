"""Queries of cases and their links: visible reads and filtered pages, duplicate lookups,
the ingest batch's inserts (COPY on Postgres), compare-and-set updates, evictions."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, func, literal_column, or_, select, update

from services.catalog.models import (
    CaseLink,
    CaseRevision,
    DataSource,
    FailureCase,
    Model,
    ModelVersion,
)
from services.catalog.repository.base import RepositoryBase, copy_records, newest_first
from services.catalog.repository.visibility import visible_in, visible_to
from services.catalog.schemas import CaseFilter
from shared.audit import (
    Staged,
    execute_read,
    folds_reads,
    read_entry_ctes,
    read_entry_params,
    stage,
)
from shared.chunks import chunks
from shared.ids import new_id
from shared.security import Principal
from shared.visibility import Visibility
from shared.vocabulary import SEVERITIES

T_CASE = FailureCase.__table__
# The ingest lookups on SQLite (CaseQueries._sqlite_in): both go through a unique index
# (content_hash; external_id, source_key), checked by tests/catalog/test_ingest_write_path.py.
_BY_HASH = (
    "SELECT content_hash, id FROM failure_case "
    "WHERE content_hash IN (SELECT value FROM json_each(?))"
)
_BY_EXTERNAL = (
    "SELECT source_key, external_id, id, content_hash FROM failure_case "
    "WHERE external_id IN (SELECT value FROM json_each(?))"
)


_CASE_ID = "visible_case_id"


@functools.lru_cache(maxsize=512)
def _case_and_statement(visibility: Visibility, column: Any, audited: bool = False) -> Any:
    """The single-case read of `visible_case_and`, one object per caller's view (team and
    clearance, whose values it holds), extra column and audit: the case id (and the entry's
    values) are its only bound values, so SQLAlchemy's cache key (memoized on the statement)
    is computed once, not per read; a bigger statement (the blind-read column's four
    subqueries) made that walk most of the read's own cost. `audited`: the read's audit
    entry is appended by this statement (shared.audit.read_entry_ctes), when the case is
    visible, instead of by one more at commit."""
    where = (
        FailureCase.id == bindparam(_CASE_ID),
        *visible_in(visibility),
        FailureCase.purged_at.is_(None),  # a tombstone is no live case (RETENTION.md)
    )
    stmt = (
        select(FailureCase, Model, column)
        .join(Model, Model.id == FailureCase.model_id)
        .where(*where)
    )
    if audited:
        visible = select(literal_column("1")).select_from(T_CASE).where(*where).correlate(None)
        stmt = stmt.add_cte(*read_entry_ctes(visible.exists()))
    return stmt


class CaseQueries(RepositoryBase):
    async def visible_case(
        self,
        case_id: str,
        viewer: Principal,
        *,
        for_update: bool = False,
        tombstones: bool = False,
    ) -> FailureCase | None:
        """The case if `viewer` may see it; an invisible case reads exactly like a missing one,
        and so does a case retention purged whole unless `tombstones` (its history)."""
        stmt = select(FailureCase).where(FailureCase.id == case_id, *visible_to(viewer))
        if not tombstones:
            stmt = stmt.where(FailureCase.purged_at.is_(None))
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def visible_case_and(
        self,
        case_id: str,
        viewer: Principal,
        column: Any,
        params: dict[str, Any],
        read_entry: Staged | None = None,
    ) -> tuple[FailureCase, Model, Any] | None:
        """`visible_case` (tombstones excluded), its model and one more value, in the same
        statement; with `read_entry`, the read's audit entry is recorded when the case is
        found: in the same statement on Postgres, on the same trip on SQLite outside a write
        (shared.audit.execute_read), staged for the commit otherwise."""
        folded = read_entry is not None and folds_reads(self.session)
        stmt = _case_and_statement(Visibility.of(viewer), column, folded)
        values = {**params, _CASE_ID: case_id}
        if folded:
            values.update(read_entry_params(read_entry))
        result, recorded = await execute_read(self.session, stmt, values, read_entry)
        row = result.one_or_none()
        if row is None:
            return None
        if read_entry is not None and not recorded:
            stage(self.session, read_entry)
        return (row[0], row[1], row[2])

    async def get_cases(
        self, ids: Sequence[str], viewer: Principal, *, tombstones: bool = False
    ) -> list[FailureCase]:
        """The visible cases among `ids`; cases retention purged whole only with `tombstones`
        (a tombstone is no evidence, suite member or page entry: RETENTION.md)."""
        stmt = select(FailureCase).where(FailureCase.id.in_(ids), *visible_to(viewer))
        if not tombstones:
            stmt = stmt.where(FailureCase.purged_at.is_(None))
        return list((await self.session.execute(stmt)).scalars())

    async def list_cases(
        self, f: CaseFilter, viewer: Principal, first: int, after: tuple[datetime, str] | None
    ) -> list[FailureCase]:
        """Newest first, keyset on (occurred_at, id): stable while new cases arrive. Cases
        retention purged whole (tombstones) are not listed."""
        stmt = select(FailureCase).where(
            *visible_to(viewer), FailureCase.purged_at.is_(None), *self._filters(f)
        )
        stmt = newest_first(stmt, FailureCase.occurred_at, FailureCase.id, after, first)
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

    async def ids_by_hash(self, hashes: Sequence[str]) -> dict[str, str]:
        if not hashes:
            return {}
        if self.dialect == "sqlite":
            return dict(await self._sqlite_in(_BY_HASH, hashes))
        out: dict[str, str] = {}
        for chunk in chunks(list(hashes)):
            rows = await self.session.execute(
                select(FailureCase.content_hash, FailureCase.id).where(
                    self._in(FailureCase.content_hash, chunk)
                )
            )
            out.update(rows.all())
        return out

    async def cases_by_external(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """(id, content_hash) of stored cases by (source, external_id): matched on external_id
        through its index, then on the exact pair here (a batch rarely spans more than one
        source). The hash tells a retry (same content) from a reused key (a conflict)."""
        wanted = set(keys)
        if not wanted:
            return {}
        external = sorted({e for _, e in wanted})
        if self.dialect == "sqlite":
            rows: Any = await self._sqlite_in(_BY_EXTERNAL, external)
            return {(s, e): (i, h) for s, e, i, h in rows if (s, e) in wanted}
        out: dict[tuple[str, str], tuple[str, str]] = {}
        c = FailureCase
        for chunk in chunks(external):
            rows = await self.session.execute(
                select(c.source_key, c.external_id, c.id, c.content_hash).where(
                    self._in(c.external_id, chunk)
                )
            )
            out.update({(s, e): (i, h) for s, e, i, h in rows if (s, e) in wanted})
        return out

    async def insert_cases(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert, skipping rows another writer stored first; returns the ids really stored."""
        if not rows:
            return set()
        if self.dialect == "postgresql":
            return await self._copy_cases(rows)
        inserted = await self._sqlite_insert(T_CASE, rows, on_conflict_do_nothing=True)
        if inserted == len(rows):
            return {r["id"] for r in rows}
        # Some hit a unique key (stored by a writer that committed before ours began): the
        # ids are new, so those present now are the ones this insert stored.
        ids = [r["id"] for r in rows]
        found: set[str] = set()
        for chunk in chunks(ids):
            result = await self.session.execute(select(T_CASE.c.id).where(T_CASE.c.id.in_(chunk)))
            found.update(result.scalars())
        return found

    async def _copy_unless_conflict(self, table: Any, rows: list[dict[str, Any]]) -> bool:
        """COPY under a savepoint; false (and nothing written) if a row hit a unique key,
        which only happens when a concurrent writer stored it after our read."""
        import asyncpg

        raw = await self._raw_connection()
        columns = [c.name for c in table.columns]
        try:
            async with raw.transaction():
                await raw.copy_records_to_table(
                    table.name, records=copy_records(table, rows, columns), columns=columns
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
            await self._raw_connection(), copy_records(T_CASE, rows), columns
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

    async def visible_among(self, ids: Sequence[str], viewer: Principal) -> set[str]:
        """Tombstones (cases purged whole) are not among them, as in `get_cases`."""
        stmt = select(FailureCase.id).where(
            self._in(FailureCase.id, ids), *visible_to(viewer), FailureCase.purged_at.is_(None)
        )
        return set((await self.session.execute(stmt)).scalars())

    async def purged_among(self, ids: Sequence[str]) -> set[str]:
        stmt = select(FailureCase.id).where(
            self._in(FailureCase.id, ids), FailureCase.purged_at.is_not(None)
        )
        return set((await self.session.execute(stmt)).scalars())
