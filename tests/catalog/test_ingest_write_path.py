"""The bulk write path (repository.base.insert_rows: COPY on Postgres, the driver's
executemany on SQLite) stores rows exactly as SQLAlchemy's own insert stores them."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, select, text

from services.catalog import service
from services.catalog.models import FailureCase
from services.catalog.repository import CatalogRepository
from shared.db import JSONType, UTCDateTime
from shared.security import SYSTEM
from tests.catalog.builders import unique
from tests.corpus import aiid_cases

PLUS_TWO = timezone(timedelta(hours=2))


def rows(prefix: str) -> list[dict[str, object]]:
    """Every value shape that needs converting: aware times in and out of UTC, naive times,
    whole seconds (no microseconds), JSON None / numbers / text / nesting / non-ASCII."""
    return [
        {
            "id": f"{prefix}-0",
            "at": datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC),
            "blob": None,
            "f": 0.5,
            "s": "plain",
        },
        {
            "id": f"{prefix}-1",
            "at": datetime(2026, 3, 1, 14, 30, 1, 250, tzinfo=PLUS_TWO),
            "blob": {"a": [1, 2.5, None, True], "é": "ünïcödé ✓"},
            "f": None,
            "s": None,
        },
        {
            "id": f"{prefix}-2",
            "at": datetime(1999, 12, 31, 23, 59, 59, 999999),
            "blob": 5,
            "f": -1e300,
            "s": "x" * 300,
        },
        {"id": f"{prefix}-3", "at": None, "blob": "text", "f": 3.0, "s": ""},
    ]


async def test_bulk_insert_stores_what_sqlalchemy_stores(session):
    name = f"t_write_{secrets.token_hex(3)}"
    table = Table(
        name,
        MetaData(),
        Column("id", String, primary_key=True),
        Column("at", UTCDateTime()),
        Column("blob", JSONType),
        Column("n", Integer, default=7),  # left out of the rows: its default applies
        Column("f", Float),
        Column("s", String),
        # Temporary: it is the connection's own, so it never joins the database's schema
        # (SQLite commits DDL at once, which the session's rollback would not undo).
        prefixes=["TEMPORARY"],
    )
    conn = await session.connection()
    await conn.run_sync(lambda c: table.create(c))

    await session.execute(table.insert(), rows("orm"))
    await CatalogRepository(session).insert_rows(SimpleNamespace(__table__=table), rows("fast"))

    def strip(row):
        return (row[0].split("-", 1)[1], *row[1:])

    # As the database holds them (SQLite: the text of times and JSON, compared as text)...
    raw = (await session.execute(text(f'SELECT * FROM "{name}" ORDER BY id'))).all()
    by_path = {"orm": [], "fast": []}
    for r in raw:
        by_path[r[0].split("-", 1)[0]].append(strip(tuple(r)))
    assert by_path["orm"] == by_path["fast"]
    assert len(by_path["fast"]) == 4
    # ... and as the application reads them back.
    typed = (await session.execute(select(table).order_by(table.c.id))).all()
    read = {"orm": [], "fast": []}
    for r in typed:
        read[r[0].split("-", 1)[0]].append(strip(tuple(r)))
    assert read["orm"] == read["fast"]
    assert read["fast"][1][1] == datetime(2026, 3, 1, 12, 30, 1, 250, tzinfo=UTC)
    assert read["fast"][0][3] == 7


async def test_ingested_cases_read_back_whole(session):
    """Cases stored by the bulk path read back through the ORM with every value intact."""
    items = unique(aiid_cases(20))
    results = await service.ingest_cases(session, items, SYSTEM)
    assert [r.status for r in results] == ["created"] * 20
    stored = {
        c.id: c
        for c in (
            await session.execute(
                select(FailureCase).where(FailureCase.id.in_([r.id for r in results]))
            )
        ).scalars()
    }
    for item, r in zip(items, results, strict=True):
        case = stored[r.id]
        assert case.external_id == item["external_id"]
        assert case.title == item.get("title")
        assert case.input == item.get("input")
        assert case.tags == item.get("tags", [])
        assert case.occurred_at.tzinfo is not None
        assert case.revision == 1 and case.status == "new"


async def test_a_case_stored_meanwhile_is_not_counted_as_stored(session):
    """insert_cases answers only the ids it really stored when a row hits a unique key."""
    [item] = unique(aiid_cases(1))
    [first] = await service.ingest_cases(session, [item], SYSTEM)
    row = (
        (await session.execute(select(FailureCase.__table__).where(FailureCase.id == first.id)))
        .one()
        ._asdict()
    )
    clash = dict(row, id="clash-" + secrets.token_hex(4))  # same hash and external id
    fresh = dict(
        row,
        id="fresh-" + secrets.token_hex(4),
        content_hash="h-" + secrets.token_hex(8),
        external_id="e-" + secrets.token_hex(8),
    )
    stored = await CatalogRepository(session).insert_cases([clash, fresh])
    assert stored == {fresh["id"]}


async def test_duplicate_lookups_find_stored_cases_through_their_indexes(session):
    """The ingest lookups (by content hash, by idempotency key) answer stored cases and only
    those; on SQLite, where they send one JSON array parameter, each reads a unique index
    (no scan of the case table per chunk)."""
    items = unique(aiid_cases(3))
    results = await service.ingest_cases(session, items, SYSTEM)
    repo = CatalogRepository(session)
    rows = {
        r.id: r
        for r in (
            await session.execute(
                select(FailureCase.id, FailureCase.content_hash, FailureCase.source_key).where(
                    FailureCase.id.in_([r.id for r in results])
                )
            )
        ).all()
    }
    hashes = {rows[r.id].content_hash: r.id for r in results}
    assert await repo.ids_by_hash([*hashes, "no-such-hash"]) == hashes
    keys = [
        (rows[r.id].source_key, item["external_id"]) for r, item in zip(results, items, strict=True)
    ]
    found = await repo.cases_by_external([*keys, (keys[0][0], "no-such-key")])
    assert found == {
        key: (r.id, rows[r.id].content_hash) for key, r in zip(keys, results, strict=True)
    }
    # Same external id under another source: not a match.
    assert await repo.cases_by_external([("other-source", keys[0][1])]) == {}
    assert await repo.ids_by_hash([]) == {} and await repo.cases_by_external([]) == {}
    if repo.dialect == "sqlite":
        from services.catalog.repository.cases import _BY_EXTERNAL, _BY_HASH

        for statement in (_BY_HASH, _BY_EXTERNAL):
            conn = await session.connection()
            plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", ("[]",))).all()
            detail = " ".join(str(r[-1]) for r in plan)
            assert "USING INDEX" in detail or "USING COVERING INDEX" in detail, detail
            assert "SCAN failure_case" not in detail, detail
