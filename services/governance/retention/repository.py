"""Every query of the retention tables (policies, legal holds), and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.governance.retention.models import LegalHold, RetentionPolicy
from services.governance.retention.schemas import HoldKind
from shared.chunks import chunks


class RetentionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.dialect = session.bind.dialect.name

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    # --- policies -----------------------------------------------------------------------
    async def policies(self) -> list[RetentionPolicy]:
        rows = await self.session.execute(
            select(RetentionPolicy).order_by(
                RetentionPolicy.data_source, RetentionPolicy.sensitivity
            )
        )
        return list(rows.scalars())

    async def upsert_policy(self, values: dict[str, Any]) -> None:
        table = RetentionPolicy.__table__
        stmt = self._insert(table).values(values)
        keys = ("payload_ttl_days", "case_ttl_days", "updated_at", "updated_by")
        stmt = stmt.on_conflict_do_update(
            index_elements=["data_source", "sensitivity"],
            set_={k: stmt.excluded[k] for k in keys},
        )
        await self.session.execute(stmt)

    async def delete_policy(self, data_source: str, sensitivity: str) -> bool:
        result = await self.session.execute(
            delete(RetentionPolicy).where(
                RetentionPolicy.data_source == data_source,
                RetentionPolicy.sensitivity == sensitivity,
            )
        )
        return result.rowcount > 0

    # --- legal holds --------------------------------------------------------------------
    async def hold(
        self, kind: str, target_id: str, *, for_update: bool = False
    ) -> LegalHold | None:
        stmt = select(LegalHold).where(LegalHold.kind == kind, LegalHold.target_id == target_id)
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def upsert_hold(self, values: dict[str, Any]) -> None:
        table = LegalHold.__table__
        stmt = self._insert(table).values(values)
        keys = [k for k in values if k not in ("kind", "target_id")]
        stmt = stmt.on_conflict_do_update(
            index_elements=["kind", "target_id"], set_={k: stmt.excluded[k] for k in keys}
        )
        await self.session.execute(stmt, execution_options={"synchronize_session": False})

    async def active_holds(
        self, case_ids: Sequence[str], group_ids: Sequence[str]
    ) -> list[LegalHold]:
        """The active holds on any of these cases or groups."""
        out: list[LegalHold] = []
        for kind, ids in ((HoldKind.CASE, case_ids), (HoldKind.GROUP, group_ids)):
            for part in chunks(sorted(set(ids))):
                stmt = select(LegalHold).where(
                    LegalHold.active.is_(True),
                    LegalHold.kind == kind.value,
                    LegalHold.target_id.in_(part),
                )
                out += list((await self.session.execute(stmt)).scalars())
        return out
