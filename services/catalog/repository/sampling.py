"""Queries of sampling rules and reservoir counters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from services.catalog.models import FailureCase, SamplingCounter, SamplingRule
from services.catalog.repository.base import RepositoryBase
from shared.chunks import chunks


class SamplingQueries(RepositoryBase):
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
        for chunk in chunks(list(keys)):
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
