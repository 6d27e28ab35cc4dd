"""Queries of models, model versions and data sources: get-or-create in one round trip
each for ingestion, registration, and reads by id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_, update

from services.catalog.models import DataSource, Model, ModelVersion
from services.catalog.repository.base import RepositoryBase
from shared.chunks import chunks
from shared.ids import new_id

# The advisory lock key of reference creation (any constant unique within the database).
REFERENCES_LOCK = 0x6661696C636174  # "failcat"


class ModelQueries(RepositoryBase):
    async def ensure_named(self, table: Any, names: set[str], now: datetime) -> dict[str, str]:
        if not names:
            return {}
        found = await self._names(table, names)
        missing = names - found.keys()
        if missing:
            await self._lock_references()
            await self.session.execute(
                self._insert(table).on_conflict_do_nothing(),
                [{"id": new_id(), "name": n, "created_at": now} for n in sorted(missing)],
            )
            found.update(await self._names(table, missing))
        return found

    async def _lock_references(self) -> None:
        """One writer at a time creates models, sources and versions (until it commits).

        A batch is stored in chunks and creates the references each chunk needs: two
        batches creating the same new names in different chunks would each wait for the
        other's uncommitted row (a deadlock). Behind one lock they queue instead; it is taken
        only when a name is new, which is rare once a deployment has seen its models."""
        if self.dialect == "postgresql":
            await self.session.execute(select(func.pg_advisory_xact_lock(REFERENCES_LOCK)))

    async def _names(self, table: Any, names: set[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in chunks(sorted(names)):
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
            await self._lock_references()
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
        for chunk in chunks(sorted(pairs)):
            rows = await self.session.execute(
                select(ModelVersion.model_id, ModelVersion.version, ModelVersion.id).where(
                    tuple_(ModelVersion.model_id, ModelVersion.version).in_(chunk)
                )
            )
            out.update({(m, v): i for m, v, i in rows})
        return out

    async def model_version(self, version_id: str, *, for_update: bool = False) -> ModelVersion:
        stmt = select(ModelVersion).where(ModelVersion.id == version_id)
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one()

    async def update_model_version(self, version_id: str, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(ModelVersion).where(ModelVersion.id == version_id).values(**values),
            execution_options={"synchronize_session": False},
        )

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
