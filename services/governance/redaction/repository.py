"""Every query of the redaction area."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.governance.redaction.models import RedactionPolicy


class RedactionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def policies(self) -> list[RedactionPolicy]:
        return list(await self.session.scalars(select(RedactionPolicy)))

    async def policy(self, data_source: str) -> RedactionPolicy | None:
        return await self.session.get(RedactionPolicy, data_source)

    async def save_policy(self, row: RedactionPolicy) -> None:
        self.session.add(row)
        await self.session.flush()
