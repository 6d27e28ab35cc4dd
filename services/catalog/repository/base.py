"""What the catalog's query modules share: the session, dialect-aware helpers, COPY."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ARRAY, JSON, String, and_, any_, literal, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession


class RepositoryBase:
    """One session; each query module adds the queries of its tables."""

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
                table.name, records=copy_records(table, rows, columns), columns=columns
            )
        else:
            await self.session.execute(table.insert(), rows)


def copy_records(
    table: Any, rows: list[dict[str, Any]], columns: list[str] | None = None
) -> list[tuple[Any, ...]]:
    """Rows as COPY records; JSON columns become their text (asyncpg's jsonb codec takes str)."""
    names = columns or [c.name for c in table.columns]
    json_at = [i for i, n in enumerate(names) if isinstance(table.c[n].type, JSON)]
    dumps = orjson.dumps
    # The values in column order at C speed (a row with every column, as ingestion builds
    # them); a row that leaves columns out takes the per-key path.
    pick = operator.itemgetter(*names) if len(names) > 1 else lambda r: (r[names[0]],)
    out = []
    for row in rows:
        try:
            record = list(pick(row))
        except KeyError:
            record = [row.get(n) for n in names]
        for i in json_at:
            if record[i] is not None:
                record[i] = dumps(record[i]).decode()
        out.append(tuple(record))
    return out


def newest_first(
    stmt: Any, at_col: Any, id_col: Any, after: tuple[datetime, str] | None, first: int
) -> Any:
    """A keyset page, newest first on (time, id): stable while new rows arrive."""
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(at_col < at, and_(at_col == at, id_col < last_id)))
    return stmt.order_by(at_col.desc(), id_col.desc()).limit(first)
