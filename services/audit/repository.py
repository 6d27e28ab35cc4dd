"""Every query of the audit trail, and nothing else. The trail is appended only by
shared.audit.append_staged; this module reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.models import AuditEntry, AuditHead
from shared.db import driver_connection

# The chain's columns in shared.audit.FIELDS order, then `hash`: verify and export read these.
COLUMNS = (
    AuditEntry.seq,
    AuditEntry.at,
    AuditEntry.actor_subject,
    AuditEntry.actor_client,
    AuditEntry.actor_team,
    AuditEntry.action,
    AuditEntry.target,
    AuditEntry.outcome,
    AuditEntry.correlation_id,
    AuditEntry.details,
    AuditEntry.hash,
)


_RAW_COLUMNS = ", ".join(c.key for c in COLUMNS)
# Postgres formats `at` as shared.audit.at_text does (ISO 8601, UTC, microseconds): the server
# process does that work, not the verifier's.
_PG_COLUMNS = _RAW_COLUMNS.replace(
    "at,", """to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),""", 1
)
_RANGE = "FROM audit_log WHERE seq > {} AND seq <= {} ORDER BY seq"
RAW_PAGE_PG = f"SELECT {_PG_COLUMNS} {_RANGE.format('$1', '$2')}"
RAW_PAGE_SQLITE = f"SELECT {_RAW_COLUMNS} {_RANGE.format('?', '?')}"


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def head(self) -> tuple[int, str]:
        """The head as appenders keep it (seq, hash): the newest committed entry."""
        row = (
            await self.session.execute(
                select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)
            )
        ).one()
        return int(row[0]), str(row[1])

    async def last_entry(self) -> tuple[int, str] | None:
        row = (
            await self.session.execute(
                select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
            )
        ).first()
        return (int(row[0]), str(row[1])) if row else None

    async def hash_at(self, seqs: list[int]) -> dict[int, str]:
        rows = await self.session.execute(
            select(AuditEntry.seq, AuditEntry.hash).where(AuditEntry.seq.in_(seqs))
        )
        return {int(s): str(h) for s, h in rows}

    async def page(
        self, after_seq: int, limit: int, until_seq: int | None = None
    ) -> list[tuple[Any, ...]]:
        """The next `limit` entries after `after_seq` in seq order (a keyset page: the trail
        is never loaded whole), as tuples of COLUMNS."""
        query = select(*COLUMNS).where(AuditEntry.seq > after_seq)
        if until_seq is not None:
            query = query.where(AuditEntry.seq <= until_seq)
        rows = await self.session.execute(query.order_by(AuditEntry.seq).limit(limit))
        return [tuple(r) for r in rows]

    async def raw_page(self, after_seq: int, until_seq: int) -> list[Any]:
        """The entries with after_seq < seq <= until_seq (seqs are gap-free, so a range is a
        page whose bounds are known before the previous page arrives), as the driver returns
        the rows (tuples or asyncpg Records), skipping
        SQLAlchemy's per-row result processing: verify reads millions of rows, and that
        processing was most of its time. Values are the driver's: `at` is ISO text on
        Postgres and SQLAlchemy's text form on SQLite ("YYYY-MM-DD HH:MM:SS.ffffff");
        `details` parsed on Postgres, JSON text on SQLite (canonical_row evens them out)."""
        async with driver_connection(self.session) as driver:
            if self.session.bind.dialect.name == "postgresql":
                return list(await driver.fetch(RAW_PAGE_PG, after_seq, until_seq))
            return list(await driver.execute_fetchall(RAW_PAGE_SQLITE, (after_seq, until_seq)))

    async def seq_bounds(
        self, since: datetime | None, until: datetime | None
    ) -> tuple[int, int] | None:
        """The first and last seq of entries at or after `since` and before `until`."""
        from sqlalchemy import func

        query = select(func.min(AuditEntry.seq), func.max(AuditEntry.seq))
        if since is not None:
            query = query.where(AuditEntry.at >= since)
        if until is not None:
            query = query.where(AuditEntry.at < until)
        low, high = (await self.session.execute(query)).one()
        return None if low is None else (int(low), int(high))

    async def entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_seq: int | None = None,
        limit: int,
    ) -> list[AuditEntry]:
        """Newest first, filtered; keyset on seq."""
        query: Select[Any] = select(AuditEntry)
        if actor is not None:
            query = query.where(
                (AuditEntry.actor_subject == actor) | (AuditEntry.actor_client == actor)
            )
        if action is not None:
            # "case.read" matches itself; "case" or "case." every action of that area.
            area = action.rstrip(".")
            query = query.where(
                (AuditEntry.action == area)
                | AuditEntry.action.startswith(area + ".", autoescape=True)
            )
        if target is not None:
            query = query.where(AuditEntry.target == target)
        if since is not None:
            query = query.where(AuditEntry.at >= since)
        if until is not None:
            query = query.where(AuditEntry.at < until)
        if before_seq is not None:
            query = query.where(AuditEntry.seq < before_seq)
        rows = await self.session.execute(query.order_by(AuditEntry.seq.desc()).limit(limit))
        return list(rows.scalars())
