"""Queries of capture policies: the current version of a set of (model, data source) keys (one
statement per ingested batch), a key's history, and the insert of the next version."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, tuple_

from services.catalog.models import CapturePolicy
from services.catalog.repository.base import RepositoryBase
from shared.chunks import chunks


class CapturePolicyQueries(RepositoryBase):
    async def current_capture_policies(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], CapturePolicy]:
        """The newest version of each key's policy (keys without one are absent)."""
        p = CapturePolicy
        out: dict[tuple[str, str], CapturePolicy] = {}
        # Every version of the keys, the newest kept here: a key has few versions, and one
        # expanding IN compiles once (an OR per key built and compiled a new statement for
        # every batch whose key count differed: ~20 ms a batch).
        for chunk in chunks(sorted(set(keys)), 200):
            rows = await self.session.execute(
                select(p).where(tuple_(p.model, p.data_source).in_(chunk))
            )
            for r in rows.scalars():
                kept = out.get((r.model, r.data_source))
                if kept is None or r.version > kept.version:
                    out[(r.model, r.data_source)] = r
        return out

    async def capture_policy_versions(
        self, model: str | None = None, data_source: str | None = None
    ) -> list[CapturePolicy]:
        """Every version of the matching keys, by key then newest version first."""
        p = CapturePolicy
        stmt = select(p)
        if model is not None:
            stmt = stmt.where(p.model == model)
        if data_source is not None:
            stmt = stmt.where(p.data_source == data_source)
        rows = await self.session.execute(
            stmt.order_by(p.model, p.data_source, p.version.desc()).limit(10_000)
        )
        return list(rows.scalars())

    async def insert_capture_policy(self, values: dict[str, Any]) -> None:
        """The unique (model, data source, version) makes two concurrent writers of the same
        next version collide: the second fails and retries with the version after."""
        await self.session.execute(self._insert(CapturePolicy.__table__).values(**values))
