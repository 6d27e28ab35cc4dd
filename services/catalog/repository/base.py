"""What the catalog's query modules share: the session, dialect-aware helpers, and the bulk
writes that skip SQLAlchemy's per-row work: COPY on Postgres, the driver's executemany on
SQLite."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ARRAY, JSON, String, and_, any_, literal, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import UTCDateTime, driver_connection, driver_in_transaction


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
        return await driver_in_transaction(self.session)

    async def insert_rows(self, model: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = model.__table__
        if self.dialect == "postgresql":
            raw = await self._raw_connection()
            defaults = scalar_defaults(table, rows[0].keys())
            if defaults:  # as SQLAlchemy's insert fills them
                rows = [{**defaults, **r} for r in rows]
            columns = [c.name for c in table.columns if c.name in rows[0]]
            await raw.copy_records_to_table(
                table.name, records=copy_records(table, rows, columns), columns=columns
            )
        else:
            await self._sqlite_insert(table, rows)

    async def _sqlite_insert(
        self, table: Any, rows: list[dict[str, Any]], on_conflict_do_nothing: bool = False
    ) -> int:
        """One executemany on the driver's connection (the session's transaction): the rows
        stored exactly as SQLAlchemy's insert would store them (sqlite_records), without its
        per-row parameter processing. Returns the number of rows inserted."""
        statement, records = sqlite_records(table, rows)
        if on_conflict_do_nothing:
            statement += " ON CONFLICT DO NOTHING"
        async with driver_connection(self.session) as raw:
            cursor = await raw.executemany(statement, records)
            try:
                return int(cursor.rowcount)
            finally:
                await cursor.close()

    async def _sqlite_in(self, statement: str, values: Sequence[str]) -> list[tuple[Any, ...]]:
        """An ingest lookup on SQLite: `statement` reads its values from ONE JSON array
        parameter (`IN (SELECT value FROM json_each(?))`), sent straight to the driver.
        SQLAlchemy's expanding IN renders and processes one bound parameter per value on
        every call (~0.5 ms per chunk of 250); the plain values read back need none of its
        result processing."""
        async with driver_connection(self.session) as raw:
            cursor = await raw.execute(statement, (orjson.dumps(list(values)).decode(),))
            try:
                return list(await cursor.fetchall())
            finally:
                await cursor.close()


def copy_records(
    table: Any, rows: list[dict[str, Any]], columns: list[str] | None = None
) -> list[tuple[Any, ...]]:
    """Rows as COPY records; JSON columns become their text (asyncpg's jsonb codec takes str)."""
    names = columns or [c.name for c in table.columns]
    json_at = [i for i, n in enumerate(names) if isinstance(table.c[n].type, JSON)]
    return _records(rows, names, [(i, _json_text) for i in json_at], {})


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _records(
    rows: list[dict[str, Any]],
    names: Any,
    converted: list[tuple[int, Any]],
    defaults: dict[str, Any],
) -> list[tuple[Any, ...]]:
    """Each row's values in `names` order, value i passed through its converter. The values
    are picked at C speed (a row with every column, as ingestion builds them); a row that
    leaves columns out takes the per-key path, with `defaults` (else None) for them."""
    pick = operator.itemgetter(*names) if len(names) > 1 else lambda r: (r[names[0]],)
    out = []
    for row in rows:
        try:
            record = list(pick(row))
        except KeyError:
            record = [row[n] if n in row else defaults.get(n) for n in names]
        for i, f in converted:
            record[i] = f(record[i])
        out.append(tuple(record))
    return out


_ZERO = timedelta(0)


def _sqlite_datetime(value: datetime | None) -> str | None:
    """UTCDateTime's SQLite text: naive UTC in SQLAlchemy's DATETIME storage format
    (microseconds always written, so stored times compare as text)."""
    if value is None:
        return None
    offset = value.utcoffset()
    if offset is None or offset == _ZERO:
        value = value.replace(tzinfo=None)
    else:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _sqlite_datetime_column() -> Callable[[datetime | None], str | None]:
    """_sqlite_datetime for one column, remembering its last value: a batch's rows share
    one `now` (received, updated, created), converted once instead of once per row."""
    last: list[tuple[Any, str | None]] = [(None, None)]

    def convert(value: datetime | None) -> str | None:
        seen, text = last[0]
        if value is seen:
            return text
        text = _sqlite_datetime(value)
        last[0] = (value, text)  # one store: a reader sees the pair whole
        return text

    return convert


def _sqlite_json(none_as_null: bool) -> Callable[[Any], str | None]:
    """JSON's SQLite text with the engine's serializer (orjson, shared.db.make_engine); a
    Python None is the JSON text 'null' unless the type says none_as_null, as SQLAlchemy's
    JSON type stores it."""
    dumps = orjson.dumps

    def process(value: Any) -> str | None:
        if value is None:
            return None if none_as_null else "null"
        return dumps(value).decode()

    return process


@functools.lru_cache(maxsize=64)
def _sqlite_processors(table: Any, names: tuple[str, ...]) -> tuple[str, list[Any]]:
    """The INSERT statement of `names` and each column's value conversion (None: as is).
    The two hot types have hand-written converters checked equal to SQLAlchemy's
    (tests/catalog/test_ingest_sqlite_path.py); any other type with a bind processor uses
    SQLAlchemy's own."""
    from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

    dialect = sqlite_dialect()
    procs: list[Any] = []
    for name in names:
        col_type = table.c[name].type
        if isinstance(col_type, UTCDateTime):
            procs.append(_sqlite_datetime_column())
        elif isinstance(col_type, JSON):
            procs.append(_sqlite_json(col_type.none_as_null))
        else:
            procs.append(col_type._cached_bind_processor(dialect))
    quoted = ", ".join(f'"{n}"' for n in names)
    marks = ", ".join("?" * len(names))
    return f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})', procs


def scalar_defaults(table: Any, keys: Any) -> dict[str, Any]:
    """The scalar column defaults of the columns `keys` leaves out."""
    return {
        c.name: c.default.arg
        for c in table.columns
        if c.name not in keys and c.default is not None and c.default.is_scalar
    }


def sqlite_records(table: Any, rows: list[dict[str, Any]]) -> tuple[str, list[tuple[Any, ...]]]:
    """The INSERT statement and its parameter tuples for the driver. Columns are those of
    the first row (every row of a batch has the same keys) plus the columns with a scalar
    default the rows leave out, as SQLAlchemy's insert fills them."""
    keys = rows[0].keys()
    defaults = scalar_defaults(table, keys)
    names = tuple(c.name for c in table.columns if c.name in keys or c.name in defaults)
    statement, procs = _sqlite_processors(table, names)
    converted = [(i, f) for i, f in enumerate(procs) if f is not None]
    return statement, _records(rows, names, converted, defaults)


def newest_first(
    stmt: Any, at_col: Any, id_col: Any, after: tuple[datetime, str] | None, first: int
) -> Any:
    """A keyset page, newest first on (time, id): stable while new rows arrive."""
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(at_col < at, and_(at_col == at, id_col < last_id)))
    return stmt.order_by(at_col.desc(), id_col.desc()).limit(first)
