"""Queries of case history: every revision, the newest, those after a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, select

from services.catalog.models import CaseRevision, FailureCase
from services.catalog.repository.base import RepositoryBase


class RevisionQueries(RepositoryBase):
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
