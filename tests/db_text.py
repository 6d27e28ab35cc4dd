"""Every text value a database holds, read the way a grep of it would find them: each text,
character, JSON and array column of every table the database lists (not the models), cast to
text. The PII proof, the retention leftovers test and the bundle round trip search it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

_PG_COLUMNS = text(
    "SELECT table_name, column_name FROM information_schema.columns "
    "WHERE table_schema = 'public' AND data_type IN "
    "('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY') "
    "ORDER BY table_name, ordinal_position"
)
_SQLITE_TEXT_TYPES = ("CHAR", "TEXT", "JSON", "CLOB")


async def text_by_table(db: Any) -> dict[str, list[str]]:
    """The non-null text values of every table of `db` (a shared.db.Database), by table."""
    out: dict[str, list[str]] = {}
    async with db.transaction() as s:
        if db.dialect == "postgresql":
            cols = (await s.execute(_PG_COLUMNS)).all()
            cast = '"{c}"::text'
        else:
            tables = (
                await s.execute(
                    text(
                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%'"
                    )
                )
            ).scalars()
            cols = []
            for table in list(tables):
                info = (await s.execute(text(f'PRAGMA table_info("{table}")'))).all()
                cols += [
                    (table, row[1])
                    for row in info
                    if any(t in (row[2] or "").upper() for t in _SQLITE_TEXT_TYPES)
                ]
            cast = 'CAST("{c}" AS TEXT)'
        for table, column in cols:
            rows = await s.execute(
                text(f'SELECT {cast.format(c=column)} FROM "{table}" WHERE "{column}" IS NOT NULL')
            )
            out.setdefault(table, []).extend(rows.scalars().all())
    return out
