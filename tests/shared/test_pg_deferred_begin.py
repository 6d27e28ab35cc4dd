"""Postgres: a unit of work opens its transaction at its first statement that needs one
(shared/pg_deferred_begin.py). Reads before it run alone; from it on, everything is one
transaction that commits or rolls back whole, as before."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from shared.db import Database, driver_connection
from shared.pg_deferred_begin import runs_alone
from tests.conftest import postgres_url


@pytest.mark.parametrize(
    ("statement", "alone"),
    [
        ("SELECT a FROM t WHERE id = $1", True),
        ("  \n select 1", True),
        # an audited read: its entry's CTEs write, the statement is its own atomic unit
        (
            "WITH m AS (UPDATE h SET seq = seq + 1 RETURNING seq), "
            "a AS (INSERT INTO l SELECT seq FROM m) SELECT c.id FROM c WHERE c.id = $1",
            True,
        ),
        ("WITH x AS (SELECT ')' AS p) SELECT * FROM x", True),
        ("SELECT a FROM t WHERE id = $1 FOR UPDATE", False),
        ("SELECT a FROM t FOR NO KEY UPDATE OF t", False),
        ("SELECT a FROM t FOR SHARE", False),
        ("SELECT pg_advisory_xact_lock($1)", False),
        ("SELECT set_config('app.team', $1, true)", False),
        ("SET LOCAL enable_sort = off", False),
        ("INSERT INTO t VALUES ($1)", False),
        ("UPDATE t SET a = 1", False),
        ("DELETE FROM t", False),
        ("WITH x AS (INSERT INTO l VALUES (1)) UPDATE h SET hash = $1 WHERE id = 1", False),
        ("WITH x AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM x)", False),
        # not understood: a transaction, the safe side
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r", False),
    ],
)
def test_what_runs_alone(statement: str, alone: bool) -> None:
    assert runs_alone(statement) is alone


def test_the_adapter_state_it_reads_is_still_there() -> None:
    """SQLAlchemy is pinned; this names what an upgrade must keep."""
    adapter = AsyncAdapt_asyncpg_connection
    assert {"_transaction", "isolation_level", "_isolation_setting"} <= set(adapter.__slots__)
    assert asyncio.iscoroutinefunction(adapter._start_transaction)


@pytest.fixture
async def pg():
    database = Database(postgres_url())
    table = f"deferred_{secrets.token_hex(3)}"
    async with database.transaction() as s:
        await s.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)"))
        await s.execute(text(f"INSERT INTO {table} VALUES (1, 'one')"))
    yield database, table
    async with database.transaction() as s:
        await s.execute(text(f"DROP TABLE {table}"))
    await database.dispose()


async def _now(session) -> object:
    await session.execute(text("SELECT pg_sleep(0.002)"))
    return (await session.execute(text("SELECT clock_timestamp(), now()"))).one()


async def test_reads_alone_then_one_transaction_from_the_first_write(pg) -> None:
    database, table = pg
    async with database.transaction() as s:
        # now() is the transaction's start: alone, each read is a transaction of its own
        (_, first), (_, second) = await _now(s), await _now(s)
        assert first != second
        await s.execute(text(f"INSERT INTO {table} VALUES (2, 'two')"))
        (_, third), (_, fourth) = await _now(s), await _now(s)
        assert third == fourth  # one transaction from the write on
    async with database.transaction() as s:
        assert (await s.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 2


async def test_a_failed_unit_of_work_rolls_back_everything_from_its_first_write(pg) -> None:
    database, table = pg
    with pytest.raises(RuntimeError):
        async with database.transaction() as s:
            await s.execute(text(f"SELECT note FROM {table}"))
            await s.execute(text(f"UPDATE {table} SET note = 'changed'"))
            await s.execute(text(f"INSERT INTO {table} VALUES (3, 'three')"))
            raise RuntimeError("the request failed")
    async with database.transaction() as s:
        rows = (await s.execute(text(f"SELECT id, note FROM {table} ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [(1, "one")]


async def test_a_locking_read_holds_its_lock_to_the_commit(pg) -> None:
    database, table = pg
    other = await asyncpg.connect(postgres_url().replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with database.transaction() as s:
            await s.execute(text(f"SELECT note FROM {table} WHERE id = 1 FOR UPDATE"))
            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.fetch(f"SELECT note FROM {table} WHERE id = 1 FOR UPDATE NOWAIT")
        assert await other.fetch(f"SELECT note FROM {table} WHERE id = 1 FOR UPDATE NOWAIT")
    finally:
        await other.close()


async def test_statements_on_the_driver_connection_are_inside_the_transaction(pg) -> None:
    database, table = pg
    with pytest.raises(RuntimeError):
        async with database.transaction() as s:
            async with driver_connection(s) as raw:  # the unit of work's first statement
                await raw.execute(f"INSERT INTO {table} VALUES (4, 'four')")
            raise RuntimeError("the request failed")
    async with database.transaction() as s:
        assert (await s.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 1
