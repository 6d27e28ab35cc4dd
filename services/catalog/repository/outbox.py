"""Queries of the search outbox and the rows search documents are built from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.models import DataSource, FailureCase, Model, ModelVersion, Outbox
from services.catalog.repository.base import RepositoryBase
from shared.chunks import chunks
from shared.db import WROTE_OUTBOX


def wrote_outbox(session: AsyncSession) -> None:
    """Every write to the outbox says so: this process's indexer wakes on the commit
    (shared.db.Database.on_outbox_commit) instead of finding the rows at its next poll."""
    session.info[WROTE_OUTBOX] = True


class OutboxQueries(RepositoryBase):
    async def add_outbox(self, entries: list[tuple[str, int]], now: datetime) -> None:
        await self.insert_rows(
            Outbox, [{"case_id": c, "revision": r, "created_at": now} for c, r in entries]
        )
        wrote_outbox(self.session)

    async def outbox_batch(self, limit: int) -> list[tuple[int, str, int]]:
        stmt = select(Outbox.id, Outbox.case_id, Outbox.revision).order_by(Outbox.id).limit(limit)
        if self.dialect == "postgresql":
            # Several indexers (API workers, `failcat worker`s) each claim their own rows.
            stmt = stmt.with_for_update(skip_locked=True)
        rows = await self.session.execute(stmt)
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def outbox_ack(self, ids: Sequence[int]) -> None:
        from sqlalchemy import delete

        for chunk in chunks(list(ids)):
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
        # A case purged whole by retention is a tombstone: it has no document, so the
        # indexer deletes the one it had (and reindex and verify leave it out).
        return (
            select(FailureCase, Model.name, ModelVersion.version, DataSource.name)
            .join(Model, Model.id == FailureCase.model_id)
            .join(ModelVersion, ModelVersion.id == FailureCase.model_version_id)
            .join(DataSource, DataSource.id == FailureCase.data_source_id)
            .where(FailureCase.purged_at.is_(None))
        )

    async def case_revisions(self) -> list[tuple[str, int]]:
        rows = await self.session.execute(
            select(FailureCase.id, FailureCase.revision)
            .where(FailureCase.purged_at.is_(None))
            .order_by(FailureCase.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]
